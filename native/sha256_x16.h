/* SHA-256 of up to sixteen short messages at once with AVX-512 (sha256_x16.c). */
#ifndef PG_EGRESS_SHA256_X16_H
#define PG_EGRESS_SHA256_X16_H
#include <stddef.h>
#include <stdint.h>

/* The longest message (after its prefix byte) that fits a lane: 512 bytes padded. */
#define SHA256X16_MAX_LEN 502

/* Whether this CPU and system run the AVX-512 path (PG_EGRESS_SHA_X16=0 turns it off). */
int sha256x16_available(void);

/* out[32i..32i+32) = SHA-256(prefix || msgs[i][0..lens[i])) for i < n ≤ 16, every lens[i] ≤
   SHA256X16_MAX_LEN; only when sha256x16_available(). */
void sha256x16_prefixed(uint8_t prefix, const uint8_t *const msgs[], const size_t lens[], int n, uint8_t *out);
#endif
