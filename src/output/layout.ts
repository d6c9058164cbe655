/**
 * Output layout names (SPEC §3): `<schema>.<table>/<window>/streaming.csv.gz` etc.
 */

/** A character encodeNamePart encodes (the same set as its loop's test, as UTF-16 code units). */
// eslint-disable-next-line no-control-regex
const NEEDS_ENCODING = /[%/.\u0000-\u001f\u007f-\u009f]/;

/**
 * Schema and table names are used as they are, with `%`, `/`, `.`, NUL and control characters
 * (C0, DEL, C1) percent-encoded, so `<schema>.<table>` splits back at its only literal dot.
 */
export function encodeNamePart(name: string): string {
  // Most names need nothing: returned as they are without the walk below (an export of 500
  // tables named its folders in ~6 ms of one cold start here, ~0.1 ms this way).
  if (!NEEDS_ENCODING.test(name)) return name;
  let out = '';
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (ch === '%' || ch === '/' || ch === '.' || c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      out += '%' + c.toString(16).toUpperCase().padStart(2, '0');
    } else {
      out += ch;
    }
  }
  return out;
}

export function decodeNamePart(part: string): string {
  return part.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/**
 * A leading `_` of the schema is encoded too (`%5F`): names starting with `_` are pg-egress's own
 * (`_batches/`, `_tmp/`, `_owner.json`, `_status.json`), and a table `"_owner".json` must not
 * become `_owner.json`.
 */
export function tableFolder(schema: string, table: string): string {
  const s = encodeNamePart(schema);
  return `${s.startsWith('_') ? '%5F' + s.slice(1) : s}.${encodeNamePart(table)}`;
}

export function parseTableFolder(folder: string): { schema: string; table: string } | null {
  const dot = folder.indexOf('.');
  if (dot < 0 || folder.indexOf('.', dot + 1) >= 0) return null;
  return { schema: decodeNamePart(folder.slice(0, dot)), table: decodeNamePart(folder.slice(dot + 1)) };
}

/** `YYYYMMDDTHHMMSSZ` of a UTC instant (ms since the Unix epoch). */
export function windowName(startMs: number): string {
  const iso = new Date(startMs).toISOString(); // 2026-11-22T10:05:00.000Z
  return iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + 'T' + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + 'Z';
}

/** Flushes of one window that fit the `-NNN` form of SPEC §3 (`-001` .. `-999`). */
const SHORT_SEQ_MAX = 999;
/** The long form `-999-NNNNNNNNN` holds up to this sequence number. */
const LONG_SEQ_MAX = 999_999_999;

/**
 * The name of the n-th flush of a window: the first (seq 0) keeps the window name, later ones add
 * `-NNN` (`-001` .. `-999`), and from the 1000th on `-999-` and the number in 9 digits
 * (`20261122T100500Z-999-000001000`). All names of a window sort in flush order as plain strings:
 * a name sorts before any name it is a prefix of, so `-999` < `-999-000001000` < `-999-000001001`.
 */
export function flushName(startMs: number, seq: number): string {
  if (!Number.isSafeInteger(seq) || seq < 0 || seq > LONG_SEQ_MAX) throw new RangeError(`flush sequence number out of range: ${seq}`);
  const base = windowName(startMs);
  if (seq === 0) return base;
  if (seq <= SHORT_SEQ_MAX) return `${base}-${String(seq).padStart(3, '0')}`;
  return `${base}-${SHORT_SEQ_MAX}-${String(seq).padStart(9, '0')}`;
}

const FLUSH_NAME = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-(\d{3})|-999-(\d{9}))?$/;

/** The window start and sequence number of a name `flushName` makes, or null for anything else. */
export function parseFlushName(name: string): { startMs: number; seq: number } | null {
  const m = FLUSH_NAME.exec(name);
  if (!m) return null;
  const startMs = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  const seq = m[7] !== undefined ? Number(m[7]) : m[8] !== undefined ? Number(m[8]) : 0;
  // Exactly the names flushName makes: a real UTC time, no `-000`, no long form below 1000.
  if (Number.isNaN(startMs) || (m[7] !== undefined && seq === 0) || (m[8] !== undefined && seq <= SHORT_SEQ_MAX)) return null;
  return flushName(startMs, seq) === name ? { startMs, seq } : null;
}

/** Whether a folder name is a window folder: `YYYYMMDDTHHMMSSZ`, `-NNN` or `-999-NNNNNNNNN` after it. */
export const isFlushFolder = (name: string): boolean => parseFlushName(name) !== null;

export const alignWindow = (ms: number, intervalMs: number): number => Math.floor(ms / intervalMs) * intervalMs;

export const FILES = {
  streaming: 'streaming.csv.gz',
  schema: 'schema.yml',
  ddl: 'ddl.sql',
  manifest: 'manifest.json',
  partitions: 'partitions.yml',
  fullReload: 'full_reload.csv.gz',
} as const;

/** Part `index` (0-based) of a reload exported in several ctid chunks: `full_reload.00001.csv.gz`, … */
export const reloadPartName = (index: number): string => `full_reload.${String(index + 1).padStart(5, '0')}.csv.gz`;

export const BATCHES_DIR = '_batches';
