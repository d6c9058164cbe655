/**
 * What the stream confirms and when it answers the walsender (src/wal/confirm-policy.ts), without
 * a database. The case that matters: a keepalive whose answer would confirm nothing new is not
 * answered (the walsender pings after every reply while our position is behind its own).
 */
import { describe, expect, it } from 'vitest';
import { answerKeepalive, confirmTarget, frameWaitMs, type ConfirmState } from '../../src/wal/confirm-policy.js';

const base: ConfirmState = { durable: 100n, idle: true, idleWalEnd: 100n, recordLimit: 100n, confirmed: 100n };

describe('confirm policy', () => {
  it('confirms what is registered, and when idle the server WAL end as far as _confirmed.json allows', () => {
    expect(confirmTarget({ ...base, durable: 150n })).toBe(150n);
    expect(confirmTarget({ ...base, idleWalEnd: 300n, recordLimit: 200n })).toBe(200n);
    expect(confirmTarget({ ...base, idleWalEnd: 300n, recordLimit: 400n })).toBe(300n);
    // Not idle: only what is registered.
    expect(confirmTarget({ ...base, idle: false, idleWalEnd: 300n, recordLimit: 400n })).toBe(100n);
    // Never backwards.
    expect(confirmTarget({ ...base, durable: 50n, idleWalEnd: 50n, recordLimit: 50n, confirmed: 100n })).toBe(100n);
  });

  it('answers a keepalive only when asked or when the answer confirms more than the last one', () => {
    // WAL past _confirmed.json's limit: the answer would repeat the last position: no answer.
    const capped = { ...base, idleWalEnd: 300n, recordLimit: 100n, confirmed: 100n };
    expect(answerKeepalive(false, capped)).toBe(false);
    expect(answerKeepalive(true, capped)).toBe(true);
    // The limit moved (the record was written): the answer confirms more.
    expect(answerKeepalive(false, { ...capped, recordLimit: 300n })).toBe(true);
    // A flush registered more.
    expect(answerKeepalive(false, { ...base, durable: 120n })).toBe(true);
    // Nothing new at all.
    expect(answerKeepalive(false, base)).toBe(false);
  });

  it('waits for a frame no longer than until _confirmed.json may be written, when idle WAL waits for it', () => {
    const capped = { ...base, idleWalEnd: 300n, recordLimit: 100n };
    expect(frameWaitMs(1000, capped, 40)).toBe(41);
    expect(frameWaitMs(20, capped, 40)).toBe(20);
    expect(frameWaitMs(1000, capped, 0)).toBe(1);
    // Nothing waits for the record: the flush policy's wait.
    expect(frameWaitMs(1000, base, 40)).toBe(1000);
    expect(frameWaitMs(1000, { ...capped, idle: false }, 40)).toBe(1000);
  });
});
