/**
 * What the stream needs from the source's catalog while it runs: a table's current definition
 * (a relation first seen mid-stream), a type's name where no definition gives it (resolved once
 * per type and typmod: `format_type` is stable for a type's life), and the selected partitioned
 * root of a leaf. https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-INFO-CATALOG
 */
import type { Db } from '../db/tx.js';
import { leafRoot } from '../registry/partitions.js';
import { loadTableDefs, type TableDef } from './setup.js';

export class Catalog {
  private readonly typeNames = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly publication: string,
  ) {}

  async tableDef(relid: number): Promise<TableDef | null> {
    return (await loadTableDefs(this.db, [relid]))[0] ?? null;
  }

  async typeName(typeOid: number, typmod: number): Promise<string> {
    const k = `${typeOid}:${typmod}`;
    let t = this.typeNames.get(k);
    if (t === undefined) {
      const r = await this.db.query<{ t: string }>('SELECT format_type($1::oid, $2::int) AS t', [typeOid, typmod]);
      t = r.rows[0].t;
      this.typeNames.set(k, t);
    }
    return t;
  }

  partitionRoot(relid: number) {
    return leafRoot(this.db, this.publication, relid);
  }
}
