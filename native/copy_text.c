/*
 * COPY text → CSV. The server spends about a fifth more CPU on FORMAT csv than on text (measured
 * on the benchmark's table: 3.07 against 2.53 CPU s for 2M rows), so the native export path asks
 * for text and writes here, byte for byte, the CSV that COPY (FORMAT csv) would have sent:
 *
 * - text (CopyAttributeOutText): a backslash is written \\, and \b \f \n \r \t \v stand for those
 *   control characters; NULL is the field \N. Nothing else is escaped on output; a row ends with
 *   LF and its fields are separated by tabs, so neither occurs raw in a field.
 * - CSV (CopyAttributeOutCSV): a field is quoted when it contains the delimiter, the quote, CR or
 *   LF, when it is empty (unquoted it would read as NULL), or when it is \. alone in a one-column
 *   row (the end-of-data marker); a quote inside is doubled. NULL is an empty unquoted field.
 * https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/commands/copyto.c
 *
 * Both rules assume a client encoding whose multi-byte characters never contain ASCII bytes:
 * our connections are UTF8 (src/db/connect.ts).
 *
 * Speed: most bytes are in fields that need no change, and those are copied 16 bytes at a time
 * with tabs turned into commas, written ahead on the assumption that the field is plain; a field
 * found to need quotes (a comma or quote in it), escapes (a backslash), or to be empty is then
 * written again from its start. Stores of 16 bytes may run up to 32 bytes past the row's end
 * (COPY_TEXT_ROOM); loads never pass the row's LF.
 */
#include "copy_text.h"
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const uint8_t unescape_tab[256] = {['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t', ['v'] = '\v', ['\\'] = '\\'};

#ifdef __SSE2__
static inline uint32_t eq16(__m128i x, char c) { return (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(c))); }
#endif

/* "field" with its quotes doubled, for a field without backslashes. */
static uint8_t *quoted(uint8_t *o, const uint8_t *f, const uint8_t *e) {
  *o++ = '"';
#ifdef __SSE2__
  while (e - f >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)f);
    uint32_t q = eq16(x, '"');
    _mm_storeu_si128((__m128i *)o, x);
    if (!q) {
      o += 16;
      f += 16;
      continue;
    }
    unsigned k = (unsigned)__builtin_ctz(q) + 1; /* up to the quote, then its double */
    o += k;
    *o++ = '"';
    f += k;
  }
#endif
  for (; f < e; f++) {
    if (*f == '"') *o++ = '"';
    *o++ = *f;
  }
  *o++ = '"';
  return o;
}

/* A field with backslashes: decoded, then quoted when the value needs it. */
static uint8_t *escaped(uint8_t *o, const uint8_t *f, const uint8_t *e, int single, const char **error) {
  uint8_t *start = o;
  *o++ = '"';
  int quote = 0;
  while (f < e) {
    uint8_t c = *f++;
    if (c == '\\') {
      if (f == e || !unescape_tab[*f]) {
        *error = "unexpected escape in COPY text output";
        return start;
      }
      c = unescape_tab[*f++];
    }
    if (c == '"') {
      *o++ = '"';
      quote = 1;
    } else if (c == ',' || c == '\n' || c == '\r') {
      quote = 1;
    }
    *o++ = c;
  }
  size_t len = (size_t)(o - start - 1);
  if (!quote && len == 2 && single && start[1] == '\\' && start[2] == '.') quote = 1;
  if (!quote && len) {
    memmove(start, start + 1, len);
    return start + len;
  }
  *o++ = '"';
  return o;
}

/* A field the scan found dirty (flags: 1 a backslash, 2 a comma or quote) or empty. */
static uint8_t *dirty_field(uint8_t *o, const uint8_t *f, const uint8_t *e, uint32_t flags, int single, const char **error) {
  if (flags & 1) return e - f == 2 && f[0] == '\\' && f[1] == 'N' ? o : escaped(o, f, e, single, error);
  return quoted(o, f, e); /* with quotes or commas, or empty */
}

size_t copy_text_row(uint8_t *out, const uint8_t *row, size_t len, size_t readable, const char **error) {
  const size_t n = len - 1; /* the LF */
  size_t i = 0, f = 0;      /* input: the scan, the current field's start */
  uint8_t *of = out;        /* output: the current field's start */
  int fields = 0;
  uint32_t dbs = 0, dcq = 0; /* the current field so far has a backslash; a comma or quote */
#ifdef __SSE2__
  const __m128i swap = _mm_set1_epi8('\t' ^ ',');
  while (i < n) {
    /* 16 bytes; the row's last ones from a copy unless the buffer goes on past them. */
    __m128i x;
    uint32_t valid = 0xffff;
    if (i + 16 <= readable) {
      x = _mm_loadu_si128((const __m128i *)(row + i));
    } else {
      uint8_t tmp[16] = {0};
      memcpy(tmp, row + i, len - i);
      x = _mm_loadu_si128((const __m128i *)tmp);
    }
    if (n - i < 16) valid = (1u << (n - i)) - 1;
    __m128i t = _mm_cmpeq_epi8(x, _mm_set1_epi8('\t'));
    uint32_t tabs = (uint32_t)_mm_movemask_epi8(t) & valid;
    uint32_t bs = eq16(x, '\\') & valid, cq = (eq16(x, ',') | eq16(x, '"')) & valid;
    /* Ahead: the chunk as plain fields, tabs as commas. */
    _mm_storeu_si128((__m128i *)(of + (i - f)), _mm_xor_si128(x, _mm_and_si128(t, swap)));
    int again = 0;
    while (tabs) {
      unsigned k = (unsigned)__builtin_ctz(tabs);
      size_t e = i + k;
      uint32_t upto = (2u << k) - 1;
      uint32_t flags = (dbs | (bs & upto) ? 1u : 0u) | (dcq | (cq & upto) ? 2u : 0u);
      if (flags || e == f) {
        /* Written again from the field's start; the scan goes on after its tab. */
        of = dirty_field(of, row + f, row + e, flags, 0, error);
        if (*error) return 0;
        *of++ = ',';
        fields++;
        f = i = e + 1;
        dbs = dcq = 0;
        again = 1;
        break;
      }
      of += e + 1 - f; /* plain: in place, its comma too */
      f = e + 1;
      fields++;
      bs &= ~upto;
      cq &= ~upto;
      tabs &= tabs - 1;
    }
    if (again) continue;
    dbs |= bs;
    dcq |= cq;
    i += 16;
  }
#else
  (void)readable;
  for (; i < n; i++) {
    uint8_t c = row[i];
    if (c == '\t') {
      uint32_t flags = (dbs ? 1u : 0u) | (dcq ? 2u : 0u);
      if (flags || i == f) {
        of = dirty_field(of, row + f, row + i, flags, 0, error);
        if (*error) return 0;
      } else {
        memcpy(of, row + f, i - f);
        of += i - f;
      }
      *of++ = ',';
      fields++;
      f = i + 1;
      dbs = dcq = 0;
    } else {
      dbs |= c == '\\';
      dcq |= c == ',' || c == '"';
    }
  }
  if (!dbs && !dcq && n > f) memcpy(of, row + f, n - f);
#endif
  /* The last field; a row without a tab has one column, the only case where \. alone is quoted. */
  uint32_t flags = (dbs ? 1u : 0u) | (dcq ? 2u : 0u);
  if (flags || n == f) {
    of = dirty_field(of, row + f, row + n, flags, fields == 0, error);
    if (*error) return 0;
  } else {
    of += n - f;
  }
  *of++ = '\n';
  return (size_t)(of - out);
}
