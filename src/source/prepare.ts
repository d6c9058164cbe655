/**
 * Start-up of `init` and `run`: server checks, registry migrations, DDL capture, output.dir
 * ownership (run), the publication, and the slot. Order matters: output.dir is claimed before the
 * slot is created, so a refused start leaves no new slot holding WAL; a slot that disappeared after
 * this registry registered changes is a gap, never silently recreated.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { EgressError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { ensureEventTriggers, migrate } from '../registry/migrate.js';
import { Registry, type TablePatternSql } from '../registry/registry.js';
import type { Db } from '../db/tx.js';
import { claimOutputDir } from '../output/owner.js';
import { checkS3OwnerAtStart } from '../anchor/s3-owner.js';
import { sourceError } from '../db/connect.js';
import { PublicationWatcher, publishedTables } from './publication.js';
import { ReloadRegistry } from '../registry/reloads.js';
import type { ReloadReason } from '../registry/reload-requests.js';
import { checkServer, createSlot, inspectSlot, type ServerInfo } from './setup.js';
import { syncPartitions } from '../registry/partitions.js';
import { rememberComments, restoreComment } from '../registry/publication.js';
import { AdoptRegistry } from '../registry/adopt.js';
import { anchorTargets } from '../registry/anchors.js';
import { LocalIntents } from '../commit/local-intents.js';
import { adoptOrphanBatches, type AdoptResult } from '../commit/adopt.js';
import { ConfirmRecord, readConfirmRecord } from '../output/confirm-record.js';
import { checkSlotPosition, type SlotCheck } from './slot-check.js';
import { timelineSwitchPoint } from './failover.js';

export interface Prepared {
  server: ServerInfo;
  registry: Registry;
  registeredLsn: Lsn;
  slotConfirmed: Lsn;
  slotCreated: boolean;
  publication: PublicationWatcher;
  /** Adopted flushes whose reload requests a failover lost (src/commit/adopt.ts). */
  lostRanges: { from: Lsn; to: Lsn }[];
  /** Whether the S3 prefix's owner was checked at start (src/anchor/s3-owner.ts); false: before the first upload. */
  s3OwnerChecked: boolean;
}

export interface PrepareOptions {
  /**
   * `run`: claim output.dir before the slot is created, ask for the initial export once, and
   * repair gaps by exporting again (init only reports them).
   */
  run?: boolean;
  /** `init --recreate-slot`: accept a recorded slot loss and create the slot anew. */
  recreateSlot?: boolean;
}

const patternSql = (p: { schema: RegExp; table: RegExp }): TablePatternSql => ({ schema: p.schema.source, table: p.table.source });

export async function prepareSource(db: Db, cfg: Config, log: Logger, opts: PrepareOptions = {}): Promise<Prepared> {
  try {
    const server = await checkServer(db, cfg);
    const applied = await migrate(db);
    if (applied.length) log.info({ versions: applied }, 'registry migrated');
    if (!(await ensureEventTriggers(db, server.superuser))) {
      log.warn('DDL capture is off: the registry was created by a non-superuser; run `pg-egress init` once as a superuser (or `init --url <superuser url>`) to install its event triggers');
    }
    const registry = new Registry(db, cfg.slot);
    const knewSlot = await registry.hasSlotState();
    const reloads = new ReloadRegistry(db, cfg.slot);
    const requestReload = async (tables: { schema: string; table: string }[], reason: ReloadReason, gapId: number | null) => {
      await reloads.requestMany(tables.map((t) => ({
        schema: t.schema,
        table: t.table,
        relid: null,
        reason,
        requestedLsn: null,
        restoreComment: false,
        previousComment: null,
        requestId: null,
        gapId,
      })));
      if (tables.length) log.info({ tables: tables.map((t) => `${t.schema}.${t.table}`), reason }, 'reload requested');
    };
    const adoptReg = new AdoptRegistry(db, cfg.slot);
    let lostRanges: { from: Lsn; to: Lsn }[] = [];
    let s3OwnerChecked = false;
    if (opts.run) {
      const me = { system_identifier: server.systemIdentifier, database: server.database, slot: cfg.slot };
      await claimOutputDir(cfg.output.dir, me, knewSlot, cfg.output);
      if (cfg.anchors.s3) s3OwnerChecked = await checkS3OwnerAtStart(cfg.anchors.s3, me, knewSlot, cfg.output, log);
      // Batches on disk that the registry lost (a failover's registry race) are registered from
      // their manifests before anything compares LSNs or sweeps files (src/commit/adopt.ts).
      registry.localIntents = new LocalIntents(cfg.output.dir, cfg.output);
      if (knewSlot) lostRanges = (await adoptBatches(db, cfg, server, registry, adoptReg, log)).lostRanges;
    }
    await registry.saveSettings(
      cfg.publication,
      cfg.tables.include.map(patternSql),
      cfg.tables.exclude.map(patternSql),
      cfg.tables.noIdentity,
    );
    const registered = knewSlot ? await registry.registeredLsn() : 0n;
    // The publication first: a slot created below then sees every selected table from its start.
    // Table comments as they are now, so a reload marker's table gets its own comment back.
    await rememberComments(db, cfg.publication);
    const publication = new PublicationWatcher(db, cfg, registry, log, registered, opts.run ? requestReload : undefined);
    await publication.check();

    let slot = await inspectSlot(db, cfg);
    let slotCreated = false;
    let lostGap: number | null = null;
    if (knewSlot && (!slot || slot.lost)) {
      const what = slot ? 'has lost WAL it still needed (wal_status = lost)' : 'is gone (dropped by someone)';
      const detail = `replication slot "${cfg.slot}" ${what}; changes committed after ${formatLsn(registered)} were not captured`;
      if (!opts.run && !opts.recreateSlot) {
        throw new EgressError('DATA_GAP', `${detail}; \`pg-egress run\` recreates it and exports every table again`);
      }
      lostGap = (await registry.openGaps()).find((g) => g.kind === 'slot_lost')?.id ?? null;
      lostGap ??= await registry.recordGap({ kind: 'slot_lost', lsnFrom: registered, lsnTo: null, detail });
      if (opts.run) {
        log.error({ gap: 'slot_lost', from: formatLsn(registered) }, `data gap: ${detail}; recreating the slot and exporting every published table again`);
      } else {
        const n = await registry.resolveSlotGaps('accepted by init --recreate-slot');
        log.warn({ gaps: n }, `replication slot "${cfg.slot}" recreated: changes after ${formatLsn(registered)} and before now are in no file`);
        lostGap = null;
      }
      if (slot) await db.query(`SELECT pg_drop_replication_slot($1)`, [cfg.slot]);
      slot = null;
    }
    let slotConfirmed: Lsn;
    let movedGap: SlotCheck | null = null;
    if (!slot) {
      slotConfirmed = await createSlot(db, cfg, server);
      slotCreated = true;
      log.info({ slot: cfg.slot, lsn: formatLsn(slotConfirmed) }, 'replication slot created');
    } else {
      slotConfirmed = slot.confirmedFlush;
      if (opts.run && knewSlot) movedGap = await checkSlot(cfg, server, adoptReg, slotConfirmed, registered, log);
    }
    // A slot created now: its start is the registered LSN (nothing before it is ours to write).
    if ((await registry.ensureSlotState(cfg.publication)) === 0n && slotCreated) await registry.startAt(slotConfirmed);
    if (movedGap?.kind === 'gap') {
      const tables = await publishedTables(db, cfg.publication);
      const id = await adoptReg.recordSlotGap({
        kind: movedGap.gapKind,
        from: movedGap.from,
        to: movedGap.to,
        detail: movedGap.detail,
        tables,
      });
      log.error({ gap: movedGap.gapKind, id, from: formatLsn(movedGap.from), to: formatLsn(movedGap.to) }, `data gap: ${movedGap.detail}; exporting every published table again`);
      log.info({ tables: tables.map((t) => `${t.schema}.${t.table}`), reason: 'gap' }, 'reload requested');
    }
    const registeredLsn = await registry.registeredLsn();
    if (opts.run) {
      // The position this run starts from is accounted for (registered, explained, or a recorded
      // gap): from here on the daemon's own confirmations are recorded before they are sent.
      const rec = new ConfirmRecord(
        cfg.output.dir,
        cfg.slot,
        server.systemIdentifier,
        cfg.output.fileMode,
        await readConfirmRecord(cfg.output.dir, cfg.slot, server.systemIdentifier),
      );
      await rec.reset(slotConfirmed, registeredLsn);
      await adoptReg.startConfirmTracking();
    }
    if (opts.run) {
      // After the slot exists: each export's snapshot is later than the slot's start, so the
      // stream holds every change committed after the export's boundary.
      const initial = await registry.takeInitialExport();
      // Each partitioned root's leaves as of now, into the new slot's stream: the root's first
      // partitions.yml (`initial`) of this archive (the check above ran before the slot existed).
      if (slotCreated && (initial || lostGap !== null)) await syncPartitions(db, cfg.publication, true);
      if (lostGap !== null) await requestReload(await publishedTables(db, cfg.publication), 'gap', lostGap);
      if (initial) await requestReload(await publishedTables(db, cfg.publication), 'initial', null);
    }
    return { server, registry, registeredLsn, slotConfirmed, slotCreated, publication, lostRanges, s3OwnerChecked };
  } catch (e) {
    throw sourceError(e, cfg.source, 'prepare the source database');
  }
}

async function adoptBatches(
  db: Db,
  cfg: Config,
  server: ServerInfo,
  registry: Registry,
  adopt: AdoptRegistry,
  log: Logger,
): Promise<AdoptResult> {
  return adoptOrphanBatches({
    outDir: cfg.output.dir,
    slot: cfg.slot,
    systemIdentifier: server.systemIdentifier,
    registry,
    adopt,
    intents: registry.localIntents as LocalIntents,
    anchors: anchorTargets(cfg),
    log,
    restoreComment: async (relid, comment) => {
      await restoreComment(db, relid, comment);
    },
    switchPoint: () => timelineSwitchPoint(cfg),
  });
}

/** Compares the slot with what pg-egress registered and confirmed (src/source/slot-check.ts). */
async function checkSlot(
  cfg: Config,
  server: ServerInfo,
  adopt: AdoptRegistry,
  slotConfirmed: Lsn,
  registered: Lsn,
  log: Logger,
): Promise<SlotCheck> {
  const check = checkSlotPosition({
    slot: cfg.slot,
    slotConfirmed,
    registered,
    record: await readConfirmRecord(cfg.output.dir, cfg.slot, server.systemIdentifier),
    tracking: await adopt.confirmTracking(),
  });
  if (check.kind === 'ok' && check.registryAhead) {
    log.info({ slot: formatLsn(slotConfirmed), registered: formatLsn(registered) }, 'the registry is ahead of the slot (e.g. after a failover to a standby whose slot copy lags): streaming from the registered LSN, the server skips what lies before it');
  }
  if (check.kind === 'untracked') {
    log.info({ slot: formatLsn(slotConfirmed), registered: formatLsn(registered) }, 'out-of-band moves of the slot are detected from the next start on (output.dir/_confirmed.json is new)');
  }
  return check;
}
