/**
 * Adopting batches that are complete on disk but unknown to the registry (issue 13, "the registry
 * race"). The registry lives in the source database; after a failover the promoted standby may
 * lack the newest registry transactions (they replicate asynchronously) while their files are in
 * output.dir, and the synchronised slot may already be past them. Deleting those files would lose
 * changes the slot no longer holds; writing them again would put them in two files, or re-create
 * an already anchored batch id with other bytes. So at start, before the sweep, each batch index in
 * `_batches/` that the registry does not know and that continues the registry's chain (its `prev`
 * names the registry's last batch with the same sha256) is checked file by file against its
 * manifests (sha256 and size of every file) and registered from them, in chain order: files,
 * Merkle roots and LSN ranges, the registered LSN, anchors (idempotent per batch id and bytes) and
 * the reload requests its local intent carries. Re-streamed transactions at or below the new
 * registered LSN are then skipped as usual.
 *
 * An unknown batch index that does not continue the chain, or whose files do not match, is not
 * explained by any crash or failover: the start is refused with one line and nothing is deleted.
 * (An unregistered index covered by a write intent is a flush that did not complete: the sweep's.)
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { parseLsn, lsnHex, type Lsn } from '../lsn.js';
import type { FileRecord, Registry } from '../registry/registry.js';
import type { AdoptRegistry } from '../registry/adopt.js';
import type { AnchorTarget } from '../registry/anchors.js';
import type { LocalIntents } from './local-intents.js';
import { BATCHES_DIR, parseFlushName, windowName } from '../output/layout.js';

export interface IndexDoc {
  batch_id: string;
  kind: 'flush' | 'reload';
  window_start: string;
  slot: string;
  source: { database: string; system_identifier: string };
  lsn: { start: string | null; end: string };
  manifests: { path: string; sha256: string; schema: string; table: string; rows: number }[];
  merkle: { root: string };
  prev: { batch_id: string; sha256: string } | null;
}

interface ManifestDoc {
  table: { schema: string; name: string; oid: number };
  files: { name: string; type: 'streaming' | 'full_reload'; rows: number; bytes: number; raw_bytes: number; sha256: string; lsn: { start: string | null; end: string | null }; merkle: { root: string } }[];
  schema_yml: { name: string; sha256: string };
  ddl_sql: { name: string; sha256: string } | null;
}

export interface AdoptDeps {
  outDir: string;
  slot: string;
  systemIdentifier: string;
  registry: Registry;
  adopt: AdoptRegistry;
  intents: LocalIntents;
  anchors: readonly AnchorTarget[];
  log: Logger;
  /** Puts a table's comment back after an adopted reload of a marker (as finalize does). */
  restoreComment?: (relid: number, comment: string | null) => Promise<void>;
  /** Where the server's timeline began (its last promotion), null on timeline 1. */
  switchPoint?: () => Promise<Lsn | null>;
  /** `recover` registers every batch this way: one line per batch at debug, not a warning each. */
  quiet?: boolean;
}

export const DIVERGED_DIR = '_diverged';

export interface AdoptResult {
  adopted: string[];
  /** Batches set aside under _diverged/: written from WAL the promoted server never had. */
  diverged: string[];
  /**
   * LSN ranges [from, to) of adopted flushes registered elsewhere (no local intent): the reload
   * requests registered with them went with the lost registry transaction, and are taken again
   * from the transactions the stream delivers there.
   */
  lostRanges: { from: Lsn; to: Lsn }[];
  /** Registered LSN after adoption. */
  registeredLsn: Lsn;
}

async function sha256File(file: string): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha: h.digest('hex'), bytes };
}

/** Manifests and batch indexes carry LSNs as 16 hex digits (SPEC §4). */
const lsnOrNull = (s: string | null | undefined): Lsn | null => (s == null ? null : /^[0-9A-F]{16}$/i.test(s) ? BigInt(`0x${s}`) : parseLsn(s));

const refuse = (outDir: string, batchId: string, why: string): EgressError =>
  new EgressError(
    'OUTPUT_OWNER',
    `output.dir ${outDir} holds batch ${batchId} (${BATCHES_DIR}/${batchId}.json) that the registry does not know and ${why}; nothing was deleted: move that batch's files away (its index lists them) or set output.dir to a folder of its own`,
  );

/** A manifest path of this batch: `<table folder>/<batch id>/manifest.json`, nothing outside output.dir. */
const ownManifest = (rel: unknown, batchId: string): rel is string =>
  typeof rel === 'string' && /^[^/]+\/[^/]+\/manifest\.json$/.test(rel) && rel.split('/')[1] === batchId && !rel.split('/').some((p) => p === '..' || p === '.');

/** Where a batch's files are read from: output.dir here, or an archive (`recover`, src/archive/recover.ts). */
export interface BatchReader {
  /** A small file's bytes (manifest), or null when it is missing. */
  read(rel: string): Promise<Buffer | null>;
  /** sha256 and size of a file, streamed, or null when it is missing. */
  hash(rel: string): Promise<{ sha: string; bytes: number } | null>;
}

export const localBatchReader = (outDir: string): BatchReader => ({
  read: (rel) => fsp.readFile(path.join(outDir, rel)).catch(() => null),
  hash: (rel) => sha256File(path.join(outDir, rel)).catch(() => null),
});

/** Checks every file of a batch against its index and manifests; returns the registry records. */
export async function verifyBatch(
  src: string | BatchReader,
  idx: IndexDoc,
  indexSha: string,
  indexBytes: number,
): Promise<{ files: FileRecord[]; tables: { schema: string; table: string; relid: number | null }[] } | string> {
  const reader = typeof src === 'string' ? localBatchReader(src) : src;
  const files: FileRecord[] = [];
  const tables: { schema: string; table: string; relid: number | null }[] = [];
  let rows = 0;
  if (!Array.isArray(idx.manifests) || typeof idx.lsn?.end !== 'string' || typeof idx.merkle?.root !== 'string') return 'its index is not a complete batch index';
  for (const m of idx.manifests) {
    if (!ownManifest(m.path, idx.batch_id)) return `it lists a manifest outside its own folders (${String(m.path)})`;
    const mfText = await reader.read(m.path);
    if (!mfText) return `its manifest ${m.path} is missing`;
    const mfSha = createHash('sha256').update(mfText).digest('hex');
    if (mfSha !== m.sha256) return `its manifest ${m.path} does not match the index (sha256)`;
    let mf: ManifestDoc;
    try {
      mf = JSON.parse(mfText.toString('utf8')) as ManifestDoc;
    } catch {
      return `its manifest ${m.path} is not valid JSON`;
    }
    if (!mf.table || !Array.isArray(mf.files)) return `its manifest ${m.path} is not a manifest`;
    const rel = path.posix.dirname(m.path);
    const schema = mf.table.schema;
    const table = mf.table.name;
    tables.push({ schema, table, relid: mf.table.oid || null });
    for (const f of mf.files) {
      if (typeof f.name !== 'string' || f.name.includes('/') || f.name.startsWith('.')) return `its manifest ${m.path} names a file outside its folder`;
      const p = `${rel}/${f.name}`;
      const got = await reader.hash(p);
      if (!got) return `its file ${p} is missing`;
      if (got.sha !== f.sha256 || got.bytes !== f.bytes) return `its file ${p} does not match its manifest (sha256 or size)`;
      files.push({
        path: p,
        type: f.type,
        schema,
        table,
        lsnStart: lsnOrNull(f.lsn.start),
        lsnEnd: lsnOrNull(f.lsn.end),
        rows: f.rows,
        bytes: f.bytes,
        rawBytes: f.raw_bytes,
        sha256: f.sha256,
        merkleRoot: f.merkle.root,
      });
      rows += f.rows;
    }
    for (const [doc, type] of [
      [mf.schema_yml, 'schema'],
      [mf.ddl_sql, 'ddl'],
    ] as const) {
      if (!doc) continue;
      if (typeof doc.name !== 'string' || doc.name.includes('/') || doc.name.startsWith('.')) return `its manifest ${m.path} names a file outside its folder`;
      const p = `${rel}/${doc.name}`;
      const got = await reader.hash(p);
      if (!got) return `its file ${p} is missing`;
      if (got.sha !== doc.sha256) return `its file ${p} does not match its manifest (sha256)`;
      files.push({
        path: p,
        type,
        schema,
        table,
        lsnStart: null,
        lsnEnd: null,
        rows: null,
        bytes: got.bytes,
        rawBytes: null,
        sha256: got.sha,
        merkleRoot: null,
      });
    }
    files.push({ path: m.path, type: 'manifest', schema, table, lsnStart: null, lsnEnd: null, rows: null, bytes: mfText.length, rawBytes: null, sha256: mfSha, merkleRoot: null });
  }
  files.push({ path: `${BATCHES_DIR}/${idx.batch_id}.json`, type: 'batch', schema: null, table: null, lsnStart: lsnOrNull(idx.lsn.start), lsnEnd: lsnOrNull(idx.lsn.end), rows, bytes: indexBytes, rawBytes: null, sha256: indexSha, merkleRoot: null });
  return { files, tables };
}

/** Adopts, in chain order, every unknown batch that continues the registry's chain. */
export async function adoptOrphanBatches(d: AdoptDeps): Promise<AdoptResult> {
  const adopted: string[] = [];
  let names: string[];
  try {
    names = (await fsp.readdir(path.join(d.outDir, BATCHES_DIR))).filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  } catch {
    names = [];
  }
  const known = await d.adopt.batchIds();
  const orphans = new Map<string, { idx: IndexDoc; sha: string; bytes: number }>();
  for (const id of names) {
    if (known.has(id)) continue;
    const buf = await fsp.readFile(path.join(d.outDir, BATCHES_DIR, `${id}.json`));
    let idx: IndexDoc;
    try {
      idx = JSON.parse(buf.toString('utf8')) as IndexDoc;
    } catch {
      idx = { batch_id: id } as IndexDoc; // not a complete index: only an intent can explain it
    }
    // Only a batch name (a flush name) that is the file's own name is ever adopted or moved.
    if (idx === null || typeof idx !== 'object' || idx.batch_id !== id || parseFlushName(id) === null) idx = { batch_id: id } as IndexDoc;
    orphans.set(id, { idx, sha: createHash('sha256').update(buf).digest('hex'), bytes: buf.length });
  }
  const diverged: string[] = [];
  const lostRanges: { from: Lsn; to: Lsn }[] = [];
  if (orphans.size) {
    // A batch past the point where this server's timeline began, while nothing is registered
    // since, was written on the old primary from WAL this server never received (the standby
    // lagged and synchronized_standby_slots was not set): its transactions are not in this
    // database. It is set aside, not adopted; the stream delivers what this server does have.
    const sp = d.switchPoint ? await d.switchPoint() : null;
    const divergedFrom = sp !== null && (await d.registry.registeredLsn()) <= sp ? sp : null;
    const isDiverged = (o: { idx: IndexDoc }) => divergedFrom !== null && typeof o.idx.lsn?.end === 'string' && lsnOrNull(o.idx.lsn.end)! > divergedFrom;
    for (;;) {
      const last = await d.registry.lastBatch();
      const next = [...orphans.values()].find(
        (o) => o.idx.batch_id !== undefined &&
          o.idx.slot === d.slot &&
          o.idx.source?.system_identifier === d.systemIdentifier &&
          (o.idx.prev === null
            ? last === null
            : last !== null && o.idx.prev?.batch_id === last.batchId && o.idx.prev.sha256 === last.sha256),
      );
      if (!next || isDiverged(next)) break;
      const checked = await verifyBatch(d.outDir, next.idx, next.sha, next.bytes);
      if (typeof checked === 'string') throw refuse(d.outDir, next.idx.batch_id, `continues its chain, but ${checked}`);
      const from = await d.registry.registeredLsn();
      if (next.idx.kind !== 'reload' && !(await d.intents.read(next.idx.batch_id))) lostRanges.push({ from, to: lsnOrNull(next.idx.lsn.end)! });
      await register(d, next.idx, next.sha, checked);
      orphans.delete(next.idx.batch_id);
      adopted.push(next.idx.batch_id);
    }
    for (const o of [...orphans.values()]) {
      if (o.idx.slot !== d.slot || o.idx.source?.system_identifier !== d.systemIdentifier || !isDiverged(o)) continue;
      await setAside(d, o.idx);
      orphans.delete(o.idx.batch_id);
      diverged.push(o.idx.batch_id);
    }
    // What is left must be the debris of a flush that did not complete (an intent names it).
    const intents = new Set([...(await d.adopt.intentBatchIds()), ...(await d.intents.list()).map((i) => i.batchId)]);
    for (const id of orphans.keys()) {
      if (intents.has(id)) continue;
      const last = await d.registry.lastBatch();
      throw refuse(d.outDir, id, `does not continue its chain (the registry's last batch is ${last ? last.batchId : 'none'})`);
    }
  }
  return { adopted, diverged, lostRanges, registeredLsn: await d.registry.registeredLsn() };
}

/** Moves a batch's folders and index under _diverged/ (same relative paths); its name is never reused. */
async function setAside(d: AdoptDeps, idx: IndexDoc): Promise<void> {
  const move = async (rel: string) => {
    const to = path.join(d.outDir, DIVERGED_DIR, rel);
    await fsp.mkdir(path.dirname(to), { recursive: true });
    await fsp.rename(path.join(d.outDir, rel), to).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  };
  for (const m of idx.manifests ?? []) if (ownManifest(m.path, idx.batch_id)) await move(path.posix.dirname(m.path));
  await move(`${BATCHES_DIR}/${idx.batch_id}.json`);
  const parsed = parseFlushName(idx.batch_id);
  if (parsed) await d.adopt.reserveBatchSeq(windowName(parsed.startMs), parsed.seq);
  await d.intents.done(idx.batch_id);
  d.log.warn(
    { batch: idx.batch_id, lsn_end: idx.lsn?.end, moved_to: `${DIVERGED_DIR}/` },
    'set aside a batch written from WAL that this promoted server never had (the old primary sent it before its standby had it; set synchronized_standby_slots): its transactions are not in this database',
  );
}

export async function register(
  d: AdoptDeps,
  idx: IndexDoc,
  sha: string,
  v: { files: FileRecord[]; tables: { schema: string; table: string; relid: number | null }[] },
): Promise<void> {
  const parsed = parseFlushName(idx.batch_id);
  const windowStartMs = Date.parse(idx.window_start);
  if (parsed) await d.adopt.reserveBatchSeq(windowName(parsed.startMs), parsed.seq);
  const lsnEnd = lsnOrNull(idx.lsn.end)!;
  const rows = v.files.filter((f) => f.type === 'streaming' || f.type === 'full_reload').reduce((n, f) => n + (f.rows ?? 0), 0);
  const local = await d.intents.read(idx.batch_id);
  if (idx.kind === 'reload') {
    const t = v.tables[0];
    const op = await d.adopt.registerReloadBatch({
      batchId: idx.batch_id,
      windowStart: new Date(windowStartMs).toISOString(),
      lsn: lsnEnd,
      rows,
      indexPath: `${BATCHES_DIR}/${idx.batch_id}.json`,
      indexSha256: sha,
      merkleRoot: idx.merkle.root,
      prevBatchId: idx.prev?.batch_id ?? null,
      files: v.files,
      schema: t.schema,
      table: t.table,
      anchors: d.anchors,
    });
    if (op.restoreComment && op.relid !== null) await d.restoreComment?.(op.relid, op.previousComment).catch(() => undefined);
  } else {
    await d.registry.registerFlush({
      slot: d.slot,
      batchId: idx.batch_id,
      windowStartMs,
      lsnStart: lsnOrNull(idx.lsn.start),
      lsnEnd,
      rows,
      indexPath: `${BATCHES_DIR}/${idx.batch_id}.json`,
      indexSha256: sha,
      merkleRoot: idx.merkle.root,
      files: v.files,
      prevBatchId: idx.prev?.batch_id ?? null,
      tables: v.tables.map((t) => ({ ...t, dropped: false })),
      reloads: local?.reloads ?? [],
      anchors: d.anchors,
    });
  }
  await d.intents.done(idx.batch_id);
  (d.quiet ? d.log.debug.bind(d.log) : d.log.warn.bind(d.log))(
    { batch: idx.batch_id, kind: idx.kind, lsn: lsnHex(lsnEnd), files: v.files.length, reloads: local?.reloads.length ?? 0 },
    'adopted a batch that was on disk but not in the registry (a registration the source lost, e.g. in a failover): registered from its manifests',
  );
}

/** Paths of local intents whose batch is not registered: a flush that did not complete. */
export async function unfinishedLocalPaths(
  intents: LocalIntents,
  registered: (ids: string[]) => Promise<Set<string>>,
): Promise<{ batches: string[]; paths: string[] }> {
  const batches: string[] = [];
  const paths: string[] = [];
  const list = await intents.list();
  const known = await registered(list.map((i) => i.batchId));
  for (const i of list) {
    if (known.has(i.batchId)) {
      await intents.done(i.batchId);
      continue;
    }
    batches.push(i.batchId);
    paths.push(...i.paths);
  }
  return { batches, paths };
}

