/**
 * The one batch commit (src/commit/batch-commit.ts) without PostgreSQL: a flush (through
 * commitFlush, with a real streaming file) and an export (two parts) are committed to a real
 * temporary output.dir through a fake registry that records what it is asked, in order. Both
 * must record the intent before placing anything, place every file with its manifest, write a
 * batch index that names its predecessor and the batch root, and register once each, the index
 * last, with what their kind adds.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { syncfsAvailable } from '../../src/output/syncfs.js';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { commitBatch, intentPaths, type CommitTarget } from '../../src/commit/batch-commit.js';
import { commitFlush } from '../../src/commit/flush.js';
import { StreamingFile } from '../../src/output/table-window.js';
import { rootOf } from '../../src/proof/merkle.js';
import { tableFolder } from '../../src/output/layout.js';
import type { BatchRecord } from '../../src/registry/batches.js';
import type { ChainLink } from '../../src/proof/chain.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** A fake registry: the calls in order, the batches registered (the chain's tail is the last). */
function fakeTarget(outDir: string) {
  const calls: string[] = [];
  const batches: BatchRecord[] = [];
  const queries: string[] = [];
  let tail: ChainLink = null;
  const target: CommitTarget = {
    outDir,
    dirMode: 0o700,
    fileMode: 0o600,
    slot: 'slot1',
    source: { database: 'db', systemIdentifier: '42' },
    recordIntent: async (batchId, paths) => {
      // Nothing of the batch may be in place before its intent.
      for (const p of paths) expect(existsSync(path.join(outDir, p))).toBe(false);
      calls.push(`intent ${batchId} ${paths.length}`);
    },
    registerBatch: async (b, extra) => {
      calls.push(`register ${b.batchId}`);
      for (const f of b.files) expect(existsSync(path.join(outDir, f.path))).toBe(true);
      await extra({ query: async (q: string) => (queries.push(q), { rows: [], rowCount: 1 }) } as never);
      batches.push(b);
      tail = { batchId: b.batchId, sha256: b.indexSha256 };
    },
    chain: { run: async (fn) => fn(tail) },
  };
  return { target, calls, batches, queries };
}

/** A finished data file in _tmp, as an export worker leaves it. */
function part(tmp: string, name: string, text: string) {
  const p = path.join(tmp, name);
  writeFileSync(p, text);
  const root = createHash('sha256').update(name).digest();
  return { tmpPath: p, rows: text.split('\n').length - 2, stats: { bytes: text.length, rawBytes: text.length, sha256: sha(text) }, merkle: { treeSize: 1, root, blocks: [] } };
}

describe('commitBatch: the flush and the export commit through one function', () => {
  let out: string;
  let tmp: string;
  beforeEach(() => {
    out = mkdtempSync(path.join(os.tmpdir(), 'commit-'));
    tmp = path.join(out, '_tmp');
    mkdirSync(tmp);
  });
  afterEach(() => rmSync(out, { recursive: true, force: true }));

  it('commits a flush, then an export chained to it', async () => {
    const { target, calls, batches, queries } = fakeTarget(out);

    // A flush: one table with rows and DDL, one dropped table with neither rows nor file.
    const f = new StreamingFile({ tmpDir: tmp, gzipLevel: 1, fileMode: 0o600 });
    await f.useColumns(['id']);
    f.buf.raw(Buffer.from('0/10,0,7,2026-11-22 10:00:00+00,I,,1\n'));
    await f.rowWritten(0x10n);
    const flush = await commitFlush(target, {
      batchId: '20261122T100000Z',
      windowStartMs: Date.UTC(2026, 10, 22, 10),
      lsnEnd: 0x20n,
      windows: [
        { schema: 's', table: 't', relid: 1, folder: tableFolder('s', 't'), file: f, ddl: ['-- lsn 0/10\nALTER TABLE t ADD c int;\n'], ddlLsnStart: 0x10n, ddlLsnEnd: 0x10n, dropped: false, partitions: null },
        { schema: 's', table: 'gone', relid: 2, folder: tableFolder('s', 'gone'), file: null, ddl: [], ddlLsnStart: null, ddlLsnEnd: null, dropped: true, partitions: null },
        // Only a reload marker: no folder.
        { schema: 's', table: 'marker', relid: 3, folder: tableFolder('s', 'marker'), file: null, ddl: [], ddlLsnStart: null, ddlLsnEnd: null, dropped: false, partitions: null },
      ],
      schemaText: (w, s, e) => `schema of ${w.table} ${s} ${e}\n`,
      reloads: [],
      anchors: ['s3'],
      now: new Date(0),
    });
    expect(flush.tables.map((t) => t.table)).toEqual(['gone', 't']);
    expect(existsSync(path.join(out, 's.marker'))).toBe(false);
    const tDir = path.join(out, 's.t', '20261122T100000Z');
    expect(readFileSync(path.join(tDir, 'schema.yml'), 'utf8')).toBe('schema of t 16 16\n');
    expect(readFileSync(path.join(tDir, 'ddl.sql'), 'utf8')).toContain('ALTER TABLE');
    const mf = JSON.parse(readFileSync(path.join(tDir, 'manifest.json'), 'utf8'));
    expect(mf.files.map((x: { name: string }) => x.name)).toEqual(['streaming.csv.gz']);
    expect(mf.schema_yml.sha256).toBe(sha('schema of t 16 16\n'));
    expect(mf.ddl_sql.sha256).toBe(sha(readFileSync(path.join(tDir, 'ddl.sql'))));
    const idx1 = JSON.parse(readFileSync(path.join(out, '_batches', '20261122T100000Z.json'), 'utf8'));
    expect(idx1).toMatchObject({ kind: 'flush', prev: null, lsn: { start: '0000000000000010', end: '0000000000000020' } });
    expect(idx1.manifests.map((m: { table: string; rows: number }) => [m.table, m.rows])).toEqual([['gone', 0], ['t', 1]]);
    expect(idx1.merkle.root).toBe(rootOf([Buffer.from(mf.files[0].merkle.root, 'hex')]).toString('hex'));
    // A flush registers the tables, the slot LSN and its reloads in the batch's transaction.
    expect(queries.some((q) => q.includes('"slot_state"'))).toBe(true);

    // An export of two parts, chained after the flush.
    const parts = [part(tmp, 'a', 'id\n1\n'), part(tmp, 'b', 'id\n2\n3\n')];
    const input = {
      kind: 'reload' as const,
      batchId: '20261122T100000Z-001',
      windowStartMs: Date.UTC(2026, 10, 22, 10),
      lsnStart: 0x30n,
      lsnEnd: 0x30n,
      tables: [
        {
          schema: 's',
          table: 't',
          relid: 1,
          folder: tableFolder('s', 't'),
          data: parts.map((p, i) => ({ ...p, name: `full_reload.0000${i + 1}.csv.gz`, type: 'full_reload' as const, lsnStart: 0x30n, lsnEnd: 0x30n })),
          small: [{ name: 'schema.yml' as const, type: 'schema' as const, text: 'export schema\n' }],
          lsnStart: 0x30n,
          lsnEnd: 0x30n,
        },
      ],
      anchors: ['s3', 'near'] as const,
      concurrency: 16,
      register: async () => void calls.push('reloads done'),
    };
    expect(intentPaths(input)).toEqual([
      's.t/20261122T100000Z-001/full_reload.00001.csv.gz',
      's.t/20261122T100000Z-001/full_reload.00002.csv.gz',
      's.t/20261122T100000Z-001/schema.yml',
      's.t/20261122T100000Z-001/manifest.json',
      '_batches/20261122T100000Z-001.json',
    ]);
    const exp = await commitBatch(target, input);
    expect(exp.perTable).toEqual([{ rows: 3, rawBytes: 12 }]);
    const idx2Text = readFileSync(path.join(out, '_batches', '20261122T100000Z-001.json'));
    const idx2 = JSON.parse(idx2Text.toString());
    expect(idx2.kind).toBe('reload');
    // The hash chain: the export's index names the flush's index by its sha256.
    expect(idx2.prev).toEqual({ batch_id: '20261122T100000Z', sha256: sha(readFileSync(path.join(out, '_batches', '20261122T100000Z.json'))) });
    expect(idx2.merkle).toMatchObject({ tree_size: 2, root: rootOf(parts.map((p) => p.merkle.root)).toString('hex') });
    expect(readFileSync(path.join(out, 's.t', '20261122T100000Z-001', 'full_reload.00002.csv.gz'), 'utf8')).toBe('id\n2\n3\n');

    expect(calls).toEqual(['intent 20261122T100000Z 7', 'register 20261122T100000Z', 'intent 20261122T100000Z-001 5', 'register 20261122T100000Z-001', 'reloads done']);
    expect(batches.map((b) => [b.kind, b.prevBatchId, b.files.length, b.anchors])).toEqual([
      ['flush', null, 7, ['s3']],
      ['reload', '20261122T100000Z', 5, ['s3', 'near']],
    ]);
    expect(batches[1].indexSha256).toBe(sha(idx2Text));
    // Nothing is left in _tmp: every data file was renamed into place.
    expect(existsSync(parts[0].tmpPath)).toBe(false);
  });

  for (const mode of ['filesystem', 'files'] as const) {
    it(`an export of many tables made durable ${mode === 'filesystem' ? 'by one syncfs' : 'by an fsync each'}: every file in place, nothing left under a temporary name`, async () => {
      const { target, batches } = fakeTarget(out);
      // The policy's inputs as this test wants them (the machine's dirty memory varies).
      target.syncContext = () => ({ available: mode === 'filesystem' && syncfsAvailable(), kernel: '6.1', dirtyBytes: 0 });
      const tables = Array.from({ length: 20 }, (_, k) => {
        // A small table's file, closed without an fsync (synced: false), as a query of several COPYs leaves it.
        const p = { ...part(tmp, `t${k}`, `id\n${k}\n`), synced: false };
        return {
          schema: 's',
          table: `t${k}`,
          relid: 100 + k,
          folder: tableFolder('s', `t${k}`),
          data: [{ ...p, name: 'full_reload.csv.gz', type: 'full_reload' as const, lsnStart: 0x30n, lsnEnd: 0x30n }],
          small: [{ name: 'schema.yml' as const, type: 'schema' as const, text: `schema ${k}\n` }],
          lsnStart: 0x30n,
          lsnEnd: 0x30n,
        };
      });
      const done = await commitBatch(target, {
        kind: 'reload',
        batchId: '20261122T100000Z',
        windowStartMs: Date.UTC(2026, 10, 22, 10),
        lsnStart: 0x30n,
        lsnEnd: 0x30n,
        tables,
        anchors: [],
        concurrency: 16,
        syncfs: true,
        register: async () => undefined,
      });
      expect(done.synced).toBe(mode === 'filesystem' && syncfsAvailable() ? 'filesystem' : 'files');
      // registerBatch (the fake) found every registered file in place.
      expect(batches).toHaveLength(1);
      expect(batches[0].files).toHaveLength(20 * 3 + 1);
      for (let k = 0; k < 20; k++) {
        const dir = path.join(out, `s.t${k}`, '20261122T100000Z');
        expect(readdirSync(dir).sort()).toEqual(['full_reload.csv.gz', 'manifest.json', 'schema.yml']);
        expect(readFileSync(path.join(dir, 'full_reload.csv.gz'), 'utf8')).toBe(`id\n${k}\n`);
        expect(readFileSync(path.join(dir, 'schema.yml'), 'utf8')).toBe(`schema ${k}\n`);
      }
      expect(readdirSync(tmp)).toEqual([]);
    });
  }

  it('tells when its files are placed and its registration is queued: a batch begun then registers after it, chained to it', async () => {
    const { target, calls, batches } = fakeTarget(out);
    // The chain as src/proof/chain.ts runs it: one registration after another, in call order.
    let tail: Promise<unknown> = Promise.resolve();
    const last = (): ChainLink => (batches.length ? { batchId: batches.at(-1)!.batchId, sha256: batches.at(-1)!.indexSha256 } : null);
    target.chain = {
      run: (fn) => {
        const p = tail.then(() => fn(last()));
        tail = p.catch(() => undefined);
        return p;
      },
    };
    // The first batch's registration is slow: the second one's placing must not overtake it.
    const register = target.registerBatch;
    target.registerBatch = async (b, extra) => {
      if (b.batchId.endsWith('Z')) await new Promise((r) => setTimeout(r, 50));
      await register(b, extra);
    };
    const batch = (batchId: string, k: number) => ({
      kind: 'reload' as const,
      batchId,
      windowStartMs: Date.UTC(2026, 10, 22, 10),
      lsnStart: 0x30n,
      lsnEnd: 0x30n,
      tables: [{
        schema: 's',
        table: `t${k}`,
        relid: 100 + k,
        folder: tableFolder('s', `t${k}`),
        data: [{ ...part(tmp, `t${k}`, `id\n${k}\n`), name: 'full_reload.csv.gz', type: 'full_reload' as const, lsnStart: 0x30n, lsnEnd: 0x30n }],
        small: [{ name: 'schema.yml' as const, type: 'schema' as const, text: `schema ${k}\n` }],
        lsnStart: 0x30n,
        lsnEnd: 0x30n,
      }],
      anchors: [],
      register: async () => undefined,
    });
    let second: Promise<unknown> | null = null;
    const first = commitBatch(target, {
      ...batch('20261122T100000Z', 1),
      onPlaced: () => {
        // Placed: its files are in their folder, nothing of it registered yet.
        expect(readdirSync(path.join(out, 's.t1', '20261122T100000Z')).sort()).toEqual(['full_reload.csv.gz', 'manifest.json', 'schema.yml']);
        expect(calls).toEqual(['intent 20261122T100000Z 4']);
        second = commitBatch(target, batch('20261122T100000Z-001', 2));
      },
    });
    await first;
    await second;
    expect(calls).toEqual(['intent 20261122T100000Z 4', 'intent 20261122T100000Z-001 4', 'register 20261122T100000Z', 'register 20261122T100000Z-001']);
    expect(batches.map((b) => [b.batchId, b.prevBatchId])).toEqual([['20261122T100000Z', null], ['20261122T100000Z-001', '20261122T100000Z']]);
  });
});

