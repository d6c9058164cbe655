import { describe, expect, it } from 'vitest';
import { alignWindow, encodeNamePart, flushName, isFlushFolder, parseFlushName, parseTableFolder, tableFolder, windowName } from '../../src/output/layout.js';
import { formatLsn, lsnHex, parseLsn } from '../../src/lsn.js';

describe('output layout', () => {
  it('encodes names so the folder splits back into schema and table', () => {
    const cases: [string, string][] = [
      ['public', 'orders'],
      ['My Schema', 'Weird "Name", x'],
      ['a.b', 'c/d%e'],
      ['tab\there', 'nl\nname'],
      ['ünï', 'テーブル'],
    ];
    for (const [s, t] of cases) {
      const folder = tableFolder(s, t);
      expect(folder.split('.').length).toBe(2);
      expect(folder).not.toMatch(/[/\n\t\0]/);
      expect(parseTableFolder(folder)).toEqual({ schema: s, table: t });
    }
    expect(tableFolder('a.b', 'c/d%e')).toBe('a%2Eb.c%2Fd%25e');
    expect(tableFolder('My Schema', 'Weird "Name", x')).toBe('My Schema.Weird "Name", x');
  });

  it('encodes exactly %, /, ., C0, DEL and C1, alone or among other characters (the plain-name shortcut included)', () => {
    const encoded = (c: number) => c === 0x25 || c === 0x2f || c === 0x2e || c < 0x20 || (c >= 0x7f && c <= 0x9f);
    const points = [...Array.from({ length: 0x300 }, (_, c) => c), 0xfffd, 0x1f600, 0x10ffff];
    for (const c of points) {
      const ch = String.fromCodePoint(c);
      const want = encoded(c) ? '%' + c.toString(16).toUpperCase().padStart(2, '0') : ch;
      expect(encodeNamePart(ch)).toBe(want);
      expect(encodeNamePart(`a${ch}b`)).toBe(`a${want}b`);
    }
  });

  it('names windows by their UTC start, with -NNN for later flushes of a window', () => {
    const t = Date.UTC(2026, 10, 22, 10, 7, 31, 250);
    const w = alignWindow(t, 5 * 60_000);
    expect(windowName(w)).toBe('20261122T100500Z');
    expect(flushName(w, 0)).toBe('20261122T100500Z');
    expect(flushName(w, 1)).toBe('20261122T100500Z-001');
    expect([flushName(w, 2), flushName(w, 0), flushName(w, 1)].sort()).toEqual([flushName(w, 0), flushName(w, 1), flushName(w, 2)]);
  });

  it('keeps flush names of a window in flush order past the 999th, and recognises exactly them', () => {
    const w = Date.UTC(2026, 10, 22, 10, 5);
    expect(flushName(w, 999)).toBe('20261122T100500Z-999');
    expect(flushName(w, 1000)).toBe('20261122T100500Z-999-000001000');
    expect(flushName(w, 1_000_000)).toBe('20261122T100500Z-999-001000000');
    const seqs = [...Array.from({ length: 1501 }, (_, i) => i), 1_000_000, 999_999_999];
    const names = seqs.map((q) => flushName(w, q));
    // Shuffled, then sorted as plain strings (code units, as `ls` in the C locale and S3 listings).
    const shuffled = names.map((n, i) => [n, (i * 7919) % names.length] as const).sort((a, b) => a[1] - b[1]).map(([n]) => n);
    expect([...shuffled].sort()).toEqual(names);
    expect(new Set(names).size).toBe(names.length);
    for (const [i, n] of names.entries()) {
      expect(isFlushFolder(n)).toBe(true);
      expect(parseFlushName(n)).toEqual({ startMs: w, seq: seqs[i] });
    }
    // The next window's names all sort after this window's.
    expect(flushName(w + 300_000, 0) > flushName(w, 999_999_999)).toBe(true);
    expect(() => flushName(w, 1_000_000_000)).toThrow(RangeError);
    expect(() => flushName(w, -1)).toThrow(RangeError);
    expect(() => flushName(w, 1.5)).toThrow(RangeError);
    for (const junk of [
      '',
      '20261122T100500',
      '20261122T100500Z-',
      '20261122T100500Z-000',
      '20261122T100500Z-01',
      '20261122T100500Z-0001',
      '20261122T100500Z-1000',
      '20261122T100500Z-999-',
      '20261122T100500Z-999-000000999',
      '20261122T100500Z-999-00001000',
      '20261122T100500Z-999-0000010000',
      '20261122T100500Z-998-000001000',
      '20261122T100500Z-999-000001000-001',
      '20261122T100500Z.tmp',
      '20261122t100500z',
      '20261322T100500Z',
      '20261122T250500Z',
      '2026-11-22T10:05:00Z',
      ' 20261122T100500Z',
      '_batches',
      '_tmp',
      'public.orders',
    ]) {
      expect(isFlushFolder(junk), junk).toBe(false);
    }
  });

  it('formats LSNs both ways', () => {
    const l = parseLsn('16/B374D848');
    expect(formatLsn(l)).toBe('16/B374D848');
    expect(lsnHex(l)).toBe('00000016B374D848');
    expect(lsnHex(parseLsn('0/177B128'))).toBe('000000000177B128');
  });
});
