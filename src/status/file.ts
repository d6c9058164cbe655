/**
 * The daemon's status file (`<output.dir>/_status.json`): its in-memory counters, written every few
 * seconds by the daemon and read by `status` and `/status` (shown only while that daemon still holds
 * its lock, so a dead daemon's pid and pending rows are not shown as live).
 */
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/index.js';
import { lsnHex, type Lsn } from '../lsn.js';
import { writeFileAtomic } from '../output/atomic.js';
import { describeCompression } from '../output/deflate.js';

const STATUS_FILE = '_status.json';

export const statusFilePath = (cfg: Config): string => path.join(cfg.output.dir, STATUS_FILE);

/** What the daemon knows that the registry does not. */
export interface DaemonSnapshot {
  durableLsn: Lsn;
  confirmedLsn: Lsn;
  receivedLsn: Lsn;
  lastFrameAt: number;
  pendingRows: Map<string, number>;
  stats: object;
  /** Large transactions received in parts, held until their commit (src/batch/streamed.ts). */
  spooled: { transactions: number; bytes: number };
}

/** The file as `status` reads it. */
export interface StatusFile {
  pid: number;
  updated_at: string;
  pending_rows: Record<string, number>;
  compression?: string;
  /** Absent in the files of versions before it. */
  spooled_transactions?: number;
  spooled_bytes?: number;
}

export async function writeStatusFile(cfg: Config, s: DaemonSnapshot, now: number = Date.now()): Promise<void> {
  const status = {
    pid: process.pid,
    updated_at: new Date(now).toISOString(),
    registered_lsn: lsnHex(s.durableLsn),
    confirmed_lsn: lsnHex(s.confirmedLsn),
    received_lsn: lsnHex(s.receivedLsn),
    last_message_at: new Date(s.lastFrameAt).toISOString(),
    pending_rows: Object.fromEntries(s.pendingRows),
    spooled_transactions: s.spooled.transactions,
    spooled_bytes: s.spooled.bytes,
    stats: s.stats,
    compression: describeCompression(cfg.output.gzipLevel),
  };
  await writeFileAtomic(statusFilePath(cfg), JSON.stringify(status, null, 2) + '\n', cfg.output.fileMode);
}

/** The last status file, or null when there is none (or it cannot be read). */
export async function readStatusFile(cfg: Config): Promise<StatusFile | null> {
  try {
    return JSON.parse(await readFile(statusFilePath(cfg), 'utf8')) as StatusFile;
  } catch {
    return null;
  }
}
