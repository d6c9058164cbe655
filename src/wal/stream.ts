/**
 * The replication connection: `pg`'s client in `replication=database` mode running
 * START_REPLICATION with pgoutput protocol v1, or v2 with `streaming` on (PostgreSQL 14+): a
 * transaction larger than the server's logical_decoding_work_mem then arrives in parts while it
 * runs instead of being spilled to disk by the walsender and read back at its commit
 * (src/batch/streamed.ts holds the parts until the commit). We do not use pg-logical-replication
 * because its acknowledge timer confirms what was *received* rather than what is durable, and its
 * value decoding goes through pg's type parsers; here frames are queued as raw bytes and
 * confirmation is whatever LSN the caller says is durable.
 * https://www.postgresql.org/docs/15/protocol-replication.html
 * https://www.postgresql.org/docs/15/protocol-logical-replication.html
 *
 * Frames are cut from the socket's chunks ahead of the driver's parser (copy-framer.ts), as views
 * of those chunks, into a FIFO that the pipeline drains at its own pace; when the FIFO holds more
 * than `queueLimit` says the socket is paused, so a slow disk or a flush in progress pushes back on
 * the server instead of growing memory.
 */
import { quoteIdent } from '../ident.js';
import type pg from 'pg';
import type { Socket } from 'node:net';
import { connectClient, sourceError, type SourceConfig } from '../db/connect.js';
import { EgressError } from '../errors.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { encodeStandbyStatus } from './frames.js';
import { CopyBothFramer } from './copy-framer.js';
import { pgMicrosNow } from './time.js';

export interface StreamOptions {
  source: SourceConfig;
  slot: string;
  publication: string;
  startLsn: Lsn;
  /** pgoutput protocol 2 with `streaming` on (needs PostgreSQL 14). */
  streaming?: boolean;
  /** The replication connection, opened ahead (connectReplication); else one is opened here. */
  connected?: Promise<pg.Client>;
}

/**
 * A replication connection (`replication=database`), not streaming yet: the daemon opens it while
 * it checks the registry, so that the stream starts without waiting for a new server process.
 */
export function connectReplication(source: SourceConfig): Promise<pg.Client> {
  // Its 'error' events are swallowed (connectClient): lost while it waits for the stream, it fails
  // START_REPLICATION, and the session with it.
  return connectClient(source, { replication: 'database' } as Partial<pg.ClientConfig>, 'open a replication connection');
}

interface PgConnection {
  stream: Socket;
  sendCopyFromChunk(chunk: Buffer): void;
}

/**
 * A read shorter than this means this process has caught up with the walsender: reading then
 * pauses for GATHER_MS, so that the next read takes what gathered meanwhile. Taken as they come,
 * the walsender's messages (it sends each change as it decodes it: WalSndWriteData in
 * src/backend/replication/walsender.c) arrived a few hundred bytes to a few KB per read, and each
 * read cost this process a wake-up, a read and a turn of the event loop. The benchmark's 20,000
 * small transactions (S2, 56 MB of messages): 4,700-96,000 reads per run without the pause,
 * ~1,300 with it, and this process's CPU fell from 2.4-2.6 s to 1.7-1.8 s. A read of at least
 * this size (a stream behind, or a large transaction) is followed by the next at once, so
 * throughput is not capped; what the pause adds is at most GATHER_MS of latency.
 */
const GATHER_BELOW = 16 * 1024;
const GATHER_MS = 1;

/**
 * How many bytes of frames the queue holds before the socket is paused (and resumed at half).
 *
 * 2 MiB while ordinary transactions arrive, faster here, most likely (not measured with the CPU's
 * counters) because a frame is then decoded soon after it was read, while its bytes are still in
 * the core's cache (L2 is 2 MiB per core on the benchmark's machine), and fewer queued frames
 * survive each young-generation collection. The benchmark's 20,000 small transactions (S2),
 * 2026-12-05: 0.89 s against 0.925 s with 16 MiB for every frame (two builds, alternating,
 * medians of 18), 1.15x pg_recvlogical against 1.09x; one build switched between the two: 0.91
 * against 0.94 s (medians of 18 and 15), 4 MiB 0.94 s. Memory: a queued frame costs more than its
 * bytes (a view each): S2's peak RSS 98-129 MB against 126-188 MB (the same runs).
 *
 * 16 MiB while a streamed transaction's parts arrive (pgoutput protocol 2, src/batch/streamed.ts:
 * spooled, not decoded, until the commit), as for every frame before: with 2 MiB there, a 1M-row
 * transaction with one core kept busy by another process (S1-load) took 4.76 and 4.82 s against
 * 4.47 and 4.26 s (2026-12-04, medians of 6, two series; 2026-12-05 with one build switched: 4.09
 * against 4.15 s, medians of 12 and 9); this way, 4.29 against 4.25 s (medians of 30, two series).
 *
 * (16 MiB for every frame was chosen when this process read slower than the walsender decoded in
 * its first second: S2 then streamed in 2.55 s against 3.03 s with 2 MiB, 8 MiB slower.)
 */
export function queueLimit(streamedPart: boolean): number {
  return (streamedPart ? 16 : 2) * 1024 * 1024;
}

/** START_REPLICATION's publication_names is itself a list of (quoted) identifiers. */
const quoteLiteral = (s: string): string => "'" + s.replace(/'/g, "''") + "'";

export class ReplicationStream {
  private readonly queue: Buffer[] = [];
  private head = 0;
  private queuedBytes = 0;
  private paused = false;
  /** Reading is paused for GATHER_MS after a short read. */
  private gathering = false;
  private waiter: (() => void) | null = null;
  private failure: EgressError | null = null;
  private closed = false;
  private high = queueLimit(false);
  private low = this.high / 2;
  /** Last LSN received in a frame (for the `write` field of status updates). */
  receivedLsn: Lsn = 0n;
  lastFrameAt = Date.now();

  private constructor(
    private readonly client: pg.Client,
    private readonly opts: StreamOptions,
  ) {}

  private get connection(): PgConnection {
    return (this.client as unknown as { connection: PgConnection }).connection;
  }

  static async start(opts: StreamOptions): Promise<ReplicationStream> {
    // One opened ahead that failed (e.g. max_wal_senders while a walsender of our previous
    // session lingered, which waitSlotFree has waited out since): opened again, now.
    const client = (await opts.connected?.catch(() => undefined)) ?? (await connectReplication(opts.source));
    const s = new ReplicationStream(client, opts);
    s.attach();
    const sql =
      `START_REPLICATION SLOT ${quoteIdent(opts.slot)} LOGICAL ${formatLsn(opts.startLsn)} ` +
      `("proto_version" '${opts.streaming ? 2 : 1}',${opts.streaming ? ` "streaming" 'on',` : ''} "publication_names" ${quoteLiteral(quoteIdent(opts.publication))}, "messages" 'true')`;
    // The query only settles when replication ends; errors (slot in use, bad publication) arrive
    // either as its rejection or, after CopyBoth started, as a client error.
    client.query(sql).then(
      () => s.fail(new EgressError('SOURCE_UNREACHABLE', 'the server ended replication')),
      (e: unknown) => s.fail(sourceError(e, opts.source, 'stream from the replication slot')),
    );
    return s;
  }

  private attach(): void {
    const conn = this.connection;
    const sock = conn.stream;
    // The driver's parser (pg-protocol's one 'data' listener) gets every message but CopyData,
    // whole, from the framer (copy-framer.ts). The connection is idle here (its last message, the
    // ReadyForQuery of the connect, was whole), so the parser holds no part of a message.
    const driver = sock.listeners('data') as ((b: Buffer) => void)[];
    for (const l of driver) sock.off('data', l);
    const framer = new CopyBothFramer(
      (frame) => {
        this.queue.push(frame);
        this.queuedBytes += frame.length;
      },
      (message) => {
        for (const l of driver) l.call(sock, message);
      },
    );
    sock.on('data', (chunk: Buffer) => {
      try {
        framer.push(chunk);
      } catch (e) {
        sock.destroy();
        this.fail(e instanceof EgressError ? e : sourceError(e, this.opts.source, 'stream from the replication slot'));
        return;
      }
      this.lastFrameAt = Date.now();
      if (!this.paused && this.queuedBytes > this.high) {
        this.paused = true;
        sock.pause();
      } else if (!this.paused && !this.gathering && chunk.length < GATHER_BELOW) {
        // Caught up with the walsender: let its messages gather in the socket for a moment
        // instead of taking each as it comes (see GATHER_BELOW).
        this.gathering = true;
        sock.pause();
        setTimeout(() => {
          this.gathering = false;
          if (!this.paused && !this.closed) sock.resume();
        }, GATHER_MS);
      }
      this.wake();
    });
    this.client.on('error', (e) => this.fail(sourceError(e, this.opts.source, 'stream from the replication slot')));
    this.client.on('end', () => this.fail(new EgressError('SOURCE_UNREACHABLE', 'the replication connection was closed')));
  }

  private fail(e: EgressError): void {
    if (this.closed) return;
    this.failure ??= e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /**
   * The next queued CopyData payload without waiting (no promise per frame), or null when nothing
   * is queued and the caller must `await next()`. The socket is then read only once the queue is
   * drained, as it was before. Deliberately: also reading it every 256 frames (a setImmediate
   * turn) was measured to stream the benchmark's 1M-row transaction 60% slower, with both this
   * process and the walsender idle part of the time, rather than in bursts of up to the high-water mark.
   */
  tryNext(): Buffer | null {
    if (this.head >= this.queue.length) return null;
    return this.shift();
  }

  /**
   * The next CopyData payload, or `null` when `timeoutMs` passes first (so the caller can do
   * timed work between frames without interleaving it with a transaction). Throws once the
   * connection has failed and the queue is drained.
   */
  async next(timeoutMs: number): Promise<Buffer | null> {
    if (this.head >= this.queue.length) {
      if (this.failure) throw this.failure;
      if (this.closed) throw new EgressError('SOURCE_UNREACHABLE', 'replication stream closed');
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.waiter = null;
          resolve();
        }, timeoutMs);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (this.head >= this.queue.length) {
        if (this.failure) throw this.failure;
        return null;
      }
    }
    return this.shift();
  }

  /** What arrives now: a streamed transaction's parts, or not. Sets the queue's limit (queueLimit). */
  streamedPart(on: boolean): void {
    this.high = queueLimit(on);
    this.low = this.high / 2;
    this.resumeBelowLow();
  }

  /** Reads the socket again once the queue is under its low mark (unless a gathering pause is on). */
  private resumeBelowLow(): void {
    if (this.paused && this.queuedBytes < this.low) {
      this.paused = false;
      if (!this.gathering) this.connection.stream.resume();
    }
  }

  private shift(): Buffer {
    const frame = this.queue[this.head++];
    this.queuedBytes -= frame.length;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.resumeBelowLow();
    return frame;
  }

  /** Standby status update: `flush`/`apply` are what the server may consider durable (SPEC §6). */
  sendStatus(flushLsn: Lsn, replyRequested = false): void {
    if (this.closed || this.failure) return;
    // `write` is reported equal to `flush` on purpose: the walsender pings us with its current
    // WAL end (a keepalive) whenever our write position is behind it, and that ping is what lets
    // an idle slot advance (see WalSndWaitForWal in src/backend/replication/walsender.c).
    this.connection.sendCopyFromChunk(
      encodeStandbyStatus({ write: flushLsn, flush: flushLsn, apply: flushLsn, clientTime: pgMicrosNow(), replyRequested }),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    await Promise.race([this.client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
  }
}
