/**
 * A sleep that another task can cut short: the background workers (reloads, anchors) poll their
 * queues with it, and `wake()` starts the next round at once when new work was registered.
 */
export class Waker {
  private wakeup: (() => void) | null = null;

  wake(): void {
    const w = this.wakeup;
    this.wakeup = null;
    w?.();
  }

  sleep(ms: number): Promise<void> {
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
