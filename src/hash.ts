/** SHA-256, written once: of text or bytes, as hex (file and document hashes in manifests and the registry). */
import { createHash } from 'node:crypto';

export const sha256Hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
