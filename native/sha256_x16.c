/*
 * SHA-256 of sixteen short messages at once, one per 32-bit lane of the AVX-512 registers, for
 * the Merkle leaves and nodes (RFC 6962: SHA-256 of a prefix byte and the record, or of 0x01 and
 * two child hashes). Each message is a few blocks and the leaves of a file are independent of
 * each other, so instead of one message after another through the SHA extensions (~120 cycles a
 * block here, an AMD EPYC) sixteen go through the rounds side by side; the per-lane work of a
 * round is a handful of vector instructions (rotations, three-input logic, additions).
 *
 * The algorithm is FIPS 180-4's, written out from the standard: message schedule, 64 rounds, the
 * state added back per block. Lanes whose message has fewer blocks keep their state through the
 * others' last blocks (masked additions). Callers check sha256x16_available() at run time and fall
 * back to OpenSSL (the SHA extensions) otherwise or for longer messages (SHA256X16_MAX_LEN).
 * https://nvlpubs.nist.gov/nistpubs/FIPS/NIST.FIPS.180-4.pdf
 */
#include "sha256_x16.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define X16_TARGET __attribute__((target("avx512f,avx512bw"), optimize("unroll-loops")))

/* One lane's padded message: the prefix, the message, 0x80, zeros, the bit length (8 bytes). */
#define LANE_BYTES 512
#define LANE_WORDS (LANE_BYTES / 4)

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* 0x96: a ^ b ^ c; 0xCA: a ? b : c (Ch); 0xE8: majority (Maj). */
#define XOR3(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0x96)
#define CH(e, f, g) _mm512_ternarylogic_epi32((e), (f), (g), 0xCA)
#define MAJ(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0xE8)
#define ROR(x, n) _mm512_ror_epi32((x), (n))
#define BSIG0(x) XOR3(ROR(x, 2), ROR(x, 13), ROR(x, 22))
#define BSIG1(x) XOR3(ROR(x, 6), ROR(x, 11), ROR(x, 25))
#define SSIG0(x) XOR3(ROR(x, 7), ROR(x, 18), _mm512_srli_epi32((x), 3))
#define SSIG1(x) XOR3(ROR(x, 17), ROR(x, 19), _mm512_srli_epi32((x), 10))

X16_TARGET static void compress_lanes(const uint8_t *lanes, const int nblocks[16], int max_blocks, uint8_t *out, int n) {
  /* Big-endian words: a byte swap within each 32-bit word. */
  const __m512i bswap = _mm512_set_epi8(
      60, 61, 62, 63, 56, 57, 58, 59, 52, 53, 54, 55, 48, 49, 50, 51, 44, 45, 46, 47, 40, 41, 42, 43, 36, 37, 38, 39, 32, 33, 34, 35,
      28, 29, 30, 31, 24, 25, 26, 27, 20, 21, 22, 23, 16, 17, 18, 19, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
  const __m512i lane_base = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(LANE_WORDS));
  const __m512i blocks = _mm512_loadu_si512((const void *)nblocks);
  __m512i st[8];
  for (int i = 0; i < 8; i++) st[i] = _mm512_set1_epi32((int)IV[i]);
  for (int b = 0; b < max_blocks; b++) {
    __mmask16 live = _mm512_cmpgt_epi32_mask(blocks, _mm512_set1_epi32(b));
    __m512i w[16];
    __m512i idx = _mm512_add_epi32(lane_base, _mm512_set1_epi32(16 * b));
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
      w[j] = _mm512_shuffle_epi8(_mm512_i32gather_epi32(idx, (const void *)lanes, 4), bswap);
      idx = _mm512_add_epi32(idx, _mm512_set1_epi32(1));
    }
    __m512i a = st[0], bb = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
    /* Unrolled (as -funroll-loops would): the ring's indices and K[t] become constants, 2.5x
       OpenSSL's speed here against 2x rolled. */
#pragma GCC unroll 64
    for (int t = 0; t < 64; t++) {
      __m512i wt;
      if (t < 16) {
        wt = w[t];
      } else {
        /* W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], kept in a ring of 16. */
        wt = _mm512_add_epi32(_mm512_add_epi32(SSIG1(w[(t - 2) & 15]), w[(t - 7) & 15]), _mm512_add_epi32(SSIG0(w[(t - 15) & 15]), w[t & 15]));
        w[t & 15] = wt;
      }
      __m512i t1 = _mm512_add_epi32(_mm512_add_epi32(h, BSIG1(e)), _mm512_add_epi32(CH(e, f, g), _mm512_add_epi32(wt, _mm512_set1_epi32((int)K[t]))));
      __m512i t2 = _mm512_add_epi32(BSIG0(a), MAJ(a, bb, c));
      h = g;
      g = f;
      f = e;
      e = _mm512_add_epi32(d, t1);
      d = c;
      c = bb;
      bb = a;
      a = _mm512_add_epi32(t1, t2);
    }
    st[0] = _mm512_mask_add_epi32(st[0], live, st[0], a);
    st[1] = _mm512_mask_add_epi32(st[1], live, st[1], bb);
    st[2] = _mm512_mask_add_epi32(st[2], live, st[2], c);
    st[3] = _mm512_mask_add_epi32(st[3], live, st[3], d);
    st[4] = _mm512_mask_add_epi32(st[4], live, st[4], e);
    st[5] = _mm512_mask_add_epi32(st[5], live, st[5], f);
    st[6] = _mm512_mask_add_epi32(st[6], live, st[6], g);
    st[7] = _mm512_mask_add_epi32(st[7], live, st[7], h);
  }
  uint32_t words[8][16] __attribute__((aligned(64)));
  for (int i = 0; i < 8; i++) _mm512_store_si512((void *)words[i], _mm512_shuffle_epi8(st[i], bswap));
  for (int l = 0; l < n; l++)
    for (int i = 0; i < 8; i++) memcpy(out + 32 * l + 4 * i, &words[i][l], 4);
}

int sha256x16_available(void) {
  static int known = -1;
  if (known < 0) {
    const char *env = getenv("PG_EGRESS_SHA_X16");
    /* GCC's check includes the operating system's support of the AVX-512 state (XCR0). */
    __builtin_cpu_init();
    known = !(env && env[0] == '0') && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }
  return known;
}

void sha256x16_prefixed(uint8_t prefix, const uint8_t *const msgs[], const size_t lens[], int n, uint8_t *out) {
  uint8_t lanes[16 * LANE_BYTES] __attribute__((aligned(64)));
  int nblocks[16] __attribute__((aligned(64))) = {0};
  int max_blocks = 0;
  for (int l = 0; l < n; l++) {
    uint8_t *p = lanes + l * LANE_BYTES;
    size_t total = lens[l] + 1;            /* the prefix and the message */
    size_t padded = (total + 9 + 63) & ~(size_t)63;
    p[0] = prefix;
    memcpy(p + 1, msgs[l], lens[l]);
    p[total] = 0x80;
    memset(p + total + 1, 0, padded - 8 - total - 1);
    uint64_t bits = (uint64_t)total * 8;
    for (int i = 0; i < 8; i++) p[padded - 1 - i] = (uint8_t)(bits >> (8 * i));
    nblocks[l] = (int)(padded / 64);
    if (nblocks[l] > max_blocks) max_blocks = nblocks[l];
  }
  if (n) compress_lanes(lanes, nblocks, max_blocks, out, n);
}

#else
int sha256x16_available(void) { return 0; }
void sha256x16_prefixed(uint8_t prefix, const uint8_t *const msgs[], const size_t lens[], int n, uint8_t *out) {
  (void)prefix; (void)msgs; (void)lens; (void)n; (void)out;
}
#endif
