/*
 * encodeRow(out, at, lsnField, seq, midField, op, msg, tupleAt, idx) -> new length | -1 | -2
 *
 * One streaming row (src/output/row-encoder.ts, SPEC §4) written into `out` from byte `at`:
 *
 *   <lsnField><seq><midField><op>,<_unchanged: empty>,<value>,...,<value>\n
 *
 * where the values are columns idx[0..] (Int32Array) of the pgoutput TupleData that starts at
 * msg[tupleAt] (its column count), already checked by src/wal/pgoutput.ts. A value is quoted when
 * COPY's CSV would quote it: empty, or holding a comma, a quote, CR or LF; quotes inside are
 * doubled (https://www.postgresql.org/docs/15/sql-copy.html#id-1.9.3.55.9.4). NULL, and a column
 * past the tuple's end, is nothing. The same bytes as CsvBuffer.valueRange (src/output/csv.ts);
 * test/unit/csv-row-native.test.ts compares the two.
 *
 * -1: `out` has no room for the row (the caller makes room and calls again); -2: an unchanged
 * TOAST value ('u') is among the columns, or more columns than this handles: the caller's
 * JavaScript path writes the row (it names the column in _unchanged, or fills it).
 *
 * Why: the JavaScript encoder's byte loops were ~160 ms of the ~0.8 s main thread of the S2
 * benchmark (220,000 rows; node --cpu-prof), the largest share of it.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* pgoutput allows MaxTupleAttributeNumber (1664) columns; the stack arrays hold this many. */
#define MAX_COLS 1700

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* Whether [p, p+n) holds a comma, quote, CR or LF. */
static int needs_quote(const uint8_t *p, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i comma = _mm_set1_epi8(','), quote = _mm_set1_epi8('"'), lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, quote)),
                             _mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)));
    if (_mm_movemask_epi8(m)) return 1;
  }
#endif
  for (; i < n; i++) {
    uint8_t c = p[i];
    if (c <= ',' && (c == ',' || c == '"' || c == '\n' || c == '\r')) return 1;
  }
  return 0;
}

static uint8_t *put_quoted(uint8_t *o, const uint8_t *p, size_t n) {
  *o++ = '"';
  const uint8_t *end = p + n;
  if (n <= 128) {
    /* Short values byte by byte: a memchr call per quote cost more (a JSON value has many). */
    for (; p < end; p++) {
      *o++ = *p;
      if (*p == '"') *o++ = '"';
    }
    *o++ = '"';
    return o;
  }
  while (p < end) {
    const uint8_t *q = memchr(p, '"', (size_t)(end - p));
    size_t k = q ? (size_t)(q + 1 - p) : (size_t)(end - p);
    memcpy(o, p, k);
    o += k;
    p += k;
    if (q) *o++ = '"';
  }
  *o++ = '"';
  return o;
}

static uint8_t *put_uint(uint8_t *o, uint64_t v) {
  uint8_t d[20];
  int k = 0;
  do {
    d[k++] = (uint8_t)('0' + v % 10);
    v /= 10;
  } while (v);
  while (k) *o++ = d[--k];
  return o;
}

/* A Buffer (a Uint8Array): one call that also checks the type (napi_is_buffer and
   napi_get_buffer_info were two, per argument, per row). `data` is already at the view's offset. */
static int buf_arg(napi_env env, napi_value v, uint8_t **d, size_t *n) {
  napi_typedarray_type t;
  return napi_get_typedarray_info(env, v, &t, n, (void **)d, NULL, NULL) == napi_ok && t == napi_uint8_array;
}

static napi_value result(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

/* Row core shared by encodeRow and encodeInserts: writes the row into out[at..cap) and returns
   the new length, -1 (no room), -2 (unchanged TOAST, or too many columns), -3 (a malformed tuple). */
static int64_t put_row(uint8_t *out, size_t cap, size_t at, const uint8_t *lsn, size_t lsn_n, uint64_t seq,
                       const uint8_t *mid, size_t mid_n, uint8_t op, const uint8_t *msg, size_t msg_n, size_t tuple_at,
                       const int32_t *idx, size_t ncols_out) {
  /* The tuple's values: start (or -1 NULL, -2 unchanged TOAST) and length. */
  if (tuple_at + 2 > msg_n) return -3;
  const uint8_t *p = msg + tuple_at, *end = msg + msg_n;
  int n = (p[0] << 8) | p[1];
  p += 2;
  if (n > MAX_COLS) return -2;
  int32_t start[MAX_COLS], len[MAX_COLS];
  for (int i = 0; i < n; i++) {
    if (p >= end) return -3;
    uint8_t kind = *p++;
    if (kind == 't') {
      if (end - p < 4) return -3;
      uint32_t l = be32(p);
      p += 4;
      if (l > (uint32_t)(end - p)) return -3;
      start[i] = (int32_t)(p - msg);
      len[i] = (int32_t)l;
      p += l;
    } else if (kind == 'n') {
      start[i] = -1;
    } else if (kind == 'u') {
      start[i] = -2;
    } else {
      return -3; /* 'b' is never asked for; pgoutput.ts refused anything else already */
    }
  }
  /* Room: each value at worst doubled plus its quotes and comma. */
  size_t need = lsn_n + 20 + mid_n + 2 + 1;
  for (size_t i = 0; i < ncols_out; i++) {
    int32_t c = idx[i];
    if (c < 0) return -3;
    if (c >= n) need += 1;
    else if (start[c] == -2) return -2;
    else need += 1 + (start[c] >= 0 ? 2 * (size_t)len[c] + 2 : 0);
  }
  if (cap - at < need) return -1;

  uint8_t *o = out + at;
  memcpy(o, lsn, lsn_n);
  o = put_uint(o + lsn_n, seq);
  memcpy(o, mid, mid_n);
  o += mid_n;
  *o++ = op;
  *o++ = ','; /* _unchanged: none */
  for (size_t i = 0; i < ncols_out; i++) {
    *o++ = ',';
    int32_t c = idx[i];
    if (c >= n || start[c] < 0) continue;
    const uint8_t *v = msg + start[c];
    size_t l = (size_t)len[c];
    if (l == 0) {
      *o++ = '"';
      *o++ = '"';
      continue;
    }
    if (needs_quote(v, l)) {
      o = put_quoted(o, v, l);
    } else {
      memcpy(o, v, l);
      o += l;
    }
  }
  *o++ = '\n';
  return (int64_t)(o - out);
}

static napi_value encode_row(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 9) goto bad;
  uint8_t *out, *lsn, *mid, *msg;
  size_t cap, lsn_n, mid_n, msg_n;
  int64_t at, seq, tuple_at;
  uint32_t op;
  napi_typedarray_type tt;
  size_t ncols_out;
  void *idx_data;
  if (!buf_arg(env, argv[0], &out, &cap) || napi_get_value_int64(env, argv[1], &at) != napi_ok ||
      !buf_arg(env, argv[2], &lsn, &lsn_n) || napi_get_value_int64(env, argv[3], &seq) != napi_ok ||
      !buf_arg(env, argv[4], &mid, &mid_n) || napi_get_value_uint32(env, argv[5], &op) != napi_ok ||
      !buf_arg(env, argv[6], &msg, &msg_n) || napi_get_value_int64(env, argv[7], &tuple_at) != napi_ok ||
      napi_get_typedarray_info(env, argv[8], &tt, &ncols_out, &idx_data, NULL, NULL) != napi_ok || tt != napi_int32_array)
    goto bad;
  if (at < 0 || (size_t)at > cap || seq < 0 || tuple_at < 0) goto bad;
  int64_t r = put_row(out, cap, (size_t)at, lsn, lsn_n, (uint64_t)seq, mid, mid_n, (uint8_t)op, msg, msg_n, (size_t)tuple_at, idx_data, ncols_out);
  if (r == -3) goto bad;
  return result(env, r);
bad:
  napi_throw_error(env, "ERR_PG_EGRESS_ROW", "encodeRow(out, at, lsnField, seq, midField, op, msg, tupleAt, idx: Int32Array): bad arguments or tuple");
  return NULL;
}

/*
 * encodeInserts(out, at, lsnField, seq, midField, spool, from, to, relOid, idx, stopAt, res) -> rows
 *
 * A run of inserts into one table as a streamed transaction's spool holds them (src/batch/streamed.ts:
 * records of u32 body length, u32 xid, body = the Insert message without its xid: 'I', relation oid,
 * 'N', TupleData), from spool[from] on, each written as encodeRow writes it with `_seq` counting up
 * from `seq`. Stops before a record that is not a whole Insert into `relOid` within spool[..to), before
 * a row that has no room or that encodeRow would leave to JavaScript, and after the row that
 * takes `out` to `stopAt` or past it (where the caller hands a chunk to the compressor).
 * res[0] = the new length of `out`, res[1] = where in `spool` the next record starts.
 *
 * Why: replaying a streamed transaction cost a message object, a Tuple and a copy per row in
 * JavaScript (decodePgOutput, the controller, the window): ~1.5 s for S1's 1M rows, most of it
 * after the commit, while one core was the hog's (S1-load).
 */
static napi_value encode_inserts(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 12) goto bad;
  uint8_t *out, *lsn, *mid, *spool;
  size_t cap, lsn_n, mid_n, spool_n;
  int64_t at, seq, from, to, stop_at;
  uint32_t rel;
  napi_typedarray_type tt, rt;
  size_t ncols_out, res_n;
  void *idx_data, *res_data;
  if (!buf_arg(env, argv[0], &out, &cap) || napi_get_value_int64(env, argv[1], &at) != napi_ok ||
      !buf_arg(env, argv[2], &lsn, &lsn_n) || napi_get_value_int64(env, argv[3], &seq) != napi_ok ||
      !buf_arg(env, argv[4], &mid, &mid_n) || !buf_arg(env, argv[5], &spool, &spool_n) ||
      napi_get_value_int64(env, argv[6], &from) != napi_ok || napi_get_value_int64(env, argv[7], &to) != napi_ok ||
      napi_get_value_uint32(env, argv[8], &rel) != napi_ok ||
      napi_get_typedarray_info(env, argv[9], &tt, &ncols_out, &idx_data, NULL, NULL) != napi_ok || tt != napi_int32_array ||
      napi_get_value_int64(env, argv[10], &stop_at) != napi_ok ||
      napi_get_typedarray_info(env, argv[11], &rt, &res_n, &res_data, NULL, NULL) != napi_ok || rt != napi_float64_array || res_n < 2)
    goto bad;
  if (at < 0 || (size_t)at > cap || seq < 0 || from < 0 || to < from || (size_t)to > spool_n) goto bad;
  double *res = res_data;
  size_t o = (size_t)at, pos = (size_t)from;
  int64_t rows = 0;
  while ((int64_t)o < stop_at && to - (int64_t)pos >= 8 + 7) {
    const uint8_t *h = spool + pos;
    size_t body_n = be32(h);
    const uint8_t *body = h + 8;
    if ((size_t)to - pos - 8 < body_n || body_n < 7 || body[0] != 'I' || be32(body + 1) != rel || body[5] != 'N') break;
    int64_t r = put_row(out, cap, o, lsn, lsn_n, (uint64_t)(seq + rows), mid, mid_n, 'I', body, body_n, 6, idx_data, ncols_out);
    if (r < 0) break; /* no room, or a row for the JavaScript path (which also reports a bad tuple) */
    o = (size_t)r;
    pos += 8 + body_n;
    rows++;
  }
  res[0] = (double)o;
  res[1] = (double)pos;
  return result(env, rows);
bad:
  napi_throw_error(env, "ERR_PG_EGRESS_ROW", "encodeInserts(out, at, lsnField, seq, midField, spool, from, to, relOid, idx: Int32Array, stopAt, res: Float64Array): bad arguments");
  return NULL;
}

napi_value register_csv_row(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {{"encodeRow", NULL, encode_row, NULL, NULL, NULL, napi_default, NULL},
                                      {"encodeInserts", NULL, encode_inserts, NULL, NULL, NULL, napi_default, NULL}};
  napi_define_properties(env, exports, 2, props);
  return exports;
}
