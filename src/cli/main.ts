/**
 * pg-egress command line. Exit codes are documented in README.md ("Exit codes") and come from
 * src/errors.ts; every failure is one line on stderr, with a stack only at --log-level debug.
 */
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { loadConfig, redactedConfig, type Config } from '../config/index.js';
import { EgressError, ExitCode, isEgressError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { reloadCommand } from './reload.js';
// The commands' modules load when their command runs (a CLI start stays cheap; DuckDB and the AWS
// SDK only when used): types only here.
import type { rebuildCommand } from './rebuild.js';
import type { loadCommand } from './load.js';

let debug = false;
/** SIGTERM to exit: the flush in progress, confirmation, closing (README "Shutdown"). */
const SHUTDOWN_BOUND_S = 30;
/** Exit code a command chose without failing (status: attention needed). */
let commandExit: ExitCode = ExitCode.OK;

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const example = (...lines: string[]) => `\nExample:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

/** Config (resolved once, frozen) and a logger at --log-level or log.level, made when first used. */
function load(program: Command, opts: { config: string }): { cfg: Config; log: Logger } {
  const cfg = loadConfig(opts.config);
  const level = program.opts<{ logLevel?: string }>().logLevel ?? cfg.log.level;
  debug = level === 'debug' || level === 'trace';
  let log: Logger | null = null;
  return {
    cfg,
    get log() {
      return (log ??= createLogger(level));
    },
  };
}

const configOption = () => new Option('-c, --config <file>', 'configuration file').default('cdc.yml');

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('pg-egress')
    .description('Stream PostgreSQL changes from a logical replication slot into exactly-once, per-table gzipped CSV windows')
    .addOption(new Option('--log-level <level>', 'override log.level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']))
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError()
    .exitOverride()
    .addHelpText('after', example('pg-egress init --config cdc.yml', 'pg-egress run --config cdc.yml', 'pg-egress status --config cdc.yml'));

  program
    .command('run')
    .description('run the daemon: stream the slot into files until SIGTERM/SIGINT')
    .addOption(configOption())
    .addHelpText('after', example('PGPASSWORD=... pg-egress run --config cdc.yml'))
    .action(async (opts: { config: string }) => {
      const loaded = load(program, opts);
      const { cfg } = loaded;
      // The session's connections open first: their handshakes (a server process each) overlap
      // the loading of the logger and the daemon's modules (~25-30 ms of a start here, with
      // openSession waiting for the pool's first connection, measured with the start's steps stamped).
      const { openSession } = await import('../source/session.js');
      const session = openSession(cfg);
      session.catch(() => undefined);
      const { log } = loaded;
      log.debug({ config: redactedConfig(cfg) }, 'configuration');
      const ac = new AbortController();
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          log.warn(`second ${sig}: exiting at once; unregistered changes will be streamed again`);
          process.exit(ExitCode.INTERNAL);
        }
        log.info(`${sig}: finishing the flush in progress, then stopping`);
        ac.abort();
        // The documented bound: a stop that takes longer (a stuck disk, a hung server) ends here.
        // Nothing unregistered was confirmed, so the next start streams it again.
        setTimeout(() => {
          log.error(`shutdown took over ${SHUTDOWN_BOUND_S} s: exiting now; unregistered changes will be streamed again`);
          process.exit(ExitCode.INTERNAL);
        }, SHUTDOWN_BOUND_S * 1000).unref();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      // Loaded when used: `reload --wait` and `status` start without the daemon's modules.
      const { runDaemon } = await import('../daemon.js');
      const { testClock } = await import('../clock.js');
      await runDaemon(cfg, log, { signal: ac.signal, now: testClock(), session });
    });

  program
    .command('init')
    .description('create or migrate the registry, publication and slot, then exit (run once as a superuser to enable DDL capture)')
    .addOption(configOption())
    .option('--url <admin-url>', 'connect with these credentials (a superuser) instead of source.*, and grant the registry privileges to source.user')
    .option('--recreate-slot', 'after a recorded slot loss: accept the gap and create the slot anew')
    .addHelpText('after', example('pg-egress init --config cdc.yml', 'pg-egress init --config cdc.yml --url postgres://postgres@db:5432/shop', 'pg-egress init --config cdc.yml --recreate-slot'))
    .action(async (opts: { config: string; url?: string; recreateSlot?: boolean }) => {
      const { cfg, log } = load(program, opts);
      const { initCommand } = await import('./init.js');
      process.stdout.write((await initCommand(cfg, log, { adminUrl: opts.url, recreateSlot: opts.recreateSlot })) + '\n');
    });

  program
    .command('reload')
    .description('ask for a consistent re-export of tables (a reload marker in the WAL); the running daemon exports them')
    .argument('<tables...>', 'schema.table names (quote parts that contain dots)')
    .addOption(configOption())
    .option('--wait', 'follow the exports until they are registered; exit 9 if one failed')
    .addHelpText('after', example('pg-egress reload public.orders public.customers --config cdc.yml --wait'))
    .action(async (tables: string[], opts: { config: string; wait?: boolean }) => {
      const { cfg } = load(program, opts);
      commandExit = (await reloadCommand(cfg, tables, { wait: opts.wait })) as ExitCode;
    });

  program
    .command('verify')
    .description('check files against their manifests, Merkle roots, batch indexes and the batch chain (offline); --row/--proof writes an inclusion proof; --against-source compares the archive with the source')
    .argument('[path]', 'output.dir, a table or window folder, or a data file')
    .option('--row <n>', 'record number (from 0, header excluded) to prove')
    .option('--proof <file>', 'where to write the proof (JSON)')
    .option('-c, --config <file>', 'also check the S3 copies and NEAR tokens of anchored batches (and put anchor references in a proof); the source for --against-source')
    .option('--against-source <tables...>', 'rebuild these schema.table names as of a snapshot of the source and compare them with it (needs --config and the daemon running)')
    .option('--from <dir|s3://bucket/prefix>', 'the archive to check (path is then relative to it, or absent for all of it); with --against-source: the archive (default: output.dir)')
    .option('--repair', 'with --against-source: request a reload of each table that differs')
    .option('--no-verify', 'with --against-source: do not check the files themselves (warned)')
    .addOption(new Option('--s3-endpoint <url>', 'S3-compatible endpoint for --from s3://'))
    .addOption(new Option('--s3-region <region>', 'S3 region for --from s3://'))
    .addOption(new Option('--s3-path-style', 'path-style S3 requests'))
    .addHelpText(
      'after',
      example(
        'pg-egress verify ./egress',
        'pg-egress verify ./egress/public.orders/20261122T100500Z/streaming.csv.gz --row 17 --proof row17.json',
        'pg-egress verify --from s3://bucket/egress',
        'pg-egress verify --from s3://bucket/egress public.orders/20261122T100500Z/streaming.csv.gz --row 17 --proof row17.json',
        'pg-egress verify --against-source public.orders --config cdc.yml --repair',
      ) +
        '\nExit codes: 0 verified (or equal), 10 a check failed or a table differs (the first problem, or the differing keys, are named).\n',
    )
    .action(async (
      target: string | undefined,
      opts: {
        row?: string;
        proof?: string;
        config?: string;
        againstSource?: string[];
        from?: string;
        repair?: boolean;
        verify?: boolean;
        s3Endpoint?: string;
        s3Region?: string;
        s3PathStyle?: boolean;
      },
    ) => {
      if (opts.againstSource) {
        const cfg = load(program, { config: opts.config ?? 'cdc.yml' }).cfg;
        const { verifyAgainstSourceCommand } = await import('./verify-source.js');
        commandExit = (await verifyAgainstSourceCommand(cfg, opts.againstSource, opts)) as ExitCode;
        return;
      }
      if (opts.from) {
        const cfg = opts.config ? load(program, { config: opts.config }).cfg : undefined;
        const { verifyFromCommand } = await import('./verify-from.js');
        commandExit = (await verifyFromCommand(target, { ...opts, from: opts.from, cfg })) as ExitCode;
        return;
      }
      if (!target) throw new EgressError('CONFIG_INVALID', 'verify needs a path (output.dir, a folder or a file), --from <dir|s3://…>, or --against-source <tables...> --config cdc.yml');
      const cfg = opts.config ? load(program, { config: opts.config }).cfg : undefined;
      const { verifyCommand } = await import('./verify.js');
      commandExit = (await verifyCommand(target, { ...opts, cfg })) as ExitCode;
    });

  program
    .command('rebuild')
    .description('rebuild tables from the archive as of an LSN or a time (SPEC §6) into PostgreSQL, DuckDB or a gzipped CSV; every file is checked against its manifest and the batch chain')
    .argument('<tables...>', 'schema.table names (partitioned roots: the union of their leaves)')
    .requiredOption('--from <dir|s3://bucket/prefix>', 'the archive: output.dir or its S3 copy')
    .requiredOption('--into <target>', 'postgres://…, duckdb:<file> or csv:<file.csv.gz>')
    .option('--as-of <lsn|time>', 'an LSN (0/177B128) or an ISO-8601 time; default: everything in the archive')
    .option('--target <schema.table>', 'name of the rebuilt table (one table only); default: the same name')
    .option('--replace', 'drop an existing target table first (in the same transaction)')
    .option('--no-verify', 'do not check files against manifests, Merkle roots and the batch chain (warned)')
    .addOption(new Option('--s3-endpoint <url>', 'S3-compatible endpoint for --from s3://'))
    .addOption(new Option('--s3-region <region>', 'S3 region for --from s3://'))
    .addOption(new Option('--s3-path-style', 'path-style S3 requests (default with --s3-endpoint)'))
    .addHelpText('after', example('pg-egress rebuild public.orders --from ./egress --as-of 2026-11-22T10:32:07Z --into postgres://localhost/warehouse', 'pg-egress rebuild public.orders --from s3://bucket/egress --into duckdb:orders.duckdb') + '\nExit codes: 0 rebuilt, 7 table not in the archive, 8 the target refused a value or statement (named), 10 a file or batch did not check out (named); the target is left as it was.\n')
    .action(async (tables: string[], opts: Parameters<typeof rebuildCommand>[1]) => {
      const { rebuildCommand } = await import('./rebuild.js');
      commandExit = (await rebuildCommand(tables, opts)) as ExitCode;
    });

  program
    .command('load')
    .description('apply the batches that arrived since the last run, exactly once, into PostgreSQL or DuckDB (incremental; _pg_egress_load records each batch)')
    .requiredOption('--from <dir|s3://bucket/prefix>', 'the archive: output.dir or its S3 copy')
    .requiredOption('--into <target>', 'postgres://… or duckdb:<file>')
    .option('--tables <tables...>', 'only these schema.table names (keep the same list on every run)')
    .option('--no-verify', 'do not check files against manifests, Merkle roots and the batch chain (warned)')
    .addOption(new Option('--s3-endpoint <url>', 'S3-compatible endpoint for --from s3://'))
    .addOption(new Option('--s3-region <region>', 'S3 region for --from s3://'))
    .addOption(new Option('--s3-path-style', 'path-style S3 requests (default with --s3-endpoint)'))
    .addHelpText('after', example('pg-egress load --from ./egress --into postgres://localhost/warehouse', 'pg-egress load --from s3://bucket/egress --into duckdb:warehouse.duckdb') + '\nExit codes: 0 loaded (or nothing new), 8 the target refused a batch (named), 10 a file or chain link did not check out (named; links and file sha256s are checked before anything is written).\n')
    .action(async (opts: Parameters<typeof loadCommand>[0]) => {
      const { loadCommand } = await import('./load.js');
      commandExit = (await loadCommand(opts)) as ExitCode;
    });

  program
    .command('recover')
    .description('rebuild an empty or missing registry (cdc_registry) from the archive: batches, files and the registered LSN, every hash and chain link checked; then run continues without exporting again')
    .addOption(configOption())
    .requiredOption('--from <dir|s3://bucket/prefix>', 'the archive: output.dir or its S3 copy (anchors.s3 endpoint and region are used for its prefix)')
    .addOption(new Option('--s3-endpoint <url>', 'S3-compatible endpoint for --from s3://'))
    .addOption(new Option('--s3-region <region>', 'S3 region for --from s3://'))
    .addOption(new Option('--s3-path-style', 'path-style S3 requests (default with --s3-endpoint)'))
    .addHelpText('after', example('pg-egress recover --config cdc.yml --from s3://bucket/egress', 'pg-egress recover --config cdc.yml --from ./egress') + '\nExit codes: 0 recovered, 7 no batch in --from, 8 the registry already holds batches of the slot, 10 a batch or file did not check out (named).\n')
    .action(async (opts: { config: string; from: string; s3Endpoint?: string; s3Region?: string; s3PathStyle?: boolean }) => {
      const { cfg, log } = load(program, opts);
      const { recoverCommand } = await import('./recover.js');
      commandExit = (await recoverCommand(cfg, log, opts)) as ExitCode;
    });

  program
    .command('schema-sql')
    .description("print the CREATE TABLE and load statements for a window's files (types from schema.yml, NULL and empty-string options spelled out)")
    .argument('<folder>', 'a table folder (its newest window) or a window folder')
    .requiredOption('--dialect <dialect>', 'postgres, duckdb, clickhouse, snowflake or bigquery')
    .addHelpText('after', example('pg-egress schema-sql --dialect duckdb ./egress/public.orders', 'pg-egress schema-sql --dialect postgres ./egress/public.orders/20261122T100500Z'))
    .action(async (folder: string, opts: { dialect: string }) => {
      const { schemaSqlCommand } = await import('./schema-sql.js');
      commandExit = schemaSqlCommand(folder, opts) as ExitCode;
    });

  program
    .command('verify-proof')
    .description('check a proof file with no database and no network, and say what it proves')
    .argument('<proof>', 'a proof written by verify --proof')
    .addHelpText('after', example('pg-egress verify-proof row17.json'))
    .action(async (file: string) => {
      const { verifyProofCommand } = await import('./verify.js');
      commandExit = (await verifyProofCommand(file)) as ExitCode;
    });

  program
    .command('uninstall')
    .description('remove what pg-egress installed in the database: event triggers, publication, slot (and with --drop-registry the cdc_registry schema); output files are kept')
    .addOption(configOption())
    .option('--url <admin-url>', 'connect with these credentials (a superuser) instead of source.*')
    .option('--drop-registry', 'also drop the cdc_registry schema (file log, gaps, DDL history)')
    .addHelpText('after', example('pg-egress uninstall --config cdc.yml --drop-registry'))
    .action(async (opts: { config: string; url?: string; dropRegistry?: boolean }) => {
      const { cfg, log } = load(program, opts);
      const { uninstall } = await import('./uninstall.js');
      process.stdout.write((await uninstall(cfg, log, { adminUrl: opts.url, dropRegistry: opts.dropRegistry })) + '\n');
    });

  program
    .command('status')
    .description('show slot lag, registered LSN, table modes, pending rows and anchors')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .addHelpText('after', example('pg-egress status --config cdc.yml', 'pg-egress status --config cdc.yml --json | jq .gaps') + '\nExit codes: 0 all well, 6 slot missing or lost, 9 a data gap is recorded or selected tables are not published.\n')
    .action(async (opts: { config: string; json?: boolean }) => {
      const { cfg } = load(program, opts);
      const { statusExitCode, statusReport } = await import('../status/report.js');
      const { formatStatus } = await import('../status/format.js');
      const report = await statusReport(cfg);
      process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
      commandExit = statusExitCode(report);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    commandExit = ExitCode.OK;
    await program.parseAsync(argv);
    return commandExit;
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) {
      // commander already printed its message (help, version, usage error).
      return ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' ? ExitCode.OK : ExitCode.CONFIG;
    }
    if (isEgressError(e)) {
      process.stderr.write(`pg-egress: ${e.message}\n`);
      if (debug && e.cause instanceof Error) process.stderr.write(`${e.cause.stack ?? e.cause.message}\n`);
      return e.exitCode;
    }
    const err = e instanceof Error ? e : new Error(String(e));
    process.stderr.write(`pg-egress: internal error: ${err.message.split('\n')[0]}\n`);
    if (debug) process.stderr.write(`${err.stack}\n`);
    return ExitCode.INTERNAL;
  }
}

export { EgressError };
