/**
 * glibc malloc controls for the DuckDB target (native/malloc_ctl.c; without the addon or without
 * glibc they do nothing). At the peak of `load --into duckdb` glibc's arenas held ~85 MB: DuckDB's
 * C++ allocations (outside its own jemalloc pool) happen on whichever libuv pool thread runs the
 * call, each such thread gets an arena of its own, and glibc keeps what is freed in each of them.
 * Fewer arenas and giving back free pages after each batch keep that down.
 *
 * UV_THREADPOOL_SIZE cannot do it from inside: with an ES module as the entry point, Node's loader
 * has already started libuv's pool (reading the module) before the first line runs.
 */
import { createRequire } from 'node:module';
import v8 from 'node:v8';

interface MallocAddon {
  mallocArenaMax?: (n: number) => boolean;
  mallocTrim?: () => boolean;
}

function loadAddon(): MallocAddon {
  if (process.env.PG_EGRESS_NATIVE === '0') return {};
  try {
    // ../../build from both src/archive (tests) and dist/archive (installed).
    return createRequire(import.meta.url)('../../build/Release/pg_egress_sha256.node') as MallocAddon;
  } catch {
    return {};
  }
}

const addon = loadAddon();

/**
 * Caps glibc's arenas (PG_EGRESS_MALLOC_ARENAS, default 1; 0 leaves glibc's 8 × cores). Threads
 * that already have an arena keep it; later ones share. Returns whether the cap was set.
 */
export function capMallocArenas(): boolean {
  const n = Number(process.env.PG_EGRESS_MALLOC_ARENAS ?? 1);
  if (!Number.isInteger(n) || n < 1 || !addon.mallocArenaMax) return false;
  return addon.mallocArenaMax(n);
}

/** Returns glibc's free pages to the system (malloc_trim(0)); a few ms. */
export function trimMalloc(): void {
  addon.mallocTrim?.();
}

/**
 * Keeps V8's young generation at its starting size (PG_EGRESS_V8_SEMI_SPACE_GROWTH, default 1: no
 * growth; 0 leaves V8's default). Checking files makes short-lived garbage at a steady rate, and
 * V8 grows the new space to 2 × 16 MB for it, resident from then on; at bench scale that was
 * ~28 MB of the peak, for a few more scavenges. V8 reads this flag each time it would grow the
 * space, so setting it at run time works (unlike --max-semi-space-size, read at start).
 */
export function limitYoungGeneration(): void {
  const f = Number(process.env.PG_EGRESS_V8_SEMI_SPACE_GROWTH ?? 1);
  if (Number.isInteger(f) && f >= 1) v8.setFlagsFromString(`--semi-space-growth-factor=${f}`);
}

/**
 * Makes V8 collect its old generation sooner (`--optimize-for-size`; PG_EGRESS_V8_OPTIMIZE_FOR_SIZE,
 * default 1; 0 leaves V8's default). Staging streaming rows through Node (a rebuild, and files the
 * DuckDB SQL path leaves to the stager) makes old-generation garbage at a steady rate: ~15-20 MB
 * live, but V8 let the heap grow to ~85 MB between full collections, most of a `rebuild --into
 * duckdb:` peak above 256 MB. With the flag V8 grows the heap by smaller factors; bench row A:
 * rebuild --into duckdb: 270-280 -> ~217 MB, same time. V8 reads it at each collection, so setting
 * it at run time works.
 */
export function collectSooner(): void {
  if (process.env.PG_EGRESS_V8_OPTIMIZE_FOR_SIZE !== '0') v8.setFlagsFromString('--optimize-for-size');
}

/**
 * Caps how far V8 lets the old generation grow past what a full collection left live
 * (`--heap-growing-percent`; PG_EGRESS_V8_HEAP_GROWING_PERCENT, default 100: at most 2×; 0 leaves
 * V8's own factor, up to 4×). For the PostgreSQL target, whose rebuild stages every streamed row
 * through Node: bench row A, `rebuild --into postgres` peaked at 230-260 MB over three runs with
 * V8's factor and at 170 MB with this one, in about the same time (17.8-19.3 s against 16.6-18.6).
 * `--optimize-for-size` (collectSooner) got it to ~120 MB but took 25% longer: it also changes
 * how V8 compiles. V8 reads the flag at each collection, so setting it at run time works.
 */
export function limitHeapGrowth(): void {
  const p = Number(process.env.PG_EGRESS_V8_HEAP_GROWING_PERCENT ?? 100);
  if (Number.isInteger(p) && p >= 1) v8.setFlagsFromString(`--heap-growing-percent=${p}`);
}

/**
 * DuckDB's own allocator (its bundled jemalloc, which reads DUCKDB_JE_MALLOC_CONF when libduckdb
 * loads, so this must run before `@duckdb/node-api` is imported): one arena instead of 4 × cores
 * (DuckDB's calls come from the four libuv pool threads, each of which got an arena keeping its
 * own freed pages), and freed pages returned at once instead of after jemalloc's 10 s decay. At
 * bench scale ~70 MB lower peak for about the same time. A DUCKDB_JE_MALLOC_CONF already in the
 * environment is kept.
 */
export function configureDuckdbAllocator(): void {
  process.env.DUCKDB_JE_MALLOC_CONF ??= 'narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0';
}
