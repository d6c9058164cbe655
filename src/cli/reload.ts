/**
 * `pg-egress reload <schema.table>... [--wait]`: issues the reload marker (SPEC §8) for each table,
 * through cdc_registry.request_reload() (so the operator need not own the table), with a request
 * id that `--wait` follows in cdc_registry.reloads until every export is registered: a progress
 * bar on a terminal, a line every few seconds otherwise.
 */
import { randomUUID } from 'node:crypto';
import type { Config } from '../config/index.js';
import { displayTable, splitQualified } from '../config/patterns.js';
import { EgressError, ExitCode } from '../errors.js';
import { createPool, isLockConflict, withTransaction } from '../db/tx.js';
import { RELOAD_CHANNEL } from '../registry/reloads.js';
import { Waker } from '../waker.js';
import { sourceError } from '../db/connect.js';

import { qualifiedName } from '../ident.js';
import { reloadsOfRequest, requestReload } from '../registry/reload-requests.js';

interface OpRow {
  schema_name: string;
  table_name: string;
  state: string;
  rows: string | null;
  raw_bytes: string;
  chunks: string | null;
  chunks_done: string;
  waiting_on: string | null;
  error: string | null;
}

const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;

function fmtEta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  if (s < 90) return `${Math.round(s)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}

export async function reloadCommand(
  cfg: Config,
  names: string[],
  o: { wait?: boolean; out?: NodeJS.WriteStream; intervalMs?: number },
): Promise<number> {
  const out = o.out ?? process.stdout;
  const tables = names.map((n) => {
    const p = splitQualified(n);
    if (!p) throw new EgressError('CONFIG_INVALID', `"${n}" is not a schema.table name (quote parts that contain dots: '"my.schema".table')`);
    return { schema: p[0], table: p[1], name: displayTable(p[0], p[1]) };
  });
  const pool = createPool(cfg.source, 2);
  try {
    // Each table published, or partitioned with published leaves (each leaf is exported), with
    // its rows as estimated by the planner: one query for all the tables.
    const { rows: found } = await pool.query<{ i: string; tuples: string }>(
      `SELECT x.i::text AS i, sum(greatest(l.reltuples, 0))::bigint::text AS tuples
       FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(s, t, i)
       JOIN pg_namespace n ON n.nspname = x.s JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = x.t
       JOIN pg_class l ON l.oid = c.oid OR (c.relkind = 'p' AND l.oid IN (SELECT relid FROM pg_partition_tree(c.oid)))
       JOIN pg_publication_rel pr ON pr.prrelid = l.oid JOIN pg_publication p ON p.oid = pr.prpubid
       WHERE p.pubname = $1
       GROUP BY x.i`,
      [cfg.publication, tables.map((t) => t.schema), tables.map((t) => t.table)],
    );
    const tuples = new Map(found.map((r) => [Number(r.i) - 1, Number(r.tuples)]));
    const estimates = new Map<string, number>();
    for (const [k, t] of tables.entries()) {
      const n = tuples.get(k);
      if (n === undefined) {
        throw new EgressError('UNKNOWN_TABLE', `table ${t.name} is not published by "${cfg.publication}" (it does not exist, tables.include/exclude leave it out, or it has no primary key); nothing was requested`);
      }
      estimates.set(t.name, n);
    }
    const requestId = randomUUID();
    // One transaction for all the markers: the daemon registers them in one flush, so the tables
    // are exported together from one snapshot.
    // The marker is a COMMENT: it takes a lock on each table, which would queue behind a DDL
    // waiting there and queue the application behind us in turn. Wait in short bounded steps.
    for (let said = false; ; said = true) {
      try {
        await withTransaction(
          pool,
          async (c) => {
            // The daemon reads the markers from its slot, which sends WAL only once it is flushed:
            // with synchronous_commit off (server or role default) that is at the WAL writer's
            // next round, up to wal_writer_delay (200 ms) later. The request is flushed at its commit.
            await c.query(`SET LOCAL synchronous_commit = on`);
            await requestReload(c, tables.map((t) => qualifiedName(t.schema, t.table)), requestId);
          },
          { lockTimeoutMs: 2000, retries: 0 },
        );
        break;
      } catch (e) {
        if (!isLockConflict(e)) throw e;
        if (!said) out.write(`waiting: a table is locked by another session (a DDL or a long transaction); the marker is tried again every few seconds\n`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    out.write(`reload requested: ${tables.map((t) => t.name).join(', ')} (request ${requestId})\n`);
    if (!o.wait) return ExitCode.OK;
    return await follow(pool, cfg, requestId, tables.map((t) => t.name), estimates, out, o.intervalMs ?? 1000);
  } catch (e) {
    throw sourceError(e, cfg.source, 'request the reload');
  } finally {
    await pool.end().catch(() => undefined);
  }
}

async function follow(
  pool: ReturnType<typeof createPool>,
  cfg: Config,
  requestId: string,
  names: string[],
  estimates: Map<string, number>,
  out: NodeJS.WriteStream,
  intervalMs: number,
): Promise<number> {
  const tty = out.isTTY === true;
  const started = Date.now();
  let lastLine = 0;
  // The daemon NOTIFYs when an operation ends: wake then, and poll for progress in between, on
  // the same connection (the one the marker went on: a second one is a second server process to
  // start, at the moment the daemon starts the export's).
  const waker = new Waker();
  const listener = await pool.connect();
  listener.on('notification', (n) => n.payload === cfg.slot && waker.wake());
  await listener.query(`LISTEN ${RELOAD_CHANNEL}`);
  try {
    return await followLoop();
  } finally {
    listener.release(true);
  }
  async function followLoop(): Promise<number> {
    for (;;) {
      const rows = await reloadsOfRequest<OpRow>(listener, cfg.slot, requestId);
      const byName = new Map(rows.map((r) => [displayTable(r.schema_name, r.table_name), r]));
      const secs = (Date.now() - started) / 1000;
      // A partitioned table's operation is 'expanded' into one per leaf: follow those instead.
      const shown = [...names.filter((n) => byName.get(n)?.state !== 'expanded'), ...rows.map((r) => displayTable(r.schema_name, r.table_name)).filter((n) => !names.includes(n))];
      const parts = shown.map((n) => {
        const r = byName.get(n);
        if (!r) return `${n}: waiting for the daemon to pick up the marker${secs > 30 ? ' (is `pg-egress run` running?)' : ''}`;
        const done = Number(r.rows ?? 0);
        const est = estimates.get(n) ?? 0;
        if (r.state === 'done') return `${n}: done, ${done} rows, ${mb(Number(r.raw_bytes))}`;
        if (r.state === 'failed' || r.state === 'cancelled') return `${n}: ${r.state}: ${r.error ?? ''}`;
        if (r.waiting_on) return `${n}: ${r.waiting_on}`;
        if (r.state === 'pending') return `${n}: pending`;
        const pct = est > 0 ? Math.min(99, Math.floor((100 * done) / est)) : null;
        const rate = done / Math.max(1, secs);
        const eta = est > done && rate > 0 ? fmtEta((est - done) / rate) : '?';
        const bar = pct === null ? '' : `[${'#'.repeat(Math.floor(pct / 5)).padEnd(20, '.')}] ${pct}% `;
        return `${n}: ${bar}${done} rows, ${mb(Number(r.raw_bytes))}, ${Math.round(rate)} rows/s, ETA ${eta}, chunks ${r.chunks_done}/${r.chunks ?? '?'}`;
      });
      const finished = names.every((n) => byName.has(n)) && shown.every((n) => ['done', 'failed', 'cancelled'].includes(byName.get(n)?.state ?? ''));
      if (tty) {
        out.write(`\r\x1b[K${parts.join(' | ')}`);
        if (finished) out.write('\n');
      } else if (finished || Date.now() - lastLine >= 5000) {
        out.write(parts.join(' | ') + '\n');
        lastLine = Date.now();
      }
      if (finished) {
        const bad = shown.filter((n) => byName.get(n)!.state !== 'done');
        if (bad.length) {
          process.stderr.write(`pg-egress: reload of ${bad.join(', ')} did not complete: ${bad.map((n) => byName.get(n)!.error ?? byName.get(n)!.state).join('; ')}\n`);
          return ExitCode.ATTENTION;
        }
        return ExitCode.OK;
      }
      await waker.sleep(intervalMs);
    }
  }
}
