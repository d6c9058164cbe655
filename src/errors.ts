/**
 * Typed errors with stable codes. Every error a user can cause or fix carries a one-line message
 * that names the cause and the setting to change, and maps to a documented process exit code
 * (README "Exit codes"). Messages must never contain secrets.
 */

export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  CONFIG: 2,
  SOURCE_UNREACHABLE: 3,
  SOURCE_MISCONFIGURED: 4,
  PERMISSION: 5,
  SLOT: 6,
  NOT_FOUND: 7,
  OUTPUT: 8,
  ATTENTION: 9,
  VERIFY_FAILED: 10,
  ANCHOR: 11,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_ENV_UNSET'
  | 'CONFIG_NOT_FOUND'
  | 'SOURCE_UNREACHABLE'
  | 'SOURCE_AUTH'
  | 'WAL_LEVEL'
  | 'SERVER_UNSUPPORTED'
  | 'NO_REPLICATION_PRIVILEGE'
  | 'INSUFFICIENT_PRIVILEGE'
  | 'NO_FREE_SLOT'
  | 'SLOT_IN_USE'
  | 'SLOT_INVALID'
  | 'UNKNOWN_TABLE'
  | 'OUTPUT_IO'
  | 'OUTPUT_OWNER'
  | 'DATA_GAP'
  | 'RELOAD_BLOCKED'
  | 'RELOAD_RACE'
  | 'LOCK_TIMEOUT'
  | 'VERIFY_FAILED'
  | 'NOT_FOUND_PATH'
  | 'ANCHOR_S3'
  | 'ANCHOR_NEAR'
  | 'ARCHIVE_TARGET'
  | 'PROTOCOL'
  | 'INTERNAL';

const exitFor: Record<ErrorCode, ExitCode> = {
  CONFIG_INVALID: ExitCode.CONFIG,
  CONFIG_ENV_UNSET: ExitCode.CONFIG,
  CONFIG_NOT_FOUND: ExitCode.CONFIG,
  SOURCE_UNREACHABLE: ExitCode.SOURCE_UNREACHABLE,
  SOURCE_AUTH: ExitCode.PERMISSION,
  WAL_LEVEL: ExitCode.SOURCE_MISCONFIGURED,
  SERVER_UNSUPPORTED: ExitCode.SOURCE_MISCONFIGURED,
  NO_REPLICATION_PRIVILEGE: ExitCode.PERMISSION,
  INSUFFICIENT_PRIVILEGE: ExitCode.PERMISSION,
  NO_FREE_SLOT: ExitCode.SLOT,
  SLOT_IN_USE: ExitCode.SLOT,
  SLOT_INVALID: ExitCode.SLOT,
  UNKNOWN_TABLE: ExitCode.NOT_FOUND,
  OUTPUT_IO: ExitCode.OUTPUT,
  OUTPUT_OWNER: ExitCode.OUTPUT,
  DATA_GAP: ExitCode.SLOT,
  RELOAD_BLOCKED: ExitCode.INTERNAL, // retried by the reloader, never an exit
  RELOAD_RACE: ExitCode.INTERNAL, // a DDL raced an export: redone from a new snapshot, never an exit
  LOCK_TIMEOUT: ExitCode.SOURCE_UNREACHABLE, // retried by the daemon; a one-shot command exits with it
  VERIFY_FAILED: ExitCode.VERIFY_FAILED,
  NOT_FOUND_PATH: ExitCode.NOT_FOUND,
  ANCHOR_S3: ExitCode.ANCHOR, // the daemon retries anchors in its queue; only a one-shot command exits with it
  ANCHOR_NEAR: ExitCode.ANCHOR,
  ARCHIVE_TARGET: ExitCode.OUTPUT, // rebuild/load: the target database refused a statement
  PROTOCOL: ExitCode.INTERNAL,
  INTERNAL: ExitCode.INTERNAL,
};

export class EgressError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  /** Errors worth retrying in the daemon (connection drops); fatal ones stop it. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, { cause: options.cause });
    this.name = 'EgressError';
    this.code = code;
    this.exitCode = exitFor[code];
    this.retryable = options.retryable ?? false;
  }
}

export const isEgressError = (e: unknown): e is EgressError => e instanceof EgressError;
