/*
 * syncfs(path, callback) → callback(err | null): syncfs(2) of the file system that holds `path`,
 * on the libuv thread pool. One call makes every file written on that file system durable: an
 * export of many small tables places three files and two folders per table, and their fsyncs,
 * ~0.5 ms each on this machine's disk even side by side (their journal commits are what costs),
 * were most of the time an initial export of 500 tables spent after its COPYs
 * (src/commit/sync-policy.ts decides when it is used). Since Linux 5.8 syncfs reports a
 * write-back error of the file system, as fsync does for its file.
 * https://man7.org/linux/man-pages/man2/syncfs.2.html
 *
 * writeback(fd, offset, length): asks the kernel to start writing that range of a file to the
 * disk (sync_file_range(2), SYNC_FILE_RANGE_WRITE), on the thread pool, without waiting for it
 * and without a device flush. A hint: its failure is ignored (the fsync at the file's close
 * reports any write error). A streaming file that grows while a large transaction is replayed
 * thus goes to the disk as it is written, not all at its fsync (copy_fd.c does the same for
 * exports' files on its own thread).
 * https://man7.org/linux/man-pages/man2/sync_file_range.2.html
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  napi_async_work work;
  napi_ref cb;
  char *path;
  int err;
  const char *syscall;
} syncfs_job_t;

static void run(napi_env env, void *data) {
  (void)env;
  syncfs_job_t *j = data;
  int fd = open(j->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    j->err = errno;
    j->syscall = "open";
    return;
  }
#ifdef __linux__
  if (syncfs(fd) != 0) {
    j->err = errno;
    j->syscall = "syncfs";
  }
#else
  j->err = ENOSYS;
  j->syscall = "syncfs";
#endif
  close(fd);
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *v) {
  napi_value x;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, obj, name, x);
}

static void done(napi_env env, napi_status status, void *data) {
  syncfs_job_t *j = data;
  napi_value cb, global, arg;
  if (status == napi_ok && napi_get_reference_value(env, j->cb, &cb) == napi_ok) {
    if (j->err) {
      napi_value msg;
      napi_create_string_utf8(env, strerror(j->err), NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, NULL, msg, &arg);
      const char *name = strerrorname_np(j->err);
      set_str(env, arg, "code", name ? name : "EIO");
      set_str(env, arg, "syscall", j->syscall);
    } else {
      napi_get_null(env, &arg);
    }
    napi_get_global(env, &global);
    napi_call_function(env, global, cb, 1, &arg, NULL);
  }
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free(j->path);
  free(j);
}

static napi_value syncfs_path(napi_env env, napi_callback_info info) {
  size_t argc = 2, len = 0;
  napi_value argv[2], name;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function ||
      napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) {
    napi_throw_error(env, "ERR_PG_EGRESS_SINK", "syncfs(path, callback)");
    return NULL;
  }
  syncfs_job_t *j = calloc(1, sizeof *j);
  if (!j || !(j->path = malloc(len + 1))) {
    free(j);
    napi_throw_error(env, "ERR_PG_EGRESS_SINK", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], j->path, len + 1, &len);
  napi_create_reference(env, argv[1], 1, &j->cb);
  napi_create_string_utf8(env, "pg-egress syncfs", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, run, done, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_reference(env, j->cb);
    free(j->path);
    free(j);
    napi_throw_error(env, "ERR_PG_EGRESS_SINK", "syncfs: could not queue its work");
  }
  return NULL;
}

typedef struct {
  napi_async_work work;
  int fd;
  int64_t offset, length;
} writeback_job_t;

static void writeback_run(napi_env env, void *data) {
  (void)env;
  writeback_job_t *j = data;
#ifdef __linux__
  (void)sync_file_range(j->fd, (off_t)j->offset, (off_t)j->length, SYNC_FILE_RANGE_WRITE);
#else
  (void)j;
#endif
}

static void writeback_done(napi_env env, napi_status status, void *data) {
  (void)status;
  writeback_job_t *j = data;
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value writeback(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], name;
  int32_t fd;
  int64_t offset, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok || napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 ||
      length <= 0) {
    napi_throw_error(env, "ERR_PG_EGRESS_SINK", "writeback(fd, offset, length)");
    return NULL;
  }
  writeback_job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL; /* a hint: none without memory */
  j->fd = fd;
  j->offset = offset;
  j->length = length;
  napi_create_string_utf8(env, "pg-egress writeback", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, writeback_run, writeback_done, j, &j->work) != napi_ok) {
    free(j);
  } else if (napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_async_work(env, j->work);
    free(j);
  }
  return NULL;
}

napi_value register_syncfs(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"syncfs", NULL, syncfs_path, NULL, NULL, NULL, napi_default, NULL},
      {"writeback", NULL, writeback, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}
