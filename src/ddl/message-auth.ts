/**
 * Authenticated control messages (SPEC §8). Any role can call `pg_logical_emit_message()`, so a
 * `pg-egress:*` message counts only when pg-egress's own SQL emitted it in that transaction:
 * `cdc_registry.emit_message()` (sql/008) prefixes the payload with an HMAC-SHA256, under the
 * registry's key, over (top-level xid, prefix, payload). The xid comes from pgoutput's Begin, so
 * a genuine payload replayed in another transaction fails. Everything here is pure.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html (Begin, Message)
 * https://datatracker.ietf.org/doc/html/rfc2104
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Lsn } from '../lsn.js';

/** Every message with this prefix is ours, and is authenticated. */
export const CONTROL_PREFIX = 'pg-egress:';
/** What emit_message() puts before the payload: this, 64 hex digits of the MAC, '\n'. */
export const MAC_HEADER = 'pg-egress-mac1 ';
const HEADER_LEN = MAC_HEADER.length + 64 + 1;
/** The kinds pg-egress's SQL emits (sql/002, 004, 008). */
export const KNOWN_PREFIXES: ReadonlySet<string> = new Set(['pg-egress:ddl', 'pg-egress:reload', 'pg-egress:moved', 'pg-egress:partitions']);

/** The registry's key (cdc_registry.message_key). Never logged. */
export interface MessageKey {
  key: Buffer;
  /** Transactions that committed before this LSN were emitted by earlier versions, without a MAC. */
  createdLsn: Lsn;
}

export type Verdict =
  | { ok: true; payload: Buffer; legacy: boolean }
  | { ok: false; reason: 'not_transactional' | 'unsigned' | 'bad_mac' };

/** The bytes the MAC covers: `<xid>\n<prefix>\n<payload>`, xid in decimal (32-bit, as in Begin). */
export function macInput(xid: number, prefix: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${xid >>> 0}\n${prefix}\n`, 'utf8'), payload]);
}

/** A message's content as emit_message() builds it (tests, and the reference for the SQL side). */
export function signContent(key: Buffer, xid: number, prefix: string, payload: Buffer): Buffer {
  const mac = createHmac('sha256', key).update(macInput(xid, prefix, payload)).digest('hex');
  return Buffer.concat([Buffer.from(`${MAC_HEADER}${mac}\n`, 'latin1'), payload]);
}

/**
 * Checks one `pg-egress:*` message of the transaction (`xid`, commit LSN `finalLsn`), or a
 * non-transactional one (`txn` null: ours are never that). Returns the payload without the MAC.
 */
export function verifyControlMessage(
  key: MessageKey,
  prefix: string,
  content: Buffer,
  txn: { xid: number; finalLsn: Lsn } | null,
): Verdict {
  if (!txn) return { ok: false, reason: 'not_transactional' };
  const head = content.subarray(0, HEADER_LEN).toString('latin1');
  if (content.length < HEADER_LEN || !head.startsWith(MAC_HEADER) || head[HEADER_LEN - 1] !== '\n' || !/^[0-9a-f]{64}$/.test(head.slice(MAC_HEADER.length, HEADER_LEN - 1))) {
    // Emitted by the unsigned functions of an earlier version, before this registry had a key.
    if (txn.finalLsn < key.createdLsn) return { ok: true, payload: content, legacy: true };
    return { ok: false, reason: 'unsigned' };
  }
  const payload = content.subarray(HEADER_LEN);
  const given = Buffer.from(head.slice(MAC_HEADER.length, HEADER_LEN - 1), 'hex');
  const want = createHmac('sha256', key.key).update(macInput(txn.xid, prefix, payload)).digest();
  if (!timingSafeEqual(given, want)) return { ok: false, reason: 'bad_mac' };
  return { ok: true, payload, legacy: false };
}

export interface ForgedNote {
  prefix: string;
  reason: string;
  xid: number | null;
  lsn: string | null;
  /** What the message claims to be about (untrusted, shortened), for the operator. */
  claim: string;
}

/**
 * Counts forged messages per prefix (for /metrics, across reconnects) and says which ones to log:
 * once per source (prefix and transaction; a non-transactional one has no transaction, so once per
 * prefix per minute), at most 20 lines a minute whatever the source, the rest summed up in the next
 * line that gets out.
 */
export class ForgedMessages {
  readonly counts = new Map<string, number>();
  private readonly seen = new Set<string>();
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Records one; returns the line to log at warn (with how many were suppressed), or null. */
  note(n: ForgedNote): (ForgedNote & { suppressed: number }) | null {
    // The prefix is the forger's choice: only the kinds pg-egress emits get a label of their own.
    const label = KNOWN_PREFIXES.has(n.prefix) ? n.prefix : `${CONTROL_PREFIX}other`;
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
    const t = this.now();
    if (t - this.windowStart >= 60_000) {
      this.windowStart = t;
      this.logged = 0;
      if (this.seen.size > 10_000) this.seen.clear();
    }
    const source = n.xid === null ? `${label}\u0000${Math.floor(t / 60_000)}` : `${label}\u0000${n.xid}`;
    if (this.seen.has(source)) return null;
    this.seen.add(source);
    if (this.logged >= 20) {
      this.suppressed++;
      return null;
    }
    this.logged++;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    return { ...n, suppressed };
  }
}

/** A short, single-line description of an untrusted payload's claimed table, for the log. */
export function describeClaim(content: Buffer): string {
  const text = content.subarray(0, 2048).toString('utf8');
  const body = text.startsWith(MAC_HEADER) ? text.slice(HEADER_LEN) : text;
  try {
    const j = JSON.parse(body) as { schema?: unknown; table?: unknown; reason?: unknown; command_tag?: unknown; dropped?: unknown };
    const parts = [j.schema !== undefined && j.table !== undefined ? `table ${JSON.stringify(`${String(j.schema)}.${String(j.table)}`)}` : null, j.reason ? `reason ${JSON.stringify(String(j.reason))}` : null, j.command_tag ? `command ${JSON.stringify(String(j.command_tag))}` : null, j.dropped === true ? 'dropped' : null];
    return parts.filter(Boolean).join(', ').slice(0, 300) || 'JSON payload';
  } catch {
    return `${content.length} bytes, not JSON`;
  }
}
