import { describe, expect, it } from 'vitest';
import { alignWindow, flushName, parseTableFolder, tableFolder, windowName } from '../../src/output/layout.js';
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

  it('names windows by their UTC start, with -NNN for later flushes of a window', () => {
    const t = Date.UTC(2026, 10, 22, 10, 7, 31, 250);
    const w = alignWindow(t, 5 * 60_000);
    expect(windowName(w)).toBe('20261122T100500Z');
    expect(flushName(w, 0)).toBe('20261122T100500Z');
    expect(flushName(w, 1)).toBe('20261122T100500Z-001');
    expect([flushName(w, 2), flushName(w, 0), flushName(w, 1)].sort()).toEqual([flushName(w, 0), flushName(w, 1), flushName(w, 2)]);
  });

  it('formats LSNs both ways', () => {
    const l = parseLsn('16/B374D848');
    expect(formatLsn(l)).toBe('16/B374D848');
    expect(lsnHex(l)).toBe('00000016B374D848');
    expect(lsnHex(parseLsn('0/177B128'))).toBe('000000000177B128');
  });
});
