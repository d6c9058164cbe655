/**
 * A sleep that another task can cut short: the background workers (reloads, anchors) poll their
 * queues with it, and `wake()` starts the next round at once when new work was registered. A wake
 * while nobody sleeps is kept for the next sleep, so work announced during a round is not left
 * waiting for the timeout.
 */
export class Waker {
  private wakeup: (() => void) | null = null;
  private pending = false;

  wake(): void {
    const w = this.wakeup;
    this.wakeup = null;
    if (w) w();
    else this.pending = true;
  }

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeup = null;
        resolve();
      }, ms);
      this.wakeup = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}
