/**
 * The configuration documentation cannot drift from the schema: every key the config parser
 * accepts is in the README's reference table and in cdc.example.yml, and the example parses.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { configKeys, parseConfig } from '../../src/config/index.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const example = readFileSync(new URL('../../cdc.example.yml', import.meta.url), 'utf8');

describe('configuration docs', () => {
  const keys = configKeys();
  it('the README reference names every key', () => {
    const table = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('\n## ', readme.indexOf('## Configuration reference') + 5));
    for (const k of keys) {
      const [head, ...rest] = k.split('.');
      const last = rest.at(-1) ?? head;
      // A row names the full key, or its section and the key as `.key` / `/ key`.
      const found = table.includes(`\`${k}\``) || (table.includes(`\`${k.split('.').slice(0, -1).join('.')}.`) && (table.includes(`.${last}\``) || table.includes(`\`${k.split('.').slice(0, -1).join('.')}.${last}\``))) || table.includes(`/ \`${k}\``);
      expect(found, k).toBe(true);
    }
    expect(keys.length).toBeGreaterThan(30);
  });
  it('cdc.example.yml shows every key (set or commented) and parses', () => {
    for (const k of keys) {
      const last = k.split('.').at(-1)!;
      expect(new RegExp(`(^|[\\s{,#])${last}:`, 'm').test(example), k).toBe(true);
    }
    expect(() => parseConfig(example, { env: {} })).not.toThrow();
  });
});
