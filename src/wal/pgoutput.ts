/**
 * pgoutput protocol version 1, decoded from bytes. Text values stay bytes (subarrays of the input,
 * no copy, no UTF-8 decoding): the CSV encoder writes them as they are.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
import { EgressError } from '../errors.js';

export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
export type TupleValue = Buffer | null | typeof UNCHANGED_TOAST;
export type Tuple = TupleValue[];
export interface RelationColumn {
  name: string;
  typeOid: number;
  typmod: number;
  isKey: boolean;
}
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';
export type PgOutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: bigint; xid: number }
  | { tag: 'commit'; flags: number; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { tag: 'origin'; originLsn: bigint; originName: string }
  | { tag: 'relation'; relationOid: number; schema: string; name: string; replicaIdentity: ReplicaIdentity; columns: RelationColumn[] }
  | { tag: 'type'; typeOid: number; schema: string; name: string }
  | { tag: 'insert'; relationOid: number; newTuple: Tuple }
  | { tag: 'update'; relationOid: number; keyTuple: Tuple | null; oldTuple: Tuple | null; newTuple: Tuple }
  | { tag: 'delete'; relationOid: number; keyTuple: Tuple | null; oldTuple: Tuple | null }
  | { tag: 'truncate'; cascade: boolean; restartIdentity: boolean; relationOids: number[] }
  | { tag: 'message'; transactional: boolean; lsn: bigint; prefix: string; content: Buffer };

const IDENTITY: Record<string, ReplicaIdentity> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

/** A bounds-checked cursor: every read fails loudly instead of reading past the message. */
class Reader {
  pos = 1;
  constructor(
    readonly buf: Buffer,
    readonly tag: string,
  ) {}

  fail(what: string): never {
    throw new EgressError('PROTOCOL', `pgoutput: ${what} in '${this.tag}' message at offset ${this.pos} of ${this.buf.length}`);
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail(`truncated message (needs ${n} more bytes)`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  cstr(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) this.fail('unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  bytes(n: number): Buffer {
    if (n < 0) this.fail(`negative length ${n}`);
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  tuple(): Tuple {
    const n = this.i16();
    const t: Tuple = new Array(n);
    for (let i = 0; i < n; i++) {
      const kind = this.u8();
      if (kind === 0x74 /* t */) t[i] = this.bytes(this.i32());
      else if (kind === 0x6e /* n */) t[i] = null;
      else if (kind === 0x75 /* u */) t[i] = UNCHANGED_TOAST;
      else if (kind === 0x62 /* b */) this.fail('binary column value (binary mode is never requested)');
      else this.fail(`unknown column kind ${kind}`);
    }
    return t;
  }
  end(): void {
    if (this.pos !== this.buf.length) this.fail(`${this.buf.length - this.pos} unexpected trailing bytes`);
  }
}

export function decodePgOutput(buf: Buffer): PgOutputMessage {
  if (buf.length === 0) throw new EgressError('PROTOCOL', 'pgoutput: empty message');
  const tag = String.fromCharCode(buf[0]);
  const r = new Reader(buf, tag);
  let m!: PgOutputMessage;
  switch (tag) {
    case 'B':
      m = { tag: 'begin', finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
      break;
    case 'C':
      m = { tag: 'commit', flags: r.u8(), commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
      break;
    case 'O':
      m = { tag: 'origin', originLsn: r.u64(), originName: r.cstr() };
      break;
    case 'R': {
      const relationOid = r.u32();
      const schema = r.cstr() || 'pg_catalog';
      const name = r.cstr();
      const ri = String.fromCharCode(r.u8());
      const replicaIdentity = IDENTITY[ri] ?? r.fail(`unknown replica identity ${JSON.stringify(ri)}`);
      const n = r.i16();
      const columns: RelationColumn[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        columns[i] = { name: r.cstr(), typeOid: r.u32(), typmod: r.i32(), isKey: (flags & 1) === 1 };
      }
      m = { tag: 'relation', relationOid, schema, name, replicaIdentity, columns };
      break;
    }
    case 'Y':
      m = { tag: 'type', typeOid: r.u32(), schema: r.cstr(), name: r.cstr() };
      break;
    case 'I': {
      const relationOid = r.u32();
      if (r.u8() !== 0x4e /* N */) r.fail("expected 'N'");
      m = { tag: 'insert', relationOid, newTuple: r.tuple() };
      break;
    }
    case 'U': {
      const relationOid = r.u32();
      let keyTuple: Tuple | null = null;
      let oldTuple: Tuple | null = null;
      let kind = r.u8();
      if (kind === 0x4b /* K */) keyTuple = r.tuple();
      else if (kind === 0x4f /* O */) oldTuple = r.tuple();
      if (keyTuple || oldTuple) kind = r.u8();
      if (kind !== 0x4e /* N */) r.fail("expected 'N'");
      m = { tag: 'update', relationOid, keyTuple, oldTuple, newTuple: r.tuple() };
      break;
    }
    case 'D': {
      const relationOid = r.u32();
      const kind = r.u8();
      if (kind === 0x4b) m = { tag: 'delete', relationOid, keyTuple: r.tuple(), oldTuple: null };
      else if (kind === 0x4f) m = { tag: 'delete', relationOid, keyTuple: null, oldTuple: r.tuple() };
      else r.fail("expected 'K' or 'O'");
      break;
    }
    case 'T': {
      const n = r.i32();
      const options = r.u8();
      const relationOids = new Array<number>(n);
      for (let i = 0; i < n; i++) relationOids[i] = r.u32();
      m = { tag: 'truncate', cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0, relationOids };
      break;
    }
    case 'M': {
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstr();
      m = { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content: r.bytes(r.i32()) };
      break;
    }
    default:
      throw new EgressError('PROTOCOL', `pgoutput: unknown message type ${JSON.stringify(tag)} (byte ${buf[0]})`);
  }
  r.end();
  return m;
}
