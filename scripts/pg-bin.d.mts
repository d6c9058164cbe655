/** Types for scripts/pg-bin.mjs (see there). */
export function systemPgBin(): string | null;
export function embeddedPgBin(): string;
export function findPgBin(): string;
