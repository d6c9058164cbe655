/**
 * One background worker's life (the reload and anchor workers): `start` runs its loop beside the
 * stream, `wake` starts its next round at once when new work was registered (a wake while it
 * works is kept for its next sleep: src/waker.ts), `stop` asks it to end and waits for it.
 */
import { Waker } from './waker.js';

export class BackgroundLoop {
  private readonly waker = new Waker();
  private done: Promise<void> | null = null;
  /** Set by `stop`: the loop ends its round and returns. */
  stopping = false;

  constructor(private readonly body: () => Promise<void>) {}

  start(): void {
    this.done = this.body();
  }

  wake(): void {
    this.waker.wake();
  }

  /** Waits `ms`, or less when woken or stopped. */
  sleep(ms: number): Promise<void> {
    return this.waker.sleep(ms);
  }

  /**
   * Ends the loop: `interrupt` cuts its current work short (kills sessions); with `timeoutMs`, a
   * loop still busy after that long is left to end by itself (its work is redone later).
   */
  async stop(o: { interrupt?: () => Promise<void>; timeoutMs?: number } = {}): Promise<void> {
    this.stopping = true;
    this.wake();
    await o.interrupt?.();
    if (o.timeoutMs === undefined) await this.done;
    else await Promise.race([this.done, new Promise((r) => setTimeout(r, o.timeoutMs).unref())]);
  }
}
