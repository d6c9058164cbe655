/**
 * `schema.table` patterns of tables.include / tables.exclude: `*` matches any run of characters,
 * `?` one; a part may be double-quoted to contain dots or quotes (`""` is a quote), e.g.
 * `"My Schema"."Weird ""Name"", x"`, or written as PostgreSQL's Unicode-escape identifier
 * `U&"line\000Abreak"` for names with control characters (what `status` prints for them).
 */
export interface TablePattern {
  schema: RegExp;
  table: RegExp;
  source: string;
}

/** Splits `schema.table` honouring quoted parts; returns null when it is not exactly two parts. */
export function splitQualified(text: string): [string, string, boolean, boolean] | null {
  const parts: string[] = [];
  const quoted: boolean[] = [];
  let i = 0;
  while (i <= text.length) {
    const unicode = (text[i] === 'U' || text[i] === 'u') && text[i + 1] === '&' && text[i + 2] === '"';
    if (unicode) i += 2;
    if (text[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        if (i >= text.length) return null;
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            s += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        s += text[i++];
      }
      const part = unicode ? decodeUnicodeEscapes(s) : s;
      if (part === null) return null;
      parts.push(part);
      quoted.push(true);
    } else {
      let j = i;
      while (j < text.length && text[j] !== '.') j++;
      parts.push(text.slice(i, j));
      quoted.push(false);
      i = j;
    }
    if (i >= text.length) break;
    if (text[i] !== '.') return null;
    i++;
    if (i === text.length) return null;
  }
  if (parts.length !== 2 || parts[0] === '' || parts[1] === '') return null;
  return [parts[0], parts[1], quoted[0], quoted[1]];
}

/** The body of `U&"..."` (quotes already undone): `\XXXX`, `\+XXXXXX` and `\\` (PostgreSQL's rules). */
function decodeUnicodeEscapes(s: string): string | null {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== '\\') {
      out += s[i];
      continue;
    }
    if (s[i + 1] === '\\') {
      out += '\\';
      i++;
      continue;
    }
    const m = /^(?:\+([0-9A-Fa-f]{6})|([0-9A-Fa-f]{4}))/.exec(s.slice(i + 1));
    if (!m) return null;
    const cp = parseInt(m[1] ?? m[2], 16);
    if (cp === 0 || cp > 0x10ffff) return null;
    out += String.fromCodePoint(cp);
    i += m[0].length;
  }
  return out;
}

// C0/C1 controls, line/paragraph separators and bidi overrides: never printed raw to a terminal.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

const CONTROLS = new RegExp(CONTROL.source, 'gu');

/** Text for a terminal: control characters (a newline in a name or an error) shown as `\\uXXXX`. */
export const printable = (text: string): string => text.replace(CONTROLS, (ch) => '\\u' + ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0'));

/** One name part as `schema.table` text that splitQualified reads back: bare when it can be. */
export function quoteNamePart(name: string): string {
  if (CONTROL.test(name)) {
    // PostgreSQL's Unicode-escape identifier: psql accepts it too, and no control character is printed.
    // https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS-UESCAPE
    let body = '';
    for (const ch of name) {
      if (ch === '\\') body += '\\\\';
      else if (ch === '"') body += '""';
      else if (CONTROL.test(ch)) body += '\\' + ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      else body += ch;
    }
    return `U&"${body}"`;
  }
  if (name === '' || /[".]/.test(name) || /^[Uu]&"/.test(name) || name.trim() !== name) return '"' + name.replace(/"/g, '""') + '"';
  return name;
}

/**
 * A table's name for people (status, reload, logs): `schema.table`, a part quoted when it holds a
 * dot or a quote, and written `U&"..."` when it holds a control character, so that a newline in a
 * name never reaches a terminal raw and what is printed can be given back to `pg-egress reload`.
 */
export const displayTable = (schema: string, table: string): string => `${quoteNamePart(schema)}.${quoteNamePart(table)}`;

/**
 * A glob part → anchored regular expression that means the same in JavaScript (flags `su`) and in
 * PostgreSQL's ARE syntax, because the event trigger and `cdc_registry.selected_tables` match
 * tables with these same expressions' sources (sql/002_ddl_capture.sql): only the syntax
 * characters are escaped (`\\` before a non-alphanumeric character is that character in both),
 * `.` matches any character including a newline (PostgreSQL's default; JavaScript's `s` flag), a
 * character is a code point (`u` flag), and `^`/`$` anchor the whole name in both.
 * https://www.postgresql.org/docs/current/functions-matching.html#POSIX-SYNTAX-DETAILS
 */
function globToRegex(part: string, literal: boolean): RegExp {
  let src = '^';
  for (const ch of part) {
    if (!literal && ch === '*') src += '.*';
    else if (!literal && ch === '?') src += '.';
    else if ('^$\\.*+?()[]{}|/'.includes(ch)) src += '\\' + ch;
    else src += ch;
  }
  return new RegExp(src + '$', 'su');
}

export function compilePattern(text: string): TablePattern | null {
  const parts = splitQualified(text);
  if (!parts) return null;
  return { schema: globToRegex(parts[0], parts[2]), table: globToRegex(parts[1], parts[3]), source: text };
}
