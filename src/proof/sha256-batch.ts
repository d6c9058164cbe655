/**
 * SHA-256 of many Merkle leaves or nodes in one call. node:crypto costs about 1 µs per call, some
 * five times the hashing of a 200-byte record itself, and a file's tree needs two hashes per record
 * (its leaf, and on average one node above it). The native addon (native/sha256_batch.c, built by
 * `npm ci` through node-gyp against the OpenSSL inside Node.js) hashes a whole batch per call;
 * where it was not built (no compiler) or PG_EGRESS_NATIVE=0, the same results come from
 * node:crypto one call at a time.
 *
 * No import of `pg` or of anything that talks to a network: `verify-proof` must stay offline.
 */
import { hash } from 'node:crypto';
import { createRequire } from 'node:module';

export interface BatchHasher {
  /** `out[32i..32i+32] = SHA-256(0x00 || data[offsets[i]..offsets[i+1]])` for i < offsets.length - 1. */
  leaves(data: Buffer, offsets: Uint32Array, out: Buffer): void;
  /** `out[32i..32i+32] = SHA-256(0x01 || nodes[64i..64i+64])` for every 64-byte pair of `nodes`. */
  pairs(nodes: Buffer, out: Buffer): void;
  /**
   * Writes to `ends` the offsets of the LFs in `data` that end CSV records (outside double
   * quotes) and returns their count; `state[0]` is 1 while inside quotes, carried across calls.
   * `ends` must have room for `data.length` entries.
   */
  recordEnds(data: Buffer, state: Int32Array, ends: Uint32Array): number;
  readonly native: boolean;
}

const sha256 = (b: Buffer): Buffer => hash('sha256', b, 'buffer') as unknown as Buffer;

let scratch = Buffer.alloc(64 * 1024);

/** node:crypto, one call per hash. */
export const jsHasher: BatchHasher = {
  native: false,
  leaves(data, offsets, out) {
    for (let i = 0; i + 1 < offsets.length; i++) {
      const len = offsets[i + 1] - offsets[i];
      if (len + 1 > scratch.length) scratch = Buffer.alloc(Math.max(len + 1, scratch.length * 2));
      scratch[0] = 0x00;
      data.copy(scratch, 1, offsets[i], offsets[i + 1]);
      sha256(scratch.subarray(0, len + 1)).copy(out, 32 * i);
    }
  },
  recordEnds(data, state, ends) {
    let q = state[0] !== 0;
    let n = 0;
    for (let i = 0; i < data.length; i++) {
      const c = data[i];
      if (c === 0x22) q = !q;
      else if (c === 0x0a && !q) ends[n++] = i;
    }
    state[0] = q ? 1 : 0;
    return n;
  },
  pairs(nodes, out) {
    const one = Buffer.alloc(65);
    one[0] = 0x01;
    for (let i = 0; i < nodes.length / 64; i++) {
      nodes.copy(one, 1, 64 * i, 64 * i + 64);
      sha256(one).copy(out, 32 * i);
    }
  },
};

function loadNative(): BatchHasher | null {
  if (process.env.PG_EGRESS_NATIVE === '0') return null;
  try {
    // ../../build from both src/proof (tests) and dist/proof (installed).
    const addon = createRequire(import.meta.url)('../../build/Release/pg_egress_sha256.node') as Omit<BatchHasher, 'native'>;
    return { native: true, leaves: addon.leaves, pairs: addon.pairs, recordEnds: addon.recordEnds };
  } catch {
    return null;
  }
}

/** The native hasher when it was built, else node:crypto. */
export const batchHasher: BatchHasher = loadNative() ?? jsHasher;
