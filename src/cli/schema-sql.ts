/**
 * `pg-egress schema-sql --dialect <d> <table folder | window folder>`: prints the CREATE TABLE and
 * load statements for a window's files (a table folder: its newest window). Thin; the text comes
 * from src/archive/schema-sql.ts.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { SchemaFile } from '../archive/catalog.js';
import { DIALECTS, schemaSql } from '../archive/schema-sql.js';
import type { Dialect } from '../archive/types.js';
import { EgressError, ExitCode } from '../errors.js';
import { isFlushFolder } from '../output/layout.js';

export function schemaSqlCommand(folder: string, o: { dialect: string }, out: NodeJS.WritableStream = process.stdout): number {
  if (!DIALECTS.includes(o.dialect as Dialect)) throw new EgressError('CONFIG_INVALID', `--dialect ${o.dialect}: expected one of ${DIALECTS.join(', ')}`);
  if (!existsSync(folder)) throw new EgressError('NOT_FOUND_PATH', `${folder} does not exist`);
  let win = folder;
  if (!existsSync(path.join(folder, 'manifest.json'))) {
    const windows = readdirSync(folder)
      .filter((w) => isFlushFolder(w) && existsSync(path.join(folder, w, 'schema.yml')))
      .sort();
    if (!windows.length) throw new EgressError('NOT_FOUND_PATH', `${folder} is neither a table folder nor a window folder of an archive (no manifest.json, no window folders)`);
    win = path.join(folder, windows[windows.length - 1]);
  }
  const schema = parseYaml(readFileSync(path.join(win, 'schema.yml'), 'utf8')) as SchemaFile;
  schema.primary_key ??= [];
  const manifest = JSON.parse(readFileSync(path.join(win, 'manifest.json'), 'utf8')) as { files: { name: string; type: string }[] };
  const reload = manifest.files.filter((f) => f.type === 'full_reload').map((f) => path.join(win, f.name)).sort();
  const streaming = manifest.files.find((f) => f.type === 'streaming');
  out.write(schemaSql(o.dialect as Dialect, schema, { reload, streaming: streaming ? path.join(win, streaming.name) : null }));
  return ExitCode.OK;
}
