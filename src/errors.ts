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

/**
 * The one error policy: every code's exit code (README "Exit codes") and whether the daemon tries
 * it again. `retry` is decided here, by the code, never at a throw site: a cause that is worth
 * retrying (a dropped connection, a busy anchor target, a lock wait, a DDL racing an export) has
 * its own code, so the same code never means both "wait and retry" and "stop, the operator must
 * act". Readers of `retryable`: the daemon's reconnect loop (daemon.ts), the reloader
 * (reload/reloader.ts) and the anchor queue (anchor/worker.ts); a one-shot command exits with
 * `exit` either way.
 */
const policy = {
  CONFIG_INVALID: { exit: ExitCode.CONFIG, retry: false },
  CONFIG_ENV_UNSET: { exit: ExitCode.CONFIG, retry: false },
  CONFIG_NOT_FOUND: { exit: ExitCode.CONFIG, retry: false },
  // Connection refused, DNS, timeouts, a connection lost mid-stream, a stop during a wait.
  SOURCE_UNREACHABLE: { exit: ExitCode.SOURCE_UNREACHABLE, retry: true },
  // The database named by source.url does not exist (SQLSTATE 3D000): the configuration must change.
  SOURCE_NO_DATABASE: { exit: ExitCode.SOURCE_UNREACHABLE, retry: false },
  SOURCE_AUTH: { exit: ExitCode.PERMISSION, retry: false },
  WAL_LEVEL: { exit: ExitCode.SOURCE_MISCONFIGURED, retry: false },
  SERVER_UNSUPPORTED: { exit: ExitCode.SOURCE_MISCONFIGURED, retry: false },
  NO_REPLICATION_PRIVILEGE: { exit: ExitCode.PERMISSION, retry: false },
  INSUFFICIENT_PRIVILEGE: { exit: ExitCode.PERMISSION, retry: false },
  NO_FREE_SLOT: { exit: ExitCode.SLOT, retry: false },
  // Another pg-egress or consumer holds the slot (daemon lock, still active after a wait, uninstall).
  SLOT_IN_USE: { exit: ExitCode.SLOT, retry: false },
  // START_REPLICATION refused with 55006 ("is active for PID"): after a reconnect that is most often
  // our own previous walsender that has not noticed its client died yet; it goes within moments.
  SLOT_BUSY: { exit: ExitCode.SLOT, retry: true },
  SLOT_INVALID: { exit: ExitCode.SLOT, retry: false },
  UNKNOWN_TABLE: { exit: ExitCode.NOT_FOUND, retry: false },
  OUTPUT_IO: { exit: ExitCode.OUTPUT, retry: false },
  // An output file changed size while the anchor worker uploaded it: read again on the next attempt.
  OUTPUT_CHANGED: { exit: ExitCode.OUTPUT, retry: true },
  OUTPUT_OWNER: { exit: ExitCode.OUTPUT, retry: false },
  DATA_GAP: { exit: ExitCode.SLOT, retry: false },
  RELOAD_BLOCKED: { exit: ExitCode.INTERNAL, retry: true }, // retried by the reloader, never an exit
  RELOAD_RACE: { exit: ExitCode.INTERNAL, retry: true }, // a DDL raced an export: redone from a new snapshot, never an exit
  LOCK_TIMEOUT: { exit: ExitCode.SOURCE_UNREACHABLE, retry: true }, // retried by the daemon; a one-shot command exits with it
  VERIFY_FAILED: { exit: ExitCode.VERIFY_FAILED, retry: false },
  NOT_FOUND_PATH: { exit: ExitCode.NOT_FOUND, retry: false },
  // Anchor targets: refused (configuration, credentials, bucket policy, contract) is for an
  // operator; unavailable (unreachable, busy, failing, not confirmed in time) is retried by the queue.
  ANCHOR_S3: { exit: ExitCode.ANCHOR, retry: false },
  ANCHOR_S3_UNAVAILABLE: { exit: ExitCode.ANCHOR, retry: true },
  ANCHOR_NEAR: { exit: ExitCode.ANCHOR, retry: false },
  ANCHOR_NEAR_UNAVAILABLE: { exit: ExitCode.ANCHOR, retry: true },
  ARCHIVE_TARGET: { exit: ExitCode.OUTPUT, retry: false }, // rebuild/load: the target database refused a statement
  // rebuild/load: cannot connect to the --into PostgreSQL (one-shot commands, never retried).
  ARCHIVE_TARGET_UNREACHABLE: { exit: ExitCode.SOURCE_UNREACHABLE, retry: false },
  // verify/rebuild/load/recover --from s3://: the archive cannot be read (one-shot commands).
  ARCHIVE_UNREACHABLE: { exit: ExitCode.SOURCE_UNREACHABLE, retry: false },
  PROTOCOL: { exit: ExitCode.INTERNAL, retry: false },
  INTERNAL: { exit: ExitCode.INTERNAL, retry: false },
} as const satisfies Record<string, { exit: ExitCode; retry: boolean }>;

export type ErrorCode = keyof typeof policy;

/** Every code, in the policy table's order (for tests and documentation). */
export const errorCodes = Object.keys(policy) as ErrorCode[];

/** Whether the daemon (reconnect loop, reloader, anchor queue) tries an error with this code again. */
export const isRetryable = (code: ErrorCode): boolean => policy[code].retry;

/** The process exit code of an error with this code (README "Exit codes"). */
export const exitCodeOf = (code: ErrorCode): ExitCode => policy[code].exit;

export class EgressError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  /** Errors worth retrying in the daemon (connection drops); fatal ones stop it. Decided by `code`. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'EgressError';
    this.code = code;
    this.exitCode = exitCodeOf(code);
    this.retryable = isRetryable(code);
  }
}

export const isEgressError = (e: unknown): e is EgressError => e instanceof EgressError;
