/**
 * L: commit → registered latency under a steady load. One writer commits a 100-row transaction
 * every 50 ms (2,000 rows/s) while pg-egress runs with its 1-second windows; a watcher reads the
 * registry's registered LSN every 10 ms. A transaction is registered once that LSN passes the
 * WAL position taken inside it just before COMMIT (its commit record lies beyond it, and with one
 * writer no other transaction commits in between).
 */
import pg from 'pg';
import { parseLsn } from '../../src/lsn.js';
import { percentile } from '../lib/stats.js';
import { createTables, rowsSql } from './data.js';
import { egressDatabase } from './setup.js';

export interface LatencyResult {
  rowsPerSecond: number;
  transactions: number;
  p50: number;
  p99: number;
  max: number;
}

export async function latencyScenario(seconds: number, rowsPerTxn = 100, everyMs = 50): Promise<LatencyResult> {
  const table = 'public.steady';
  const db = await egressDatabase((url) => createTables(url, [table]), true);
  const { env } = db;
  const writer = new pg.Client({ connectionString: env.url });
  const watcher = new pg.Client({ connectionString: env.url });
  await writer.connect();
  await watcher.connect();
  const pending: { lsn: bigint; at: number }[] = [];
  const latencies: number[] = [];
  let writing = true;
  try {
    const watch = (async () => {
      while (writing || pending.length) {
        const r = await watcher.query<{ l: string }>(`SELECT registered_lsn::text AS l FROM cdc_registry.slot_state WHERE slot_name = $1`, [env.slot]);
        const reg = parseLsn(r.rows[0].l);
        const now = performance.now();
        while (pending.length && reg > pending[0].lsn) latencies.push((now - pending.shift()!.at) / 1000);
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    const t0 = performance.now();
    const warmup = 3000;
    let id = 1;
    let txns = 0;
    for (let k = 0; performance.now() - t0 < seconds * 1000 + warmup; k++) {
      const due = t0 + k * everyMs;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      const res = (await writer.query(`BEGIN; INSERT INTO ${table} ${rowsSql(id, id + rowsPerTxn - 1)}; SELECT pg_current_wal_insert_lsn()::text AS l; COMMIT`)) as unknown as pg.QueryResult[];
      id += rowsPerTxn;
      const at = performance.now();
      // The first seconds (connections, first flush) are not the steady state.
      if (at - t0 >= warmup) {
        pending.push({ lsn: parseLsn(res[2].rows[0].l), at });
        txns++;
      }
    }
    const elapsed = (performance.now() - t0 - warmup) / 1000;
    writing = false;
    await Promise.race([watch, new Promise((_, rej) => setTimeout(() => rej(new Error('transactions not registered within 60 s')), 60_000))]);
    return {
      rowsPerSecond: (txns * rowsPerTxn) / elapsed,
      transactions: txns,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: Math.max(...latencies),
    };
  } finally {
    writing = false;
    await writer.end();
    await watcher.end();
    await db.drop();
  }
}
