/**
 * V8's code cache of the command's bundle (src/cli/compile-cache.ts, dist/bundle/bin.js): written
 * by a command's first run, taken as it is by the next, refused and written again when it does not
 * fit, replaced by a run that compiled more, never taken from a folder others can write, off when
 * asked; and the command's output the same with or without it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commandKey, compileCacheDir } from '../../src/cli/compile-cache.js';
import { BIN, ROOT } from '../helpers/egress.js';

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const SUB = `${process.version}-${process.arch}`;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-cc-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** name → inode of the files in a cache folder (a file written again is a new inode: written by rename). */
function inodes(dir: string): Map<string, number> {
  return new Map(readdirSync(dir).map((f) => [f, statSync(path.join(dir, f)).ino]));
}

describe('compile cache: settings', () => {
  it('is under the temporary folder by default, per user, Node version and architecture', () => {
    expect(compileCacheDir({}, '/t', 1000)).toBe(path.join('/t', 'pg-egress-compile-cache-1000', SUB));
    expect(compileCacheDir({ PG_EGRESS_COMPILE_CACHE: 'cache' }, '/t', 1000)).toBe(path.join(path.resolve('cache'), SUB));
    for (const off of ['off', 'OFF', '0', 'false', '', ' ']) expect(compileCacheDir({ PG_EGRESS_COMPILE_CACHE: off }, '/t', 1000)).toBeUndefined();
  });

  it('keys files by the command, and anything else alike', () => {
    expect(commandKey(['node', 'bin.js', 'run', '--config', 'x'])).toBe('run');
    expect(commandKey(['node', 'bin.js', 'verify-anchors'])).toBe('verify-anchors');
    expect(commandKey(['node', 'bin.js', '--version'])).toBe('_');
    expect(commandKey(['node', 'bin.js', '../../etc'])).toBe('_');
    expect(commandKey(['node', 'bin.js'])).toBe('_');
  });
});

describe('compile cache: the bundle', () => {
  it('is CommonJS in strict mode, as the ES modules it was built from', () => {
    const bundle = path.dirname(BIN);
    expect(JSON.parse(readFileSync(path.join(bundle, 'package.json'), 'utf8'))).toEqual({ type: 'commonjs' });
    const chunks = readdirSync(bundle).filter((f) => f.endsWith('.js'));
    expect(chunks.length).toBeGreaterThan(5);
    // Sloppy mode would drop an assignment to a frozen object (the configuration) without a word.
    for (const f of chunks) expect(readFileSync(path.join(bundle, f), 'utf8').replace(/^#!.*\n/, '').slice(0, 13), f).toBe('"use strict";');
  });

  it('is written by the first run, taken by the next, and written again when V8 refuses it', () => {
    const base = path.join(tmp, 'one');
    const dir = path.join(base, SUB);
    const env = { PG_EGRESS_COMPILE_CACHE: base };
    const first = run(['--version'], env);
    expect(first).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    const files = readdirSync(dir).sort();
    // The entry's chunk and what it requires; bin.js itself is compiled by Node before the hook.
    expect(files.some((f) => f.startsWith('_.main.js.'))).toBe(true);
    expect(files.every((f) => /^_\.[\w$-]+\.js\.[0-9a-f]{20}$/.test(f))).toBe(true);
    expect(statSync(base).mode & 0o777).toBe(0o700);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of files) expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);

    // Taken as it is: nothing written again.
    const before = inodes(dir);
    expect(run(['--version'], env)).toEqual(first);
    expect(inodes(dir)).toEqual(before);

    // Data V8 refuses (not its format): the command runs as without it, and the file is replaced.
    const main = files.find((f) => f.startsWith('_.main.js.'))!;
    const junk = Buffer.alloc(4096, 0x5a);
    writeFileSync(path.join(dir, main), junk);
    expect(run(['--version'], env)).toEqual(first);
    expect(readFileSync(path.join(dir, main)).equals(junk)).toBe(false);
    expect(statSync(path.join(dir, main)).size).toBeGreaterThan(10_000);
    const after = inodes(dir);
    expect(run(['--version'], env)).toEqual(first);
    expect(inodes(dir)).toEqual(after);
  });

  it('is written again when a run compiled a tenth more than it held, and not when less', () => {
    const base = path.join(tmp, 'grow');
    const dir = path.join(base, SUB);
    const env = { PG_EGRESS_COMPILE_CACHE: base };
    const mainFile = () => readdirSync(dir).find((f) => f.startsWith('_.main.js.'))!;
    expect(run(['--version'], env).code).toBe(0);
    const small = statSync(path.join(dir, mainFile()));
    // --help runs commander's help functions too (the same key: no command name).
    const help = run(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: pg-egress/);
    const large = statSync(path.join(dir, mainFile()));
    expect(large.ino).not.toBe(small.ino);
    expect(large.size).toBeGreaterThan(small.size * 1.1);
    expect(run(['--version'], env).code).toBe(0);
    expect(run(['--help'], env)).toEqual(help);
    expect(statSync(path.join(dir, mainFile())).ino).toBe(large.ino);
  });

  it('keeps one set of files per command, and a failing command says the same as without a cache', () => {
    const base = path.join(tmp, 'two');
    const missing = ['status', '--config', path.join(tmp, 'nowhere.yml')];
    const cached = run(missing, { PG_EGRESS_COMPILE_CACHE: base });
    const again = run(missing, { PG_EGRESS_COMPILE_CACHE: base });
    const plain = run(missing, { PG_EGRESS_COMPILE_CACHE: 'off' });
    expect(cached.code).toBe(2);
    expect(cached.stderr).toMatch(/config: cannot read .*nowhere\.yml/);
    expect(again).toEqual(plain);
    expect(cached).toEqual(plain);
    expect(readdirSync(path.join(base, SUB)).every((f) => f.startsWith('status.'))).toBe(true);
  });

  it('exits 0 with nothing on stderr when its reader has gone (`pg-egress --help | head -1`)', async () => {
    const child = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, PG_EGRESS_COMPILE_CACHE: path.join(tmp, 'pipe') } });
    child.stdout.destroy(); // before the command writes: its write fails with EPIPE
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });

  it('is not used from a folder others can write, nor when off', () => {
    const open = path.join(tmp, 'open');
    mkdirSync(open, { mode: 0o700 });
    chmodSync(open, 0o777);
    expect(run(['--version'], { PG_EGRESS_COMPILE_CACHE: open })).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
    const sub = path.join(open, SUB);
    // The version's subfolder may be made, but nothing is read from it or written into it.
    expect(statSync(sub, { throwIfNoEntry: false }) ? readdirSync(sub) : []).toEqual([]);

    const home = mkdtempSync(path.join(tmp, 'tmpdir-'));
    expect(run(['--version'], { TMPDIR: home, PG_EGRESS_COMPILE_CACHE: 'off' }).code).toBe(0);
    expect(readdirSync(home)).toEqual([]);
    expect(run(['--version'], { TMPDIR: home }).code).toBe(0);
    const uid = process.getuid?.() ?? 'user';
    expect(readdirSync(path.join(home, `pg-egress-compile-cache-${uid}`, SUB)).length).toBeGreaterThan(0);
  });
});
