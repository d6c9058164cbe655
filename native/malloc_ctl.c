/*
 * glibc malloc controls for the DuckDB paths of rebuild/load (src/archive/malloc-ctl.ts), and the
 * counters of the sinks' own buffer cache.
 *
 *   mallocArenaMax(n) → bool    mallopt(M_ARENA_MAX, n): threads that have no arena yet share the
 *                               existing ones instead of each getting its own (glibc makes up to
 *                               8 × cores, and keeps each one's freed memory). DuckDB's calls run
 *                               on the libuv pool's threads, so each of them grew an arena.
 *   mallocTrim() → bool         malloc_trim(0): returns the free pages of every arena to the
 *                               system (glibc ≥ 2.8 releases whole free pages inside the heaps,
 *                               not only the top), after a batch whose allocations were freed.
 *
 * Both return false (and do nothing) without glibc (musl, macOS).
 *
 *   bufPoolStats() → { buffers, bytes, hits, misses }   the sinks' buffer cache (buf_pool.c).
 * https://man7.org/linux/man-pages/man3/mallopt.3.html, https://man7.org/linux/man-pages/man3/malloc_trim.3.html
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "buf_pool.h"

static napi_value arena_max(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  int32_t n = 0;
  bool ok = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 1 && napi_get_value_int32(env, argv[0], &n) == napi_ok && n >= 1) {
#if defined(__GLIBC__)
    ok = mallopt(M_ARENA_MAX, n) == 1;
#endif
  }
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  bool ok = false;
#if defined(__GLIBC__)
  malloc_trim(0);
  ok = true;
#endif
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value pool_stats(napi_env env, napi_callback_info info) {
  (void)info;
  size_t buffers, bytes;
  uint64_t hits, misses;
  buf_pool_stats(&buffers, &bytes, &hits, &misses);
  napi_value r, v;
  napi_create_object(env, &r);
  napi_create_double(env, (double)buffers, &v);
  napi_set_named_property(env, r, "buffers", v);
  napi_create_double(env, (double)bytes, &v);
  napi_set_named_property(env, r, "bytes", v);
  napi_create_double(env, (double)hits, &v);
  napi_set_named_property(env, r, "hits", v);
  napi_create_double(env, (double)misses, &v);
  napi_set_named_property(env, r, "misses", v);
  return r;
}

napi_value register_malloc_ctl(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mallocArenaMax", NULL, arena_max, NULL, NULL, NULL, napi_default, NULL},
      {"mallocTrim", NULL, trim, NULL, NULL, NULL, napi_default, NULL},
      {"bufPoolStats", NULL, pool_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 3, props);
  return exports;
}
