// @ts-check
/**
 * The stack a TypeScript user would assemble from npm packages to do what pg-egress does:
 * pg-logical-replication (pgoutput) → csv-stringify → zlib gzip → a file per table, acknowledging
 * each message to the server once it has been written (flow control on, so the handler is awaited).
 * Written the way its READMEs show, with no tuning: the benchmark's baseline (b) for S1 and S2.
 *
 *   node bench/baselines/ts-stack.mjs <url> <slot> <publication> <out-dir> <rows>
 *
 * Exits 0 once <rows> inserted/updated/deleted rows are written, acknowledged and the files closed.
 */
import { createWriteStream } from 'node:fs';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import { stringify } from 'csv-stringify';
import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';

const [url, slot, publication, outDir, rowsArg] = process.argv.slice(2);
const want = Number(rowsArg);
mkdirSync(outDir, { recursive: true });

/** @type {Map<string, { csv: import('csv-stringify').Stringifier, done: Promise<unknown> }>} */
const files = new Map();
function fileFor(/** @type {{ schema: string, name: string, columns: { name: string }[] }} */ rel) {
  const key = `${rel.schema}.${rel.name}`;
  let f = files.get(key);
  if (!f) {
    const csv = stringify({ header: true, columns: ['op', ...rel.columns.map((c) => c.name)] });
    const out = createWriteStream(path.join(outDir, `${key}.csv.gz`));
    csv.pipe(createGzip()).pipe(out);
    f = { csv, done: once(out, 'close') };
    files.set(key, f);
  }
  return f;
}

const service = new LogicalReplicationService(
  { connectionString: url },
  { acknowledge: { auto: false, timeoutSeconds: 10 }, flowControl: { enabled: true } },
);
const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication] });
let rows = 0;
let finished = false;

service.on('data', async (/** @type {string} */ lsn, /** @type {any} */ msg) => {
  if (msg.tag === 'insert' || msg.tag === 'update' || msg.tag === 'delete') {
    const { csv } = fileFor(msg.relation);
    const values = msg.tag === 'delete' ? msg.old ?? msg.key : msg.new;
    if (!csv.write({ op: msg.tag[0].toUpperCase(), ...values })) await once(csv, 'drain');
    rows++;
  }
  await service.acknowledge(lsn);
  if (rows >= want && !finished) {
    finished = true;
    for (const f of files.values()) f.csv.end();
    await Promise.all([...files.values()].map((f) => f.done));
    await service.stop();
    process.exit(0);
  }
});
service.on('error', (e) => {
  if (finished) return;
  console.error(`ts-stack: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
await service.subscribe(plugin, slot);
