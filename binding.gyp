{
  "targets": [
    {
      "target_name": "pg_egress_sha256",
      "sources": ["native/sha256_batch.c"],
      "cflags": ["-O2"]
    }
  ]
}
