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
import { createS3Target, type S3Settings } from '../../src/anchor/s3.js';
import { EgressError } from '../../src/errors.js';
import { freePort } from '../harness/cluster.js';
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
      await naive.send(new PutObjectCommand({ Bucket: s3.bucket, Key: t.key(rel), Body: createReadStream(local), ContentLength: statSync(local).size }));
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
      const started = Date.now();
      const e = await rejection(t.upload(local, 'down/file.bin'));
      expect(e.code).toBe('ANCHOR_S3');
      expect(e.retryable).toBe(true);
      expect(e.message).toMatch(/unreachable \(ECONNREFUSED\).*anchors\.s3\.endpoint/);
      expect(Date.now() - started).toBeLessThan(10_000);
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
