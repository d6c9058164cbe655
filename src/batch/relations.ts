/**
 * The relation cache: what the stream's Relation messages and the catalog say about each table —
 * whether it is exported (LeafScope), the columns written (exclusions and generated columns
 * removed), the primary key's tuple indexes, and the table's definition as last known (from the
 * catalog, or from a DDL message). schema.yml is made from here (`schemaDoc`), with type names
 * from the definitions and, for a type no definition names, from the catalog's type-name cache.
 */
import type { Config } from '../config/index.js';
import type { Lsn } from '../lsn.js';
import type { ReplicaIdentity, RelationColumn } from '../wal/pgoutput.js';
import type { TableDef } from '../source/setup.js';
import { schemaYml, type ColumnDoc, type SchemaDoc } from '../output/documents.js';
import type { ServerInfo } from '../source/setup.js';
import type { RowLayout } from '../output/row-encoder.js';
import { tableKey } from '../ident.js';
import { EgressError } from '../errors.js';
import { LeafScope, type RootOf } from './leaf-scope.js';

export interface RelInfo extends RowLayout {
  oid: number;
  schema: string;
  table: string;
  key: string;
  selected: boolean;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
  outNames: readonly string[];
  /** Tuple indexes of the primary key, when known; used to detect identity changes under FULL. */
  pkIdx: number[] | null;
}

/** What the controller reads from the source's catalog (src/source/catalog.ts; a fake in unit tests). */
export interface CatalogReader {
  /** A table's current definition (for relations first seen mid-stream), or null when it is gone. */
  tableDef(relid: number): Promise<TableDef | null>;
  /** `format_type(oid, typmod)`, resolved once per type. */
  typeName(typeOid: number, typmod: number): Promise<string>;
  /** The selected partitioned root a relation is or was a leaf of (sql/007), or null. */
  partitionRoot?(relid: number): Promise<RootOf | null>;
}

/** Columns a definition puts in files: not generated (pgoutput does not send them), not excluded. */
export function outColumnNames(def: TableDef, excluded: ReadonlySet<string>): string[] {
  return def.columns.filter((c) => !c.generated && !excluded.has(c.name)).map((c) => c.name);
}

/** What schema.yml needs of a window. */
interface SchemaWindow {
  schema: string;
  table: string;
  relid: number | null;
  rel: RelInfo | null;
  dropped: boolean;
  file: { columns: readonly string[] | null } | null;
}

export class Relations {
  private readonly relations = new Map<number, RelInfo>();
  private readonly defs = new Map<string, TableDef>();
  /** What is exported: tables by name, leaves through their partitioned root (SPEC §3). */
  readonly scope: LeafScope;

  constructor(
    cfg: Config,
    private readonly catalog: CatalogReader,
    defs: TableDef[],
  ) {
    for (const d of defs) this.defs.set(tableKey(d.schema, d.table), d);
    this.scope = new LeafScope(cfg, catalog.partitionRoot?.bind(catalog));
  }

  /** The relation of a change. pgoutput always sends a Relation before a relation's first change in a session. */
  rel(oid: number): RelInfo {
    const r = this.relations.get(oid);
    if (!r) throw new EgressError('PROTOCOL', `pgoutput: change for relation ${oid} without a Relation message; please report this with --log-level debug output`);
    return r;
  }

  def(schema: string, table: string): TableDef | undefined {
    return this.defs.get(tableKey(schema, table));
  }

  setDef(def: TableDef): void {
    this.defs.set(tableKey(def.schema, def.table), def);
  }

  /** Loads a table's definition from the catalog when none is known yet. */
  async ensureDef(schema: string, table: string, relid: number): Promise<void> {
    if (this.defs.has(tableKey(schema, table))) return;
    const def = await this.catalog.tableDef(relid);
    if (def) this.setDef(def);
  }

  /** The columns a table's files have when no row says otherwise: its definition's, exclusions removed. */
  defColumns(schema: string, table: string): string[] {
    const def = this.def(schema, table);
    return def ? outColumnNames(def, this.scope.excluded(schema, table)) : [];
  }

  /** A Relation message. Returns true when the relation is exported and new under this name (the registry notes it). */
  async relation(
    oid: number,
    schema: string,
    table: string,
    replicaIdentity: ReplicaIdentity,
    columns: RelationColumn[],
  ): Promise<boolean> {
    const selected = await this.scope.selected(schema, table, oid, true);
    const excluded = this.scope.excluded(schema, table);
    if (selected) await this.ensureDef(schema, table, oid);
    const def = this.def(schema, table);
    // PostgreSQL 18 sends stored generated columns when the publication's
    // publish_generated_columns says so; they stay out of the files, as out of COPY's output.
    const generated = new Set(def?.columns.filter((c) => c.generated).map((c) => c.name));
    const outIdx: number[] = [];
    columns.forEach((c, i) => {
      if (!excluded.has(c.name) && !generated.has(c.name)) outIdx.push(i);
    });
    const prev = this.relations.get(oid);
    const names = outIdx.map((i) => columns[i].name);
    // Keep the same array when nothing changed, so files compare layouts by reference.
    const same = prev && prev.outNames.length === names.length && prev.outNames.every((n, i) => n === names[i]);
    const outNames = same ? prev.outNames : names;
    let pkIdx: number[] | null = null;
    if (def && def.primaryKey.length) {
      pkIdx = def.primaryKey.map((n) => columns.findIndex((c) => c.name === n));
      if (pkIdx.some((i) => i < 0)) pkIdx = null;
    }
    const key = tableKey(schema, table);
    const outIdx32 = Int32Array.from(outIdx);
    this.relations.set(oid, { oid, schema, table, key, selected, replicaIdentity, columns, outIdx, outIdx32, outNames, pkIdx });
    return selected && (!prev || prev.schema !== schema || prev.table !== table);
  }

  /** A window's schema.yml (SPEC §5). */
  async schemaYml(w: SchemaWindow, server: ServerInfo, lsnStart: Lsn | null, lsnEnd: Lsn | null, generatedAt: Date): Promise<string> {
    const source = { database: server.database, serverVersion: server.serverVersion, systemIdentifier: server.systemIdentifier };
    return schemaYml({ ...(await this.schemaDoc(w, w.file?.columns ?? null)), source, lsnStart, lsnEnd, generatedAt });
  }

  /**
   * A table's schema.yml contents: the columns of the file's final layout (`names`), typed by the
   * definition where it describes the column as the stream sends it, else by the Relation's type.
   */
  async schemaDoc(
    w: SchemaWindow,
    fileColumns: readonly string[] | null,
  ): Promise<Pick<SchemaDoc, 'schema' | 'table' | 'oid' | 'replicaIdentity' | 'primaryKey' | 'columns' | 'generatedColumns'>> {
    const def = this.def(w.schema, w.table);
    const byName = new Map(def?.columns.map((c) => [c.name, c]) ?? []);
    // The columns of the file's final layout; without a file, of the last Relation or definition.
    const relCols = new Map(w.rel?.columns.map((c) => [c.name, c]) ?? []);
    const names = fileColumns ?? (w.rel && !w.dropped ? w.rel.outNames : this.defColumns(w.schema, w.table));
    const columns: ColumnDoc[] = [];
    for (const name of names) {
      const d = byName.get(name);
      const r = relCols.get(name);
      // A column the stream described is named by format_type in the daemon's session (cached per
      // type), as schema.yml always had it; the definition's name only for a column without one.
      const type = r ? await this.catalog.typeName(r.typeOid, r.typmod) : d ? d.type : 'unknown';
      columns.push({ name, type, typeOid: r?.typeOid ?? d?.typeOid ?? 0, nullable: d ? d.nullable : !r?.isKey });
    }
    return {
      schema: w.schema,
      table: w.table,
      oid: w.relid ?? def?.relid ?? 0,
      replicaIdentity: w.rel?.replicaIdentity ?? identityName(def?.replicaIdentity),
      primaryKey: def?.primaryKey ?? [],
      columns,
      generatedColumns: (def?.columns ?? []).filter((c) => c.generated).map((c) => c.name),
    };
  }
}

/** pg_class.relreplident to its name. */
export function identityName(c: string | undefined): ReplicaIdentity {
  switch (c) {
    case 'f':
      return 'full';
    case 'i':
      return 'index';
    case 'n':
      return 'nothing';
    default:
      return 'default';
  }
}
