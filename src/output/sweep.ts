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

/** Registered files that are not on disk (someone deleted or moved them). */
export async function missingFiles(outDir: string, registered: Iterable<string>, limit = Infinity): Promise<string[]> {
  const missing: string[] = [];
  for (const rel of registered) {
    try {
      await fsp.access(path.join(outDir, rel));
    } catch {
      missing.push(rel);
      if (missing.length >= limit) break;
    }
  }
  return missing;
}
