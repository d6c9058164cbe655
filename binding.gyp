{
  "targets": [
    {
      "target_name": "pg_egress_sha256",
      "sources": ["native/sha256_batch.c", "native/copy_sink.c", "native/sink_async.c", "native/copy_fd.c", "native/copy_text.c", "native/deflate.c", "native/malloc_ctl.c", "native/sha256_x16.c", "native/syncfs.c", "native/csv_row.c", "native/buf_pool.c"],
      "defines": ["<!@(node native/detect.mjs defines)"],
      "libraries": ["<!@(node native/detect.mjs libraries)"],
      "cflags": ["-O2"]
    }
  ]
}
