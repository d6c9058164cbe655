#!/usr/bin/env node
/**
 * The command as installed (package.json "bin": dist/bundle/bin.js, built from this file by
 * scripts/bundle.mjs): V8's code cache for the bundle's chunks (./compile-cache.ts), then the
 * command itself (src/cli/bin.ts, bundled as dist/bundle/main.js). Kept apart from bin.ts so that
 * the cache is in place before the largest chunk is compiled; only the bundle runs it.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installCompileCache } from './compile-cache.js';

const here = fileURLToPath(import.meta.url);
installCompileCache(path.dirname(here), process.argv, process.env);
createRequire(here)('./main.js');
