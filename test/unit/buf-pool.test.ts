/**
 * The native sinks' buffer cache (native/buf_pool.c): a sink's block and output buffers go back
 * to it when the sink is done with them, and the next sink takes them instead of new memory (an
 * export of many small tables made fresh pages, zeroed by the kernel, for every table). A cached
 * buffer holds a previous file's bytes: the files, records and roots must not depend on that.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { nativeBufPoolStats, NativeSinkClass } from '../../src/output/deflate.js';

const Sink = NativeSinkClass!;

/** ~200 KB of CSV with quoted LFs: the block grows 64 -> 128 -> 256 KiB, the output likewise. */
function csv(seed: number): Buffer {
  const lines = ['id,v\n'];
  for (let i = 0; i < 2500; i++) lines.push(`${i},"r${seed} ""${i}""\n${'x'.repeat(i % 50)}",${(i * 7919 + seed) % 100000}\n`);
  return Buffer.from(lines.join(''));
}

function run(data: Buffer) {
  const s = new Sink({ level: 1, merkle: true, skip: 1, block: 1 << 20 });
  for (let o = 0; o < data.length; o += 65536) s.write(data.subarray(o, o + 65536));
  s.finish();
  const gz = s.take()!;
  const st = s.stats();
  return { gz, rows: st.rows, root: st.root.toString('hex'), blocks: st.blocks.toString('hex') };
}

describe.runIf(NativeSinkClass && nativeBufPoolStats)('native buffer cache', () => {
  it('a sink after another takes the buffers it left, and writes the same file as a sink with new memory', () => {
    const a = csv(1);
    const first = run(a);
    // Buffers full of another file's bytes, then the same file again.
    const before = nativeBufPoolStats!();
    for (let k = 0; k < 5; k++) run(Buffer.concat([randomBytes(150_000).map((b) => (b === 10 || b === 34 ? 65 : b)), Buffer.from('\n')]));
    const again = run(a);
    const after = nativeBufPoolStats!();
    expect(again.gz.equals(first.gz)).toBe(true);
    expect([again.rows, again.root, again.blocks]).toEqual([first.rows, first.root, first.blocks]);
    expect(gunzipSync(again.gz).equals(a)).toBe(true);
    // Each of the six sinks grew its block to 256 KiB from 64: at least two cached sizes each time.
    expect(after.hits - before.hits).toBeGreaterThanOrEqual(12);
    expect(after.bytes).toBeLessThanOrEqual(16 << 20);
  });
});
