/**
 * pgoutput fixture builders: one named builder per message, producing the bytes the server sends
 * (protocol 1, https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html),
 * decoded by the real decoder so that tuples carry the same spans as in production.
 */
import { decodePgOutput, UNCHANGED_TOAST, type PgOutputMessage } from '../../src/wal/pgoutput.js';
import { signContent } from '../../src/ddl/message-auth.js';
import { Bytes } from './bytes.js';

export { UNCHANGED_TOAST };
export type Value = string | null | typeof UNCHANGED_TOAST;

/** PostgreSQL's epoch (2000-01-01) in Unix ms. */
const PG_EPOCH_MS = 946_684_800_000;
/** A commit time in pgoutput's microseconds since 2000-01-01, from Unix ms. */
export const pgTime = (unixMs: number): bigint => BigInt(unixMs - PG_EPOCH_MS) * 1000n;

const decode = (b: Bytes): PgOutputMessage => decodePgOutput(b.done());

export const Begin = (finalLsn: bigint, xid: number, commitMs: number) => decode(new Bytes().ch('B').uint64(finalLsn).int64(pgTime(commitMs)).uint32(xid));

export const Commit = (commitLsn: bigint, endLsn: bigint, commitMs: number) =>
  decode(new Bytes().ch('C').int8(0).uint64(commitLsn).uint64(endLsn).int64(pgTime(commitMs)));

export interface ColumnFixture {
  name: string;
  typeOid?: number;
  key?: boolean;
}

/** Relation: replica identity 'd' default, 'f' full, 'i' index, 'n' nothing. */
export const Relation = (oid: number, schema: string, table: string, columns: ColumnFixture[], identity: 'd' | 'f' | 'i' | 'n' = 'd') => {
  const b = new Bytes().ch('R').uint32(oid).cstring(schema).cstring(table).ch(identity).int16(columns.length);
  for (const c of columns) b.int8(c.key ? 1 : 0).cstring(c.name).uint32(c.typeOid ?? 25).int32(-1);
  return decode(b);
};

export const Insert = (oid: number, values: Value[]) => decode(new Bytes().ch('I').uint32(oid).ch('N').tuple(values));

/** Update: `old` is sent as 'K' (key columns changed) or 'O' (REPLICA IDENTITY FULL). */
export const Update = (oid: number, values: Value[], old?: { kind: 'K' | 'O'; values: Value[] }) => {
  const b = new Bytes().ch('U').uint32(oid);
  if (old) b.ch(old.kind).tuple(old.values);
  return decode(b.ch('N').tuple(values));
};

export const Delete = (oid: number, old: { kind: 'K' | 'O'; values: Value[] }) => decode(new Bytes().ch('D').uint32(oid).ch(old.kind).tuple(old.values));

export const Truncate = (oids: number[]) => {
  const b = new Bytes().ch('T').uint32(oids.length).int8(0);
  for (const o of oids) b.uint32(o);
  return decode(b);
};

/** A transactional logical message (pg_logical_emit_message). */
export const Message = (prefix: string, content: Buffer, lsn = 0n) => decode(new Bytes().ch('M').int8(1).uint64(lsn).cstring(prefix).uint32(content.length).raw(content));

/** A `pg-egress:*` message as cdc_registry.emit_message() signs it, for transaction `xid`. */
export const SignedMessage = (key: Buffer, xid: number, prefix: string, body: unknown) => Message(
  prefix,
  signContent(key, xid, prefix, Buffer.from(JSON.stringify(body))),
);
