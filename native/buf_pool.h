/*
 * A process-wide cache of the large buffers that sinks, COPY threads and compressors allocate and
 * free again for every file (buf_pool.c).
 */
#ifndef PG_EGRESS_BUF_POOL_H
#define PG_EGRESS_BUF_POOL_H
#include <stddef.h>
#include <stdint.h>

/* `size` bytes, uninitialised: a cached buffer of exactly that size if one is free, else malloc. */
void *buf_get(size_t size);
/* Gives back `p` (NULL: nothing), got by buf_get or buf_resize with exactly `size`. */
void buf_put(void *p, size_t size);
/* realloc for pooled buffers: a buffer of `size`, the first `keep` bytes of `p` (of `old`) copied
   into it and `p` given back. NULL (p untouched) when out of memory. */
void *buf_resize(void *p, size_t old, size_t keep, size_t size);
/* Buffers and bytes cached now, and how many requests of a cached size found one or not. */
void buf_pool_stats(size_t *buffers, size_t *bytes, uint64_t *hits, uint64_t *misses);

#endif
