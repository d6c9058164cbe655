/**
 * The pure parts of failover and out-of-band detection: what "synced" means from the primary
 * (src/source/failover.ts), and the start-up decision on the slot's position (src/source/slot-check.ts).
 */
import { describe, expect, it } from 'vitest';
import { evaluateSlotHealth, parseSlotList, type SlotHealthInput } from '../../src/source/failover.js';
import { checkSlotPosition } from '../../src/source/slot-check.js';

const base: SlotHealthInput = {
  major: 18,
  failover: true,
  confirmedLsn: '0/3000000',
  synchronizedStandbySlots: 'sb1',
  standbySlots: [{ name: 'sb1', type: 'physical', active: true, restartLsn: '0/3000100' }],
  slotsyncWorkers: 1,
  physicalStandbys: 1,
  wanted: true,
};

describe('slot health', () => {
  it('parses synchronized_standby_slots', () => {
    expect(parseSlotList('')).toEqual([]);
    expect(parseSlotList(' a, "b" ,c')).toEqual(['a', 'b', 'c']);
  });
  it('is synced only when every condition holds', () => {
    expect(evaluateSlotHealth(base)).toMatchObject({ synced: true, warnings: [], standbySlotsSet: true });
    expect(evaluateSlotHealth({ ...base, standbySlots: [{ ...base.standbySlots[0], restartLsn: '0/2FFFFFF' }] }).synced).toBe(false);
    expect(evaluateSlotHealth({ ...base, standbySlots: [{ ...base.standbySlots[0], active: false }] })).toMatchObject({ synced: false, warnings: [expect.stringMatching(/no standby streams from physical slot "sb1"/)] });
    expect(evaluateSlotHealth({ ...base, slotsyncWorkers: 0 })).toMatchObject({ synced: false, warnings: [expect.stringMatching(/sync_replication_slots = on/)] });
    expect(evaluateSlotHealth({ ...base, failover: false }).synced).toBe(false);
  });
  it('warns when synchronized_standby_slots is not set on the primary', () => {
    const h = evaluateSlotHealth({ ...base, synchronizedStandbySlots: '', standbySlots: [] });
    expect(h.synced).toBe(false);
    expect(h.standbySlotsSet).toBe(false);
    expect(h.warnings.join()).toMatch(/synchronized_standby_slots is not set on the primary: .*export transactions that a failover then loses/);
    // A single server with no standby at all: nothing to warn about.
    expect(evaluateSlotHealth({ ...base, synchronizedStandbySlots: '', standbySlots: [], slotsyncWorkers: 0, physicalStandbys: 0 }).warnings).toEqual([]);
  });
  it('says nothing about failover before PostgreSQL 17', () => {
    expect(evaluateSlotHealth({ ...base, major: 16 })).toMatchObject({ supported: false, failover: null, synced: false, warnings: [] });
  });
});

describe('slot position at start', () => {
  const rec = { slot: 's', systemIdentifier: '1', pairs: [{ limit: 1000n, registeredAt: 500n }] };
  it('a slot at or behind the registry is fine (behind: the registry is ahead, the server skips to it)', () => {
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 500n, registered: 500n, record: null, tracking: true })).toEqual({ kind: 'ok', registryAhead: false });
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 400n, registered: 500n, record: null, tracking: true })).toEqual({ kind: 'ok', registryAhead: true });
  });
  it('a slot within what the daemon confirmed while idle is fine', () => {
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 1000n, registered: 600n, record: rec, tracking: true }).kind).toBe('ok');
  });
  it('a slot past what the daemon registered or confirmed is a slot_moved gap', () => {
    const c = checkSlotPosition({ slot: 's', slotConfirmed: 1001n, registered: 600n, record: rec, tracking: true });
    expect(c).toMatchObject({ kind: 'gap', gapKind: 'slot_moved', from: 600n, to: 1001n });
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 700n, registered: 600n, record: null, tracking: true })).toMatchObject({ kind: 'gap', gapKind: 'slot_moved' });
  });
  it('a registry behind what was registered (files not adopted) is a registry_behind gap', () => {
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 900n, registered: 400n, record: rec, tracking: true })).toMatchObject({ kind: 'gap', gapKind: 'registry_behind', from: 400n, to: 900n });
  });
  it('an older idle confirmation explains a slot copy for a registry that lacks the newest registrations', () => {
    const older = { ...rec, pairs: [{ limit: 1200n, registeredAt: 900n }, { limit: 800n, registeredAt: 300n }] };
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 700n, registered: 300n, record: older, tracking: true }).kind).toBe('ok');
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 850n, registered: 300n, record: older, tracking: true })).toMatchObject({ kind: 'gap', gapKind: 'registry_behind' });
  });
  it('before the daemon kept records (an upgrade), nothing to compare with', () => {
    expect(checkSlotPosition({ slot: 's', slotConfirmed: 900n, registered: 400n, record: null, tracking: false })).toEqual({ kind: 'untracked' });
  });
});

describe('confirm record', () => {
  it('keeps earlier limits with lower registered LSNs, and starts again from the slot at reset', async () => {
    const { mkdtempSync } = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { ConfirmRecord, readConfirmRecord } = await import('../../src/output/confirm-record.js');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-confirm-'));
    const r = new ConfirmRecord(dir, 's', '1', 0o600, null);
    await r.advance(100n, 50n);
    await r.advance(150n, 50n);
    await r.advance(300n, 200n);
    await r.advance(250n, 200n); // never lower
    expect(r.limit).toBe(300n);
    expect((await readConfirmRecord(dir, 's', '1'))?.pairs).toEqual([
      { limit: 300n, registeredAt: 200n },
      { limit: 150n, registeredAt: 50n },
    ]);
    expect(await readConfirmRecord(dir, 'other', '1')).toBeNull();
    await r.reset(120n, 200n);
    expect((await readConfirmRecord(dir, 's', '1'))?.pairs).toEqual([{ limit: 120n, registeredAt: 200n }]);
  });
});
