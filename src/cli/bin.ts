#!/usr/bin/env node
import { main } from './main.js';

main(process.argv).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`pg-egress: internal error: ${String(e)}\n`);
    process.exit(1);
  },
);
