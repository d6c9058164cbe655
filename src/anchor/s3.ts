/**
 * S3 anchor target (SPEC §9): puts a file of output.dir at `s3://<bucket>/<prefix>/<relPath>` and
 * proves the upload by reading the stored object back and hashing it. The worker that drains the
 * registry's anchor queue calls this; this module keeps no state of its own besides the client.
 *
 * Why a read-back and not S3 checksums: S3-compatible servers differ in which checksums they
 * support (s3rver none, older MinIO/Ceph some), and a proxy or a server that mishandles
 * `aws-chunked` uploads stores the framing instead of the bytes, which only a comparison of the
 * stored bytes catches. The SDK's own checksums are therefore off ('WHEN_REQUIRED'): with them a
 * streamed PutObject is sent `aws-chunked`, which s3rver 3.7.1 stores verbatim. The cost is one
 * GET of each object after its upload.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { isNotFound, s3Error, type S3ErrorContext } from './s3-errors.js';

export type S3Settings = NonNullable<Config['anchors']['s3']>;

export interface StoredObject {
  bytes: number;
  /** Lower-case hex, as in manifest.json. */
  sha256: string;
}

export interface S3UploadResult extends StoredObject {
  key: string;
  etag?: string;
}

export interface S3Target {
  /** `<prefix>/<relPath>`, or `relPath` when the prefix is empty. */
  key(relPath: string): string;
  /** An https URL of the object (what NEP-177 `reference` points at). */
  url(relPath: string): string;
  /**
   * Streams `localPath` to `key(relPath)`, then reads the stored object back: resolves only when
   * the server holds exactly the bytes read from disk (and, with `expect`, the bytes the manifest
   * names). Overwrites: output files are immutable, so a retried upload writes the same bytes.
   */
  upload(localPath: string, relPath: string, expect?: StoredObject): Promise<S3UploadResult>;
  /** Whether the stored object has exactly this size and sha256 (false when it is missing). */
  check(relPath: string, expect: StoredObject): Promise<boolean>;
  /** Size and sha256 of the stored object, or null when there is none. */
  stored(relPath: string): Promise<StoredObject | null>;
  /** A small object's bytes (JSON), or null when there is none. */
  getSmall(relPath: string): Promise<Buffer | null>;
  /** Puts a small object (JSON) from memory. */
  putSmall(relPath: string, bytes: Buffer): Promise<void>;
  /** Whether any object exists under `<prefix>/<relDir>/`. */
  hasAny(relDir: string): Promise<boolean>;
  close(): void;
}

/** Multipart part size and parts in flight: memory stays near PART_SIZE × QUEUE_SIZE per upload. */
/** Waits before reading an uploaded object back again when it does not match yet (see upload). */
const READ_BACK_RETRY_MS = [100, 400, 1500];
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 2;
const MAX_PARTS = 10_000;

export function createS3Target(cfg: S3Settings, opts: { connectTimeoutMs?: number; socketTimeoutMs?: number } = {}): S3Target {
  // The pinned SDK supports Node 20; its warning about releases from 2027 on is nine lines on
  // stderr, which breaks the one-line error output. Setting the variable yourself overrides this.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({
    region: cfg.region,
    ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    forcePathStyle: cfg.forcePathStyle,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: opts.connectTimeoutMs ?? 10_000, requestTimeout: opts.socketTimeoutMs ?? 120_000 },
    // Credentials: the SDK's default chain (env, shared files, SSO, container/instance roles).
  });
  const ctx: S3ErrorContext = { bucket: cfg.bucket, region: cfg.region, endpoint: cfg.endpoint };

  const key = (relPath: string): string => {
    checkRelPath(relPath);
    return cfg.prefix ? `${cfg.prefix}/${relPath}` : relPath;
  };
  const label = (k: string) => `s3://${cfg.bucket}/${k}`;

  async function stored(relPath: string): Promise<StoredObject | null> {
    const k = key(relPath);
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: cfg.bucket, Key: k }));
      return await hashStream(res.Body as Readable);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw s3Error(err, `read-back of ${label(k)}`, ctx);
    }
  }

  async function upload(localPath: string, relPath: string, expect?: StoredObject): Promise<S3UploadResult> {
    const k = key(relPath);
    let size: number;
    try {
      size = (await stat(localPath)).size;
    } catch (err) {
      throw new EgressError('OUTPUT_IO', `S3 anchor: cannot read ${localPath} for ${label(k)} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check output.dir`, { cause: err });
    }
    // Hash the bytes as they leave the disk, so what is compared with the server is what was sent.
    const sent = { hash: createHash('sha256'), bytes: 0, readError: null as unknown };
    const body = Readable.from(readAndHash(localPath, sent), { objectMode: false });
    let etag: string | undefined;
    try {
      const up = new Upload({
        client,
        params: { Bucket: cfg.bucket, Key: k, Body: body, ContentLength: size, ContentType: contentType(relPath) },
        partSize: Math.max(PART_SIZE, Math.ceil(size / MAX_PARTS)),
        queueSize: QUEUE_SIZE,
        leavePartsOnError: false,
      });
      etag = (await up.done()).ETag;
    } catch (err) {
      if (sent.readError) {
        throw new EgressError('OUTPUT_IO', `S3 anchor: reading ${localPath} failed during upload (${(sent.readError as NodeJS.ErrnoException).code ?? 'error'}); check output.dir`, { cause: sent.readError });
      }
      throw s3Error(err, `upload of ${label(k)}`, ctx);
    } finally {
      body.destroy(); // closes the file when the upload stopped half way
    }
    const local: StoredObject = { bytes: sent.bytes, sha256: sent.hash.digest('hex') };
    if (local.bytes !== size) {
      throw new EgressError('OUTPUT_CHANGED', `S3 anchor: ${localPath} changed size during its upload (${size} → ${local.bytes} bytes); output files must not change`);
    }
    if (expect && (expect.bytes !== local.bytes || expect.sha256 !== local.sha256)) {
      throw new EgressError('OUTPUT_IO', `S3 anchor: ${localPath} does not match its manifest (${describe(local)} on disk, ${describe(expect)} expected); the file changed after it was written`);
    }
    // Read back, a few times: a server that answers the PUT before the object is whole (s3rver
    // writes it in place) shows a short object for a moment; one that keeps other bytes goes on showing them.
    let remote = await stored(relPath);
    for (const wait of READ_BACK_RETRY_MS) {
      if (remote && remote.bytes === local.bytes && remote.sha256 === local.sha256) break;
      await new Promise((r) => setTimeout(r, wait));
      remote = await stored(relPath);
    }
    if (!remote) throw new EgressError('ANCHOR_S3_UNAVAILABLE', `S3 anchor: ${label(k)} is missing right after its upload; check anchors.s3.endpoint`);
    if (remote.bytes !== local.bytes || remote.sha256 !== local.sha256) {
      // Not a network problem: the endpoint keeps other bytes than it was sent (see the header).
      throw new EgressError('ANCHOR_S3', `S3 anchor: ${label(k)} holds ${describe(remote)} but ${describe(local)} were uploaded; the server at anchors.s3.endpoint does not store bytes as sent`);
    }
    return { key: k, ...(etag ? { etag } : {}), ...local };
  }

  async function check(relPath: string, expect: StoredObject): Promise<boolean> {
    const k = key(relPath);
    let res;
    try {
      res = await client.send(new GetObjectCommand({ Bucket: cfg.bucket, Key: k }));
    } catch (err) {
      if (isNotFound(err)) return false;
      throw s3Error(err, `check of ${label(k)}`, ctx);
    }
    const body = res.Body as Readable;
    if (res.ContentLength !== undefined && res.ContentLength !== expect.bytes) {
      body.destroy(); // the size already differs: no need to download it
      return false;
    }
    try {
      const got = await hashStream(body);
      return got.bytes === expect.bytes && got.sha256 === expect.sha256;
    } catch (err) {
      throw s3Error(err, `check of ${label(k)}`, ctx);
    }
  }

  async function getSmall(relPath: string): Promise<Buffer | null> {
    const k = key(relPath);
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: cfg.bucket, Key: k }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return null;
      throw s3Error(err, `read of ${label(k)}`, ctx);
    }
  }

  async function putSmall(relPath: string, bytes: Buffer): Promise<void> {
    const k = key(relPath);
    try {
      await client.send(new PutObjectCommand({
        Bucket: cfg.bucket,
        Key: k,
        Body: bytes,
        ContentLength: bytes.length,
        ContentType: contentType(relPath),
      }));
    } catch (err) {
      throw s3Error(err, `upload of ${label(k)}`, ctx);
    }
  }

  async function hasAny(relDir: string): Promise<boolean> {
    const p = key(relDir) + '/';
    try {
      const res = await client.send(new ListObjectsV2Command({ Bucket: cfg.bucket, Prefix: p, MaxKeys: 1 }));
      return (res.Contents ?? []).length > 0;
    } catch (err) {
      throw s3Error(err, `listing of ${label(p)}`, ctx);
    }
  }

  return {
    key,
    url: (relPath) => objectUrl(cfg, key(relPath)),
    upload,
    check,
    stored,
    getSmall,
    putSmall,
    hasAny,
    close: () => client.destroy(),
  };
}

async function* readAndHash(
  localPath: string,
  sent: { hash: ReturnType<typeof createHash>; bytes: number; readError: unknown },
): AsyncGenerator<Buffer> {
  try {
    for await (const chunk of createReadStream(localPath, { highWaterMark: 1024 * 1024 })) {
      const buf = chunk as Buffer;
      sent.hash.update(buf);
      sent.bytes += buf.length;
      yield buf;
    }
  } catch (err) {
    sent.readError = err;
    throw err;
  }
}

async function hashStream(body: Readable): Promise<StoredObject> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

const describe = (o: StoredObject) => `${o.bytes} bytes, sha256 ${o.sha256.slice(0, 12)}…`;

/** Relative paths from output.dir only: a `..` or absolute path would leave the prefix. */
function checkRelPath(relPath: string): void {
  const bad = !relPath || relPath.startsWith('/') || relPath.includes('\\') || relPath.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad) throw new EgressError('INTERNAL', `S3 anchor: not a relative path inside output.dir: ${JSON.stringify(relPath)}`);
}

function contentType(relPath: string): string {
  if (relPath.endsWith('.json')) return 'application/json';
  if (relPath.endsWith('.gz')) return 'application/gzip';
  if (relPath.endsWith('.yml')) return 'application/yaml';
  if (relPath.endsWith('.sql')) return 'application/sql';
  return 'application/octet-stream';
}

function objectUrl(cfg: S3Settings, key: string): string {
  const path = key.split('/').map(encodeURIComponent).join('/');
  if (!cfg.endpoint) {
    // Virtual-hosted style unless path style is asked for, as AWS documents both.
    return cfg.forcePathStyle ? `https://s3.${cfg.region}.amazonaws.com/${encodeURIComponent(cfg.bucket)}/${path}` : `https://${cfg.bucket}.s3.${cfg.region}.amazonaws.com/${path}`;
  }
  const u = new URL(cfg.endpoint);
  const base = u.pathname.replace(/\/+$/, '');
  return cfg.forcePathStyle ? `${u.protocol}//${u.host}${base}/${encodeURIComponent(cfg.bucket)}/${path}` : `${u.protocol}//${cfg.bucket}.${u.host}${base}/${path}`;
}
