/**
 * Turns what the AWS SDK throws into one-line EgressErrors (SPEC §10) that name the setting to
 * change. The SDK's own messages are not passed on: some S3 errors echo the request (string to
 * sign, access key id), and a message must never carry credentials.
 */
import { EgressError } from '../errors.js';

export interface S3ErrorContext {
  bucket: string;
  region: string;
  endpoint: string;
}

/** Socket-level failures: the endpoint is down or unreachable, worth retrying later. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_SOCKET',
]);
const NETWORK_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'AbortError']);
const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'AllAccessDisabled', 'AccountProblem', 'Forbidden']);
const THROTTLED = new Set(['SlowDown', 'ServiceUnavailable', 'InternalError', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'ExpiredToken', 'RequestTimeTooSkewed']);
const WRONG_REGION = new Set(['PermanentRedirect', 'AuthorizationHeaderMalformed', 'IllegalLocationConstraintException', 'TemporaryRedirect']);

/** The endpoint as it may be shown: scheme, host and port only (a URL's user info or path may hold a secret). */
export function endpointLabel(ctx: S3ErrorContext): string {
  if (!ctx.endpoint) return `AWS S3 (${ctx.region})`;
  try {
    const u = new URL(ctx.endpoint);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'anchors.s3.endpoint';
  }
}

interface SdkErrorShape {
  name?: string;
  code?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number };
  cause?: unknown;
}

function networkCode(e: SdkErrorShape, depth = 0): string | null {
  if (e.code && NETWORK_CODES.has(e.code)) return e.code;
  if (e.name && NETWORK_NAMES.has(e.name)) return e.name;
  if (depth < 3 && e.cause && typeof e.cause === 'object') return networkCode(e.cause as SdkErrorShape, depth + 1);
  return null;
}

/**
 * `what` says what was being done, e.g. `upload of s3://bucket/key`. Network problems and server
 * faults are ANCHOR_S3_UNAVAILABLE (retryable, errors.ts); a missing bucket, refused credentials or
 * a wrong region are ANCHOR_S3 (not retryable: the configuration or the bucket policy must change).
 */
export function s3Error(err: unknown, what: string, ctx: S3ErrorContext): EgressError {
  if (err instanceof EgressError) return err;
  const e = (err && typeof err === 'object' ? err : {}) as SdkErrorShape;
  const name = e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const http = status ? `, HTTP ${status}` : '';
  const where = endpointLabel(ctx);
  const fail = (msg: string, unavailable: boolean) => new EgressError(unavailable ? 'ANCHOR_S3_UNAVAILABLE' : 'ANCHOR_S3', `S3 anchor: ${msg}`, { cause: err });

  const net = status === undefined ? networkCode(e) : null;
  if (net) return fail(`${what} failed: endpoint ${where} unreachable (${net}); check anchors.s3.endpoint and the network (will retry)`, true);
  if (name === 'CredentialsProviderError' || name === 'ProviderError') {
    return fail(`${what} failed: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the standard AWS credential chain`, false);
  }
  if (name === 'NoSuchBucket') return fail(`${what} failed: bucket "${ctx.bucket}" does not exist at ${where}; check anchors.s3.bucket (and anchors.s3.endpoint / region)`, false);
  if (WRONG_REGION.has(name) || status === 301) return fail(`${what} failed: bucket "${ctx.bucket}" is not in region ${ctx.region} (${name}${http}); check anchors.s3.region`, false);
  if (THROTTLED.has(name) || status === 429 || status === 503) return fail(`${what} failed: ${where} is busy or failing (${name}${http}) (will retry)`, true);
  if (DENIED.has(name) || status === 403) {
    return fail(`${what} failed: access denied (${name}${http}); check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE) and the policy of anchors.s3.bucket "${ctx.bucket}"`, false);
  }
  if (e.$fault === 'server' || (status !== undefined && status >= 500)) return fail(`${what} failed: server error at ${where} (${name}${http}) (will retry)`, true);
  if (status === undefined && !e.$fault) return fail(`${what} failed: ${name} talking to ${where}; check anchors.s3.endpoint (will retry)`, true);
  return fail(`${what} refused by ${where} (${name}${http}); check anchors.s3.bucket / prefix / endpoint`, false);
}

/** True when S3 says the object is not there (GetObject says NoSuchKey, HeadObject just 404). */
export function isNotFound(err: unknown): boolean {
  const e = (err && typeof err === 'object' ? err : {}) as SdkErrorShape;
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || (e.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket');
}
