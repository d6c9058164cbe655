/**
 * The `run` daemon: prepares the source, then streams the slot through the batch controller into
 * files, confirming the slot only up to what is registered. A lost connection (server restart,
 * network cut) drops whatever was not yet registered and starts a new session from the registered
 * LSN after a backoff, so nothing is lost or written twice.
 */
import { describeCompression } from './output/deflate.js';
import path from 'node:path';
import type { Config } from './config/index.js';
import type { Logger } from './log.js';
import { EgressError, isEgressError } from './errors.js';
import { lsnHex, maxLsn, minLsn, type Lsn } from './lsn.js';
import { answerKeepalive, confirmTarget, frameWaitMs, type ConfirmState } from './wal/confirm-policy.js';
import { describeSource, sourceError } from './db/connect.js';
import { loadTableDefs, publishedRelids } from './source/setup.js';
import { prepareSource } from './source/prepare.js';
import { Catalog } from './source/catalog.js';
import { commitTarget, flushSink } from './commit/target.js';
import { waitSlotFree } from './source/slot-wait.js';
import { openSession, type SessionConnections } from './source/session.js';
import { ReplicationStream } from './wal/stream.js';
import { decodeFrame, xlogDataStart, xlogDataWalStart } from './wal/frames.js';
import { decodePgOutput } from './wal/pgoutput.js';
import { isStreamControl } from './wal/streaming.js';
import { StreamedTxns, type ReplayHooks } from './batch/streamed.js';
import { serverMajor } from './source/failover.js';
import { BatchController } from './batch/controller.js';
import { Reloader, type ExportHooks } from './reload/reloader.js';
import { BatchChain } from './proof/chain.js';
import { AnchorWorker } from './anchor/worker.js';
import { AnchorQueue, anchorTargets } from './registry/anchors.js';
import { reconcileAnchorTargets } from './anchor/targets.js';
import { DaemonState } from './http/state.js';
import { startHttp } from './http/server.js';
import { ReloadRegistry } from './registry/reloads.js';
import type { ReloadRequest } from './registry/reload-requests.js';
import { loadMessageKey } from './registry/message-key.js';
import { sweepOutput } from './output/sweep.js';
import { ensureDir, ensureDirsIn } from './output/atomic.js';
import { writeStatusFile } from './status/file.js';
import { ensureSlotFailover, logSlotHealth, slotHealth } from './source/failover.js';
import { ConfirmRecord, readConfirmRecord } from './output/confirm-record.js';
import { INTENTS_DIR, LocalIntents } from './commit/local-intents.js';
import { unfinishedLocalPaths } from './commit/adopt.js';
import { AdoptRegistry } from './registry/adopt.js';
import type { Clock } from './clock.js';
import { RetentionWorker, startRetention } from './anchor/retention.js';
import { accountForMissingFiles } from './output/lost-volume.js';
import { ConfirmMirror, pushConfirmFile } from './anchor/confirm-mirror.js';

const STATUS_INTERVAL_MS = 10_000;
const QUIET_PING_MS = 30_000;
const DEAD_AFTER_MS = 120_000;
const PROGRESS_INTERVAL_MS = 30_000;
/** A pause in the stream this long, with rows received and their window over, counts as idle. */
const IDLE_FLUSH_MS = 50;

export interface RunOptions {
  signal: AbortSignal;
  /** Called once streaming has started (tests, readiness). */
  onStreaming?: () => void;
  /** What /health, /ready and /metrics read (created here when not given). */
  state?: DaemonState;
  /** Test seam of the exports (src/reload/reloader.ts `ExportHooks`). */
  exportHooks?: ExportHooks;
  /** The clock that closes windows and names export windows (src/clock.ts); the wall clock if unset. */
  now?: Clock;
  /** The first session's connections, already opening (`run` starts them early); later sessions open their own. */
  session?: Promise<SessionConnections>;
}

export async function runDaemon(cfg: Config, log: Logger, opts: RunOptions): Promise<void> {
  const state = opts.state ?? new DaemonState();
  const http = await startHttp(cfg, log, state);
  let started = false;
  let attempt = 0;
  let opened = opts.session;
  try {
    while (!opts.signal.aborted) {
      const session = opened ?? openSession(cfg);
      opened = undefined;
      try {
        await runSession(cfg, log, { ...opts, state }, session, () => {
          started = true;
          attempt = 0;
        });
        return;
      } catch (e) {
        const err = isEgressError(e) ? e : sourceError(e, cfg.source, 'stream');
        state.error(err.code);
        // Before the first successful start, errors are the operator's to fix: exit with them.
        if (!started || !err.retryable || opts.signal.aborted) throw err;
        attempt++;
        state.reconnects++;
        state.phase = 'reconnecting';
        state.reason = `reconnecting after: ${err.message}`;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(attempt, 7)) * (0.75 + Math.random() * 0.5);
        log.warn({ code: err.code, attempt, retry_in_ms: Math.round(delay) }, `${err.message}; reconnecting`);
        await sleep(delay, opts.signal);
      }
    }
  } finally {
    // Stopped before the early session was used: its connections end here.
    if (opened) await opened.then((s) => s.close(), () => undefined);
    state.phase = 'stopping';
    state.reason = 'stopping';
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
  }
}

async function runSession(
  cfg: Config,
  log: Logger,
  opts: RunOptions & { state: DaemonState },
  opening: Promise<SessionConnections>,
  onStarted: () => void,
): Promise<void> {
  const state = opts.state;
  // The registry pool, the replication connection and the daemon lock (src/source/session.ts).
  const session = await opening;
  const { pool: client, lock } = session;
  let stream: ReplicationStream | null = null;
  let streamStart: Promise<ReplicationStream> | null = null;
  let controller: BatchController | null = null;
  let streamed: StreamedTxns | null = null;
  let reloader: Reloader | null = null;
  let anchors: AnchorWorker | null = null;
  let retention: RetentionWorker | null = null;
  let mirror: ConfirmMirror | null = null;
  try {
    state.db = client;
    const prep = await prepareSource(client, cfg, log, { run: true });
    const { registry } = prep;
    // A walsender of our own previous session may hold the slot for a moment after a crash.
    await waitSlotFree(client, cfg);
    // PostgreSQL 17+: the slot's failover property as slot_failover says (src/source/failover.ts).
    await ensureSlotFailover(client, cfg, prep.server, log);
    // The stream starts here, while output.dir is checked and the exports, anchors and table
    // definitions are set up: the walsender reads and decodes WAL from the slot's restart point
    // meanwhile (~0.06 s of start-up for one table, more for many; checking output.dir's files
    // against the registry takes ~0.2 s for 500 tables' exports). Nothing is read from it before
    // the loop below; its queue pauses the socket at the high-water mark (src/wal/stream.ts).
    // What follows is quick work on the database and the disk: the walsender's timeout
    // (wal_sender_timeout) is not at stake.
    // Adopted batches whose registration a failover lost: stream from before them (their
    // transactions are skipped, their reload requests taken again; the server starts at the
    // slot's position if that is later).
    const startLsn = prep.lostRanges.reduce((m, r) => minLsn(m, r.from), prep.registeredLsn);
    // PostgreSQL 14+: large transactions arrive in parts while they run (src/batch/streamed.ts).
    const streamParts = cfg.streamLargeTransactions && serverMajor(prep.server) >= 14;
    const { source, slot, publication } = cfg;
    const connected = session.takeReplication();
    streamStart = ReplicationStream.start({ source, slot, publication, startLsn, streaming: streamParts, connected });
    // Awaited below, once the exports have started; a failure before that is not unhandled.
    streamStart.catch(() => undefined);
    await ensureDir(cfg.output.dir, cfg.output.dirMode);
    // Unfinished flushes as the registry knows them and as output.dir does (src/commit/local-intents.ts).
    const local = await unfinishedLocalPaths(
      new LocalIntents(cfg.output.dir, cfg.output),
      (ids) => new AdoptRegistry(client, cfg.slot).registeredAmong(ids),
    );
    const sweep = await sweepOutput(cfg.output.dir, [...(await registry.unfinishedPaths()), ...local.paths]);
    await registry.clearIntents();
    for (const b of local.batches) await registry.localIntents?.done(b);
    if (sweep.removed.length) log.info({ files: sweep.removed }, 'removed unregistered files of a flush that did not complete');
    // Files missing from output.dir: in S3 (removed by retention, or a lost volume), or lost (src/output/lost-volume.ts).
    await accountForMissingFiles(cfg, client, registry, log);
    // _intents too, made now rather than by the first batch: an export's first group of tables
    // made it while the COPYs ran, with an fsync of output.dir under 16-22 MB of dirty pages
    // (45-124 ms, 500 small tables), and the next group waited for that group. Measured (8 pairs,
    // alternating): the first group's intent step ~166 -> ~80 ms (median), the export 1.133 ->
    // 1.103 s, within the noise. (Not _batches: an empty one would count as exported files to
    // the owner check, src/output/owner.ts.)
    await ensureDirsIn(cfg.output.dir, ['_tmp', INTENTS_DIR], cfg.output.dirMode);
    state.slotHealth = await slotHealth(client, cfg).catch(() => null);
    if (state.slotHealth) logSlotHealth(log, state.slotHealth, null);
    const confirmRecord = new ConfirmRecord(
      cfg.output.dir,
      cfg.slot,
      prep.server.systemIdentifier,
      cfg.output.fileMode,
      await readConfirmRecord(cfg.output.dir, cfg.slot, prep.server.systemIdentifier),
    );
    // With S3, a copy of _confirmed.json for a start on a new volume (src/anchor/confirm-mirror.ts).
    mirror = cfg.anchors.s3 ? new ConfirmMirror(cfg.anchors.s3, log) : null;
    if (mirror) confirmRecord.onWrite = mirror.push;
    await pushConfirmFile(cfg, mirror);
    // Exports run beside the stream, on connections of their own (src/reload/).
    const chain = new BatchChain(registry);
    const rl = new Reloader({
      cfg,
      log,
      db: client,
      server: prep.server,
      registry,
      reloads: new ReloadRegistry(client, cfg.slot),
      chain,
      hooks: opts.exportHooks,
      now: opts.now,
    });
    reloader = rl;
    state.exportLocks = () => rl.lockHolders();
    rl.start();
    // Anchors run beside the stream too (src/anchor/), when a target is configured.
    await reconcileAnchorTargets(new AnchorQueue(client, cfg.slot), cfg, log);
    anchors = anchorTargets(cfg).length
      ? new AnchorWorker(cfg, log, new AnchorQueue(client, cfg.slot), prep.server, prep.s3OwnerChecked)
      : null;
    anchors?.start();
    // Local files whose S3 copy is verified go after output.retain (src/anchor/retention.ts).
    retention = startRetention(cfg, log, client);

    // Before the first frame is read: without the key no pg-egress message could be told from a
    // forged one. The table definitions come on another of the pool's connections meanwhile.
    const [started, messageKey, defs] = await Promise.all([
      streamStart,
      loadMessageKey(client, cfg.source.user),
      publishedRelids(client, cfg.publication).then((relids) => loadTableDefs(client, relids)),
    ]);
    stream = started;
    controller = new BatchController({
      cfg,
      now: opts.now,
      sink: flushSink(commitTarget(cfg, prep.server, registry, chain), registry),
      noteTable: (schema, table, relid) => registry.noteTable(schema, table, relid),
      anchors: anchorTargets(cfg),
      server: prep.server,
      log,
      registeredLsn: prep.registeredLsn,
      defs,
      catalog: new Catalog(client, cfg.publication),
      onReloadsRegistered: () => rl.wake(),
      messageKey,
      forged: state.forged,
      recollect: prep.lostRanges.length
        ? { ranges: prep.lostRanges, request: (r) => requestAgain(rl, new ReloadRegistry(client, cfg.slot), r, log) }
        : undefined,
    });
    log.info({ source: describeSource(cfg.source), slot: cfg.slot, publication: cfg.publication, from: lsnHex(prep.registeredLsn), output: cfg.output.dir, compression: describeCompression(cfg.output.gzipLevel) }, 'streaming');
    let streaming = false;
    const startedAt = Date.now();
    let lastPublicationCheck = Date.now();

    let confirmed = prep.slotConfirmed;
    let idleWalEnd: Lsn = 0n;
    let lastStatus = Date.now();
    let lastTick = Date.now();
    // A keepalive that follows data: the walsender had nothing more to send.
    let caughtUp = false;
    let lastStatusFile = 0;
    let lastProgress = Date.now();
    let progressRows = 0;
    let sentDurable = controller.durableLsn;
    state.registeredLsn = sentDurable;
    const c = controller;
    const s = stream;
    const sendStatus = (lsn: Lsn, replyRequested = false) => {
      s.sendStatus(lsn, replyRequested);
      state.statusSent++;
    };
    const spool = (streamed = new StreamedTxns({ dir: path.join(cfg.output.dir, '_tmp', 'streamed'), dirMode: cfg.output.dirMode, log }));
    // While a streamed transaction is replayed no frame is read: keep the walsender's
    // wal_sender_timeout satisfied, and do not take the frames' pause for a dead server.
    let busyAt = 0;
    const replay: ReplayHooks = {
      handle: (m) => c.handle(m),
      insertRun: (relOid, sp, from, to) => c.insertRun(relOid, sp, from, to),
      between: () => {
        const now = (busyAt = Date.now());
        if (now - lastStatus < STATUS_INTERVAL_MS) return;
        sendStatus(confirmLsn());
        lastStatus = now;
        state.lastStatusAt = now;
      },
    };
    // What a standby status confirms, and when (src/wal/confirm-policy.ts).
    const confirmState = (): ConfirmState => ({
      durable: c.durableLsn,
      idle: !c.inTransaction() && !c.hasPending(),
      idleWalEnd,
      recordLimit: confirmRecord.limit,
      confirmed,
    });
    const confirmLsn = (): Lsn => (confirmed = confirmTarget(confirmState()));

    while (!opts.signal.aborted) {
      // Frames already queued are taken without a promise; when none is, wait. Rows received and
      // their window over: flush as soon as the stream has been quiet for 50 ms, not at the next
      // 1-second round (a socket drained for a moment mid catch-up is not idleness, and flushing
      // then would cut a burst into many small flushes).
      let buf = s.tryNext();
      if (buf === null) buf = await s.next(frameWaitMs(c.idleWaitMs(IDLE_FLUSH_MS, 1000), confirmState(), confirmRecord.msUntilDue()));
      state.lastLoopAt = Date.now();
      if (!streaming && (buf || Date.now() - startedAt > 5000)) {
        // The server accepted START_REPLICATION (it refuses at once, e.g. a slot in use): only
        // from now on is a failure a case for reconnecting rather than the operator's to fix.
        streaming = true;
        state.phase = 'streaming';
        state.reason = '';
        state.controller = c;
        state.streamed = spool;
        onStarted();
        opts.onStreaming?.();
      }
      const data = buf ? xlogDataStart(buf) : -1;
      if (buf && data >= 0) {
        s.receivedLsn = maxLsn(s.receivedLsn, xlogDataWalStart(buf));
        // Most messages are rows that need no waiting: no promise, no turn of the microtask queue.
        if (spool.inBlock() || isStreamControl(buf[data])) {
          const pending = spool.take(buf, data, replay);
          // A Stream Start or Stop: the queue's limit for what comes next (src/wal/stream.ts queueLimit).
          if (isStreamControl(buf[data])) s.streamedPart(spool.inBlock());
          if (pending) {
            await pending;
            busyAt = Date.now();
          }
        } else {
          const pending = c.handle(decodePgOutput(buf, data));
          if (pending) await pending;
        }
      } else if (buf) {
        // A keepalive: decodeFrame throws on anything else (a truncated XLogData included).
        const frame = decodeFrame(buf);
        if (frame.tag === 'keepalive') {
          s.receivedLsn = maxLsn(s.receivedLsn, frame.walEnd);
          // The walsender pings before it waits for new WAL, having sent all there is, while our
          // reported position is behind what it sent (WalSndWaitForWal in walsender.c): with rows
          // received and their window over, that is the end of a catch-up. Flush now rather than
          // after IDLE_FLUSH_MS of quiet. (Its periodic ping, with a reply requested, can come
          // mid-transaction; tick() never flushes inside one.)
          // https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/replication/walsender.c
          caughtUp = c.hasPending();
          if (!c.inTransaction() && !c.hasPending()) idleWalEnd = maxLsn(idleWalEnd, frame.walEnd);
          if (answerKeepalive(frame.replyRequested, confirmState())) {
            sendStatus(confirmLsn());
            lastStatus = Date.now();
            state.lastStatusAt = lastStatus;
          }
        }
      }
      const now = Date.now();
      if (!c.inTransaction() && !c.hasPending() && confirmRecord.due(idleWalEnd, now)) {
        await confirmRecord.advance(idleWalEnd, c.durableLsn);
        sendStatus(confirmLsn());
        lastStatus = now;
        state.lastStatusAt = now;
      }
      if (!buf || caughtUp || now - lastTick >= 1000) {
        lastTick = now;
        // The reason names what found the window over: the server's ping, 50 ms of quiet, or the
        // once-a-second check while frames keep coming (a long catch-up registers its progress).
        await c.tick(caughtUp ? 'caught_up' : buf ? 'interval' : 'idle');
        caughtUp = false;
      }
      if (c.durableLsn !== sentDurable || now - lastStatus >= STATUS_INTERVAL_MS) {
        sentDurable = c.durableLsn;
        // On a quiet server nothing arrives (our regular replies keep it from pinging us): ask for
        // a reply now and then, so that silence really means a dead connection.
        sendStatus(confirmLsn(), now - s.lastFrameAt > QUIET_PING_MS);
        lastStatus = now;
        state.lastStatusAt = now;
        state.receivedLsn = s.receivedLsn;
        state.confirmedLsn = confirmed;
        state.registeredLsn = c.durableLsn;
      }
      if (now - lastProgress >= PROGRESS_INTERVAL_MS) {
        // Progress for long catch-ups: what arrived since the last line, and how far behind we are.
        const rows = c.stats.rows - progressRows;
        log.info(
          {
            rows,
            rows_per_s: Math.round((rows * 1000) / (now - lastProgress)),
            pending: c.hasPending(),
            received: lsnHex(s.receivedLsn),
            registered: lsnHex(c.durableLsn),
            // Parts of large transactions still running, kept until their commit (not yet rows).
            spooled_bytes: spool.spooledBytes(),
          },
          'progress',
        );
        lastProgress = now;
        progressRows = c.stats.rows;
      }
      if (now - lastStatusFile >= 5000) {
        lastStatusFile = now;
        await writeStatusFile(cfg, { durableLsn: c.durableLsn, confirmedLsn: confirmed, receivedLsn: s.receivedLsn, lastFrameAt: s.lastFrameAt, pendingRows: c.pendingRows(), stats: c.stats, spooled: { transactions: spool.spooledTransactions(), bytes: spool.spooledBytes() } }).catch((e: unknown) => log.debug({ err: String(e) }, 'status file not written'));
      }
      if (now - lastPublicationCheck >= cfg.publicationCheckMs && !c.inTransaction()) {
        lastPublicationCheck = now;
        await prep.publication.check();
        const health = await slotHealth(client, cfg).catch(() => null);
        if (health) logSlotHealth(log, health, state.slotHealth);
        state.slotHealth = health ?? state.slotHealth;
      }
      if (rl.fatal) throw rl.fatal;
      if (anchors?.fatal) throw anchors.fatal;
      if (lock.lost) {
        throw new EgressError('SOURCE_UNREACHABLE', 'lost the connection that holds the daemon lock');
      }
      if (now - Math.max(s.lastFrameAt, busyAt) > DEAD_AFTER_MS) {
        throw new EgressError('SOURCE_UNREACHABLE', `no message from the server for ${DEAD_AFTER_MS / 1000} s`);
      }
    }
    // Shutdown: the flush in progress is registered (the controller registers one while the
    // next rows are read); confirm and leave.
    await c.settle();
    sendStatus(confirmLsn());
    log.info({ registered: lsnHex(c.durableLsn), confirmed: lsnHex(confirmed), stats: c.stats }, 'stopped');
  } finally {
    await reloader?.stop().catch(() => undefined);
    await anchors?.stop().catch(() => undefined);
    await retention?.stop().catch(() => undefined);
    await mirror?.stop().catch(() => undefined);
    await controller?.abort().catch(() => undefined);
    streamed?.clear();
    await (stream ? stream.close() : streamStart?.then((st) => st.close(), () => undefined));
    await session.close();
  }
}

/** A reload request whose registration a failover lost, taken again from the stream (src/commit/adopt.ts). */
function requestAgain(rl: Reloader, reloads: ReloadRegistry, r: ReloadRequest, log: Logger): void {
  log.warn({ table: `${r.schema}.${r.table}`, reason: r.reason }, 'reload request of an adopted batch, whose registration a failover lost: asked for again');
  reloads.request(r).then(
    () => rl.wake(),
    (e: unknown) => log.error({ table: `${r.schema}.${r.table}`, err: String(e) }, 'could not register a reload request again'),
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
