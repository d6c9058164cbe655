/**
 * "The table rebuilt from the files equals the source" for tables of millions of rows, without
 * holding both as Maps and deep-comparing two sorted arrays of them (which took most of a large
 * test's time): the SPEC §6 rule as in `rebuildFromOutput`, but the reload set's records that no
 * streaming row at or above its snapshot touches are only hashed, as they stream by, into an
 * order-independent multiset digest (per record a 128-bit non-cryptographic hash of its CSV
 * bytes, summed per 32-bit lane); the few touched rows are rebuilt in a Map, written as COPY
 * writes CSV, and hashed after. The source's records, from COPY, are hashed the same way. Equal
 * digests and counts mean equal tables; on a difference the full comparison runs (so a failure
 * shows the differing rows, and a row this CSV writer spells unlike COPY costs time, not a
 * false failure).
 */
import { readFileSync } from 'node:fs';
import zlib from 'node:zlib';
import { expect } from 'vitest';
import { CsvRecordSplitter, parseRecord } from '../../src/output/csv.js';
import { copyOut, rebuild, rebuildFromOutput, readStreamingRows, reloadSets, sortedEntries, sourceRows, type ReloadSet } from './egress.js';

type Row = (string | null)[];

/** Two 64-bit multiply-xorshift hashes of the bytes (cyrb53's mixing, two seeds): 4 lanes of 32 bits. */
function hash4(b: Buffer, out: Uint32Array): void {
  for (let s = 0; s < 2; s++) {
    let h1 = 0xdeadbeef ^ (s + 1);
    let h2 = 0x41c6ce57 ^ (s + 1);
    for (let i = 0; i < b.length; i++) {
      h1 = Math.imul(h1 ^ b[i], 2654435761);
      h2 = Math.imul(h2 ^ b[i], 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    out[2 * s] = h1 ^ b.length;
    out[2 * s + 1] = h2;
  }
}

class MultisetDigest {
  private readonly sum = new Uint32Array(4);
  private readonly h = new Uint32Array(4);
  count = 0;
  add(record: Buffer): void {
    hash4(record, this.h);
    for (let i = 0; i < 4; i++) this.sum[i] = (this.sum[i] + this.h[i]) >>> 0;
    this.count++;
  }
  get value(): string {
    return `${this.count} rows, digest ${[...this.sum].map((x) => x.toString(16)).join('.')}`;
  }
}

/** A row as COPY (FORMAT csv) writes it (PostgreSQL's CopyAttributeOutCSV), without the LF. */
function csvRecord(row: Row): Buffer {
  const one = row.length === 1;
  const field = (v: string | null) => (v === null ? '' : v === '' || /[",\r\n]/.test(v) || (one && v === '\\.') ? `"${v.replace(/"/g, '""')}"` : v);
  return Buffer.from(row.map(field).join(','), 'utf8');
}

/** Calls `fn` with each record of a gzipped CSV file after its header. */
function eachRecord(file: string, fn: (header: string[], record: Buffer) => void): void {
  let header: string[] | null = null;
  const splitter = new CsvRecordSplitter((rec) => {
    if (!header) header = parseRecord(rec).map((x) => x!.toString('utf8'));
    else fn(header, rec);
  });
  splitter.push(zlib.gunzipSync(readFileSync(file)));
  splitter.end();
}

/**
 * Expects the table in `folder` rebuilt from `outDir` (SPEC §6) to equal `qualified` on the
 * source; returns its row count and the reload set used.
 */
export async function expectRebuiltEqual(
  outDir: string,
  url: string,
  folder: string,
  qualified: string,
  key: string[],
  columns: string[],
): Promise<{ rows: number; reload: ReloadSet | null }> {
  const sets = reloadSets(outDir, folder);
  const reload = sets.length ? sets[sets.length - 1] : null;
  const stream = readStreamingRows(outDir, folder)
    .rows.filter((r) => !reload || r.lsn >= reload.lsn)
    .sort((a, b) => (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : a.seq - b.seq));
  const keyOf = (values: (c: string) => string | null) => JSON.stringify(key.map(values));
  const touched = new Set(stream.map((r) => keyOf((c) => r.values.get(c)?.toString() ?? null)));
  const truncated = stream.some((r) => r.op === 'T');
  const got = new MultisetDigest();
  const initial = new Map<string, Row>();
  if (reload) {
    const keyIdx = key.map((c) => columns.indexOf(c));
    for (const file of reload.files) {
      let seen: string[] | null = null;
      let idx: number[] = [];
      let same = false;
      eachRecord(file, (header, rec) => {
        if (header !== seen) {
          seen = header;
          idx = columns.map((c) => header.indexOf(c));
          same = header.length === columns.length && idx.every((i, k) => i === k);
        }
        // Nothing touched and the file's columns are the compared ones: its bytes are COPY's.
        if (same && touched.size === 0) return void (truncated || got.add(rec));
        const f = parseRecord(rec);
        const row = idx.map((i) => (i < 0 ? null : (f[i]?.toString() ?? null)));
        const k = JSON.stringify(keyIdx.map((i) => row[i]));
        if (touched.has(k)) initial.set(k, row);
        else if (!truncated) got.add(same ? rec : csvRecord(row));
      });
    }
  }
  for (const row of rebuild(stream, key, columns, initial).values()) got.add(csvRecord(row));

  const want = new MultisetDigest();
  const cols = columns.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ');
  const raw = await copyOut(url, `COPY (SELECT ${cols} FROM ${qualified}) TO STDOUT (FORMAT csv)`);
  const splitter = new CsvRecordSplitter((rec) => want.add(rec));
  splitter.push(raw);
  splitter.end();

  if (got.value !== want.value) {
    // The full comparison decides (slow, only here), and shows the differing rows.
    const full = rebuildFromOutput(outDir, folder, key, columns).table;
    expect(sortedEntries(full), `${folder} rebuilt from the files (${got.value}) vs the source (${want.value})`).toEqual(sortedEntries(await sourceRows(url, qualified, key, columns)));
  }
  return { rows: want.count, reload };
}
