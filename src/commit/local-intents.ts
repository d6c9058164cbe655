/**
 * Write intents kept in output.dir (`_intents/<batch>.json`) beside the registry's
 * (`cdc_registry.write_intents`). The registry lives in the source database, which a failover
 * replaces by a standby that may lack the newest registry transactions: an intent recorded on the
 * old primary may be missing there while the files it announced are on disk. The local copy is
 * written (and fsynced) before the first file of a batch is placed and removed once the batch is
 * registered, so the start-up sweep knows what is ours and unfinished whatever the registry lost.
 * It also carries the reload requests of a flush, which are registered with it: a batch adopted
 * from disk (src/commit/adopt.ts) registers them too.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ReloadRequest } from '../registry/reload-requests.js';
import { ensureDir, fsyncDir, ioError, writeFileAtomic } from '../output/atomic.js';

export const INTENTS_DIR = '_intents';

export interface LocalIntent {
  batchId: string;
  paths: string[];
  reloads: ReloadRequest[];
}

const json = (i: LocalIntent): string =>
  JSON.stringify({ batch_id: i.batchId, paths: i.paths, reloads: i.reloads.map((r) => ({ ...r, requestedLsn: r.requestedLsn === null ? null : r.requestedLsn.toString() })) }) + '\n';

function parse(text: string): LocalIntent | null {
  try {
    const j = JSON.parse(text) as { batch_id: string; paths: string[]; reloads?: (Omit<ReloadRequest, 'requestedLsn'> & { requestedLsn: string | null })[] };
    if (typeof j.batch_id !== 'string' || !Array.isArray(j.paths)) return null;
    return {
      batchId: j.batch_id,
      paths: j.paths,
      reloads: (j.reloads ?? []).map((r) => ({ ...r, requestedLsn: r.requestedLsn === null ? null : BigInt(r.requestedLsn) })),
    };
  } catch {
    return null;
  }
}

export class LocalIntents {
  private readonly dir: string;

  constructor(
    outDir: string,
    private readonly modes: { dirMode: number; fileMode: number },
  ) {
    this.dir = path.join(outDir, INTENTS_DIR);
  }

  private file(batchId: string): string {
    return path.join(this.dir, `${batchId}.json`);
  }

  /** Adds paths (and reload requests) to the batch's intent, durably, before they are placed. */
  async record(batchId: string, paths: string[], reloads: ReloadRequest[] = []): Promise<void> {
    await ensureDir(this.dir, this.modes.dirMode);
    const prev = await this.read(batchId);
    const all = prev ? [...new Set([...prev.paths, ...paths])] : paths;
    await writeFileAtomic(
      this.file(batchId),
      json({ batchId, paths: all, reloads: [...(prev?.reloads ?? []), ...reloads] }),
      this.modes.fileMode,
    );
    await fsyncDir(this.dir);
  }

  /** The batch is registered: its intent goes (a leftover is removed at the next start). */
  async done(batchId: string): Promise<void> {
    await fsp.rm(this.file(batchId), { force: true }).catch(() => undefined);
  }

  async read(batchId: string): Promise<LocalIntent | null> {
    try {
      return parse(await fsp.readFile(this.file(batchId), 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError(this.file(batchId), e);
    }
  }

  async list(): Promise<LocalIntent[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError(this.dir, e);
    }
    const out: LocalIntent[] = [];
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      const i = await this.read(n.slice(0, -'.json'.length));
      if (i) out.push(i);
    }
    return out;
  }
}
