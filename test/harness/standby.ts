/**
 * Physical standbys for failover tests, without pg_basebackup (the embedded PostgreSQL 18 has
 * only initdb, pg_ctl and postgres): the low-level backup API on the running primary
 * (`pg_backup_start`, a file copy of the data directory, `pg_backup_stop` whose backup_label goes
 * into the copy), then `standby.signal` and the settings a failover slot needs on a standby.
 * https://www.postgresql.org/docs/18/continuous-archiving.html#BACKUP-LOWLEVEL-BASE-BACKUP
 * https://www.postgresql.org/docs/18/logicaldecoding-explanation.html#LOGICALDECODING-REPLICATION-SLOTS-SYNCHRONIZATION
 */
import { copyFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { clusterAt, freePort, giveToPg, runPg, type Cluster } from './cluster.js';

/** Folders whose contents a base backup leaves out (as pg_basebackup does), and files never copied. */
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'standby.signal', 'recovery.signal', 'backup_label', 'tablespace_map', 'current_logfiles']);

/** Copies a live data directory: files may vanish meanwhile (WAL replay makes them consistent). */
function copyTree(from: string, to: string, top: boolean): void {
  mkdirSync(to, { recursive: true, mode: 0o700 });
  giveToPg(to);
  let names: string[];
  try {
    names = readdirSync(from);
  } catch {
    return;
  }
  for (const n of names) {
    const src = path.join(from, n);
    const dst = path.join(to, n);
    let st;
    try {
      st = lstatSync(src);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      if (top && EMPTY_DIRS.has(n)) {
        mkdirSync(dst, { mode: 0o700 });
        giveToPg(dst);
        if (n === 'pg_wal') {
          for (const sub of ['archive_status', 'summaries']) {
            mkdirSync(path.join(dst, sub), { mode: 0o700 });
            giveToPg(path.join(dst, sub));
          }
        }
        continue;
      }
      copyTree(src, dst, false);
    } else if (st.isFile()) {
      if (top && SKIP_FILES.has(n)) continue;
      try {
        copyFileSync(src, dst);
        giveToPg(dst);
      } catch {
        // removed while we copied: replay from the backup's start recreates what matters
      }
    }
  }
}

export interface Node {
  cluster: Cluster;
  /** The name of the physical slot on its primary that this server streams from as a standby. */
  physicalSlot: string;
}

const conf = (o: Record<string, string | number>) => Object.entries(o).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n';

/**
 * A new standby of `primary` (which runs), in a folder of its own, on `port` (a free one when not
 * given), streaming from physical slot `physicalSlot` (created on the primary), with slot
 * synchronisation on. `dbname` goes into primary_conninfo: the slot sync worker needs it.
 */
export async function cloneStandby(
  primary: Cluster,
  o: { physicalSlot: string; dbname: string; settings: Record<string, string | number>; port?: number; slotSync?: boolean },
): Promise<Node> {
  const c = new pg.Client({ connectionString: primary.url() });
  await c.connect();
  const baseDir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-standby-'));
  giveToPg(baseDir);
  const dataDir = path.join(baseDir, 'data');
  try {
    await c.query(`SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, [o.physicalSlot]);
    await c.query(`SELECT pg_backup_start('pg-egress standby', true)`);
    copyTree(primary.dataDir, dataDir, true);
    const { rows } = await c.query<{ labelfile: string; spcmapfile: string | null }>(`SELECT labelfile, spcmapfile FROM pg_backup_stop(false)`);
    writeFileSync(path.join(dataDir, 'backup_label'), rows[0].labelfile);
    giveToPg(path.join(dataDir, 'backup_label'));
  } finally {
    await c.end();
  }
  const port = o.port ?? (await freePort());
  writeFileSync(
    path.join(dataDir, 'postgresql.auto.conf'),
    conf({
      listen_addresses: "'127.0.0.1'",
      port,
      unix_socket_directories: `'${baseDir}'`,
      ...o.settings,
      primary_conninfo: `'host=127.0.0.1 port=${primary.port} user=postgres dbname=${o.dbname} application_name=standby_${port}'`,
      primary_slot_name: `'${o.physicalSlot}'`,
      hot_standby_feedback: 'on',
      // PostgreSQL 17+ only (an unknown setting stops an older server from starting).
      ...(o.slotSync === false ? {} : { sync_replication_slots: 'on', synchronized_standby_slots: "''" }),
    }),
  );
  giveToPg(path.join(dataDir, 'postgresql.auto.conf'));
  writeFileSync(path.join(dataDir, 'standby.signal'), '');
  giveToPg(path.join(dataDir, 'standby.signal'));
  const cluster = clusterAt(primary.binDir, baseDir, dataDir, port);
  cluster.start();
  return { cluster, physicalSlot: o.physicalSlot };
}

/** Promotes a standby (it finishes replaying what it received, then accepts writes). */
export function promote(c: Cluster): void {
  runPg(c.binDir, 'pg_ctl', ['-D', c.dataDir, '-w', '-t', '120', 'promote']);
}

/** Stops a server, gives it another port, and starts it again (the "same address" of a VIP). */
export function movePort(c: Cluster, port: number): Cluster {
  c.stop('fast');
  const file = path.join(c.dataDir, 'postgresql.auto.conf');
  const text = readFileSync(file, 'utf8').replace(/^port = '?\d+'?$/m, `port = ${port}`);
  writeFileSync(file, text);
  giveToPg(file);
  const moved = clusterAt(c.binDir, c.baseDir, c.dataDir, port);
  moved.start();
  return moved;
}
