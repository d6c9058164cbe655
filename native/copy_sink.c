/*
 * One native pass over an export chunk's bytes (src/reload/copy-export.ts) or a streaming file's
 * (src/output/gzip-file.ts):
 *
 *   socket bytes --(strip CopyData framing)--> block of CSV --(record ends, leaf and node
 *   hashes)--> Merkle stack --(gzip member per block)--> output for the file
 *
 * without a JavaScript Buffer per CopyData message. The JavaScript fallback (same class shape in
 * copy-export.ts, PG_EGRESS_NATIVE=0 or no compiler) gives the same records, tree and raw bytes;
 * only the compressed bytes differ.
 *
 *   new Sink({ framing: bool, text: bool, merkle: bool, skip: n, level: 0-9, block: bytes, compress: bool,
 *              thread: bool, threadBlock: bytes (the block once the sink has a thread, if larger) })
 *               (compress: false → raw CSV out, for zlib: PG_EGRESS_DEFLATE=zlib;
 *                text: the COPY is FORMAT text, its rows converted to CSV by copy_text.c and
 *                hashed as they are converted; then write() bytes (the header) are no records)
 *   feed(buf) -> -1 while the COPY goes on; else the offset in buf where the client's part starts
 *                (after CopyDone, or at the message that ended the COPY: ErrorResponse, ...)
 *   leftover() -> the header bytes of that message read before buf (to hand back with buf)
 *   write(buf)  raw CSV (no framing): streaming files; with thread: true their full blocks are
 *               compressed on a thread (sink_async.c) while the next one fills
 *   take() -> Buffer | null   output so far (gzip members, or raw CSV blocks when level has no
 *                             native backend: the caller compresses with zlib)
 *   finish()    the last block
 *   stats() -> { rows, rawBytes, done, root, blocks }  (root: 32-byte Buffer; blocks: Buffer of 32-byte roots)
 *   readFd(socketFd, fileFd, cb), fdProgress(), fdCancel()   the COPY read off its socket on a
 *               thread of its own, the output written to the file there (copy_fd.c)
 *
 * Protocol: https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-COPY
 * Tree: RFC 6962 §2.1 (leaf = SHA-256(0x00 || record), node = SHA-256(0x01 || l || r)), the
 * same cascade as src/proof/merkle.ts, with a root for every complete block of 1024 leaves.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "deflate.h"
#include "copy_text.h"
#include "copy_sink.h"
#include "sha_prefix.h"
#include "sha256_x16.h"
#include "buf_pool.h"


static void node_hash(const uint8_t *l, const uint8_t *r, uint8_t *out) {
  /* The low-level calls: SHA256() goes through EVP_Q_digest, whose algorithm fetch (locks, a
     hash table lookup) costs more than hashing 65 bytes. One Update of both children. */
  uint8_t lr[64];
  memcpy(lr, l, 32);
  memcpy(lr + 32, r, 32);
  SHA256_CTX c = sha_node_start;
  SHA256_Update(&c, lr, 64);
  SHA256_Final(out, &c);
}

/* A complete subtree of `size` leaves (a power of two, below MERKLE_BLOCK), added where the
   tree's leaf count is a multiple of `size`: merged up the stack as `size` single leaves would be. */
static void add_entry(sink_t *s, const uint8_t *h, uint64_t size) {
  if (s->depth == MAX_DEPTH) return; /* 2^64 leaves: unreachable */
  memcpy(s->stack[s->depth], h, 32);
  s->sizes[s->depth++] = size;
  while (s->depth >= 2 && s->sizes[s->depth - 1] == s->sizes[s->depth - 2]) {
    int a = s->depth - 2;
    node_hash(s->stack[a], s->stack[a + 1], s->stack[a]);
    s->sizes[a] *= 2;
    s->depth--;
    if (s->sizes[a] == MERKLE_BLOCK) {
      if (s->n_block_roots == s->cap_block_roots) {
        size_t cap = s->cap_block_roots ? s->cap_block_roots * 2 : 64;
        uint8_t *p = realloc(s->block_roots, cap * 32);
        /* tree_error, not error: this may run on the sink's thread (sink_async.c). */
        if (!p) { s->tree_error = "out of memory"; return; }
        s->block_roots = p;
        s->cap_block_roots = cap;
      }
      memcpy(s->block_roots + 32 * s->n_block_roots++, s->stack[a], 32);
    }
  }
}

static void add_leaf(sink_t *s, const uint8_t *h) { add_entry(s, h, 1); }

/* The leaves waiting in the batch, hashed together and added to the tree in their order. */
static void leaves_flush(sink_t *s) {
  if (!s->x16_n) return;
  const uint8_t *m[16];
  uint8_t h[16 * 32];
  int n = s->x16_n;
  for (int i = 0; i < n; i++) m[i] = s->block + s->x16_off[i];
  sha256x16_prefixed(0x00, m, s->x16_len, n, h);
  s->x16_n = 0;
  for (int i = 0; i < n; i++) add_leaf(s, h + 32 * i);
}

/* The bytes [from, to) of a record whose end is at `to` (or not yet, when !end). */
static void record_part(sink_t *s, const uint8_t *p, size_t len, int end) {
  s->mid = !end;
  if (s->skip > 0) {
    if (end) s->skip--;
    return;
  }
  if (!s->leaf_open) {
    s->leaf = sha_leaf_start;
    s->leaf_open = 1;
  }
  if (len) SHA256_Update(&s->leaf, p, len);
  if (end) {
    uint8_t h[32];
    leaves_flush(s); /* the tree takes the leaves in record order */
    SHA256_Final(h, &s->leaf);
    s->leaf_open = 0;
    s->rows++;
    add_leaf(s, h);
  }
}

/*
 * Record ends: LFs outside double quotes (CSV as COPY writes it: a quote inside a quoted field is
 * doubled, which toggles twice). 64 bytes at a time: a bit mask of the quotes and of the LFs, the
 * "inside quotes" mask as the prefix XOR of the quotes (bit i = parity of the quotes at or before
 * i, carried from the previous 64 bytes), and the record ends = LFs not inside. Then the same
 * byte loop for the tail. Same result as a toggle per quote, byte by byte.
 */
static inline uint64_t prefix_xor(uint64_t x) {
  x ^= x << 1;
  x ^= x << 2;
  x ^= x << 4;
  x ^= x << 8;
  x ^= x << 16;
  x ^= x << 32;
  return x;
}

#ifdef __SSE2__
static inline uint64_t mask64(const uint8_t *d, __m128i c) {
  uint64_t m0 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)d), c));
  uint64_t m1 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(d + 16)), c));
  uint64_t m2 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(d + 32)), c));
  uint64_t m3 = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(d + 48)), c));
  return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
}
#else
static inline uint64_t mask64_scalar(const uint8_t *d, uint8_t c) {
  uint64_t m = 0;
  for (int k = 0; k < 64; k++) m |= (uint64_t)(d[k] == c) << k;
  return m;
}
#endif

/* Whole records of a scanned block whose leaves wait to be hashed sixteen at a time (the block
   does not move during a scan, so pointers do): for S1's 1M rows of ~150 bytes one SHA-256 at a
   time (SHA-NI) was most of the scan's ~270 ms. */
#define SUBTREE 256
typedef struct {
  const uint8_t *m[16];
  size_t len[16];
  int n;
  /* Leaves of a complete subtree of SUBTREE begun where the tree's leaf count was a multiple of
     it: its nodes are hashed sixteen at a time too (subtree_add). For S1's 1M rows the nodes, one
     at a time with the SHA extensions, were ~37% of the scan (perf). */
  uint8_t leaves[SUBTREE * 32];
  int nleaves;
} scan_batch_t;

static void subtree_add(sink_t *s, scan_batch_t *b) {
  uint8_t next[SUBTREE / 2 * 32];
  const uint8_t *m[16];
  size_t len[16];
  for (int i = 0; i < 16; i++) len[i] = 64;
  uint8_t *level = b->leaves;
  for (int n = SUBTREE; n > 1; n /= 2) {
    /* Node j of the level above = H(0x01 || left || right): its two children are adjacent. */
    for (int j = 0; j < n / 2; j += 16) {
      int k = n / 2 - j < 16 ? n / 2 - j : 16;
      for (int i = 0; i < k; i++) m[i] = level + 64 * (size_t)(j + i);
      sha256x16_prefixed(0x01, m, len, k, next + 32 * (size_t)j);
    }
    memcpy(level, next, 32 * (size_t)(n / 2));
  }
  add_entry(s, level, SUBTREE);
  b->nleaves = 0;
}

/* The subtree's leaves so far into the tree one by one (a record that is not batched, the scan's end). */
static void subtree_flush(sink_t *s, scan_batch_t *b) {
  for (int i = 0; i < b->nleaves; i++) add_leaf(s, b->leaves + 32 * i);
  b->nleaves = 0;
}

static void batch_flush(sink_t *s, scan_batch_t *b) {
  if (!b->n) return;
  uint8_t h[16 * 32];
  sha256x16_prefixed(0x00, b->m, b->len, b->n, h);
  for (int i = 0; i < b->n; i++) {
    /* s->rows counts the leaves hashed, the subtree's too: where none is pending, the tree's. */
    if (b->nleaves == 0 && s->rows % SUBTREE != 0) {
      add_leaf(s, h + 32 * i);
    } else {
      memcpy(b->leaves + 32 * b->nleaves++, h + 32 * i, 32);
      if (b->nleaves == SUBTREE) subtree_add(s, b);
    }
    s->rows++;
  }
  b->n = 0;
}

/* A record that ends at `p + len`: batched when it is whole in this block, else as before. */
static inline void record_end(sink_t *s, scan_batch_t *b, const uint8_t *p, size_t len) {
  if (s->x16 && !s->leaf_open && s->skip == 0 && len <= SHA256X16_MAX_LEN) {
    s->mid = 0;
    b->m[b->n] = p;
    b->len[b->n++] = len;
    if (b->n == 16) batch_flush(s, b);
    return;
  }
  batch_flush(s, b); /* the tree takes the leaves in record order */
  subtree_flush(s, b);
  record_part(s, p, len, 1);
}

void sink_scan_records(sink_t *s, const uint8_t *d, size_t n) {
  size_t start = 0, i = 0;
  scan_batch_t batch;
  batch.n = batch.nleaves = 0;
  uint64_t carry = s->in_quotes ? ~(uint64_t)0 : 0;
#ifdef __SSE2__
  const __m128i q = _mm_set1_epi8('"'), lf = _mm_set1_epi8('\n');
#endif
  for (; i + 64 <= n; i += 64) {
#ifdef __SSE2__
    uint64_t quotes = mask64(d + i, q), lfs = mask64(d + i, lf);
#else
    uint64_t quotes = mask64_scalar(d + i, '"'), lfs = mask64_scalar(d + i, '\n');
#endif
    uint64_t inside = prefix_xor(quotes) ^ carry;
    carry = (uint64_t)0 - (inside >> 63);
    uint64_t ends = lfs & ~inside;
    while (ends) {
      size_t e = i + (size_t)__builtin_ctzll(ends);
      ends &= ends - 1;
      record_end(s, &batch, d + start, e - start);
      start = e + 1;
    }
  }
  s->in_quotes = carry != 0;
  for (; i < n; i++) {
    uint8_t c = d[i];
    if (c == '"') s->in_quotes = !s->in_quotes;
    else if (c == '\n' && !s->in_quotes) {
      record_end(s, &batch, d + start, i - start);
      start = i + 1;
    }
  }
  batch_flush(s, &batch);
  subtree_flush(s, &batch);
  if (start < n) record_part(s, d + start, n - start, 0);
}

int sink_out_reserve(sink_t *s, size_t more) {
  if (s->out_len + more <= s->out_cap) return 1;
  size_t cap = s->out_cap ? s->out_cap : 64 * 1024;
  while (cap < s->out_len + more) cap *= 2;
  uint8_t *p = buf_resize(s->out, s->out_cap, s->out_len, cap);
  if (!p) return 0;
  s->out = p;
  s->out_cap = cap;
  return 1;
}

void sink_release_buffers(sink_t *s) {
  if (s->block_len == 0) {
    buf_put(s->block, s->block_cap);
    s->block = NULL;
    s->block_cap = 0;
  }
  if (s->out_len == 0) {
    buf_put(s->out, s->out_cap);
    s->out = NULL;
    s->out_cap = 0;
  }
}

void sink_tree_checked(sink_t *s) {
  if (s->tree_error && !s->error) s->error = s->tree_error;
}

void sink_flush_block(sink_t *s) {
  leaves_flush(s); /* their rows are in the block */
  sink_tree_checked(s);
  if (s->block_len == 0) return;
  /* With a thread, the block's records are found and hashed there, before it is compressed. */
  if (s->backend != GZ_NONE && s->thread && sink_async_submit(s)) {
    s->block_len = 0; /* handed over (or failed: the error is set) */
    return;
  }
  if (s->merkle && !s->text) sink_scan_records(s, s->block, s->block_len);
  sink_tree_checked(s);
  if (s->backend != GZ_NONE) {
    size_t bound = gz_bound(s->backend, s->level, s->block_len);
    if (!sink_out_reserve(s, bound)) { s->error = "out of memory"; return; }
    size_t n = gz_member(s->backend, s->level, s->block, s->block_len, s->out + s->out_len, bound);
    if (!n) { s->error = "compression failed"; return; }
    s->out_len += n;
  } else {
    if (!sink_out_reserve(s, s->block_len)) { s->error = "out of memory"; return; }
    memcpy(s->out + s->out_len, s->block, s->block_len);
    s->out_len += s->block_len;
  }
  s->block_len = 0;
}

/* Grows the block (from 64 KiB, doubling, up to block_max) until `room` bytes are free or it
   is block_max long. 0: out of memory. */
static int block_reserve(sink_t *s, size_t room) {
  if (s->block_cap - s->block_len >= room || s->block_cap >= s->block_max) return 1;
  size_t cap = s->block_cap ? s->block_cap : 64 * 1024;
  while (cap - s->block_len < room && cap < s->block_max) cap *= 2;
  if (cap > s->block_max) cap = s->block_max;
  uint8_t *b = buf_resize(s->block, s->block_cap, s->block_len, cap);
  if (!b) { s->error = "out of memory"; return 0; }
  s->block = b;
  s->block_cap = cap;
  return 1;
}

static void append(sink_t *s, const uint8_t *p, size_t n) {
  s->raw_bytes += n;
  while (n > 0 && !s->error) {
    if (s->block_len == s->block_cap) {
      if (s->block_cap == s->block_max) {
        sink_flush_block(s);
        continue;
      }
      if (!block_reserve(s, 1)) return;
    }
    size_t take = s->block_cap - s->block_len;
    if (take > n) take = n;
    memcpy(s->block + s->block_len, p, take);
    s->block_len += take;
    p += take;
    n -= take;
  }
}

/*
 * A text row converted to CSV (copy_text.c), straight into the block when it has room. Its leaf
 * is hashed here, while the row is in cache: the row's end is known, so the block's record scan
 * is not needed in text mode.
 */
/*
 * A whole text row's leaf: with the AVX-512 path, a short row in the block waits for fifteen
 * others (its offset is kept: the block may move when it grows); otherwise hashed at once.
 */
static void leaf_of_row(sink_t *s, const uint8_t *row, size_t len, int in_block) {
  if (s->skip > 0 || !s->x16 || !in_block || len > SHA256X16_MAX_LEN) {
    record_part(s, row, len, 1);
    return;
  }
  s->mid = 0;
  s->x16_off[s->x16_n] = (size_t)(row - s->block);
  s->x16_len[s->x16_n++] = len;
  s->rows++;
  if (s->x16_n == 16) leaves_flush(s);
}

static void convert_row(sink_t *s, const uint8_t *row, size_t len, size_t readable) {
  size_t room = COPY_TEXT_ROOM(len);
  if (!block_reserve(s, room)) return;
  uint8_t *o;
  int direct = s->block_cap - s->block_len >= room;
  if (direct) {
    o = s->block + s->block_len;
  } else {
    if (s->conv_cap < room) {
      uint8_t *c = buf_resize(s->conv, s->conv_cap, 0, room);
      if (!c) { s->error = "out of memory"; return; }
      s->conv = c;
      s->conv_cap = room;
    }
    o = s->conv;
  }
  size_t k = copy_text_row(o, row, len, readable, &s->error);
  if (!k) return;
  if (s->merkle) {
    leaf_of_row(s, o, k - 1, direct);
    sink_tree_checked(s);
  }
  if (direct) {
    s->block_len += k;
    s->raw_bytes += k;
  } else {
    append(s, o, k);
  }
}

/* CopyData payload bytes of a text COPY: whole rows converted, a partial one kept for later. */
static void text_in(sink_t *s, const uint8_t *p, size_t n) {
  while (n && !s->error) {
    const uint8_t *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl + 1 - p) : n;
    if (s->pend_len || !nl) {
      if (s->pend_len + k > s->pend_cap) {
        size_t cap = s->pend_cap ? s->pend_cap : 4096;
        while (cap < s->pend_len + k) cap *= 2;
        uint8_t *b = buf_resize(s->pend, s->pend_cap, s->pend_len, cap);
        if (!b) { s->error = "out of memory"; return; }
        s->pend = b;
        s->pend_cap = cap;
      }
      memcpy(s->pend + s->pend_len, p, k);
      s->pend_len += k;
      if (nl) {
        convert_row(s, s->pend, s->pend_len, s->pend_cap);
        s->pend_len = 0;
        if (s->pend_cap > 65536) {
          buf_put(s->pend, s->pend_cap);
          s->pend = NULL;
          s->pend_cap = 0;
        }
      }
    } else {
      convert_row(s, p, k, n);
    }
    p += k;
    n -= k;
  }
}

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* Returns -1 while the COPY goes on, else the offset where the client's bytes start. */
int64_t sink_feed_frames(sink_t *s, const uint8_t *d, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    if (s->in_payload) {
      size_t take = s->remaining < n - pos ? s->remaining : n - pos;
      if (s->type == 'd') {
        if (s->text) text_in(s, d + pos, take);
        else append(s, d + pos, take);
      }
      pos += take;
      s->remaining -= (uint32_t)take;
      if (s->remaining == 0) s->in_payload = 0;
      continue;
    }
    size_t start = pos;
    int carried = s->hdr_len;
    while (s->hdr_len < 5 && pos < n) s->hdr[s->hdr_len++] = d[pos++];
    if (s->hdr_len < 5) return -1;
    s->hdr_len = 0;
    uint8_t type = s->hdr[0];
    uint32_t len = be32(s->hdr + 1);
    switch (type) {
      case 'd': /* CopyData */
      case 'H': /* CopyOutResponse */
      case 'N': /* NoticeResponse */
      case 'S': /* ParameterStatus */
      case 'A': /* NotificationResponse */
        if (len < 4) { s->error = "malformed message length in COPY data"; return -1; }
        s->type = type;
        s->remaining = len - 4;
        s->in_payload = s->remaining > 0;
        break;
      case 'c': /* CopyDone: the client gets everything after it */
        if (len != 4) { s->error = "malformed CopyDone"; return -1; }
        s->done = s->copy_done = 1;
        return (int64_t)pos;
      default: /* ErrorResponse or anything else: the client reads it from its start */
        s->done = 1;
        if (carried) {
          memcpy(s->leftover, s->hdr, (size_t)carried);
          s->leftover_len = carried;
        }
        return (int64_t)start;
    }
  }
  return -1;
}

/* ---- N-API glue ---- */

static napi_value throw_err(napi_env env, const char *msg) {
  napi_throw_error(env, "ERR_PG_EGRESS_SINK", msg);
  return NULL;
}

static void sink_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  sink_t *s = data;
  /* The environment going away while a readFd thread still runs (a reference holds the sink
     until its end otherwise): the thread is told to stop and the sink is left to it. */
  if (s->fd_job) {
    sink_fd_cancel_job(s);
    return;
  }
  sink_async_stop(s); /* a file abandoned before finish() */
  if (s->file_fd >= 0) close(s->file_fd);
  buf_put(s->block, s->block_cap);
  buf_put(s->out, s->out_cap);
  free(s->block_roots);
  buf_put(s->pend, s->pend_cap);
  buf_put(s->conv, s->conv_cap);
  free(s);
}

static int get_prop_int(napi_env env, napi_value obj, const char *name, int64_t def, int64_t *out) {
  bool has = false;
  *out = def;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok) return 0;
  if (!has) return 1;
  napi_value v;
  napi_valuetype t;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_boolean) {
    bool b;
    napi_get_value_bool(env, v, &b);
    *out = b;
    return 1;
  }
  if (t == napi_number) return napi_get_value_int64(env, v, out) == napi_ok;
  return t == napi_undefined;
}

static napi_value sink_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok || argc < 1) return throw_err(env, "new Sink(options)");
  int64_t framing, merkle, skip, level, block, compress, text, thread, thread_block;
  if (!get_prop_int(env, argv[0], "framing", 0, &framing) || !get_prop_int(env, argv[0], "thread", 0, &thread) ||
      !get_prop_int(env, argv[0], "threadBlock", 0, &thread_block) || !get_prop_int(env, argv[0], "text", 0, &text) || !get_prop_int(env, argv[0], "compress", 1, &compress) || !get_prop_int(env, argv[0], "merkle", 0, &merkle) || !get_prop_int(env, argv[0], "skip", 0, &skip) ||
      !get_prop_int(env, argv[0], "level", 1, &level) || !get_prop_int(env, argv[0], "block", 1 << 20, &block))
    return throw_err(env, "Sink options: framing, text, merkle, compress, thread (booleans), skip, level, block (numbers)");
  if (level < 0 || level > 9 || block < 1 || block > (1 << 30) || skip < 0 || thread_block < 0 || thread_block > (1 << 30))
    return throw_err(env, "Sink options out of range");
  sink_t *s = calloc(1, sizeof(sink_t));
  if (!s) return throw_err(env, "out of memory");
  s->framing = (int)framing;
  s->text = (int)text && s->framing;
  s->merkle = (int)merkle;
  s->x16 = sha256x16_available();
  s->skip = skip;
  s->level = (int)level;
  s->backend = compress ? gz_backend_for(s->level) : GZ_NONE;
  s->block_max = (size_t)block;
  s->thread_block = (size_t)thread_block;
  s->thread = (int)thread && !s->framing; /* an export's COPY has a thread of its own (readFd) */
  s->file_fd = -1;
  s->command_rows = -1;
  if (napi_wrap(env, self, s, sink_free, NULL, NULL) != napi_ok) {
    free(s);
    return throw_err(env, "could not wrap the sink");
  }
  return self;
}

static sink_t *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &p) != napi_ok) return NULL;
  if (p && ((sink_t *)p)->busy) {
    napi_throw_error(env, "ERR_PG_EGRESS_SINK", "the sink is busy: its COPY is read on its own thread (readFd)");
    return NULL;
  }
  return p;
}

static int buffer_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool ok = false;
  if (napi_is_buffer(env, v, &ok) != napi_ok || !ok) return 0;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

static napi_value sink_feed(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  sink_t *s = unwrap(env, info, &argc, argv);
  uint8_t *d;
  size_t n;
  if (!s || argc < 1 || !buffer_arg(env, argv[0], &d, &n)) return throw_err(env, "feed(buffer)");
  if (!s->framing) return throw_err(env, "feed: this sink takes raw CSV (write)");
  if (s->done) return throw_err(env, "feed: the COPY has ended");
  int64_t at = sink_feed_frames(s, d, n);
  if (s->error) return throw_err(env, s->error);
  napi_create_int64(env, at, &r);
  return r;
}

static napi_value sink_write(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  sink_t *s = unwrap(env, info, &argc, argv);
  uint8_t *d;
  size_t n;
  if (!s || argc < 1 || !buffer_arg(env, argv[0], &d, &n)) return throw_err(env, "write(buffer)");
  append(s, d, n);
  if (s->error) return throw_err(env, s->error);
  return NULL;
}

static napi_value sink_take(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value r;
  sink_t *s = unwrap(env, info, &argc, NULL);
  if (!s) return throw_err(env, "take()");
  sink_async_poll(s);
  if (s->error) return throw_err(env, s->error);
  if (s->out_len == 0) {
    napi_get_null(env, &r);
    return r;
  }
  void *copy;
  if (napi_create_buffer_copy(env, s->out_len, s->out, &copy, &r) != napi_ok) return throw_err(env, "out of memory");
  s->out_len = 0;
  /* A large output buffer (one raw 1 MiB block) is not kept across calls for nothing. */
  if (s->out_cap > 4 * s->block_max + 65536) {
    buf_put(s->out, s->out_cap);
    s->out = NULL;
    s->out_cap = 0;
  }
  return r;
}

static napi_value sink_finish(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  sink_t *s = unwrap(env, info, &argc, NULL);
  if (!s) return throw_err(env, "finish()");
  sink_flush_block(s);
  sink_async_stop(s); /* the last block's member, in order */
  sink_tree_checked(s);
  if (s->file_mode && !s->error) sink_drain_to_file(s);
  /* An empty file is still a gzip file: one empty member. */
  if (!s->error && s->backend != GZ_NONE && s->raw_bytes == 0 && s->out_len == 0) {
    size_t bound = gz_bound(s->backend, s->level, 0);
    if (sink_out_reserve(s, bound)) s->out_len = gz_member(s->backend, s->level, (const uint8_t *)"", 0, s->out, bound);
    if (!s->out_len) s->error = "compression failed";
    else if (s->file_mode) sink_drain_to_file(s);
  }
  if (!s->error && s->pend_len) s->error = "COPY text output ends inside a row";
  /* COPY always ends with a record's LF: anything else is a cut stream (CsvRecordRanges.end). */
  if (!s->error && s->merkle && (s->mid || s->in_quotes)) s->error = "CSV input ends inside a record";
  s->block_len = 0;
  sink_release_buffers(s);
  if (s->file_fd >= 0) {
    close(s->file_fd);
    s->file_fd = -1;
  }
  if (s->error) {
    napi_throw(env, sink_error_value(env, s));
    return NULL;
  }
  return NULL;
}

static napi_value sink_leftover(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value r;
  void *copy;
  sink_t *s = unwrap(env, info, &argc, NULL);
  if (!s) return throw_err(env, "leftover()");
  napi_create_buffer_copy(env, (size_t)s->leftover_len, s->leftover, &copy, &r);
  return r;
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, obj, name, x);
}

static napi_value sink_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value r, root, blocks, b;
  void *copy;
  sink_t *s = unwrap(env, info, &argc, NULL);
  if (!s) return throw_err(env, "stats()");
  napi_create_object(env, &r);
  set_num(env, r, "rows", (double)s->rows);
  set_num(env, r, "rawBytes", (double)s->raw_bytes);
  napi_get_boolean(env, s->copy_done, &b);
  napi_set_named_property(env, r, "copyDone", b);
  napi_get_boolean(env, s->done, &b);
  napi_set_named_property(env, r, "done", b);
  leaves_flush(s);
  sink_tree_checked(s);
  uint8_t acc[32];
  if (s->depth == 0) {
    SHA256((const uint8_t *)"", 0, acc);
  } else {
    memcpy(acc, s->stack[s->depth - 1], 32);
    for (int i = s->depth - 2; i >= 0; i--) node_hash(s->stack[i], acc, acc);
  }
  napi_create_buffer_copy(env, 32, acc, &copy, &root);
  napi_set_named_property(env, r, "root", root);
  napi_create_buffer_copy(env, 32 * s->n_block_roots, s->n_block_roots ? s->block_roots : acc, &copy, &blocks);
  napi_set_named_property(env, r, "blocks", blocks);
  napi_value backend;
  napi_create_string_utf8(env, gz_backend_name(s->backend), NAPI_AUTO_LENGTH, &backend);
  napi_set_named_property(env, r, "deflate", backend);
  if (s->command_rows >= 0) set_num(env, r, "commandRows", (double)s->command_rows);
  if (s->file_mode) {
    /* readFd's file: its size and sha256 so far (hex). */
    uint8_t d[32];
    char hex[65];
    SHA256_CTX c = s->file_ctx;
    SHA256_Final(d, &c);
    for (int i = 0; i < 32; i++) {
      hex[2 * i] = "0123456789abcdef"[d[i] >> 4];
      hex[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
    }
    napi_value sha;
    napi_create_string_utf8(env, hex, 64, &sha);
    napi_set_named_property(env, r, "fileSha256", sha);
    set_num(env, r, "fileBytes", (double)s->file_bytes);
  }
  return r;
}

/* deflateBackend(level) -> "isa-l" | "libdeflate" | "zlib" (zlib: not in the addon) */
static napi_value deflate_backend(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  int32_t level = 1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc >= 1) napi_get_value_int32(env, argv[0], &level);
  napi_create_string_utf8(env, gz_backend_name(gz_backend_for(level)), NAPI_AUTO_LENGTH, &r);
  return r;
}

napi_value register_copy_sink(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"feed", NULL, sink_feed, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, sink_write, NULL, NULL, NULL, napi_default, NULL},
      {"take", NULL, sink_take, NULL, NULL, NULL, napi_default, NULL},
      {"finish", NULL, sink_finish, NULL, NULL, NULL, napi_default, NULL},
      {"leftover", NULL, sink_leftover, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, sink_stats, NULL, NULL, NULL, napi_default, NULL},
      {"readFd", NULL, sink_read_fd, NULL, NULL, NULL, napi_default, NULL},
      {"fdProgress", NULL, sink_fd_progress, NULL, NULL, NULL, napi_default, NULL},
      {"fdCancel", NULL, sink_fd_cancel, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls, fn;
  napi_define_class(env, "Sink", NAPI_AUTO_LENGTH, sink_new, NULL, sizeof(methods) / sizeof(methods[0]), methods, &cls);
  napi_set_named_property(env, exports, "Sink", cls);
  napi_create_function(env, "deflateBackend", NAPI_AUTO_LENGTH, deflate_backend, NULL, &fn);
  napi_set_named_property(env, exports, "deflateBackend", fn);
  return exports;
}
