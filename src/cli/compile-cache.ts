/**
 * V8's code cache for the command's bundle (dist/bundle/, scripts/bundle.mjs): the bytecode of
 * every function a command compiled, kept on disk by its first run and handed back to V8 by the
 * next, so that a start does not parse and compile again what the last one did. Node 22 does this
 * itself (`module.enableCompileCache()`, 22.1); Node 20, which we support, has nothing like it.
 *
 * Measured (R4 of `npm run bench`, 500 tables, a scratch PostgreSQL 15 on the benchmark machine,
 * alternating, medians of 4): the ES-module bundle 1.068 s, the same bundle as CommonJS 1.008 s,
 * CommonJS with this cache 0.963 s (pg_dump -j4 0.813 s). A short process spends a large part of
 * its CPU compiling: V8's parser and bytecode compiler were ~125 ms of R4's main thread.
 *
 * How: the bundle is CommonJS, and its chunks are compiled here instead of by Node's loader
 * (`Module.prototype._compile`, the hook Node's own loader calls for every .js/.cjs file): a
 * `vm.Script` with the cached data, if any, run with the arguments Node's wrapper gives a module.
 * 10 s after the start and at exit, each script's `createCachedData()` (what it compiled by then,
 * lazily compiled functions included: https://v8.dev/blog/code-caching-for-devs) is written when
 * it came without an accepted cache, or when it holds a tenth more than the cache it came with:
 * a first run that ended early (a configuration error) leaves a small cache, and the next run
 * that gets further replaces it. The data is made only then (~0.2-2 ms a chunk). The 10 s are for
 * a long daemon: V8 drops the bytecode of functions unused for a while, so its exit keeps less.
 *
 * Where: `PG_EGRESS_COMPILE_CACHE` (a folder; `off` turns the cache off), by default
 * `pg-egress-compile-cache-<uid>` in the system's temporary folder. A file per command and chunk,
 * named by the hash of the chunk's path and source, in a subfolder per Node version and
 * architecture; V8 also refuses data from another V8 version, other flags or another source
 * length (`cachedDataRejected`), and then the script is compiled as without a cache and its data
 * written again. The folder must be ours and closed to others (a cache is code that will run):
 * otherwise, as on any error reading or writing it, the command runs without a cache, unharmed.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire, Module } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';

/** Node's private CommonJS module, as far as this file uses it. */
interface CjsModule {
  exports: unknown;
}
type Compile = (this: CjsModule, content: string, filename: string) => unknown;

const SAVE_AFTER_MS = 10_000;
/** The length of what `Module.wrap` puts before a module's source, on its first line. */
const WRAPPER_OPENING = Module.wrap('\u0000').indexOf('\u0000');

/**
 * The cache's folder for this process, or undefined when it is off. Pure: the caller passes the
 * environment and the system's temporary folder.
 */
export function compileCacheDir(env: NodeJS.ProcessEnv, tmpdir: string, uid: number | undefined): string | undefined {
  const set = env.PG_EGRESS_COMPILE_CACHE;
  if (set !== undefined && ['off', '0', 'false', ''].includes(set.trim().toLowerCase())) return undefined;
  const base = set?.trim() ? path.resolve(set.trim()) : path.join(tmpdir, `pg-egress-compile-cache-${uid ?? 'user'}`);
  return path.join(base, `${process.version}-${process.arch}`);
}

/** The command's name as part of a file name: its first argument, if it looks like one. */
export function commandKey(argv: readonly string[]): string {
  const c = argv[2] ?? '';
  return /^[a-z][a-z0-9-]{0,30}$/.test(c) ? c : '_';
}

/** Creates `dir` (0700) and says whether it may hold code: a real folder of ours, closed to others. */
function usableDir(dir: string): boolean {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (let d = dir; ; d = path.dirname(d)) {
      const st = fs.lstatSync(d);
      if (!st.isDirectory()) return false;
      // Ours and not writable by others, up to the cache's own base folder (the parent of the
      // version's subfolder); above it, a sticky world-writable /tmp is as good as it gets.
      if (process.getuid && st.uid !== process.getuid()) return false;
      if ((st.mode & 0o022) !== 0) return false;
      if (d !== dir) return true;
    }
  } catch {
    return false;
  }
}

/**
 * Installs the cache for the modules loaded from `bundleDir` (the rest load as usual). Call it
 * before the first of them is required.
 */
export function installCompileCache(bundleDir: string, argv: readonly string[], env: NodeJS.ProcessEnv): void {
  const dir = compileCacheDir(env, os.tmpdir(), process.getuid?.());
  if (!dir || !usableDir(dir)) return;
  const command = commandKey(argv);
  const proto = (Module as unknown as { prototype: { _compile: Compile } }).prototype;
  const nodeCompile = proto._compile;
  /** Every script compiled here, and the size of the cache it came with or was last written (0: none). */
  const scripts: { script: vm.Script; file: string; size: number }[] = [];

  proto._compile = function compile(this: CjsModule, content: string, filename: string): unknown {
    // A module with `import()` (the chunks that import() DuckDB, the AWS SDK or near-api-js,
    // all left out of the bundle) is Node's to compile: in a vm.Script, import()
    // needs a callback, and on Node 20 the one that does what Node does
    // (USE_MAIN_CONTEXT_DEFAULT_LOADER) is experimental, warns on stderr, and is lost when the
    // script comes from cached data ("A dynamic import callback was not specified").
    if (path.dirname(filename) !== bundleDir || /\bimport\s*\(/.test(content)) return nodeCompile.call(this, content, filename);
    // Keyed by the source and its path: V8 keeps the name of the script the data was made from,
    // so another copy of the same bundle (another checkout or install) would name that copy's
    // files in stack traces.
    const key = createHash('sha1').update(filename).update('\0').update(content).digest('hex').slice(0, 20);
    const file = path.join(dir, `${command}.${path.basename(filename)}.${key}`);
    let cachedData: Buffer | undefined;
    try {
      cachedData = fs.readFileSync(file);
    } catch {
      cachedData = undefined;
    }
    // A hashbang is valid only at a script's very start, not in the wrapper's function body:
    // made a comment of the same length, so that positions in stack traces stay where they were.
    const body = content.startsWith('#!') ? `//${content.slice(2)}` : content;
    const wrapper = Module.wrap(body);
    const script = new vm.Script(wrapper, {
      filename,
      cachedData,
      // The wrapper's opening is on the file's first line: columns there as in the file.
      columnOffset: -WRAPPER_OPENING,
    });
    scripts.push({ script, file, size: cachedData === undefined || script.cachedDataRejected ? 0 : cachedData.length });
    const fn = script.runInThisContext({ displayErrors: true }) as (...args: unknown[]) => unknown;
    const require = createRequire(filename);
    return fn.call(this.exports, this.exports, require, this, filename, path.dirname(filename));
  };

  const save = (): void => {
    for (const entry of scripts) {
      const { script, file, size } = entry;
      const tmp = `${file}.${process.pid}.tmp`;
      try {
        const data = script.createCachedData();
        if (size > 0 && data.length <= size + size / 10) continue;
        fs.writeFileSync(tmp, data, { mode: 0o600 });
        fs.renameSync(tmp, file);
        entry.size = data.length;
      } catch {
        try {
          fs.rmSync(tmp, { force: true });
        } catch {
          // Nothing more to do: the next run compiles as without a cache.
        }
      }
    }
  };
  process.on('exit', save);
  setTimeout(save, SAVE_AFTER_MS).unref();
}
