/**
 * The NFT contract of the test NEAR node: what a NEP-171/177 contract with an owner-only
 * `nft_mint` does, answered in nearcore's error shapes so near-api-js parses them as it would
 * from a real node. It checks what pg-egress sends: the args (token id, receiver, NEP-177
 * metadata with reference, base64-sha256 reference_hash and JSON `extra`), the attached deposit
 * (storage) and the prepaid gas; a second mint of a token id panics like the reference contract.
 */

/** nearcore's FunctionCallError JSON (the `kind` of an ActionError). */
export type FunctionCallError = { MethodResolveError: 'MethodNotFound' } | { ExecutionError: string } | { HostError: 'GasExceeded' };

export type ContractOutcome = { ok: true; value: unknown; logs: string[] } | { ok: false; error: FunctionCallError };

export interface NftTokenMetadata {
  title: string | null;
  reference: string;
  reference_hash: string;
  extra: string;
}

export interface NftToken {
  token_id: string;
  owner_id: string;
  metadata: NftTokenMetadata;
  approved_account_ids: Record<string, number>;
}

export interface NftContractOptions {
  accountId: string;
  /** The only account allowed to mint (the reference contract's owner check). */
  ownerId: string;
  mintMethod?: string;
  /** Storage deposit a mint must attach. */
  minDepositYocto?: bigint;
  /** Gas a mint burns: less prepaid gas runs out. */
  minGas?: bigint;
}

const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;
const panic = (msg: string): ContractOutcome => ({ ok: false, error: { ExecutionError: `Smart contract panicked: ${msg}` } });

export class NftContract {
  readonly accountId: string;
  readonly tokens = new Map<string, NftToken>();
  private readonly opts: Required<NftContractOptions>;

  constructor(opts: NftContractOptions) {
    this.opts = { mintMethod: 'nft_mint', minDepositYocto: 10n ** 22n, minGas: 10n ** 13n, ...opts };
    this.accountId = opts.accountId;
  }

  /** A view call (`query call_function`): only NEP-171 `nft_token`. */
  view(method: string, args: Buffer): ContractOutcome {
    if (method !== 'nft_token') return { ok: false, error: { MethodResolveError: 'MethodNotFound' } };
    const parsed = parseJson(args) as { token_id?: unknown } | null;
    if (!parsed || typeof parsed.token_id !== 'string') return panic('Failed to deserialize input from JSON.');
    return { ok: true, value: this.tokens.get(parsed.token_id) ?? null, logs: [] };
  }

  /** A FunctionCall action of a transaction that passed signature, key and nonce checks. */
  call(c: { predecessorId: string; method: string; args: Buffer; deposit: bigint; gas: bigint }): ContractOutcome {
    if (c.method !== this.opts.mintMethod) return { ok: false, error: { MethodResolveError: 'MethodNotFound' } };
    if (c.gas < this.opts.minGas) return { ok: false, error: { HostError: 'GasExceeded' } };
    const a = parseJson(c.args) as { token_id?: unknown; receiver_id?: unknown; token_metadata?: Record<string, unknown> } | null;
    const m = a?.token_metadata;
    if (!a || typeof a.token_id !== 'string' || typeof a.receiver_id !== 'string' || !m || typeof m !== 'object') return panic('Failed to deserialize input from JSON.');
    if (typeof m.reference !== 'string' || typeof m.reference_hash !== 'string' || !BASE64_SHA256.test(m.reference_hash)) {
      return panic('reference and a base64 sha256 reference_hash are required');
    }
    if (typeof m.extra !== 'string' || parseJson(Buffer.from(m.extra)) === null) return panic('extra must be a JSON string');
    if (c.predecessorId !== this.opts.ownerId) return panic('Unauthorized');
    if (this.tokens.has(a.token_id)) return panic('token_id must be unique');
    if (c.deposit < this.opts.minDepositYocto) return panic(`Must attach ${this.opts.minDepositYocto} yoctoNEAR to cover storage`);
    const token: NftToken = {
      token_id: a.token_id,
      owner_id: a.receiver_id,
      metadata: { title: typeof m.title === 'string' ? m.title : null, reference: m.reference, reference_hash: m.reference_hash, extra: m.extra },
      approved_account_ids: {},
    };
    this.tokens.set(a.token_id, token);
    // NEP-297 event, as near-contract-standards logs it.
    const event = { standard: 'nep171', version: '1.0.0', event: 'nft_mint', data: [{ owner_id: a.receiver_id, token_ids: [a.token_id] }] };
    return { ok: true, value: token, logs: [`EVENT_JSON:${JSON.stringify(event)}`] };
  }
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return null;
  }
}
