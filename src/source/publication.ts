/**
 * Keeps the publication equal to what the configuration selects, and notices when someone else
 * changed it. The work is done by `cdc_registry.reconcile_publication()` (sql/003), which the DDL
 * event trigger also runs inside the application's own DDL transactions; here the daemon runs it
 * at start and every few seconds, and turns what had to be repaired into gap records: a table
 * that had been published and was found missing, or publish options that were narrowed, means
 * committed changes were not published (SPEC §6).
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { formatLsn as lsnText, parseLsn, type Lsn } from '../lsn.js';
import type { Registry } from '../registry/registry.js';
import { isLockConflict, withTransaction, type Db } from '../db/tx.js';
import { syncPartitions } from '../registry/partitions.js';
import { DdlCaptureWatch, type CaptureLapse } from './ddl-capture.js';

export interface TableName {
  schema: string;
  table: string;
}

import { quoteIdent } from '../ident.js';
import { reconcilePublication, rememberShapes, selectedWithoutIdentity } from '../registry/publication.js';
const name = (t: TableName) => `${t.schema}.${t.table}`;

/** How long the check waits for a table lock before it gives up until the next check. */
const RECONCILE_LOCK_TIMEOUT_MS = 2000;

export async function ensurePublication(db: Db, publication: string): Promise<void> {
  const { rowCount } = await db.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [publication]);
  if (rowCount) return;
  // Leaves are published as themselves (SPEC §3 "Partitioned tables"): not via the partition root,
  // so a leaf's TRUNCATE and a row moving between partitions reach the leaves' own files.
  // https://www.postgresql.org/docs/15/sql-createpublication.html
  await db.query(`CREATE PUBLICATION ${quoteIdent(publication)} WITH (publish_via_partition_root = false)`).catch((e: { code?: string }) => {
    if (e.code !== '42710') throw e; // created concurrently by another process
  });
}

/** Tables that the configuration selects but that are not published: no primary key or replica identity. */
export async function tablesWithoutIdentity(db: Db, publication: string): Promise<TableName[]> {
  return selectedWithoutIdentity(db, publication);
}

/** The tables in the publication (explicit members). */
export async function publishedTables(db: Db, publication: string): Promise<(TableName & { relid: number })[]> {
  const { rows } = await db.query<{ schema: string; table: string; relid: string }>(
    `SELECT n.nspname AS schema, c.relname AS table, c.oid::text AS relid
     FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
     JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.pubname = $1 ORDER BY 1, 2`,
    [publication],
  );
  return rows.map((r) => ({ schema: r.schema, table: r.table, relid: Number(r.relid) }));
}

/** The published leaf partitions (their changes went to the root while publish_via_partition_root was on). */
async function publishedLeaves(db: Db, publication: string): Promise<TableName[]> {
  const { rows } = await db.query<{ schema: string; table: string }>(
    `SELECT n.nspname AS schema, c.relname AS table
     FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
     JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE p.pubname = $1 AND c.relispartition ORDER BY 1, 2`,
    [publication],
  );
  return rows.map((r) => ({ schema: r.schema, table: r.table }));
}

async function anyPartitioned(db: Db, tables: TableName[]): Promise<boolean> {
  if (!tables.length) return false;
  const { rowCount } = await db.query(
    `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN unnest($1::text[], $2::text[]) AS x(s, t) ON x.s = n.nspname AND x.t = c.relname WHERE c.relkind = 'p'`,
    [tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  return (rowCount ?? 0) > 0;
}

export interface CheckResult {
  added: TableName[];
  removed: TableName[];
  identityFull: TableName[];
  optionsRepaired: boolean;
  gaps: { kind: 'unpublished' | 'publish_options'; table: TableName | null; viaRoot?: boolean }[];
  skipped: TableName[];
}

export class PublicationWatcher {
  /** Tables published at the last check, `schema.table`. */
  private known: Set<string> | null = null;
  private skippedKey = '';
  private readonly capture: DdlCaptureWatch;

  constructor(
    private readonly db: Db,
    private readonly cfg: Config,
    private readonly registry: Registry,
    private readonly log: Logger,
    /** The last LSN at which the publication was known to be right. */
    private goodLsn: Lsn,
    /** Asks for a fresh export: of tables that joined with data, or to repair a gap. */
    private readonly requestReload?: (tables: TableName[], reason: 'joined' | 'gap', gapId: number | null) => Promise<void>,
  ) {
    this.capture = new DdlCaptureWatch(db, log, () => this.walLsn());
  }

  private async walLsn(): Promise<Lsn> {
    const { rows } = await this.db.query<{ l: string }>(`SELECT pg_current_wal_lsn()::text AS l`);
    return parseLsn(rows[0].l);
  }

  async check(): Promise<CheckResult> {
    const pub = this.cfg.publication;
    this.known ??= await this.registry.knownPublished();
    const startLsn = await this.walLsn();
    await ensurePublication(this.db, pub);
    // The members before the repair too: one taken out of the publication by someone between the
    // repair and the read of the members below (`now`) is still known as published at this check,
    // so that the next one, which puts it back, records the gap (without it: a 'joined' export and
    // no gap; seen in CI under load, test/integration/publication-race.test.ts).
    const before = await publishedTables(this.db, pub);
    // ALTER PUBLICATION ... ADD TABLE and REPLICA IDENTITY FULL lock the table: with a bounded wait,
    // so that a DDL queued on it never queues the application behind us; the next check retries.
    let rows: { action: string; schema_name: string | null; table_name: string | null }[];
    try {
      rows = await withTransaction(
        this.db,
        (c) => reconcilePublication(c, pub),
        { lockTimeoutMs: RECONCILE_LOCK_TIMEOUT_MS, retries: 0 },
      );
    } catch (e) {
      if (!isLockConflict(e)) throw e;
      this.log.warn(`publication "${pub}" not checked: a table it would change is locked by another session; trying again at the next check (publication_check: ${this.cfg.publicationCheckMs / 1000} s)`);
      return { added: [], removed: [], identityFull: [], optionsRepaired: false, gaps: [], skipped: [] };
    }
    const pick = (a: string) => rows.filter((r) => r.action === a).map((r) => ({ schema: r.schema_name!, table: r.table_name! }));
    const res: CheckResult = { added: pick('added'), removed: pick('removed'), identityFull: pick('identity_full'), optionsRepaired: rows.some((r) => r.action === 'options'), gaps: [], skipped: [] };
    const repairedAt = await this.walLsn();
    if (res.optionsRepaired && this.known.size > 0) res.gaps.push({ kind: 'publish_options', table: null });
    // publish_via_partition_root turned on by someone while a partitioned table was in the
    // publication too: the leaves' changes went out as the root's, not to the leaves' files. (With
    // only leaves published, the option changes nothing.) Only the leaves are exported again.
    const viaRoot = rows.some((r) => r.action === 'via_root') && (await anyPartitioned(this.db, res.removed)) ? await publishedLeaves(this.db, pub) : [];
    if (viaRoot.length && !res.optionsRepaired && this.known.size > 0) res.gaps.push({ kind: 'publish_options', table: null, viaRoot: true });
    for (const t of res.added) if (this.known.has(name(t))) res.gaps.push({ kind: 'unpublished', table: t });
    for (const g of res.gaps) {
      const detail = g.viaRoot
        ? `publication "${pub}" had publish_via_partition_root on, so the changes of partitions were published as their root's; repaired, but the partitions' changes between ${lsnText(this.goodLsn)} and ${lsnText(repairedAt)} may be missing from their files`
        : g.kind === 'publish_options'
          ? `publication "${pub}" did not publish every operation (insert, update, delete, truncate) or not via the partition root; repaired, but changes between ${lsnText(this.goodLsn)} and ${lsnText(repairedAt)} may be missing`
          : `table ${name(g.table!)} was missing from publication "${pub}"; re-added, but its changes between ${lsnText(this.goodLsn)} and ${lsnText(repairedAt)} are in no file`;
      const gapId = await this.registry.recordGap({
        kind: g.kind,
        schema: g.table?.schema ?? null,
        table: g.table?.table ?? null,
        lsnFrom: this.goodLsn,
        lsnTo: repairedAt,
        detail,
      });
      this.log.error({ gap: g.kind, table: g.table ? name(g.table) : null, from: lsnText(this.goodLsn), to: lsnText(repairedAt) }, `data gap: ${detail}${this.requestReload ? '; exporting again' : ''}`);
      await this.requestReload?.(g.table ? [g.table] : g.viaRoot ? viaRoot : await publishedTables(this.db, pub), 'gap', gapId);
    }
    // DDL capture switched off: `run` only (init leaves it to the daemon, which repairs gaps).
    const lapse = this.requestReload ? await this.capture.check() : null;
    if (lapse && this.known.size > 0) await this.captureGap(lapse);
    // Tables that joined without DDL get the shape that value-changing DDL is compared with (sql/008).
    if (res.added.length) await rememberShapes(this.db);
    const joined = res.added.filter((t) => !this.known!.has(name(t)));
    // A table that joins here (tables.include changed, or no event trigger saw it join) may
    // already have rows that were never streamed: export it.
    if (joined.length) await this.requestReload?.(joined, 'joined', null);
    if (joined.length || res.removed.length) log(this.log, joined, res.removed);
    for (const t of res.identityFull) this.log.warn(`set REPLICA IDENTITY FULL on ${name(t)} (tables.no_identity: full): its UPDATEs and DELETEs now write the whole old row to WAL`);
    // Partitioned roots: a root's first appearance, and membership changes no event trigger saw.
    await syncPartitions(this.db, pub);
    const now = await publishedTables(this.db, pub);
    await this.registry.setPublished(now);
    const removed = new Set(res.removed.map(name));
    this.known = new Set([...now.map(name), ...before.map(name).filter((t) => !removed.has(t))]);
    res.skipped = await tablesWithoutIdentity(this.db, pub);
    const key = res.skipped.map(name).join('\n');
    if (key !== this.skippedKey) {
      this.skippedKey = key;
      for (const t of res.skipped) {
        this.log.warn(
          `table ${name(t)} is not published: it has no primary key or replica identity, and PostgreSQL would reject the application's UPDATE and DELETE on it while published; add a primary key (it then joins at once), or set tables.no_identity: full`,
        );
      }
    }
    this.goodLsn = startLsn > this.goodLsn ? startLsn : this.goodLsn;
    return res;
  }

  /** DDL capture was off (src/source/ddl-capture.ts): a gap over the range, every table exported again. */
  private async captureGap(lapse: CaptureLapse): Promise<void> {
    const from = lapse.from ?? this.goodLsn;
    const detail = lapse.triggers.length
      ? `event triggers ${lapse.triggers.join(', ')} are disabled or dropped: a value-changing DDL between ${lsnText(from)} and ${lsnText(lapse.to)} may have changed rows with no change in the WAL, and one made until a superuser runs ALTER EVENT TRIGGER <name> ENABLE will be exported only then`
      : `DDL capture was off (pg-egress's value-changing DDL event triggers disabled or dropped) between ${lsnText(from)} and ${lsnText(lapse.to)}: a DDL made then may have changed rows with no change in the WAL`;
    const gapId = await this.registry.recordGap({ kind: 'ddl_capture', schema: null, table: null, lsnFrom: from, lsnTo: lapse.to, detail });
    this.log.error({ gap: 'ddl_capture', triggers: lapse.triggers, from: lsnText(from), to: lsnText(lapse.to) }, `data gap: ${detail}; exporting every table again`);
    await this.requestReload?.(await publishedTables(this.db, this.cfg.publication), 'gap', gapId);
  }
}

function log(l: Logger, added: TableName[], removed: TableName[]): void {
  l.info({ added: added.map(name), removed: removed.map(name) }, 'publication updated');
}
