/**
 * Names PostgreSQL accepts (any character but NUL, up to 63 bytes) that a careless tool gets
 * wrong: control characters, path and percent characters, dots, quotes, glob and regex syntax,
 * multi-byte and astral characters. Shared by the unit test of the selection (Node side against
 * a reference matcher) and the integration tests (SQL side on a real server, end to end).
 */
import { splitQualified } from '../../src/config/patterns.js';

export const HOSTILE_TABLES: string[] = [
  'line\nbreak',
  'tab\there',
  'cr\rlf',
  'per%cent',
  'per%25cent',
  'sl/ash',
  '..',
  '.',
  'dot.ted',
  'quo"te',
  "apo'strophe",
  'back\\slash',
  'spa ce',
  ' lead',
  'U&"x"',
  'a*b',
  '?',
  '[x]',
  '^$',
  '(g)|{1}',
  'MiXeD',
  'c1\u0085nel',
  '😀',
  'ü' + 'テ'.repeat(20) + 'x', // 2 + 60 + 1 = 63 bytes
];

/** Schemas: one ordinary, one hostile (and one that would collide with `_owner.json`). */
export const HOSTILE_SCHEMAS = ['public', 'we\nird.sch/ema', '_owner'];

/** Pattern sets (include, exclude) over those names. */
export const PATTERN_SETS: { include: string[]; exclude: string[] }[] = [
  { include: ['public.*'], exclude: [] },
  { include: ['*.*'], exclude: ['public.*e*'] },
  { include: ['public.?'], exclude: [] },
  { include: ['public.??'], exclude: ['public.".."'] },
  { include: ['public.*\n*', 'public.*\t*'], exclude: [] },
  { include: ['"we\nird.sch/ema".*', '_owner.*'], exclude: ['*.*\u0085*'] },
  { include: ['public."a*b"', 'public."?"', 'public."[x]"', 'public."^$"', 'public."(g)|{1}"', 'public."quo""te"'], exclude: [] },
  { include: ['public.U&"line\\000Abreak"', 'public.per%*', 'public.sl/*', 'public.back\\*'], exclude: ['public.*25*'] },
  { include: ['public.ü*x', 'public.😀', 'public.?????????????????????x'], exclude: [] },
  { include: ['PUBLIC.*', 'public.mixed'], exclude: [] },
];

/** An independent glob matcher over code points (`*` any run, `?` one; quoted parts literal). */
function globMatch(pattern: string, literal: boolean, name: string): boolean {
  const p = [...pattern];
  const s = [...name];
  const memo = new Map<string, boolean>();
  const go = (i: number, j: number): boolean => {
    const k = `${i},${j}`;
    const hit = memo.get(k);
    if (hit !== undefined) return hit;
    let r: boolean;
    if (i === p.length) r = j === s.length;
    else if (!literal && p[i] === '*') r = go(i + 1, j) || (j < s.length && go(i, j + 1));
    else if (!literal && p[i] === '?') r = j < s.length && go(i + 1, j + 1);
    else r = j < s.length && p[i] === s[j] && go(i + 1, j + 1);
    memo.set(k, r);
    return r;
  };
  return go(0, 0);
}

/** What the selection should be: include matches and no exclude matches. */
export function referenceSelected(set: { include: string[]; exclude: string[] }, schema: string, table: string): boolean {
  const hit = (text: string) => {
    const q = splitQualified(text);
    if (!q) throw new Error(`bad pattern ${JSON.stringify(text)}`);
    return globMatch(q[0], q[2], schema) && globMatch(q[1], q[3], table);
  };
  return set.include.some(hit) && !set.exclude.some(hit);
}
