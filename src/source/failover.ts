/**
 * Failover slots (PostgreSQL 17+). The slot is created with FAILOVER (config `slot_failover`), so
 * that a physical standby running with `sync_replication_slots = on` keeps a synchronised copy of
 * it; after a promotion the daemon continues from that copy instead of exporting every table again.
 * https://www.postgresql.org/docs/17/logicaldecoding-explanation.html#LOGICALDECODING-REPLICATION-SLOTS-SYNCHRONIZATION
 *
 * The primary cannot read the standby's `pg_replication_slots.synced`, so "synced" is judged from
 * what the primary does see (`slotHealth`): the slot has failover on, `synchronized_standby_slots`
 * names physical slots, each of them is active (a standby streams from it) and has flushed WAL up
 * to this slot's confirmed LSN, and a standby's slot sync worker is connected.
 */
import pg from 'pg';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Db } from '../db/tx.js';
import { parseLsn } from '../lsn.js';
import { clientConfig, sourceError } from '../db/connect.js';
import type { ServerInfo } from './setup.js';

export const FAILOVER_MIN_MAJOR = 17;

export const serverMajor = (server: Pick<ServerInfo, 'serverVersion'>): number => Number(server.serverVersion.split('.')[0]);

export interface StandbySlot {
  name: string;
  exists: boolean;
  physical: boolean;
  active: boolean;
  /** restart_lsn of a physical slot: what its standby has flushed. */
  flushedLsn: string | null;
  /** The standby has flushed WAL up to this slot's confirmed LSN. */
  caughtUp: boolean;
}

export interface SlotHealth {
  /** The server has failover slots (17+). */
  supported: boolean;
  /** The slot's failover property; null when unsupported or the slot does not exist. */
  failover: boolean | null;
  /** See the module comment for what this can and cannot know. */
  synced: boolean;
  /** synchronized_standby_slots is set (17+). */
  standbySlotsSet: boolean;
  standbySlots: StandbySlot[];
  /** Slot sync workers of standbys connected to this server. */
  slotsyncWorkers: number;
  warnings: string[];
}

export interface SlotHealthInput {
  major: number;
  /** The slot's failover property, null when the slot is missing. */
  failover: boolean | null;
  confirmedLsn: string | null;
  /** Raw synchronized_standby_slots ('' when unset or unsupported). */
  synchronizedStandbySlots: string;
  standbySlots: { name: string; type: string; active: boolean; restartLsn: string | null }[];
  slotsyncWorkers: number;
  /** Physical standbys seen on this server (walsenders not serving a logical slot, and physical slots). */
  physicalStandbys: number;
  wanted: boolean;
}

/** `a, "b"` → [a, b]: the GUC is a comma-separated list of (possibly quoted) slot names. */
export function parseSlotList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s.length > 0);
}

/** Pure: what `status`, `/ready` and `/metrics` show about failover. */
export function evaluateSlotHealth(x: SlotHealthInput): SlotHealth {
  const supported = x.major >= FAILOVER_MIN_MAJOR;
  const warnings: string[] = [];
  if (!supported) {
    return { supported, failover: null, synced: false, standbySlotsSet: false, standbySlots: [], slotsyncWorkers: 0, warnings };
  }
  const names = parseSlotList(x.synchronizedStandbySlots);
  const confirmed = x.confirmedLsn ? parseLsn(x.confirmedLsn) : 0n;
  const standbySlots: StandbySlot[] = names.map((name) => {
    const s = x.standbySlots.find((r) => r.name === name);
    const flushed = s?.restartLsn ?? null;
    return {
      name,
      exists: s !== undefined,
      physical: s?.type === 'physical',
      active: s?.active === true,
      flushedLsn: flushed,
      caughtUp: flushed !== null && parseLsn(flushed) >= confirmed,
    };
  });
  if (x.failover === false && x.wanted) warnings.push('the slot has failover off: a promoted standby will not have it (pg-egress turns it on at its next start)');
  if (x.failover === true) {
    // Without a standby there is nothing to get ahead of: no warning for a single server.
    if (!names.length && (x.physicalStandbys > 0 || x.slotsyncWorkers > 0)) {
      warnings.push(
        'synchronized_standby_slots is not set on the primary: the slot may get ahead of the standby, and pg-egress may export transactions that a failover then loses; set it to the standby\'s physical slot',
      );
    }
    for (const s of standbySlots) {
      if (!s.exists) warnings.push(`synchronized_standby_slots names slot "${s.name}", which does not exist on the primary`);
      else if (!s.physical) warnings.push(`synchronized_standby_slots names slot "${s.name}", which is not a physical slot`);
      else if (!s.active) warnings.push(`no standby streams from physical slot "${s.name}" (synchronized_standby_slots): logical decoding waits for it`);
    }
    if (names.length && x.slotsyncWorkers === 0) {
      warnings.push('no standby slot sync worker is connected: set sync_replication_slots = on, hot_standby_feedback = on and a dbname in primary_conninfo on the standby');
    }
  }
  const synced = x.failover === true &&
    standbySlots.length > 0 &&
    standbySlots.every((s) => s.exists && s.physical && s.active && s.caughtUp) &&
    x.slotsyncWorkers > 0;
  return {
    supported,
    failover: x.failover,
    synced,
    standbySlotsSet: names.length > 0,
    standbySlots,
    slotsyncWorkers: x.slotsyncWorkers,
    warnings,
  };
}

/** Reads what the server shows about the slot's failover state (any version, any role). */
export async function slotHealth(db: Db, cfg: Config): Promise<SlotHealth> {
  const { rows } = await db.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  const major = Math.floor(Number(rows[0].v) / 10000);
  if (major < FAILOVER_MIN_MAJOR) {
    return evaluateSlotHealth({ major, failover: null, confirmedLsn: null, synchronizedStandbySlots: '', standbySlots: [], slotsyncWorkers: 0, physicalStandbys: 0, wanted: cfg.slotFailover });
  }
  const { rows: r } = await db.query<{ failover: string | null; confirmed: string | null; sss: string | null; physical: string }>(
    `SELECT (SELECT failover::text FROM pg_replication_slots WHERE slot_name = $1) AS failover,
            (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1) AS confirmed,
            current_setting('synchronized_standby_slots', true) AS sss,
            ((SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical')
             + (SELECT count(*) FROM pg_stat_replication r
                WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical')))::text AS physical`,
    [cfg.slot],
  );
  const names = parseSlotList(r[0].sss ?? '');
  // A standby's slot sync worker is an ordinary connection from it (not its walsender). It names
  // itself "<cluster_name>_slotsync worker", but only as the fallback application_name: one set
  // in the standby's primary_conninfo wins, and then it shares the walsender's name. Both are
  // visible to any role in pg_stat_activity.
  const { rows: w } = await db.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM pg_stat_activity a
     WHERE a.datname IS NOT NULL AND a.pid <> pg_backend_pid() AND a.pid NOT IN (SELECT pid FROM pg_stat_replication)
       AND (a.application_name LIKE '%slotsync worker'
            OR a.application_name IN (SELECT r.application_name FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
                                      WHERE s.slot_type = 'physical' AND s.slot_name = ANY($1)))`,
    [names],
  );
  const { rows: ss } = names.length
    ? await db.query<{ slot_name: string; slot_type: string; active: string; restart_lsn: string | null }>(
        `SELECT slot_name, slot_type, active::text AS active, restart_lsn::text AS restart_lsn FROM pg_replication_slots WHERE slot_name = ANY($1)`,
        [names],
      )
    : { rows: [] };
  return evaluateSlotHealth({
    major,
    failover: r[0].failover === null ? null : r[0].failover === 'true',
    confirmedLsn: r[0].confirmed,
    synchronizedStandbySlots: r[0].sss ?? '',
    standbySlots: ss.map((s) => ({ name: s.slot_name, type: s.slot_type, active: s.active === 'true', restartLsn: s.restart_lsn })),
    slotsyncWorkers: Number(w[0].n),
    physicalStandbys: Number(r[0].physical),
    wanted: cfg.slotFailover,
  });
}

/**
 * Brings an existing slot's failover property in line with `slot_failover` (17+), with
 * ALTER_REPLICATION_SLOT on a replication connection (the slot must not be in use: call it after
 * waitSlotFree). A server that refuses (e.g. a role without the right) is a warning, not an error:
 * the stream works either way, only a failover would then cost a full export.
 * https://www.postgresql.org/docs/17/protocol-replication.html#PROTOCOL-REPLICATION-ALTER-REPLICATION-SLOT
 */
export async function ensureSlotFailover(db: Db, cfg: Config, server: ServerInfo, log: Logger): Promise<void> {
  const major = serverMajor(server);
  if (major < FAILOVER_MIN_MAJOR) {
    if (cfg.slotFailover) log.info({ server_version: server.serverVersion }, 'failover slots need PostgreSQL 17: after a failover to a standby the slot is missing, and pg-egress records a gap and exports every table again');
    return;
  }
  const { rows } = await db.query<{ failover: string; synced: string }>(
    `SELECT failover::text AS failover, synced::text AS synced FROM pg_replication_slots WHERE slot_name = $1`,
    [cfg.slot],
  );
  if (!rows.length || (rows[0].failover === 'true') === cfg.slotFailover) return;
  const client = new pg.Client(clientConfig(cfg.source, { replication: 'database', application_name: 'pg-egress alter slot' } as Partial<pg.ClientConfig>));
  try {
    await client.connect();
    await client.query(`ALTER_REPLICATION_SLOT "${cfg.slot}" (FAILOVER ${cfg.slotFailover ? 'true' : 'false'})`);
    log.info({ slot: cfg.slot, failover: cfg.slotFailover }, `replication slot failover turned ${cfg.slotFailover ? 'on' : 'off'} (slot_failover)`);
  } catch (e) {
    const err = sourceError(e, cfg.source, 'alter the replication slot');
    log.warn({ slot: cfg.slot }, `could not turn the slot's failover ${cfg.slotFailover ? 'on' : 'off'}: ${err.message}; a failover to a standby would then cost a full export`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Logs the health's warnings once (start-up) and whenever they change. */
export function logSlotHealth(log: Logger, h: SlotHealth, previous: SlotHealth | null): void {
  const before = new Set(previous?.warnings ?? []);
  for (const w of h.warnings) if (!before.has(w)) log.warn({ failover: h.failover, synced: h.synced }, w);
  if (previous && previous.synced !== h.synced) log.info({ synced: h.synced }, h.synced ? 'the slot is synchronised to a standby' : 'the slot is not synchronised to a standby');
}

/**
 * Where the server's current timeline began (the switch point of its last promotion), or null on
 * timeline 1. IDENTIFY_SYSTEM and TIMELINE_HISTORY need only the REPLICATION privilege.
 * https://www.postgresql.org/docs/18/protocol-replication.html#PROTOCOL-REPLICATION-TIMELINE-HISTORY
 */
export async function timelineSwitchPoint(cfg: Config): Promise<bigint | null> {
  const client = new pg.Client(clientConfig(cfg.source, { replication: 'database', application_name: 'pg-egress timeline' } as Partial<pg.ClientConfig>));
  try {
    await client.connect();
    const id = await client.query<{ timeline: string | number }>('IDENTIFY_SYSTEM');
    const tli = Number(id.rows[0].timeline);
    if (!(tli > 1)) return null;
    const h = await client.query<{ content: Buffer | string }>(`TIMELINE_HISTORY ${tli}`);
    const raw = h.rows[0].content;
    const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : raw.startsWith('\\x') ? Buffer.from(raw.slice(2), 'hex').toString('utf8') : raw;
    // Lines: "<parent tli>\t<switch point>\t<reason>"; the last one is where this timeline began.
    const lines = text.split('\n').filter((l) => /^\s*\d+\s+[0-9A-Fa-f]+\/[0-9A-Fa-f]+/.test(l));
    if (!lines.length) return null;
    return parseLsn(lines[lines.length - 1].trim().split(/\s+/)[1]);
  } catch (e) {
    throw sourceError(e, cfg.source, 'read the timeline history');
  } finally {
    await client.end().catch(() => undefined);
  }
}
