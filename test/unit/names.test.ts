/**
 * Every name PostgreSQL accepts works on the Node side: the selection (tables.include/exclude)
 * agrees with an independent glob matcher for hostile names (a newline, a tab, `%`, `/`, `..`,
 * quotes, regex syntax, astral and 63-byte names), the folder splits back into the name, and
 * what `status` prints has no control character and reads back through `reload`'s parser. The
 * SQL side (`cdc_registry.matches` on a real server) is compared in test/integration/names.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { matchTable, parseConfig } from '../../src/config/index.js';
import { displayTable, printable, splitQualified } from '../../src/config/patterns.js';
import { parseTableFolder, tableFolder } from '../../src/output/layout.js';
import { HOSTILE_SCHEMAS, HOSTILE_TABLES, PATTERN_SETS, referenceSelected } from '../helpers/hostile-names.js';

const configFor = (set: { include: string[]; exclude: string[] }) =>
  parseConfig(`source:\n  url: postgres://egress@db/shop\ntables: ${JSON.stringify(set)}\n`, { env: {}, baseDir: '/tmp' });

describe('hostile names', () => {
  it('selects exactly what an independent glob matcher selects', () => {
    let selected = 0;
    for (const set of PATTERN_SETS) {
      const cfg = configFor(set);
      for (const schema of HOSTILE_SCHEMAS) {
        for (const table of HOSTILE_TABLES) {
          const want = referenceSelected(set, schema, table);
          expect(matchTable(cfg, schema, table), `${JSON.stringify(set)} ${JSON.stringify(schema)}.${JSON.stringify(table)}`).toBe(want);
          if (want) selected++;
        }
      }
    }
    // The sets do select hostile names (the comparison is not vacuous).
    expect(selected).toBeGreaterThan(HOSTILE_TABLES.length * 2);
    expect(matchTable(configFor({ include: ['public.*'], exclude: [] }), 'public', 'line\nbreak')).toBe(true);
    expect(matchTable(configFor({ include: ['public.?'], exclude: [] }), 'public', '😀')).toBe(true);
  });

  it('gives each name a folder that splits back into it and collides with nothing of ours', () => {
    const folders = new Set<string>();
    for (const schema of HOSTILE_SCHEMAS) {
      for (const table of HOSTILE_TABLES) {
        const f = tableFolder(schema, table);
        expect(f).not.toMatch(/[/\n\r\t\0\u0085]/);
        expect(f.startsWith('_')).toBe(false);
        expect(f.split('.')).toHaveLength(2);
        expect(parseTableFolder(f)).toEqual({ schema, table });
        folders.add(f);
      }
    }
    expect(folders.size).toBe(HOSTILE_SCHEMAS.length * HOSTILE_TABLES.length);
    expect(tableFolder('_owner', 'json')).toBe('%5Fowner.json');
    expect(tableFolder('public', '..')).toBe('public.%2E%2E');
  });

  it('prints names without control characters, in a form reload reads back', () => {
    for (const schema of HOSTILE_SCHEMAS) {
      for (const table of HOSTILE_TABLES) {
        const shown = displayTable(schema, table);
        // eslint-disable-next-line no-control-regex -- no control character may be printed
        expect(shown).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
        expect(splitQualified(shown)?.slice(0, 2)).toEqual([schema, table]);
      }
    }
    expect(displayTable('public', 'orders')).toBe('public.orders');
    expect(displayTable('public', 'line\nbreak')).toBe('public.U&"line\\000Abreak"');
    expect(displayTable('public', 'dot.ted')).toBe('public."dot.ted"');
    expect(printable('a\nb\u202ec')).toBe('a\\u000Ab\\u202Ec');
  });
});
