/**
 * A streaming file's blocks compressed on the sink's own thread (native/sink_async.c, `thread:
 * true`, as src/output/gzip-file.ts makes them) against the same sink compressing on the caller's
 * thread: the same CSV out of gunzip, member by member in the blocks' order, and the same records,
 * root and block roots, whatever the block size and however the writes are cut; more sinks at once
 * than there are threads to be had; a sink dropped before finish().
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { NativeSinkClass } from '../../src/output/deflate.js';
import { GzipFileWriter } from '../../src/output/gzip-file.js';

const Sink = NativeSinkClass!;

/** Header, then rows with quoted LFs and doubled quotes (records cross blocks). */
function csv(rows: number): Buffer {
  const lines = ['id,v,h\n'];
  for (let i = 0; i < rows; i++) lines.push(`${i},"a ""q"" ${i}\nx",${randomBytes(8 + (i % 40)).toString('hex')}\n`);
  return Buffer.from(lines.join(''));
}

function run(thread: boolean, data: Buffer, block: number, piece: number, threadBlock?: number) {
  const s = new Sink({ level: 1, merkle: true, skip: 1, block, thread, threadBlock });
  const out: Buffer[] = [];
  for (let o = 0; o < data.length; o += piece) {
    s.write(data.subarray(o, o + piece));
    const t = s.take();
    if (t) out.push(t);
  }
  s.finish();
  const t = s.take();
  if (t) out.push(t);
  const st = s.stats();
  return { gz: Buffer.concat(out), rows: st.rows, root: st.root.toString('hex'), blocks: st.blocks.toString('hex') };
}

/** The CSV of each gzip member, in order (a member ends where the next header starts and it inflates). */
function members(gz: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let end = start + 18; end <= gz.length; end++) {
    if (end < gz.length && !(gz[end] === 0x1f && gz[end + 1] === 0x8b && gz[end + 2] === 8)) continue;
    try {
      out.push(gunzipSync(gz.subarray(start, end)));
      start = end;
      end = start + 17;
    } catch {
      // a header's bytes inside compressed data: not a member's end
    }
  }
  expect(start).toBe(gz.length);
  return out;
}

describe.runIf(NativeSinkClass)('streaming sink: blocks compressed on a thread', () => {
  it('with threadBlock, the blocks after the first grow to it once the sink has its thread; without a thread they do not', () => {
    const data = csv(30_000);
    const t = run(true, data, 65_536, 4096, 262_144);
    const sizes = members(t.gz).map((m) => m.length);
    // The first block fills at 64 KiB and is handed to the thread; the next ones are 256 KiB.
    expect(sizes[0]).toBe(65_536);
    expect(sizes.slice(1, -1).every((n) => n === 262_144)).toBe(true);
    expect(sizes.length).toBe(1 + Math.ceil((data.length - 65_536) / 262_144));
    const plain = run(false, data, 65_536, 4096, 262_144);
    expect(members(plain.gz).length).toBe(Math.ceil(data.length / 65_536));
    expect({ rows: t.rows, root: t.root, blocks: t.blocks }).toEqual({ rows: plain.rows, root: plain.root, blocks: plain.blocks });
    expect(Buffer.concat(members(t.gz)).equals(data)).toBe(true);
  });

  it('same CSV, member by member, and the same records, root and block roots as on the caller\'s thread', () => {
    const data = csv(30_000);
    for (const block of [1000, 65_536, 1 << 20]) {
      for (const piece of [777, 65_536, data.length]) {
        const a = run(false, data, block, piece);
        const b = run(true, data, block, piece);
        expect(gunzipSync(b.gz).equals(data)).toBe(true);
        expect({ rows: b.rows, root: b.root, blocks: b.blocks }).toEqual({ rows: a.rows, root: a.root, blocks: a.blocks });
        expect(b.rows).toBe(30_000);
        if (block === 65_536 && piece === 777) {
          // The members hold the same CSV, block for block, in order.
          const ma = members(a.gz);
          const mb = members(b.gz);
          expect(mb.length).toBe(Math.ceil(data.length / block));
          expect(mb.map((m) => m.length)).toEqual(ma.map((m) => m.length));
          expect(Buffer.concat(mb).equals(data)).toBe(true);
        }
      }
    }
  });

  it('more sinks at once than threads to be had: each file whole (those without a thread compress themselves)', () => {
    const data = csv(20_000);
    const sinks = [0, 1, 2, 3].map(() => new Sink({ level: 1, merkle: true, skip: 1, block: 65_536, thread: true }));
    const outs: Buffer[][] = sinks.map(() => []);
    for (let o = 0; o < data.length; o += 50_000) {
      sinks.forEach((s, i) => {
        s.write(data.subarray(o, o + 50_000));
        const t = s.take();
        if (t) outs[i].push(t);
      });
    }
    const roots = sinks.map((s, i) => {
      s.finish();
      const t = s.take();
      if (t) outs[i].push(t);
      expect(gunzipSync(Buffer.concat(outs[i])).equals(data)).toBe(true);
      return s.stats().root.toString('hex');
    });
    expect(new Set(roots).size).toBe(1);
    // The threads are free again: a new sink gets one and gives the same file.
    expect(run(true, data, 65_536, 50_000).root).toBe(roots[0]);
  });

  it('the records are found on the thread: a file cut inside a record (or inside quotes) is an error at finish()', () => {
    const data = csv(3000);
    // Cuts in the last of many blocks: after a row's first field, inside its quoted LF, and
    // right after a complete record (no error).
    const lastRow = data.indexOf('\n2999,') + 1;
    const quotedLf = data.indexOf('\n', lastRow) + 1;
    expect(data.subarray(quotedLf - 3, quotedLf + 1).toString()).toBe('99\nx');
    for (const [cut, fails] of [[lastRow + 2, true], [quotedLf, true], [lastRow, false]] as const) {
      const s = new Sink({ level: 1, merkle: true, skip: 1, block: 4096, thread: true });
      for (let o = 0; o < cut; o += 5000) s.write(data.subarray(o, Math.min(cut, o + 5000)));
      if (fails) expect(() => s.finish()).toThrow(/inside a record/);
      else {
        s.finish();
        expect(s.stats().rows).toBe(2999);
      }
    }
  });

  it('GzipFileWriter: the file, its size and sha256, and the records\' tree match the CSV written', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sink-thread-'));
    try {
      const data = csv(40_000);
      const file = path.join(dir, 'x.csv.gz');
      const w = new GzipFileWriter(file, 1, 0o600, { records: true });
      for (let o = 0; o < data.length; o += 100_000) await w.write(data.subarray(o, o + 100_000));
      const st = await w.finish();
      const bytes = readFileSync(file);
      expect(gunzipSync(bytes).equals(data)).toBe(true);
      expect(st.bytes).toBe(bytes.length);
      expect(st.rawBytes).toBe(data.length);
      expect(st.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      // Compressed on a thread: after the first 1 MiB member, one of up to threadBlock's 4 MiB
      // (on the caller's thread every member would be 1 MiB).
      expect(members(bytes).map((m) => m.length)).toEqual([1 << 20, data.length - (1 << 20)]);
      expect(st.merkle?.treeSize).toBe(40_000);
      expect(st.merkle?.root.toString('hex')).toBe(run(false, data, 1 << 20, data.length).root);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  // Last: its sinks hold their threads until they are collected, and later sinks would compress
  // on the caller's thread.
  it('a sink dropped before finish() (a discarded window) ends its thread when collected', () => {
    const data = csv(5000);
    for (let i = 0; i < 4; i++) new Sink({ level: 1, block: 4096, thread: true }).write(data);
    (globalThis as { gc?: () => void }).gc?.();
    expect(gunzipSync(run(true, data, 4096, 9999).gz).equals(data)).toBe(true);
  });
});
