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
import { createHash } from 'node:crypto';
import { waitFor } from '../harness/pg.js';
import { checkProof, ProofLinkError } from '../../src/proof/proof-check.js';
import { leafHash } from '../../src/proof/merkle.js';
import { createEnv, listStreamingFiles, runCli, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type EgressEnv } from '../helpers/egress.js';

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
    await withDb(env.url, (c) =>
      c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'before ' || g FROM generate_series(1, 1500) g;
               CREATE TABLE t_a (id int PRIMARY KEY); CREATE TABLE t_b (id int PRIMARY KEY)`),
    );
    // The clock a window ahead: a window is over at the first idle moment (src/clock.ts).
    const d = spawnCli(['run', '--config', env.configPath], { env: { PG_EGRESS_TEST_CLOCK_OFFSET_MS: '1000' } });
    await waitSlotActive(env);
    // One transaction over three tables: the batch tree of the big file has three leaves.
    await withDb(env.url, (c) =>
      c.query(`INSERT INTO t_a VALUES (1); INSERT INTO t SELECT g, 'bulk, "quoted"' || g FROM generate_series(10001, 15000) g; INSERT INTO t_b VALUES (1)`),
    );
    // Each registered before the next: one batch each.
    await waitCaughtUp(env);
    for (let i = 0; i < 4; i++) {
      await withDb(env.url, (c) => c.query(`UPDATE t SET v = v || ' u${i}' WHERE id % 10 = ${i}`));
      await waitCaughtUp(env);
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

  it('binds the proof end to end: a fabricated proof and a genuine one with any hash changed fail naming the broken link', async () => {
    const proofPath = path.join(work, 'bound.json');
    expect((await runCli(['verify', big, '--row', '1234', '--proof', proofPath])).code).toBe(0);
    const genuine = JSON.parse(readFileSync(proofPath, 'utf8'));
    const ok = await runCli(['verify-proof', proofPath]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/6\. batch index → sha256: the index's bytes \(carried in the proof\) hash to [0-9a-f]{64}/);
    expect(ok.stdout).toMatch(/NOT CHECKED OFFLINE:\n {2}no anchor references/);
    const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
    const clone = () => JSON.parse(JSON.stringify(genuine));
    /** The link checkProof names for a proof, or 'ok'. */
    const linkOf = (p: unknown): string => {
      try {
        checkProof(p);
        return 'ok';
      } catch (e) {
        expect(e).toBeInstanceOf(ProofLinkError);
        return (e as ProofLinkError).link;
      }
    };
    expect(linkOf(genuine)).toBe('ok');
    const flipHex = (h: string, at = 0) => h.slice(0, at) + (h[at] === '0' ? '1' : '0') + h.slice(at + 1);
    const b64 = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o, null, 2) + '\n').toString('base64');
    const fromB64 = (s: string) => JSON.parse(Buffer.from(s, 'base64').toString('utf8'));

    // The fabricated proof of the issue: an invented record, one-leaf file and batch trees, the
    // genuine index_sha256 (and the genuine manifest and index bytes).
    const forged = Buffer.from('9999999999999999,0,1,2026-01-01 00:00:00+00,I,,424242,invented');
    const forgedRoot = leafHash(forged).toString('hex');
    const fabricate = () => {
      const p = clone();
      p.record = { index: 0, base64: forged.toString('base64'), text: forged.toString() };
      p.file_tree = { size: 1, root: forgedRoot, audit_path: [] };
      p.batch = { ...p.batch, root: leafHash(Buffer.from(forgedRoot, 'hex')).toString('hex'), size: 1, leaf_index: 0, audit_path: [] };
      return p;
    };
    expect(linkOf(fabricate())).toBe('file root → manifest');
    // ... with a manifest forged to list the invented root: the genuine index does not list it.
    const withManifest = fabricate();
    const m = fromB64(withManifest.manifest.base64);
    m.files.find((f: { name: string }) => f.name === path.basename(big)).merkle = { algorithm: 'rfc6962-sha256', tree_size: 1, root: forgedRoot };
    withManifest.manifest.base64 = b64(m);
    withManifest.manifest.sha256 = sha(Buffer.from(withManifest.manifest.base64, 'base64'));
    expect(linkOf(withManifest)).toBe('manifest → batch index');
    // ... and an index forged to list that manifest: its batch root is not the one-leaf root.
    const withIndex = JSON.parse(JSON.stringify(withManifest));
    const ix = fromB64(withIndex.batch.index_base64);
    ix.manifests.find((x: { path: string }) => x.path === withIndex.manifest.path).sha256 = withIndex.manifest.sha256;
    withIndex.batch.index_base64 = b64(ix);
    expect(linkOf(withIndex)).toBe('batch root → batch index');
    // ... and with the index's batch root forged too: its bytes no longer hash to the genuine sha256.
    ix.merkle = { algorithm: 'rfc6962-sha256', tree_size: 1, root: withIndex.batch.root };
    withIndex.batch.index_base64 = b64(ix);
    expect(linkOf(withIndex)).toBe('batch index → sha256');
    // ... and the old format without the index bytes is refused.
    const v1 = fabricate();
    v1.format = 'pg-egress.proof/1';
    delete v1.batch.index_base64;
    expect(linkOf(v1)).toBe('proof file');
    const fab = path.join(work, 'fabricated.json');
    writeFileSync(fab, JSON.stringify(withIndex));
    let res = await runCli(['verify-proof', fab]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/^NOT PROVEN: broken link batch index → sha256: /);

    // The genuine proof with one hash changed anywhere along the path.
    const cases: [string, (p: ReturnType<typeof clone>) => void, string][] = [];
    genuine.file_tree.audit_path.forEach((_: string, k: number) => cases.push([`file audit path ${k}`, (p) => (p.file_tree.audit_path[k] = flipHex(p.file_tree.audit_path[k], 7)), 'record → file root']));
    cases.push(['record bytes', (p) => ((p.record.base64 = Buffer.from(p.record.text + ' ').toString('base64')), (p.record.text += ' ')), 'record → file root']);
    cases.push(['record index', (p) => (p.record.index += 1), 'record → file root']);
    cases.push(['file root', (p) => (p.file_tree.root = flipHex(p.file_tree.root)), 'record → file root']);
    cases.push(['manifest sha256', (p) => (p.manifest.sha256 = flipHex(p.manifest.sha256)), 'file root → manifest']);
    cases.push(['root inside the manifest bytes', (p) => (p.manifest.base64 = b64(Buffer.from(p.manifest.base64, 'base64').toString().replace(p.file_tree.root, flipHex(p.file_tree.root)))), 'file root → manifest']);
    cases.push([
      'manifest bytes and their sha256',
      (p) => {
        p.manifest.base64 = b64(Buffer.from(p.manifest.base64, 'base64').toString().replace(p.file_tree.root, flipHex(p.file_tree.root)));
        p.manifest.sha256 = sha(Buffer.from(p.manifest.base64, 'base64'));
      },
      'file root → manifest',
    ]);
    cases.push(['manifest listing in the index bytes', (p) => (p.batch.index_base64 = b64(Buffer.from(p.batch.index_base64, 'base64').toString().replace(p.manifest.sha256, flipHex(p.manifest.sha256)))), 'manifest → batch index']);
    genuine.batch.audit_path.forEach((_: string, k: number) => cases.push([`batch audit path ${k}`, (p) => (p.batch.audit_path[k] = flipHex(p.batch.audit_path[k], 5)), 'file root → batch root']));
    cases.push(['batch leaf index', (p) => (p.batch.leaf_index = (p.batch.leaf_index + 1) % p.batch.size), 'file root → batch root']);
    cases.push(['batch root', (p) => (p.batch.root = flipHex(p.batch.root)), 'file root → batch root']);
    cases.push(['batch root inside the index bytes', (p) => (p.batch.index_base64 = b64(Buffer.from(p.batch.index_base64, 'base64').toString().replace(p.batch.root, flipHex(p.batch.root)))), 'batch root → batch index']);
    cases.push(['index bytes elsewhere', (p) => (p.batch.index_base64 = b64(Buffer.from(p.batch.index_base64, 'base64').toString().replace('"kind"', '"kind" '))), 'batch index → sha256']);
    cases.push(['index sha256', (p) => (p.batch.index_sha256 = flipHex(p.batch.index_sha256)), 'batch index → sha256']);
    const near = { contract: 'nft.test.near', token_id: 'pg-egress:x', tx_hash: 'tx', reference: genuine.batch.index_path, reference_hash: Buffer.from(genuine.batch.index_sha256, 'hex').toString('base64') };
    cases.push(['NEAR reference_hash', (p) => (p.anchors = { near: { ...near, reference_hash: Buffer.from(flipHex(genuine.batch.index_sha256), 'hex').toString('base64') } }), 'sha256 → NEAR reference_hash']);
    cases.push(['S3 index key', (p) => (p.anchors = { s3: { bucket: 'b', file_key: p.file, manifest_key: p.manifest.path, index_key: '_batches/other.json' } }), 'sha256 → S3 key']);
    expect(genuine.file_tree.audit_path.length).toBeGreaterThanOrEqual(12);
    expect(genuine.batch.size).toBeGreaterThanOrEqual(3);
    for (const [name, change, link] of cases) {
      const p = clone();
      change(p);
      expect(linkOf(p), name).toBe(link);
    }
    // Matching anchor references verify, and what is not checkable offline is said.
    const anchored = clone();
    anchored.anchors = { near, s3: { bucket: 'b', file_key: anchored.file, manifest_key: anchored.manifest.path, index_key: `exports/${anchored.batch.index_path}` } };
    expect(linkOf(anchored)).toBe('ok');
    expect(checkProof(anchored).unchecked.join('\n')).toMatch(/that NEAR token pg-egress:x exists on nft\.test\.near with reference_hash .*\n.*that s3:\/\/b\/exports\/_batches/);
    // Through the CLI: one changed hash, a malformed file, a missing file.
    const one = clone();
    one.batch.audit_path[0] = flipHex(one.batch.audit_path[0]);
    writeFileSync(fab, JSON.stringify(one));
    res = await runCli(['verify-proof', fab]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/^NOT PROVEN: broken link file root → batch root: /);
    writeFileSync(fab, '{"format": "pg-egress.proof/2", ');
    res = await runCli(['verify-proof', fab]);
    expect(res.code).toBe(10);
    expect(res.stdout).toMatch(/^NOT PROVEN: proof file: .* is not valid JSON/);
    writeFileSync(fab, '[1, 2]');
    expect((await runCli(['verify-proof', fab])).code).toBe(10);
    res = await runCli(['verify-proof', path.join(work, 'no-such-proof.json')]);
    expect(res.code).toBe(7);
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

    // The manifest's row count changed (the file untouched): named as what it is.
    const rows = copy('rows');
    const mfPath = path.join(path.dirname(rows.file), 'manifest.json');
    const mf = JSON.parse(readFileSync(mfPath, 'utf8'));
    mf.files.find((f: { name: string }) => f.name === path.basename(rows.file)).rows = 999;
    writeFileSync(mfPath, JSON.stringify(mf, null, 2) + '\n');
    res = await runCli(['verify', rows.dir]);
    expect(res.code).toBe(10);
    expect(res.stdout).toContain(`5000 records, but its manifest entry says "rows": 999 (the manifest or the file was changed)`);
    expect(res.stdout).toMatch(/manifest\.json: sha256 differs from batch index/);
    expect(res.stdout).not.toMatch(/5000 records, the manifest says 5000/);

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
