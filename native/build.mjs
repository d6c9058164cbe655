#!/usr/bin/env node
/**
 * `npm ci`/`npm install` step (package.json "install"): builds the batched SHA-256 addon
 * (native/sha256_batch.c → build/Release/pg_egress_sha256.node) with the node-gyp that npm ships.
 * It only speeds up Merkle hashing: when there is no compiler the build is skipped with one line
 * and pg-egress hashes with node:crypto instead (same results, slower). PG_EGRESS_NATIVE=0 skips it.
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
  console.log('pg-egress: built the batched SHA-256 addon (build/Release/pg_egress_sha256.node)');
} else {
  const why = (r.stderr || r.stdout || String(r.error ?? '')).split('\n').filter((l) => /error|not found|ERR/i.test(l)).slice(0, 2).join(' / ');
  console.warn(`pg-egress: the batched SHA-256 addon was not built (${why || 'node-gyp failed'}); Merkle hashing uses node:crypto (slower, same results)`);
}
