/**
 * pg-egress command line. Exit codes are documented in README.md ("Exit codes") and come from
 * src/errors.ts; every failure is one line on stderr, with a stack only at --log-level debug.
 */
import { Command, Option } from 'commander';
import { loadConfig, redactedConfig, type Config } from '../config/index.js';
import { EgressError, ExitCode, isEgressError } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { prepareSource, runDaemon } from '../daemon.js';
import { formatStatus, statusReport } from './status.js';

let debug = false;

/** Config (resolved once, frozen) and a logger at --log-level or log.level. */
function load(program: Command, opts: { config: string }): { cfg: Config; log: Logger } {
  const cfg = loadConfig(opts.config);
  const level = program.opts<{ logLevel?: string }>().logLevel ?? cfg.log.level;
  debug = level === 'debug' || level === 'trace';
  return { cfg, log: createLogger(level) };
}

const configOption = () => new Option('-c, --config <file>', 'configuration file').default('cdc.yml');

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('pg-egress')
    .description('Stream PostgreSQL changes from a logical replication slot into exactly-once, per-table gzipped CSV windows')
    .addOption(new Option('--log-level <level>', 'override log.level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']))
    .showHelpAfterError()
    .exitOverride();

  program
    .command('run')
    .description('run the daemon: stream the slot into files until SIGTERM/SIGINT')
    .addOption(configOption())
    .action(async (opts: { config: string }) => {
      const { cfg, log } = load(program, opts);
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
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await runDaemon(cfg, log, { signal: ac.signal });
    });

  program
    .command('init')
    .description('create or migrate the registry, publication and slot, then exit (run once as a superuser to enable DDL capture)')
    .addOption(configOption())
    .action(async (opts: { config: string }) => {
      const { cfg, log } = load(program, opts);
      const prep = await prepareSource(cfg, log);
      await prep.client.end();
      process.stdout.write(`initialized: registry cdc_registry, publication ${cfg.publication}, slot ${cfg.slot}${prep.slotCreated ? ' (created)' : ''}\n`);
    });

  program
    .command('status')
    .description('show slot lag, registered LSN, table modes, pending rows and anchors')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      const { cfg } = load(program, opts);
      const report = await statusReport(cfg);
      process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return ExitCode.OK;
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
