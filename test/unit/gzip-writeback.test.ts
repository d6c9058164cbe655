/**
 * A streaming file asks the kernel to write its bytes out as they are written (output/gzip-file.ts
 * `writeback`, native/syncfs.c), so that the fsync at its close does not write the whole file:
 * the hint covers what the stream has written, in order from the start, at least WRITEBACK_BYTES
 * at a time, with the open file's descriptor; the file is the same with it; the addon's call takes
 * a range of a real file and refuses a bad descriptor.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { nativeWriteback } from '../../src/output/deflate.js';
import { GzipFileWriter } from '../../src/output/gzip-file.js';

const MiB = 1024 * 1024;

/** ~`mb` MB of CSV that deflate shrinks to about half (hex digits). */
function csv(mb: number): Buffer {
  const lines = ['id,h\n'];
  const hex = randomBytes((mb * MiB) / 2).toString('hex');
  for (let i = 0, at = 0; at < hex.length; i++, at += 100) lines.push(`${i},${hex.slice(at, at + 100)}\n`);
  return Buffer.from(lines.join(''));
}

describe('streaming files: written back as they are written', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'writeback-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  for (const zlib of [false, true]) {
    it(`covers what was written, in order, 8 MiB or more at a time, on the open file (${zlib ? "Node's zlib" : 'native deflate'})`, async () => {
      const data = csv(40);
      const file = path.join(dir, 'x.csv.gz');
      const calls: [number, number, number][] = [];
      const writeback = (fd: number, offset: number, length: number) => void calls.push([fd, offset, length]);
      const w = new GzipFileWriter(file, 1, 0o600, { records: true, zlib, writeback });
      for (let o = 0; o < data.length; o += 256 * 1024) await w.write(data.subarray(o, o + 256 * 1024));
      const st = await w.finish();
      expect(gunzipSync(readFileSync(file)).equals(data)).toBe(true);
      expect(st.bytes).toBe(statSync(file).size);
      // ~20 MB of gzip: two ranges at least, each from where the last ended.
      expect(calls.length).toBeGreaterThanOrEqual(2);
      let next = 0;
      for (const [fd, offset, length] of calls) {
        expect(fd).toBe(calls[0][0]);
        expect(offset).toBe(next);
        expect(length).toBeGreaterThanOrEqual(8 * MiB);
        next = offset + length;
      }
      expect(next).toBeLessThanOrEqual(st.bytes);
      expect(calls[0][0]).toBeGreaterThanOrEqual(0);
    });
  }

  it('a small file asks for none', async () => {
    const calls: unknown[] = [];
    const w = new GzipFileWriter(path.join(dir, 'y.csv.gz'), 1, 0o600, { records: true, writeback: (...a) => calls.push(a) });
    await w.write(csv(1));
    await w.finish();
    expect(calls).toEqual([]);
  });

  it.runIf(nativeWriteback)("the addon's writeback takes a range of a real file (the file unchanged) and refuses a bad descriptor", () => {
    const file = path.join(dir, 'z.bin');
    const bytes = randomBytes(4 * MiB);
    const fd = openSync(file, 'w');
    try {
      writeSync(fd, bytes);
      // Queued on the thread pool; the fsync below, as at a file's close, waits for the rest.
      nativeWriteback!(fd, 0, bytes.length);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(() => nativeWriteback!(-1, 0, 10)).toThrow(/writeback\(fd, offset, length\)/);
    expect(() => nativeWriteback!(fd, 0, 0)).toThrow(/writeback/);
  });
});
