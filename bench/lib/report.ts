/**
 * The benchmark's result: one row per goal, rendered as a Markdown table (the README's
 * Performance section is a copy of it) and kept whole in bench/results/latest.json.
 */
import type { Ratio } from './stats.js';

export interface ReportRow {
  id: string;
  /** What was measured, e.g. "1,000,000-row transaction vs pg_recvlogical". */
  what: string;
  /** The measured result as printed, e.g. "1.12× (0.98–1.20×)". */
  result: string;
  goal: string;
  /** null when the row has no goal to meet (context only). */
  met: boolean | null;
}

export const fmtRatio = (r: Ratio): string => `${r.median.toFixed(2)}× (${r.min.toFixed(2)}–${r.max.toFixed(2)}×, n=${r.n})`;
export const fmtSeconds = (xs: readonly number[]): string => xs.map((x) => x.toFixed(2)).join(' / ') + ' s';
export const fmtCount = (n: number): string => n.toLocaleString('en-US');

/** A Markdown table with padded columns (readable in a terminal too). */
export function renderTable(rows: readonly ReportRow[]): string {
  const head = ['', 'measure', 'result', 'goal', 'met'];
  const body = rows.map((r) => [r.id, r.what, r.result, r.goal, r.met === null ? '—' : r.met ? 'yes' : 'NO']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...body.map(line)].join('\n');
}
