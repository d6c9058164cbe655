/**
 * Batched hashing (src/proof/sha256-batch.ts) and the batched MerkleBuilder against the
 * one-record-at-a-time merge cascade written here with node:crypto: same roots, sizes and block
 * roots for every size to 2,100 records, records of every length around the staging limits, and
 * both hashers (the native addon, which `npm ci` builds, and the node:crypto fallback).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { BLOCK, MerkleBuilder } from '../../src/proof/merkle.js';
import { batchHasher, jsHasher } from '../../src/proof/sha256-batch.js';
import { CsvLeaves } from '../../src/proof/csv-leaves.js';
import { CsvRecordSplitter } from '../../src/output/csv.js';

const H = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** The cascade one leaf at a time, as SPEC §9 describes it. */
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

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const recs = (n: number, len: (i: number) => number) => Array.from({ length: n }, (_, i) => randomBytes(len(i)));

describe('batched SHA-256 and Merkle builder', () => {
  it('the native addon is built (npm ci) and agrees with node:crypto on leaves and pairs', () => {
    expect(batchHasher.native).toBe(true);
    const data = randomBytes(5000);
    const offsets = Uint32Array.from([0, 0, 1, 64, 65, 1000, 4999, 5000]);
    const a = Buffer.alloc(32 * 7);
    const b = Buffer.alloc(32 * 7);
    batchHasher.leaves(data, offsets, a);
    jsHasher.leaves(data, offsets, b);
    expect(a.equals(b)).toBe(true);
    expect(a.subarray(0, 32).equals(H(Buffer.from([0])))).toBe(true);
    const nodes = randomBytes(64 * 9);
    const c = Buffer.alloc(32 * 9);
    const d = Buffer.alloc(32 * 9);
    batchHasher.pairs(nodes, c);
    jsHasher.pairs(nodes, d);
    expect(c.equals(d)).toBe(true);
    expect(c.subarray(32, 64).equals(H(Buffer.from([1]), nodes.subarray(64, 128)))).toBe(true);
  });

  it('native leaves and pairs agree with node:crypto for every length 0..600 and runs of every count to 300', () => {
    // Sixteen short messages at a time with AVX-512 (native/sha256_x16.c), a longer one (over 502
    // bytes) or any without it one at a time: every padding case (55/56/63/64 bytes and on), lanes
    // of one to sixteen messages, mixed lengths in one run.
    const data = randomBytes(700);
    for (let count = 0; count <= 300; count += count < 40 ? 1 : 37) {
      const offsets = new Uint32Array(count + 1);
      const lens = Array.from({ length: count }, (_, i) => (i * 131 + count * 7) % 601);
      const starts = lens.map((_, i) => (i * 17) % 99);
      const buf = Buffer.concat(lens.map((l, i) => data.subarray(starts[i], starts[i] + l)));
      let at = 0;
      for (let i = 0; i < count; i++) offsets[i + 1] = at += lens[i];
      const a = Buffer.alloc(32 * count);
      const b = Buffer.alloc(32 * count);
      batchHasher.leaves(buf, offsets, a);
      jsHasher.leaves(buf, offsets, b);
      expect(a.equals(b), `leaves, ${count} records`).toBe(true);
      const nodes = randomBytes(64 * count);
      const c = Buffer.alloc(32 * count);
      const d = Buffer.alloc(32 * count);
      batchHasher.pairs(nodes, c);
      jsHasher.pairs(nodes, d);
      expect(c.equals(d), `pairs, ${count} pairs`).toBe(true);
    }
    for (let len = 0; len <= 600; len++) {
      const rec = data.subarray(0, len);
      const out = Buffer.alloc(32);
      batchHasher.leaves(rec, Uint32Array.from([0, len]), out);
      expect(out.equals(H(Buffer.from([0]), rec)), `a leaf of ${len} bytes`).toBe(true);
    }
  });

  it('with the AVX-512 path off (PG_EGRESS_SHA_X16=0) the addon gives the same leaves and pairs', () => {
    // The variable is read once per process: a process of its own, hashing what this one hashes.
    const data = randomBytes(24_000);
    const lens = Array.from({ length: 40 }, (_, i) => (i * 97) % 600);
    const offsets = Uint32Array.from([0, ...lens.map(((at) => (l: number) => (at += l))(0))]);
    const script = `
      const addon = require(${JSON.stringify(path.join(ROOT, 'build/Release/pg_egress_sha256.node'))});
      const data = Buffer.from(process.argv[1], 'base64');
      const offsets = Uint32Array.from(JSON.parse(process.argv[2]));
      const a = Buffer.alloc(32 * (offsets.length - 1));
      addon.leaves(data, offsets, a);
      const p = Buffer.alloc(32 * 40);
      addon.pairs(data.subarray(0, 64 * 40), p);
      process.stdout.write(addon.shaLanes() + ' ' + a.toString('hex') + ' ' + p.toString('hex'));`;
    const r = spawnSync(process.execPath, ['-e', script, data.toString('base64'), JSON.stringify([...offsets])], { env: { ...process.env, PG_EGRESS_SHA_X16: '0' }, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const a = Buffer.alloc(32 * lens.length);
    jsHasher.leaves(data, offsets, a);
    const p = Buffer.alloc(32 * 40);
    jsHasher.pairs(data.subarray(0, 64 * 40), p);
    expect(r.stdout).toBe(`1 ${a.toString('hex')} ${p.toString('hex')}`);
    // And in this process, sixteen lanes exactly where the CPU has what they need.
    const flags = readFileSync('/proc/cpuinfo', 'utf8');
    const avx512 = /\bavx512f\b/.test(flags) && /\bavx512bw\b/.test(flags);
    const addon = createRequire(import.meta.url)('../../build/Release/pg_egress_sha256.node') as { shaLanes(): number };
    expect(addon.shaLanes()).toBe(avx512 ? 16 : 1);
  });

  it('the native addon refuses offsets past the data instead of reading past it', () => {
    expect(() => batchHasher.leaves(Buffer.alloc(10), Uint32Array.from([0, 11]), Buffer.alloc(32))).toThrow(/offsets/);
    expect(() => batchHasher.pairs(Buffer.alloc(63), Buffer.alloc(32))).toThrow(/pairs/);
  });

  for (const hasher of [batchHasher, jsHasher]) {
    it(`gives the one-at-a-time roots and block roots for every size 0..2100 (${hasher.native ? 'native' : 'node:crypto'})`, () => {
      const all = recs(2100, (i) => (i * 37) % 300);
      const b = new MerkleBuilder(hasher);
      for (let n = 0; n <= 2100; n++) {
        if (n > 0) b.addRecord(all[n - 1]);
        // Reading the root settles the staged records: sample sizes so batches of many lengths occur.
        if (n < 70 || n % 97 === 0 || n === 1024 || n === 2048 || n === 2100) {
          const ref = reference(all.slice(0, n));
          expect(b.size).toBe(n);
          expect(b.root().equals(ref.root), `size ${n}`).toBe(true);
          expect(b.blocks.map((x) => x.toString('hex'))).toEqual(ref.blocks.map((x) => x.toString('hex')));
        }
      }
    });
  }

  it('handles records larger than the staging buffer, empty records, and ranges of a larger buffer', () => {
    const all = [...recs(3, () => 100_000), ...recs(600, (i) => i % 3), ...recs(2, () => 40_000)];
    const b = new MerkleBuilder();
    const big = Buffer.concat(all);
    let at = 0;
    for (const r of all) {
      b.addRange(big, at, at + r.length);
      at += r.length;
    }
    expect(b.root().equals(reference(all).root)).toBe(true);
    expect(b.size).toBe(all.length);
  });

  it('CsvLeaves: the same leaves as CsvRecordSplitter for CSV with quoted LFs, split at every byte and at random, both hashers', () => {
    const rows = Array.from({ length: 300 }, (_, i) => `${i},"${'z'.repeat(i % 50)}\n${i}",${i % 3 ? '' : '""""'}\n`).join('');
    const csv = Buffer.from('id,v,w\n1,"a\nb",x\n2,,""\n3,"q""\n""q",\n,,\n\n4,plain,"x,y"\n' + rows);
    const expected = new MerkleBuilder(jsHasher);
    let header = true;
    const sp = new CsvRecordSplitter((r) => (header ? (header = false) : expected.addRecord(r)));
    sp.push(csv);
    sp.end();
    const want = expected.root().toString('hex');
    expect(expected.size).toBe(306);
    for (const hasher of [batchHasher, jsHasher]) {
      for (let cut = 0; cut <= csv.length; cut += cut < 120 ? 1 : 97) {
        const l = new CsvLeaves({ skipRecords: 1, hasher });
        l.push(csv.subarray(0, cut));
        l.push(csv.subarray(cut));
        l.end();
        expect(l.tree.size).toBe(expected.size);
        expect(l.tree.root().toString('hex'), `cut at ${cut}`).toBe(want);
      }
      const l = new CsvLeaves({ skipRecords: 1, hasher });
      for (let at = 0; at < csv.length; ) {
        const n = 1 + Math.floor(Math.random() * 40);
        l.push(csv.subarray(at, at + n));
        at += n;
      }
      l.end();
      expect(l.tree.root().toString('hex')).toBe(want);
    }
    const bad = new CsvLeaves();
    bad.push(Buffer.from('1,"open\n'));
    expect(() => bad.end()).toThrow(/inside a record/);
  });
});
