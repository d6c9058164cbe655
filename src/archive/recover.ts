/**
 * `pg-egress recover --config cdc.yml --from <dir|s3://…>` (issue 17 item 3): rebuilds an empty or
 * missing registry from the archive, so that `run` continues where the archive ends without
 * exporting anything again.
 *
 * The archive's batch chain is read and checked as `rebuild` checks it (src/archive/catalog.ts:
 * every link by id and sha256, every manifest against its index, every batch root against its
 * files' Merkle roots); then each batch, in chain order, is checked file by file (sha256 and size
 * of every data file, schema.yml and ddl.sql, streamed from the archive) and registered from its
 * manifests exactly as a batch adopted from disk after a failover is (src/output/adopt.ts): files,
 * batch, tables, the registered LSN, the window sequence, and the anchor queue. A batch that does
 * not check out, or that another source or slot wrote, stops the recovery with exit 10 naming it,
 * before anything of it is registered (the batches before it stay registered: run `recover`
 * again after repairing the archive, or drop cdc_registry to start over).
 *
 * Afterwards: the initial export is marked as done (the archive holds it), S3 anchors of batches
 * read from the configured S3 prefix are done (they were just read back and matched), files that
 * are not in output.dir are recorded as S3 only, and the slot-position check of the next start
 * treats the slot as untracked (what the daemon confirmed before the registry was lost is not
 * known; an out-of-band slot move during that time cannot be told apart, README "Recovery").
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { lsnHex, type Lsn } from '../lsn.js';
import { createPool } from '../db/tx.js';
import { DaemonLock } from '../registry/lock.js';
import { migrate } from '../registry/migrate.js';
import { Registry } from '../registry/registry.js';
import { AdoptRegistry } from '../registry/adopt.js';
import { anchorTargets } from '../registry/anchors.js';
import { RetentionRegistry } from '../registry/retention.js';
import { markS3AnchorsRecovered, registeredBatchCount } from '../registry/recover.js';
import { checkServer } from '../source/setup.js';
import { sourceError } from '../db/connect.js';
import { register, verifyBatch, type BatchReader, type IndexDoc } from '../commit/adopt.js';
import type { LocalIntents } from '../commit/local-intents.js';
import { loadManifests, readCatalog } from './catalog.js';
import { openStore, type ArchiveStore, type S3Options } from './store.js';

export interface RecoverResult {
  batches: number;
  files: number;
  registeredLsn: Lsn;
  s3Only: number;
}

/** Reads a batch's files from the archive: manifests whole (small), data files streamed and hashed. */
export const storeBatchReader = (store: ArchiveStore): BatchReader => ({
  read: (rel) => store.readSmall(rel),
  async hash(rel) {
    let s;
    try {
      s = await store.stream(rel);
    } catch (e) {
      if (e instanceof EgressError && e.code === 'VERIFY_FAILED') return null; // missing
      throw e;
    }
    const h = createHash('sha256');
    let bytes = 0;
    for await (const chunk of s) {
      h.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { sha: h.digest('hex'), bytes };
  },
});

/** S3 options for --from: the flags, else anchors.s3's endpoint and region when --from is its prefix. */
export function recoverS3Options(cfg: Config, from: string, flags: S3Options): S3Options {
  const s3 = cfg.anchors.s3;
  if (!s3 || flags.endpoint || flags.region) return flags;
  return { endpoint: s3.endpoint || undefined, region: s3.region, forcePathStyle: flags.forcePathStyle ?? s3.forcePathStyle };
}

const sameS3Prefix = (cfg: Config, from: string) => {
  const s3 = cfg.anchors.s3;
  return s3 !== null && from.replace(/\/+$/, '') === `s3://${s3.bucket}${s3.prefix ? '/' + s3.prefix : ''}`;
};

const noIntents = { read: async () => null, done: async () => undefined } as unknown as LocalIntents;

export async function recover(cfg: Config, log: Logger, o: { from: string; s3: S3Options }): Promise<RecoverResult> {
  const lock = await DaemonLock.acquire(cfg.source, cfg.slot);
  const db = createPool(cfg.source, 2);
  const store = await openStore(o.from, recoverS3Options(cfg, o.from, o.s3));
  try {
    let server;
    try {
      server = await checkServer(db, cfg);
      const n = await registeredBatchCount(db, cfg.slot);
      if (n > 0) {
        throw new EgressError(
          'OUTPUT_OWNER',
          `the registry (cdc_registry) already holds ${n} batches of slot "${cfg.slot}"; recover only rebuilds an empty or missing registry: nothing was changed (pg-egress run adopts batches that continue its chain by itself)`,
        );
      }
      const applied = await migrate(db);
      if (applied.length) log.info({ versions: applied }, 'registry migrated');
    } catch (e) {
      throw sourceError(e, cfg.source, 'prepare the registry');
    }
    const cat = await readCatalog(store, { verify: true });
    if (!cat.batches.length) throw new EgressError('NOT_FOUND_PATH', `${store.label} holds no batch index (_batches/*.json): nothing to recover from; check --from`);
    // Links, manifests and batch roots of the whole chain before anything is registered.
    await loadManifests(cat, cat.batches.length - 1);
    const registry = new Registry(db, cfg.slot);
    const adopt = new AdoptRegistry(db, cfg.slot);
    await registry.ensureSlotState(cfg.publication);
    const reader = storeBatchReader(store);
    const deps = {
      outDir: cfg.output.dir,
      slot: cfg.slot,
      systemIdentifier: server.systemIdentifier,
      registry,
      adopt,
      intents: noIntents,
      anchors: anchorTargets(cfg),
      log,
      quiet: true,
    };
    let files = 0;
    for (const b of cat.batches) {
      const idx = b.doc as unknown as IndexDoc;
      const label = `${store.label}/_batches/${b.id}.json`;
      if (idx.slot !== cfg.slot || idx.source?.system_identifier !== server.systemIdentifier) {
        throw new EgressError(
          'VERIFY_FAILED',
          `batch ${b.id} (${label}) was written for slot "${idx.slot}" of system ${idx.source?.system_identifier}, not slot "${cfg.slot}" of this server (${server.systemIdentifier}); nothing of it was registered: check --from and slot`,
        );
      }
      const bytes = await store.readSmall(`_batches/${b.id}.json`);
      const checked = await verifyBatch(reader, idx, b.sha256, bytes?.length ?? 0);
      if (typeof checked === 'string') throw new EgressError('VERIFY_FAILED', `batch ${b.id} (${label}) does not check out: ${checked}; it and the batches after it were not registered`);
      await register(deps, idx, b.sha256, checked);
      files += checked.files.length;
    }
    // The archive holds the initial export: the next start must not ask for it again.
    await registry.takeInitialExport();
    if (sameS3Prefix(cfg, o.from)) await markS3AnchorsRecovered(db, cfg.slot, store.label);
    const ret = new RetentionRegistry(db, cfg.slot);
    const notLocal: string[] = [];
    for (const p of await ret.localPaths()) {
      const here = await fsp.access(path.join(cfg.output.dir, p)).then(
        () => true,
        () => false,
      );
      if (!here) notLocal.push(p);
    }
    await ret.markNotLocal(notLocal);
    const registeredLsn = await registry.registeredLsn();
    log.info({ batches: cat.batches.length, files, registered: lsnHex(registeredLsn), from: store.label }, 'registry recovered from the archive');
    return { batches: cat.batches.length, files, registeredLsn, s3Only: notLocal.length };
  } finally {
    store.close();
    await db.end().catch(() => undefined);
    await lock.release();
  }
}
