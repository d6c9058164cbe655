/** `pg-egress status` as text: one line per fact, then tables, reloads, gaps, unpublished tables, missing files. */
import { formatLocal } from '../anchor/local-status.js';
import { displayTable, printable } from '../config/patterns.js';
import type { StatusReport } from './report.js';

export function formatStatus(r: StatusReport): string {
  const daemon = r.daemon.running
    ? `running: ${r.daemon.holder}`
    : `not running${r.daemon.status_at ? ` (last status file ${r.daemon.status_at})` : ''}`;
  const lines = [
    `slot            ${r.slot.name} (${r.slot.exists ? (r.slot.active ? 'active' : 'inactive') : 'MISSING'}${r.slot.wal_status ? `, wal ${r.slot.wal_status}` : ''})`,
    `failover        ${!r.failover.supported ? 'not supported (PostgreSQL 17+)' : r.failover.failover === null ? '-' : r.failover.failover ? `on, ${r.failover.synced ? 'synced to a standby' : 'NOT synced to a standby'}` : 'off'}${r.failover.synchronized_standby_slots.length ? ` (synchronized_standby_slots: ${r.failover.synchronized_standby_slots.map((x) => `${x.name}${x.active ? '' : ' inactive'}${x.caught_up ? '' : ' behind'}`).join(', ')})` : ''}`,
    ...r.failover.warnings.map((w) => `  warning: ${w}`),
    `server lsn      ${r.server_lsn}`,
    `confirmed lsn   ${r.slot.confirmed_flush_lsn ?? '-'}`,
    `registered lsn  ${r.registered_lsn ?? '-'}`,
    `lag             ${r.lag_bytes === null ? '-' : `${r.lag_bytes} bytes`}`,
    `pending anchors ${r.pending_anchors}${r.anchors.map((a) => ` | ${a.target}: ${a.pending} pending${a.oldest_pending_s !== null ? ` (oldest ${a.oldest_pending_s}s)` : ''}, ${a.failed} failed, ${a.done} done${a.skipped ? `, ${a.skipped} skipped (anchors.${a.target} not configured)` : ''}${a.last_error ? `, last error: ${a.last_error}` : ''}`).join('')}`,
    ...(r.local ? [`local files     ${formatLocal(r.local)}`] : []),
    `daemon          ${daemon}`,
    ...(r.spooled?.transactions
      ? [`large txns      ${r.spooled.transactions} in progress, ${(r.spooled.bytes / 1048576).toFixed(1)} MB received so far (held in output.dir/_tmp until their commit)`]
      : []),
    `compression     ${r.compression}`,
    '',
    'table'.padEnd(40) + 'mode'.padEnd(16) + 'last window'.padEnd(22) + 'pending rows'.padEnd(14) + 'partition',
    ...r.tables.map(
      (t) =>
        t.table.padEnd(40) +
        (t.dropped ? 'dropped' : t.partitions !== null ? 'root' : t.mode).padEnd(16) +
        (t.last_window ?? '-').padEnd(22) +
        (t.pending_rows === null ? '-' : String(t.pending_rows)).padEnd(14) +
        (t.leaf_of ? `leaf of ${t.leaf_of}` : t.partitions !== null ? `partitioned: ${t.partitions} leaves` : '-'),
    ),
  ];
  if (r.reloads.length) {
    lines.push('', 'reloads');
    for (const o of r.reloads) {
      const progress = o.state === 'running' ? ` ${o.rows ?? 0} rows, chunks ${o.chunks_done}/${o.chunks ?? '?'}` : o.state === 'done' ? ` ${o.rows} rows at ${o.snapshot_lsn}` : '';
      lines.push(`  #${o.id} ${o.table} ${o.state} (${o.reason})${progress}${o.waiting_on ? `: ${o.waiting_on}` : ''}${o.error && o.state !== 'done' ? `: ${o.error}` : ''}`);
    }
  }
  if (r.gaps.length) {
    lines.push('', `DATA GAPS (${r.gaps.length}): committed changes that are in no file`);
    for (const g of r.gaps) lines.push(`  #${g.id} ${g.kind} ${g.schema ? displayTable(g.schema, g.table ?? '') : 'all tables'} from ${g.lsnFrom ?? '-'} to ${g.lsnTo ?? 'now'} (${g.detectedAt}): ${g.detail}`);
  }
  if (r.unpublished.length) {
    lines.push('', `UNPUBLISHED TABLES (${r.unpublished.length}): selected by tables.include but not captured`);
    for (const u of r.unpublished) lines.push(`  ${u.table}: ${u.reason}`);
  }
  if (r.missing_files.count) {
    lines.push('', `MISSING FILES (${r.missing_files.count}): registered but not in output.dir`);
    for (const f of r.missing_files.first) lines.push(`  ${f}`);
  }
  // Values from the database (errors, gap details) may hold control characters: one line each.
  return lines.map(printable).join('\n') + '\n';
}
