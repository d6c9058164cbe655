/**
 * Anchoring (SPEC §9) end to end against real servers on 127.0.0.1: s3rver for S3 and a NEAR
 * JSON-RPC node that verifies each signed transaction. Every registered file (streaming, reload,
 * manifests, batch indexes) lands in the bucket byte for byte; each batch is minted once, its
 * metadata naming the uploaded batch index by URL and sha256 and carrying the batch root; with
 * both targets down the stream keeps flowing and anchors queue, also across a kill -9, and then
 * all land, none twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { KeyPair } from 'near-api-js';
import { waitFor } from '../harness/pg.js';
import { startNearRpcServer, type NearRpcServer } from '../harness/near-rpc-server.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';
import { createS3Target } from '../../src/anchor/s3.js';
import { parseLsn } from '../../src/lsn.js';
import { createEnv, runCli, spawnCli, waitCaughtUp, waitSlotActive, withDb, writeConfig, type Child, type EgressEnv } from '../helpers/egress.js';

const CONTRACT = 'anchors.nft.test';
const ACCOUNT = 'egress.test';

describe('anchors on S3 and NEAR', () => {
  let env: EgressEnv;
  let s3: S3TestServer;
  let rpc: NearRpcServer;
  let key: KeyPair;
  let daemon: Child;
  const childEnv = () => ({
    // The clock a window ahead: a window is over at the first idle moment (src/clock.ts).
    PG_EGRESS_TEST_CLOCK_OFFSET_MS: '1000',
    AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_ACCESS_KEY,
    AWS_EC2_METADATA_DISABLED: 'true',
    NEAR_PRIVATE_KEY: key.toString(),
  });

  beforeAll(async () => {
    s3 = await startS3Server();
    key = KeyPair.fromRandom('ed25519');
    rpc = await startNearRpcServer({
      accountId: CONTRACT,
      account: { accountId: ACCOUNT, publicKey: key.getPublicKey().toString() },
      minDepositYocto: 10n ** 22n,
      minGas: 10n ** 13n,
    });
    env = await createEnv();
    writeConfig(
      env,
      [
        'anchors:',
        `  s3: {bucket: ${s3.bucket}, prefix: "exports/a", region: us-east-1, endpoint: "${s3.endpoint}", force_path_style: true}`,
        `  near: {network: custom, rpc_url: "${rpc.url}", account_id: ${ACCOUNT}, private_key: \${NEAR_PRIVATE_KEY}, contract_id: ${CONTRACT}, method: nft_mint, deposit: "0.01", gas: 30Tgas}`,
      ].join('\n'),
    );
    await withDb(env.url, (c) => c.query(`CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g`));
    process.env.AWS_ACCESS_KEY_ID = S3RVER_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_SECRET_ACCESS_KEY;
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    // The CLI's other commands read the same cdc.yml, whose private_key is ${NEAR_PRIVATE_KEY}.
    process.env.NEAR_PRIVATE_KEY = key.toString();
  });
  afterAll(async () => {
    if (daemon && daemon.proc.exitCode === null) daemon.proc.kill('SIGKILL');
    await env?.drop();
    await rpc?.stop();
    await s3?.stop();
  });

  const anchorsDone = () =>
    waitFor(
      'every anchor done',
      () =>
        withDb(env.url, async (c) => {
          const { rows } = await c.query(`SELECT count(*) FILTER (WHERE state <> 'done')::int AS open, count(*)::int AS n, (SELECT count(*)::int FROM cdc_registry.batches) AS batches FROM cdc_registry.anchor_queue`);
          return rows[0].open === 0 && rows[0].n === 2 * rows[0].batches && rows[0].n > 0 ? rows[0] : null;
        }),
      { timeoutMs: 120_000, intervalMs: 300 },
    );

  /** The bucket holds every registered file with its exact bytes; each batch is minted once and right. */
  async function checkAnchors(): Promise<{ files: number; batches: number }> {
    const target = createS3Target({ bucket: s3.bucket, prefix: 'exports/a', region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true });
    try {
      const files = await withDb(env.url, async (c) => (await c.query<{ path: string }>(`SELECT path FROM cdc_registry.files`)).rows.map((r) => r.path));
      for (const f of files) {
        const local = readFileSync(path.join(env.outDir, f));
        const stored = await target.stored(f);
        expect(stored, f).toEqual({ bytes: local.length, sha256: createHash('sha256').update(local).digest('hex') });
      }
      const batches = await withDb(env.url, async (c) => (await c.query<{ batch_id: string; index_path: string }>(`SELECT batch_id, index_path FROM cdc_registry.batches`)).rows);
      expect(rpc.mints.size).toBe(batches.length);
      for (const b of batches) {
        const mint = [...rpc.mints.values()].find((m) => m.token.token_id.endsWith(`:${b.batch_id}`));
        expect(mint, b.batch_id).toBeTruthy();
        const bytes = readFileSync(path.join(env.outDir, b.index_path));
        const index = JSON.parse(bytes.toString('utf8'));
        const meta = mint!.token.metadata!;
        expect(meta.reference).toBe(target.url(b.index_path));
        expect(meta.reference_hash).toBe(createHash('sha256').update(bytes).digest('base64'));
        expect(JSON.parse(meta.extra!)).toMatchObject({
          batch_id: b.batch_id,
          batch_root: index.merkle.root,
          tree_size: index.merkle.tree_size,
        });
      }
      // Every mint the node applied passed its ed25519 signature check; none was a duplicate.
      expect(rpc.txs.filter((t) => t.result === 'applied' && t.method === 'nft_mint')).toHaveLength(batches.length);
      return { files: files.length, batches: batches.length };
    } finally {
      target.close();
    }
  }

  it('uploads every file of every flush and reload, and mints one token per batch', async () => {
    daemon = spawnCli(['run', '--config', env.configPath], { env: childEnv() });
    await waitSlotActive(env);
    for (let i = 0; i < 3; i++) {
      await withDb(env.url, (c) => c.query(`UPDATE t SET v = v || '+' WHERE id % 3 = ${i}`));
      // Registered before the next one: one batch each.
      await waitCaughtUp(env);
    }
    expect((await runCli(['reload', 'public.t', '--config', env.configPath, '--wait'])).code).toBe(0);
    await waitCaughtUp(env);
    await anchorsDone();
    const r = await checkAnchors();
    console.log(`anchored ${r.batches} batches: ${r.files} files in the bucket, ${rpc.mints.size} tokens`);
    const st = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout);
    expect(st.anchors.map((a: { target: string; pending: number; failed: number }) => [a.target, a.pending, a.failed])).toEqual([
      ['near', 0, 0],
      ['s3', 0, 0],
    ]);
  });

  it('queues anchors while S3 and the RPC are down, keeps streaming, survives kill -9, then anchors each batch once', async () => {
    const port = s3.port;
    const directory = s3.directory;
    await s3.stop(true);
    await rpc.stop();
    const before = await withDb(env.url, async (c) => parseLsn((await c.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [env.slot])).rows[0].l));
    for (let i = 0; i < 3; i++) {
      await withDb(env.url, (c) => c.query(`INSERT INTO t SELECT g, 'down' FROM generate_series(${10_000 + i * 100}, ${10_000 + i * 100 + 99}) g`));
      await waitCaughtUp(env);
    }
    await waitCaughtUp(env);
    const after = await withDb(env.url, async (c) => parseLsn((await c.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [env.slot])).rows[0].l));
    expect(after).toBeGreaterThan(before);
    const pending = await waitFor('anchors waiting with an error', async () => {
      const st = JSON.parse((await runCli(['status', '--config', env.configPath, '--json'])).stdout);
      const s3st = st.anchors.find((a: { target: string }) => a.target === 's3');
      return s3st && s3st.pending >= 3 && s3st.last_error ? st : null;
    });
    expect(pending.anchors.find((a: { target: string }) => a.target === 'near').pending).toBeGreaterThanOrEqual(3);
    daemon.proc.kill('SIGKILL');
    await daemon.exit;
    s3 = await startS3Server({ port, directory });
    await rpc.start();
    daemon = spawnCli(['run', '--config', env.configPath], { env: childEnv() });
    await waitSlotActive(env);
    await anchorsDone();
    await checkAnchors();
    daemon.proc.kill('SIGTERM');
    expect((await daemon.exit).code).toBe(0);
  });

  it('verify --config checks the S3 copies and NEAR tokens, puts anchor references in a proof, and names a changed S3 object', async () => {
    const ok = await runCli(['verify', env.outDir, '--config', env.configPath]);
    expect(ok.stdout).toMatch(/^ok: .*anchors: \d+ S3 objects byte-identical, \d+ NEAR tokens naming their batch index/);
    expect(ok.code).toBe(0);
    const file = await withDb(env.url, async (c) => (await c.query(`SELECT path FROM cdc_registry.files WHERE file_type = 'streaming' ORDER BY id LIMIT 1`)).rows[0].path as string);
    const proofPath = path.join(env.dir, 'proof.json');
    expect((await runCli(['verify', path.join(env.outDir, file), '--row', '0', '--proof', proofPath, '--config', env.configPath])).code).toBe(0);
    const proof = JSON.parse(readFileSync(proofPath, 'utf8'));
    expect(proof.anchors.s3).toMatchObject({ bucket: s3.bucket, file_key: `exports/a/${file}` });
    expect(proof.anchors.near.token_id).toMatch(new RegExp(`:${proof.batch.batch_id}$`));
    // The proof pins the batch index's sha256 to the token's reference_hash and the S3 index key.
    expect(proof.anchors.near.reference_hash).toBe(Buffer.from(proof.batch.index_sha256, 'hex').toString('base64'));
    expect(proof.anchors.s3.index_key).toBe(`exports/a/${proof.batch.index_path}`);
    const checked = await runCli(['verify-proof', proofPath]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toMatch(/7\. sha256 → NEAR: reference_hash \S+ = base64 of that sha256 \(token_id pg-egress:/);
    expect(checked.stdout).toMatch(/NOT CHECKED OFFLINE:\n {2}that NEAR token .* exists on /);
    // Someone replaces an object in the bucket.
    const target = createS3Target({ bucket: s3.bucket, prefix: 'exports/a', region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true });
    try {
      const other = await withDb(env.url, async (c) => (await c.query(`SELECT path FROM cdc_registry.files WHERE file_type = 'schema' ORDER BY id LIMIT 1`)).rows[0].path as string);
      await target.upload(path.join(env.outDir, other), file);
    } finally {
      target.close();
    }
    const bad = await runCli(['verify', env.outDir, '--config', env.configPath]);
    expect(bad.code).toBe(10);
    expect(bad.stdout).toContain(`exports/a/${file}: missing or not byte-identical to ${file}`);
  });
});
