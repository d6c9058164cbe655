/**
 * missingFiles (src/output/sweep.ts): the registered files that are not on disk, in the order
 * given, the first `limit` of them, while the lookups run many at a time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { missingFiles } from '../../src/output/sweep.js';

describe('missingFiles', () => {
  let dir: string;
  const registered: string[] = [];
  const gone: string[] = [];

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-missing-'));
    // 1,000 registered files in 10 folders; every 7th never written, and the folder t9 missing whole.
    for (let t = 0; t < 10; t++) {
      if (t !== 9) mkdirSync(path.join(dir, `t${t}`));
      for (let i = 0; i < 100; i++) {
        const rel = `t${t}/b/${i}.csv.gz`;
        registered.push(rel);
        if (t === 9 || (t * 100 + i) % 7 === 0) {
          gone.push(rel);
          continue;
        }
        mkdirSync(path.join(dir, `t${t}/b`), { recursive: true });
        writeFileSync(path.join(dir, rel), '');
      }
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names every missing file once, in the order given', async () => {
    expect(await missingFiles(dir, registered)).toEqual(gone);
    expect(await missingFiles(dir, registered.slice().reverse())).toEqual(gone.slice().reverse());
  });

  it('with a limit, the first ones in that order', async () => {
    for (const limit of [1, 2, 31, 33, 200]) expect(await missingFiles(dir, registered, limit)).toEqual(gone.slice(0, limit));
  });

  it('none missing, and no files at all', async () => {
    const present = registered.filter((p) => !gone.includes(p));
    expect(await missingFiles(dir, present)).toEqual([]);
    expect(await missingFiles(dir, [])).toEqual([]);
  });
});
