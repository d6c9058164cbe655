/**
 * Output layout names (SPEC §3): `<schema>.<table>/<window>/streaming.csv.gz` etc.
 */

/**
 * Schema and table names are used as they are, with `%`, `/`, `.`, NUL and control characters
 * percent-encoded, so `<schema>.<table>` splits back at its only literal dot.
 */
export function encodeNamePart(name: string): string {
  let out = '';
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (ch === '%' || ch === '/' || ch === '.' || c < 0x20 || c === 0x7f) {
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

export function tableFolder(schema: string, table: string): string {
  return `${encodeNamePart(schema)}.${encodeNamePart(table)}`;
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

/** The name of the n-th flush of a window: the first keeps the window name, later ones add `-NNN`. */
export function flushName(startMs: number, seq: number): string {
  const base = windowName(startMs);
  return seq === 0 ? base : `${base}-${String(seq).padStart(3, '0')}`;
}

export const alignWindow = (ms: number, intervalMs: number): number => Math.floor(ms / intervalMs) * intervalMs;

export const FILES = {
  streaming: 'streaming.csv.gz',
  schema: 'schema.yml',
  ddl: 'ddl.sql',
  manifest: 'manifest.json',
} as const;

export const BATCHES_DIR = '_batches';
