/** Environment references in cdc.yml: `${NAME}` and the literal `$${NAME}`. */
import { EgressError } from '../errors.js';

/**
 * `${NAME}` (environment variable) and `$${NAME}` (a literal `${NAME}`), anywhere in the text: in a
 * flow map `{password: ${PGPASSWORD}}` a `${` would be YAML syntax, so before parsing each one is
 * swapped for a plain placeholder token (letters and digits only, valid in any YAML context), and the
 * values are put into the parsed strings afterwards, so a value holding `:`, `#`, `{` or quotes
 * cannot change the YAML structure (and never shows up in a YAML syntax error).
 */
const ENV_REF = /\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

export interface EnvRefs {
  /** The text with every reference swapped for its token. */
  text: string;
  /** Matches one token; group 1 is its index in `refs`. */
  token: RegExp;
  refs: { original: string; name: string; literal: boolean }[];
}

export function tokenizeEnvRefs(text: string): EnvRefs {
  // A prefix that occurs nowhere in the text, so every token found after parsing is ours.
  let n = 0;
  while (text.includes(`pgegressenv${n}q`)) n++;
  const prefix = `pgegressenv${n}q`;
  const refs: EnvRefs['refs'] = [];
  const byOriginal = new Map<string, number>();
  const out = text.replace(ENV_REF, (match, name: string) => {
    let i = byOriginal.get(match);
    if (i === undefined) {
      i = refs.push({ original: match, name, literal: match.startsWith('$$') }) - 1;
      byOriginal.set(match, i);
    }
    return `${prefix}${i}q`;
  });
  return { text: out, token: new RegExp(`${prefix}(\\d+)q`, 'g'), refs };
}

/** A token back to the text it replaced (for keys and messages: never an environment value). */
export const restoreText = (s: string, e: EnvRefs): string => (e.refs.length
  ? s.replace(e.token, (_, i: string) => e.refs[Number(i)].original)
  : s);

/** Mapping keys back to their text as written: `${X}` in a key is not interpolated. */
export function restoreKeys(value: unknown, e: EnvRefs): unknown {
  if (Array.isArray(value)) return value.map((v) => restoreKeys(v, e));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [restoreText(k, e), restoreKeys(v, e)]));
  return value;
}

/** Tokens in string leaves → environment values (or the literal `${X}`); an unset variable is an error. */
export function interpolate(value: unknown, e: EnvRefs, env: NodeJS.ProcessEnv, at: string): unknown {
  if (typeof value === 'string') {
    if (!e.refs.length) return value;
    return value.replace(e.token, (_, i: string) => {
      const ref = e.refs[Number(i)];
      if (ref.literal) return ref.original.slice(1);
      const v = env[ref.name];
      if (v === undefined) throw new EgressError('CONFIG_ENV_UNSET', `config: ${at || 'the file'}: environment variable ${ref.name} is not set`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, e, env, `${at}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, e, env, at ? `${at}.${k}` : k)]));
  }
  return value;
}
