#!/usr/bin/env node
/**
 * `npm ci`/`npm install` step (package.json "install"): builds the native addon (native/*.c →
 * build/Release/pg_egress_sha256.node: batched SHA-256, the export COPY path, and gzip members
 * through ISA-L/libdeflate when native/detect.mjs finds them) with the node-gyp that npm ships.
 * It only speeds things up: when there is no compiler the build is skipped with one line and
 * pg-egress uses node:crypto and zlib instead (same files apart from compression bytes, slower).
 * PG_EGRESS_NATIVE=0 skips it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

if (process.env.PG_EGRESS_NATIVE === '0') process.exit(0);
const candidates = [
  process.env.npm_config_node_gyp,
  process.env.npm_execpath && path.join(path.dirname(process.env.npm_execpath), '../node_modules/node-gyp/bin/node-gyp.js'),
  path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
].filter((p) => p && existsSync(p));
if (!candidates.length) {
  console.warn('pg-egress: node-gyp not found; Merkle hashing uses node:crypto (slower, same results)');
  process.exit(0);
}
// The headers of the running Node.js when they are installed beside it (Debian's nodejs, the
// official images), so that node-gyp need not download them.
const prefix = path.join(path.dirname(process.execPath), '..');
const nodedir = !process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
const r = spawnSync(process.execPath, [candidates[0], 'rebuild', '--release', ...nodedir], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
if (r.status === 0) {
  const libs = spawnSync(process.execPath, [path.join(path.dirname(new URL(import.meta.url).pathname), 'detect.mjs'), 'defines'], { encoding: 'utf8' }).stdout.trim();
  const deflate = libs ? libs.replace(/HAVE_/g, '').toLowerCase().split(/\s+/).join(', ') : 'none found: zlib compresses (apt-get install libisal-dev libdeflate-dev, then npm ci, for the fast ones)';
  console.log(`pg-egress: built the native addon (build/Release/pg_egress_sha256.node); deflate: ${deflate}`);
} else {
  const why = (r.stderr || r.stdout || String(r.error ?? '')).split('\n').filter((l) => /error|not found|ERR/i.test(l)).slice(0, 2).join(' / ');
  console.warn(`pg-egress: the batched SHA-256 addon was not built (${why || 'node-gyp failed'}); Merkle hashing uses node:crypto (slower, same results)`);
}
