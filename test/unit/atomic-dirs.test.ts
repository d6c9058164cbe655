/**
 * ensureDirsIn (src/output/atomic.ts): an export's folders made one after another, every one of them,
 * with existing ones left alone and any other failure reported as the OUTPUT_IO error.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureDirsIn } from '../../src/output/atomic.js';
import { EgressError } from '../../src/errors.js';

describe('ensureDirsIn', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-dirs-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('makes every folder once, keeping those that exist', async () => {
    const parent = tmp();
    const names = Array.from({ length: 100 }, (_, i) => `public.t_${i}`);
    await ensureDirsIn(parent, [...names.slice(0, 10)], 0o750);
    // Again with duplicates and the ten that exist now.
    await ensureDirsIn(parent, [...names, ...names.slice(0, 30)], 0o750);
    expect(readdirSync(parent).sort()).toEqual([...names].sort());
    for (const n of names) expect(statSync(path.join(parent, n)).isDirectory()).toBe(true);
    expect(statSync(path.join(parent, names[99])).mode & 0o777).toBe(0o750 & ~process.umask());
  });

  it('reports a folder it cannot make as OUTPUT_IO, naming it', async () => {
    const parent = tmp();
    // A file where a folder's parent should be: ENOTDIR for that one, the others are made.
    writeFileSync(path.join(parent, 'blocker'), 'x');
    const names = ['a', 'b', 'blocker/c', 'd'];
    const err = await ensureDirsIn(parent, names, 0o755).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(EgressError);
    expect((err as EgressError).code).toBe('OUTPUT_IO');
    expect((err as EgressError).message).toContain(path.join(parent, 'blocker/c'));
    // Nothing is still being made once it has failed: the folder can be removed at once (this
    // failed in CI when the error was thrown with mkdirs still running).
    rmSync(parent, { recursive: true });
  });
});
