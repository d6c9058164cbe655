/**
 * The pgoutput messages that carry no rows of their own, as the real server sends them: Origin
 * (a transaction replayed under a replication origin), logical decoding Messages that are not ours
 * (transactional with another prefix, and non-transactional ones, which arrive outside any
 * Begin/Commit), and Type (enum and composite columns). None of them may disturb the rows around
 * them. A second slot peeked with the same options proves the server really sent each kind.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnv, readStreamingRows, startInProcess, waitCaughtUp, waitSlotActive, withDb, type EgressEnv, type StreamRow } from '../helpers/egress.js';

const v = (r: StreamRow, c: string) => r.values.get(c)?.toString() ?? null;

describe('Origin, foreign Messages and Type', () => {
  let env: EgressEnv;
  let daemon: ReturnType<typeof startInProcess>;
  /** First byte of every pgoutput message the server sent for the workload, in order. */
  let kinds: string[] = [];

  beforeAll(async () => {
    env = await createEnv();
    await withDb(env.url, (c) =>
      c.query(`CREATE TYPE colour AS ENUM ('red', 'green');
               CREATE TYPE pt AS (x int, y int);
               CREATE TABLE m (id int PRIMARY KEY, c colour, p pt, note text);
               SELECT pg_replication_origin_create('upstream_a');`),
    );
    daemon = startInProcess(env);
    await waitSlotActive(env);
    // The publication exists now; a second slot sees exactly what the daemon's slot sees.
    await withDb(env.url, (c) => c.query(`SELECT pg_create_logical_replication_slot('peek_${env.slot}', 'pgoutput')`));
    await withDb(env.url, async (c) => {
      await c.query(`INSERT INTO m VALUES (1, 'red', '(1,2)', 'plain')`);
      // A transaction replayed from another node: the server sends an Origin message after Begin.
      await c.query(`SELECT pg_replication_origin_session_setup('upstream_a')`);
      await c.query(`BEGIN`);
      await c.query(`SELECT pg_replication_origin_xact_setup('0/AB12', now())`);
      await c.query(`INSERT INTO m VALUES (2, 'green', '(3,4)', 'from upstream')`);
      await c.query(`COMMIT`);
      await c.query(`SELECT pg_replication_origin_session_reset()`);
      // Another application's transactional message, between rows of the same transaction.
      await c.query(`BEGIN;
        INSERT INTO m VALUES (3, 'red', NULL, 'before message');
        SELECT pg_logical_emit_message(true, 'someone-else', 'payload, with "quotes"');
        UPDATE m SET note = 'after message' WHERE id = 3;
        COMMIT;`);
      // A non-transactional message: decoded at once, outside any transaction.
      await c.query(`SELECT pg_logical_emit_message(false, 'pg-egress:ddl', 'not json, and not transactional')`);
      await c.query(`INSERT INTO m VALUES (4, NULL, '(,)', 'last')`);
    });
    await waitCaughtUp(env);
    await daemon.stop();
    kinds = await withDb(env.url, async (c) => {
      const { rows } = await c.query<{ k: string }>(
        `SELECT chr(get_byte(data, 0)) AS k
         FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2, 'messages', 'true')`,
        [`peek_${env.slot}`, env.slot],
      );
      await c.query(`SELECT pg_drop_replication_slot($1)`, [`peek_${env.slot}`]);
      return rows.map((r) => r.k);
    });
  });

  afterAll(async () => {
    await daemon?.stop();
    await env?.drop();
  });

  it('the server sent Origin, Type and Message alongside the rows', () => {
    expect(kinds).toContain('O');
    expect(kinds).toContain('Y');
    expect(kinds.filter((k) => k === 'M')).toHaveLength(2);
    expect(kinds.filter((k) => k === 'I')).toHaveLength(4);
  });

  it('every row is written once, in order, with exact values; the messages leave no trace', () => {
    const { header, rows } = readStreamingRows(env.outDir, 'public.m');
    expect(header.every((h) => h.slice(6).join() === 'id,c,p,note')).toBe(true);
    expect(rows.map((r) => [r.op, r.seq, v(r, 'id'), v(r, 'c'), v(r, 'p'), v(r, 'note')])).toEqual([
      ['I', 0, '1', 'red', '(1,2)', 'plain'],
      ['I', 0, '2', 'green', '(3,4)', 'from upstream'],
      // The foreign message between them takes no _seq.
      ['I', 0, '3', 'red', null, 'before message'],
      ['U', 1, '3', 'red', null, 'after message'],
      ['I', 0, '4', null, '(,)', 'last'],
    ]);
    const lsns = rows.map((r) => r.lsn);
    expect([...lsns].sort()).toEqual(lsns);
    expect(new Set(lsns).size).toBe(4);
  });
});
