/**
 * Puts back the comments that reload markers replaced, for operations already registered. The
 * reloader runs it only with no export worker open; each COMMENT waits at most
 * COMMENT_LOCK_TIMEOUT_MS for its lock (a DDL queued on the table would otherwise queue the
 * application behind us) and is tried again every COMMENT_RETRY_MS until it succeeds.
 */
import type { Logger } from '../log.js';
import type { ReloadRegistry } from '../registry/reloads.js';
import { isLockConflict } from '../db/tx.js';

const COMMENT_LOCK_TIMEOUT_MS = 2000;
const COMMENT_RETRY_MS = 5000;

export class CommentRestorer {
  private lastTry = 0;
  private readonly warned = new Set<number>();

  constructor(
    private readonly reloads: Pick<ReloadRegistry, 'pendingComments' | 'restoreComment'>,
    private readonly log: Logger,
  ) {}

  /** One round (`now`: whether or not the last was less than COMMENT_RETRY_MS ago); stops early when `stopping` says so. */
  async run(now: boolean, stopping: () => boolean): Promise<void> {
    if (!now && Date.now() - this.lastTry < COMMENT_RETRY_MS) return;
    this.lastTry = Date.now();
    const pending = await this.reloads.pendingComments().catch(() => []);
    for (const p of pending) {
      if (stopping()) return;
      try {
        await this.reloads.restoreComment(p, COMMENT_LOCK_TIMEOUT_MS);
        if (this.warned.delete(p.id)) this.log.info({ table: p.table }, 'table comment put back after its reload');
      } catch (e) {
        if (this.warned.has(p.id)) continue;
        this.warned.add(p.id);
        const why = isLockConflict(e) ? 'another session holds or waits for a lock on the table' : String(e);
        this.log.warn({ table: p.table, err: why }, `could not put the table comment back after its reload yet; trying again every ${COMMENT_RETRY_MS / 1000} s`);
      }
    }
  }
}
