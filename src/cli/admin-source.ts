/**
 * `--url <admin-url>` of init and uninstall: the one-time setup (event triggers need a superuser)
 * with other credentials than the daemon's. The password is the URL's (percent-encoded), else
 * PGPASSWORD, else ~/.pgpass (libpq's order, which node-postgres follows); never source.password,
 * which belongs to the daemon's role. None is ever printed. Errors name `--url` (source.via).
 */
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';

export function adminSource(source: Config['source'], url: string | undefined): Config['source'] {
  if (!url) return source;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EgressError('CONFIG_INVALID', '--url is not a valid URL (expected postgres://user@host:5432/database)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new EgressError('CONFIG_INVALID', `--url must start with postgres:// (got ${u.protocol}//)`);
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || source.database;
  if (database !== source.database) {
    throw new EgressError('CONFIG_INVALID', `--url names database "${database}" but source.url names "${source.database}"; they must be the same database`);
  }
  return {
    ...source,
    host: u.hostname ? u.hostname.replace(/^\[(.*)\]$/, '$1') : source.host,
    port: u.port ? Number(u.port) : u.hostname ? 5432 : source.port,
    database,
    user: u.username ? decodeURIComponent(u.username) : source.user,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    via: '--url',
  };
}
