#!/usr/bin/env node
/**
 * The command's bundle (`npm run build`, after scripts/build.mjs): dist/cli/bin.js and what it imports, our code,
 * commander, yaml, pg and prom-client, in a few CommonJS modules under dist/bundle/ (main.js and
 * one chunk per command that loads late), and bin.js, which `pg-egress` (package.json "bin", the
 * image's PATH) runs: src/cli/launch.ts, V8's code cache for the chunks (src/cli/compile-cache.ts),
 * then main.js.
 *
 * Why: Node 20 resolves and reads every module at every start (the compile cache spares only
 * the compiling), and a command start resolved, read and wrapped ~130 modules (yaml alone is
 * 72 CommonJS files, each also scanned for its exports when imported from ESM).
 * One module per chunk starts a command ~45 ms sooner (155 vs 199 ms of CPU for a `status`, `perf
 * stat -r 10`): every `status`, `verify` and probe pays it.
 *
 * Left out (loaded from node_modules when used): the AWS SDK, near-api-js and DuckDB (large, and
 * only some commands need them); pino (its transports start worker threads by file name; a
 * copy of it in one file sits beside the chunks, below); the addon and pg-native (native).
 * dist/bundle/ sits at the depth of dist/cli/, so the paths the code builds from import.meta.url
 * (package.json, sql/, build/Release/) resolve the same from both.
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// `node scripts/bundle.mjs [dist]`: another build's folder (scripts/build.mjs passes its own); the
// packages still come from this repository's node_modules.
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const outDir = path.join(dist, 'bundle');

// Chunk names carry a hash: an earlier build's chunks would stay beside the new ones.
rmSync(outDir, { recursive: true, force: true });
// Comments and whitespace out (names and code as they are: no mangling, no rewriting): every
// command start reads, decodes and parses the chunks it imports, and 30% of their bytes were
// comments and indentation (1.30 → 0.91 MB); ~30 ms less per start on the benchmark machine.
// The same for every file this script writes.
const minify = { compress: false, mangle: false, codegen: { removeWhitespace: true } };

/**
 * pg asks at load time whether it runs in a Cloudflare Worker (node_modules/pg/lib/stream.js,
 * isCloudflareRuntime): on Node 20 without `navigator` it builds a `new Response(...)`, and the
 * first touch of the `Response` global loads Node's whole fetch implementation (undici): ~40 ms
 * of every command's start on the benchmark machine (`node -e "new Response(null)"`), for an
 * answer that is always no in this bundle (platform: node). The probe is replaced by that answer;
 * the build fails if pg's code no longer has it, rather than silently keeping the cost.
 */
let pgStreamSeen = false;
const pgNodeRuntime = {
  name: 'pg-node-runtime',
  transform(code, id) {
    if (!/[\\/]pg[\\/]lib[\\/]stream\.js$/.test(id)) return null;
    pgStreamSeen = true;
    const probe = 'function isCloudflareRuntime() {';
    if (!code.includes(probe)) throw new Error(`${id}: isCloudflareRuntime() not found (pg changed): update scripts/bundle.mjs`);
    return { code: code.replace(probe, `${probe}\n  return false // pg-egress bundle: Node.js (scripts/bundle.mjs)`), map: null };
  },
};

await build({
  input: { main: path.join(dist, 'cli/bin.js') },
  plugins: [pgNodeRuntime],
  platform: 'node',
  external: [/^@aws-sdk\//, /^@smithy\//, /^near-api-js/, /^@near-js\//, /^@duckdb\//, 'pg-native', 'pino', 'pino-pretty'],
  resolve: { modules: ['node_modules', path.join(root, 'node_modules')] },
  logLevel: 'warn',
  // The source maps point at dist/.
  // CommonJS, not ES modules: only a CommonJS module's compiling can be given V8's cached data on
  // Node 20 (src/cli/compile-cache.ts), and R4's export of 500 tables started sooner even without
  // it (1.008 against 1.068 s, medians of 4, alternating). The folder's package.json says so to
  // Node (the package's own is `"type": "module"`), so the files keep their `.js` names.
  output: {
    dir: outDir,
    format: 'cjs',
    // Strict mode, as the ES modules were (and their sources are): a CommonJS file is sloppy
    // unless it says otherwise, where an assignment to a frozen object (the configuration) is
    // silently dropped instead of thrown.
    strict: true,
    entryFileNames: '[name].js',
    chunkFileNames: '[name]-[hash].js',
    sourcemap: true,
    minify,
  },
});
if (!pgStreamSeen) throw new Error('pg/lib/stream.js was not bundled (pg changed): update scripts/bundle.mjs');
writeFileSync(path.join(outDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
// A package left out of the bundle and loaded with require() must be one require() can load: an
// ES-module-only package (near-api-js: its exports name the "import" condition alone) fails only
// when that chunk runs, so here the build fails instead (src/anchor/near.ts loads it with import()).
const requireFromRoot = createRequire(path.join(root, 'package.json'));
for (const f of readdirSync(outDir).filter((n) => n.endsWith('.js'))) {
  for (const [, spec] of readFileSync(path.join(outDir, f), 'utf8').matchAll(/\brequire\(["'`]([^"'`./][^"'`]*)["'`]\)/g)) {
    if (isBuiltin(spec) || spec === 'pg-native') continue; // pg-native: pg's optional binding, required only by pg.native
    try {
      requireFromRoot.resolve(spec);
    } catch (e) {
      throw new Error(`${f}: require(${JSON.stringify(spec)}) cannot load it (${e.code ?? e}): import() it in src instead`, { cause: e });
    }
  }
}

// bin.js: the cache's hook, in a file of its own so that it is in place before main.js and its
// chunks are compiled; main.js is required by name at run time, not bundled into it.
await build({
  input: path.join(dist, 'cli/launch.js'),
  platform: 'node',
  logLevel: 'warn',
  output: { file: path.join(outDir, 'bin.js'), format: 'cjs', strict: true, minify },
});

/**
 * pino in one file beside the chunks (src/log.ts loads it for the JSON logs of `run` and the
 * other commands that log): from node_modules its ~40 CommonJS files are resolved, read and
 * wrapped one by one, ~30-43 ms of every daemon start here, against ~14-20 ms from one file.
 * It stays out of the chunks (each run when first required): a command that logs nothing
 * (`reload`, `status`) loads no pino at all. The pretty output of a terminal loads pino from
 * node_modules instead: its transport starts a worker thread by file name.
 */
await build({
  input: createRequire(import.meta.url).resolve('pino'),
  platform: 'node',
  logLevel: 'warn',
  output: { file: path.join(outDir, 'pino.cjs'), format: 'cjs', minify },
});
