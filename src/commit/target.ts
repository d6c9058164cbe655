/** The commit target of a running daemon: output.dir, the registry and the batch chain. */
import type { Config } from '../config/index.js';
import type { Registry } from '../registry/registry.js';
import type { BatchChain } from '../proof/chain.js';
import type { CommitTarget } from './batch-commit.js';

export function commitTarget(cfg: Config, server: { database: string; systemIdentifier: string }, registry: Registry, chain: BatchChain): CommitTarget {
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
