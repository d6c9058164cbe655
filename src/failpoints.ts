/**
 * Failpoints, for deterministic crash tests (test-only; never set in production).
 *
 * `PG_EGRESS_FAILPOINT=<point>:<action>[@<n>][,<point>:<action>[@<n>]...]`, read once at start:
 * at the n-th time (default the first) the code passes `<point>`, it does `<action>`:
 * - `crash`: SIGKILL of this process, as `kill -9` would (no finally block, no flush, no exit hook);
 * - `error`: throws an error naming the failpoint (the code's ordinary error path);
 * - `pause`: waits until the process receives SIGCONT (a test inspects the state, then kills it).
 * Every action first writes `pg-egress failpoint <point>: <action>` to stderr, so a test can wait
 * for it. `<point>:<n>` (a number for the action) is `<point>:crash@<n>` (the form
 * `load-before-commit:N` had).
 *
 * Points (one line each where they sit):
 * - `flush-after-rename`: a flush's files and batch index are in place, not yet registered;
 * - `export-after-chunk`: an export chunk's file is written to `_tmp`, not yet counted (mid-export);
 * - `reload-before-register`: an export's files and batch index are in place, not yet registered;
 * - `anchor-after-upload`: an anchor is uploaded or minted, not yet marked done in the queue;
 * - `load-before-commit`: `load` applied a batch into its target, not yet committed.
 *
 * Unset, `failpoint()` is one Map lookup on an empty map and returns undefined (no promise).
 */
const POINTS = ['flush-after-rename', 'export-after-chunk', 'reload-before-register', 'anchor-after-upload', 'load-before-commit'] as const;
export type FailpointName = (typeof POINTS)[number];

type Action = 'crash' | 'error' | 'pause';

interface Armed {
  action: Action;
  at: number;
  hits: number;
}

export const FAILPOINT_ENV = 'PG_EGRESS_FAILPOINT';

/** Parses the variable's value; throws on a malformed one (a typo would silently test nothing). */
export function parseFailpoints(value: string | undefined): Map<string, Armed> {
  const out = new Map<string, Armed>();
  for (const part of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z-]+):(?:(crash|error|pause)(?:@(\d+))?|(\d+))$/.exec(part);
    if (!m) throw new Error(`${FAILPOINT_ENV}: "${part}" is not <point>:<crash|error|pause>[@<n>]`);
    if (!(POINTS as readonly string[]).includes(m[1])) throw new Error(`${FAILPOINT_ENV}: no failpoint "${m[1]}" (there are ${POINTS.join(', ')})`);
    out.set(m[1], { action: (m[2] as Action | undefined) ?? 'crash', at: Number(m[3] ?? m[4] ?? 1), hits: 0 });
  }
  return out;
}

const armed = parseFailpoints(process.env[FAILPOINT_ENV]);

/** Passes the point; acts when it is armed for this hit. Call as `await failpoint('…')`. */
export function failpoint(name: FailpointName): Promise<void> | undefined {
  if (armed.size === 0) return undefined;
  const a = armed.get(name);
  if (!a || ++a.hits !== a.at) return undefined;
  process.stderr.write(`pg-egress failpoint ${name}: ${a.action}\n`);
  switch (a.action) {
    case 'crash':
      process.kill(process.pid, 'SIGKILL');
      // SIGKILL is not handled: nothing after this line runs.
      return new Promise<void>(() => undefined);
    case 'error':
      return Promise.reject(new Error(`failpoint ${name}`));
    case 'pause':
      return new Promise<void>((resolve) => process.once('SIGCONT', () => resolve()));
  }
}
