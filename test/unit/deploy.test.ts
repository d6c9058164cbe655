/**
 * The Docker and Kubernetes packaging, checked without a Docker engine or a cluster (neither exists
 * on the development machine or in CI):
 *  - the Dockerfile's rules (multi-stage, production dependencies only, non-root numeric USER,
 *    HEALTHCHECK on /health, ENTRYPOINT pg-egress) and an allow-list .dockerignore that lets through
 *    exactly what the Dockerfile copies;
 *  - the final stage built by hand: its COPY and RUN instructions replayed into a temporary folder
 *    (TypeScript compiled as the build stage does, `npm ci --omit=dev` from the npm cache), then
 *    `pg-egress` run from PATH and every compiled module imported with only production dependencies;
 *    its files compared with `npm pack --dry-run`;
 *  - deploy/kubernetes/*.yaml against each other, the Dockerfile, and the ConfigMap's cdc.yml parsed
 *    by the daemon's own config parser with the Secret's keys as the environment.
 * No PostgreSQL is used.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isBuiltin } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { parseConfig, type Config } from '../../src/config/index.js';
import { FULL } from '../helpers/scale.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** mtimes of the files under a folder that match. */
function mtimes(dir: string, match: RegExp): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && match.test(e.name))
    .map((e) => statSync(path.join(e.parentPath, e.name)).mtimeMs);
}
/** dist/ was built (every file written) after the last change to src/ and the build's tsconfig. */
function distIsFresh(): boolean {
  const built = mtimes(path.join(ROOT, 'dist'), /\.js$/);
  const sources = [...mtimes(path.join(ROOT, 'src'), /\.ts$/), statSync(path.join(ROOT, 'tsconfig.build.json')).mtimeMs];
  return built.length > 0 && Math.min(...built) >= Math.max(...sources);
}
const K8S = path.join(ROOT, 'deploy/kubernetes');
/** `run` finishes the flush in progress and exits within this many seconds of SIGTERM. */
const SIGTERM_BOUND_S = 30;
/** The memory test's limit for a 1M-row transaction (test/integration/memory.test.ts). */
const MEMORY_TEST_LIMIT = 256 * 1024 * 1024;

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
  files: string[];
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instr {
  cmd: string;
  args: string;
  line: number;
}
interface Stage {
  base: string;
  name?: string;
  instrs: Instr[];
}

/** Stages and instructions: comments dropped, `\` continuations joined (comment lines inside skipped). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let l = lines[i].trim();
    if (!l || l.startsWith('#')) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) {
      l = l.slice(0, -1);
      let next = lines[++i].trim();
      while (next.startsWith('#') && i + 1 < lines.length) next = lines[++i].trim();
      l += ` ${next}`;
    }
    const m = /^(\S+)\s*(.*)$/.exec(l);
    if (!m) continue;
    const instr = { cmd: m[1].toUpperCase(), args: m[2].trim(), line: start };
    if (instr.cmd === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instr.args);
      if (!f) throw new Error(`Dockerfile line ${start}: cannot read FROM ${instr.args}`);
      stages.push({ base: f[1], name: f[2], instrs: [] });
    } else {
      if (!stages.length) throw new Error(`Dockerfile line ${start}: ${instr.cmd} before FROM`);
      stages[stages.length - 1].instrs.push(instr);
    }
  }
  return stages;
}

const all = (s: Stage, cmd: string): Instr[] => s.instrs.filter((i) => i.cmd === cmd);
const last = (s: Stage, cmd: string): Instr | undefined => all(s, cmd).at(-1);

/** `--flag=value` options in front of an instruction's arguments, and the rest. */
function flags(args: string): { flags: Record<string, string>; rest: string } {
  const out: Record<string, string> = {};
  let rest = args;
  for (let m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest); m; m = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest)) {
    out[m[1]] = m[2] ?? '';
    rest = rest.slice(m[0].length);
  }
  return { flags: out, rest };
}

/** Exec (JSON) form as an array; shell form as null. */
function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  const v = JSON.parse(args) as unknown;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`not a JSON string array: ${args}`);
  return v as string[];
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}
function copies(s: Stage): Copy[] {
  return all(s, 'COPY').map((i) => {
    const f = flags(i.args);
    const parts = execForm(f.rest) ?? f.rest.split(/\s+/);
    return { from: f.flags.from, sources: parts.slice(0, -1), dest: parts.at(-1)!, line: i.line };
  });
}

/** Every command of the stage's RUN instructions (split at &&). */
const runCommands = (s: Stage): string[] => all(s, 'RUN').flatMap((i) => i.args.split('&&').map((c) => c.trim()));

/** `./sql/` → `sql`, `.` → `` */
const norm = (p: string): string => path.posix.normalize(p).replace(/^\.\/?$/, '').replace(/^\.\//, '').replace(/\/$/, '');

/** USER uid[:gid] → numbers (a name cannot be checked by Kubernetes' runAsNonRoot). */
function user(s: Stage): { uid: number; gid: number } {
  const u = last(s, 'USER');
  if (!u) throw new Error('final stage has no USER');
  const m = /^(\d+)(?::(\d+))?$/.exec(u.args);
  if (!m) throw new Error(`USER ${u.args}: write it as a numeric uid:gid, so runAsNonRoot can verify it`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

// ---------------------------------------------------------------------------------------------
// .dockerignore (Docker's rules: patterns relative to the context, `!` re-includes, the last
// matching line wins, a pattern matching a folder matches everything in it)

function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pat = norm(negate ? l.slice(1).trim() : l).replace(/^\//, '');
      const re = new RegExp(
        `^${pat
          .split('**')
          .map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))
          .join('.*')}$`,
      );
      return { negate, re };
    });
  return (rel) => {
    const parts = rel.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) ignored = !r.negate;
    return ignored;
  };
}

function walk(dir: string, skip: (rel: string) => boolean, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const abs = path.join(dir, e.name);
    const rel = path.relative(base, abs).split(path.sep).join('/');
    if (skip(rel)) continue;
    if (e.isDirectory()) out.push(...walk(abs, skip, base));
    else out.push(rel);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests (the fields these tests read)

interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string }; prefix?: string }[];
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
  securityContext?: { runAsUser?: number; runAsGroup?: number; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean };
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, unknown>; annotations?: Record<string, unknown> };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  type?: string;
  spec?: {
    replicas?: number;
    serviceName?: string;
    selector?: Record<string, unknown> & { matchLabels?: Record<string, string> };
    clusterIP?: string;
    ports?: { name?: string; port: number; targetPort?: number | string }[];
    template?: {
      metadata: { labels: Record<string, string>; annotations?: Record<string, unknown> };
      spec: {
        terminationGracePeriodSeconds?: number;
        securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; fsGroup?: number };
        containers: Container[];
        volumes?: Volume[];
      };
    };
    volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[];
  };
}

function loadManifests(file: string): K8sObject[] {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(K8S, file), 'utf8'));
  const out: K8sObject[] = [];
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS() as K8sObject | null;
    if (v) out.push(v);
  }
  return out;
}

/** `256Mi` → bytes. */
function quantity(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`cannot read quantity ${q}`);
  const unit: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}

/** `${NAME}` references in a cdc.yml (not the literal `$${NAME}`). */
const envRefs = (text: string): string[] => [...new Set([...text.matchAll(/(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]))];

// ---------------------------------------------------------------------------------------------

const dockerfileText = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfileText);
const final = stages.at(-1)!;
const finalWorkdir = last(final, 'WORKDIR')?.args ?? '/';

const manifests = readdirSync(K8S)
  .filter((f) => /\.ya?ml$/.test(f))
  .flatMap((f) => loadManifests(f).map((o) => ({ file: f, o })));
const one = (kind: string): K8sObject => {
  const found = manifests.filter((m) => m.o.kind === kind);
  expect(found.map((m) => m.file), `exactly one ${kind}`).toHaveLength(1);
  return found[0].o;
};
const sts = one('StatefulSet');
const service = one('Service');
const configMap = one('ConfigMap');
const secret = one('Secret');
const podSpec = sts.spec!.template!.spec;
const container = podSpec.containers[0];
const cdcText = configMap.data?.['cdc.yml'] ?? '';
const secretEnv = secret.stringData ?? {};
/** The pod's environment: the Secret's keys and what the downward API gives (the pod IP). */
const POD_IP = '10.42.0.17';
const podEnv = { ...secretEnv, POD_IP };
const cfg: Config = (() => {
  try {
    return parseConfig(cdcText, { env: podEnv, baseDir: '/etc/pg-egress', path: '/etc/pg-egress/cdc.yml' });
  } catch (e) {
    throw new Error(`deploy/kubernetes/configmap.yaml cdc.yml, with the keys of secret.example.yaml as the environment: ${(e as Error).message}`, { cause: e });
  }
})();

/** A probe's or service's port (a number or the name of a container port) as a number. */
function portOf(p: number | string | undefined): number | undefined {
  if (typeof p === 'number') return p;
  return container.ports?.find((c) => c.name === p)?.containerPort;
}

/** Where the ConfigMap's cdc.yml appears in the container's file system. */
function configFileInContainer(): string {
  const vol = podSpec.volumes?.find((v) => v.configMap?.name === configMap.metadata.name);
  expect(vol, 'a volume from the ConfigMap').toBeDefined();
  const mount = container.volumeMounts?.find((m) => m.name === vol!.name);
  expect(mount, 'the ConfigMap volume is mounted').toBeDefined();
  const item = vol!.configMap!.items?.find((i) => i.key === 'cdc.yml');
  const fileInVolume = item ? item.path : 'cdc.yml';
  if (mount!.subPath !== undefined) {
    expect(mount!.subPath).toBe(fileInVolume);
    return mount!.mountPath;
  }
  return path.posix.join(mount!.mountPath, fileInVolume);
}

describe('Dockerfile', () => {
  it('is described by the README: its Docker section names everything the final stage copies', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const at = readme.indexOf('## Docker and Kubernetes');
    const section = readme.slice(at, readme.indexOf('\n## ', at + 5));
    const copied = copies(final).flatMap((c) => c.sources.map((src) => norm(c.from ? path.posix.relative(finalWorkdir, src) : src)));
    expect(copied.length).toBeGreaterThanOrEqual(6);
    for (const f of copied) expect(section.includes(`\`${f}\``) || section.includes(`\`${f}/\``), `README Docker section names ${f}`).toBe(true);
  });

  it('is multi-stage: the build stage compiles, the final stage is a Node 20 slim image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages.find((s) => s.name && copies(final).some((c) => c.from === s.name));
    expect(build, 'the final stage copies from a named build stage').toBeDefined();
    expect(runCommands(build!).some((c) => /^npm ci\b/.test(c))).toBe(true);
    expect(runCommands(build!)).toContain('npm run build');
    expect(final.base).toMatch(/^node:20(\.[\d.]+)?-([a-z]+-)?slim$/);
    expect(final.name).toBeUndefined();
    expect(all(final, 'ENV').map((i) => i.args)).toContain('NODE_ENV=production');
  });

  it('installs only production dependencies in the final stage, without install scripts', () => {
    const npm = runCommands(final).filter((c) => /^npm\b/.test(c));
    const ci = npm.filter((c) => /^npm ci\b/.test(c));
    expect(ci).toHaveLength(1);
    expect(ci[0].split(/\s+/)).toContain('--omit=dev');
    expect(ci[0].split(/\s+/)).toContain('--ignore-scripts');
    expect(npm.filter((c) => /^npm (install|i|run|link)\b/.test(c))).toEqual([]);
    // The lock file is copied before `npm ci` runs.
    const ciLine = all(final, 'RUN').find((i) => /npm ci\b/.test(i.args))!.line;
    const lock = copies(final).find((c) => c.sources.includes('package-lock.json'));
    expect(lock && lock.line < ciLine).toBe(true);
  });

  it('copies only dist/ and the SHA-256 addon (from the build stage), sql/, native/, package files and cdc.example.yml into the final stage', () => {
    const build = stages.find((s) => s.name && copies(final).some((c) => c.from === s.name))!;
    const buildWorkdir = last(build, 'WORKDIR')!.args;
    const fromContext = copies(final).filter((c) => c.from === undefined).flatMap((c) => c.sources.map(norm));
    const fromBuild = copies(final).filter((c) => c.from !== undefined).flatMap((c) => c.sources.map((s) => path.posix.relative(
      buildWorkdir,
      s,
    )));
    expect(new Set(fromContext)).toEqual(new Set(['package.json', 'package-lock.json', 'sql', 'cdc.example.yml', 'binding.gyp', 'native']));
    expect(fromBuild).toEqual(['dist', 'build/Release/pg_egress_sha256.node']);
    expect(all(final, 'ADD')).toEqual([]);
  });

  it('runs as a numeric non-root user that owns the output volume', () => {
    const { uid, gid } = user(final);
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    // Nothing after USER switches back.
    const idx = final.instrs.lastIndexOf(last(final, 'USER')!);
    expect(final.instrs.slice(idx + 1).filter((i) => i.cmd === 'RUN' || i.cmd === 'USER')).toEqual([]);
    const volumes = all(final, 'VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(/\s+/));
    expect(volumes).toHaveLength(1);
    expect(runCommands(final)).toContain(`chown ${uid}:${gid} ${volumes[0]}`);
  });

  it('ENTRYPOINT is the pg-egress program on PATH, CMD runs the daemon on /etc/pg-egress/cdc.yml', () => {
    expect(execForm(last(final, 'ENTRYPOINT')!.args)).toEqual(['pg-egress']);
    expect(execForm(last(final, 'CMD')!.args)).toEqual(['run', '--config', '/etc/pg-egress/cdc.yml']);
    const bin = path.posix.join(finalWorkdir, pkg.bin['pg-egress']);
    const cmds = runCommands(final);
    expect(cmds).toContain(`ln -s ${bin} /usr/local/bin/pg-egress`);
    expect(cmds).toContain(`chmod 0755 ${bin}`);
    expect(readFileSync(path.join(ROOT, 'src/cli/bin.ts'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('has a HEALTHCHECK that asks /health on the exposed port with node, and it works', async () => {
    const hc = last(final, 'HEALTHCHECK')!;
    const f = flags(hc.args);
    expect(f.rest.startsWith('CMD ')).toBe(true);
    const argv = execForm(f.rest.slice(4).trim());
    expect(argv?.[0]).toBe('node');
    expect(argv?.[1]).toBe('-e');
    const m = /http:\/\/127\.0\.0\.1:(\d+)\/health'/.exec(argv![2]);
    expect(m, 'fetches http://127.0.0.1:<port>/health').not.toBeNull();
    const port = Number(m![1]);
    expect(all(final, 'EXPOSE').flatMap((i) => i.args.split(/\s+/))).toEqual([String(port)]);
    for (const k of ['interval', 'timeout', 'start-period', 'retries']) expect(f.flags[k], `HEALTHCHECK --${k}`).toBeTruthy();

    // The script itself, against a local server on another port: 200 → 0, 503 → 1, nothing → 1.
    let status = 200;
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(status).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const testPort = (server.address() as AddressInfo).port;
    const script = argv![2].replace(`:${port}/`, `:${testPort}/`);
    const exitOf = (): Promise<number> =>
      new Promise((resolve) => {
        execFile(process.execPath, ['-e', script], { timeout: 10_000 }, (err) => resolve(err ? ((err as { code?: number }).code ?? -1) : 0));
      });
    try {
      expect(await exitOf()).toBe(0);
      status = 503;
      expect(await exitOf()).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await exitOf()).toBe(1);
    expect(seen).toEqual(['/health', '/health']);
  });

  it('stops with SIGTERM', () => {
    expect(last(final, 'STOPSIGNAL')?.args ?? 'SIGTERM').toBe('SIGTERM');
  });
});

describe('.dockerignore', () => {
  const ignored = dockerignore(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
  const contextSources = stages.flatMap((s) => copies(s).filter((c) => c.from === undefined).flatMap((c) => c.sources.map(norm)));

  it('lets through every file a COPY takes from the build context', () => {
    expect(contextSources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src', 'sql', 'cdc.example.yml']));
    for (const src of contextSources) {
      const abs = path.join(ROOT, src);
      expect(existsSync(abs), `${src} exists`).toBe(true);
      const files = statSync(abs).isDirectory() ? walk(abs, () => false, ROOT) : [src];
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) expect(ignored(f), `${f} must reach the build`).toBe(false);
    }
  });

  it('keeps everything else out of the context (local config, output, node_modules, dist, .git, tests)', () => {
    const inCopy = (rel: string) => contextSources.some((s) => rel === s || rel.startsWith(`${s}/`));
    const heavy = new Set(['node_modules', '.git', 'dist', 'coverage', 'egress']);
    for (const f of walk(ROOT, (rel) => heavy.has(rel))) if (!inCopy(f)) expect(ignored(f), `${f} stays out`).toBe(true);
    for (const f of ['node_modules/pg/package.json', '.git/HEAD', 'dist/cli/bin.js', 'cdc.yml', '.env', 'egress/public.t/x.csv.gz', 'test/unit/deploy.test.ts', 'deploy/kubernetes/secret.example.yaml', 'Dockerfile']) {
      expect(ignored(f), `${f} stays out`).toBe(true);
    }
  });
});

// npm ci, tsc and npm pack take ~10 CPU-seconds: run at full size (PG_EGRESS_TEST_FULL=1, as CI does).
describe.runIf(FULL)('final stage built by hand', () => {
  let tmp = '';
  let app = '';
  let rootfs = '';
  let buildOut = '';
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'pg-egress-image-'));
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** An absolute path of the image → where it is in the temporary root. */
  const inImage = (p: string): string => (p === finalWorkdir || p.startsWith(`${finalWorkdir}/`) ? path.join(app, path.posix.relative(finalWorkdir, p)) : path.join(rootfs, p));

  it('replays the build stage and the final stage, and the result runs with production dependencies only', async () => {
    const build = stages.find((s) => s.name && copies(final).some((c) => c.from === s.name))!;
    const buildWorkdir = last(build, 'WORKDIR')!.args;
    // Build stage: `npm run build` (scripts/build.mjs: the JavaScript, then the command's bundle).
    // `npm test` has just run it (its pretest): that dist/ is copied when it is newer than every
    // source file; otherwise built into a folder of its own, so a dist/ other test files use is not
    // rewritten under them.
    buildOut = path.join(tmp, 'build');
    if (distIsFresh()) cpSync(path.join(ROOT, 'dist'), path.join(buildOut, 'dist'), { recursive: true });
    else execFileSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs'), path.join(buildOut, 'dist')], { cwd: ROOT, stdio: 'pipe' });
    // The build writes what `tsc -p tsconfig.build.json` would: the JavaScript byte for byte, the
    // source maps the same once their sources are absolute (the two folders are not at one place).
    // It emits each file with TypeScript's emitter and checks no types (scripts/build.mjs).
    const tscOut = path.join(tmp, 'tsc', 'dist');
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', tscOut], { cwd: ROOT, stdio: 'pipe' });
    const emitted = walk(tscOut, () => false).sort();
    expect(emitted.filter((f) => f.endsWith('.js')).length).toBeGreaterThan(100);
    const built = distIsFresh() ? path.join(ROOT, 'dist') : path.join(buildOut, 'dist');
    expect(walk(built, (rel) => rel === 'bundle').sort()).toEqual(emitted);
    const asTsc = (dir: string, f: string): string => {
      const text = readFileSync(path.join(dir, f), 'utf8');
      if (!f.endsWith('.map')) return text;
      const map = JSON.parse(text) as { sources: string[] };
      return JSON.stringify({ ...map, sources: map.sources.map((x) => path.resolve(path.dirname(path.join(dir, f)), x)) });
    };
    for (const f of emitted) expect(asTsc(built, f) === asTsc(tscOut, f), `dist/${f} as tsc writes it`).toBe(true);
    // `node native/build.mjs`: the addon that this repository's own `npm ci` built the same way.
    mkdirSync(path.join(buildOut, 'build/Release'), { recursive: true });
    cpSync(path.join(ROOT, 'build/Release/pg_egress_sha256.node'), path.join(buildOut, 'build/Release/pg_egress_sha256.node'));
    expect(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.build).toBe('node scripts/build.mjs');

    app = path.join(tmp, 'image', finalWorkdir.replace(/^\//, ''));
    rootfs = path.join(tmp, 'image');
    mkdirSync(app, { recursive: true });
    const ignored = dockerignore(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
    const execAsync = promisify(execFile);
    for (const i of final.instrs) {
      if (i.cmd === 'COPY') {
        const c = copies({ base: '', instrs: [i] })[0];
        const dest = path.join(app, norm(c.dest));
        const intoDir = c.dest.endsWith('/') || c.sources.length > 1;
        for (const s of c.sources) {
          let src: string;
          if (c.from) src = path.join(buildOut, path.posix.relative(buildWorkdir, s));
          else {
            expect(ignored(norm(s)), `${s} is in the build context`).toBe(false);
            src = path.join(ROOT, norm(s));
          }
          const target = statSync(src).isDirectory() || !intoDir ? dest : path.join(dest, path.basename(src));
          cpSync(src, target, { recursive: true });
        }
      } else if (i.cmd === 'RUN') {
        for (const cmd of i.args.split('&&').map((x) => x.trim())) {
          const w = cmd.split(/\s+/);
          if (w[0] === 'npm' && w[1] === 'ci') {
            // From the npm cache that the repository's own `npm ci` filled (network only when missing).
            await execAsync('npm', [...w.slice(1), '--prefer-offline'], { cwd: app, env: { ...process.env, NODE_ENV: 'production' } });
          } else if (w[0] === 'npm' && w.slice(1, 3).join(' ') === 'cache clean') {
            // not this machine's cache
          } else if (w[0] === 'chmod') {
            chmodSync(inImage(w[2]), parseInt(w[1], 8));
          } else if (w[0] === 'ln' && w[1] === '-s') {
            mkdirSync(path.dirname(inImage(w[3])), { recursive: true });
            symlinkSync(inImage(w[2]), inImage(w[3]));
          } else if (w[0] === 'mkdir' && w[1] === '-p') {
            for (const d of w.slice(2)) mkdirSync(inImage(d), { recursive: true });
          } else if (w[0] === 'apt-get' && w[1] === 'update') {
            // the image's package lists: nothing to replay here
          } else if (w[0] === 'apt-get' && w[1] === 'install') {
            // The runtime libraries the addon links (ISA-L, libdeflate): this machine, where the
            // addon was built, has the same Debian packages installed.
            const pkgs = w.slice(2).filter((x) => !x.startsWith('-'));
            expect(pkgs.length).toBeGreaterThan(0);
            await execAsync('dpkg-query', ['-W', ...pkgs]);
          } else if (w[0] === 'rm' && w[1] === '-rf' && w[2] === '/var/lib/apt/lists/*') {
            // apt's lists in the image
          } else if (w[0] === 'chown') {
            // ownership: checked against the StatefulSet's uid/gid below
          } else {
            throw new Error(`Dockerfile line ${i.line}: this test does not know how to replay "${cmd}"; teach it`);
          }
        }
      }
    }

    // `pg-egress` is on PATH and executable, and works from any folder.
    const binOnPath = inImage('/usr/local/bin/pg-egress');
    expect(lstatSync(binOnPath).isSymbolicLink()).toBe(true);
    expect(readlinkSync(binOnPath)).toBe(path.join(app, pkg.bin['pg-egress']));
    expect(statSync(binOnPath).mode & 0o111).toBe(0o111);
    const env = { PATH: `${path.dirname(binOnPath)}:${path.dirname(process.execPath)}:/usr/bin:/bin`, NODE_ENV: 'production', HOME: tmp };
    const version = await execAsync('pg-egress', ['--version'], { cwd: tmp, env });
    expect(version.stdout.trim()).toBe(pkg.version);
    // The image's CMD with the ConfigMap's cdc.yml and no Secret: the config loads and names the variable.
    const cdc = path.join(tmp, 'cdc.yml');
    writeFileSync(cdc, cdcText);
    const run = await execAsync('pg-egress', ['run', '--config', cdc], { cwd: tmp, env }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/environment variable (PGPASSWORD|NEAR_PRIVATE_KEY) is not set/);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);

    // Every module tsc compiled loads with the production node_modules alone (no devDependency is
    // imported at run time), and the migrations are found next to dist/. Its entry point would run
    // the command, and so would the bundle's entry (cli/launch.js, bundled as bin.js, run above);
    // the bundle's chunks are CommonJS modules that require their entry (main.js).
    const bundleDir = path.dirname(pkg.bin['pg-egress'].replace(/^dist\//, ''));
    const modules = walk(path.join(app, 'dist'), (rel) => rel === bundleDir)
      .filter((f) => f.endsWith('.js') && f !== 'cli/bin.js' && f !== 'cli/launch.js')
      .map((f) => path.join(app, 'dist', f));
    expect(modules.length).toBeGreaterThan(20);
    const probe = `${modules.map((m) => `await import(${JSON.stringify(m)});`).join('\n')}
const { SQL_DIR } = await import(${JSON.stringify(path.join(app, 'dist/registry/migrate.js'))});
process.stdout.write(SQL_DIR);`;
    const loaded = await execAsync(process.execPath, ['--input-type=module', '-e', probe], { cwd: tmp, env });
    expect(path.resolve(loaded.stdout)).toBe(path.join(app, 'sql'));
    expect(readdirSync(path.join(app, 'sql')).sort()).toEqual(readdirSync(path.join(ROOT, 'sql')).filter((f) => f.endsWith('.sql')).sort());

    // The bundle's chunks require (statically or lazily) or import() node's own modules and
    // production dependencies only; pg-native is pg's optional binding, required only by pg.native.
    const deps = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {}), 'pg-native']);
    const chunks = readdirSync(path.join(app, 'dist', bundleDir)).filter((f) => f.endsWith('.js'));
    expect(chunks.length).toBeGreaterThan(5);
    const outside = new Set<string>();
    for (const f of chunks) {
      const code = readFileSync(path.join(app, 'dist', bundleDir, f), 'utf8');
      // The chunks are minified (scripts/bundle.mjs): several statements share a line, and a
      // string may be written in backquotes.
      for (const m of code.matchAll(/(?:^|[;}])\s*(?:import|export)\b[^;]*?\bfrom\s*["'`]([^"'`]+)["'`]|\bimport\(["'`]([^"'`]+)["'`]\)|\b(?:__)?require\(["'`]([^"'`]+)["'`]\)/gm)) {
        const spec = m[1] ?? m[2] ?? m[3];
        if (spec.startsWith('.') || isBuiltin(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        if (!deps.has(name)) outside.add(`${f}: ${spec}`);
      }
    }
    expect([...outside]).toEqual([]);

    // The copy of pino in one file beside the chunks (scripts/bundle.mjs, src/log.ts) writes the
    // same line as pino from node_modules, redaction included, and needs nothing outside itself.
    const line = (from: string) =>
      execFileSync(process.execPath, ['-e', `const p = require(${JSON.stringify(from)});
p({ base: { svc: 'pg-egress' }, timestamp: () => ',"time":"T"', redact: { paths: ['*.password'], censor: '***' } }).info({ source: { password: 's3cret', host: 'h' } }, 'configuration');`], { cwd: tmp, env }).toString();
    const copy = line(path.join(app, 'dist', bundleDir, 'pino.cjs'));
    expect(copy).toBe('{"level":30,"time":"T","svc":"pg-egress","source":{"password":"***","host":"h"},"msg":"configuration"}\n');
    expect(line(path.join(app, 'node_modules', 'pino'))).toBe(copy);

    // No package the lock file marks as dev-only was installed.
    const lock = JSON.parse(readFileSync(path.join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([p, v]) => p && v.dev);
    expect(devOnly.length).toBeGreaterThan(0);
    for (const [p] of devOnly) expect(existsSync(path.join(app, p)), `${p} (dev only) is not installed`).toBe(false);
    for (const dep of ['typescript', 'vitest', 'eslint']) expect(existsSync(path.join(app, 'node_modules', dep))).toBe(false);
  });

  it('holds the same files as the npm package (`npm pack --dry-run`): dist, sql, package files, no src/ or test/', async () => {
    expect(app, 'the previous test built the stage').not.toBe('');
    // The repository as a package, with the freshly compiled dist/ (the repository's own dist/ may
    // be missing or stale).
    const pkgDir = path.join(tmp, 'package');
    const skip = new Set(['node_modules', '.git', 'dist', 'coverage', 'egress']);
    cpSync(ROOT, pkgDir, { recursive: true, filter: (src) => !skip.has(path.relative(ROOT, src).split(path.sep)[0]) });
    cpSync(path.join(buildOut, 'dist'), path.join(pkgDir, 'dist'), { recursive: true });
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkgDir, maxBuffer: 64 * 1024 * 1024 });
    const packed = new Set((JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path));

    expect(packed.has(pkg.bin['pg-egress'])).toBe(true);
    for (const f of readdirSync(path.join(ROOT, 'sql')).filter((x) => x.endsWith('.sql'))) expect(packed.has(`sql/${f}`), `sql/${f}`).toBe(true);
    for (const f of ['package.json', 'cdc.example.yml']) expect(packed.has(f), f).toBe(true);
    const stray = [...packed].filter((f) => /^(src|test|bench|scripts|deploy|\.ci)\//.test(f) || /^(Dockerfile|\.dockerignore|tsconfig.*|vitest\.config\.ts|eslint\.config\.js)$/.test(f));
    expect(stray).toEqual([]);

    const staged = new Set(walk(app, (rel) => rel === 'node_modules'));
    const docs = (f: string) => /^(README|LICENSE|NOTICE|CHANGELOG)(\.\w+)?$/i.test(f);
    expect([...packed].filter((f) => !staged.has(f) && !docs(f)), 'packed but not in the image').toEqual([]);
    // The addon is built at install time from the packed native/ (npm runs native/build.mjs).
    expect([...staged].filter((f) => !packed.has(f) && f !== 'package-lock.json' && f !== 'build/Release/pg_egress_sha256.node'), 'in the image but not packed').toEqual([]);
    expect(staged.has('build/Release/pg_egress_sha256.node')).toBe(true);
  });
});

describe('Kubernetes manifests', () => {
  it('parse, and the ConfigMap holds a cdc.yml the daemon accepts with the Secret as environment', () => {
    expect(manifests.map((m) => `${m.file}:${m.o.kind}`).sort()).toEqual(['configmap.yaml:ConfigMap', 'networkpolicy.yaml:NetworkPolicy', 'secret.example.yaml:Secret', 'service.yaml:Service', 'statefulset.yaml:StatefulSet']);
    for (const { o } of manifests) {
      expect(o.apiVersion).toBe(o.kind === 'StatefulSet' ? 'apps/v1' : o.kind === 'NetworkPolicy' ? 'networking.k8s.io/v1' : 'v1');
      for (const v of [...Object.values(o.metadata.labels ?? {}), ...Object.values(o.metadata.annotations ?? {})]) expect(typeof v).toBe('string');
    }
    expect(cdcText).not.toBe('');
    expect(cfg.configPath).toBe('/etc/pg-egress/cdc.yml');
    // Secrets are references, never values, and the config uses them.
    expect(cfg.source.password).toBe(secretEnv.PGPASSWORD);
    expect(cdcText).toMatch(/password:\s*\$\{PGPASSWORD\}/);
    expect(cdcText).toMatch(/private_key:\s*\$\{NEAR_PRIVATE_KEY\}/);
    expect(new URL(cdcText.match(/url:\s*(\S+)/)![1]).password).toBe('');
    expect(cfg.anchors.s3).not.toBeNull();
    expect(cfg.anchors.near?.privateKey).toBe(secretEnv.NEAR_PRIVATE_KEY);
    // The endpoints listen on the pod IP (the downward API), /status needs the Secret's token.
    expect(cfg.http.host).toBe(POD_IP);
    expect(cdcText).toMatch(/status_token:\s*\$\{PG_EGRESS_STATUS_TOKEN\}/);
    expect(cfg.http.statusToken).toBe(secretEnv.PG_EGRESS_STATUS_TOKEN);
    // ssl.mode require is called out as unverified wherever it is used.
    if (cfg.source.ssl.mode === 'require') expect(cdcText).toMatch(/DOES NOT CHECK THE SERVER'S CERTIFICATE/);
  });

  it('binds the pod IP from the downward API, and the NetworkPolicy admits only the scraper and the needed egress', () => {
    const podIp = (container.env ?? []).find((e) => e.name === 'POD_IP');
    expect(podIp?.valueFrom?.fieldRef?.fieldPath).toBe('status.podIP');
    const np = one('NetworkPolicy') as unknown as {
      spec: {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { from?: unknown[]; ports: { port: number | string }[] }[];
        egress: { to?: unknown[]; ports: { port: number | string; protocol?: string }[] }[];
      };
    };
    const labels = sts.spec!.template!.metadata.labels;
    for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) expect(labels[k]).toBe(v);
    expect(np.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
    // Ingress: the HTTP port only, and only from a named peer (never from everywhere).
    expect(np.spec.ingress.length).toBeGreaterThan(0);
    for (const r of np.spec.ingress) {
      expect(r.from?.length ?? 0).toBeGreaterThan(0);
      expect(r.ports.map((p) => portOf(p.port))).toEqual([cfg.http.port]);
    }
    // Egress: the source's port, DNS, and HTTPS for the anchors that are on.
    const egressPorts = np.spec.egress.flatMap((r) => r.ports.map((p) => p.port));
    expect(egressPorts).toContain(cfg.source.port);
    expect(egressPorts).toContain(53);
    if (cfg.anchors.s3 || cfg.anchors.near) expect(egressPorts).toContain(443);
  });

  it('probes /ready and /health on cdc.yml http.port; the Service scrapes /metrics there', () => {
    expect(container.readinessProbe?.httpGet?.path).toBe('/ready');
    expect(container.livenessProbe?.httpGet?.path).toBe('/health');
    for (const p of [container.readinessProbe, container.livenessProbe, container.startupProbe]) {
      if (p) expect(portOf(p.httpGet?.port)).toBe(cfg.http.port);
    }
    if (container.startupProbe) expect(container.startupProbe.httpGet?.path).toBe('/health');

    const a = service.metadata.annotations ?? {};
    expect(a['prometheus.io/scrape']).toBe('true');
    expect(a['prometheus.io/port']).toBe(String(cfg.http.port));
    expect(a['prometheus.io/path']).toBe('/metrics');
    expect(service.spec?.ports?.map((p) => portOf(p.targetPort ?? p.port))).toContain(cfg.http.port);
    // The image's HEALTHCHECK and EXPOSE agree.
    expect(last(final, 'HEALTHCHECK')!.args).toContain(`127.0.0.1:${cfg.http.port}/health`);
    expect(last(final, 'EXPOSE')!.args).toBe(String(cfg.http.port));
  });

  it('mounts the volume claim at output.dir (the image VOLUME) and the ConfigMap where CMD reads cdc.yml', () => {
    const claims = sts.spec!.volumeClaimTemplates ?? [];
    expect(claims).toHaveLength(1);
    expect(claims[0].spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(quantity(claims[0].spec.resources.requests.storage)).toBeGreaterThan(0);
    const dataMount = container.volumeMounts?.find((m) => m.name === claims[0].metadata.name);
    expect(dataMount?.mountPath).toBe(cfg.output.dir);
    expect(dataMount?.readOnly).not.toBe(true);
    expect(all(final, 'VOLUME').flatMap((i) => execForm(i.args) ?? i.args.split(/\s+/))).toEqual([cfg.output.dir]);

    const cmd = execForm(last(final, 'CMD')!.args)!;
    const configPath = cmd[cmd.indexOf('--config') + 1];
    expect(configFileInContainer()).toBe(configPath);
    expect(container.command).toBeUndefined();
    if (container.args) expect(container.args).toEqual(cmd);
  });

  it('gives every ${NAME} of cdc.yml an env var from the Secret, and the example Secret has every key', () => {
    const refs = envRefs(cdcText);
    expect(refs.sort()).toEqual(['NEAR_PRIVATE_KEY', 'PGPASSWORD', 'PG_EGRESS_STATUS_TOKEN', 'POD_IP']);
    const fromSecret = new Set<string>();
    const fromDownwardApi = new Set<string>();
    for (const e of container.env ?? []) {
      if (e.valueFrom?.fieldRef) fromDownwardApi.add(e.name);
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref) continue;
      expect(ref.name).toBe(secret.metadata.name);
      expect(Object.keys(secretEnv), `Secret key ${ref.key}`).toContain(ref.key);
      fromSecret.add(e.name);
      // Only the source password and the status token are required: the NEAR and AWS keys are
      // optional, so a Secret without them (anchors off, or a pod identity) still starts the pod.
      expect(ref.optional === true, `${ref.key} optional`).toBe(!['PGPASSWORD', 'PG_EGRESS_STATUS_TOKEN'].includes(ref.key));
    }
    for (const f of container.envFrom ?? []) {
      if (f.secretRef?.name !== secret.metadata.name) continue;
      for (const k of Object.keys(secretEnv)) fromSecret.add(`${f.prefix ?? ''}${k}`);
    }
    for (const name of refs) expect([...fromSecret, ...fromDownwardApi], `\${${name}} comes from the Secret or the downward API`).toContain(name);
    expect([...fromDownwardApi]).toEqual(['POD_IP']);
    // S3 is on: the standard AWS credentials come from the Secret too.
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) expect([...fromSecret]).toContain(name);
    // No secret as a plain value.
    expect((container.env ?? []).filter((e) => e.value !== undefined && (fromSecret.has(e.name) || /PASSWORD|KEY|SECRET|TOKEN/.test(e.name)))).toEqual([]);

    // The example Secret: stringData placeholders only, covering every reference and env var.
    expect(secret.type).toBe('Opaque');
    expect(secret.data).toBeUndefined();
    expect(Object.keys(secretEnv).sort()).toEqual(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'NEAR_PRIVATE_KEY', 'PGPASSWORD', 'PG_EGRESS_STATUS_TOKEN']);
    for (const [k, v] of Object.entries(secretEnv)) expect(v, `${k} is a placeholder`).toMatch(/change-me/);
    // Without any one of them the daemon's config refuses to load, naming it.
    for (const name of refs) {
      const env: Record<string, string> = { ...podEnv };
      delete env[name];
      expect(() => parseConfig(cdcText, { env, baseDir: '/etc/pg-egress' })).toThrow(new RegExp(`environment variable ${name} is not set`));
    }
  });

  it('runs one replica as the Dockerfile user, with a grace period over the SIGTERM bound and memory for the daemon', () => {
    expect(sts.spec!.replicas).toBe(1);
    expect(sts.spec!.serviceName).toBe(service.metadata.name);
    const labels = sts.spec!.template!.metadata.labels;
    for (const [k, v] of Object.entries(sts.spec!.selector!.matchLabels ?? {})) expect(labels[k]).toBe(v);
    for (const [k, v] of Object.entries((service.spec!.selector ?? {}) as Record<string, string>)) expect(labels[k]).toBe(v);
    expect(service.spec!.clusterIP).toBe('None');

    const { uid, gid } = user(final);
    const sc = podSpec.securityContext ?? {};
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.runAsUser).toBe(uid);
    expect(sc.runAsGroup).toBe(gid);
    expect(sc.fsGroup).toBe(gid);
    expect(container.securityContext?.runAsUser ?? uid).toBe(uid);
    expect(container.securityContext?.runAsNonRoot ?? true).toBe(true);
    expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);

    expect(podSpec.terminationGracePeriodSeconds).toBeGreaterThan(SIGTERM_BOUND_S);

    const req = container.resources?.requests ?? {};
    const lim = container.resources?.limits ?? {};
    expect(quantity(req.memory)).toBeGreaterThanOrEqual(MEMORY_TEST_LIMIT);
    expect(quantity(lim.memory)).toBeGreaterThanOrEqual(quantity(req.memory));
    expect(req.cpu).toBeDefined();
    expect(container.ports?.map((p) => p.containerPort)).toEqual([cfg.http.port]);
  });
});
