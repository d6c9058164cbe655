/**
 * Start-up sweep of the output directory (SPEC §6): files that are on disk but not registered were
 * written by a process that died before its flush was registered; they are removed, and their
 * changes (above the registered LSN) are streamed and written again. Only names of our own layout
 * are touched; anything else in the directory is left alone.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { BATCHES_DIR, parseTableFolder } from './layout.js';
import { fsyncDir } from './atomic.js';

const WINDOW_DIR = /^\d{8}T\d{6}Z(?:-\d{3})?$/;

export interface SweepResult {
  removed: string[];
  missing: number;
}

async function list(dir: string): Promise<import('node:fs').Dirent[]> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

export async function sweepOutput(outDir: string, registered: ReadonlySet<string>): Promise<SweepResult> {
  const removed: string[] = [];
  await fsp.rm(path.join(outDir, '_tmp'), { recursive: true, force: true });
  const removeFile = async (rel: string) => {
    await fsp.rm(path.join(outDir, rel), { force: true });
    removed.push(rel);
  };
  for (const top of await list(outDir)) {
    if (!top.isDirectory()) continue;
    if (top.name === BATCHES_DIR) {
      for (const f of await list(path.join(outDir, BATCHES_DIR))) {
        const rel = `${BATCHES_DIR}/${f.name}`;
        if (f.isFile() && !registered.has(rel)) await removeFile(rel);
      }
      await fsyncDir(path.join(outDir, BATCHES_DIR));
      continue;
    }
    if (!parseTableFolder(top.name)) continue;
    for (const win of await list(path.join(outDir, top.name))) {
      if (!win.isDirectory() || !WINDOW_DIR.test(win.name)) continue;
      const winDir = path.join(outDir, top.name, win.name);
      let kept = 0;
      for (const f of await list(winDir)) {
        const rel = `${top.name}/${win.name}/${f.name}`;
        if (f.isFile() && !registered.has(rel)) await removeFile(rel);
        else kept++;
      }
      if (kept === 0) await fsp.rmdir(winDir).catch(() => undefined);
      else await fsyncDir(winDir);
    }
    await fsyncDir(path.join(outDir, top.name));
  }
  let missing = 0;
  for (const rel of registered) {
    try {
      await fsp.access(path.join(outDir, rel));
    } catch {
      missing++;
    }
  }
  return { removed, missing };
}
