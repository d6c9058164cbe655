/*
 * The COPY sink's state (copy_sink.c), shared with the thread that reads an export's socket
 * (copy_fd.c).
 */
#ifndef PG_EGRESS_COPY_SINK_H
#define PG_EGRESS_COPY_SINK_H
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stddef.h>

#define MERKLE_BLOCK 1024
#define MAX_DEPTH 64

typedef struct {
  /* framing */
  int framing;
  int in_payload;
  uint8_t hdr[5];
  int hdr_len;
  uint8_t type;
  uint32_t remaining;
  int done;      /* the COPY ended (CopyDone or another message) */
  int copy_done; /* it ended with CopyDone */
  uint8_t leftover[5];
  int leftover_len;
  /* records: with a compression thread (sink_async.c) these belong to it while a block is in
     flight; the caller reads them only once it has waited for the block (finish, stats). */
  int merkle;
  int64_t skip;
  int in_quotes;
  int leaf_open;
  int mid; /* the last block ended inside a record */
  SHA256_CTX leaf;
  uint64_t rows;
  int depth;
  uint64_t sizes[MAX_DEPTH];
  uint8_t stack[MAX_DEPTH][32];
  uint8_t *block_roots;
  size_t n_block_roots, cap_block_roots;
  const char *tree_error; /* the tree's failure, set where it is built; into error by sink_tree_checked */
  /* Text rows whose leaves wait to be hashed sixteen at a time (sha256_x16.c), by their offset in
     the block; hashed before the block is compressed and before the tree is read. */
  int x16;
  int x16_n;
  size_t x16_off[16], x16_len[16];
  /* blocks and output */
  int level, backend;
  uint8_t *block;
  size_t block_len, block_cap, block_max;
  uint8_t *out;
  size_t out_len, out_cap;
  uint64_t raw_bytes;
  /* text: the COPY sends FORMAT text, converted here to the CSV COPY (FORMAT csv) prints */
  int text;
  uint8_t *pend; /* a text row split across reads */
  size_t pend_len, pend_cap;
  uint8_t *conv; /* a converted row that did not fit the block */
  size_t conv_cap;
  const char *error;
  /* An export COPY read off the socket on a thread of its own (copy_fd.c): its output goes
     straight to the file, hashed as it is written, and no other call may touch the sink while
     the thread runs (busy). */
  int busy;
  int file_mode; /* readFd was called: the output goes to the file, not to take() */
  int file_fd;   /* the thread's copy of the file's descriptor; -1 once finish() closed it */
  SHA256_CTX file_ctx;
  uint64_t file_bytes;
  uint64_t writeback_from; /* file_bytes up to which the kernel was asked to write back (copy_fd.c) */
  int file_errno; /* the errno of a failed write */
  void *fd_job;   /* the running readFd, else NULL */
  int64_t command_rows; /* readFd of several COPYs: this COPY's CommandComplete row count, else -1 */
  /* thread: full blocks of a streaming file compressed on a thread of their own (sink_async.c) */
  int thread;
  int async_refused; /* no thread was free when this file's first block was full */
  size_t thread_block; /* block_max once the sink has a thread (sink_async.c), when larger */
  void *async;       /* the thread, once it has a block */
} sink_t;

/* The server's bytes: -1 while the COPY goes on, else the offset where the client's part starts. */
int64_t sink_feed_frames(sink_t *s, const uint8_t *d, size_t n);
/* The block's CSV records (LFs outside quotes) into the Merkle tree, in order. */
void sink_scan_records(sink_t *s, const uint8_t *d, size_t n);
/* The tree's failure (tree_error) as the sink's error; on the thread that owns the tree. */
void sink_tree_checked(sink_t *s);
/* Compresses what the block holds into the output. */
void sink_flush_block(sink_t *s);
/* Makes room for `more` bytes of output; 0: out of memory. */
int sink_out_reserve(sink_t *s, size_t more);
/* The block and output buffers back to the pool (buf_pool.c) while they hold nothing: the COPY
   has ended and its last member is written. A sink that is written to again gets new ones. */
void sink_release_buffers(sink_t *s);
/* sink_async.c: a full block to the sink's thread (0: none to be had, compress here); the member
   of a block already done; waiting for the block in flight and ending the thread. */
int sink_async_submit(sink_t *s);
void sink_async_poll(sink_t *s);
void sink_async_stop(sink_t *s);
/* Writes the output to file_fd (hashing it); 0 on a write error (file_errno, error set). */
int sink_drain_to_file(sink_t *s);

/* The sink's error as a JavaScript Error: `code` ERR_PG_EGRESS_SINK, or the errno's name
   (ENOSPC, ...) with `syscall` 'write' when writing the file failed. */
napi_value sink_error_value(napi_env env, sink_t *s);

/* Sink methods implemented in copy_fd.c. */
napi_value sink_read_fd(napi_env env, napi_callback_info info);
napi_value sink_fd_progress(napi_env env, napi_callback_info info);
napi_value sink_fd_cancel(napi_env env, napi_callback_info info);
/* Tells a running readFd thread to stop (any thread). */
void sink_fd_cancel_job(sink_t *s);
#endif
