import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ForgedMessages, MAC_HEADER, describeClaim, macInput, signContent, verifyControlMessage } from '../../src/ddl/message-auth.js';

const key = Buffer.alloc(32, 0x2a);
const mk = { key, createdLsn: 1000n };
const payload = Buffer.from('{"schema":"public","table":"big2","relid":1,"reason":"marker"}');
const txn = { xid: 4242, finalLsn: 5000n };

describe('control message authentication', () => {
  it('emit_message()-style content verifies in its own transaction and yields the payload', () => {
    const v = verifyControlMessage(mk, 'pg-egress:reload', signContent(key, 4242, 'pg-egress:reload', payload), txn);
    expect(v).toEqual({ ok: true, payload, legacy: false });
  });

  it('the MAC is RFC 2104 HMAC-SHA256 over "<xid>\\n<prefix>\\n<payload>"', () => {
    expect(macInput(7, 'pg-egress:ddl', Buffer.from('x')).toString()).toBe('7\npg-egress:ddl\nx');
    const content = signContent(key, 7, 'pg-egress:ddl', Buffer.from('x')).toString();
    expect(content).toBe(`${MAC_HEADER}${createHmac('sha256', key).update('7\npg-egress:ddl\nx').digest('hex')}\nx`);
    // The xid is the 32-bit one of pgoutput's Begin.
    expect(macInput(2 ** 32 + 5, 'p', Buffer.alloc(0)).toString()).toBe('5\np\n');
  });

  it('a genuine content replayed in another transaction is refused', () => {
    const content = signContent(key, 4242, 'pg-egress:reload', payload);
    expect(verifyControlMessage(mk, 'pg-egress:reload', content, { xid: 4243, finalLsn: 6000n })).toEqual({ ok: false, reason: 'bad_mac' });
  });

  it('a genuine content under another prefix, a changed payload, another key: refused', () => {
    const content = signContent(key, 4242, 'pg-egress:ddl', payload);
    expect(verifyControlMessage(mk, 'pg-egress:reload', content, txn)).toEqual({ ok: false, reason: 'bad_mac' });
    const changed = Buffer.from(content);
    changed[changed.length - 3] ^= 1;
    expect(verifyControlMessage(mk, 'pg-egress:ddl', changed, txn)).toEqual({ ok: false, reason: 'bad_mac' });
    expect(verifyControlMessage({ key: Buffer.alloc(32, 1), createdLsn: 0n }, 'pg-egress:ddl', content, txn)).toEqual({ ok: false, reason: 'bad_mac' });
  });

  it('no MAC, a malformed header, a non-transactional message: refused', () => {
    expect(verifyControlMessage(mk, 'pg-egress:reload', payload, txn)).toEqual({ ok: false, reason: 'unsigned' });
    expect(verifyControlMessage(mk, 'pg-egress:reload', Buffer.from(`${MAC_HEADER}${'zz'.repeat(32)}\n{}`), txn)).toEqual({ ok: false, reason: 'unsigned' });
    expect(verifyControlMessage(mk, 'pg-egress:reload', Buffer.from(`${MAC_HEADER}abc`), txn)).toEqual({ ok: false, reason: 'unsigned' });
    expect(verifyControlMessage(mk, 'pg-egress:reload', signContent(key, 4242, 'pg-egress:reload', payload), null)).toEqual({ ok: false, reason: 'not_transactional' });
  });

  it("an unsigned message of a transaction committed before the key existed is an earlier version's", () => {
    expect(verifyControlMessage(mk, 'pg-egress:reload', payload, { xid: 1, finalLsn: 999n })).toEqual({ ok: true, payload, legacy: true });
    // A forged MAC is still checked there.
    expect(verifyControlMessage(mk, 'pg-egress:reload', signContent(Buffer.alloc(32), 1, 'pg-egress:reload', payload), { xid: 1, finalLsn: 999n })).toEqual({ ok: false, reason: 'bad_mac' });
  });
});

describe('ForgedMessages', () => {
  it('counts every one by prefix, logs once per source, lumps unknown prefixes together', () => {
    const f = new ForgedMessages(() => 0);
    const n = (prefix: string, xid: number | null) => f.note({ prefix, reason: 'unsigned', xid, lsn: null, claim: '' });
    expect(n('pg-egress:reload', 1)).not.toBeNull();
    expect(n('pg-egress:reload', 1)).toBeNull();
    expect(n('pg-egress:ddl', 1)).not.toBeNull();
    expect(n('pg-egress:x1', 2)).not.toBeNull();
    expect(n('pg-egress:x2', 2)).toBeNull();
    expect(Object.fromEntries(f.counts)).toEqual({ 'pg-egress:reload': 2, 'pg-egress:ddl': 1, 'pg-egress:other': 2 });
  });

  it('at most 20 lines a minute; the next one says how many were left out', () => {
    let now = 0;
    const f = new ForgedMessages(() => now);
    const lines = Array.from({ length: 50 }, (_, i) => f.note({ prefix: 'pg-egress:reload', reason: 'bad_mac', xid: i, lsn: null, claim: '' }));
    expect(lines.filter(Boolean)).toHaveLength(20);
    now = 61_000;
    expect(f.note({ prefix: 'pg-egress:reload', reason: 'bad_mac', xid: 999, lsn: null, claim: '' })?.suppressed).toBe(30);
    expect(f.counts.get('pg-egress:reload')).toBe(51);
  });

  it('describes what a payload claims on one line, without trusting it', () => {
    expect(describeClaim(payload)).toBe('table "public.big2", reason "marker"');
    expect(describeClaim(Buffer.from('{"schema":"a\\nb","table":"t","dropped":true,"command_tag":"DROP TABLE"}'))).toBe('table "a\\nb.t", command "DROP TABLE", dropped');
    expect(describeClaim(Buffer.from('not json'))).toBe('8 bytes, not JSON');
    expect(describeClaim(signContent(key, 1, 'p', payload))).toBe('table "public.big2", reason "marker"');
  });
});
