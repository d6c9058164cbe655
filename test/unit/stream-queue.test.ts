/**
 * The replication stream's queue (src/wal/stream.ts): the socket is paused once more than
 * queueLimit's bytes of frames wait, and read again below half of it; 2 MiB while ordinary
 * transactions arrive, 16 MiB while a streamed transaction's parts do. A socket of our own stands
 * in for the connection's: what is tested is when it is paused and resumed.
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { queueLimit, ReplicationStream } from '../../src/wal/stream.js';
import type { SourceConfig } from '../../src/db/connect.js';

const MiB = 1024 * 1024;
/** CopyData messages of 1 KiB each (type, length, payload), 64 to a read: no short-read pause. */
const PAYLOAD = 1024 - 5;
const PER_READ = 64;
const read = (): Buffer => {
  const b = Buffer.alloc(1024 * PER_READ, 0x20);
  for (let i = 0; i < PER_READ; i++) {
    b[i * 1024] = 0x64; // 'd'
    b.writeUInt32BE(PAYLOAD + 4, i * 1024 + 1);
  }
  return b;
};

class Socket extends EventEmitter {
  paused = false;
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  destroy(): void {}
}

async function stream(): Promise<{ s: ReplicationStream; sock: Socket; fill: () => number }> {
  const sock = new Socket();
  const client = {
    connection: { stream: sock, sendCopyFromChunk: () => undefined },
    // START_REPLICATION: settles only when replication ends.
    query: () => new Promise(() => undefined),
    on: () => client,
    end: async () => undefined,
  };
  const s = await ReplicationStream.start({
    source: { host: '127.0.0.1', port: 5432, database: 'd', user: 'u' } as SourceConfig,
    slot: 's',
    publication: 'p',
    startLsn: 0n,
    connected: Promise.resolve(client as unknown as pg.Client),
  });
  let queued = 0;
  /** Reads until the socket is paused; the bytes of frames read so far (none taken meanwhile). */
  const fill = (): number => {
    while (!sock.paused) {
      sock.emit('data', read());
      queued += PAYLOAD * PER_READ;
    }
    return queued;
  };
  return { s, sock, fill };
}

describe('replication queue', () => {
  it('2 MiB for ordinary transactions, 16 MiB for a streamed one', () => {
    expect(queueLimit(false)).toBe(2 * MiB);
    expect(queueLimit(true)).toBe(16 * MiB);
  });

  it('pauses the socket past the limit and reads again below half of it, the limit following streamedPart', async () => {
    const { s, sock, fill } = await stream();
    const oneRead = PAYLOAD * PER_READ;
    // Ordinary transactions: paused once just over 2 MiB wait.
    let queued = fill();
    expect(queued).toBeGreaterThan(2 * MiB);
    expect(queued).toBeLessThanOrEqual(2 * MiB + oneRead);
    // A Stream Start: reading goes on at once, up to 16 MiB.
    s.streamedPart(true);
    expect(sock.paused).toBe(false);
    queued = fill();
    expect(queued).toBeGreaterThan(16 * MiB);
    expect(queued).toBeLessThanOrEqual(16 * MiB + oneRead);
    // Taken: read again only below 8 MiB.
    let left = queued;
    while (sock.paused) left -= s.tryNext()!.length;
    expect(left).toBeLessThan(8 * MiB);
    expect(left).toBeGreaterThanOrEqual(8 * MiB - PAYLOAD);
    // A Stream Stop with ~8 MiB waiting: the next read pauses again, until under 1 MiB is left.
    s.streamedPart(false);
    expect(sock.paused).toBe(false);
    sock.emit('data', read());
    left += oneRead;
    expect(sock.paused).toBe(true);
    while (sock.paused) left -= s.tryNext()!.length;
    expect(left).toBeLessThan(1 * MiB);
    expect(left).toBeGreaterThanOrEqual(1 * MiB - PAYLOAD);
    await s.close();
  });
});
