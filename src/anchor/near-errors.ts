/**
 * Turns what near-api-js throws into one-line EgressErrors (SPEC §10) that name the setting to
 * change. Only the RPC endpoint's scheme, host and port are shown: providers put API keys in the
 * URL's path or query. The private key is never part of any error near-api-js builds.
 */
import type * as RpcErrors from 'near-api-js/rpc-errors';
import { EgressError } from '../errors.js';

export interface NearErrorContext {
  rpcUrl: string;
  accountId: string;
  contractId: string;
  method: string;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Node's fetch fails with `TypeError: fetch failed` and the socket error as its cause. */
function networkCode(err: unknown, depth = 0): string | null {
  if (!err || typeof err !== 'object' || depth > 3) return null;
  const e = err as { code?: unknown; cause?: unknown; message?: unknown };
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
  if (err instanceof TypeError && e.message === 'fetch failed') return networkCode(e.cause, depth + 1) ?? 'fetch failed';
  return networkCode(e.cause, depth + 1);
}

export function rpcLabel(rpcUrl: string): string {
  try {
    const u = new URL(rpcUrl);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'anchors.near.rpc_url';
  }
}

/** Contract output is shown (it names what the contract wants), bounded to one short line. */
const short = (s: string) => s.replace(/\s+/g, ' ').slice(0, 200);

export type NearRpcErrors = typeof RpcErrors;

/**
 * `what` says what was being done (`mint of token …`, `view of nft_token …`). Network problems,
 * a busy or syncing node and expired or timed-out transactions are ANCHOR_NEAR_UNAVAILABLE
 * (retryable, errors.ts); a wrong account, key, contract, method, deposit or gas is ANCHOR_NEAR
 * (not retryable: the configuration or the account must change).
 *
 * near-api-js's error classes come from the caller (`nearErrorOf(await import('near-api-js/rpc-errors'))`,
 * as createNearTarget does): the package is ES modules only and the command's bundle is CommonJS,
 * which loads it with import() alone.
 */
export function nearErrorOf(rpc: NearRpcErrors): (err: unknown, what: string, ctx: NearErrorContext) => EgressError {
  const {
    AccessKeyDepositWithFunctionCallActionError,
    AccessKeyDoesNotExistError,
    AccessKeyMethodNameMismatchActionError,
    AccessKeyNotEnoughAllowanceActionError,
    AccessKeyNotFoundActionError,
    AccessKeyReceiverMismatchActionError,
    AccountDoesNotExistActionError,
    AccountDoesNotExistError,
    ContractCodeDoesNotExistError,
    ContractExecutionError,
    ContractMethodNotFoundError,
    HostGasExceededError,
    HostGasLimitExceededError,
    InternalHandlerError,
    InternalRpcError,
    InvalidNonceError,
    InvalidSignatureError,
    LackBalanceForStateActionError,
    NoSyncedBlocksError,
    NodeIsSyncingError,
    NotEnoughBalanceError,
    NotSyncedYetError,
    RpcError,
    ShardCongestedError,
    ShardStuckError,
    TransactionExpiredError,
    TransactionTimeoutError,
    UnavailableShardError,
  } = rpc;
  return function nearError(err: unknown, what: string, ctx: NearErrorContext): EgressError {
    if (err instanceof EgressError) return err;
    const where = rpcLabel(ctx.rpcUrl);
    const fail = (msg: string, unavailable: boolean) =>
      new EgressError(unavailable ? 'ANCHOR_NEAR_UNAVAILABLE' : 'ANCHOR_NEAR', `NEAR anchor: ${what} failed: ${msg}`, { cause: err });

    const net = networkCode(err);
    if (net) return fail(`RPC ${where} unreachable (${net}); check anchors.near.rpc_url and the network (will retry)`, true);
    const httpStatus = (err as { cause?: unknown })?.cause;
    if (err instanceof Error && !(err instanceof RpcError) && typeof httpStatus === 'number') {
      return fail(`RPC ${where} answered HTTP ${httpStatus} (will retry)`, true);
    }
    if ((err as { type?: unknown })?.type === 'RetriesExceeded') return fail(`RPC ${where} kept failing (will retry)`, true);
    if (err instanceof SyntaxError) return fail(`RPC ${where} did not answer JSON-RPC; check anchors.near.rpc_url`, false);

    if (err instanceof TransactionTimeoutError || err instanceof TransactionExpiredError || err instanceof InvalidNonceError) {
      return fail(`the transaction was not confirmed in time (${err.constructor.name}) (will retry; a retry never mints twice)`, true);
    }
    if ([
      NodeIsSyncingError,
      NotSyncedYetError,
      NoSyncedBlocksError,
      UnavailableShardError,
      ShardCongestedError,
      ShardStuckError,
      InternalRpcError,
      InternalHandlerError,
    ].some((c) => err instanceof c)) {
      return fail(`RPC ${where} is not ready (${(err as Error).constructor.name}) (will retry)`, true);
    }
    if (err instanceof AccountDoesNotExistError || err instanceof AccountDoesNotExistActionError) {
      const id = err.accountId;
      const setting = id === ctx.contractId ? 'anchors.near.contract_id' : 'anchors.near.account_id';
      return fail(`account ${id} does not exist on the network behind ${where}; check ${setting} (and anchors.near.network / rpc_url)`, false);
    }
    if (err instanceof AccessKeyDoesNotExistError || err instanceof AccessKeyNotFoundActionError || err instanceof InvalidSignatureError) {
      return fail(`the key in anchors.near.private_key is not an access key of ${ctx.accountId} (${err.constructor.name}); check anchors.near.private_key and anchors.near.account_id`, false);
    }
    if (err instanceof AccessKeyDepositWithFunctionCallActionError) {
      return fail(`a function-call access key cannot attach a deposit; use a full-access key in anchors.near.private_key or set anchors.near.deposit to 0 if ${ctx.contractId} allows it`, false);
    }
    if (
      err instanceof AccessKeyReceiverMismatchActionError ||
      err instanceof AccessKeyMethodNameMismatchActionError ||
      err instanceof AccessKeyNotEnoughAllowanceActionError
    ) {
      return fail(`the access key in anchors.near.private_key may not make this call (${err.constructor.name}); check its permissions against anchors.near.contract_id / method`, false);
    }
    if (err instanceof NotEnoughBalanceError || err instanceof LackBalanceForStateActionError) {
      return fail(`account ${ctx.accountId} has not enough NEAR for the deposit and gas; fund it or lower anchors.near.deposit`, false);
    }
    if (err instanceof ContractCodeDoesNotExistError) return fail(`no contract is deployed at ${ctx.contractId}; check anchors.near.contract_id`, false);
    if (err instanceof ContractMethodNotFoundError) return fail(`contract ${ctx.contractId} has no such method; check anchors.near.method ("${ctx.method}") and that the contract implements NEP-171`, false);
    if (err instanceof HostGasExceededError || err instanceof HostGasLimitExceededError) return fail(`the call ran out of gas; raise anchors.near.gas`, false);
    if (err instanceof ContractExecutionError) {
      return fail(`contract ${ctx.contractId} refused ${ctx.method}: ${short(err.message)}; check anchors.near.method / deposit / gas`, false);
    }
    const name = err instanceof Error ? err.constructor.name : typeof err;
    const text = (err instanceof Error ? err.message : String(err)).split(ctx.rpcUrl).join(where);
    return fail(`${name}: ${short(text)}`, false);

  };
}
