/**
 * At start: anchors queued for a target that is no longer configured (anchors.s3 or anchors.near
 * removed from cdc.yml) would stay pending for ever. They are marked `skipped` with one warning
 * per target (status and the anchor_queue metric show them; a skipped anchor does not make
 * status exit 9), and resumed when the target is configured again.
 */
import type { Config } from '../config/index.js';
import type { Logger } from '../log.js';
import { AnchorQueue, anchorTargets } from '../registry/anchors.js';

export async function reconcileAnchorTargets(queue: AnchorQueue, cfg: Config, log: Logger): Promise<void> {
  const { skipped, resumed } = await queue.reconcileTargets(anchorTargets(cfg));
  for (const [target, n] of skipped) {
    log.warn({ target, anchors: n }, `${n} anchor(s) for anchors.${target} marked skipped: anchors.${target} is not configured any more; configure it again to anchor them`);
  }
  for (const [target, n] of resumed) log.info({ target, anchors: n }, `${n} skipped anchor(s) for anchors.${target} resumed: the target is configured again`);
}
