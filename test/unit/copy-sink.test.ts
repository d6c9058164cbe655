/**
 * The export byte path (src/reload/copy-sink.ts): the native sink (native/copy_sink.c, built by
 * `npm ci`) and the JavaScript fallback, fed the server's COPY OUT protocol bytes split at every
 * position (and in pieces of several sizes, with gzip members as small as 7 bytes of CSV so that
 * records cross member boundaries), give the same CSV bytes, records, tree size, root and block
 * roots as each other and as the one-record-at-a-time reference; the bytes after CopyDone, or
 * from an ErrorResponse on, go back to the client exactly.
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { BLOCK } from '../../src/proof/merkle.js';
import { jsHasher } from '../../src/proof/sha256-batch.js';
import { createCopySink, JsCopySink, type CopySink } from '../../src/reload/copy-sink.js';
import { NativeSinkClass, deflateBackend } from '../../src/output/deflate.js';
import { FULL } from '../helpers/scale.js';

const H = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

function reference(records: Buffer[]): { root: Buffer; blocks: Buffer[] } {
  const stack: { size: number; hash: Buffer }[] = [];
  const blocks: Buffer[] = [];
  for (const r of records) {
    let node = { size: 1, hash: H(Buffer.from([0]), r) };
    while (stack.length && stack[stack.length - 1].size === node.size) {
      const left = stack.pop()!;
      node = { size: node.size * 2, hash: H(Buffer.from([1]), left.hash, node.hash) };
      if (node.size === BLOCK) blocks.push(node.hash);
    }
    stack.push(node);
  }
  if (!stack.length) return { root: H(), blocks };
  let acc = stack[stack.length - 1].hash;
  for (let i = stack.length - 2; i >= 0; i--) acc = H(Buffer.from([1]), stack[i].hash, acc);
  return { root: acc, blocks };
}

const msg = (type: string, body: Buffer | string = Buffer.alloc(0)): Buffer => {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
};

/** Records as COPY (FORMAT csv) writes them: quotes doubled, LFs and commas inside quotes. */
function records(n: number, seed = 1): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const k = (i * 7919 + seed) % 13;
    const text = k === 0 ? '"multi\nline, ""quoted"" \n"' : k === 1 ? '""' : k === 2 ? '"' + 'x'.repeat(300 + i) + '"' : k === 3 ? '"a""""b"' : `v${i}`;
    out.push(Buffer.from(`${i},${text},${k % 2 ? '' : '"{1,""2""}"'}`));
  }
  return out;
}

interface Stream {
  bytes: Buffer;
  csv: Buffer;
  records: Buffer[];
  /** What the client must get back. */
  after: Buffer;
}

/** CopyOutResponse, then `data` in CopyData messages of uneven sizes, a notice among them. */
function copyOutMessages(data: Buffer): Buffer[] {
  const parts: Buffer[] = [msg('H', Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0]))];
  for (let at = 0, k = 0; at < data.length; k++) {
    const len = [1, 50, 3, 700, 17][k % 5];
    parts.push(msg('d', data.subarray(at, at + len)));
    if (k === 3) parts.push(msg('N', 'SNOTICE\0Mhello\0\0'));
    at += len;
  }
  return parts;
}

/** The CSV's CopyOutResponse and CopyData messages (copyOutMessages), then `end`. */
function stream(recs: Buffer[], end: 'done' | 'error'): Stream {
  const header = Buffer.from('id,text,arr');
  const csv = Buffer.concat([header, Buffer.from('\n'), ...recs.flatMap((r) => [r, Buffer.from('\n')])]);
  const parts = copyOutMessages(csv);
  const after = end === 'done' ? Buffer.concat([msg('C', 'COPY 5\0'), msg('Z', 'I')]) : Buffer.concat([msg('E', 'SERROR\0Mboom\0\0'), msg('Z', 'E')]);
  if (end === 'done') parts.push(msg('c'));
  return { bytes: Buffer.concat([...parts, after]), csv: end === 'done' ? csv : csv, records: recs, after };
}

interface Outcome {
  csv: Buffer;
  back: Buffer;
  rows: number;
  root: Buffer;
  blocks: Buffer[];
  copyDone: boolean;
}

function run(sink: CopySink, bytes: Buffer, cuts: number[], finish = true): Outcome {
  const out: Buffer[] = [];
  let back: Buffer | null = null;
  let prev = 0;
  for (const cut of [...cuts, bytes.length]) {
    const piece = bytes.subarray(prev, cut);
    prev = cut;
    if (back) {
      back = Buffer.concat([back, piece]);
      continue;
    }
    const at = sink.feed(piece);
    const o = sink.take();
    if (o) out.push(o);
    if (at >= 0) back = Buffer.concat([sink.leftover(), piece.subarray(at)]);
  }
  const r = finish ? sink.finish() : { rows: 0, copyDone: false, merkle: { root: Buffer.alloc(0), blocks: [] as Buffer[] } };
  const o = sink.take();
  if (o) out.push(o);
  const data = Buffer.concat(out);
  return {
    csv: sink.compressed ? gunzipSync(data) : data,
    back: back ?? Buffer.alloc(0),
    rows: r.rows,
    root: r.merkle.root,
    blocks: r.merkle.blocks,
    copyDone: r.copyDone,
  };
}

/** The reference tree of a stream, hashed once (the loops below compare tens of thousands of runs). */
const references = new WeakMap<Stream, { root: Buffer; blocks: Buffer[] }>();

function expectSame(s: Stream, got: Outcome, what: string): void {
  let ref = references.get(s);
  if (!ref) references.set(s, (ref = reference(s.records)));
  const same =
    got.csv.equals(s.csv) &&
    got.back.equals(s.after) &&
    got.rows === s.records.length &&
    got.root.equals(ref.root) &&
    got.blocks.length === ref.blocks.length &&
    got.blocks.every((b, i) => b.equals(ref.blocks[i])) &&
    got.copyDone;
  // The same checks one by one name what differs; a run that matches skips their cost.
  if (same) return;
  expect(got.csv.equals(s.csv), `${what}: csv`).toBe(true);
  expect(got.back.equals(s.after), `${what}: bytes handed back`).toBe(true);
  expect(got.rows, what).toBe(s.records.length);
  expect(got.root.equals(ref.root), `${what}: root`).toBe(true);
  expect(got.blocks.length, what).toBe(ref.blocks.length);
  got.blocks.forEach((b, i) => expect(b.equals(ref.blocks[i]), `${what}: block ${i}`).toBe(true));
  expect(got.copyDone, what).toBe(true);
}

/** PG_EGRESS_DEFLATE=zlib: the native sink hands out raw CSV for Node's zlib. */
function nativeRaw(level: number, block?: number): CopySink {
  process.env.PG_EGRESS_DEFLATE = 'zlib';
  try {
    const s = createCopySink(level, { block });
    expect(s.compressed).toBe(false);
    return s;
  } finally {
    delete process.env.PG_EGRESS_DEFLATE;
  }
}

const sinks = (level: number, block?: number): [string, () => CopySink][] => [
  ['native', () => createCopySink(level, { block })],
  ['native, raw for zlib', () => nativeRaw(level, block)],
  ['javascript', () => new JsCopySink(jsHasher)],
];

describe('COPY sinks: native and JavaScript', () => {
  it('the native sink is built (npm ci) and ISA-L or libdeflate compresses', () => {
    expect(NativeSinkClass).not.toBeNull();
    expect(createCopySink(1).compressed).toBe(true);
    expect(['isa-l', 'libdeflate']).toContain(deflateBackend(1));
    expect(deflateBackend(6)).toBe('libdeflate');
  });

  it('same CSV, records, root and hand-back at every split of a stream, with members of 7 bytes and of 1 MiB', () => {
    const s = stream(records(24), 'done');
    for (const block of [7, 1 << 20]) {
      for (const [name, make] of sinks(1, block)) {
        for (let i = 0; i <= s.bytes.length; i++) expectSame(s, run(make(), s.bytes, [i]), `${name} block ${block} split ${i}`);
      }
    }
  });

  it('same results for every pair of splits of a short stream, on every level', () => {
    const s = stream(records(6), 'done');
    for (const level of [0, 1, 2, 3, 6, 9]) {
      for (const [name, make] of sinks(level, 5)) {
        for (let i = 0; i <= s.bytes.length; i += level === 1 ? 1 : 7) {
          for (let j = i; j <= s.bytes.length; j += 3) expectSame(s, run(make(), s.bytes, [i, j]), `${name} level ${level} splits ${i},${j}`);
        }
      }
    }
  });

  it('block roots over 2,100+ records, fed in pieces of many sizes and at random cuts', () => {
    const s = stream(records(2300, 5), 'done');
    const cutsOf = (size: number) => Array.from({ length: Math.floor(s.bytes.length / size) }, (_, k) => (k + 1) * size);
    const random = Array.from({ length: 300 }, () => randomBytes(4).readUInt32BE() % s.bytes.length).sort((a, b) => a - b);
    for (const block of [64, 4096, 1 << 20]) {
      for (const [name, make] of sinks(1, block)) {
        // Pieces of one byte: at full size (the test above already splits at every byte once).
        for (const size of FULL ? [1, 5, 64, 1000, 65536] : [5, 64, 1000, 65536]) expectSame(s, run(make(), s.bytes, cutsOf(size)), `${name} block ${block} pieces of ${size}`);
        expectSame(s, run(make(), s.bytes, random), `${name} block ${block} random cuts`);
      }
    }
    expect(reference(s.records).blocks.length).toBe(2);
  });

  it('an empty table (the header only) is zero records, the empty root and a valid gzip file', () => {
    const s = stream([], 'done');
    for (const [name, make] of sinks(1)) {
      const got = run(make(), s.bytes, [3]);
      expectSame(s, got, name);
      expect(got.root.equals(H())).toBe(true);
    }
  });

  it('an ErrorResponse ends the COPY: the client gets it from its first byte, also when its header was split', () => {
    const recs = records(10);
    const s = stream(recs, 'error');
    const errorAt = s.bytes.length - s.after.length;
    for (const [name, make] of sinks(1, 16)) {
      for (const cut of [errorAt - 1, errorAt, errorAt + 1, errorAt + 3, errorAt + 5, errorAt + 9]) {
        const got = run(make(), s.bytes, [cut], false);
        expect(got.back.equals(s.after), `${name} cut ${cut}`).toBe(true);
      }
    }
  });

  it('a stream cut inside a record is an error at the end, not a short file', () => {
    const csv = Buffer.from('h\n1,"open\n');
    const bytes = Buffer.concat([msg('H', Buffer.alloc(9)), msg('d', csv), msg('c')]);
    for (const [name, make] of sinks(1)) {
      const sink = make();
      expect(sink.feed(bytes), name).toBe(bytes.length);
      expect(() => sink.finish(), name).toThrow(/inside a record/);
    }
  });
});

/**
 * Text mode (the native path's default when the columns are known): the server sends COPY's text
 * format and the sink writes the CSV. The reference encoders below follow copyto.c's rules
 * (test/integration/copy-text.test.ts checks the same against a real server's output).
 */
const TEXT_ESC: Record<string, string> = { '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v' };
const textField = (v: string | null) => (v === null ? '\\N' : v.replace(/[\\\b\f\n\r\t\v]/g, (c) => TEXT_ESC[c]));
const csvField = (v: string | null, single: boolean) =>
  v === null ? '' : v === '' || /[,"\n\r]/.test(v) || (single && v === '\\.') ? `"${v.replace(/"/g, '""')}"` : v;

const VALUES: (string | null)[] = [
  null, '', '\\.', '\\N', 'N', '.', 'plain', 'a,b', '"q"', 'tab\there', 'lf\nhere', 'cr\rhere', '\b\f\v', '\\', '\\\\x',
  'ünïcødé € 𝄞', 'x'.repeat(15), 'y'.repeat(16), 'z'.repeat(17), `${'"'.repeat(20)}${','.repeat(20)}`, `${'\\'.repeat(33)}t`,
  'long '.repeat(40), ' \\. ',
];

function textStream(rows: (string | null)[][], columns: string[]): Stream {
  const single = columns.length === 1;
  const text = Buffer.from(rows.map((r) => r.map(textField).join('\t') + '\n').join(''));
  const records = rows.map((r) => Buffer.from(r.map((v) => csvField(v, single)).join(',')));
  const csv = Buffer.concat([Buffer.from(columns.join(',') + '\n'), ...records.flatMap((r) => [r, Buffer.from('\n')])]);
  const after = Buffer.concat([msg('C', `COPY ${rows.length}\0`), msg('Z', 'I')]);
  return { bytes: Buffer.concat([...copyOutMessages(text), msg('c'), after]), csv, records, after };
}

const textRows = (n: number, width: number): (string | null)[][] =>
  Array.from({ length: n }, (_, i) => Array.from({ length: width }, (_, j) => VALUES[(i * 7 + j * 3 + ((i * j) % 5)) % VALUES.length]));

describe('COPY sinks: text mode', () => {
  const cols3 = ['id', 'text', 'arr'];
  const textSink = (columns: string[], level: number, block?: number) => {
    const s = createCopySink(level, { columns, block });
    expect(s.format).toBe('text');
    return s;
  };

  it('the CSV of the text rows at every split, with members of 7 bytes and of 1 MiB: same bytes, records and root as the CSV', () => {
    const s = textStream(textRows(40, 3), cols3);
    for (const block of [7, 1 << 20]) {
      for (let i = 0; i <= s.bytes.length; i++) expectSame(s, run(textSink(cols3, 1, block), s.bytes, [i]), `text block ${block} split ${i}`);
    }
  });

  it('every pair of splits of a short stream, at levels 1 and 6; one-column rows quote \\. alone', () => {
    for (const columns of [cols3, ['only']]) {
      const s = textStream(textRows(columns.length === 1 ? VALUES.length : 6, columns.length), columns);
      for (const level of [1, 6]) {
        for (let i = 0; i <= s.bytes.length; i += 5) {
          for (let j = i; j <= s.bytes.length; j += 11) expectSame(s, run(textSink(columns, level, 5), s.bytes, [i, j]), `${columns.length} columns level ${level} splits ${i},${j}`);
        }
      }
    }
    expect(csvField('\\.', true)).toBe('"\\."');
  });

  it('wide rows of long values, over many blocks, in pieces of several sizes', () => {
    const s = textStream(textRows(2100, 9), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i']);
    for (const size of [5, 64, 1000, 65536]) {
      const cuts = Array.from({ length: Math.floor(s.bytes.length / size) }, (_, k) => (k + 1) * size);
      expectSame(s, run(textSink(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'], 1, 4096), s.bytes, cuts), `pieces of ${size}`);
    }
  });

  it('rows on both sides of the batched hashing limit (502 bytes), interleaved, keep their order in the tree', () => {
    // Short rows' leaves are hashed sixteen at a time where the CPU has AVX-512 (native/sha256_x16.c),
    // longer ones at once: the tree must still take them in record order, across blocks.
    const rows = Array.from({ length: 2100 }, (_, i) => [String(i), 'x'.repeat(440 + ((i * 37) % 120)), i % 3 ? 'a,b' : null]);
    const s = textStream(rows, cols3);
    for (const block of [4096, 1 << 20]) {
      for (const size of [7, 1000, 65536]) {
        const cuts = Array.from({ length: Math.floor(s.bytes.length / size) }, (_, k) => (k + 1) * size);
        expectSame(s, run(textSink(cols3, 1, block), s.bytes, cuts), `block ${block} pieces of ${size}`);
      }
    }
  });

  it('an escape COPY never writes is an error, and so is a stream cut inside a row', () => {
    const bad = textSink(['a'], 1);
    expect(() => bad.feed(Buffer.concat([msg('H', Buffer.alloc(9)), msg('d', 'a\\qb\n'), msg('c')]))).toThrow(/unexpected escape/);
    const cut = textSink(['a'], 1);
    const bytes = Buffer.concat([msg('H', Buffer.alloc(9)), msg('d', 'abc'), msg('c')]);
    expect(cut.feed(bytes)).toBe(bytes.length);
    expect(() => cut.finish()).toThrow(/inside a row/);
  });
});
