/**
 * The anchor targets (SPEC §9) against real servers on 127.0.0.1: s3rver for S3, and a NEAR JSON-RPC
 * node (test/harness/near-rpc-server.ts) that checks signatures, nonces and mint arguments.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Account, JsonRpcProvider, KeyPair, KeyPairSigner, Transaction, actions, encodeTransaction } from 'near-api-js';
import { createNearTarget, nearTokenId, type NearSettings } from '../../src/anchor/near.js';
import { createS3Target, type S3Settings } from '../../src/anchor/s3.js';
import { EgressError } from '../../src/errors.js';
import { freePort } from '../harness/cluster.js';
import { startNearRpcServer, type NearRpcServer } from '../harness/near-rpc-server.js';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3Server, type S3TestServer } from '../harness/s3-server.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Runs `fn` with these AWS variables set, then puts the old values back. */
async function withAwsEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function rejection(p: Promise<unknown>): Promise<EgressError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EgressError);
  const e = err as EgressError;
  expect(e.message.split('\n')).toHaveLength(1);
  return e;
}

describe('S3 anchor target', () => {
  let s3: S3TestServer;
  let dir: string;
  let cfg: S3Settings;
  let raw: S3Client; // an independent client, to read and tamper with objects behind the target's back

  beforeAll(async () => {
    // The standard credential chain reads these; no instance-metadata lookups off this machine.
    process.env.AWS_ACCESS_KEY_ID = S3RVER_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_SECRET_ACCESS_KEY;
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // the raw clients below are made before any target
    s3 = await startS3Server();
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-anchor-'));
    cfg = { bucket: s3.bucket, prefix: 'egress/prod', region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true };
    raw = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  });

  afterAll(async () => {
    raw?.destroy();
    await s3?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const readBack = async (key: string): Promise<Buffer> => {
    const res = await raw.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
    return Buffer.from(await res.Body!.transformToByteArray());
  };

  it('names keys under the prefix and builds path-style URLs', () => {
    const t = createS3Target(cfg);
    const noPrefix = createS3Target({ ...cfg, prefix: '' });
    try {
      expect(t.key('public.orders/20260101T000000Z/manifest.json')).toBe('egress/prod/public.orders/20260101T000000Z/manifest.json');
      expect(noPrefix.key('_batches/20260101T000000Z.json')).toBe('_batches/20260101T000000Z.json');
      expect(t.url('_batches/a b.json')).toBe(`${s3.endpoint}/${s3.bucket}/egress/prod/_batches/a%20b.json`);
      expect(() => t.key('../escape')).toThrow(EgressError);
      expect(() => t.key('/abs')).toThrow(EgressError);
    } finally {
      t.close();
      noPrefix.close();
    }
  });

  it('uploads files of several sizes byte for byte, a 20 MB one in parts, and verifies them', async () => {
    const t = createS3Target(cfg);
    try {
      const files: { rel: string; data: Buffer }[] = [
        { rel: '_batches/empty.json', data: Buffer.alloc(0) },
        { rel: 'public.orders/20260101T000000Z/manifest.json', data: Buffer.from(JSON.stringify({ files: [], note: 'ünïcode' })) },
        { rel: 'public.orders/20260101T000000Z/streaming.csv.gz', data: randomBytes(300_000) },
        { rel: 'public.big/20260101T000000Z/full_reload.csv.gz', data: randomBytes(20 * 1024 * 1024 + 12_345) },
      ];
      for (const f of files) {
        const local = path.join(dir, f.rel.replaceAll('/', '_'));
        writeFileSync(local, f.data);
        const expect_ = { bytes: f.data.length, sha256: sha256(f.data) };
        const started = Date.now();
        const res = await t.upload(local, f.rel, expect_);
        const ms = Date.now() - started;
        if (f.data.length > 1e6) console.log(`S3 upload + read-back verify of ${f.data.length} bytes: ${ms} ms`);
        expect(res).toMatchObject({ key: `egress/prod/${f.rel}`, bytes: f.data.length, sha256: expect_.sha256 });
        // Compare the stored bytes themselves: aws-chunked framing stored by mistake would differ here.
        const back = await readBack(res.key);
        expect(back.length).toBe(f.data.length);
        expect(back.equals(f.data)).toBe(true);
        expect(await t.check(f.rel, expect_)).toBe(true);
      }
    } finally {
      t.close();
    }
  });

  it('check() detects a tampered, a truncated and a missing object', async () => {
    const t = createS3Target(cfg);
    try {
      const data = randomBytes(100_000);
      const local = path.join(dir, 'tamper.bin');
      writeFileSync(local, data);
      const rel = 'public.t/20260101T000000Z/streaming.csv.gz';
      const { key } = await t.upload(local, rel);
      const expect_ = { bytes: data.length, sha256: sha256(data) };
      expect(await t.check(rel, expect_)).toBe(true);

      const flipped = Buffer.from(data);
      flipped[50_000] ^= 0x01; // same size, one bit differs
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: flipped }));
      expect(await t.check(rel, expect_)).toBe(false);
      expect(await t.stored(rel)).toEqual({ bytes: data.length, sha256: sha256(flipped) });

      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: data.subarray(0, 99_999) }));
      expect(await t.check(rel, expect_)).toBe(false);
      expect(await t.check('public.t/20260101T000000Z/nothing-here.csv.gz', expect_)).toBe(false);
      expect(await t.stored('public.t/20260101T000000Z/nothing-here.csv.gz')).toBeNull();
    } finally {
      t.close();
    }
  });

  it('check() catches aws-chunked framing stored instead of the bytes (SDK checksums on, streamed body)', async () => {
    const data = randomBytes(64 * 1024);
    const local = path.join(dir, 'framed.bin');
    writeFileSync(local, data);
    const rel = 'framing/streamed.bin';
    const t = createS3Target(cfg);
    const naive = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true }); // SDK defaults: checksums WHEN_SUPPORTED
    try {
      await naive.send(new PutObjectCommand({
        Bucket: s3.bucket,
        Key: t.key(rel),
        Body: createReadStream(local),
        ContentLength: statSync(local).size,
      }));
      const back = await readBack(t.key(rel));
      const ok = await t.check(rel, { bytes: data.length, sha256: sha256(data) });
      // s3rver 3.7.1 keeps the framing (chunk sizes and a trailing checksum) as object bytes.
      expect(back.equals(data)).toBe(false);
      expect(back.length).toBeGreaterThan(data.length);
      expect(ok).toBe(false);
      // The target's own upload of the same file is byte for byte.
      await t.upload(local, rel);
      expect((await readBack(t.key(rel))).equals(data)).toBe(true);
    } finally {
      naive.destroy();
      t.close();
    }
  });

  it('upload() refuses a local file that does not match its manifest', async () => {
    const t = createS3Target(cfg);
    try {
      const local = path.join(dir, 'changed.bin');
      writeFileSync(local, 'now different');
      const e = await rejection(t.upload(local, 'x/changed.bin', { bytes: 13, sha256: sha256(Buffer.from('as written..')) }));
      expect(e.code).toBe('OUTPUT_IO');
      expect(e.message).toMatch(/does not match its manifest/);
      const missing = await rejection(t.upload(path.join(dir, 'no-such-file'), 'x/none.bin'));
      expect(missing.code).toBe('OUTPUT_IO');
    } finally {
      t.close();
    }
  });

  it('an unreachable endpoint is a one-line retryable error naming anchors.s3.endpoint', async () => {
    const port = await freePort(); // nothing listens there
    const t = createS3Target({ ...cfg, endpoint: `http://127.0.0.1:${port}` });
    try {
      const local = path.join(dir, 'down.bin');
      writeFileSync(local, randomBytes(1000));
      const e = await rejection(t.upload(local, 'down/file.bin'));
      expect(e.code).toBe('ANCHOR_S3_UNAVAILABLE');
      expect(e.retryable).toBe(true);
      expect(e.message).toMatch(/unreachable \(ECONNREFUSED\).*anchors\.s3\.endpoint/);
      const c = await rejection(t.check('down/file.bin', { bytes: 1000, sha256: '0'.repeat(64) }));
      expect(c.retryable).toBe(true);
    } finally {
      t.close();
    }
  });

  it('a missing bucket and refused credentials are not retryable and name the setting, never the secret', async () => {
    const local = path.join(dir, 'denied.bin');
    writeFileSync(local, 'x');
    const noBucket = createS3Target({ ...cfg, bucket: 'no-such-bucket' });
    try {
      const e = await rejection(noBucket.upload(local, 'a/b.bin'));
      expect(e).toMatchObject({ code: 'ANCHOR_S3', retryable: false });
      expect(e.message).toMatch(/bucket "no-such-bucket" does not exist.*anchors\.s3\.bucket/);
    } finally {
      noBucket.close();
    }
    const secret = `secret-${randomBytes(6).toString('hex')}`;
    await withAwsEnv({ AWS_ACCESS_KEY_ID: 'NOT-A-KEY', AWS_SECRET_ACCESS_KEY: secret }, async () => {
      const t = createS3Target(cfg);
      try {
        const e = await rejection(t.upload(local, 'a/b.bin'));
        expect(e).toMatchObject({ code: 'ANCHOR_S3', retryable: false });
        expect(e.message).toMatch(/access denied \(InvalidAccessKeyId, HTTP 403\).*AWS_ACCESS_KEY_ID/);
        expect(e.message).not.toContain(secret);
      } finally {
        t.close();
      }
    });
  });
});

describe('NEAR anchor target', () => {
  const CONTRACT = 'anchors.nft.test';
  const ACCOUNT = 'egress.test';
  const DEPOSIT = 10n ** 22n; // 0.01 NEAR
  const GAS = 30n * 10n ** 12n;
  let key: KeyPair;
  let rpc: NearRpcServer;
  let cfg: NearSettings;

  const request = (tokenId: string, doc = `{"batch":"${tokenId}"}`) => ({
    tokenId,
    referenceUrl: `http://127.0.0.1:9/bucket/_batches/${tokenId}.json`,
    referenceHash: createHash('sha256').update(doc).digest('base64'),
    extra: { batch_root: 'ab'.repeat(32), tree_size: 3, source: { system_identifier: '7312345678901234567', slot: 'pg_egress' } },
  });

  /** Posts one JSON-RPC request the way any client would, and returns the parsed answer. */
  const rpcCall = async (method: string, params: unknown) => {
    const res = await fetch(rpc.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 'test', method, params }) });
    return (await res.json()) as { result?: Record<string, unknown>; error?: { cause: { name: string }; data: unknown } };
  };

  beforeAll(async () => {
    key = KeyPair.fromRandom('ed25519');
    rpc = await startNearRpcServer({
      accountId: CONTRACT,
      account: { accountId: ACCOUNT, publicKey: key.getPublicKey().toString() },
      minDepositYocto: DEPOSIT,
      minGas: 10n ** 13n,
    });
    cfg = { network: 'custom', rpcUrl: rpc.url, accountId: ACCOUNT, privateKey: key.toString(), contractId: CONTRACT, method: 'nft_mint', depositYocto: DEPOSIT, gas: GAS };
  });

  afterAll(async () => {
    await rpc?.stop();
  });

  it('derives a deterministic token id per batch', () => {
    const id = nearTokenId('7312345678901234567', 'pg_egress', '20260101T000500Z-001');
    expect(id).toBe('pg-egress:7312345678901234567:pg_egress:20260101T000500Z-001');
    expect(nearTokenId('7312345678901234567', 'pg_egress', '20260101T000500Z-001')).toBe(id);
    expect(nearTokenId('7312345678901234567', 'pg_egress', '20260101T000500Z-002')).not.toBe(id);
    const long = nearTokenId('7312345678901234567', 's'.repeat(63), `20260101T000500Z-999-000001000${'x'.repeat(40)}`);
    expect(long).toMatch(/^pg-egress:h:[A-Za-z0-9_-]{43}$/);
    expect(() => nearTokenId('not-digits', 'pg_egress', 'b')).toThrow(EgressError);
  });

  it('mints once, signed and checked by the node, with reference, reference_hash and extra', async () => {
    const target = await createNearTarget(cfg);
    const req = request('pg-egress:7312345678901234567:pg_egress:20260101T000000Z');
    const first = rpc.calls.length;
    const started = Date.now();
    const res = await target.mint(req);
    console.log(`NEAR mint (view, access key, block, send_tx, signature check): ${Date.now() - started} ms`);
    expect(res.alreadyMinted).toBe(false);
    const mint = rpc.mints.get(req.tokenId)!;
    expect(mint).toBeDefined();
    expect(res.txHash).toBe(mint.txHash);
    expect(mint).toMatchObject({ signerId: ACCOUNT, deposit: DEPOSIT, gas: GAS });
    expect(mint.token).toMatchObject({ token_id: req.tokenId, owner_id: ACCOUNT });
    expect(mint.token.metadata).toMatchObject({ reference: req.referenceUrl, reference_hash: req.referenceHash });
    expect(JSON.parse(mint.token.metadata.extra)).toEqual(req.extra);
    const tx = rpc.txs.find((t) => t.hash === res.txHash)!;
    expect(tx).toMatchObject({ result: 'applied', receiverId: CONTRACT, method: 'nft_mint' });
    expect(tx.args).toEqual({
      token_id: req.tokenId,
      receiver_id: ACCOUNT,
      token_metadata: {
        title: req.tokenId,
        reference: req.referenceUrl,
        reference_hash: req.referenceHash,
        extra: JSON.stringify(req.extra),
      },
    });
    // The view comes before the signed call; the signer asked for its access key and a block.
    const methods = rpc.calls.slice(first).map((c) => (c.method === 'query' ? `query:${(c.params as { request_type: string }).request_type}` : c.method));
    expect(methods[0]).toBe('query:call_function');
    expect(methods).toEqual(expect.arrayContaining(['query:view_access_key', 'block', 'send_tx']));
    expect(methods.filter((m) => m === 'send_tx')).toHaveLength(1);
    expect(await target.token(req.tokenId)).toMatchObject({ token_id: req.tokenId });
    expect(await target.token('no-such-token')).toBeNull();

    // A second mint of the same batch sends nothing and reports it as already minted.
    const sends = rpc.calls.filter((c) => c.method === 'send_tx').length;
    expect(await target.mint(req)).toEqual({ txHash: null, alreadyMinted: true });
    expect(rpc.calls.filter((c) => c.method === 'send_tx').length).toBe(sends);
    expect([...rpc.mints.keys()].filter((k) => k === req.tokenId)).toHaveLength(1);

    // The same token id with another batch index is a conflict, never a success.
    const other = await rejection(target.mint({ ...req, referenceHash: request(req.tokenId, 'another index').referenceHash }));
    expect(other).toMatchObject({ code: 'ANCHOR_NEAR', retryable: false });
    expect(other.message).toMatch(/minted with reference_hash .* the batch index differs/);
  });

  it('a mint whose answer was lost is not minted again on retry', async () => {
    const target = await createNearTarget(cfg);
    const req = request('pg-egress:7312345678901234567:pg_egress:20260101T001000Z');
    rpc.dropNextSendResponse();
    const lost = await rejection(target.mint(req));
    expect(lost).toMatchObject({ code: 'ANCHOR_NEAR_UNAVAILABLE', retryable: true });
    expect(rpc.mints.has(req.tokenId)).toBe(true); // the node applied it
    expect(await target.mint(req)).toEqual({ txHash: null, alreadyMinted: true });
    expect(rpc.txs.filter((t) => t.result === 'applied' && (t.args as { token_id?: string })?.token_id === req.tokenId)).toHaveLength(1);
  });

  it('racing mints of one batch anchor it once', async () => {
    // Identical requests sign identical bytes (same nonce, block and args): one transaction.
    const same = request('pg-egress:7312345678901234567:pg_egress:20260101T001500Z');
    const [one, two] = await Promise.all([createNearTarget(cfg), createNearTarget(cfg)]);
    const twins = await Promise.all([one.mint(same), two.mint(same)]);
    expect(twins[0].txHash).toBe(rpc.mints.get(same.tokenId)!.txHash);
    expect(twins[1].txHash).toBe(twins[0].txHash);
    // Different bytes for the same token: both views find no token, both send (the loser's nonce
    // may clash first: near-api-js re-signs), the contract refuses the second token and its
    // sender settles it as already minted.
    const req = request('pg-egress:7312345678901234567:pg_egress:20260101T001600Z');
    const [three, four] = await Promise.all([createNearTarget(cfg), createNearTarget(cfg)]);
    const results = await Promise.all([three.mint({ ...req, title: 'a' }), four.mint({ ...req, title: 'b' })]);
    expect(results.map((r) => r.alreadyMinted).sort()).toEqual([false, true]);
    const refused = rpc.txs.filter((t) => (t.args as { token_id?: string })?.token_id === req.tokenId &&
      t.hash !== rpc.mints.get(req.tokenId)!.txHash);
    expect(refused.map((t) => t.reason)).toEqual(expect.arrayContaining([expect.stringContaining('token_id must be unique')]));
  });

  it('the node rejects a flipped signature byte, a changed transaction body and a reused nonce', async () => {
    const account = new Account(ACCOUNT, new JsonRpcProvider({ url: rpc.url }), new KeyPairSigner(key));
    const mintArgs = { token_id: 'tamper-test', receiver_id: ACCOUNT, token_metadata: { reference: 'x', reference_hash: request('t').referenceHash, extra: '{}' } };
    const signed = await account.createSignedTransaction({ receiverId: CONTRACT, actions: [actions.functionCall('nft_mint', mintArgs, GAS, DEPOSIT)] });
    const good = Buffer.from(encodeTransaction(signed));
    const nonceBefore = rpc.accessKeyNonce();

    const badSig = Buffer.from(good);
    badSig[badSig.length - 1] ^= 0x01; // the signature is the last 64 bytes
    const r1 = await rpcCall('send_tx', { signed_tx_base64: badSig.toString('base64'), wait_until: 'FINAL' });
    expect(r1.error?.cause.name).toBe('INVALID_TRANSACTION');
    expect(r1.error?.data).toEqual({ TxExecutionError: { InvalidTxError: 'InvalidSignature' } });

    const badBody = Buffer.from(good);
    const at = badBody.indexOf(Buffer.from('tamper-test'));
    badBody[at] = 'T'.charCodeAt(0); // another token id under the original signature
    const r2 = await rpcCall('send_tx', { signed_tx_base64: badBody.toString('base64'), wait_until: 'FINAL' });
    expect(r2.error?.data).toEqual({ TxExecutionError: { InvalidTxError: 'InvalidSignature' } });
    expect(rpc.txs.slice(-2).map((t) => [t.result, t.reason])).toEqual([
      ['rejected', 'InvalidSignature'],
      ['rejected', 'InvalidSignature'],
    ]);
    expect(rpc.mints.has('tamper-test')).toBe(false);
    expect(rpc.mints.has('Tamper-test')).toBe(false);
    expect(rpc.accessKeyNonce()).toBe(nonceBefore);

    // The untouched bytes pass; sent again they are the same transaction (same outcome, no second mint).
    const ok = await rpcCall('send_tx', { signed_tx_base64: good.toString('base64'), wait_until: 'FINAL' });
    expect(ok.result?.status).toHaveProperty('SuccessValue');
    const again = await rpcCall('send_tx', { signed_tx_base64: good.toString('base64'), wait_until: 'FINAL' });
    expect((again.result?.transaction_outcome as { id: string }).id).toBe((ok.result?.transaction_outcome as { id: string }).id);
    expect(rpc.txs.filter((t) => t.result === 'applied' && (t.args as { token_id?: string })?.token_id === 'tamper-test')).toHaveLength(1);

    // Another transaction with a nonce already used is refused.
    const stale = await account.createSignedTransaction({ receiverId: CONTRACT, actions: [actions.functionCall('nft_mint', { ...mintArgs, token_id: 'stale' }, GAS, DEPOSIT)] });
    const reused = new Transaction({ ...stale.transaction, nonce: signed.transaction.nonce });
    const resigned = await new KeyPairSigner(key).signTransaction(reused);
    const r4 = await rpcCall('send_tx', { signed_tx_base64: Buffer.from(encodeTransaction(resigned.signedTransaction)).toString('base64'), wait_until: 'FINAL' });
    expect(r4.error?.data).toMatchObject({
      TxExecutionError: { InvalidTxError: { InvalidNonce: { tx_nonce: Number(signed.transaction.nonce) } } },
    });
  });

  it('an RPC that is down is a one-line retryable error naming anchors.near.rpc_url; minting resumes after', async () => {
    const target = await createNearTarget(cfg);
    const req = request('pg-egress:7312345678901234567:pg_egress:20260101T002000Z');
    await rpc.stop();
    try {
      const e = await rejection(target.mint(req));
      expect(e).toMatchObject({ code: 'ANCHOR_NEAR_UNAVAILABLE', retryable: true });
      expect(e.message).toMatch(/RPC http:\/\/127\.0\.0\.1:\d+ unreachable \((ECONNREFUSED|UND_ERR_SOCKET)\).*anchors\.near\.rpc_url/);
    } finally {
      await rpc.start();
    }
    expect(await target.mint(req)).toMatchObject({ alreadyMinted: false });
    expect(rpc.mints.has(req.tokenId)).toBe(true);
  });

  it('a wrong key, a bad key, a short deposit and a wrong contract are not retryable and name the setting, never the key', async () => {
    const stranger = KeyPair.fromRandom('ed25519');
    const wrongKey = await rejection((await createNearTarget({ ...cfg, privateKey: stranger.toString() })).mint(request('wrong-key')));
    expect(wrongKey).toMatchObject({ code: 'ANCHOR_NEAR', retryable: false });
    expect(wrongKey.message).toMatch(/anchors\.near\.private_key/);
    expect(wrongKey.message).not.toContain(stranger.toString().slice(8));

    await expect(createNearTarget({ ...cfg, privateKey: 'ed25519:not-base58-0OIl' })).rejects.toThrow(/anchors\.near\.private_key must be an ed25519 secret key/);
    await expect(createNearTarget({ ...cfg, privateKey: 'secret' })).rejects.toThrow(EgressError);

    const poor = await rejection((await createNearTarget({ ...cfg, depositYocto: 1n })).mint(request('short-deposit')));
    expect(poor).toMatchObject({ code: 'ANCHOR_NEAR', retryable: false });
    expect(poor.message).toMatch(/Must attach .* yoctoNEAR.*anchors\.near\.method \/ deposit/);
    expect(rpc.mints.has('short-deposit')).toBe(false);

    const noContract = await rejection((await createNearTarget({ ...cfg, contractId: 'nobody.test' })).mint(request('no-contract')));
    expect(noContract.message).toMatch(/account nobody\.test does not exist.*anchors\.near\.contract_id/);
    const noCode = await rejection((await createNearTarget({ ...cfg, contractId: ACCOUNT })).mint(request('no-code')));
    expect(noCode).toMatchObject({ code: 'ANCHOR_NEAR', retryable: false });
    expect(noCode.message).toMatch(/no contract is deployed at egress\.test; check anchors\.near\.contract_id/);
    const noMethod = await rejection((await createNearTarget({ ...cfg, method: 'nft_mint_v9' })).mint(request('no-method')));
    expect(noMethod.message).toMatch(/no such method; check anchors\.near\.method/);
  });
});
