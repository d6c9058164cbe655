/**
 * A NEAR JSON-RPC node for the anchor tests (node:http, 127.0.0.1 only): it answers what
 * near-api-js asks (`query` view_access_key / view_account / call_function, `block`, `status`,
 * `gas_price`, `send_tx`, `broadcast_tx_commit`, `tx`) in nearcore's shapes, and checks each
 * transaction the way a node does: borsh-decoded, its ed25519 signature verified with Node's
 * crypto over sha256(borsh(Transaction)) against the signer's registered access key, a known
 * recent block hash and a nonce above the key's. Function calls go to the NFT contract
 * (near-nft-contract.ts). Every request, transaction and mint is recorded for the tests.
 * near-sandbox is no option here: it downloads a node binary at run time.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { baseEncode, decodeSignedTransaction, encodeTransaction } from 'near-api-js';
import { NftContract, type ContractOutcome, type NftContractOptions, type NftToken } from './near-nft-contract.js';

export interface RecordedTx {
  hash: string;
  signerId: string;
  receiverId: string;
  nonce: bigint;
  /** 'applied': executed (its status may still be a Failure); 'rejected': refused before execution. */
  result: 'applied' | 'rejected';
  reason?: string;
  method?: string;
  args?: unknown;
  deposit?: bigint;
  gas?: bigint;
  outcome?: Record<string, unknown>;
}

export interface RecordedMint {
  token: NftToken;
  txHash: string;
  signerId: string;
  deposit: bigint;
  gas: bigint;
  blockHeight: number;
}

export interface NearRpcServerOptions extends Omit<NftContractOptions, 'ownerId'> {
  /** The minting account and its registered full-access key (`ed25519:<base58>` public key). */
  account: { accountId: string; publicKey: string; nonce?: bigint };
  chainId?: string;
}

export interface NearRpcServer {
  url: string;
  port: number;
  /** Every JSON-RPC request, in order. */
  calls: { method: string; params: unknown }[];
  txs: RecordedTx[];
  mints: Map<string, RecordedMint>;
  contract: NftContract;
  accessKeyNonce(): bigint;
  /** Apply the next send_tx, then drop its connection without an answer (a lost response). */
  dropNextSendResponse(): void;
  /** Stop listening and cut open connections (the RPC is down); start() listens on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

type Json = Record<string, unknown>;

class RpcFailure extends Error {
  constructor(readonly error: Json) {
    super(JSON.stringify(error));
  }
}

const handlerError = (name: string, info: Json, data?: unknown) =>
  new RpcFailure({ name: 'HANDLER_ERROR', cause: { name, info }, code: -32000, message: 'Server error', data: data ?? JSON.stringify(info) });
const requestError = (name: string, info: Json) => new RpcFailure({ name: 'REQUEST_VALIDATION_ERROR', cause: { name, info }, code: -32601, message: 'Method not found', data: name });
const invalidTx = (reason: string, invalidTxError: unknown) => {
  const e = handlerError('INVALID_TRANSACTION', { TxExecutionError: { InvalidTxError: invalidTxError } }, { TxExecutionError: { InvalidTxError: invalidTxError } });
  return Object.assign(e, { reason });
};

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const MAX_GAS = 300n * 10n ** 12n;

export async function startNearRpcServer(opts: NearRpcServerOptions): Promise<NearRpcServer> {
  const contract = new NftContract({ ...opts, ownerId: opts.account.accountId });
  const signer = { id: opts.account.accountId, publicKey: opts.account.publicKey, nonce: opts.account.nonce ?? 1000n };
  const chainId = opts.chainId ?? 'pg-egress-test';
  const calls: NearRpcServer['calls'] = [];
  const txs: RecordedTx[] = [];
  const mints = new Map<string, RecordedMint>();
  const applied = new Map<string, RecordedTx>(); // by tx hash: a re-sent transaction gets its outcome again
  const blocks = new Map<string, number>(); // hash → height, the blocks a transaction may reference
  let height = 1_000;
  let dropNext = false;

  const block = () => {
    height += 1;
    const hash = baseEncode(sha256(Buffer.from(`${chainId}/block/${height}`)));
    blocks.set(hash, height);
    return { hash, height };
  };
  let head = block();
  const at = () => ({ block_height: head.height, block_hash: head.hash });

  function query(p: Json): Json {
    const accountId = String(p.account_id ?? '');
    const known = accountId === signer.id || accountId === contract.accountId;
    if (!known) throw handlerError('UNKNOWN_ACCOUNT', { requested_account_id: accountId, ...at() });
    switch (p.request_type) {
      case 'view_access_key':
        if (accountId !== signer.id || p.public_key !== signer.publicKey) throw handlerError('UNKNOWN_ACCESS_KEY', { public_key: String(p.public_key), ...at() });
        return { nonce: Number(signer.nonce), permission: 'FullAccess', ...at() };
      case 'view_account':
        return { amount: (10n ** 26n).toString(), locked: '0', code_hash: accountId === contract.accountId ? baseEncode(sha256(Buffer.from('nft'))) : '11111111111111111111111111111111', storage_usage: 500, storage_paid_at: 0, ...at() };
      case 'call_function': {
        if (accountId !== contract.accountId) {
          const error = { CompilationError: { CodeDoesNotExist: { account_id: accountId } } };
          throw handlerError('CONTRACT_EXECUTION_ERROR', { error, vm_error: JSON.stringify(error), ...at() });
        }
        const out = contract.view(String(p.method_name), Buffer.from(String(p.args_base64 ?? ''), 'base64'));
        if (!out.ok) throw handlerError('CONTRACT_EXECUTION_ERROR', { error: out.error, vm_error: JSON.stringify(out.error), ...at() });
        return { result: [...Buffer.from(JSON.stringify(out.value))], logs: out.logs, ...at() };
      }
      default:
        throw requestError('PARSE_ERROR', { error_message: `unsupported request_type ${String(p.request_type)}` });
    }
  }

  function reject(rec: RecordedTx, err: RpcFailure & { reason?: string }): never {
    rec.result = 'rejected';
    rec.reason = err.reason;
    txs.push(rec);
    throw err;
  }

  /** Validates and executes one signed transaction; returns its FinalExecutionOutcome. */
  function sendTx(b64: string, waitUntil: string): Json {
    const bytes = Buffer.from(b64, 'base64');
    let signed;
    try {
      signed = decodeSignedTransaction(bytes);
    } catch {
      throw requestError('PARSE_ERROR', { error_message: 'Failed to decode transaction' });
    }
    const tx = signed.transaction;
    const txBytes = Buffer.from(encodeTransaction(tx));
    const hashBytes = sha256(txBytes);
    const hash = baseEncode(hashBytes);
    const again = applied.get(hash);
    if (again) return { ...again.outcome!, final_execution_status: waitUntil };

    const pkRaw = tx.publicKey.ed25519Key?.data;
    const sigRaw = signed.signature.ed25519Signature?.data;
    const publicKey = pkRaw ? `ed25519:${baseEncode(Uint8Array.from(pkRaw))}` : 'secp256k1:?';
    const rec: RecordedTx = { hash, signerId: tx.signerId, receiverId: tx.receiverId, nonce: BigInt(tx.nonce), result: 'rejected' };
    // The signature covers sha256 of the borsh Transaction, which is the signed bytes minus the signature.
    if (!txBytes.equals(bytes.subarray(0, txBytes.length))) throw requestError('PARSE_ERROR', { error_message: 'trailing bytes after the transaction' });
    if (!pkRaw || !sigRaw || !verifyEd25519(Buffer.from(pkRaw), hashBytes, Buffer.from(sigRaw))) reject(rec, invalidTx('InvalidSignature', 'InvalidSignature'));
    if (tx.signerId !== signer.id) reject(rec, invalidTx('SignerDoesNotExist', { SignerDoesNotExist: { signer_id: tx.signerId } }));
    if (publicKey !== signer.publicKey) reject(rec, invalidTx('AccessKeyNotFound', { InvalidAccessKeyError: { AccessKeyNotFound: { account_id: tx.signerId, public_key: publicKey } } }));
    if (!blocks.has(baseEncode(Uint8Array.from(tx.blockHash)))) reject(rec, invalidTx('Expired', 'Expired'));
    if (BigInt(tx.nonce) <= signer.nonce) reject(rec, invalidTx('InvalidNonce', { InvalidNonce: { tx_nonce: Number(tx.nonce), ak_nonce: Number(signer.nonce) } }));
    const fc = tx.actions.length === 1 ? tx.actions[0].functionCall : undefined;
    if (fc && BigInt(fc.gas) > MAX_GAS) {
      reject(rec, invalidTx('TotalPrepaidGasExceeded', { ActionsValidation: { TotalPrepaidGasExceeded: { total_prepaid_gas: Number(fc.gas), limit: Number(MAX_GAS) } } }));
    }

    // Included: the nonce is used whatever the execution's result.
    signer.nonce = BigInt(tx.nonce);
    head = block();
    rec.result = 'applied';
    let out: ContractOutcome;
    if (!fc) {
      out = { ok: false, error: { ExecutionError: 'this test node runs exactly one FunctionCall action per transaction' } };
    } else {
      Object.assign(rec, { method: fc.methodName, args: parseArgs(fc.args), deposit: BigInt(fc.deposit), gas: BigInt(fc.gas) });
      if (tx.receiverId !== contract.accountId) {
        out = { ok: false, error: { ExecutionError: `no contract at ${tx.receiverId}` } };
      } else {
        out = contract.call({
          predecessorId: tx.signerId,
          method: fc.methodName,
          args: Buffer.from(Uint8Array.from(fc.args)),
          deposit: BigInt(fc.deposit),
          gas: BigInt(fc.gas),
        });
      }
      if (out.ok && fc.methodName === (opts.mintMethod ?? 'nft_mint')) {
        const token = out.value as NftToken;
        mints.set(
          token.token_id,
          { token, txHash: hash, signerId: tx.signerId, deposit: BigInt(fc.deposit), gas: BigInt(fc.gas), blockHeight: head.height },
        );
      }
    }
    if (!out.ok) rec.reason = JSON.stringify(out.error);
    rec.outcome = outcome(hash, tx, fc, out, signed.signature.ed25519Signature ? `ed25519:${baseEncode(Uint8Array.from(sigRaw!))}` : '', waitUntil);
    txs.push(rec);
    applied.set(hash, rec);
    return rec.outcome;
  }

  function outcome(hash: string, tx: ReturnType<typeof decodeSignedTransaction>['transaction'], fc: { methodName: string; args: Uint8Array; gas: bigint; deposit: bigint } | undefined, out: ContractOutcome, signature: string, waitUntil: string): Json {
    const receiptId = baseEncode(sha256(Buffer.from(`receipt/${hash}`)));
    const status = out.ok ? { SuccessValue: Buffer.from(JSON.stringify(out.value)).toString('base64') } : { Failure: { ActionError: { index: 0, kind: { FunctionCallError: out.error } } } };
    const meta = { version: 3, gas_profile: [] };
    return {
      final_execution_status: waitUntil,
      status,
      transaction: {
        signer_id: tx.signerId,
        public_key: signer.publicKey,
        nonce: Number(tx.nonce),
        receiver_id: tx.receiverId,
        actions: fc ? [{ FunctionCall: { method_name: fc.methodName, args: Buffer.from(Uint8Array.from(fc.args)).toString('base64'), gas: Number(fc.gas), deposit: String(fc.deposit) } }] : [],
        priority_fee: 0,
        signature,
        hash,
      },
      transaction_outcome: {
        id: hash,
        block_hash: head.hash,
        proof: [],
        outcome: { logs: [], receipt_ids: [receiptId], gas_burnt: 2_428_000_000_000, tokens_burnt: '0', executor_id: tx.signerId, status: { SuccessReceiptId: receiptId }, metadata: meta },
      },
      receipts_outcome: [
        {
          id: receiptId,
          block_hash: head.hash,
          proof: [],
          outcome: { logs: out.ok ? out.logs : [], receipt_ids: [], gas_burnt: 5_000_000_000_000, tokens_burnt: '0', executor_id: tx.receiverId, status, metadata: meta },
        },
      ],
    };
  }

  function dispatch(method: string, params: unknown): Json {
    const p = (params ?? {}) as Json;
    switch (method) {
      case 'query':
        return query(p);
      case 'block':
        return { author: 'test-node', header: { height: head.height, hash: head.hash, prev_hash: head.hash, timestamp: Date.now() * 1e6, timestamp_nanosec: String(Date.now() * 1e6), gas_price: '100000000', chunks_included: 1 }, chunks: [] };
      case 'status':
        return { chain_id: chainId, protocol_version: 78, version: { version: 'test', build: 'pg-egress' }, sync_info: { latest_block_hash: head.hash, latest_block_height: head.height, syncing: false } };
      case 'gas_price':
        return { gas_price: '100000000' };
      case 'send_tx':
        return sendTx(String(p.signed_tx_base64), String(p.wait_until ?? 'EXECUTED_OPTIMISTIC'));
      case 'broadcast_tx_commit':
        return sendTx(String((params as unknown[])[0]), 'EXECUTED_OPTIMISTIC');
      case 'tx': {
        const rec = applied.get(String(p.tx_hash));
        if (!rec) throw handlerError('UNKNOWN_TRANSACTION', { requested_transaction_hash: String(p.tx_hash) });
        return rec.outcome!;
      }
      default:
        throw requestError('METHOD_NOT_FOUND', { method_name: method });
    }
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: { id?: unknown; method?: unknown; params?: unknown };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400).end('bad JSON');
        return;
      }
      const method = String(body.method);
      calls.push({ method, params: body.params });
      let answer: Json;
      try {
        answer = { jsonrpc: '2.0', id: body.id, result: dispatch(method, body.params) };
      } catch (e) {
        if (!(e instanceof RpcFailure)) throw e;
        answer = { jsonrpc: '2.0', id: body.id, error: e.error };
      }
      if ((method === 'send_tx' || method === 'broadcast_tx_commit') && dropNext && 'result' in answer) {
        dropNext = false;
        res.socket?.destroy(); // applied, but the client never hears of it
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const port = await listen(0);
  let listening = true;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    calls,
    txs,
    mints,
    contract,
    accessKeyNonce: () => signer.nonce,
    dropNextSendResponse: () => {
      dropNext = true;
    },
    async stop() {
      if (!listening) return;
      listening = false;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
    async start() {
      if (listening) return;
      await listen(port);
      listening = true;
    },
  };
}

/** Node's own ed25519 (not the client library's), from the raw 32-byte public key. */
function verifyEd25519(publicKey: Buffer, message: Buffer, signature: Buffer): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
  return verify(null, message, key, signature);
}

function parseArgs(args: Uint8Array | number[]): unknown {
  try {
    return JSON.parse(Buffer.from(Uint8Array.from(args)).toString('utf8'));
  } catch {
    return null;
  }
}
