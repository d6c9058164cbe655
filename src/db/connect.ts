/**
 * Connections to the source database. Every connection carries the session settings of SPEC §2 as
 * startup options: for the replication connection that is the only way to set them, because
 * pgoutput renders values inside the walsender with that session's settings
 * (https://www.postgresql.org/docs/15/protocol-replication.html), and using the same options on
 * every connection makes a value's text identical in streaming and reload files.
 */
import fs from 'node:fs';
import pg from 'pg';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { ioError } from '../output/atomic.js';

export const SESSION_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  TimeZone: 'UTC',
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  extra_float_digits: '3',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
});

/** The libpq `options` startup parameter; spaces inside values are backslash-escaped. */
export const sessionOptions = (): string =>
  Object.entries(SESSION_SETTINGS)
    .map(([k, v]) => `-c ${k}=${v.replace(/ /g, '\\ ')}`)
    .join(' ');

/** Values stay PostgreSQL's exact text: never parse them into JS numbers or Dates. */
const textTypes = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

export type SourceConfig = Config['source'];

export function clientConfig(source: SourceConfig, extra: Partial<pg.ClientConfig> = {}): pg.ClientConfig {
  let ssl: pg.ClientConfig['ssl'] = false;
  if (source.ssl.mode !== 'disable') {
    ssl = {
      rejectUnauthorized: source.ssl.mode === 'verify-full',
      ...(source.ssl.ca ? { ca: fs.readFileSync(source.ssl.ca, 'utf8') } : {}),
    };
  }
  return {
    host: source.host,
    port: source.port,
    database: source.database,
    user: source.user,
    password: source.password,
    ssl,
    options: sessionOptions(),
    application_name: 'pg-egress',
    types: textTypes,
    connectionTimeoutMillis: 15_000,
    keepAlive: true,
    ...extra,
  };
}

export const describeSource = (s: SourceConfig): string => `${s.user}@${s.host}:${s.port}/${s.database}`;

/**
 * Turns driver errors into one-line errors that name the cause and the setting to change
 * (SPEC §10). Never includes the password: pg's messages do not contain it, and we build ours
 * from host/port/database/user only.
 */
export function sourceError(e: unknown, source: SourceConfig, what = 'connect to PostgreSQL'): EgressError {
  if (e instanceof EgressError) return e;
  const fsErr = fsError(e);
  if (fsErr) {
    // A file error that reached the source's error path (start-up steps share one try): it is
    // about output.dir (or source.ssl.ca), never a PostgreSQL error.
    if (source.ssl.ca !== undefined && fsErr.path === source.ssl.ca) {
      return new EgressError('CONFIG_INVALID', `cannot read source.ssl.ca ${fsErr.path} (${fsErr.code}); check source.ssl.ca`, { cause: e });
    }
    return ioError(fsErr.path ?? fsErr.dest ?? 'output.dir', e);
  }
  const err = e as { code?: string; message?: string; errno?: number };
  const where = describeSource(source);
  // init/uninstall --url: the credentials, the host and the role are that URL's, not source.*.
  const admin = source.via === '--url';
  const code = err.code ?? '';
  const msg = (err.message ?? String(e)).split('\n')[0];
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH'].includes(code) || /timeout/i.test(msg) || /Connection terminated|connection error|not queryable|ended unexpectedly|the database system is (starting up|shutting down|in recovery)|terminating connection/i.test(msg)) {
    return new EgressError('SOURCE_UNREACHABLE', `cannot ${what} at ${where}: ${msg}; ${admin ? 'check the host and port of --url' : 'check source.url (or source.host/source.port)'} and that the server is running`, { cause: e });
  }
  if (code === '28P01' || (code === '28000' && !/replication/i.test(msg))) {
    const fix = admin
      ? `check the user and password of --url (the password is the URL's, postgres://${source.user}:<password>@..., percent-encoded; else PGPASSWORD; else ~/.pgpass; never source.password)`
      : 'check source.user and source.password';
    return new EgressError('SOURCE_AUTH', `authentication failed for ${where}: ${msg}; ${fix}`, { cause: e });
  }
  if (code === '28000' || /must be superuser or replication role/i.test(msg) || /permission denied to start WAL sender/i.test(msg)) {
    return new EgressError('NO_REPLICATION_PRIVILEGE', `user "${source.user}" may not use replication on ${where}; run ALTER ROLE "${source.user}" REPLICATION (or ${admin ? 'give --url a superuser' : 'set source.user to a role that has it'})`, { cause: e });
  }
  if (code === '3D000') {
    return new EgressError('SOURCE_NO_DATABASE', `database "${source.database}" does not exist on ${source.host}:${source.port}; check ${admin ? '--url and ' : ''}source.url (database)`, { cause: e });
  }
  if (code === '53400' || /all replication slots are in use/i.test(msg)) {
    return new EgressError('NO_FREE_SLOT', `no free replication slot on ${where}: ${msg}; raise max_replication_slots on the server or drop an unused slot`, { cause: e });
  }
  if (code === '55006' || /is active for PID/i.test(msg)) {
    return new EgressError('SLOT_BUSY', `replication slot is in use by another process on ${where}: ${msg}; stop the other pg-egress or set a different slot`, { cause: e });
  }
  if (code === '42501') {
    if (admin) return new EgressError('INSUFFICIENT_PRIVILEGE', `permission denied on ${where}: ${msg}; the role of --url must be a superuser (README "Privileges")`, { cause: e });
    return new EgressError('INSUFFICIENT_PRIVILEGE', `permission denied on ${where}: ${msg}; run \`pg-egress init --url <superuser url> --config ...\` once: it sets up the registry, publication and DDL capture and grants source.user what run needs (README "Privileges")`, { cause: e });
  }
  if (code === '55P03' || code === '40P01') {
    // lock_timeout (or a deadlock): pg-egress never waits on a lock without a bound (db/tx.ts).
    return new EgressError('LOCK_TIMEOUT', `cannot ${what} on ${where}: ${msg} (another session holds or waits for a lock on the same object); it is tried again`, { cause: e });
  }
  if (code === '57P01' || code === '57P02' || code === '57P03' || code === '08006' || code === '08003' || code === '08001') {
    return new EgressError('SOURCE_UNREACHABLE', `lost the connection to ${where}: ${msg}`, { cause: e });
  }
  // Only a server's error has a SQLSTATE: five characters, digits and capitals, in a class that
  // never starts with E (https://www.postgresql.org/docs/current/errcodes-appendix.html), where
  // Node's are errno names (EPIPE) or ERR_* codes. Anything else that reached here is ours.
  if (!/^[0-9A-DF-Z][0-9A-Z]{4}$/.test(code)) {
    return new EgressError('INTERNAL', `cannot ${what} (${where}): ${msg}${code ? ` (${code})` : ''}`, { cause: e });
  }
  return new EgressError('INTERNAL', `PostgreSQL error on ${where}: ${msg} (SQLSTATE ${code})`, { cause: e });
}

/** errno codes of file operations; with a `syscall` and no socket call, an error is a file error. */
const FS_CODES = new Set(['ENOSPC', 'EROFS', 'EIO', 'EDQUOT', 'EACCES', 'EPERM', 'ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EFBIG', 'EMFILE', 'ENFILE', 'EBADF', 'ELOOP', 'ENAMETOOLONG', 'EXDEV', 'ESTALE']);
const SOCKET_SYSCALLS = new Set(['connect', 'getaddrinfo', 'getnameinfo', 'queryA', 'queryAaaa', 'bind', 'listen', 'accept']);

/** A Node file-system error (`fs.*`, FileHandle): has a `syscall`, and a path or a file errno code. */
function fsError(e: unknown): (NodeJS.ErrnoException & { code: string; dest?: string }) | null {
  if (typeof e !== 'object' || e === null) return null;
  const err = e as NodeJS.ErrnoException & { dest?: string };
  if (typeof err.syscall !== 'string' || typeof err.code !== 'string' || SOCKET_SYSCALLS.has(err.syscall)) return null;
  if (typeof err.path === 'string' || FS_CODES.has(err.code)) return err as NodeJS.ErrnoException & { code: string; dest?: string };
  return null;
}

export async function connectClient(source: SourceConfig, extra: Partial<pg.ClientConfig> = {}, what?: string): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(source, extra));
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw sourceError(e, source, what);
  }
  // A dropped connection emits 'error' on the client; callers see it on their next query.
  client.on('error', () => undefined);
  return client;
}
