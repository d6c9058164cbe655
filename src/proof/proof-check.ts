/**
 * `verify-proof`: checks a proof file (./proof-file.ts) offline, link by link, from the record up
 * to the anchors (SPEC §9). Every hash is recomputed from bytes the proof carries; nothing the
 * proof merely states is trusted:
 *
 *   1. record → file root        RFC 9162 §2.1.3.2 over the record's leaf hash and audit path
 *   2. file root → manifest      the manifest's exact bytes list the file with that root and size
 *   3. manifest → batch index    the batch index's exact bytes list the manifest with its sha256
 *   4. file root → batch root    RFC 9162 §2.1.3.2 over the file root's leaf and its batch audit path
 *   5. batch root → batch index  the batch index's bytes state that batch root and tree size
 *   6. batch index → sha256      the sha256 of those bytes is the index_sha256 the anchors pin
 *   7. sha256 → anchors          NEAR reference_hash = base64(sha256), the S3 keys name the index
 *
 * What cannot be checked without the network (that the NEAR token exists with that hash, that the
 * S3 objects hold these bytes) is listed, never claimed. No `pg` import, no network.
 */
import { sha256Hex } from '../hash.js';
import { leafHash, verifyInclusion } from './merkle.js';

export const PROOF_FORMAT = 'pg-egress.proof/2';

/** A link of the chain that does not hold: `verify-proof` names it and exits 10. */
export class ProofLinkError extends Error {
  constructor(
    readonly link: string,
    detail: string,
  ) {
    super(`${link}: ${detail}`);
  }
}

export interface ProofCheck {
  proves: string[];
  unchecked: string[];
}

const HEX32 = /^[0-9a-f]{64}$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads `a.b.c` of the proof with its expected type, or fails naming it (a malformed proof). */
function field<T>(o: unknown, dotted: string, kind: 'string' | 'number' | 'object' | 'hex32' | 'hex32[]' | 'base64'): T {
  let v: unknown = o;
  for (const k of dotted.split('.')) v = isObj(v) ? v[k] : undefined;
  const ok =
    kind === 'string' || kind === 'base64'
      ? typeof v === 'string' && (kind === 'string' || /^[A-Za-z0-9+/]*={0,2}$/.test(v))
      : kind === 'number'
        ? Number.isSafeInteger(v) && (v as number) >= 0
        : kind === 'object'
          ? isObj(v)
          : kind === 'hex32'
            ? typeof v === 'string' && HEX32.test(v)
            : Array.isArray(v) && v.every((x) => typeof x === 'string' && HEX32.test(x));
  if (!ok) throw new ProofLinkError('proof file', `${dotted} is missing or not ${kind === 'hex32' ? 'a 64-digit hex hash' : kind === 'hex32[]' ? 'a list of 64-digit hex hashes' : `a${kind === 'object' ? 'n' : ''} ${kind}`}`);
  return v as T;
}

function parseJsonBytes(bytes: Buffer, link: string, what: string): Obj {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    if (isObj(v)) return v;
  } catch {
    // named below
  }
  throw new ProofLinkError(link, `the ${what} the proof carries is not a JSON object`);
}

/** Checks a proof offline. Returns what it proves and what it could not check; throws ProofLinkError. */
export function checkProof(p: unknown): ProofCheck {
  if (!isObj(p)) throw new ProofLinkError('proof file', 'not a JSON object');
  if (p.format === 'pg-egress.proof/1') {
    throw new ProofLinkError('proof file', 'format pg-egress.proof/1 does not bind the batch root to the batch index bytes; write the proof again with this version (pg-egress verify <file> --row N --proof out.json)');
  }
  if (p.format !== PROOF_FORMAT || p.algorithm !== 'rfc6962-sha256') throw new ProofLinkError('proof file', `not a ${PROOF_FORMAT} proof (format or algorithm)`);
  const file = field<string>(p, 'file', 'string');
  const recIndex = field<number>(p, 'record.index', 'number');
  const record = Buffer.from(field<string>(p, 'record.base64', 'base64'), 'base64');
  if (record.toString('utf8') !== field<string>(p, 'record.text', 'string')) throw new ProofLinkError('record', 'record.text and record.base64 differ');
  const fileSize = field<number>(p, 'file_tree.size', 'number');
  const fileRootHex = field<string>(p, 'file_tree.root', 'hex32');
  const fileRoot = Buffer.from(fileRootHex, 'hex');
  const hex = (a: string[]) => a.map((x) => Buffer.from(x, 'hex'));

  // 1. record → file root
  if (!verifyInclusion(leafHash(record), recIndex, fileSize, hex(field<string[]>(p, 'file_tree.audit_path', 'hex32[]')), fileRoot)) {
    throw new ProofLinkError('record → file root', `record ${recIndex} with this audit path does not give root ${fileRootHex} (tree of ${fileSize})`);
  }

  // 2. file root → manifest (its exact bytes)
  const manifestPath = field<string>(p, 'manifest.path', 'string');
  const manifestBytes = Buffer.from(field<string>(p, 'manifest.base64', 'base64'), 'base64');
  const manifestSha = sha256Hex(manifestBytes);
  if (manifestSha !== field<string>(p, 'manifest.sha256', 'hex32')) throw new ProofLinkError('file root → manifest', `the manifest bytes hash to ${manifestSha}, not the stated manifest.sha256`);
  const slash = file.lastIndexOf('/');
  const [dir, base] = [file.slice(0, slash), file.slice(slash + 1)];
  if (slash < 0 || manifestPath !== `${dir}/manifest.json`) throw new ProofLinkError('file root → manifest', `${manifestPath} is not the manifest of ${file}'s folder`);
  const manifest = parseJsonBytes(manifestBytes, 'file root → manifest', 'manifest');
  const entries = Array.isArray(manifest.files) ? (manifest.files as unknown[]) : [];
  const entry = entries.find((f) => isObj(f) && f.name === base) as Obj | undefined;
  const merkle = entry && isObj(entry.merkle) ? entry.merkle : null;
  if (!merkle) throw new ProofLinkError('file root → manifest', `${manifestPath} does not list ${base} with a Merkle root`);
  if (merkle.root !== fileRootHex || merkle.tree_size !== fileSize) {
    throw new ProofLinkError('file root → manifest', `${manifestPath} lists ${base} with root ${String(merkle.root)} and ${String(merkle.tree_size)} records, not root ${fileRootHex} of ${fileSize}`);
  }

  // 3. manifest → batch index (its exact bytes)
  const batchId = field<string>(p, 'batch.batch_id', 'string');
  const indexPath = field<string>(p, 'batch.index_path', 'string');
  const indexBytes = Buffer.from(field<string>(p, 'batch.index_base64', 'base64'), 'base64');
  const index = parseJsonBytes(indexBytes, 'manifest → batch index', 'batch index');
  const listed = Array.isArray(index.manifests) ? (index.manifests as unknown[]) : [];
  if (!listed.some((m) => isObj(m) && m.path === manifestPath && m.sha256 === manifestSha)) {
    throw new ProofLinkError('manifest → batch index', `batch index ${indexPath} does not list ${manifestPath} with sha256 ${manifestSha}`);
  }
  if (index.batch_id !== batchId || manifest.batch_id !== batchId || indexPath !== `_batches/${batchId}.json`) {
    throw new ProofLinkError('manifest → batch index', `the batch ids differ (proof ${batchId}, index ${String(index.batch_id)}, manifest ${String(manifest.batch_id)}, path ${indexPath})`);
  }

  // 4. file root → batch root
  const batchRootHex = field<string>(p, 'batch.root', 'hex32');
  const batchSize = field<number>(p, 'batch.size', 'number');
  const leafIndex = field<number>(p, 'batch.leaf_index', 'number');
  if (!verifyInclusion(leafHash(fileRoot), leafIndex, batchSize, hex(field<string[]>(p, 'batch.audit_path', 'hex32[]')), Buffer.from(batchRootHex, 'hex'))) {
    throw new ProofLinkError('file root → batch root', `file root ${fileRootHex} as leaf ${leafIndex} with this audit path does not give batch root ${batchRootHex} (tree of ${batchSize})`);
  }

  // 5. batch root → batch index
  const im = isObj(index.merkle) ? index.merkle : {};
  if (im.root !== batchRootHex || im.tree_size !== batchSize) {
    throw new ProofLinkError('batch root → batch index', `batch index ${indexPath} states batch root ${String(im.root)} over ${String(im.tree_size)} files, not ${batchRootHex} over ${batchSize}`);
  }

  // 6. batch index bytes → sha256
  const indexSha = sha256Hex(indexBytes);
  if (indexSha !== field<string>(p, 'batch.index_sha256', 'hex32')) throw new ProofLinkError('batch index → sha256', `the batch index bytes hash to ${indexSha}, not the stated batch.index_sha256`);

  const proves = [
    `record ${recIndex} of ${file}: ${record.toString('utf8')}`,
    `1. record → file root: leaf ${recIndex} of the file's RFC 6962 tree of ${fileSize} records, root ${fileRootHex}`,
    `2. file root → manifest: ${manifestPath} (sha256 ${manifestSha}) lists ${base} with that root`,
    `3. manifest → batch index: ${indexPath} lists that manifest with its sha256`,
    `4. file root → batch root: leaf ${leafIndex} of batch ${batchId}'s tree of ${batchSize} file roots, root ${batchRootHex}`,
    `5. batch root → batch index: ${indexPath} states that batch root`,
    `6. batch index → sha256: the index's bytes (carried in the proof) hash to ${indexSha}`,
  ];
  const unchecked: string[] = [];

  // 7. sha256 → anchors
  const anchors = p.anchors;
  if (anchors !== null && anchors !== undefined && !isObj(anchors)) throw new ProofLinkError('sha256 → anchors', 'anchors is not an object');
  const near = isObj(anchors) && isObj(anchors.near) ? anchors.near : null;
  const s3 = isObj(anchors) && isObj(anchors.s3) ? anchors.s3 : null;
  if (near) {
    const want = Buffer.from(indexSha, 'hex').toString('base64');
    if (near.reference_hash !== want) throw new ProofLinkError('sha256 → NEAR reference_hash', `the NEAR anchor's reference_hash ${String(near.reference_hash)} is not base64(sha256 of the batch index) ${want}`);
    proves.push(`7. sha256 → NEAR: reference_hash ${want} = base64 of that sha256 (token_id ${String(near.token_id)} on ${String(near.contract)})`);
    unchecked.push(`that NEAR token ${String(near.token_id)} exists on ${String(near.contract)} with reference_hash ${want} (transaction ${String(near.tx_hash ?? '-')}): look it up with nft_token, or run pg-egress verify --config`);
  }
  if (s3) {
    const key = String(s3.index_key ?? '');
    if (!key.endsWith(indexPath)) throw new ProofLinkError('sha256 → S3 key', `the S3 index key ${key} does not name ${indexPath}`);
    proves.push(`${near ? '  ' : '7. '}S3: the batch index is s3://${String(s3.bucket)}/${key}, the file s3://${String(s3.bucket)}/${String(s3.file_key ?? '')}`);
    unchecked.push(`that s3://${String(s3.bucket)}/${key} holds these batch index bytes (sha256 ${indexSha})`);
  }
  if (!near && !s3) unchecked.push(`no anchor references: compare the batch index sha256 ${indexSha} with an anchor or a copy you trust (or write the proof with --config)`);
  if (index.prev !== undefined) unchecked.push(`that batch ${batchId} is in your archive's chain (prev ${isObj(index.prev) ? String(index.prev.batch_id) : 'none: the first'}): pg-egress verify <output.dir>`);
  return { proves, unchecked };
}
