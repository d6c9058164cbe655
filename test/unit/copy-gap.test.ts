/**
 * What comes between two COPYs of one query (src/reload/copy-gap.ts): the ended COPY's
 * CommandComplete (its row count) and notices are read, and the next CopyOutResponse, or any other
 * message, is handed on from its first byte, however the bytes are split.
 */
import { describe, expect, it } from 'vitest';
import { CopyGap } from '../../src/reload/copy-gap.js';

function msg(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type.charCodeAt(0);
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
const cstr = (s: string) => Buffer.from(`${s}\u0000`, 'latin1');

const complete = msg('C', cstr('COPY 1234'));
const notice = msg('N', Buffer.concat([Buffer.from('SNOTICE\u0000'), cstr('Mhello'), Buffer.from([0])]));
const next = Buffer.concat([msg('H', Buffer.from([0, 0, 3, 0, 0, 0, 0, 0, 0])), msg('d', Buffer.from('1\tx\n'))]);
const error = Buffer.concat([msg('E', Buffer.concat([cstr('SERROR'), cstr('Mno such table'), Buffer.from([0])])), msg('Z', Buffer.from('T'))]);

/** Feeds `bytes` cut at `cuts`; returns what the gap decided and the row count it read. */
function run(bytes: Buffer, cuts: number[]) {
  const g = new CopyGap();
  let at = 0;
  for (const end of [...cuts, bytes.length]) {
    const r = g.push(bytes.subarray(at, end));
    at = end;
    if (r) return { next: r.next, rest: Buffer.concat([r.rest, bytes.subarray(at)]), rows: g.rows };
  }
  return null;
}

describe('CopyGap', () => {
  it('reads the row count and hands the next COPY on from its CopyOutResponse, at every split', () => {
    const bytes = Buffer.concat([complete, notice, next]);
    const head = complete.length + notice.length;
    for (let a = 0; a <= bytes.length; a++) {
      for (const cuts of [[a], [Math.min(a, 3), a]]) {
        const r = run(bytes, cuts);
        expect(r, `cuts ${cuts}`).not.toBeNull();
        expect(r!.next).toBe(true);
        expect(r!.rows).toBe(1234);
        expect(r!.rest.equals(bytes.subarray(head))).toBe(true);
      }
    }
  });

  it("hands an ErrorResponse (a later statement failed) to the client from its first byte", () => {
    const bytes = Buffer.concat([complete, error]);
    for (let a = 0; a <= bytes.length; a++) {
      const r = run(bytes, [a]);
      expect(r!.next).toBe(false);
      expect(r!.rows).toBe(1234);
      expect(r!.rest.equals(error)).toBe(true);
    }
  });

  it('waits while the gap is incomplete', () => {
    expect(run(complete.subarray(0, 7), [])).toBeNull();
    expect(new CopyGap().push(Buffer.concat([complete, notice.subarray(0, 4)]))).toBeNull();
  });

  it('refuses a malformed length', () => {
    const bad = Buffer.from([0x43, 0, 0, 0, 2, 0, 0]);
    expect(() => new CopyGap().push(bad)).toThrow(/malformed/);
  });
});
