/**
 * Turns streaming records (SPEC §4) into staged batches (engine.ts) for one target table, in
 * (_lsn, _seq) order. Memory is bounded by one batch (`maxRows`, `maxBytes`).
 *
 * - `B` rows (before images) are skipped.
 * - `T` makes every staged row of the batch moot: they are dropped and the batch starts with an
 *   emptied table.
 * - `_unchanged` columns (TOAST values the server did not send) take the value of the row's
 *   previous version: an earlier row of this batch with the same key (for the `U` of an
 *   identity-changing update, the key of the `D` just before it, SPEC §4), else the target's row
 *   before the batch (filled set-based by the engine: `unresolved` + `lk`).
 * - Fields are matched to the target's columns by name (the file's header); a column the file
 *   does not have is NULL (rows written before an ADD COLUMN in the window, SPEC §5).
 */
import type { SchemaColumn } from './catalog.js';
import type { Engine, QName, StagedBatch, StagedRow } from './engine.js';
import { utf8Of } from './record-text.js';
import { parseTextArray } from './types.js';
import { EgressError } from '../errors.js';

/** The latest version of a key in the batch: its staged values (null: only deleted here). */
interface Version {
  values: (string | null)[] | null;
  unresolved: Set<number> | null;
  lk: (string | null)[] | null;
}

export interface StagerLimits {
  maxRows: number;
  maxBytes: number;
}

export const DEFAULT_LIMITS: StagerLimits = { maxRows: 20_000, maxBytes: 16 * 1024 * 1024 };

export class Stager {
  private rows: StagedRow[] = [];
  private bytes = 0;
  private truncateFirst = false;
  private versions = new Map<string, Version>();
  private n = 0;
  private keyIdx: number[] | null = null;
  private last: { lsn: string; seq: number; op: string; key: (string | null)[] | null } | null = null;
  /** File header → target column index, per header. */
  private mapping: { header: string[]; idx: number[] } | null = null;
  applied = 0;

  constructor(
    private readonly engine: Engine,
    private readonly target: QName,
    private columns: SchemaColumn[],
    private readonly key: string[] | null,
    private readonly limits: StagerLimits = DEFAULT_LIMITS,
  ) {
    this.setColumns(columns);
  }

  /** After the target's columns changed (the caller flushes first). */
  setColumns(cols: SchemaColumn[]): void {
    this.columns = cols;
    this.mapping = null;
    this.versions.clear();
    this.keyIdx = this.key ? this.key.map((k) => cols.findIndex((c) => c.name === k)) : null;
    if (this.keyIdx && this.keyIdx.some((i) => i < 0)) throw new Error(`key column missing from the table's columns: ${this.key!.join(', ')}`);
  }

  /** A streaming record's fields as byte strings (record-text.ts; meta columns first), with the header of its file. */
  async add(fields: (string | null)[], header: string[], size: number): Promise<void> {
    const op = fields[4]!;
    const lsn = fields[0]!;
    const seq = Number(fields[1]!);
    if (op === 'B') {
      // A before image sits between the D and the U of an identity change (D, B, U): see through it.
      if (this.last && this.last.lsn === lsn && this.last.seq === seq - 1) this.last = { ...this.last, seq };
      return;
    }
    if (op === 'T') {
      this.rows = [];
      this.bytes = 0;
      this.versions.clear();
      this.truncateFirst = true;
      this.last = { lsn, seq, op, key: null };
      return;
    }
    if (op !== 'I' && op !== 'U' && op !== 'D') throw new Error(`unknown _op ${op}`);
    if (!this.mapping || this.mapping.header !== header) {
      const pos = new Map(header.map((h, i) => [h, i]));
      this.mapping = { header, idx: this.columns.map((c) => pos.get(c.name) ?? -1) };
    }
    const idx = this.mapping.idx;
    // Byte strings (latin1: one char per byte, exact): a copy of the chunk's bytes at a fraction of
    // a Buffer's per-object cost, which bounds a batch's memory by its bytes.
    const values: (string | null)[] = idx.map((i) => (i < 0 ? null : (fields[i] ?? null)));
    const isChange = this.last && this.last.op === 'D' && this.last.lsn === lsn && this.last.seq === seq - 1;
    if (!this.keyIdx && op === 'U' && !isChange) {
      // Without a key rows are a multiset, which needs every update as D + U (REPLICA IDENTITY
      // FULL without a primary key, SPEC §4). A lone U (REPLICA IDENTITY USING INDEX without a
      // primary key) cannot be matched: refuse rather than guess.
      throw new EgressError('ARCHIVE_TARGET', `${this.target.schema}.${this.target.table}: an update at ${lsn}/${seq} cannot be matched to a row: the table has no primary key and its updates are not written as delete + insert (REPLICA IDENTITY USING INDEX?); give it a primary key or REPLICA IDENTITY FULL`);
    }
    let unresolvedNames: string[] | null = null;
    let lk: (string | null)[] | null = null;
    const keyVals = this.keyIdx ? this.keyIdx.map((i) => values[i]) : null;
    if (this.keyIdx && keyVals) {
      const k = keyString(keyVals);
      if (op === 'U' && fields[5] != null) {
        const names = new Set(parseTextArray(utf8Of(fields[5])));
        const cols = this.columns.map((c, i) => (names.has(c.name) ? i : -1)).filter((i) => i >= 0);
        // The previous version: the D just before (identity change), else this key.
        const prevKey = isChange ? this.last!.key! : keyVals;
        const prev = this.versions.get(keyString(prevKey));
        const unresolved = new Set<number>();
        for (const c of cols) {
          if (prev && prev.values && !prev.unresolved?.has(c)) values[c] = prev.values[c];
          else {
            unresolved.add(c);
            lk = prev && prev.values ? prev.lk : (prev?.lk ?? prevKey);
            values[c] = null;
          }
        }
        if (unresolved.size && this.truncateFirst && !(prev && prev.lk)) {
          // After a TRUNCATE in this batch there is no earlier version in the target.
          unresolved.clear();
          lk = null;
        }
        if (unresolved.size) unresolvedNames = [...unresolved].map((c) => this.columns[c].name);
        this.versions.set(k, { values, unresolved: unresolved.size ? unresolved : null, lk });
      } else if (op === 'D') {
        if (keyVals.some((v) => v === null)) {
          // A delete carries the replica identity: under REPLICA IDENTITY USING INDEX that is the
          // index's columns, which need not include the primary key used to match rows here.
          throw new EgressError('ARCHIVE_TARGET', `${this.target.schema}.${this.target.table}: a delete at ${lsn}/${seq} has no value for key column(s) ${this.key!.filter((_, i) => keyVals[i] === null).join(', ')} (REPLICA IDENTITY USING INDEX on other columns than the primary key is not supported by rebuild/load)`);
        }
        if (!this.versions.has(k)) this.versions.set(k, { values: null, unresolved: null, lk: keyVals });
      } else {
        // The staged row's own values array: no copy per version.
        this.versions.set(k, { values, unresolved: null, lk: null });
      }
    }
    this.last = { lsn, seq, op, key: keyVals };
    this.rows.push({ n: this.n++, op, unresolved: unresolvedNames, lk, values });
    this.bytes += size;
    if (this.rows.length >= this.limits.maxRows || this.bytes >= this.limits.maxBytes) await this.flush();
  }

  /** Applies what is staged (at least the pending TRUNCATE). */
  async flush(): Promise<void> {
    if (!this.rows.length && !this.truncateFirst) return;
    const b: StagedBatch = { columns: this.columns, key: this.key, truncateFirst: this.truncateFirst, rows: this.rows };
    await this.engine.applyBatch(this.target, b);
    this.applied += this.rows.length;
    this.rows = [];
    this.bytes = 0;
    this.truncateFirst = false;
    this.versions.clear();
  }
}

const keyString = (vals: (string | null)[]): string => vals.map((v) => (v === null ? '\u0000N' : v)).join('\u0000,');
