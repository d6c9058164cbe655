/**
 * What the daemon itself allowed the slot to be confirmed to, kept in output.dir/_confirmed.json.
 *
 * The slot is confirmed to the registered LSN, and, when nothing received is pending, to the
 * server's WAL end (SPEC §6). The second is not in the registry: recording it there would be a
 * write to the source database, whose WAL moves the WAL end again, and so on forever on an idle
 * server. So the daemon writes the WAL end it is about to confirm here first (write-ahead: a crash
 * between the write and the confirmation leaves a record at or past the slot), together with the
 * registered LSN at that moment. At the next start, a slot confirmed past both what is registered
 * and this record was moved by someone else (src/source/slot-check.ts).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { formatLsn, parseLsn, type Lsn } from '../lsn.js';
import { ensureDir, fsyncDir, ioError, writeFileAtomic } from './atomic.js';

export const CONFIRM_FILE = '_confirmed.json';

export interface ConfirmRecordData {
  slot: string;
  systemIdentifier: string;
  /** The highest LSN the daemon confirmed (or was about to) with nothing pending. */
  limit: Lsn;
  /** The registered LSN when `limit` was written: the limit explains the slot only if the registry has at least this. */
  registeredAt: Lsn;
}

export async function readConfirmRecord(dir: string, slot: string, systemIdentifier: string): Promise<ConfirmRecordData | null> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, CONFIRM_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(path.join(dir, CONFIRM_FILE), e);
  }
  try {
    const j = JSON.parse(text) as { slot: string; system_identifier: string; limit: string; registered_at: string };
    if (j.slot !== slot || j.system_identifier !== systemIdentifier) return null;
    return { slot, systemIdentifier, limit: parseLsn(j.limit), registeredAt: parseLsn(j.registered_at) };
  } catch {
    return null; // unreadable: as if absent (the start-up check then says so)
  }
}

/** Min time between two writes while the WAL end keeps moving (unpublished traffic). */
const MIN_INTERVAL_MS = 100;

/** The running daemon's side: write ahead, then confirm up to `limit`. */
export class ConfirmRecord {
  limit: Lsn;
  private registeredAt: Lsn;
  private writtenAt = 0;

  constructor(
    private readonly dir: string,
    private readonly slot: string,
    private readonly systemIdentifier: string,
    private readonly fileMode: number,
    start: ConfirmRecordData | null,
  ) {
    this.limit = start?.limit ?? 0n;
    this.registeredAt = start?.registeredAt ?? 0n;
  }

  /** Whether a write for `walEnd` is useful now (past the limit and not too soon after the last). */
  due(walEnd: Lsn, now = Date.now()): boolean {
    return walEnd > this.limit && now - this.writtenAt >= MIN_INTERVAL_MS;
  }

  /** Records `walEnd` (with the registered LSN) durably; afterwards the slot may be confirmed to it. */
  async advance(walEnd: Lsn, registered: Lsn): Promise<void> {
    await this.write(walEnd > this.limit ? walEnd : this.limit, registered > this.registeredAt ? registered : this.registeredAt);
  }

  /**
   * At start, once the slot's position is accounted for: the record starts again from it. A limit
   * left from before (above all one from the timeline of a primary that a failover replaced, whose
   * WAL end the new primary may never have reached) explains nothing from now on.
   */
  async reset(slotConfirmed: Lsn, registered: Lsn): Promise<void> {
    this.limit = 0n;
    await this.write(slotConfirmed, registered);
  }

  private async write(limit: Lsn, registeredAt: Lsn): Promise<void> {
    this.writtenAt = Date.now();
    const text = JSON.stringify({ slot: this.slot, system_identifier: this.systemIdentifier, limit: formatLsn(limit), registered_at: formatLsn(registeredAt) }, null, 2) + '\n';
    await ensureDir(this.dir, this.fileMode | ((this.fileMode & 0o444) >> 2));
    await writeFileAtomic(path.join(this.dir, CONFIRM_FILE), text, this.fileMode);
    await fsyncDir(this.dir);
    this.limit = limit;
    this.registeredAt = registeredAt;
  }
}
