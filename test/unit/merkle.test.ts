/**
 * The Merkle module against an independent RFC 6962 implementation written here from the RFC's
 * definitions (recursive MTH and PATH, createHash), and against the published test vectors of
 * transparency-dev/merkle (testonly/constants.go).
 */
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { auditPath, auditPathRanges, EMPTY_ROOT, leafHash, MerkleBuilder, verifyInclusion } from '../../src/proof/merkle.js';

const H = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const k = (n: number) => 2 ** Math.floor(Math.log2(n - 1)); // largest power of two < n (n > 1)
function mth(d: Buffer[]): Buffer {
  if (d.length === 0) return H();
  if (d.length === 1) return H(Buffer.from([0]), d[0]);
  const s = k(d.length);
  return H(Buffer.from([1]), mth(d.slice(0, s)), mth(d.slice(s)));
}
function path(m: number, d: Buffer[]): Buffer[] {
  if (d.length <= 1) return [];
  const s = k(d.length);
  return m < s ? [...path(m, d.slice(0, s)), mth(d.slice(s))] : [...path(m - s, d.slice(s)), mth(d.slice(0, s))];
}

const hx = (s: string) => Buffer.from(s, 'hex');
const VECTOR_LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hx);
const VECTOR_ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

const records = (n: number) => Array.from({ length: n }, (_, i) => Buffer.from(`${i},row ${i},"q""${i % 7}"`));
const build = (d: Buffer[]) => {
  const b = new MerkleBuilder();
  for (const r of d) b.addRecord(r);
  return b;
};

describe('RFC 6962 Merkle trees', () => {
  it('match the published vectors for every prefix of the 8 test leaves (8-leaf root 5dc9da79…4604328)', () => {
    for (let n = 0; n <= 8; n++) expect(build(VECTOR_LEAVES.slice(0, n)).root().toString('hex')).toBe(VECTOR_ROOTS[n]);
    expect(EMPTY_ROOT.toString('hex')).toBe(VECTOR_ROOTS[0]);
  });

  it('match an independent implementation for sizes 0, 1, 2, 3, 5, 7, 8, 1000 and a random size', () => {
    const random = 1 + Math.floor(Math.random() * 3000);
    for (const n of [0, 1, 2, 3, 5, 7, 8, 1000, random]) {
      const d = records(n);
      const b = build(d);
      expect(b.size).toBe(n);
      expect(b.root().toString('hex'), `size ${n}`).toBe(mth(d).toString('hex'));
    }
    const big = Array.from({ length: 257 }, () => randomBytes(Math.floor(Math.random() * 200000)));
    expect(build(big).root().equals(mth(big))).toBe(true);
  });

  it('proves every leaf of sizes 1 to 33, and rejects a wrong index, size, root, leaf or path', async () => {
    for (let n = 1; n <= 33; n++) {
      const d = records(n);
      const root = mth(d);
      for (let m = 0; m < n; m++) {
        const want = path(m, d);
        const got = await auditPath(m, n, d.map(leafHash));
        expect(got.path.map((p) => p.toString('hex'))).toEqual(want.map((p) => p.toString('hex')));
        expect(auditPathRanges(m, n)).toHaveLength(want.length);
        const leaf = leafHash(d[m]);
        expect(verifyInclusion(leaf, m, n, got.path, root), `${m} of ${n}`).toBe(true);
        if (n > 1) {
          expect(verifyInclusion(leaf, (m + 1) % n, n, got.path, root)).toBe(false);
          expect(verifyInclusion(leafHash(d[(m + 1) % n]), m, n, got.path, root)).toBe(false);
        }
        // A size whose tree needs a longer path fails. (Sizes that give the leaf the same path
        // shape verify too: RFC 9162 binds the size through the root, which is why a proof file
        // carries the tree size of the manifest and verify-proof checks it.)
        expect(verifyInclusion(leaf, m, 2 * n + 1, got.path, root)).toBe(false);
        expect(verifyInclusion(leaf, m, n, got.path, H(root))).toBe(false);
        expect(verifyInclusion(leaf, n, n, got.path, root)).toBe(false);
        if (got.path.length) {
          const bad = got.path.map((p) => Buffer.from(p));
          bad[0][0] ^= 1;
          expect(verifyInclusion(leaf, m, n, bad, root)).toBe(false);
          expect(verifyInclusion(leaf, m, n, got.path.slice(1), root)).toBe(false);
        }
      }
    }
  });

  it('give the same root and block roots from records, record ranges and leaf hashes (sizes 0..2100)', () => {
    const d = records(2100);
    const joined = Buffer.concat(d.flatMap((r) => [r, Buffer.from('\n')]));
    const a = new MerkleBuilder();
    const b = new MerkleBuilder();
    const c = new MerkleBuilder();
    let off = 0;
    for (let n = 0; n <= d.length; n++) {
      if (n === 0 || n % 97 === 0 || n === 1024 || n === 2048 || n === d.length) {
        const want = mth(d.slice(0, n)).toString('hex');
        for (const x of [a, b, c]) expect(x.root().toString('hex'), `size ${n}`).toBe(want);
      }
      if (n === d.length) break;
      a.addRecord(d[n]);
      b.addRange(joined, off, off + d[n].length);
      c.addLeafHash(leafHash(d[n]));
      off += d[n].length + 1;
    }
    const blocks = [0, 1].map((k) => mth(d.slice(k * 1024, (k + 1) * 1024)).toString('hex'));
    for (const x of [a, b, c]) expect(x.blocks.map((h) => h.toString('hex'))).toEqual(blocks);
  });

  it('keeps memory logarithmic: the builder holds at most log2(n)+1 subtree roots', () => {
    const b = new MerkleBuilder();
    const leaf = leafHash(Buffer.from('x'));
    let max = 0;
    for (let i = 0; i < 100_000; i++) {
      b.addLeafHash(leaf);
      max = Math.max(max, (b as unknown as { stack: unknown[] }).stack.length);
    }
    expect(max).toBeLessThanOrEqual(17);
  });
});
