/** output.retain parsing, the slot-lag clock and the status line (issue 17): pure parts. */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/index.js';
import { LagClock } from '../../src/http/metrics-archive.js';
import { describeRetain, formatLocal } from '../../src/anchor/local-status.js';
import { retentionIntervalMs } from '../../src/anchor/retention.js';

const S3 = 'anchors:\n  s3: {bucket: b}\n';
const parse = (extra: string) => parseConfig(`source:\n  url: postgres://u@h/d\n${extra}`, { env: {} });

describe('output.retain', () => {
  it('keeps everything without S3, 24h with it, and takes durations and forever', () => {
    expect(parse('').output.retainMs).toBeNull();
    expect(parse(S3).output.retainMs).toBe(24 * 3_600_000);
    expect(parse(`output:\n  retain: 30s\n${S3}`).output.retainMs).toBe(30_000);
    expect(parse(`output:\n  retain: 7d\n${S3}`).output.retainMs).toBe(7 * 86_400_000);
    expect(parse(`output:\n  retain: forever\n${S3}`).output.retainMs).toBeNull();
    expect(parse('output:\n  retain: forever\n').output.retainMs).toBeNull();
  });
  it('refuses a duration without anchors.s3, naming the setting', () => {
    expect(() => parse('output:\n  retain: 1h\n')).toThrow(/output\.retain needs anchors\.s3/);
    expect(() => parse(`output:\n  retain: soon\n${S3}`)).toThrow(/output\.retain/);
  });
  it('describes the retain in force', () => {
    expect(describeRetain(parse(''))).toBe('forever (no anchors.s3)');
    expect(describeRetain(parse(S3))).toBe('24h');
    expect(describeRetain(parse(`output:\n  retain: 90s\n${S3}`))).toBe('90s');
  });
  it('looks every retain/4, between 1 and 10 s', () => {
    expect(retentionIntervalMs(1000)).toBe(1000);
    expect(retentionIntervalMs(20_000)).toBe(5000);
    expect(retentionIntervalMs(86_400_000)).toBe(10_000);
  });
});

describe('LagClock', () => {
  it('is how long ago the server was at the confirmed LSN', () => {
    const c = new LagClock();
    expect(c.observe(1000, 100n, 100n)).toBe(0);
    expect(c.observe(2000, 200n, 100n)).toBe(0); // behind since this sample
    expect(c.observe(5000, 300n, 150n)).toBe(3); // the sample at 2000 (200) is not reached yet
    expect(c.observe(6000, 300n, 250n)).toBe(1); // 200 reached; 300 was first seen at 5000
    expect(c.observe(7000, 300n, 300n)).toBe(0);
  });
});

describe('status line', () => {
  it('says what is local, what waits for upload and the retain', () => {
    expect(
      formatLocal({ localBytes: 3 * 1024 * 1024, localDataBytes: 2 * 1024 * 1024, localDataFiles: 7, removedBytes: 5 * 1024 ** 3, removedFiles: 900, oldestLocalWindow: '2026-11-30T04:00:00Z', awaitingUploadFiles: 2, awaitingUploadBytes: 1024, retain: '24h' }),
    ).toBe('3.0 MB in output.dir (data 2.0 MB in 7 files, oldest window 2026-11-30T04:00:00Z), 1.0 KB in 2 files waiting for upload, 5.0 GB in S3 only; retain 24h');
  });
});
