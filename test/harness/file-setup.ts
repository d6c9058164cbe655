/**
 * Runs around every test file. A worker runs several files one after another in one process
 * (vitest.config: `isolate: false`, to pay Node's and the modules' start-up once per worker, not
 * once per file), so what one file leaves in the process must not reach the next: the environment
 * variables it set (credentials, PG_EGRESS_* switches, which spawned children inherit) and a failed
 * `run` it spawned.
 */
import { afterAll, beforeAll } from 'vitest';
import { resetChildFailure } from '../helpers/egress.js';

let saved: NodeJS.ProcessEnv = {};

beforeAll(() => {
  saved = { ...process.env };
  resetChildFailure();
});

afterAll(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
});
