import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { excludedColumns, loadConfig, matchTable, parseConfig, redactedConfig } from '../../src/config/index.js';
import { parseDuration, parseSize } from '../../src/config/units.js';
import { EgressError } from '../../src/errors.js';

const parse = (text: string, env: NodeJS.ProcessEnv = {}) => parseConfig(text, { env, baseDir: '/etc/egress' });
const err = (text: string, env: NodeJS.ProcessEnv = {}): EgressError => {
  try {
    parse(text, env);
  } catch (e) {
    expect(e).toBeInstanceOf(EgressError);
    expect((e as EgressError).message.split('\n')).toHaveLength(1);
    return e as EgressError;
  }
  throw new Error('expected an error');
};

describe('config', () => {
  it('fills every default from a minimal file', () => {
    const c = parse('source:\n  url: postgres://egress@db:5432/shop\n');
    expect(c.source).toEqual({ host: 'db', port: 5432, database: 'shop', user: 'egress', password: undefined, ssl: { mode: 'disable' } });
    expect(c.slot).toBe('pg_egress');
    expect(c.streamLargeTransactions).toBe(true);
    expect(parse('source:\n  url: postgres://egress@db/shop\nstream_large_transactions: false\n').streamLargeTransactions).toBe(false);
    expect(c.publication).toBe('pg_egress');
    expect(c.output).toEqual({ dir: '/etc/egress/egress', gzipLevel: 1, beforeImages: false, fileMode: 0o600, dirMode: 0o700, retainMs: null });
    expect(c.batch).toEqual({ intervalMs: 300_000, maxRows: 1_000_000, maxBytes: 256 * 1024 * 1024 });
    expect(c.reload).toEqual({ workers: 4, chunkSize: 64 * 1024 * 1024 });
    expect(c.anchors).toEqual({ s3: null, near: null });
    expect(c.http.port).toBe(8080);
    expect(c.log.level).toBe('info');
    expect(c.tables.noIdentity).toBe('skip');
    expect(matchTable(c, 'public', 'orders')).toBe(true);
    expect(matchTable(c, 'other', 'orders')).toBe(false);
  });

  it('decodes URL parts, lets source.password override, and honours sslmode', () => {
    const c = parse('source:\n  url: postgresql://us%40er:p%2Fw@[::1]:6543/my%20db?sslmode=require\n');
    expect(c.source).toMatchObject({ host: '::1', port: 6543, database: 'my db', user: 'us@er', password: 'p/w', ssl: { mode: 'require' } });
    const d = parse('source:\n  url: postgres://u:old@h/db\n  password: ${PW}\n', { PW: 'new' });
    expect(d.source.password).toBe('new');
  });

  it('accepts host/port/database/user and rejects both forms at once', () => {
    const c = parse('source:\n  host: h\n  port: 5433\n  database: d\n  user: u\n');
    expect(c.source).toMatchObject({ host: 'h', port: 5433, database: 'd', user: 'u' });
    expect(err('source:\n  host: h\n  url: postgres://u@h/d\n').message).toMatch(/either source.url or source.host/);
    expect(err('slot: x\n').message).toMatch(/source.url/);
  });

  it('interpolates ${ENV}, names an unset variable and its key, keeps $${X} literal', () => {
    const c = parse('source:\n  url: postgres://${U}@h/${DB}\nslot: "${S}"\noutput:\n  dir: /x/$${LIT}\n', { U: 'bob', DB: 'shop', S: 'my_slot' });
    expect(c.source.user).toBe('bob');
    expect(c.source.database).toBe('shop');
    expect(c.slot).toBe('my_slot');
    expect(c.output.dir).toBe('/x/${LIT}');
    const e = err('source:\n  url: postgres://u@h/d\n  password: ${NOPE}\n');
    expect(e.code).toBe('CONFIG_ENV_UNSET');
    expect(e.message).toBe('config: source.password: environment variable NOPE is not set');
  });

  it('interpolates ${ENV} in flow maps, with values that hold YAML syntax', () => {
    const env = { DB_URL: 'postgres://egress@db:5432/shop', PGPASSWORD: 'a:b #c' };
    const c = parse('source: {url: ${DB_URL}, password: ${PGPASSWORD}}\n', env);
    expect(c.source).toMatchObject({ host: 'db', port: 5432, database: 'shop', user: 'egress', password: 'a:b #c' });
    const d = parse('source:\n  url: postgres://u@h/d\n  password: ${PGPASSWORD}\n', env);
    expect(d.source.password).toBe('a:b #c');
    for (const pw of ['{x: y}', "it's \"quoted\" \\ [1, 2]", '- item', '${NOT_EXPANDED}', '&anchor *ref !tag |', '  padded  ']) {
      expect(parse('source: {url: "postgres://u@h/d", password: ${P}}\n', { P: pw }).source.password).toBe(pw);
      expect(parse("source:\n  url: postgres://u@h/d\n  password: '${P}'\n", { P: pw }).source.password).toBe(pw);
    }
    const e = parse('source: {url: "postgres://u@h/d"}\noutput: {dir: /x/$${LIT}/${SUB}}\ntables: {include: ["${S}.*"]}\n', { SUB: 'y', S: 'sales' });
    expect(e.output.dir).toBe('/x/${LIT}/y');
    expect(matchTable(e, 'sales', 'orders')).toBe(true);
    const u = err('source: {url: postgres://u@h/d, password: ${PGPASSWORD}}\n');
    expect(u.code).toBe('CONFIG_ENV_UNSET');
    expect(u.message).toBe('config: source.password: environment variable PGPASSWORD is not set');
    expect(err('tables: {include: [public.*, ${T}]}\nsource: {url: postgres://u@h/d}\n').message).toBe('config: tables.include[1]: environment variable T is not set');
    // A reference in a comment is not a value; a key is taken as written.
    expect(parse('source: {url: postgres://u@h/d}  # ${UNSET_IN_COMMENT}\n').slot).toBe('pg_egress');
    expect(err('source: {url: postgres://u@h/d}\n${KEY}: 1\n', { KEY: 'slot' }).message).toContain('unknown key "${KEY}"');
  });

  it('takes tables.no_identity: skip (default) or full', () => {
    expect(parse('source:\n  url: postgres://u@h/d\n').tables.noIdentity).toBe('skip');
    expect(parse('source:\n  url: postgres://u@h/d\ntables:\n  no_identity: full\n').tables.noIdentity).toBe('full');
    expect(parse('source: {url: postgres://u@h/d}\ntables: {no_identity: skip}\n').tables.noIdentity).toBe('skip');
    expect(err('source:\n  url: postgres://u@h/d\ntables:\n  no_identity: always\n').message).toBe('config: tables.no_identity must be skip or full (got "always")');
    expect(err('source:\n  url: postgres://u@h/d\ntables:\n  no_identty: full\n').message).toContain('(did you mean "tables.no_identity"?)');
  });

  it('rejects unknown keys with the nearest valid one', () => {
    expect(err('source:\n  url: postgres://u@h/d\nbatchh:\n  interval: 5m\n').message).toContain('unknown key "batchh" (did you mean "batch"?)');
    expect(err('source:\n  url: postgres://u@h/d\nbatch:\n  intervl: 5m\n').message).toContain('unknown key "batch.intervl" (did you mean "batch.interval"?)');
    expect(err('source:\n  url: postgres://u@h/d\n  ssl:\n    mdoe: require\n').message).toContain('"source.ssl.mode"');
  });

  it('names the key of a wrong type or value', () => {
    expect(err('source:\n  url: postgres://u@h/d\nbatch:\n  max_rows: lots\n').message).toMatch(/batch.max_rows must be a whole number/);
    expect(err('source:\n  url: postgres://u@h/d\noutput:\n  gzip_level: 12\n').message).toMatch(/output.gzip_level must be between 0 and 9/);
    expect(err('source:\n  url: postgres://u@h/d\nbatch:\n  interval: 5x\n').message).toMatch(/batch.interval/);
    expect(err('source:\n  url: postgres://u@h/d\nbatch:\n  interval: 7m\n').message).toMatch(/divide 24h/);
    expect(err('source:\n  url: postgres://u@h/d\nslot: Bad-Slot\n').message).toMatch(/^config: slot:/);
    expect(err('source:\n  url: postgres://u@h/d\nlog:\n  level: loud\n').message).toMatch(/log.level/);
    expect(err('source:\n  url: [oops\n').message).toMatch(/YAML syntax error/);
    expect(err('').message).toMatch(/is empty/);
  });

  it('parses durations and sizes', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration(90)).toBe(90_000);
    expect(parseSize('256MB')).toBe(268_435_456);
    expect(parseSize('64kb')).toBe(65_536);
    expect(parseSize('1GB')).toBe(1_073_741_824);
    expect(parseSize(100)).toBe(100);
    expect(() => parseSize('12 parsecs')).toThrow();
  });


  it('matches tables by include and exclude', () => {
    const c = parse(
      'source:\n  url: postgres://u@h/d\ntables:\n  include: [\'"My Schema"."Weird ""Name"", x"\', "sales.order_?", "*.audit_*", "cdc_registry.*"]\n  exclude: ["*.audit_tmp"]\n',
    );
    expect(matchTable(c, 'My Schema', 'Weird "Name", x')).toBe(true);
    expect(matchTable(c, 'My Schema', 'Weird')).toBe(false);
    expect(matchTable(c, 'sales', 'order_1')).toBe(true);
    expect(matchTable(c, 'sales', 'order_12')).toBe(false);
    expect(matchTable(c, 'x', 'audit_log')).toBe(true);
    expect(matchTable(c, 'x', 'audit_tmp')).toBe(false);
    expect(matchTable(c, 'cdc_registry', 'files')).toBe(false);
    expect(err('source:\n  url: postgres://u@h/d\ntables:\n  include: ["nodot"]\n').message).toMatch(/tables.include/);
  });

  it('looks up excluded columns by exact table name', () => {
    const c = parse('source:\n  url: postgres://u@h/d\ncolumns:\n  exclude:\n    public.users: [password_hash]\n    \'"a.b".c\': [x]\n');
    expect([...excludedColumns(c, 'public', 'users')]).toEqual(['password_hash']);
    expect([...excludedColumns(c, 'a.b', 'c')]).toEqual(['x']);
    expect(excludedColumns(c, 'public', 'other').size).toBe(0);
  });

  it('is deeply frozen', () => {
    const c = parse('source:\n  url: postgres://u@h/d\n');
    expect(() => {
      (c as { slot: string }).slot = 'x';
    }).toThrow();
    expect(() => {
      (c.batch as { maxRows: number }).maxRows = 1;
    }).toThrow();
  });

  it('never puts a secret into an error or the redacted config', () => {
    const secret = 'Sup3r-s3cret';
    const e = err(`source:\n  url: postgres://u:${secret}@h:notaport/d\n`);
    expect(e.message).not.toContain(secret);
    const e2 = err(`source:\n  url: postgres://u:${secret}@h/d\nanchors:\n  near:\n    contract_id: c\n    rpc_url: http://127.0.0.1:1\n    account_id: a\n    private_key: ${secret}\n    gas: lots\n`);
    expect(e2.message).not.toContain(secret);
    const c = parse(`source:\n  url: postgres://u:${secret}@h/d\nanchors:\n  near:\n    contract_id: c\n    rpc_url: http://127.0.0.1:1\n    account_id: a\n    private_key: ${secret}\n`);
    expect(c.anchors.near!.depositYocto).toBe(10n ** 22n);
    expect(c.anchors.near!.gas).toBe(30n * 10n ** 12n);
    expect(JSON.stringify(redactedConfig(c))).not.toContain(secret);
    // An environment value never reaches a YAML syntax error: it is put in after parsing.
    const e3 = err('source: {url: postgres://u@h/d, password: ${PW}\n', { PW: secret });
    expect(e3.message).toMatch(/YAML syntax error/);
    expect(e3.message).not.toContain(secret);
    expect(e3.message).not.toMatch(/pgegressenv/);
  });

  it('loads cdc.example.yml with no environment variable set, and reports a missing file by path', () => {
    const c = loadConfig(path.join(import.meta.dirname, '../../cdc.example.yml'), {});
    expect(c.source.host).toBe('db');
    expect(c.source.password).toBeUndefined();
    expect(c.tables.noIdentity).toBe('skip');
    expect(c.anchors.s3).toBeNull();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
    expect(() => loadConfig(path.join(dir, 'nope.yml'))).toThrow(/cannot read .*nope.yml/);
    writeFileSync(path.join(dir, 'c.yml'), 'source:\n  url: postgres://u@h/d\noutput:\n  dir: out\n');
    expect(loadConfig(path.join(dir, 'c.yml')).output.dir).toBe(path.join(dir, 'out'));
  });
});
