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
import type { Db } from '../registry/tx.js';
import { claimOutputDir } from '../output/owner.js';
import { sourceError } from './connect.js';
import { PublicationWatcher, publishedTables } from './publication.js';
import { ReloadRegistry, type ReloadReason } from '../registry/reloads.js';
import { checkServer, createSlot, inspectSlot, type ServerInfo } from './setup.js';

export interface Prepared {
  server: ServerInfo;
  registry: Registry;
  registeredLsn: Lsn;
  slotConfirmed: Lsn;
  slotCreated: boolean;
  publication: PublicationWatcher;
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
      await reloads.requestMany(tables.map((t) => ({ schema: t.schema, table: t.table, relid: null, reason, requestedLsn: null, restoreComment: false, previousComment: null, requestId: null, gapId })));
      if (tables.length) log.info({ tables: tables.map((t) => `${t.schema}.${t.table}`), reason }, 'reload requested');
    };
    if (opts.run) {
      await claimOutputDir(cfg.output.dir, { system_identifier: server.systemIdentifier, database: server.database, slot: cfg.slot }, knewSlot, cfg.output);
    }
    await registry.saveSettings(cfg.publication, cfg.tables.include.map(patternSql), cfg.tables.exclude.map(patternSql), cfg.tables.noIdentity);
    const registered = knewSlot ? await registry.registeredLsn() : 0n;
    // The publication first: a slot created below then sees every selected table from its start.
    // Table comments as they are now, so a reload marker's table gets its own comment back.
    await db.query(
      `INSERT INTO "cdc_registry"."comments" ("relid", "comment")
       SELECT t.relid, obj_description(t.relid, 'pg_class') FROM "cdc_registry"."selected_tables"($1) t
       WHERE obj_description(t.relid, 'pg_class') IS DISTINCT FROM 'pg-egress:reload'
       ON CONFLICT ("relid") DO NOTHING`,
      [cfg.publication],
    );
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
    if (!slot) {
      slotConfirmed = await createSlot(db, cfg);
      slotCreated = true;
      log.info({ slot: cfg.slot, lsn: formatLsn(slotConfirmed) }, 'replication slot created');
    } else {
      slotConfirmed = slot.confirmedFlush;
    }
    const registeredLsn = await registry.ensureSlotState(cfg.publication);
    if (opts.run) {
      // After the slot exists: each export's snapshot is later than the slot's start, so the
      // stream holds every change committed after the export's boundary.
      if (lostGap !== null) await requestReload(await publishedTables(db, cfg.publication), 'gap', lostGap);
      if (await registry.takeInitialExport()) await requestReload(await publishedTables(db, cfg.publication), 'initial', null);
    }
    return { server, registry, registeredLsn, slotConfirmed, slotCreated, publication };
  } catch (e) {
    throw sourceError(e, cfg.source, 'prepare the source database');
  }
}
