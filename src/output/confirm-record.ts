/**
 * What the daemon itself allowed the slot to be confirmed to, kept in output.dir/_confirmed.json.
 *
 * The slot is confirmed to the registered LSN, and, when nothing received is pending, to the
 * server's WAL end (SPEC §6). The second is not in the registry: recording it there would be a
 * write to the source database, whose WAL moves the WAL end again, and so on forever on an idle
 * server. So the daemon writes the WAL end it is about to confirm here first (write-ahead: a crash
 * between the write and the confirmation leaves a record at or past the slot), together with the
 * registered LSN at that moment: such a limit explains a slot position only for a registry that
 * has at least that LSN. A few earlier pairs with lower registered LSNs are kept too, because a
 * failover may bring back a registry that lacks the newest registrations (whose batches were then
 * set aside, src/commit/adopt.ts) while the slot's copy is where an older idle confirmation put it.
 * At the next start, a slot confirmed past what every pair explains was moved by someone else
 * (src/source/slot-check.ts).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { formatLsn, parseLsn, type Lsn } from '../lsn.js';
import { ensureDir, fsyncDir, ioError, writeFileAtomic } from './atomic.js';

export const CONFIRM_FILE = '_confirmed.json';

/** A WAL end the daemon confirmed with nothing pending, and the registered LSN at that moment. */
export interface ConfirmPair {
  limit: Lsn;
  registeredAt: Lsn;
}

export interface ConfirmRecordData {
  slot: string;
  systemIdentifier: string;
  /** Newest first, each with a lower registeredAt than the one before it. */
  pairs: ConfirmPair[];
}

const KEEP = 16;

export async function readConfirmRecord(dir: string, slot: string, systemIdentifier: string): Promise<ConfirmRecordData | null> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, CONFIRM_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(path.join(dir, CONFIRM_FILE), e);
  }
  try {
    type P = { limit: string; registered_at: string };
    const j = JSON.parse(text) as { slot: string; system_identifier: string; earlier?: P[] } & P;
    if (j.slot !== slot || j.system_identifier !== systemIdentifier) return null;
    const pairs = [j, ...(j.earlier ?? [])].map((p) => ({ limit: parseLsn(p.limit), registeredAt: parseLsn(p.registered_at) }));
    return { slot, systemIdentifier, pairs };
  } catch {
    return null; // unreadable: as if absent (the start-up check then says so)
  }
}

/** Min time between two writes while the WAL end keeps moving (unpublished traffic). */
const MIN_INTERVAL_MS = 100;

/** The running daemon's side: write ahead, then confirm up to `limit`. */
export class ConfirmRecord {
  private pairs: ConfirmPair[];
  private writtenAt = 0;
  /** Called with the file's text after each write (the S3 copy, src/anchor/confirm-mirror.ts). */
  onWrite: ((text: string) => void) | null = null;

  constructor(
    private readonly dir: string,
    private readonly slot: string,
    private readonly systemIdentifier: string,
    private readonly fileMode: number,
    start: ConfirmRecordData | null,
  ) {
    this.pairs = start?.pairs ?? [];
  }

  /** The highest LSN the slot may be confirmed to with nothing pending. */
  get limit(): Lsn {
    return this.pairs[0]?.limit ?? 0n;
  }

  /** Whether a write for `walEnd` is useful now (past the limit and not too soon after the last). */
  due(walEnd: Lsn, now = Date.now()): boolean {
    return walEnd > this.limit && now - this.writtenAt >= MIN_INTERVAL_MS;
  }

  /** How long until a write may follow the last one (0: now). */
  msUntilDue(now = Date.now()): number {
    return Math.max(0, MIN_INTERVAL_MS - (now - this.writtenAt));
  }

  /** Records `walEnd` (with the registered LSN) durably; afterwards the slot may be confirmed to it. */
  async advance(walEnd: Lsn, registered: Lsn): Promise<void> {
    const head = this.pairs[0];
    const limit = head && head.limit > walEnd ? head.limit : walEnd;
    const pairs = head && head.registeredAt >= registered
      ? [{ limit, registeredAt: head.registeredAt }, ...this.pairs.slice(1)]
      : [{ limit, registeredAt: registered }, ...this.pairs];
    await this.write(pairs.slice(0, KEEP));
  }

  /**
   * At start, once the slot's position is accounted for: the record starts again from it. Limits
   * left from before (above all from the timeline of a primary that a failover replaced, whose
   * WAL end the new primary may never have reached) explain nothing from now on.
   */
  async reset(slotConfirmed: Lsn, registered: Lsn): Promise<void> {
    await this.write([{ limit: slotConfirmed, registeredAt: registered }]);
  }

  private async write(pairs: ConfirmPair[]): Promise<void> {
    this.writtenAt = Date.now();
    const p = (x: ConfirmPair) => ({ limit: formatLsn(x.limit), registered_at: formatLsn(x.registeredAt) });
    const text = JSON.stringify({ slot: this.slot, system_identifier: this.systemIdentifier, ...p(pairs[0]), earlier: pairs.slice(1).map(p) }, null, 2) + '\n';
    await ensureDir(this.dir, this.fileMode | ((this.fileMode & 0o444) >> 2));
    await writeFileAtomic(path.join(this.dir, CONFIRM_FILE), text, this.fileMode);
    await fsyncDir(this.dir);
    this.pairs = pairs;
    this.onWrite?.(text);
  }
}
