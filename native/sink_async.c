/*
 * A streaming file's blocks compressed on a thread of the sink's own (new Sink({ thread: true }),
 * src/output/gzip-file.ts), so that the main thread encodes the next block's rows while this one
 * is scanned for its records and their Merkle leaves hashed (on a second thread, scanner) and the
 * block deflated, on a block that the caller no longer touches. The tree (the sink's records fields) is this thread's while a
 * block is in flight: blocks go one at a time and in order, and the caller reads the tree only
 * after waiting for the last one (finish, stats). Its failure (tree_error) becomes the sink's
 * error when the caller collects the block.
 *
 * One block at most is in flight per sink: handing over the next one first waits for it and
 * appends its member to the sink's output, so the file's members stay in the blocks' order, each
 * of the same CSV as on the synchronous path. (Not always the same compressed bytes: with blocks
 * of 1,000 bytes, a member now and then came out with other Huffman codes on the thread than on
 * the caller's thread, also with ISA-L's whole level buffer cleared; the cause is not known.
 * Both are valid, and the CSV, records and roots are the same. Blocks of 64 KiB and 1 MiB gave
 * the same bytes in every test.) At most ASYNC_MAX sinks hold a thread at once
 * (a window may have many tables open, each would add two threads and two blocks); the others
 * compress on the caller's thread, block by block, as before.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "copy_sink.h"
#include "deflate.h"
#include "buf_pool.h"

#define ASYNC_MAX 2

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static int slots_used = 0;

typedef struct {
  sink_t *s;
  pthread_t th, th_scan;
  int scanning; /* th_scan runs: the records are found and hashed there */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending;      /* a block handed over and not yet compressed */
  int pending_scan; /* ... and not yet scanned for its records (th_scan) */
  int quit;
  /* The block being compressed (the sink's full block, swapped out) and its member. */
  uint8_t *block;
  size_t block_len, block_cap;
  uint8_t *out;
  size_t out_len, out_cap;
  const char *error;
} async_t;

/* The block's records found and their leaves hashed, beside its compression (worker): the two
   read the same block and write nothing the other reads. For S1's 1M rows (~150 MB of CSV) the
   records took ~270 ms of CPU and ISA-L ~140 ms (native Sink, one thread): one after the other
   on one thread, the block's turn was their sum; here it is the larger. */
static void *scanner(void *arg) {
  async_t *a = arg;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->pending_scan && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
    if (!a->pending_scan) break; /* quit, nothing left */
    pthread_mutex_unlock(&a->mu);
    /* The tree's state is carried from the block before, also a record cut between two blocks. */
    sink_scan_records(a->s, a->block, a->block_len);
    pthread_mutex_lock(&a->mu);
    a->pending_scan = 0;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

static void *worker(void *arg) {
  async_t *a = arg;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->pending && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
    if (!a->pending) break; /* quit, nothing left */
    pthread_mutex_unlock(&a->mu);
    /* The records first, unless the scanner finds them (the tree's state is carried from the
       block before, also a record cut between two blocks). On the caller's thread, the sink's
       write (this scan and hashing, and the copy into the block) took ~160 ms of S2's ~0.9 s
       main thread (node --cpu-prof). */
    if (!a->scanning && a->s->merkle && !a->s->text) sink_scan_records(a->s, a->block, a->block_len);
    size_t bound = gz_bound(a->s->backend, a->s->level, a->block_len);
    const char *err = NULL;
    if (a->out_cap < bound) {
      uint8_t *p = buf_resize(a->out, a->out_cap, 0, bound);
      if (p) {
        a->out = p;
        a->out_cap = bound;
      } else {
        err = "out of memory";
      }
    }
    /* The same room as the synchronous path gives (sink_flush_block). */
    size_t n = err ? 0 : gz_member(a->s->backend, a->s->level, a->block, a->block_len, a->out, bound);
    if (!err && !n) err = "compression failed";
    pthread_mutex_lock(&a->mu);
    a->out_len = n;
    a->error = err;
    a->pending = 0;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
  gz_thread_end(); /* this thread's compressor state */
  return NULL;
}

/* The finished block's member into the sink's output (the caller holds a->mu, nothing pending). */
static void collect(sink_t *s, async_t *a) {
  sink_tree_checked(s); /* the thread is idle: the tree is the caller's now */
  if (a->error && !s->error) s->error = a->error;
  a->error = NULL;
  if (a->out_len && !s->error) {
    if (sink_out_reserve(s, a->out_len)) {
      memcpy(s->out + s->out_len, a->out, a->out_len);
      s->out_len += a->out_len;
    } else {
      s->error = "out of memory";
    }
  }
  a->out_len = 0;
}

/* Waits for the block in flight, if any, and takes its member (the caller holds a->mu). */
static void settle(sink_t *s, async_t *a) {
  while (a->pending || a->pending_scan) pthread_cond_wait(&a->cv, &a->mu);
  collect(s, a);
}

/* take(): the member of a block already compressed, without waiting for one still in flight. */
void sink_async_poll(sink_t *s) {
  async_t *a = s->async;
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  if (!a->pending && !a->pending_scan) collect(s, a);
  pthread_mutex_unlock(&a->mu);
}

static async_t *start(sink_t *s) {
  pthread_mutex_lock(&slots_mu);
  int ok = slots_used < ASYNC_MAX;
  if (ok) slots_used++;
  pthread_mutex_unlock(&slots_mu);
  if (!ok) return NULL;
  async_t *a = calloc(1, sizeof(async_t));
  if (a) {
    a->s = s;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->th, NULL, worker, a) != 0) {
      pthread_mutex_destroy(&a->mu);
      pthread_cond_destroy(&a->cv);
      free(a);
      a = NULL;
    } else if (s->merkle && !s->text) {
      /* Without a second thread the worker scans the records itself, as before. */
      a->scanning = pthread_create(&a->th_scan, NULL, scanner, a) == 0;
    }
  }
  if (!a) {
    pthread_mutex_lock(&slots_mu);
    slots_used--;
    pthread_mutex_unlock(&slots_mu);
  }
  return a;
}

/*
 * Hands the sink's full block to the thread (after the previous one is done) and gives the sink
 * the thread's previous block to fill. 0: no thread to be had (the caller compresses itself).
 */
int sink_async_submit(sink_t *s) {
  if (!s->async) {
    if (s->async_refused) return 0;
    s->async = start(s);
    if (!s->async) {
      s->async_refused = 1; /* asked again at the next file, not at every block */
      return 0;
    }
    /* Larger blocks with a thread: fewer hand-overs, each of which waits for the block before.
       Bounded: ASYNC_MAX sinks hold a thread, each with two blocks. S1-load's replay of 1M rows
       (one core kept busy by another process): 723-753 ms with 4 MiB, 757-799 with 1 MiB,
       817-856 with 256 KiB (daemon log, three runs each). */
    if (s->thread_block > s->block_max) s->block_max = s->thread_block;
  }
  async_t *a = s->async;
  pthread_mutex_lock(&a->mu);
  settle(s, a);
  if (s->error) {
    pthread_mutex_unlock(&a->mu);
    return 1;
  }
  uint8_t *b = a->block;
  size_t cap = a->block_cap;
  a->block = s->block;
  a->block_cap = s->block_cap;
  a->block_len = s->block_len;
  s->block = b;
  s->block_cap = cap;
  s->block_len = 0;
  a->pending = 1;
  a->pending_scan = a->scanning;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  return 1;
}

/* Ends the thread (after the block in flight, whose member is taken) and frees its buffers. */
void sink_async_stop(sink_t *s) {
  async_t *a = s->async;
  if (!a) return;
  pthread_mutex_lock(&a->mu);
  settle(s, a);
  a->quit = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pthread_join(a->th, NULL);
  if (a->scanning) pthread_join(a->th_scan, NULL);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  buf_put(a->block, a->block_cap);
  buf_put(a->out, a->out_cap);
  free(a);
  s->async = NULL;
  pthread_mutex_lock(&slots_mu);
  slots_used--;
  pthread_mutex_unlock(&slots_mu);
}
