/** How `status` shows output.dir as a staging area (issue 17): pure formatting. */
import type { Config } from '../config/index.js';
import type { LocalSummary } from '../registry/retention.js';

export function describeRetain(cfg: Config): string {
  if (!cfg.anchors.s3) return 'forever (no anchors.s3)';
  const ms = cfg.output.retainMs;
  if (ms === null) return 'forever';
  for (const [unit, n] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms % n === 0) return `${ms / n}${unit}`;
  return `${ms}ms`;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function formatLocal(l: LocalSummary & { retain: string }): string {
  return (
    `${formatBytes(l.localBytes)} in output.dir (data ${formatBytes(l.localDataBytes)} in ${l.localDataFiles} files, oldest window ${l.oldestLocalWindow ?? '-'}), ` +
    `${formatBytes(l.awaitingUploadBytes)} in ${l.awaitingUploadFiles} files waiting for upload, ${formatBytes(l.removedBytes)} in S3 only; retain ${l.retain}`
  );
}
