#!/usr/bin/env node
import { main } from './main.js';

// An export fsyncs many files side by side (a part, schema.yml and manifest.json per table): more
// threads than libuv's default 4 let the file system commit them together. libuv reads this when
// its pool first starts, which is after the imports above (they do no pooled work).
process.env.UV_THREADPOOL_SIZE ??= '16';

main(process.argv).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`pg-egress: internal error: ${String(e)}\n`);
    process.exit(1);
  },
);
