/*
 * Whole-buffer gzip members from the fastest deflate library the addon was built with
 * (native/detect.mjs decides at build time): ISA-L's igzip for levels 1-3, libdeflate for
 * 0-9 (and 1-3 when there is no ISA-L). A file is a sequence of members, one per block of
 * input (RFC 1952 §2.2: "A gzip file consists of a series of members"), which gunzip, Python's
 * gzip module, Node's zlib, DuckDB and zcat read as one stream.
 */
#ifndef PG_EGRESS_DEFLATE_H
#define PG_EGRESS_DEFLATE_H
#include <stddef.h>
#include <stdint.h>

enum gz_backend { GZ_NONE = 0, GZ_ISAL = 1, GZ_LIBDEFLATE = 2 };

/* The backend that compresses `level` here, or GZ_NONE (the caller then uses zlib). */
int gz_backend_for(int level);
/* Names of the backends built in, for the startup log and `status`. */
const char *gz_backend_name(int backend);
/* An upper bound of one member's size for n input bytes. */
size_t gz_bound(int backend, int level, size_t n);
/* Compresses in[0..n) into one gzip member at out; returns its size, 0 on failure. */
size_t gz_member(int backend, int level, const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* Frees the calling thread's compressor states (a thread that ends: copy_fd.c). */
void gz_thread_end(void);

#endif
