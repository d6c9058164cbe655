/**
 * cdc.yml → one validated, deeply frozen Config (SPEC §11). Every error is an EgressError whose
 * one-line message names the key and what is wrong, and never contains a secret.
 */
import { tableKey } from '../ident.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { EgressError } from '../errors.js';
import { compilePattern, splitQualified, type TablePattern } from './patterns.js';
import { parseDuration, parseGas, parseNear, parseSize } from './units.js';
import { checkKeys, SHAPE, type Shape } from './keys.js';
import { interpolate, restoreKeys, restoreText, tokenizeEnvRefs } from './env.js';

export { configKeys } from './keys.js';

export { parseDuration, parseSize } from './units.js';
export type { TablePattern } from './patterns.js';

export type SslMode = 'disable' | 'require' | 'verify-full';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export interface Config {
  source: {
    host: string;
    port: number;
    database: string;
    user: string;
    /** Never logged; `redactedConfig` hides it. */
    password?: string;
    ssl: { mode: SslMode; ca?: string };
    /** Set when these credentials came from `init`/`uninstall --url`, so errors name that option. */
    via?: '--url';
  };
  /** Permanent logical replication slot (pgoutput). */
  slot: string;
  /**
   * Create the slot as a failover slot (PostgreSQL 17+), so that a standby with
   * sync_replication_slots keeps a copy a promoted standby continues from; an existing slot is
   * altered to match. Ignored before 17.
   */
  slotFailover: boolean;
  /**
   * PostgreSQL 14+: ask for pgoutput protocol 2 with streaming, so that a transaction larger than
   * the server's logical_decoding_work_mem arrives in parts while it runs, held in
   * output.dir/_tmp/streamed/ until its commit (src/batch/streamed.ts). Off: the walsender spills
   * it to its own disk and sends it whole at its commit.
   */
  streamLargeTransactions: boolean;
  /** Publication managed by the tool. */
  publication: string;
  /**
   * How often the running daemon checks the publication (tables added or gone, options, replica
   * identity, partition membership without DDL capture) and the slot's health, in ms.
   */
  publicationCheckMs: number;
  tables: {
    include: readonly TablePattern[];
    exclude: readonly TablePattern[];
    /**
     * A selected table with no primary key and no replica identity: `skip` leaves it out of the
     * publication (PostgreSQL rejects UPDATE/DELETE on a published table without one) until it gets
     * one; `full` sets REPLICA IDENTITY FULL on it and publishes it.
     */
    noIdentity: 'skip' | 'full';
  };
  /** `schema\0table` → column names never written anywhere. */
  columnsExclude: ReadonlyMap<string, ReadonlySet<string>>;
  output: {
    dir: string;
    gzipLevel: number;
    beforeImages: boolean;
    fileMode: number;
    dirMode: number;
    /** output.retain in ms: data files older than this whose S3 copy is verified are removed locally; null keeps everything. */
    retainMs: number | null;
  };
  batch: { intervalMs: number; maxRows: number; maxBytes: number };
  reload: { workers: number; chunkSize: number };
  anchors: {
    s3: null | { bucket: string; prefix: string; region: string; endpoint: string; forcePathStyle: boolean };
    near: null | {
      network: 'testnet' | 'mainnet' | 'custom';
      rpcUrl: string;
      accountId: string;
      privateKey: string;
      contractId: string;
      method: string;
      depositYocto: bigint;
      gas: bigint;
    };
  };
  /** `statusToken`: empty = /status open (the probes and /metrics are always open). */
  http: { port: number; host: string; statusToken: string };
  log: { level: LogLevel };
  configPath?: string;
}

const invalid = (msg: string) => new EgressError('CONFIG_INVALID', `config: ${msg}`);

type Obj = Record<string, unknown>;
const section = (o: Obj, k: string): Obj => (o[k] ?? {}) as Obj;

function str(o: Obj, k: string, at: string, def?: string): string {
  const v = o[k];
  if (v === undefined || v === null) {
    if (def === undefined) throw invalid(`${at}.${k} is required`);
    return def;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v !== 'string') throw invalid(`${at}.${k} must be a string`);
  return v;
}

function int(o: Obj, k: string, at: string, def: number, min: number, max: number): number {
  const v = o[k] ?? def;
  const n = typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw invalid(`${at}.${k} must be a whole number`);
  if (n < min || n > max) throw invalid(`${at}.${k} must be between ${min} and ${max} (got ${n})`);
  return n;
}

function bool(o: Obj, k: string, at: string, def: boolean): boolean {
  const v = o[k] ?? def;
  if (typeof v !== 'boolean') throw invalid(`${at}.${k} must be true or false`);
  return v;
}

/**
 * output.retain (src/anchor/retention.ts): `forever` keeps every local file; a duration removes a
 * data file locally once its S3 copy is verified and it is older than that. Default: forever
 * without anchors.s3 (the local folder is then the only copy), 24h with it.
 */
export const DEFAULT_RETAIN_WITH_S3 = '24h';
function retainSetting(o: Obj, hasS3: boolean): number | null {
  const v = o.retain ?? (hasS3 ? DEFAULT_RETAIN_WITH_S3 : 'forever');
  if (v === 'forever') return null;
  const ms = withUnit(parseDuration, o, 'retain', 'output', hasS3 ? DEFAULT_RETAIN_WITH_S3 : 'forever');
  if (!hasS3) throw invalid('output.retain needs anchors.s3: files are removed locally only after their upload to S3 is verified (set anchors.s3.bucket, or output.retain: forever)');
  return ms;
}

function withUnit<T>(fn: (s: string | number) => T, o: Obj, k: string, at: string, def: string): T {
  const v = o[k] ?? def;
  if (typeof v !== 'string' && typeof v !== 'number') throw invalid(`${at}.${k} must be a string`);
  try {
    return fn(v);
  } catch (e) {
    throw invalid(`${at}.${k}: ${(e as Error).message}`);
  }
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

function resolveSource(src: Obj): Config['source'] {
  const sslSec = section(src, 'ssl');
  let mode = sslSec.mode as string | undefined;
  let out: Omit<Config['source'], 'ssl'>;
  if (src.url !== undefined && src.host !== undefined) throw invalid('source: give either source.url or source.host, not both');
  if (src.url !== undefined) {
    const raw = str(src, 'url', 'source');
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw invalid('source.url is not a valid URL (expected postgres://user@host:5432/database)');
    }
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw invalid(`source.url must start with postgres:// (got ${u.protocol}//)`);
    if (!u.hostname) throw invalid('source.url has no host');
    const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
    if (!database) throw invalid('source.url has no database name (postgres://user@host:5432/database)');
    if (!u.username) throw invalid('source.url has no user name (postgres://user@host:5432/database)');
    const sslmode = u.searchParams.get('sslmode');
    if (mode === undefined && sslmode) mode = sslmode === 'prefer' || sslmode === 'allow' ? 'disable' : sslmode === 'verify-ca' ? 'verify-full' : sslmode;
    out = {
      host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: u.port ? Number(u.port) : 5432,
      database,
      user: decodeURIComponent(u.username),
      password: src.password !== undefined ? str(src, 'password', 'source') : u.password ? decodeURIComponent(u.password) : undefined,
    };
  } else if (src.host !== undefined) {
    out = {
      host: str(src, 'host', 'source'),
      port: int(src, 'port', 'source', 5432, 1, 65535),
      database: str(src, 'database', 'source'),
      user: str(src, 'user', 'source'),
      password: src.password !== undefined ? str(src, 'password', 'source') : undefined,
    };
  } else {
    throw invalid('source.url (or source.host, source.database, source.user) is required');
  }
  if (src.port !== undefined && src.url !== undefined) out.port = int(src, 'port', 'source', 5432, 1, 65535);
  mode ??= 'disable';
  if (!['disable', 'require', 'verify-full'].includes(mode)) throw invalid(`source.ssl.mode must be disable, require or verify-full (got ${JSON.stringify(mode)})`);
  const ca = sslSec.ca === undefined ? undefined : str(sslSec, 'ca', 'source.ssl');
  if (ca !== undefined && !existsSync(ca)) throw invalid(`source.ssl.ca: file ${ca} does not exist`);
  return { ...out, ssl: { mode: mode as SslMode, ...(ca ? { ca } : {}) } };
}

function patterns(list: unknown, at: string, def: string[]): TablePattern[] {
  const arr = list ?? def;
  if (!Array.isArray(arr) || arr.some((x) => typeof x !== 'string')) throw invalid(`${at} must be a list of "schema.table" patterns`);
  return arr.map((p: string) => {
    const c = compilePattern(p);
    if (!c) throw invalid(`${at}: ${JSON.stringify(p)} is not a "schema.table" pattern (quote names that contain dots: '"my.schema".table')`);
    return c;
  });
}

export { tableKey };

export function parseConfig(text: string, opts: { env?: NodeJS.ProcessEnv; baseDir?: string; path?: string } = {}): Config {
  const where = opts.path ?? 'cdc.yml';
  const refs = tokenizeEnvRefs(text);
  let doc: unknown;
  try {
    doc = YAML.parse(refs.text);
  } catch (e) {
    const err = e as { linePos?: { line: number }[]; message?: string };
    const line = err.linePos?.[0]?.line;
    throw invalid(`${where}${line ? ` line ${line}` : ''}: YAML syntax error: ${restoreText((err.message ?? '').split('\n')[0], refs)}`);
  }
  if (doc === null || doc === undefined) throw invalid(`${where} is empty; see cdc.example.yml`);
  doc = restoreKeys(doc, refs);
  checkKeys(doc, SHAPE as unknown as Shape, '');
  const raw = interpolate(doc, refs, opts.env ?? process.env, '') as Obj;
  const baseDir = opts.baseDir ?? process.cwd();

  const source = resolveSource(section(raw, 'source'));
  const slot = str(raw, 'slot', 'config', 'pg_egress');
  if (!IDENT.test(slot)) throw invalid(`slot: ${JSON.stringify(slot)} must be lower-case letters, digits and _ (at most 63), starting with a letter or _`);
  const slotFailover = bool(raw, 'slot_failover', 'config', true);
  const streamLargeTransactions = bool(raw, 'stream_large_transactions', 'config', true);
  const publication = str(raw, 'publication', 'config', 'pg_egress');
  if (!IDENT.test(publication)) throw invalid(`publication: ${JSON.stringify(publication)} must be lower-case letters, digits and _ (at most 63)`);
  const publicationCheckMs = withUnit(parseDuration, raw, 'publication_check', 'config', '10s');
  if (publicationCheckMs < 1000) throw invalid('publication_check must be at least 1s (e.g. 10s)');

  const tablesSec = section(raw, 'tables');
  const noIdentity = str(tablesSec, 'no_identity', 'tables', 'skip');
  if (noIdentity !== 'skip' && noIdentity !== 'full') throw invalid(`tables.no_identity must be skip or full (got ${JSON.stringify(noIdentity)})`);
  const tables = {
    include: patterns(tablesSec.include, 'tables.include', ['public.*']),
    exclude: patterns(tablesSec.exclude, 'tables.exclude', []),
    noIdentity: noIdentity as 'skip' | 'full',
  };

  const colSec = section(section(raw, 'columns'), 'exclude');
  const columnsExclude = new Map<string, ReadonlySet<string>>();
  for (const [name, cols] of Object.entries(colSec)) {
    const parts = splitQualified(name);
    if (!parts) throw invalid(`columns.exclude: ${JSON.stringify(name)} is not a "schema.table" name`);
    if (!Array.isArray(cols) || cols.some((c) => typeof c !== 'string')) throw invalid(`columns.exclude."${name}" must be a list of column names`);
    columnsExclude.set(tableKey(parts[0], parts[1]), Object.freeze(new Set(cols as string[])));
  }

  const outSec = section(raw, 'output');
  const modeText = str(outSec, 'mode', 'output', '0600');
  if (!/^0?[0-7]{3}$/.test(modeText)) throw invalid(`output.mode must be an octal file mode like "0600" (got ${JSON.stringify(modeText)})`);
  const fileMode = parseInt(modeText, 8);
  const dirMode = fileMode | ((fileMode & 0o444) >> 2);
  const output = {
    dir: path.resolve(baseDir, str(outSec, 'dir', 'output', './egress')),
    gzipLevel: int(outSec, 'gzip_level', 'output', 1, 0, 9),
    beforeImages: bool(outSec, 'before_images', 'output', false),
    fileMode,
    dirMode,
    retainMs: null as number | null,
  };

  const batchSec = section(raw, 'batch');
  const intervalMs = withUnit(parseDuration, batchSec, 'interval', 'batch', '5m');
  if (intervalMs < 1000) throw invalid(`batch.interval must be at least 1s`);
  if (86_400_000 % intervalMs !== 0) throw invalid(`batch.interval must divide 24h evenly so windows align to days (e.g. 1m, 5m, 15m, 1h)`);
  const batch = {
    intervalMs,
    maxRows: int(batchSec, 'max_rows', 'batch', 1_000_000, 1, Number.MAX_SAFE_INTEGER),
    maxBytes: withUnit(parseSize, batchSec, 'max_bytes', 'batch', '256MB'),
  };
  if (batch.maxBytes < 1) throw invalid('batch.max_bytes must be positive');

  const reloadSec = section(raw, 'reload');
  const reload = { workers: int(reloadSec, 'workers', 'reload', 4, 1, 64), chunkSize: withUnit(parseSize, reloadSec, 'chunk_size', 'reload', '64MB') };

  const anchorsSec = section(raw, 'anchors');
  let s3: Config['anchors']['s3'] = null;
  if (anchorsSec.s3 && str(section(anchorsSec, 's3'), 'bucket', 'anchors.s3', '') !== '') {
    const a = section(anchorsSec, 's3');
    s3 = {
      bucket: str(a, 'bucket', 'anchors.s3'),
      prefix: str(a, 'prefix', 'anchors.s3', '').replace(/^\/+|\/+$/g, ''),
      region: str(a, 'region', 'anchors.s3', 'us-east-1'),
      endpoint: str(a, 'endpoint', 'anchors.s3', ''),
      forcePathStyle: bool(a, 'force_path_style', 'anchors.s3', false),
    };
  }
  let near: Config['anchors']['near'] = null;
  if (anchorsSec.near && str(section(anchorsSec, 'near'), 'contract_id', 'anchors.near', '') !== '') {
    const a = section(anchorsSec, 'near');
    const network = str(a, 'network', 'anchors.near', 'testnet');
    if (!['testnet', 'mainnet', 'custom'].includes(network)) throw invalid('anchors.near.network must be testnet, mainnet or custom');
    const need = (k: string) => {
      const v = str(a, k, 'anchors.near', '');
      if (!v) throw invalid(`anchors.near.${k} is required when anchors.near.contract_id is set`);
      return v;
    };
    near = {
      network: network as 'testnet' | 'mainnet' | 'custom',
      rpcUrl: need('rpc_url'),
      accountId: need('account_id'),
      privateKey: need('private_key'),
      contractId: need('contract_id'),
      method: str(a, 'method', 'anchors.near', 'nft_mint'),
      depositYocto: withUnit(parseNear, a, 'deposit', 'anchors.near', '0.01'),
      gas: withUnit(parseGas, a, 'gas', 'anchors.near', '30Tgas'),
    };
  }

  output.retainMs = retainSetting(outSec, s3 !== null);

  const httpSec = section(raw, 'http');
  // 127.0.0.1 by default: /status names the host, role and tables, so nothing is exposed until an
  // operator says where (a container sets 0.0.0.0 or its pod IP, as deploy/kubernetes does).
  const host = str(httpSec, 'host', 'http', '127.0.0.1');
  if (!host.trim() || /[\s/]/.test(host)) throw invalid(`http.host must be an IP address or a host name to bind (e.g. 127.0.0.1, 0.0.0.0, ::), not ${JSON.stringify(host)}`);
  const statusToken = str(httpSec, 'status_token', 'http', '');
  if (statusToken && (statusToken.length < 16 || /\s/.test(statusToken))) throw invalid('http.status_token must be at least 16 characters without spaces (e.g. openssl rand -hex 32), or empty for an open /status');
  const http = { port: int(httpSec, 'port', 'http', 8080, 0, 65535), host, statusToken };
  const level = str(section(raw, 'log'), 'level', 'log', 'info');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace'].includes(level)) throw invalid('log.level must be one of fatal, error, warn, info, debug, trace');

  const cfg: Config = {
    source,
    slot,
    slotFailover,
    streamLargeTransactions,
    publication,
    publicationCheckMs,
    tables,
    columnsExclude,
    output,
    batch,
    reload,
    anchors: { s3, near },
    http,
    log: { level: level as LogLevel },
    ...(opts.path ? { configPath: opts.path } : {}),
  };
  return deepFreeze(cfg);
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new EgressError('CONFIG_NOT_FOUND', `config: cannot read ${file}; pass --config <file> (see cdc.example.yml)`);
  }
  return parseConfig(text, { env, baseDir: path.dirname(path.resolve(file)), path: file });
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    if (!(o instanceof Map) && !(o instanceof Set) && !(o instanceof RegExp)) {
      for (const v of Object.values(o)) deepFreeze(v);
    } else if (o instanceof Map) {
      for (const v of o.values()) deepFreeze(v);
    }
  }
  return o;
}

const SYSTEM_SCHEMAS = new Set(['cdc_registry', 'pg_catalog', 'information_schema']);

export function matchTable(cfg: Config, schema: string, table: string): boolean {
  if (SYSTEM_SCHEMAS.has(schema) || schema.startsWith('pg_toast') || schema.startsWith('pg_temp')) return false;
  const hit = (p: TablePattern) => p.schema.test(schema) && p.table.test(table);
  return cfg.tables.include.some(hit) && !cfg.tables.exclude.some(hit);
}

const NO_COLUMNS: ReadonlySet<string> = Object.freeze(new Set<string>());

export function excludedColumns(cfg: Config, schema: string, table: string): ReadonlySet<string> {
  return cfg.columnsExclude.get(tableKey(schema, table)) ?? NO_COLUMNS;
}

/** The configuration with secrets replaced, for logs and `status`. */
export function redactedConfig(cfg: Config): unknown {
  return {
    ...cfg,
    source: { ...cfg.source, password: cfg.source.password === undefined ? undefined : '***' },
    tables: {
      include: cfg.tables.include.map((p) => p.source),
      exclude: cfg.tables.exclude.map((p) => p.source),
      noIdentity: cfg.tables.noIdentity,
    },
    columnsExclude: Object.fromEntries([...cfg.columnsExclude].map(([k, v]) => [k.replace('\u0000', '.'), [...v]])),
    http: { ...cfg.http, statusToken: cfg.http.statusToken ? '***' : '' },
    anchors: { s3: cfg.anchors.s3, near: cfg.anchors.near ? { ...cfg.anchors.near, privateKey: '***', depositYocto: String(cfg.anchors.near.depositYocto), gas: String(cfg.anchors.near.gas) } : null },
  };
}
