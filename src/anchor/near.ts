/**
 * NEAR anchor target (SPEC §9): one signed function call per flush, by default NEP-171 `nft_mint`
 * of a token whose id is derived from the batch, with NEP-177 metadata pointing at the batch
 * index (`reference`) and carrying its hash (`reference_hash`).
 *
 * A retried mint never anchors twice: before signing, `nft_token` is viewed and an existing token
 * is reported as already minted; a mint the contract refuses because the token appeared in the
 * meantime (a first attempt whose answer was lost) is settled the same way. An existing token whose
 * `reference_hash` differs is a conflict, never a success.
 *
 * Transactions are signed locally (`Account` + `KeyPairSigner`: RPC `query view_access_key`,
 * `block`, `send_tx`); the private key stays in memory and is never logged or put in an error.
 */
import type { KeyPairSigner, KeyPairString } from 'near-api-js';
import type { Config } from '../config/index.js';
import { EgressError } from '../errors.js';
import { nearErrorOf, rpcLabel, type NearErrorContext } from './near-errors.js';
import { TOKEN_ID_MAX } from './near-token.js';
export { nearTokenId } from './near-token.js';

export type NearSettings = NonNullable<Config['anchors']['near']>;

export interface NearMintRequest {
  tokenId: string;
  /** URL of the batch index (the S3 target's `url()`). */
  referenceUrl: string;
  /** base64(sha256(batch index bytes)), as NEP-177 `reference_hash` wants it. */
  referenceHash: string;
  /** Put in `extra` as a JSON string: batch root, tree size, source (SPEC §9). */
  extra: object;
  /** NEP-177 `title`; the token id when absent. */
  title?: string;
}

export interface NearMintResult {
  /** Hash (base58) of the mint transaction; null when the token was minted by an earlier call. */
  txHash: string | null;
  alreadyMinted: boolean;
}

/** What NEP-171 `nft_token` returns (metadata when the contract implements NEP-177). */
export interface NearToken {
  token_id: string;
  owner_id: string;
  metadata?: { title?: string | null; reference?: string | null; reference_hash?: string | null; extra?: string | null } | null;
}

export interface NearTarget {
  mint(req: NearMintRequest): Promise<NearMintResult>;
  /** The token as the contract has it now, or null. */
  token(tokenId: string): Promise<NearToken | null>;
}

export interface NearTargetOptions {
  /** How long one mint (view, sign, send and wait) may take before it fails as retryable. */
  timeoutMs?: number;
  /** The `send_tx` wait level: FINAL by default, so a reported anchor is in a final block. */
  waitUntil?: 'EXECUTED_OPTIMISTIC' | 'FINAL';
}

const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Async because near-api-js is loaded with `import()`: it is ES modules only (its package.json
 * exports name the "import" condition alone), and the command's bundle is CommonJS
 * (scripts/bundle.mjs), which can load an ES module on Node 20 only that way.
 */
export async function createNearTarget(cfg: NearSettings, opts: NearTargetOptions = {}): Promise<NearTarget> {
  const [api, rpcErrors] = await Promise.all([import('near-api-js'), import('near-api-js/rpc-errors')]);
  const { Account, JsonRpcProvider, KeyPairSigner: Signer, actions } = api;
  const { ActionExecutionError, ContractExecutionError, ContractMethodNotFoundError } = rpcErrors;
  const nearError = nearErrorOf(rpcErrors);
  const signer = parseSigner(Signer, cfg.privateKey);
  // near-api-js retries HTTP 408/500/503 itself (a re-sent send_tx carries the same signed bytes,
  // which NEAR deduplicates); a refused connection fails at once and the anchor queue retries.
  const provider = new JsonRpcProvider({ url: cfg.rpcUrl }, { retries: 3, wait: 500, backoff: 2 });
  const account = new Account(cfg.accountId, provider, signer);
  const ctx: NearErrorContext = { rpcUrl: cfg.rpcUrl, accountId: cfg.accountId, contractId: cfg.contractId, method: cfg.method };
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const waitUntil = opts.waitUntil ?? 'FINAL';

  async function token(tokenId: string): Promise<NearToken | null> {
    try {
      const res = await provider.callFunction({ contractId: cfg.contractId, method: 'nft_token', args: { token_id: tokenId } });
      if (res === undefined || res === null) return null;
      if (typeof res !== 'object' || typeof (res as NearToken).token_id !== 'string') {
        throw new EgressError('ANCHOR_NEAR', `NEAR anchor: ${cfg.contractId}.nft_token answered something that is not a NEP-171 token; check anchors.near.contract_id`);
      }
      return res as NearToken;
    } catch (err) {
      if (err instanceof ContractMethodNotFoundError) {
        throw new EgressError('ANCHOR_NEAR', `NEAR anchor: contract ${cfg.contractId} has no nft_token view, so it is not a NEP-171 contract; check anchors.near.contract_id`, { cause: err });
      }
      throw nearError(err, `view of nft_token ${tokenId} on ${cfg.contractId}`, ctx);
    }
  }

  /** An existing token: already anchored if it carries our reference_hash, a conflict if not. */
  function settle(existing: NearToken, req: NearMintRequest): NearMintResult {
    const theirs = existing.metadata?.reference_hash;
    if (theirs && theirs !== req.referenceHash) {
      throw new EgressError(
        'ANCHOR_NEAR',
        `NEAR anchor: token ${req.tokenId} on ${cfg.contractId} was minted with reference_hash ${theirs}, not ${req.referenceHash}: the batch index differs from the one anchored`,
      );
    }
    return { txHash: null, alreadyMinted: true };
  }

  async function mintOnce(req: NearMintRequest): Promise<NearMintResult> {
    const existing = await token(req.tokenId);
    if (existing) return settle(existing, req);
    const args = {
      token_id: req.tokenId,
      receiver_id: cfg.accountId,
      token_metadata: {
        title: req.title ?? req.tokenId,
        reference: req.referenceUrl,
        reference_hash: req.referenceHash,
        extra: JSON.stringify(req.extra),
      },
    };
    try {
      const res = await account.signAndSendTransaction({
        receiverId: cfg.contractId,
        actions: [actions.functionCall(cfg.method, args, cfg.gas, cfg.depositYocto)],
        waitUntil,
      });
      return { txHash: res.transaction_outcome?.id ?? res.transaction.hash, alreadyMinted: false };
    } catch (err) {
      // The contract refused: if the token exists now, an earlier attempt of ours (or a
      // concurrent one) minted it, and this is the retry that must not anchor twice.
      if (err instanceof ActionExecutionError || err instanceof ContractExecutionError) {
        const now = await token(req.tokenId).catch(() => null);
        if (now) return settle(now, req);
      }
      throw nearError(err, `mint of token ${req.tokenId} on ${cfg.contractId}`, ctx);
    }
  }

  async function mint(req: NearMintRequest): Promise<NearMintResult> {
    if (!req.tokenId || Buffer.byteLength(req.tokenId) > TOKEN_ID_MAX) throw new EgressError('INTERNAL', `NEAR anchor: token id must be 1..${TOKEN_ID_MAX} bytes`);
    if (!BASE64_SHA256.test(req.referenceHash)) throw new EgressError('INTERNAL', 'NEAR anchor: referenceHash must be the base64 of a sha256 (NEP-177 reference_hash)');
    return withTimeout(mintOnce(req), timeoutMs, () =>
      new EgressError('ANCHOR_NEAR_UNAVAILABLE', `NEAR anchor: mint of token ${req.tokenId} got no answer from RPC ${rpcLabel(cfg.rpcUrl)} within ${Math.round(timeoutMs / 1000)} s (will retry; a retry never mints twice)`),
    );
  }

  return { mint, token };
}

function parseSigner(Signer: typeof KeyPairSigner, privateKey: string): KeyPairSigner {
  const bad = () => new EgressError('CONFIG_INVALID', 'config: anchors.near.private_key must be an ed25519 secret key ("ed25519:<base58>")');
  if (!privateKey.startsWith('ed25519:')) throw bad();
  try {
    return Signer.fromSecretKey(privateKey as KeyPairString);
  } catch {
    throw bad(); // the library's message could quote the key
  }
}

/**
 * fetch() in near-api-js has no timeout of its own; a stalled RPC must not stall the anchor
 * worker. The abandoned call finishes (or fails) in the background, harmlessly: its outcome is
 * found by the next attempt's nft_token view.
 */
function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
