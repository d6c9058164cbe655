/**
 * Progress of long archive work on stderr: rows, files, rate and ETA, a line every few seconds
 * (rewritten in place on a terminal). Totals come from the manifests, so the ETA is known upfront.
 */
export class Progress {
  rows = 0;
  files = 0;
  totalRows = 0;
  totalFiles = 0;
  private readonly started = Date.now();
  private last = 0;
  private readonly tty: boolean;

  /**
   * `unit`: what the second count counts. `load` counts the windows (manifests) of its batches: a
   * window that starts from a reload set reads earlier files too, which no total holds.
   */
  constructor(
    private readonly what: string,
    private readonly out: NodeJS.WriteStream | null = process.stderr,
    private readonly everyMs = 2000,
    private readonly unit: 'files' | 'windows' = 'files',
  ) {
    this.tty = out?.isTTY === true;
  }

  addTotals(rows: number, files: number): void {
    this.totalRows += rows;
    this.totalFiles += files;
  }

  tick(rows = 0): void {
    this.rows += rows;
    const now = Date.now();
    if (this.out && now - this.last >= this.everyMs) {
      this.last = now;
      this.print(false);
    }
  }

  fileDone(): void {
    if (this.unit === 'files') this.files++;
    this.tick();
  }

  windowDone(): void {
    if (this.unit === 'windows') this.files++;
    this.tick();
  }

  done(): void {
    if (this.out && Date.now() - this.started >= this.everyMs) this.print(true);
  }

  line(): string {
    const secs = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = this.rows / secs;
    const left = this.totalRows - this.rows;
    const eta = rate > 0 && left > 0 ? `${Math.ceil(left / rate)}s` : left > 0 ? '?' : '0s';
    return `${this.what}: ${this.rows}/${this.totalRows} rows, ${this.files}/${this.totalFiles} ${this.unit}, ${Math.round(rate)} rows/s, ETA ${eta}`;
  }

  private print(final: boolean): void {
    if (this.tty) this.out!.write(`\r\x1b[K${this.line()}${final ? '\n' : ''}`);
    else this.out!.write(this.line() + '\n');
  }
}
