/**
 * One daemon per slot. `run` holds a session-level advisory lock keyed on the slot name for its
 * whole life, on a connection of its own, taken before anything touches output.dir. A second
 * daemon with the same slot gets one line naming the first (pid, host, since when) and exit 6.
 * The connection's application_name carries our host and pid so that the holder can be named
 * from pg_locks + pg_stat_activity, by the loser and by `status`.
 * https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS
 */
import os from 'node:os';
import type pg from 'pg';
import { EgressError } from '../errors.js';
import { connectClient, sourceError, type SourceConfig } from '../db/connect.js';

/** First key of the two-int4 advisory lock form; the second is hashtext(slot). */
const LOCK_SPACE = 'pg-egress daemon';

export interface LockHolder {
  backendPid: number;
  applicationName: string;
  clientAddr: string | null;
  since: string;
}

const HOLDER_SQL = `
  SELECT a.pid::text AS pid, a.application_name AS app, a.client_addr::text AS addr,
         to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS since
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.classid = hashtext($1)::oid AND l.objid = hashtext($2)::oid
  LIMIT 1`;

/** The daemon holding the slot's lock, if any (works from any connection to the database). */
export async function lockHolder(db: pg.ClientBase | pg.Pool, slot: string): Promise<LockHolder | null> {
  const { rows } = await db.query<{ pid: string; app: string; addr: string | null; since: string }>(HOLDER_SQL, [LOCK_SPACE, slot]);
  if (!rows.length) return null;
  return { backendPid: Number(rows[0].pid), applicationName: rows[0].app, clientAddr: rows[0].addr, since: rows[0].since };
}

/** `pg-egress host=<h> pid=<p>` (application_name is cut at 63 bytes by the server). */
export const daemonApplicationName = (): string => `pg-egress host=${os.hostname()} pid=${process.pid}`.slice(0, 63);

export function describeHolder(h: LockHolder): string {
  const m = /host=(\S+) pid=(\d+)/.exec(h.applicationName);
  const who = m ? `pid ${m[2]} on host ${m[1]}` : `a session "${h.applicationName}" (backend pid ${h.backendPid})`;
  return `${who}${h.clientAddr ? ` connecting from ${h.clientAddr}` : ''}, running since ${h.since}`;
}

export class DaemonLock {
  private lostFlag = false;

  private constructor(
    private readonly client: pg.Client,
    readonly slot: string,
  ) {
    client.on('end', () => (this.lostFlag = true));
    client.on('error', () => (this.lostFlag = true));
  }

  /** True once the lock's connection is gone (the server released the lock with it). */
  get lost(): boolean {
    return this.lostFlag;
  }

  static async acquire(source: SourceConfig, slot: string): Promise<DaemonLock> {
    const client = await connectClient(source, { application_name: daemonApplicationName() });
    try {
      const { rows } = await client.query<{ ok: string }>(`SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))::text AS ok`, [LOCK_SPACE, slot]);
      if (rows[0].ok !== 'true') {
        const h = await lockHolder(client, slot);
        throw new EgressError(
          'SLOT_IN_USE',
          `another pg-egress is running with slot "${slot}" on ${source.host}:${source.port}/${source.database}: ${h ? describeHolder(h) : 'it just stopped or is starting'}; stop it first, or give this one its own slot and output.dir`,
        );
      }
      return new DaemonLock(client, slot);
    } catch (e) {
      await client.end().catch(() => undefined);
      throw sourceError(e, source, 'take the daemon lock');
    }
  }

  async release(): Promise<void> {
    this.lostFlag = true;
    await this.client.end().catch(() => undefined);
  }
}
