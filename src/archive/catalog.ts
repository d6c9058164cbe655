/**
 * What an archive holds, read from its batch indexes (`_batches/*.json`) and manifests: the batch
 * hash chain in registration order (SPEC §9: each index names its predecessor by id and sha256),
 * and per table folder its windows in that order. Checks that need only the small documents are
 * done here (chain links, manifest sha256 against the index, batch root over the files' roots);
 * data files are checked as they are read (verified-reader.ts).
 */
import { sha256Hex } from '../hash.js';
import { parse as parseYaml } from 'yaml';
import { EgressError } from '../errors.js';
import { rootOf } from '../proof/merkle.js';
import type { BatchIndex, Manifest, ManifestFileEntry } from '../proof/verify.js';
import type { ArchiveStore } from './store.js';

export interface BatchDocFull extends BatchIndex {
  kind?: string;
  window_start?: string;
  lsn?: { start: string | null; end: string };
  manifests: { path: string; sha256: string; schema?: string; table?: string; rows?: number }[];
}

export interface Batch {
  id: string;
  /** Position in the chain, from 0. */
  seq: number;
  sha256: string;
  doc: BatchDocFull;
  /** A problem with this batch's link or documents (null when it checks out or was not checked). */
  problem: string | null;
}

export interface ManifestFull extends Manifest {
  table: { schema: string; name: string; oid: number };
  window_start?: string;
  lsn: { start: string | null; end: string | null };
  files: (ManifestFileEntry & { lsn?: { start: string | null; end: string | null } })[];
  partitions_yml?: { name: string; sha256: string } | null;
}

export interface Window {
  batch: Batch;
  /** `<table folder>/<window>` */
  dir: string;
  folder: string;
  name: string;
  manifest: ManifestFull;
}

export interface Catalog {
  store: ArchiveStore;
  batches: Batch[];
  /** Windows per table folder, in chain order. */
  windows: Map<string, Window[]>;
  verify: boolean;
}

export const sha256 = sha256Hex;

export async function readJsonDoc<T>(store: ArchiveStore, rel: string): Promise<{ doc: T; sha256: string } | null> {
  const bytes = await store.readSmall(rel);
  if (!bytes) return null;
  try {
    return { doc: JSON.parse(bytes.toString('utf8')) as T, sha256: sha256(bytes) };
  } catch {
    throw new EgressError('VERIFY_FAILED', `${store.label}/${rel}: not valid JSON`);
  }
}

/**
 * Reads the chain. Batches are ordered by following `prev` links from the first batch (prev null);
 * a batch whose link does not match (predecessor missing or replaced, two successors) gets a
 * `problem` and the rest of the chain is ordered after it by batch id.
 */
export async function readCatalog(store: ArchiveStore, o: { verify: boolean }): Promise<Catalog> {
  const names = (await store.list('_batches')).filter((n) => n.endsWith('.json'));
  const byId = new Map<string, { doc: BatchDocFull; sha256: string; file: string }>();
  for (const n of names) {
    const r = await readJsonDoc<BatchDocFull>(store, `_batches/${n}`);
    if (!r) continue;
    byId.set(r.doc.batch_id, { ...r, file: n });
  }
  const successors = new Map<string | null, string[]>();
  for (const [id, b] of byId) {
    const p = b.doc.prev?.batch_id ?? null;
    successors.set(p, [...(successors.get(p) ?? []), id]);
  }
  const ordered: Batch[] = [];
  const placed = new Set<string>();
  const place = (id: string, problem: string | null) => {
    const b = byId.get(id)!;
    ordered.push({ id, seq: ordered.length, sha256: b.sha256, doc: b.doc, problem });
    placed.add(id);
  };
  // Follow the links from the head; a batch that is nobody's valid successor starts a new segment.
  const follow = (start: string | null) => {
    let cur = start;
    for (;;) {
      const next = (successors.get(cur) ?? []).filter((id) => !placed.has(id)).sort();
      if (!next.length) return;
      const curSha = cur === null ? null : byId.get(cur)!.sha256;
      const good = next.filter((id) => cur === null || byId.get(id)!.doc.prev?.sha256 === curSha);
      if (good.length !== 1) return;
      place(good[0], null);
      cur = good[0];
    }
  };
  follow(null);
  for (;;) {
    const rest = [...byId.keys()].filter((id) => !placed.has(id)).sort();
    if (!rest.length) break;
    // The earliest unplaced batch whose predecessor is placed or missing: the next segment's head.
    const head = rest[0];
    const prev = byId.get(head)!.doc.prev;
    let problem: string;
    if (!prev) problem = `batch ${head} claims to be the first of the chain, but ${ordered[0]?.id ?? 'another'} is`;
    else if (!byId.has(prev.batch_id)) problem = `batch ${head}: its predecessor batch ${prev.batch_id} is missing (a batch index was deleted): the chain is broken`;
    else if (byId.get(prev.batch_id)!.sha256 !== prev.sha256) problem = `batch ${head}: its predecessor ${prev.batch_id} was replaced (sha256 differs): the chain is broken`;
    else problem = `batch ${head}: batch ${prev.batch_id} has two successors: the chain forks`;
    place(head, problem);
    follow(head);
  }
  const cat: Catalog = { store, batches: ordered, windows: new Map(), verify: o.verify };
  for (const b of ordered) {
    for (const m of b.doc.manifests) {
      const parts = m.path.split('/');
      if (parts.length !== 3) continue;
      const [folder, name] = parts;
      const list = cat.windows.get(folder) ?? [];
      list.push({ batch: b, dir: `${folder}/${name}`, folder, name, manifest: null as unknown as ManifestFull });
      cat.windows.set(folder, list);
    }
  }
  return cat;
}

/**
 * Reads (and with verify, checks) the manifests of the batches up to and including `upTo` (chain
 * position), the chain links before it, and each batch root. Throws VERIFY_FAILED naming the first
 * problem. Windows whose manifest is loaded get `manifest` set.
 */
export async function loadManifests(cat: Catalog, upTo: number): Promise<void> {
  for (const b of cat.batches) {
    if (b.seq > upTo) break;
    if (cat.verify && b.problem) throw new EgressError('VERIFY_FAILED', b.problem);
    const roots: Buffer[] = [];
    for (const m of b.doc.manifests) {
      const parts = m.path.split('/');
      const w = cat.windows.get(parts[0])?.find((x) => x.batch === b && x.name === parts[1]);
      if (w?.manifest) {
        for (const f of w.manifest.files) if (f.merkle) roots.push(Buffer.from(f.merkle.root, 'hex'));
        continue;
      }
      const r = await readJsonDoc<ManifestFull>(cat.store, m.path);
      if (!r) {
        if (cat.verify) throw new EgressError('VERIFY_FAILED', `batch ${b.id}: lists ${m.path}, which is missing`);
        continue;
      }
      if (cat.verify && r.sha256 !== m.sha256) throw new EgressError('VERIFY_FAILED', `${cat.store.label}/${m.path}: sha256 differs from batch index ${b.id} (the manifest was changed)`);
      for (const f of r.doc.files) if (f.merkle) roots.push(Buffer.from(f.merkle.root, 'hex'));
      if (w) w.manifest = r.doc;
    }
    if (cat.verify && b.doc.merkle && rootOf(roots).toString('hex') !== b.doc.merkle.root) {
      throw new EgressError('VERIFY_FAILED', `batch ${b.id}: its batch root differs from its files' Merkle roots (a manifest or batch index was changed)`);
    }
  }
}

export interface SchemaColumn {
  name: string;
  type: string;
  type_oid: number;
  nullable: boolean;
}
export interface SchemaFile {
  table: { schema: string; name: string; oid: number };
  replica_identity: string;
  primary_key: string[];
  columns: SchemaColumn[];
  lsn?: { start: string | null; end: string | null };
  generated_at?: string;
}

/** A small document of a window, checked against the manifest's sha256 (schema.yml, ddl.sql, partitions.yml). */
export async function readWindowDoc(cat: Catalog, w: Window, which: 'schema' | 'ddl' | 'partitions'): Promise<string | null> {
  const m = w.manifest;
  let entry: { name: string; sha256: string } | null | undefined;
  if (which === 'schema') entry = m.schema_yml;
  else if (which === 'ddl') entry = m.ddl_sql;
  else entry = m.partitions_yml ?? (m.files.find((f) => f.name === 'partitions.yml') as { name: string; sha256: string } | undefined) ?? null;
  const fallback = which === 'partitions' ? 'partitions.yml' : null;
  const name = entry?.name ?? fallback;
  if (!name) return null;
  const bytes = await cat.store.readSmall(`${w.dir}/${name}`);
  if (!bytes) {
    if (entry && cat.verify) throw new EgressError('VERIFY_FAILED', `${cat.store.label}/${w.dir}/${name}: missing (listed in its manifest)`);
    return null;
  }
  if (cat.verify) {
    if (!entry) throw new EgressError('VERIFY_FAILED', `${cat.store.label}/${w.dir}/${name}: not listed in its manifest`);
    if (sha256(bytes) !== entry.sha256) throw new EgressError('VERIFY_FAILED', `${cat.store.label}/${w.dir}/${name}: sha256 differs from the manifest`);
  }
  return bytes.toString('utf8');
}

export async function readSchema(cat: Catalog, w: Window): Promise<SchemaFile> {
  const text = await readWindowDoc(cat, w, 'schema');
  if (text === null) throw new EgressError('VERIFY_FAILED', `${cat.store.label}/${w.dir}: no schema.yml`);
  const doc = parseYaml(text, { intAsBigInt: false }) as SchemaFile;
  doc.primary_key ??= [];
  doc.columns ??= [];
  return doc;
}

export const dataFiles = (m: ManifestFull) => m.files.filter((f) => f.type === 'streaming' || f.type === 'full_reload');
