/* SHA-256 contexts after SHA256_Init and the one-byte prefix of an RFC 6962 leaf (0x00) or node
   (0x01), set once at load (sha256_batch.c) and copied per hash: SHA256_Init per hash showed up
   as 6% of an export's CPU (perf), and a copy costs next to nothing. */
#ifndef PG_EGRESS_SHA_PREFIX_H
#define PG_EGRESS_SHA_PREFIX_H
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

extern SHA256_CTX sha_leaf_start, sha_node_start;
void sha_prefixes_init(void);

#endif
