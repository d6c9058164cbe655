/**
 * The small documents written next to the data files: schema.yml (SPEC §5), manifest.json and the
 * batch index (SPEC §9). Pure functions from values to bytes.
 */
import { lsnHex, type Lsn } from '../lsn.js';

export interface ColumnDoc {
  name: string;
  type: string;
  typeOid: number;
  nullable: boolean;
}

export interface SchemaDoc {
  schema: string;
  table: string;
  oid: number;
  replicaIdentity: 'default' | 'full' | 'index' | 'nothing';
  primaryKey: readonly string[];
  columns: readonly ColumnDoc[];
  generatedColumns: readonly string[];
  source: { database: string; serverVersion: string; systemIdentifier: string };
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
  generatedAt: Date;
}

const YAML_RESERVED = /^(?:true|false|yes|no|on|off|null|y|n|~)$/i;

/** A YAML scalar: plain when it is unambiguous, otherwise a JSON (hence YAML) double-quoted string. */
export function yamlScalar(s: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(s) && !YAML_RESERVED.test(s)) return s;
  return JSON.stringify(s);
}

/** `2026-11-22T10:05:00.000000Z` (microsecond field; JS clocks give milliseconds). */
export function isoMicros(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function schemaYml(d: SchemaDoc): string {
  const lines = [
    `table: {schema: ${yamlScalar(d.schema)}, name: ${yamlScalar(d.table)}, oid: ${d.oid}}`,
    `replica_identity: ${d.replicaIdentity}`,
    `primary_key: [${d.primaryKey.map(yamlScalar).join(', ')}]`,
    'columns:',
    ...d.columns.map(
      (c) => `  - {name: ${yamlScalar(c.name)}, type: ${yamlScalar(c.type)}, type_oid: ${c.typeOid}, nullable: ${c.nullable}}`,
    ),
  ];
  if (d.columns.length === 0) lines[3] = 'columns: []';
  if (d.generatedColumns.length) {
    // Stored generated columns are not sent by pgoutput (PostgreSQL < 18) nor printed by COPY
    // without a column list, so they are in no file; they are listed for the reader's benefit.
    lines.push(`generated_columns: [${d.generatedColumns.map(yamlScalar).join(', ')}]`);
  }
  lines.push(
    `source: {database: ${yamlScalar(d.source.database)}, server_version: ${JSON.stringify(d.source.serverVersion)}, system_identifier: ${JSON.stringify(d.source.systemIdentifier)}}`,
    `lsn: {start: ${d.lsnStart === null ? 'null' : lsnHex(d.lsnStart)}, end: ${d.lsnEnd === null ? 'null' : lsnHex(d.lsnEnd)}}`,
    `generated_at: ${isoMicros(d.generatedAt)}`,
  );
  return lines.join('\n') + '\n';
}

export interface ManifestFile {
  name: string;
  type: 'streaming' | 'full_reload';
  rows: number;
  bytes: number;
  rawBytes: number;
  sha256: string;
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
  /** RFC 6962 tree over the file's records (SPEC §9). */
  merkle: { treeSize: number; root: string; blocks: string[] };
}

export const MERKLE_ALGORITHM = 'rfc6962-sha256';

export interface ManifestDoc {
  schema: string;
  table: string;
  oid: number;
  batchId: string;
  windowStart: Date;
  files: ManifestFile[];
  schemaSha256: string;
  ddlSha256: string | null;
  /** A partitioned root's partitions.yml (SPEC §3); the key is left out of other manifests. */
  partitionsSha256?: string | null;
  lsnStart: Lsn | null;
  lsnEnd: Lsn | null;
}

const lsnOrNull = (l: Lsn | null): string | null => (l === null ? null : lsnHex(l));

export function manifestJson(m: ManifestDoc): string {
  return (
    JSON.stringify(
      {
        format: 'pg-egress.manifest/1',
        table: { schema: m.schema, name: m.table, oid: m.oid },
        batch_id: m.batchId,
        window_start: m.windowStart.toISOString(),
        lsn: { start: lsnOrNull(m.lsnStart), end: lsnOrNull(m.lsnEnd) },
        files: m.files.map((f) => ({
          name: f.name,
          type: f.type,
          rows: f.rows,
          bytes: f.bytes,
          raw_bytes: f.rawBytes,
          sha256: f.sha256,
          lsn: { start: lsnOrNull(f.lsnStart), end: lsnOrNull(f.lsnEnd) },
          merkle: {
            algorithm: MERKLE_ALGORITHM,
            tree_size: f.merkle.treeSize,
            root: f.merkle.root,
            // Roots of each complete block of 1024 records: verify names the block that differs.
            ...(f.merkle.blocks.length ? { block_size: 1024, block_roots: f.merkle.blocks } : {}),
          },
        })),
        schema_yml: { name: 'schema.yml', sha256: m.schemaSha256 },
        ddl_sql: m.ddlSha256 === null ? null : { name: 'ddl.sql', sha256: m.ddlSha256 },
        ...(m.partitionsSha256 ? { partitions_yml: { name: 'partitions.yml', sha256: m.partitionsSha256 } } : {}),
      },
      null,
      2,
    ) + '\n'
  );
}

export interface BatchDoc {
  batchId: string;
  /** A flush of streaming windows (default) or the registration of a reload. */
  kind?: 'flush' | 'reload';
  windowStart: Date;
  slot: string;
  source: { database: string; systemIdentifier: string };
  lsnStart: Lsn | null;
  lsnEnd: Lsn;
  manifests: { path: string; sha256: string; schema: string; table: string; rows: number }[];
  /** RFC 6962 root over the data files' roots, in index order (manifests, then files in each). */
  merkle: { treeSize: number; root: string };
  /** The batch registered before this one: the batches form a hash chain. */
  prev: { batchId: string; sha256: string } | null;
}

export function batchJson(b: BatchDoc): string {
  return (
    JSON.stringify(
      {
        format: 'pg-egress.batch/1',
        batch_id: b.batchId,
        kind: b.kind ?? 'flush',
        window_start: b.windowStart.toISOString(),
        slot: b.slot,
        source: { database: b.source.database, system_identifier: b.source.systemIdentifier },
        lsn: { start: lsnOrNull(b.lsnStart), end: lsnHex(b.lsnEnd) },
        manifests: b.manifests,
        merkle: { algorithm: MERKLE_ALGORITHM, tree_size: b.merkle.treeSize, root: b.merkle.root },
        prev: b.prev === null ? null : { batch_id: b.prev.batchId, sha256: b.prev.sha256 },
      },
      null,
      2,
    ) + '\n'
  );
}
