#!/usr/bin/env node
/**
 * `npm run build`: src/*.ts → dist/*.js (with source maps), then the command's bundle
 * (scripts/bundle.mjs). `node scripts/build.mjs [dist]` writes another folder.
 *
 * Each file goes through TypeScript's own emitter, one file at a time (`ts.transpileModule`, the
 * compiler options of tsconfig.build.json): the JavaScript is byte for byte what `tsc -p
 * tsconfig.build.json` writes (test/unit/deploy.test.ts compares them at full size), in about half
 * the time, because nothing is type-checked here. Type checking is `npm run typecheck` (src, test
 * and bench; CI runs it before the tests). That needs every file to compile on its own
 * (`isolatedModules` in tsconfig.json makes tsc refuse what would not).
 *
 * The package is `"type": "module"`, so NodeNext emits every .ts file as an ES module: the
 * per-file emit is told so (it cannot read package.json).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));

const parsed = ts.getParsedCommandLineOfConfigFile(path.join(root, 'tsconfig.build.json'), { outDir: dist }, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (d) => {
    throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  },
});
if (!parsed) throw new Error('tsconfig.build.json: cannot be read');
if (parsed.errors.length) throw new Error(parsed.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n'));
const options = { ...parsed.options, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler };
const srcDir = parsed.options.rootDir;

let files = 0;
for (const file of parsed.fileNames) {
  if (file.endsWith('.d.ts')) continue;
  if (!file.endsWith('.ts')) throw new Error(`${file}: only .ts sources are built (a .cts or .mts file would need its own module kind)`);
  const out = path.join(dist, path.relative(srcDir, file)).replace(/\.ts$/, '.js');
  const r = ts.transpileModule(readFileSync(file, 'utf8'), { compilerOptions: options, fileName: file, reportDiagnostics: true });
  if (r.diagnostics?.length) throw new Error(r.diagnostics.map((d) => `${file}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`).join('\n'));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, r.outputText);
  if (r.sourceMapText) writeFileSync(`${out}.map`, r.sourceMapText);
  files++;
}
process.stdout.write(`built ${files} files into ${path.relative(process.cwd(), dist) || '.'}\n`);

await import('./bundle.mjs');
