/**
 * The one error policy (src/errors.ts): whether an error is retried is decided by its code, and
 * the mappings from driver, S3 and NEAR errors pick the code that carries the right decision.
 */
import { describe, expect, it } from 'vitest';
import { EgressError, ExitCode, errorCodes, exitCodeOf, isRetryable } from '../../src/errors.js';
import { sourceError } from '../../src/db/connect.js';
import { s3Error } from '../../src/anchor/s3-errors.js';
import { nearErrorOf } from '../../src/anchor/near-errors.js';
import { parseConfig } from '../../src/config/index.js';

const cfg = parseConfig('source:\n  url: postgres://egress@127.0.0.1:5432/shop\n', { env: {}, baseDir: '/tmp' });
const pgErr = (code: string, message: string) => Object.assign(new Error(message), { code });
const s3ctx = { bucket: 'b', region: 'us-east-1', endpoint: 'http://127.0.0.1:9' };
const nearCtx = { rpcUrl: 'http://127.0.0.1:9/key', accountId: 'a.test', contractId: 'c.test', method: 'nft_mint' };

describe('error policy', () => {
  it('retries exactly the transient causes: lost connections, a busy slot, lock waits, export races, unavailable anchor targets', () => {
    expect(errorCodes.filter(isRetryable).sort()).toEqual(
      [
        'ANCHOR_NEAR_UNAVAILABLE',
        'ANCHOR_S3_UNAVAILABLE',
        'LOCK_TIMEOUT',
        'OUTPUT_CHANGED',
        'RELOAD_BLOCKED',
        'RELOAD_RACE',
        'SLOT_BUSY',
        'SOURCE_UNREACHABLE',
      ].sort(),
    );
  });

  it('an error takes its retry decision and exit code from its code alone', () => {
    for (const code of errorCodes) {
      const e = new EgressError(code, 'x');
      expect(e.retryable, code).toBe(isRetryable(code));
      expect(e.exitCode, code).toBe(exitCodeOf(code));
    }
  });

  it('a retryable cause and its fatal sibling exit with the same documented code', () => {
    expect(exitCodeOf('SOURCE_NO_DATABASE')).toBe(exitCodeOf('SOURCE_UNREACHABLE'));
    expect(exitCodeOf('ARCHIVE_TARGET_UNREACHABLE')).toBe(ExitCode.SOURCE_UNREACHABLE);
    expect(exitCodeOf('ARCHIVE_UNREACHABLE')).toBe(ExitCode.SOURCE_UNREACHABLE);
    expect(exitCodeOf('SLOT_BUSY')).toBe(exitCodeOf('SLOT_IN_USE'));
    expect(exitCodeOf('OUTPUT_CHANGED')).toBe(exitCodeOf('OUTPUT_IO'));
    expect(exitCodeOf('ANCHOR_S3_UNAVAILABLE')).toBe(exitCodeOf('ANCHOR_S3'));
    expect(exitCodeOf('ANCHOR_NEAR_UNAVAILABLE')).toBe(exitCodeOf('ANCHOR_NEAR'));
  });
});

describe('sourceError picks the code that decides the retry', () => {
  const cases: [unknown, string, boolean][] = [
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), 'SOURCE_UNREACHABLE', true],
    [pgErr('57P01', 'terminating connection due to administrator command'), 'SOURCE_UNREACHABLE', true],
    // A write to a walsender the server terminated (seen in reconnect.test.ts): a lost connection.
    [Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' }), 'SOURCE_UNREACHABLE', true],
    [pgErr('3D000', 'database "shop" does not exist'), 'SOURCE_NO_DATABASE', false],
    [pgErr('55006', 'replication slot "s" is active for PID 42'), 'SLOT_BUSY', true],
    [pgErr('40P01', 'deadlock detected'), 'LOCK_TIMEOUT', true],
    [pgErr('28P01', 'password authentication failed for user "egress"'), 'SOURCE_AUTH', false],
    [pgErr('53400', 'all replication slots are in use'), 'NO_FREE_SLOT', false],
  ];
  it.each(cases)('%s → %s (retryable %s)', (e, code, retryable) => {
    expect(sourceError(e, cfg.source)).toMatchObject({ code, retryable });
  });

  it('names a server error by its SQLSTATE, and nothing else as one', () => {
    expect(sourceError(pgErr('XX000', 'cache lookup failed'), cfg.source, 'prepare the source database').message).toBe(
      'PostgreSQL error on egress@127.0.0.1:5432/shop: cache lookup failed (SQLSTATE XX000)',
    );
    const node = Object.assign(new Error('A dynamic import callback was not specified.'), { code: 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING' });
    expect(sourceError(node, cfg.source, 'prepare the source database')).toMatchObject({
      code: 'INTERNAL',
      message: 'cannot prepare the source database (egress@127.0.0.1:5432/shop): A dynamic import callback was not specified. (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING)',
    });
    expect(sourceError(new TypeError('x is not a function'), cfg.source, 'prepare the source database').message).toBe(
      'cannot prepare the source database (egress@127.0.0.1:5432/shop): x is not a function',
    );
  });
});

describe('anchor target errors: unavailable is retried, refused is not', () => {
  it('S3', () => {
    const down = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(s3Error(down, 'upload', s3ctx)).toMatchObject({ code: 'ANCHOR_S3_UNAVAILABLE', retryable: true });
    const busy = Object.assign(new Error('slow down'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } });
    expect(s3Error(busy, 'upload', s3ctx)).toMatchObject({ code: 'ANCHOR_S3_UNAVAILABLE', retryable: true });
    const noBucket = Object.assign(new Error('no bucket'), { name: 'NoSuchBucket', $metadata: { httpStatusCode: 404 } });
    expect(s3Error(noBucket, 'upload', s3ctx)).toMatchObject({ code: 'ANCHOR_S3', retryable: false });
    const denied = Object.assign(new Error('denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(s3Error(denied, 'upload', s3ctx)).toMatchObject({ code: 'ANCHOR_S3', retryable: false });
  });

  it('NEAR', async () => {
    const nearError = nearErrorOf(await import('near-api-js/rpc-errors'));
    const down = new TypeError('fetch failed', { cause: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }) });
    expect(nearError(down, 'mint', nearCtx)).toMatchObject({ code: 'ANCHOR_NEAR_UNAVAILABLE', retryable: true });
    const notJson = new SyntaxError('Unexpected token < in JSON');
    expect(nearError(notJson, 'mint', nearCtx)).toMatchObject({ code: 'ANCHOR_NEAR', retryable: false });
  });
});
