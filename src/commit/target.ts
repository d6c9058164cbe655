/** The commit target of a running daemon: output.dir, the registry and the batch chain. */
import type { Config } from '../config/index.js';
import type { Registry } from '../registry/registry.js';
import type { BatchChain } from '../proof/chain.js';
import type { CommitTarget } from './batch-commit.js';
import { commitFlush, type FlushCommitted, type FlushInput } from './flush.js';

export function commitTarget(
  cfg: Config,
  server: { database: string; systemIdentifier: string },
  registry: Registry,
  chain: BatchChain,
): CommitTarget {
  return {
    outDir: cfg.output.dir,
    dirMode: cfg.output.dirMode,
    fileMode: cfg.output.fileMode,
    slot: cfg.slot,
    source: { database: server.database, systemIdentifier: server.systemIdentifier },
    recordIntent: (batchId, paths, reloads) => registry.recordIntent(batchId, paths, reloads),
    registerBatch: (b, extra) => registry.registerBatch(b, extra),
    chain,
  };
}

/** The flush sink of a running daemon: batch numbers from the registry, the commit to `target`. */
export function flushSink(target: CommitTarget, registry: Pick<Registry, 'nextBatchSeq'>): { nextBatchSeq(w: string): Promise<number>; commit(x: FlushInput): Promise<FlushCommitted> } {
  return { nextBatchSeq: (w) => registry.nextBatchSeq(w), commit: (x) => commitFlush(target, x) };
}
