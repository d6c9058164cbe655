/* COPY text rows → the CSV COPY (FORMAT csv) prints (copy_text.c). */
#ifndef PG_EGRESS_COPY_TEXT_H
#define PG_EGRESS_COPY_TEXT_H
#include <stddef.h>
#include <stdint.h>

/* Output room for a row of `len` bytes: the worst case (every byte a doubled quote, every field
   quoted) plus 32 bytes that the 16-byte stores may write past the end. */
#define COPY_TEXT_ROOM(len) (3 * (len) + 34)

/* Converts one text row [row, row + len), its LF included, into `out` (COPY_TEXT_ROOM(len)
   bytes). `readable`: the bytes at `row` that may be read (len or more: where the buffer goes on,
   the row's last 16 bytes are read in place). Returns the CSV row's length, LF included; 0 with
   *error set for an escape COPY never writes. */
size_t copy_text_row(uint8_t *out, const uint8_t *row, size_t len, size_t readable, const char **error);

#endif
