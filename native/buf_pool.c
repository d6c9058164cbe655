/*
 * A process-wide cache of the large buffers that every file's sink (copy_sink.c, sink_async.c),
 * every export COPY's thread (copy_fd.c) and every thread's compressor state (deflate.c) allocate
 * and free again. An initial export of 500 small tables made ~500 sinks and COPY threads, each
 * with a block, an output buffer, a read buffer and ISA-L's level buffer (~1 MiB touched per
 * table), and glibc gave those back to the system when freed (they are above its mmap threshold,
 * or at the top of a thread's arena): each next table faulted in fresh pages, which the kernel
 * zeroes first. `perf` of R4 (`npm run bench`): clear_page_erms was 130-200 ms of the export
 * threads' ~520-650 ms in the COPYs, on two cores that the server's COPYs need too.
 *
 * Cached: buffers of POOL_MIN_SIZE to POOL_MAX_SIZE, found again by their exact size (the sinks
 * grow theirs by doubling from 64 KiB, the others have fixed sizes), at most POOL_SLOTS of them
 * and POOL_MAX_BYTES in all, oldest first out when full (a size nobody asks for again, such as a
 * streaming file's last block's output, does not keep its place); anything else is malloc and
 * free as before. A cached buffer keeps its pages, so the process holds up to POOL_MAX_BYTES
 * more than it uses at a quiet moment.
 */
#include "buf_pool.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MIN_SIZE ((size_t)32 << 10)
#define POOL_MAX_SIZE ((size_t)2 << 20)
#define POOL_MAX_BYTES ((size_t)16 << 20)
#define POOL_SLOTS 256

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  void *p;
  size_t size;
} slots[POOL_SLOTS];
static int n_slots;
static size_t cached;
static uint64_t hits, misses;

static int pooled(size_t size) { return size >= POOL_MIN_SIZE && size <= POOL_MAX_SIZE; }

/* Slot i out of the cache, the others kept in the order they came (oldest first); holds mu. */
static void *take_slot(int i) {
  void *p = slots[i].p;
  cached -= slots[i].size;
  n_slots--;
  memmove(&slots[i], &slots[i + 1], (size_t)(n_slots - i) * sizeof slots[0]);
  return p;
}

void *buf_get(size_t size) {
  if (pooled(size)) {
    pthread_mutex_lock(&mu);
    /* The most recently given back first: its pages are the likeliest still in cache. */
    for (int i = n_slots - 1; i >= 0; i--) {
      if (slots[i].size != size) continue;
      void *p = take_slot(i);
      hits++;
      pthread_mutex_unlock(&mu);
      return p;
    }
    misses++;
    pthread_mutex_unlock(&mu);
  }
  return malloc(size ? size : 1);
}

void buf_put(void *p, size_t size) {
  if (!p) return;
  if (pooled(size)) {
    pthread_mutex_lock(&mu);
    while (n_slots && (n_slots == POOL_SLOTS || cached + size > POOL_MAX_BYTES)) free(take_slot(0));
    slots[n_slots].p = p;
    slots[n_slots].size = size;
    n_slots++;
    cached += size;
    pthread_mutex_unlock(&mu);
    return;
  }
  free(p);
}

void *buf_resize(void *p, size_t old, size_t keep, size_t size) {
  if (!p) return buf_get(size);
  /* Neither size cached: realloc may grow in place, as before. */
  if (!pooled(old) && !pooled(size)) return realloc(p, size);
  void *q = buf_get(size);
  if (!q) return NULL;
  if (keep) memcpy(q, p, keep < size ? keep : size);
  buf_put(p, old);
  return q;
}

void buf_pool_stats(size_t *buffers, size_t *bytes, uint64_t *hit, uint64_t *miss) {
  pthread_mutex_lock(&mu);
  *buffers = (size_t)n_slots;
  *bytes = cached;
  *hit = hits;
  *miss = misses;
  pthread_mutex_unlock(&mu);
}
