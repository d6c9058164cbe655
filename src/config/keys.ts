/** The configuration's keys: every valid one, and unknown ones refused with a suggestion. */
import { EgressError } from '../errors.js';

/** Every valid key, for unknown-key errors and suggestions. `*` = free-form map. */
export const SHAPE = {
  source: { url: 1, host: 1, port: 1, database: 1, user: 1, password: 1, ssl: { mode: 1, ca: 1 } },
  slot: 1,
  slot_failover: 1,
  stream_large_transactions: 1,
  publication: 1,
  publication_check: 1,
  tables: { include: 1, exclude: 1, no_identity: 1 },
  columns: { exclude: '*' },
  output: { dir: 1, gzip_level: 1, before_images: 1, mode: 1, retain: 1 },
  batch: { interval: 1, max_rows: 1, max_bytes: 1 },
  reload: { workers: 1, chunk_size: 1 },
  anchors: {
    s3: { bucket: 1, prefix: 1, region: 1, endpoint: 1, force_path_style: 1 },
    near: { network: 1, rpc_url: 1, account_id: 1, private_key: 1, contract_id: 1, method: 1, deposit: 1, gas: 1 },
  },
  http: { port: 1, host: 1, status_token: 1 },
  log: { level: 1 },
} as const;

export type Shape = { [k: string]: Shape | 1 | '*' };

/** Every configuration key as a dotted path (`anchors.s3.bucket`), for docs that must not drift. */
export function configKeys(shape: Shape = SHAPE as unknown as Shape, at = ''): string[] {
  return Object.entries(shape).flatMap(([k, v]) => (typeof v === 'object' ? configKeys(v, `${at}${k}.`) : [`${at}${k}`]));
}

const invalid = (msg: string) => new EgressError('CONFIG_INVALID', `config: ${msg}`);

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length];
}

export function checkKeys(value: unknown, shape: Shape, at: string): void {
  if (value === null || value === undefined) return;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${at || 'the file'} must be a mapping`);
  for (const [k, v] of Object.entries(value)) {
    const key = at ? `${at}.${k}` : k;
    const sub = shape[k];
    if (sub === undefined) {
      const candidates = Object.keys(shape);
      const best = candidates.map((c) => [c, levenshtein(k, c)] as const).sort((x, y) => x[1] - y[1])[0];
      const hint = best && best[1] <= Math.max(2, Math.floor(k.length / 3)) ? ` (did you mean "${at ? `${at}.` : ''}${best[0]}"?)` : ` (valid keys: ${candidates.join(', ')})`;
      throw invalid(`unknown key "${key}"${hint}`);
    }
    if (typeof sub === 'object') checkKeys(v, sub, key);
  }
}
