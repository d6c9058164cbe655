/*
 * An export COPY read straight off its connection's socket on a thread of its own:
 *
 *   sink.readFd(socketFd, fileFd, cb[, sinks, fileFds])
 *                                       cb(err | null, rest: Buffer, bytesRead) once the COPY has ended;
 *                                       with `sinks` and `fileFds`, the query holds more COPYs, one
 *                                       per further sink, each written to its own file
 *   sink.fdProgress() -> [bytes read, records]   while it runs (any thread may have moved them)
 *   sink.fdCancel()                              makes the thread stop at its next read
 *
 * Why: read through Node, each 64 KiB of the server's COPY became a Buffer, an event and a call
 * into the addon on the main thread, one connection at a time. The Buffers (two per byte once the
 * sink was fed off the main thread) drove V8 into a full collection about every 70 ms of an
 * export (`--trace-gc`: "external memory pressure"), and its marking threads took ~0.45 s of CPU
 * for R1's 385 MB, next to ~0.65 s on the main thread for reads and hand-offs. Here each export
 * connection's thread reads the socket (recv into one reused buffer), runs the sink's pass
 * (framing, text to CSV, Merkle leaves and nodes, gzip members: copy_sink.c) and writes the
 * members to the file itself, hashing them as written (the file's sha256 for the manifest). The
 * main thread only hears of the end.
 *
 * The socket is a dup of the connection's descriptor, so that JavaScript closing its own (the
 * connection killed at shutdown) cannot make the thread read some other file that got the number.
 * It is non-blocking (the descriptors share libuv's O_NONBLOCK): the thread waits in poll() with a
 * timeout so that fdCancel is seen within POLL_MS. Writes to the file block the thread, and so the
 * reading, and so the server: the memory stays one read buffer, one sink block and its output.
 * While the thread runs the sink is `busy`: every other method throws.
 *
 * The bytes after the COPY's end (CommandComplete and ReadyForQuery, or an ErrorResponse from its
 * first byte, with a header split across reads carried in leftover()) come back in `rest`, for the
 * client's own parser.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "buf_pool.h"
#include "copy_sink.h"
#include "deflate.h"

#define READ_BYTES (256 * 1024)
#define POLL_MS 100
/*
 * The thread sleeps until LOWAT_BYTES have arrived (SO_RCVLOWAT, which poll() honours for TCP), or
 * LOWAT_WAIT_MS have passed, whatever came first; then it reads all there is. Without it, a thread
 * that compresses faster than the backend formats rows slept after every read and was woken for
 * each send of the backend's 8 KiB output buffer, and the backend paid for each wake-up in its
 * send(): a 288 MB COPY took ~25,700 reads of ~11 KB and ~12,000 sleeps. Measured here (a 317 MB
 * table, `reload --wait` with the daemon running, 3 alternating pairs): context switches of the
 * machine 22-25k -> 3.3k, our CPU 1.35-1.37 -> 1.26-1.30 s, the server's 1.75-1.82 -> 1.71-1.72 s;
 * 8 tables on 4 workers (3 pairs): wall 4.13-4.54 -> 4.02-4.21 s, the server's CPU 5.52-5.95 ->
 * 5.35-5.59 s. A COPY's last bytes (under the mark) wait LOWAT_WAIT_MS at most; after that long
 * with nothing at all the mark goes back to one byte (a backend that waits on I/O is not polled
 * every LOWAT_WAIT_MS), and up again with the next data. On Linux since 4.18 setting the mark also
 * makes the receive buffer at least that large (tcp_set_rcvlowat), so it can always be reached.
 * https://man7.org/linux/man-pages/man7/socket.7.html (SO_RCVLOWAT)
 * https://github.com/torvalds/linux/blob/v6.1/net/ipv4/tcp.c (tcp_poll, tcp_set_rcvlowat)
 */
#define LOWAT_BYTES (128 * 1024)
#define LOWAT_WAIT_MS 2
/*
 * Every WRITEBACK_BYTES written, the kernel is asked to start writing them to the disk, without
 * waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE), as PostgreSQL does for its own writes
 * (checkpoint_flush_after, backend_flush_after: pg_flush_data in src/backend/storage/file/fd.c).
 * The fsync that makes the file durable at its end then waits for the last few MB instead of the
 * whole file: ~75 ms for a 100 MB file here, on the tail of every large export, where nothing else
 * overlaps it. https://man7.org/linux/man-pages/man2/sync_file_range.2.html
 */
#define WRITEBACK_BYTES (8u << 20)
/*
 * The COPY threads run at a lower priority than the rest of the daemon (nice +COPY_NICE, the
 * thread's own: on Linux a thread is a task with its own nice value, setpriority(2) NOTES). When
 * the cores are busy (the server's backends and these threads compress and hash), the main thread
 * still gets its turn at once: the stream's messages, and the export's own placing and
 * registration of the tables already copied, which then become visible sooner. Without it, in an
 * initial export of 500 small tables here, the first group of 200 tables took 0.5-0.8 s to place
 * and register while the COPYs ran, and was still at it when they ended: 0.14-0.25 s from the last
 * COPY to the last registration (medians of 8 alternating runs: 209 ms; nice 10: 158 ms). The
 * whole export took as long (1.736 against 1.749 s): the cores are full either way, and the COPYs
 * took longer by what the registrations gained. The threads lose no work: they get the CPU
 * whenever the main thread waits. PG_EGRESS_COPY_NICE sets it (0-19; 0 keeps the daemon's
 * priority). Raising a thread's nice needs no privilege.
 * https://man7.org/linux/man-pages/man2/setpriority.2.html
 */
#define COPY_NICE 10

static int copy_nice(void) {
  const char *v = getenv("PG_EGRESS_COPY_NICE");
  if (!v || !*v) return COPY_NICE;
  char *end;
  long n = strtol(v, &end, 10);
  return (*end || n < 0) ? COPY_NICE : (n > 19 ? 19 : (int)n);
}

typedef struct {
  sink_t *s; /* the COPY being read: sinks[cur] */
  int sock;
  /* The query's COPYs in order, and references that keep their objects alive meanwhile. */
  sink_t **sinks;
  napi_ref *refs;
  size_t n, cur;
  /* Between two COPYs (reload/copy-gap.ts does the same in JavaScript): the ended COPY's
     CommandComplete ("COPY n") is read for its row count, NoticeResponse and ParameterStatus are
     skipped, the next CopyOutResponse starts the next COPY, anything else is the client's. */
  int in_gap;
  uint8_t gap_hdr[5];
  int gap_hdr_len;
  uint8_t gap_type;
  uint32_t gap_left;
  char gap_body[32];
  size_t gap_body_len;
  napi_threadsafe_function done;
  atomic_int cancel;
  _Atomic uint64_t bytes;
  _Atomic uint64_t rows;
  uint8_t *rest;
  size_t rest_len;
  int sock_errno; /* recv failed (errno), or -1: the server closed the connection */
} fd_job_t;

int sink_drain_to_file(sink_t *s) {
  size_t off = 0;
  while (off < s->out_len) {
    ssize_t w = write(s->file_fd, s->out + off, s->out_len - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      s->file_errno = errno;
      s->error = strerror(errno);
      return 0;
    }
    off += (size_t)w;
  }
  SHA256_Update(&s->file_ctx, s->out, s->out_len);
  s->file_bytes += s->out_len;
  s->out_len = 0;
#ifdef SYNC_FILE_RANGE_WRITE
  if (s->file_bytes - s->writeback_from >= WRITEBACK_BYTES) {
    /* Only a hint: an error here (EIO included) is the fsync's to report, which still runs. The
       offsets are the sink's bytes; a header written before the thread started shifts them by
       a few bytes, which leaves those for the fsync. */
    (void)sync_file_range(s->file_fd, (off_t)s->writeback_from, (off_t)(s->file_bytes - s->writeback_from), SYNC_FILE_RANGE_WRITE);
    s->writeback_from = s->file_bytes;
  }
#endif
  return 1;
}

/* Sets what follows the query's last COPY (or the message that ended it) for the client. */
static void set_rest(fd_job_t *j, const uint8_t *pre, size_t pre_len, const uint8_t *d, size_t n) {
  j->rest_len = pre_len + n;
  if (!j->rest_len) return;
  if (!(j->rest = malloc(j->rest_len))) {
    j->s->error = "out of memory";
    return;
  }
  memcpy(j->rest, pre, pre_len);
  memcpy(j->rest + pre_len, d, n);
}

static uint32_t be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }

/* One read's bytes through the COPYs and the gaps between them; 1 once the thread is done (the
   last COPY ended, another message came, or an error is set on j->s). */
static int take_bytes(fd_job_t *j, const uint8_t *d, size_t n) {
  size_t pos = 0;
  while (pos < n) {
    sink_t *s = j->s;
    if (!j->in_gap) {
      int64_t at = sink_feed_frames(s, d + pos, n - pos);
      atomic_store(&j->rows, s->rows);
      if (s->error || (s->out_len && !sink_drain_to_file(s))) return 1;
      if (at < 0) return 0;
      pos += (size_t)at;
      /* The last block too, here rather than in finish() on the main thread: a small table's
         export is all in its last block. */
      if (s->copy_done) {
        sink_flush_block(s);
        if (s->error || (s->out_len && !sink_drain_to_file(s))) return 1;
        /* Free for the next COPY's sink now, not when finish() runs on the main thread. */
        sink_release_buffers(s);
      }
      if (!s->copy_done || j->cur + 1 == j->n) {
        /* An ended COPY's header split across reads is carried in the sink: the client gets it first. */
        set_rest(j, s->leftover, (size_t)s->leftover_len, d + pos, n - pos);
        s->leftover_len = 0;
        return 1;
      }
      j->in_gap = 1;
      j->gap_hdr_len = 0;
      j->gap_left = 0;
      continue;
    }
    if (j->gap_left) {
      size_t take = j->gap_left < n - pos ? j->gap_left : n - pos;
      if (j->gap_type == 'C') {
        size_t room = sizeof j->gap_body - 1 - j->gap_body_len;
        size_t c = take < room ? take : room;
        memcpy(j->gap_body + j->gap_body_len, d + pos, c);
        j->gap_body_len += c;
      }
      pos += take;
      j->gap_left -= (uint32_t)take;
    } else {
      while (j->gap_hdr_len < 5 && pos < n) j->gap_hdr[j->gap_hdr_len++] = d[pos++];
      if (j->gap_hdr_len < 5) return 0;
      uint8_t type = j->gap_hdr[0];
      uint32_t len = be32(j->gap_hdr + 1);
      if (type == 'H') {
        /* The next COPY: its sink reads the CopyOutResponse from its first byte. */
        j->in_gap = 0;
        j->s = j->sinks[++j->cur];
        atomic_store(&j->rows, 0);
        (void)sink_feed_frames(j->s, j->gap_hdr, 5);
        if (j->s->error) return 1;
        continue;
      }
      if (type != 'C' && type != 'N' && type != 'S' && type != 'A') {
        /* An ErrorResponse (a later statement failed), or anything else: the client's. */
        set_rest(j, j->gap_hdr, 5, d + pos, n - pos);
        return 1;
      }
      if (len < 4) {
        s->error = "malformed message length after CopyDone";
        return 1;
      }
      j->gap_type = type;
      j->gap_left = len - 4;
      j->gap_body_len = 0;
      j->gap_hdr_len = 0;
    }
    if (!j->gap_left && j->gap_type == 'C') {
      j->gap_body[j->gap_body_len] = 0;
      unsigned long long rows;
      if (sscanf(j->gap_body, "COPY %llu", &rows) == 1) s->command_rows = (int64_t)rows;
      j->gap_type = 0;
    }
  }
  return 0;
}

static void *fd_thread(void *arg) {
  fd_job_t *j = arg;
  sink_t *s = j->s;
  uint8_t *buf = buf_get(READ_BYTES);
  if (!buf) s->error = "out of memory";
  int nice = copy_nice();
  if (nice > 0) {
    /* Relative to the daemon's own nice (a daemon started with `nice` keeps the difference). */
    id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid);
    if (errno == 0) (void)setpriority(PRIO_PROCESS, tid, cur + nice > 19 ? 19 : cur + nice);
  }
  int lowat = LOWAT_BYTES;
  (void)setsockopt(j->sock, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  int waited = 0; /* the last poll() ended by its timeout */
  while (buf && !j->s->error) {
    if (atomic_load(&j->cancel)) {
      j->s->error = "the COPY was cancelled";
      break;
    }
    ssize_t n = recv(j->sock, buf, READ_BYTES, 0);
    if (n > 0) {
      waited = 0;
      if (lowat == 1) {
        lowat = LOWAT_BYTES;
        (void)setsockopt(j->sock, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      }
      atomic_fetch_add(&j->bytes, (uint64_t)n);
      if (take_bytes(j, buf, (size_t)n)) break;
    } else if (n == 0) {
      j->sock_errno = -1;
      j->s->error = "the server closed the connection during the COPY";
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (waited && lowat != 1) {
        /* LOWAT_WAIT_MS without a byte: wake on the first one from now on (see LOWAT_BYTES). */
        lowat = 1;
        (void)setsockopt(j->sock, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      }
      struct pollfd p = {.fd = j->sock, .events = POLLIN};
      waited = poll(&p, 1, lowat == 1 ? POLL_MS : LOWAT_WAIT_MS) == 0;
    } else if (errno != EINTR) {
      j->sock_errno = errno;
      j->s->error = strerror(errno);
    }
  }
  buf_put(buf, READ_BYTES);
  /* The socket goes back to Node's event loop, which must be woken by every byte again. */
  lowat = 1;
  (void)setsockopt(j->sock, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
  gz_thread_end();
  /* fd_done frees j, maybe before the call below returns: the function is read first. It lives
     until released. */
  napi_threadsafe_function done = j->done;
  napi_call_threadsafe_function(done, j, napi_tsfn_blocking);
  napi_release_threadsafe_function(done, napi_tsfn_release);
  return NULL;
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *v) {
  napi_value x;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, obj, name, x);
}

napi_value sink_error_value(napi_env env, sink_t *s) {
  napi_value msg, err;
  const char *code = "ERR_PG_EGRESS_SINK";
  char text[256];
  if (s->file_errno) {
    const char *name = strerrorname_np(s->file_errno);
    code = name ? name : "EIO";
    snprintf(text, sizeof text, "%s, write", s->error);
  } else {
    snprintf(text, sizeof text, "%s", s->error ? s->error : "failed");
  }
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  set_str(env, err, "code", code);
  if (s->file_errno) set_str(env, err, "syscall", "write");
  return err;
}

/* On the main thread, once the thread is done: the sink is free again, cb(err, rest). */
static void fd_done(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  fd_job_t *j = data;
  sink_t *s = j->s;
  for (size_t i = 0; i < j->n; i++) {
    j->sinks[i]->busy = 0;
    j->sinks[i]->fd_job = NULL;
  }
  close(j->sock);
  if (env) {
    napi_value argv[3], global;
    void *copy;
    if (!s->error) {
      napi_get_null(env, &argv[0]);
    } else if (j->sock_errno) {
      /* The connection failed: not the file, not the sink. */
      napi_value msg;
      napi_create_string_utf8(env, j->sock_errno < 0 ? "Connection terminated unexpectedly" : strerror(j->sock_errno), NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, NULL, msg, &argv[0]);
      const char *name = j->sock_errno > 0 ? strerrorname_np(j->sock_errno) : NULL;
      set_str(env, argv[0], "code", name ? name : "ECONNRESET");
      set_str(env, argv[0], "syscall", "read");
    } else {
      argv[0] = sink_error_value(env, s);
    }
    napi_create_buffer_copy(env, j->rest_len, j->rest_len ? (void *)j->rest : (void *)"", &copy, &argv[1]);
    napi_create_double(env, (double)atomic_load(&j->bytes), &argv[2]);
    napi_get_global(env, &global);
    for (size_t i = 0; i < j->n; i++) napi_delete_reference(env, j->refs[i]);
    napi_call_function(env, global, cb, 3, argv, NULL);
  }
  free(j->rest);
  free(j->sinks);
  free(j->refs);
  free(j);
}

static sink_t *this_sink(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, napi_value *self) {
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, self, NULL) != napi_ok || napi_unwrap(env, *self, &p) != napi_ok) return NULL;
  return p;
}

/* Undoes what sink_read_fd set up for the first `k` sinks (a failed start). */
static void unwind(napi_env env, fd_job_t *j, size_t k) {
  for (size_t i = 0; i < k; i++) {
    sink_t *x = j->sinks[i];
    if (x->file_fd >= 0) close(x->file_fd);
    x->file_fd = -1;
    x->file_mode = 0;
    x->busy = 0;
    x->fd_job = NULL;
    if (j->refs[i]) napi_delete_reference(env, j->refs[i]);
  }
  if (j->sock >= 0) close(j->sock);
  free(j->sinks);
  free(j->refs);
  free(j);
}

static napi_value throw_start(napi_env env, const char *msg) {
  napi_throw_error(env, "ERR_PG_EGRESS_SINK", msg);
  return NULL;
}

napi_value sink_read_fd(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self, name;
  int32_t sock_fd = -1, file_fd = -1;
  napi_valuetype t;
  sink_t *s = this_sink(env, info, &argc, argv, &self);
  if (!s || argc < 3 || napi_get_value_int32(env, argv[0], &sock_fd) != napi_ok || napi_get_value_int32(env, argv[1], &file_fd) != napi_ok ||
      napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function || sock_fd < 0 || file_fd < 0)
    return throw_start(env, "readFd(socketFd, fileFd, callback[, sinks, fileFds])");
  /* More COPYs in the query: one further sink and file each. */
  uint32_t more = 0, more_fds = 0;
  bool is_array = false;
  if (argc >= 5 && napi_is_array(env, argv[3], &is_array) == napi_ok && is_array) {
    napi_get_array_length(env, argv[3], &more);
    if (napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[4], &more_fds) != napi_ok || more != more_fds)
      return throw_start(env, "readFd: as many further file descriptors as sinks");
  }
  fd_job_t *j = calloc(1, sizeof(fd_job_t));
  if (!j || !(j->sinks = calloc(1 + more, sizeof(sink_t *))) || !(j->refs = calloc(1 + more, sizeof(napi_ref)))) {
    if (j) free(j->sinks);
    free(j);
    return throw_start(env, "out of memory");
  }
  j->n = 1 + more;
  j->sock = -1;
  int fds[1 + more];
  fds[0] = file_fd;
  napi_value objs[1 + more];
  objs[0] = self;
  for (uint32_t i = 0; i < more; i++) {
    napi_value v;
    void *p = NULL;
    if (napi_get_element(env, argv[3], i, &objs[1 + i]) != napi_ok || napi_unwrap(env, objs[1 + i], &p) != napi_ok || !p ||
        napi_get_element(env, argv[4], i, &v) != napi_ok || napi_get_value_int32(env, v, &fds[1 + i]) != napi_ok || fds[1 + i] < 0) {
      unwind(env, j, 0);
      return throw_start(env, "readFd: further sinks must be sinks, and their file descriptors numbers");
    }
    j->sinks[1 + i] = p;
  }
  j->sinks[0] = s;
  for (size_t i = 0; i < j->n; i++) {
    sink_t *x = j->sinks[i];
    for (size_t k = 0; k < i; k++)
      if (j->sinks[k] == x) {
        unwind(env, j, 0);
        return throw_start(env, "readFd: a sink given twice");
      }
    const char *bad = !x->framing ? "readFd: this sink takes raw CSV" : x->done ? "readFd: the COPY has ended" : x->busy ? "readFd: the sink is busy" : x->file_mode ? "readFd: called twice" : NULL;
    if (bad) {
      unwind(env, j, 0);
      return throw_start(env, bad);
    }
  }
  j->s = s;
  /* Every descriptor is the thread's own copy: JavaScript may close its own (a killed
     connection, an aborted file) while the thread still runs, and the numbers be given to other
     files. finish() and the sink's finalizer close the files'. */
  j->sock = fcntl(sock_fd, F_DUPFD_CLOEXEC, 0);
  if (j->sock < 0) {
    const char *why = strerror(errno);
    unwind(env, j, 0);
    return throw_start(env, why);
  }
  for (size_t i = 0; i < j->n; i++) {
    sink_t *x = j->sinks[i];
    x->file_fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
    x->file_mode = 1;
    SHA256_Init(&x->file_ctx);
    /* What the sink already holds (the header line in text mode) goes first. */
    if (x->file_fd < 0 || (x->out_len && !sink_drain_to_file(x))) {
      const char *why = x->file_fd < 0 ? strerror(errno) : NULL;
      napi_value err = why ? NULL : sink_error_value(env, x);
      unwind(env, j, i + 1);
      if (why) return throw_start(env, why);
      napi_throw(env, err);
      return NULL;
    }
    if (napi_create_reference(env, objs[i], 1, &j->refs[i]) != napi_ok) {
      unwind(env, j, i + 1);
      return throw_start(env, "readFd: could not start its thread");
    }
  }
  napi_create_string_utf8(env, "pg-egress export COPY", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, fd_done, &j->done) != napi_ok) {
    unwind(env, j, j->n);
    return throw_start(env, "readFd: could not start its thread");
  }
  for (size_t i = 0; i < j->n; i++) {
    j->sinks[i]->busy = 1;
    j->sinks[i]->fd_job = j;
  }
  pthread_attr_t attr;
  pthread_t th;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&th, &attr, fd_thread, j);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    napi_release_threadsafe_function(j->done, napi_tsfn_abort);
    unwind(env, j, j->n);
    return throw_start(env, "readFd: could not start its thread");
  }
  return NULL;
}

napi_value sink_fd_progress(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value self, r, v;
  sink_t *s = this_sink(env, info, &argc, NULL, &self);
  if (!s) return NULL;
  fd_job_t *j = s->fd_job;
  napi_create_array_with_length(env, 2, &r);
  napi_create_double(env, j ? (double)atomic_load(&j->bytes) : 0, &v);
  napi_set_element(env, r, 0, v);
  napi_create_double(env, j ? (double)atomic_load(&j->rows) : (double)s->rows, &v);
  napi_set_element(env, r, 1, v);
  return r;
}

void sink_fd_cancel_job(sink_t *s) {
  if (s->fd_job) atomic_store(&((fd_job_t *)s->fd_job)->cancel, 1);
}

napi_value sink_fd_cancel(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  napi_value self;
  sink_t *s = this_sink(env, info, &argc, NULL, &self);
  if (s) sink_fd_cancel_job(s);
  return NULL;
}
