import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { censorSecrets, loggerOptions } from '../../src/log.js';

/** The daemon's logger (same options), writing its lines here. */
function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const log = pino(loggerOptions('info', pino), out);
  return { log, lines: () => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('log lines never show a secret', () => {
  it('censors secret keys at the top level and one level down, and leaves every other field as it was', () => {
    const { log, lines } = capture();
    const source = { host: 'db', password: 's3cret-1', port: 5432 };
    const fields = { source, private_key: 's3cret-2', near: { privateKey: 's3cret-3', account: 'a.near' }, http: { statusToken: 's3cret-4' }, status_token: 's3cret-5', rows: 7 };
    log.info(fields, 'configuration');
    const [line] = lines();
    expect(JSON.stringify(line)).not.toMatch(/s3cret/);
    expect(line).toMatchObject({ msg: 'configuration', svc: 'pg-egress', level: 30, rows: 7, private_key: '***', status_token: '***' });
    expect(line.source).toEqual({ host: 'db', password: '***', port: 5432 });
    expect(line.near).toEqual({ privateKey: '***', account: 'a.near' });
    expect(line.http).toEqual({ statusToken: '***' });
    // The caller's objects are not changed.
    expect(source.password).toBe('s3cret-1');
    expect(fields.near.privateKey).toBe('s3cret-3');
  });

  it('returns the very same object when there is nothing to censor (no copy per line)', () => {
    const fields = { table: 'public.t', rows: 1000, parts: [1, 2], nested: { a: 1 } };
    expect(censorSecrets(fields)).toBe(fields);
    // Arrays are values, not objects with keys: a password inside one is not a field of the line.
    expect(censorSecrets({ list: [{ password: 'x' }] })).toEqual({ list: [{ password: 'x' }] });
  });
});
