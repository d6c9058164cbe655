/**
 * partitions.yml (SPEC §3 "Partitioned tables"): a root's leaves at the end of a window and the
 * membership changes committed in it, each at its commit LSN. Pure: rendering, parsing (for
 * readers and tests) and the replay that tells which leaves made up the root as of an LSN.
 *
 *     root: {schema: public, name: events, oid: 16400}
 *     partitions:
 *       - {schema: public, name: events_2026_01, oid: 16410, parent: {schema: public, name: events}, bounds: "FOR VALUES ..."}
 *     changes:
 *       - {lsn: 000000000177B128, kind: attach, schema: public, name: events_2026_03, oid: 16420}
 *     lsn: {start: 000000000177B128, end: 000000000177B128}
 *     generated_at: 2026-11-22T10:05:00.000000Z
 */
import { lsnHex, type Lsn } from '../lsn.js';
import { isoMicros, yamlScalar } from './documents.js';

export type MembershipKind = 'initial' | 'create' | 'attach' | 'detach' | 'drop';
export const MEMBERSHIP_KINDS: readonly MembershipKind[] = ['initial', 'create', 'attach', 'detach', 'drop'];

export interface TableRef {
  schema: string;
  name: string;
  oid: number;
}

export interface LeafDoc extends TableRef {
  parent: { schema: string; name: string };
  /** pg_get_expr(relpartbound): `FOR VALUES FROM (...) TO (...)`, `FOR VALUES IN (...)`, `DEFAULT`. */
  bounds: string;
}

export interface MembershipChange extends TableRef {
  /** Commit LSN of the transaction that made the change, 16 upper-case hex digits (as `_lsn`). */
  lsn: string;
  kind: MembershipKind;
}

export interface PartitionsDoc {
  root: TableRef;
  /** The leaves at the end of the window, sorted by schema, name. */
  partitions: LeafDoc[];
  /** In LSN order. */
  changes: MembershipChange[];
  lsnStart: string | null;
  lsnEnd: string | null;
  generatedAt: string;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const byName = (
  a: { schema: string; name: string },
  b: { schema: string; name: string },
): number => cmp(a.schema, b.schema) || cmp(a.name, b.name);

/** The document of one window: the leaves at its end, its changes in LSN order. */
export function partitionsDoc(root: TableRef, partitions: LeafDoc[], changes: MembershipChange[], generatedAt: Date): PartitionsDoc {
  const ordered = changes.map((c, i) => ({ c, i })).sort((a, b) => cmp(a.c.lsn, b.c.lsn) || a.i - b.i).map((x) => x.c);
  return {
    root,
    partitions: [...partitions].sort(byName),
    changes: ordered,
    lsnStart: ordered.length ? ordered[0].lsn : null,
    lsnEnd: ordered.length ? ordered[ordered.length - 1].lsn : null,
    generatedAt: isoMicros(generatedAt),
  };
}

const ref = (t: TableRef): string => `schema: ${yamlScalar(t.schema)}, name: ${yamlScalar(t.name)}, oid: ${t.oid}`;

export function partitionsYml(d: PartitionsDoc): string {
  const lines = [`root: {${ref(d.root)}}`];
  lines.push(d.partitions.length ? 'partitions:' : 'partitions: []');
  for (const p of d.partitions) {
    lines.push(`  - {${ref(p)}, parent: {schema: ${yamlScalar(p.parent.schema)}, name: ${yamlScalar(p.parent.name)}}, bounds: ${JSON.stringify(p.bounds)}}`);
  }
  lines.push(d.changes.length ? 'changes:' : 'changes: []');
  for (const c of d.changes) lines.push(`  - {lsn: ${c.lsn}, kind: ${c.kind}, ${ref(c)}}`);
  lines.push(`lsn: {start: ${d.lsnStart ?? 'null'}, end: ${d.lsnEnd ?? 'null'}}`, `generated_at: ${d.generatedAt}`);
  return lines.join('\n') + '\n';
}

/** A change's `lsn` field: the commit LSN as 16 upper-case hex digits. */
export const changeLsn = (l: Lsn): string => lsnHex(l);

// --- parsing: the subset of YAML that partitionsYml writes (flow mappings, one per line) ---

/** Splits a flow mapping `{a: x, b: {c: y}, d: "q, r"}` into its top-level key/value texts. */
function flowEntries(text: string): Map<string, string> {
  const s = text.trim();
  if (!s.startsWith('{') || !s.endsWith('}')) throw new Error(`partitions.yml: expected a {...} mapping, got ${s}`);
  const body = s.slice(1, -1);
  const out = new Map<string, string>();
  let depth = 0;
  let inStr = false;
  let start = 0;
  const push = (end: number) => {
    const part = body.slice(start, end).trim();
    if (!part) return;
    const colon = keyColon(part);
    out.set(part.slice(0, colon).trim(), part.slice(colon + 1).trim());
  };
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
    } else if (ch === '"') inStr = true;
    else if (ch === '{') depth++;
    else if (ch === '}') depth--;
    else if (ch === ',' && depth === 0) {
      push(i);
      start = i + 1;
    }
  }
  push(body.length);
  return out;
}

/** The colon after a (plain or quoted) key. */
function keyColon(part: string): number {
  return part.startsWith('"') ? part.indexOf(':', closingQuote(part)) : part.indexOf(':');
}

function closingQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '"') return i;
  }
  throw new Error(`partitions.yml: unterminated string in ${s}`);
}

const scalar = (v: string | undefined): string => {
  if (v === undefined) throw new Error('partitions.yml: missing field');
  return v.startsWith('"') ? (JSON.parse(v) as string) : v;
};

function parseRef(m: Map<string, string>): TableRef {
  return { schema: scalar(m.get('schema')), name: scalar(m.get('name')), oid: Number(scalar(m.get('oid'))) };
}

export function parsePartitionsYml(text: string): PartitionsDoc {
  let section: 'partitions' | 'changes' | null = null;
  const doc: PartitionsDoc = { root: { schema: '', name: '', oid: 0 }, partitions: [], changes: [], lsnStart: null, lsnEnd: null, generatedAt: '' };
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (line.startsWith('  - ')) {
      const m = flowEntries(line.slice(4));
      if (section === 'partitions') {
        const parent = flowEntries(m.get('parent') ?? '{}');
        doc.partitions.push({ ...parseRef(m), parent: { schema: scalar(parent.get('schema')), name: scalar(parent.get('name')) }, bounds: scalar(m.get('bounds')) });
      } else if (section === 'changes') {
        const kind = scalar(m.get('kind')) as MembershipKind;
        if (!MEMBERSHIP_KINDS.includes(kind)) throw new Error(`partitions.yml: unknown change kind ${kind}`);
        doc.changes.push({ lsn: scalar(m.get('lsn')), kind, ...parseRef(m) });
      } else {
        throw new Error(`partitions.yml: list item outside a list: ${line}`);
      }
      continue;
    }
    const colon = line.indexOf(':');
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    section = null;
    if (key === 'root') doc.root = parseRef(flowEntries(value));
    else if (key === 'partitions' || key === 'changes') section = value === '[]' ? null : key;
    else if (key === 'lsn') {
      const m = flowEntries(value);
      doc.lsnStart = m.get('start') === 'null' ? null : scalar(m.get('start'));
      doc.lsnEnd = m.get('end') === 'null' ? null : scalar(m.get('end'));
    } else if (key === 'generated_at') doc.generatedAt = value;
  }
  return doc;
}

/**
 * The root's leaves as of LSN `asOf` (16 hex digits; null = at the end), replaying the changes of
 * every partitions.yml of the root in window order. A change committed at LSN c counts for
 * `asOf` > c, as the rows of that transaction do (SPEC §6: `_lsn` < L). `initial` changes describe
 * the root at its first appearance and count from the start. Leaves are keyed by oid (a renamed
 * leaf is the same leaf); the value is the leaf's name in its latest record.
 */
export function membershipAt(docs: PartitionsDoc[], asOf: string | null = null): Map<number, TableRef> {
  const changes = docs.flatMap((d) => d.changes).map((c, i) => ({ c, i }));
  changes.sort((a, b) => cmp(a.c.lsn, b.c.lsn) || a.i - b.i);
  const leaves = new Map<number, TableRef>();
  for (const { c } of changes) {
    if (asOf !== null && c.kind !== 'initial' && !(c.lsn < asOf)) continue;
    if (c.kind === 'detach' || c.kind === 'drop') leaves.delete(c.oid);
    else leaves.set(c.oid, { schema: c.schema, name: c.name, oid: c.oid });
  }
  return leaves;
}
