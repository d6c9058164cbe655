/**
 * Where an archive is read from: a local output folder or `s3://bucket/prefix` (the layout the S3
 * anchor writes: every file under the prefix with the same relative path, SPEC §9). Files are
 * read as streams; nothing here holds a whole data file in memory.
 *
 * S3 goes through the same @aws-sdk/client-s3 client as the anchors, with the SDK's own checksums
 * at 'WHEN_REQUIRED' (s3rver and other S3-compatible servers do not all support them; the archive
 * reader checks every byte against the manifests' sha256 itself).
 */
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { EgressError } from '../errors.js';

export interface ArchiveStore {
  /** How the archive is named in messages (`/data/egress`, `s3://bucket/prefix`). */
  readonly label: string;
  /** Names directly under `relDir` ('' for the top), files and folders, sorted. */
  list(relDir: string): Promise<string[]>;
  /** Bytes of a small file (JSON, YAML), or null when it does not exist. */
  readSmall(rel: string): Promise<Buffer | null>;
  /** A stream of a (large) file. */
  stream(rel: string): Promise<Readable>;
  /** A local path for `rel` when the store is a local folder (DuckDB reads files itself). */
  localPath(rel: string): string | null;
  close(): void;
}

export interface S3Options {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

export function localStore(dir: string): ArchiveStore {
  const root = path.resolve(dir);
  if (!existsSync(root)) throw new EgressError('NOT_FOUND_PATH', `archive folder ${dir} does not exist (--from)`);
  const abs = (rel: string) => path.join(root, ...rel.split('/').filter(Boolean));
  return {
    label: root,
    async list(relDir) {
      try {
        return (await fsp.readdir(abs(relDir))).sort();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
    },
    async readSmall(rel) {
      try {
        return await fsp.readFile(abs(rel));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
    },
    async stream(rel) {
      const p = abs(rel);
      if (!existsSync(p)) throw new EgressError('VERIFY_FAILED', `${p}: missing (listed in its manifest)`);
      // 128 KiB reads: larger ones are as fast here, and each read is a new Buffer (see
      // verified-reader.ts CHUNK on why the size of short-lived buffers shows in the resident size).
      return createReadStream(p, { highWaterMark: 128 * 1024 });
    },
    localPath: (rel) => abs(rel),
    close: () => undefined,
  };
}

/** `s3://bucket/prefix` → an S3 store; credentials from the SDK's default chain. */
export async function s3Store(url: string, o: S3Options): Promise<ArchiveStore> {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!m) throw new EgressError('CONFIG_INVALID', `--from ${url}: expected s3://bucket/prefix`);
  const bucket = m[1];
  const prefix = m[2].replace(/\/+$/, '');
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { S3Client, ListObjectsV2Command, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    region: o.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    forcePathStyle: o.forcePathStyle ?? Boolean(o.endpoint),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const key = (rel: string) => (prefix ? `${prefix}/${rel}` : rel);
  const fail = (e: unknown, what: string): never => {
    const err = e as { name?: string; code?: string };
    throw new EgressError('ARCHIVE_UNREACHABLE', `cannot ${what} in s3://${bucket}/${prefix} (${err.name ?? err.code ?? 'error'}); check --from, --s3-endpoint, --s3-region and the AWS credentials`, { cause: e });
  };
  const notFound = (e: unknown) => {
    const n = (e as { name?: string; $metadata?: { httpStatusCode?: number } });
    return n.name === 'NoSuchKey' || n.name === 'NotFound' || n.$metadata?.httpStatusCode === 404;
  };
  return {
    label: `s3://${bucket}${prefix ? '/' + prefix : ''}`,
    async list(relDir) {
      const p = relDir ? key(relDir.replace(/\/+$/, '')) + '/' : prefix ? prefix + '/' : '';
      const names = new Set<string>();
      let token: string | undefined;
      do {
        const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: p, Delimiter: '/', ContinuationToken: token })).catch((e: unknown) => fail(e, 'list objects'));
        for (const c of res.CommonPrefixes ?? []) if (c.Prefix) names.add(c.Prefix.slice(p.length).replace(/\/$/, ''));
        for (const c of res.Contents ?? []) if (c.Key) names.add(c.Key.slice(p.length));
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return [...names].filter(Boolean).sort();
    },
    async readSmall(rel) {
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key(rel) }));
        return Buffer.from(await res.Body!.transformToByteArray());
      } catch (e) {
        if (notFound(e)) return null;
        return fail(e, `read ${rel}`);
      }
    },
    async stream(rel) {
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key(rel) }));
        return res.Body as Readable;
      } catch (e) {
        if (notFound(e)) throw new EgressError('VERIFY_FAILED', `s3://${bucket}/${key(rel)}: missing (listed in its manifest)`);
        return fail(e, `read ${rel}`);
      }
    },
    localPath: () => null,
    close: () => client.destroy(),
  };
}

export async function openStore(from: string, o: S3Options = {}): Promise<ArchiveStore> {
  return from.startsWith('s3://') ? s3Store(from, o) : localStore(from);
}
