/**
 * output.dir belongs to one slot of one database. A marker file names the owner (system
 * identifier, database, slot); a start against a folder owned by another, or against a folder
 * with files while the registry knows none (cdc_registry dropped, or a new slot), is refused
 * before anything is deleted or created: the files there are someone's archive.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { EgressError } from '../errors.js';
import { ensureDir, ioError, writeFileAtomic } from './atomic.js';

export const OWNER_FILE = '_owner.json';

export interface Owner {
  system_identifier: string;
  database: string;
  slot: string;
}

/** Entries that do not make a folder "have files": ours, and what a fresh volume comes with. */
const IGNORED = new Set([OWNER_FILE, '_tmp', '_status.json', 'lost+found', '_confirmed.json', '_intents', '_diverged']);

async function readOwner(dir: string): Promise<Owner | null> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, OWNER_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(path.join(dir, OWNER_FILE), e);
  }
  try {
    return JSON.parse(text) as Owner;
  } catch {
    throw new EgressError('OUTPUT_OWNER', `output.dir ${dir}: ${OWNER_FILE} is not valid JSON; restore it or set output.dir to a folder of its own`);
  }
}

async function hasFiles(dir: string): Promise<boolean> {
  try {
    return (await fsp.readdir(dir)).some((n) => !IGNORED.has(n) && !n.startsWith('.'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw ioError(dir, e);
  }
}

const describe = (o: Owner) => `slot "${o.slot}" of database "${o.database}" (system ${o.system_identifier})`;

/**
 * Checks (and on first use writes) the ownership marker. `registryKnowsSlot` is whether the
 * registry had this slot's state before this start.
 */
export async function claimOutputDir(dir: string, me: Owner, registryKnowsSlot: boolean, modes: { dirMode: number; fileMode: number }): Promise<'claimed' | 'owned'> {
  const owner = await readOwner(dir);
  if (owner && (owner.system_identifier !== me.system_identifier || owner.database !== me.database || owner.slot !== me.slot)) {
    throw new EgressError(
      'OUTPUT_OWNER',
      `output.dir ${dir} belongs to ${describe(owner)}, not to ${describe(me)}; nothing was changed: set output.dir to a folder of its own (or slot back to "${owner.slot}")`,
    );
  }
  if (!registryKnowsSlot && (await hasFiles(dir))) {
    throw new EgressError(
      'OUTPUT_OWNER',
      `output.dir ${dir} holds exported files but the registry (cdc_registry) has no record of slot "${me.slot}" (was the registry dropped?); nothing was deleted: run "pg-egress recover --config <cdc.yml> --from ${dir}" (or --from the S3 prefix) to rebuild the registry from them, or move them away, or set output.dir to a new folder`,
    );
  }
  if (owner) return 'owned';
  await ensureDir(dir, modes.dirMode);
  await writeFileAtomic(path.join(dir, OWNER_FILE), JSON.stringify(me, null, 2) + '\n', modes.fileMode);
  return 'claimed';
}
