/**
 * The anchor worker (SPEC §9): beside the stream, on its own registry connections, it takes due
 * entries from the anchor queue one at a time. S3: every file of the batch (data files, schema,
 * ddl, manifests, the batch index last) is uploaded and read back. NEAR: one signed mint per
 * batch whose metadata references the uploaded batch index (reference_hash = base64 sha256 of
 * its bytes) and carries the batch root. Failures wait with exponential backoff and survive
 * restarts; nothing here can slow WAL consumption or lose an anchor.
 */
import { BackgroundLoop } from '../background-loop.js';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError, isEgressError } from '../errors.js';
import { claimS3Prefix } from './s3-owner.js';
import type { AnchorEntry, AnchorQueue } from '../registry/anchors.js';
import type { ServerInfo } from '../source/setup.js';
import type { S3Target } from './s3.js';
import type { NearTarget } from './near.js';
import { nearTokenId } from './near-token.js';
import { failpoint } from '../failpoints.js';

const MAX_BACKOFF_MS = 10 * 60_000;

export function backoffMs(attempts: number): number {
  return Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(attempts, 20)) * (0.75 + Math.random() * 0.5);
}

export class AnchorWorker {
  private readonly bg = new BackgroundLoop(() => this.loop());
  private s3: S3Target | null = null;
  private near: NearTarget | null = null;
  /** A prefix owned by another deployment (src/anchor/s3-owner.ts): the daemon exits with it. */
  fatal: Error | null = null;

  constructor(
    private readonly cfg: Config,
    private readonly log: Logger,
    private readonly queue: AnchorQueue,
    private readonly server: ServerInfo,
    /** Whether the S3 prefix's owner was checked at start; if not, it is before the first upload. */
    private s3OwnerChecked = true,
  ) {}

  start(): void {
    this.bg.start();
  }

  wake(): void {
    this.bg.wake();
  }

  /** Stops within a few seconds: an upload or mint in flight is left to its lease (redone later). */
  async stop(): Promise<void> {
    await this.bg.stop({ timeoutMs: 5000 });
    this.s3?.close();
  }

  private get stopping(): boolean {
    return this.bg.stopping;
  }

  private sleep(ms: number): Promise<void> {
    return this.bg.sleep(ms);
  }

  private async loop(): Promise<void> {
    // The AWS SDK and near-api-js take ~0.3 s to load: only a daemon with anchors pays for them.
    if (this.cfg.anchors.s3) this.s3 = (await import('./s3.js')).createS3Target(this.cfg.anchors.s3);
    if (this.cfg.anchors.near) this.near = await (await import('./near.js')).createNearTarget(this.cfg.anchors.near);
    await this.queue.releaseLeases().catch(() => undefined);
    while (!this.stopping) {
      let entry: AnchorEntry | null;
      try {
        entry = await this.queue.claim();
      } catch (e) {
        this.log.warn({ err: String(e) }, 'anchor queue not readable; retrying');
        await this.sleep(5000);
        continue;
      }
      if (!entry) {
        await this.sleep(1000);
        continue;
      }
      const started = Date.now();
      try {
        const reference = entry.target === 's3' ? await this.uploadBatch(entry.batchId) : await this.mintBatch(entry.batchId);
        await failpoint('anchor-after-upload');
        await this.queue.done(entry.id, reference);
        // Done after failing: the target is back, the others waiting out their backoff go now.
        if (entry.attempts > 1) await this.queue.resumeWaiting(entry.target).catch(() => undefined);
        this.log.info({ batch: entry.batchId, target: entry.target, ms: Date.now() - started, ...reference }, 'anchored');
      } catch (e) {
        const retryable = !isEgressError(e) || e.retryable;
        const msg = (e as Error).message.split('\n')[0];
        if (retryable) {
          const delay = backoffMs(entry.attempts);
          await this.queue.retry(entry.id, msg, delay).catch(() => undefined);
          this.log.warn({ batch: entry.batchId, target: entry.target, attempt: entry.attempts, retry_in_ms: Math.round(delay) }, `anchor not done: ${msg}`);
        } else {
          await this.queue.fail(entry.id, msg).catch(() => undefined);
          this.log.error({ batch: entry.batchId, target: entry.target }, `anchor failed (needs an operator): ${msg}`);
        }
      }
    }
  }

  private async uploadBatch(batchId: string): Promise<object> {
    if (!this.s3) throw new Error('anchors.s3 is not configured');
    if (!this.s3OwnerChecked) {
      const me = { system_identifier: this.server.systemIdentifier, database: this.server.database, slot: this.cfg.slot };
      try {
        await claimS3Prefix(this.s3, this.cfg.anchors.s3!, me, true);
      } catch (e) {
        if (isEgressError(e) && e.code === 'OUTPUT_OWNER') {
          this.fatal = e;
          this.bg.stopping = true;
        }
        throw e;
      }
      this.s3OwnerChecked = true;
    }
    const files = await this.queue.batchFiles(batchId);
    // The batch index last: once it is there, everything it names is there.
    files.sort((a, b) => Number(a.type === 'batch') - Number(b.type === 'batch'));
    for (const f of files) {
      if (this.stopping) throw new Error('stopping');
      await this.uploadOne(f);
    }
    const index = files.find((f) => f.type === 'batch');
    return { bucket: this.cfg.anchors.s3!.bucket, objects: files.length, index_key: index ? this.s3.key(index.path) : null };
  }

  /**
   * One file. A file missing from output.dir (a lost volume, or removed by retention after an
   * earlier upload whose record was lost) counts when S3 already holds exactly its bytes; missing
   * in both places, it is lost: not retried (src/output/lost-volume.ts records the gap).
   */
  private async uploadOne(f: { path: string; bytes: number; sha256: string }): Promise<void> {
    const local = path.join(this.cfg.output.dir, f.path);
    const present = await fsp.access(local).then(
      () => true,
      () => false,
    );
    if (!present) {
      if (await this.s3!.check(f.path, { bytes: f.bytes, sha256: f.sha256 })) return;
      throw new EgressError('OUTPUT_IO', `S3 anchor: ${f.path} is missing from output.dir and not in S3 with its registered sha256: its only copy is lost (see the files_lost gap in pg-egress status)`);
    }
    await this.s3!.upload(local, f.path, { bytes: f.bytes, sha256: f.sha256 });
  }

  private async mintBatch(batchId: string): Promise<object> {
    if (!this.near) throw new Error('anchors.near is not configured');
    const b = await this.queue.batch(batchId);
    if (!b) throw new Error(`batch ${batchId} is not registered`);
    // The index stays in output.dir (output.retain keeps it); after a lost volume it is read from S3.
    const local = await fsp.readFile(path.join(this.cfg.output.dir, b.indexPath)).catch(() => null);
    const bytes = local ?? (this.s3 ? await this.s3.getSmall(b.indexPath) : null);
    if (!bytes) throw new Error(`${b.indexPath} is not in output.dir${this.s3 ? ' nor in S3' : ''}: not anchoring it`);
    const sha = createHash('sha256').update(bytes).digest();
    if (sha.toString('hex') !== b.indexSha256) throw new Error(`${b.indexPath} differs from its registered sha256: not anchoring it`);
    const index = JSON.parse(bytes.toString('utf8')) as { merkle?: { tree_size: number; root: string } };
    const tokenId = nearTokenId(this.server.systemIdentifier, this.cfg.slot, batchId);
    const referenceUrl = this.s3 ? this.s3.url(b.indexPath) : b.indexPath;
    const r = await this.near.mint({
      tokenId,
      referenceUrl,
      referenceHash: sha.toString('base64'),
      extra: {
        batch_id: batchId,
        kind: b.kind,
        batch_root: index.merkle?.root ?? b.merkleRoot,
        tree_size: index.merkle?.tree_size ?? null,
        lsn: { start: b.lsnStart, end: b.lsnEnd },
        source: { database: this.server.database, system_identifier: this.server.systemIdentifier, slot: this.cfg.slot },
      },
    });
    return { token_id: tokenId, tx_hash: r.txHash, already_minted: r.alreadyMinted, contract: this.cfg.anchors.near!.contractId, reference: referenceUrl, reference_hash: sha.toString('base64') };
  }
}
