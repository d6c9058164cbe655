/**
 * A copy of output.dir/_confirmed.json in the S3 prefix (issue 17, a lost volume). The file says
 * how far the daemon itself let the slot be confirmed (src/output/confirm-record.ts); without it a
 * start cannot tell its own idle confirmations from an out-of-band slot move, and would record a
 * gap and export every table again. So the daemon copies each version to `<prefix>/_confirmed.json`
 * (coalesced: only the newest waiting version is sent; a failed send waits for the next write or
 * the stop), and a start that finds no local file takes the S3 copy.
 *
 * The copy may lag the local file (it is sent after the local write, never before): it can explain
 * less than the local file did, never more, so the worst case after a lost volume is a gap that
 * was not one (every table exported again), never a missed gap. A clean stop sends the last version.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import { CONFIRM_FILE } from '../output/confirm-record.js';
import { writeFileAtomic } from '../output/atomic.js';
import type { S3Settings, S3Target } from './s3.js';

export class ConfirmMirror {
  private latest: string | null = null;
  private sending: Promise<void> | null = null;
  private target: S3Target | null = null;

  constructor(
    private readonly s3: S3Settings,
    private readonly log: Logger,
  ) {}

  /** Takes a version to send (ConfirmRecord.onWrite). */
  push = (text: string): void => {
    this.latest = text;
    if (!this.sending) this.sending = this.drain();
  };

  private async drain(): Promise<void> {
    try {
      this.target ??= (await import('./s3.js')).createS3Target(this.s3, { connectTimeoutMs: 5000, socketTimeoutMs: 10_000 });
      while (this.latest !== null) {
        const text = this.latest;
        this.latest = null;
        try {
          await this.target.putSmall(CONFIRM_FILE, Buffer.from(text));
        } catch (e) {
          this.log.debug({ err: (e as Error).message.split('\n')[0] }, 'copy of _confirmed.json not sent to S3; sent with the next version');
          this.latest ??= text;
          break;
        }
      }
    } finally {
      this.sending = null;
    }
  }

  /** At stop: sends the newest version (within a few seconds). */
  async stop(): Promise<void> {
    if (this.sending) await this.sending;
    if (this.latest !== null) {
      this.sending = this.drain();
      await Promise.race([this.sending, new Promise((r) => setTimeout(r, 5000).unref())]);
    }
    this.target?.close();
  }
}

/** At start, before the slot check: no local _confirmed.json, but an S3 copy: take it. Returns whether it did. */
export async function restoreConfirmRecord(target: Pick<S3Target, 'getSmall'>, outDir: string, fileMode: number): Promise<boolean> {
  const local = path.join(outDir, CONFIRM_FILE);
  const exists = await fsp.access(local).then(
    () => true,
    () => false,
  );
  if (exists) return false;
  const bytes = await target.getSmall(CONFIRM_FILE);
  if (!bytes) return false;
  await writeFileAtomic(local, bytes, fileMode);
  return true;
}

/** The file as the start-up left it (reset to the slot's position), as the mirror's first version. */
export async function pushConfirmFile(cfg: { output: { dir: string } }, mirror: ConfirmMirror | null): Promise<void> {
  if (!mirror) return;
  const text = await fsp.readFile(path.join(cfg.output.dir, CONFIRM_FILE), 'utf8').catch(() => null);
  if (text !== null) mirror.push(text);
}
