/**
 * Provable exports, offline (SPEC §9): every data file's Merkle root, manifests, batch roots and
 * the batch chain verify; a proof for one record verifies with no database; and each kind of
 * tampering (a flipped byte, swapped, deleted or appended records, a deleted batch folder or
 * batch index, an altered proof) is caught and named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { waitFor } from '../harness/pg.js';
import { createEnv, listStreamingFiles, runCli, sleep, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

/** Rewrites a gzipped CSV file's records (header kept) through `edit`. */
function editRecords(file: string, edit: (records: string[]) => string[]): void {
  const text = zlib.gunzipSync(readFileSync(file)).toString('utf8');
  const lines = text.split('\n');
  const last = lines.pop(); // '' after the final \n
  expect(last).toBe('');
  const [header, ...records] = lines;
  writeFileSync(file, zlib.gzipSync([header, ...edit(records)].join('\n') + '\n'));
}

describe('verify and proofs', () => {
  let env: EgressEnv;
  let big = '';
  let work = '';
  beforeAll(async () => {
    env = await createEnv();
    writeConfig(env, 'batch:\n  interval: 1s');
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'before ' || g FROM generate_series(1, 1500) g`));
    const d = spawnCli(['run', '--config', env.configPath]);
    await waitSlotActive(env);
    await withDb(env.url, (c) => c.query(`INSERT INTO t SELECT g, 'bulk, "quoted"' || g FROM generate_series(10001, 15000) g`));
    await sleep(1100);
    for (let i = 0; i < 4; i++) {
      await withDb(env.url, (c) => c.query(`UPDATE t SET v = v || ' u${i}' WHERE id % 10 = ${i}`));
      await sleep(1100);
    }
    expect((await runCli(['reload', 'public.t', '--config', env.configPath, '--wait'])).code).toBe(0);
    await waitCaughtUp(env);
    d.proc.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);
    // The 5000-row transaction's file.
    const files = listStreamingFiles(env.outDir, 'public.t');
    big = files.find((f) => zlib.gunzipSync(readFileSync(f)).toString().split('\n').length > 5000)!;
    expect(big).toBeTruthy();
    work = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-verify-'));
  }, 180_000);
  afterAll(async () => {
    await env?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A copy of the output folder to tamper with. */
  const copy = (name: string) => {
    const dir = path.join(work, name);
    cpSync(env.outDir, dir, { recursive: true });
    return { dir, file: path.join(dir, path.relative(env.outDir, big)) };
  };

  it('verifies every file, manifest, batch root and the chain; the registry holds the same roots', async () => {
    const r = await runCli(['verify', env.outDir]);
    expect(r.stdout).toMatch(/^ok: \d+ batch indexes and their chain, \d+ manifests, \d+ files, \d+ records/);
    expect(r.code).toBe(0);
    const batches = readdirSync(path.join(env.outDir, '_batches'));
    expect(batches.length).toBeGreaterThanOrEqual(5);
    // Each index names its predecessor; exactly one is first.
    const idx = batches.map((b) => JSON.parse(readFileSync(path.join(env.outDir, '_batches', b), 'utf8')));
    expect(idx.filter((i) => i.prev === null)).toHaveLength(1);
    expect(idx.every((i) => /^[0-9a-f]{64}$/.test(i.merkle.root))).toBe(true);
    const manifest = JSON.parse(readFileSync(path.join(path.dirname(big), 'manifest.json'), 'utf8'));
    const entry = manifest.files[0];
    expect(entry.merkle).toMatchObject({ algorithm: 'rfc6962-sha256', tree_size: 5000, block_size: 1024 });
    expect(entry.merkle.block_roots).toHaveLength(4);
    const reg = await withDb(env.url, async (c) => (await c.query(`SELECT merkle_root FROM cdc_registry.files WHERE path = $1`, [path.relative(env.outDir, big)])).rows[0].merkle_root);
    expect(reg).toBe(entry.merkle.root);
    const reloadMf = await withDb(env.url, async (c) => (await c.query(`SELECT count(*)::int AS n FROM cdc_registry.files WHERE file_type = 'full_reload' AND merkle_root ~ '^[0-9a-f]{64}$'`)).rows[0].n);
    expect(reloadMf).toBeGreaterThanOrEqual(2);
  });

  it('writes a proof for one record that verify-proof checks offline, and rejects altered proofs', async () => {
    const proofPath = path.join(work, 'row.json');
    const r = await runCli(['verify', big, '--row', '3000', '--proof', proofPath]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const proof = JSON.parse(readFileSync(proofPath, 'utf8'));
    const records = zlib.gunzipSync(readFileSync(big)).toString('utf8').split('\n').slice(1);
    expect(proof.record.text).toBe(records[3000]);
    const ok = await runCli(['verify-proof', proofPath]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^PROVEN: record 3000 of public.t\/.*streaming.csv.gz/);
    const alter = async (name: string, f: (p: typeof proof) => void) => {
      const p = JSON.parse(JSON.stringify(proof));
      f(p);
      const file = path.join(work, `${name}.json`);
      writeFileSync(file, JSON.stringify(p));
      const res = await runCli(['verify-proof', file]);
      expect(res.code, name).toBe(10);
      expect(res.stdout, name).toMatch(/^NOT PROVEN/);
    };
    const other = Buffer.from(records[3001]);
    await alter('record', (p) => {
      p.record.text = other.toString();
      p.record.base64 = other.toString('base64');
    });
    await alter('path', (p) => {
      p.file_tree.audit_path[2] = p.file_tree.audit_path[2].replace(/^./, (c: string) => (c === '0' ? '1' : '0'));
    });
    await alter('index', (p) => {
      p.record.index = 3001;
    });
    await alter('root', (p) => {
      p.batch.root = p.file_tree.root;
    });
  });

  it('names the file and where it first differs for a flipped byte, swapped, deleted or appended records', async () => {
    const flip = copy('flip');
    editRecords(flip.file, (r) => r.map((x, i) => (i === 3000 ? x.replace('bulk', 'bolk') : x)));
    let res = await runCli(['verify', flip.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toContain(path.relative(env.outDir, big));
    expect(res.stdout).toMatch(/Merkle root differs from the manifest; the first difference is in records 2048-3071/);

    const swap = copy('swap');
    editRecords(swap.file, (r) => {
      [r[10], r[11]] = [r[11], r[10]];
      return r;
    });
    res = await runCli(['verify', swap.file]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/record 11 is out of \(_lsn, _seq\) order/);

    const del = copy('delete');
    editRecords(del.file, (r) => r.filter((_, i) => i !== 42));
    res = await runCli(['verify', del.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/4999 records, the manifest says 5000 \(records were added or removed\)/);

    const add = copy('append');
    editRecords(add.file, (r) => [...r, r[r.length - 1]]);
    res = await runCli(['verify', add.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/5001 records, the manifest says 5000/);
  });

  it('catches a deleted batch folder and a deleted batch index (broken chain)', async () => {
    const folder = copy('folder');
    rmSync(path.dirname(folder.file), { recursive: true });
    let res = await runCli(['verify', folder.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/which is missing \(a batch folder was deleted\)/);

    const index = copy('index');
    const names = readdirSync(path.join(index.dir, '_batches')).sort();
    const victim = names[1];
    rmSync(path.join(index.dir, '_batches', victim));
    res = await runCli(['verify', index.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(new RegExp(`predecessor batch ${victim.replace('.json', '')} is missing \\(a batch index was deleted\\): the chain is broken`));
    await waitFor('nothing else', async () => true);
  });
});
