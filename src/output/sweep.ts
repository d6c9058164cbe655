/**
 * Start-up sweep of the output directory (SPEC §6). It removes only what it knows to be ours and
 * unfinished: `_tmp/` (where files are written before they are renamed into place) and the paths
 * that a flush recorded as about to be written (write intents, `cdc_registry.write_intents`) but
 * that never got registered, with their `.tmp` siblings. A file the registry knows nothing about
 * is never touched: it may be another process's, or an archive whose registry was lost.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fsyncDir, ioError, TMP_SUFFIX } from './atomic.js';

export interface SweepResult {
  removed: string[];
}

async function rmFile(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(file, e);
  }
}

/** `unfinished`: paths relative to outDir, recorded as intents and not registered. */
export async function sweepOutput(outDir: string, unfinished: readonly string[]): Promise<SweepResult> {
  const removed: string[] = [];
  try {
    await fsp.rm(path.join(outDir, '_tmp'), { recursive: true, force: true });
  } catch (e) {
    throw ioError(path.join(outDir, '_tmp'), e);
  }
  const dirs = new Set<string>();
  for (const rel of unfinished) {
    // Intents come from our own registry; still, never follow a path out of output.dir.
    const abs = path.resolve(outDir, rel);
    if (!abs.startsWith(path.resolve(outDir) + path.sep)) continue;
    if (await rmFile(abs)) removed.push(rel);
    await rmFile(abs + TMP_SUFFIX);
    dirs.add(path.dirname(abs));
  }
  for (const dir of dirs) {
    // A window folder the dead flush created and that holds nothing else goes too.
    const empty = await fsp.rmdir(dir).then(
      () => true,
      () => false,
    );
    await fsyncDir(empty ? path.dirname(dir) : dir).catch(() => undefined);
  }
  return { removed };
}

/** Files looked up at a time (missingFiles). */
const LOOKUPS_IN_FLIGHT = 32;

/**
 * Registered files that are not on disk (someone deleted or moved them), in the order given, the
 * first `limit` of them. Every start of the daemon looks up every registered local file: a year of
 * 5-minute windows is ~100k files per table. One lookup after another took ~37 µs each here (a
 * round trip to libuv's threads), 32 at a time ~11-14 µs (20,000 files: 727-738 against 228-285 ms).
 */
export async function missingFiles(outDir: string, registered: Iterable<string>, limit = Infinity): Promise<string[]> {
  const paths = Array.from(registered);
  const gone = new Uint8Array(paths.length);
  let next = 0;
  let found = 0;
  await Promise.all(
    Array.from({ length: Math.min(LOOKUPS_IN_FLIGHT, paths.length) }, async () => {
      // Once `limit` are found, nothing after the ones already looked up can be among the first `limit`.
      while (next < paths.length && found < limit) {
        const k = next++;
        try {
          await fsp.access(path.join(outDir, paths[k]));
        } catch {
          gone[k] = 1;
          found++;
        }
      }
    }),
  );
  const missing: string[] = [];
  for (let k = 0; k < paths.length && missing.length < limit; k++) if (gone[k]) missing.push(paths[k]);
  return missing;
}
