/*
 * Batched SHA-256 for the RFC 6962 Merkle trees (src/proof/sha256-batch.ts): one call hashes
 * every record of a chunk, or every pair of a tree level, so the per-call cost of node:crypto
 * (about 1 µs, five times the hashing itself for a 200-byte CSV record) is paid once per chunk.
 * It uses the OpenSSL that Node.js itself links and exports (its headers ship with Node), so
 * there is nothing to install beyond the compiler node-gyp needs.
 *
 *   leaves(data: Buffer, offsets: Uint32Array, out: Buffer)   out[32i..] = SHA-256(0x00 || data[offsets[i]..offsets[i+1]])
 *   pairs(nodes: Buffer, out: Buffer)                         out[32i..] = SHA-256(0x01 || nodes[64i..64i+64])
 *   shaLanes() → 16 where leaves and pairs go sixteen at a time (AVX-512, sha256_x16.c), else 1
 *   recordEnds(data: Buffer, state: Int32Array, ends: Uint32Array) → count
 *       the offsets of the LFs of `data` that end CSV records (outside double quotes), for the
 *       reload path's leaves; state[0] is 1 inside quotes, carried from one chunk to the next.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/sha.h>
#include <stdint.h>
#include "sha_prefix.h"
#include "sha256_x16.h"
#include <string.h>

SHA256_CTX sha_leaf_start, sha_node_start;

void sha_prefixes_init(void) {
  static const uint8_t zero = 0x00, one = 0x01;
  SHA256_Init(&sha_leaf_start);
  SHA256_Update(&sha_leaf_start, &zero, 1);
  SHA256_Init(&sha_node_start);
  SHA256_Update(&sha_node_start, &one, 1);
}

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_PG_EGRESS_SHA256", msg);
  return NULL;
}

static int buffer_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool ok = false;
  if (napi_is_buffer(env, v, &ok) != napi_ok || !ok) return 0;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

static void hash_prefixed(const SHA256_CTX *start, const uint8_t *data, size_t len, uint8_t *out) {
  SHA256_CTX ctx = *start;
  SHA256_Update(&ctx, data, len);
  SHA256_Final(out, &ctx);
}

/*
 * out[32i..] = SHA-256(prefix || msgs[i]) for i < n: sixteen at a time with AVX-512 where the CPU
 * has it (sha256_x16.c), a longer message (or any, without it) through OpenSSL.
 */
static void hash_many(uint8_t prefix, const SHA256_CTX *start, const uint8_t *const *msgs, const size_t *lens, size_t n, uint8_t *out) {
  int x16 = sha256x16_available();
  for (size_t i = 0; i < n; i += 16) {
    const uint8_t *m[16];
    size_t l[16];
    size_t at[16];
    uint8_t h[16 * 32];
    int k = 0;
    for (size_t j = i; j < n && j < i + 16; j++) {
      if (x16 && lens[j] <= SHA256X16_MAX_LEN) {
        m[k] = msgs[j];
        l[k] = lens[j];
        at[k++] = j;
      } else {
        hash_prefixed(start, msgs[j], lens[j], out + 32 * j);
      }
    }
    if (k == 0) continue;
    sha256x16_prefixed(prefix, m, l, k, h);
    for (int q = 0; q < k; q++) memcpy(out + 32 * at[q], h + 32 * q, 32);
  }
}

/*
 * hash_many over n messages of `base`, 256 pointers at a time (a bounded array on the stack):
 * message i is base[off[i]..off[i+1]] with `off`, else the `stride` bytes at base + stride * i.
 */
static void hash_runs(uint8_t prefix, const SHA256_CTX *start, const uint8_t *base, const uint32_t *off, size_t stride, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i += 256) {
    const uint8_t *m[256];
    size_t l[256];
    size_t c = n - i < 256 ? n - i : 256;
    for (size_t j = 0; j < c; j++) {
      m[j] = off ? base + off[i + j] : base + stride * (i + j);
      l[j] = off ? off[i + j + 1] - off[i + j] : stride;
    }
    hash_many(prefix, start, m, l, c, out + 32 * i);
  }
}

static napi_value leaves(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) return fail(env, "leaves(data, offsets, out)");
  uint8_t *data, *out;
  size_t data_len, out_len;
  if (!buffer_arg(env, argv[0], &data, &data_len) || !buffer_arg(env, argv[2], &out, &out_len)) return fail(env, "leaves: data and out must be Buffers");
  napi_typedarray_type type;
  size_t n_off;
  void *raw;
  if (napi_get_typedarray_info(env, argv[1], &type, &n_off, &raw, NULL, NULL) != napi_ok || type != napi_uint32_array) return fail(env, "leaves: offsets must be a Uint32Array");
  const uint32_t *off = (const uint32_t *)raw;
  if (n_off == 0) return NULL;
  size_t n = n_off - 1;
  if (out_len < n * 32) return fail(env, "leaves: out is too small");
  for (size_t i = 0; i < n; i++) {
    if (off[i] > off[i + 1] || off[i + 1] > data_len) return fail(env, "leaves: offsets out of order or past the data");
  }
  hash_runs(0x00, &sha_leaf_start, data, off, 0, n, out);
  return NULL;
}

static napi_value pairs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) return fail(env, "pairs(nodes, out)");
  uint8_t *in, *out;
  size_t in_len, out_len;
  if (!buffer_arg(env, argv[0], &in, &in_len) || !buffer_arg(env, argv[1], &out, &out_len)) return fail(env, "pairs: nodes and out must be Buffers");
  if (in_len % 64 != 0 || out_len < in_len / 2) return fail(env, "pairs: nodes must be 64-byte pairs and out half their size");
  hash_runs(0x01, &sha_node_start, in, NULL, 64, in_len / 64, out);
  return NULL;
}

static napi_value record_ends(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) return fail(env, "recordEnds(data, state, ends)");
  uint8_t *data;
  size_t len;
  if (!buffer_arg(env, argv[0], &data, &len)) return fail(env, "recordEnds: data must be a Buffer");
  napi_typedarray_type t1, t2;
  size_t n_state, cap;
  void *raw_state, *raw_ends;
  if (napi_get_typedarray_info(env, argv[1], &t1, &n_state, &raw_state, NULL, NULL) != napi_ok || t1 != napi_int32_array || n_state < 1) return fail(env, "recordEnds: state must be an Int32Array");
  if (napi_get_typedarray_info(env, argv[2], &t2, &cap, &raw_ends, NULL, NULL) != napi_ok || t2 != napi_uint32_array) return fail(env, "recordEnds: ends must be a Uint32Array");
  if (cap < len) return fail(env, "recordEnds: ends must have room for data.length entries");
  int32_t *state = (int32_t *)raw_state;
  uint32_t *ends = (uint32_t *)raw_ends;
  int in_quotes = state[0] != 0;
  uint32_t n = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = data[i];
    if (c == '"') in_quotes = !in_quotes;
    else if (c == '\n' && !in_quotes) ends[n++] = (uint32_t)i;
  }
  state[0] = in_quotes;
  napi_value result;
  napi_create_uint32(env, n, &result);
  return result;
}

/* shaLanes() -> 16 where leaves and pairs are hashed sixteen at a time (AVX-512), else 1. */
static napi_value sha_lanes(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_uint32(env, sha256x16_available() ? 16 : 1, &r);
  return r;
}

napi_value register_copy_sink(napi_env env, napi_value exports);
napi_value register_malloc_ctl(napi_env env, napi_value exports);
napi_value register_syncfs(napi_env env, napi_value exports);
napi_value register_csv_row(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  sha_prefixes_init();
  napi_property_descriptor props[] = {
      {"leaves", NULL, leaves, NULL, NULL, NULL, napi_default, NULL},
      {"pairs", NULL, pairs, NULL, NULL, NULL, napi_default, NULL},
      {"recordEnds", NULL, record_ends, NULL, NULL, NULL, napi_default, NULL},
      {"shaLanes", NULL, sha_lanes, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 4, props);
  return register_csv_row(env, register_syncfs(env, register_malloc_ctl(env, register_copy_sink(env, exports))));
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
