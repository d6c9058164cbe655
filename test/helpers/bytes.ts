/** Protocol bytes built by hand, as the server would send them, for decoder unit tests. */
import { UNCHANGED_TOAST } from '../../src/wal/pgoutput.js';

export class Bytes {
  private parts: Buffer[] = [];
  raw(b: Buffer | number[]) {
    this.parts.push(Buffer.from(b));
    return this;
  }
  int8(n: number) {
    return this.raw([n & 0xff]);
  }
  ch(c: string) {
    return this.int8(c.charCodeAt(0));
  }
  int16(n: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(n);
    return this.raw(b);
  }
  int32(n: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(n);
    return this.raw(b);
  }
  uint32(n: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return this.raw(b);
  }
  int64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(n);
    return this.raw(b);
  }
  uint64(n: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    return this.raw(b);
  }
  cstring(s: string) {
    return this.raw(Buffer.from(s, 'utf8')).raw([0]);
  }
  /** TupleData: string = text value, null = NULL, UNCHANGED_TOAST = 'u'. */
  tuple(values: (string | null | typeof UNCHANGED_TOAST)[]) {
    this.int16(values.length);
    for (const v of values) {
      if (v === null) this.ch('n');
      else if (v === UNCHANGED_TOAST) this.ch('u');
      else {
        const b = Buffer.from(v, 'utf8');
        this.ch('t').int32(b.length).raw(b);
      }
    }
    return this;
  }
  get length() {
    return this.parts.reduce((n, p) => n + p.length, 0);
  }
  done() {
    return Buffer.concat(this.parts);
  }
}
