#!/usr/bin/env node
import { main } from './main.js';

// An export fsyncs many files side by side (a part, schema.yml and manifest.json per table): more
// threads than libuv's default 4 let the file system commit them together. libuv reads this when
// its pool first starts, which is after the imports above (they do no pooled work).
process.env.UV_THREADPOOL_SIZE ??= '16';

// A reader that stops early (`pg-egress --help | head -1`): the rest of the output has nowhere to
// go, and that is not an error of the command. Without a listener the write's EPIPE is thrown as
// an unhandled 'error' event, which the bundle (CommonJS, src/cli/launch.ts: the process's ticks
// run before main()'s promise settles) reached before its exit.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
});

main(process.argv).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`pg-egress: internal error: ${String(e)}\n`);
    process.exit(1);
  },
);
