/**
 * Rebuilds a partitioned root from the archive (SPEC §3, §6): the root as of LSN L is the union of
 * the leaves that were its partitions at L (replayed from the root folder's partitions.yml files),
 * each leaf rebuilt from its own folder by the §6 rule.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { tableFolder } from '../../src/output/layout.js';
import { membershipAt, parsePartitionsYml, type PartitionsDoc, type TableRef } from '../../src/output/partitions.js';
import { rebuildFromOutput } from './egress.js';

export interface RootWindow {
  batch: string;
  doc: PartitionsDoc;
  /** What the window's manifest lists besides partitions.yml. */
  manifest: {
    files: { name: string; type: string }[];
    schema_yml: unknown;
    ddl_sql: { name: string; sha256: string } | null;
    partitions_yml?: { name: string; sha256: string };
  };
  ddl: string | null;
  partitionsSha256: string;
}

/** Every window of the root's folder that holds a partitions.yml, in batch (= commit) order. */
export function rootWindows(outDir: string, schema: string, root: string): RootWindow[] {
  const base = path.join(outDir, tableFolder(schema, root));
  if (!existsSync(base)) return [];
  const out: RootWindow[] = [];
  for (const batch of readdirSync(base).sort()) {
    const p = path.join(base, batch, 'partitions.yml');
    if (!existsSync(p)) continue;
    const text = readFileSync(p);
    const ddlPath = path.join(base, batch, 'ddl.sql');
    out.push({
      batch,
      doc: parsePartitionsYml(text.toString('utf8')),
      manifest: JSON.parse(readFileSync(path.join(base, batch, 'manifest.json'), 'utf8')),
      ddl: existsSync(ddlPath) ? readFileSync(ddlPath, 'utf8') : null,
      partitionsSha256: createHash('sha256').update(text).digest('hex'),
    });
  }
  return out;
}

/**
 * The root as of `asOf` (16 hex digits; null = the end of the archive): key → row. Throws when two
 * leaves hold the same key (a row would then be counted twice).
 */
export function rebuildRoot(
  outDir: string,
  schema: string,
  root: string,
  key: string[],
  columns: string[],
  asOf: string | null = null,
): { table: Map<string, (string | null)[]>; leaves: TableRef[]; windows: RootWindow[] } {
  const windows = rootWindows(outDir, schema, root);
  const leaves = [...membershipAt(windows.map((w) => w.doc), asOf).values()].sort((a, b) => (a.schema + '.' + a.name < b.schema + '.' + b.name ? -1 : 1));
  const table = new Map<string, (string | null)[]>();
  for (const leaf of leaves) {
    const part = rebuildFromOutput(outDir, tableFolder(leaf.schema, leaf.name), key, columns).table;
    for (const [k, row] of part) {
      if (table.has(k)) throw new Error(`key ${k} is in two leaves of ${schema}.${root} (${leaf.schema}.${leaf.name} and another)`);
      table.set(k, row);
    }
  }
  return { table, leaves, windows };
}
