/**
 * `schema.table` patterns of tables.include / tables.exclude: `*` matches any run of characters,
 * `?` one; a part may be double-quoted to contain dots or quotes (`""` is a quote), e.g.
 * `"My Schema"."Weird ""Name"", x"`.
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
      parts.push(s);
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

/**
 * A glob part → anchored regular expression. The escapes used (`\\` before punctuation) mean
 * the same in JavaScript and in PostgreSQL's ARE syntax, because the event trigger matches new
 * tables with these same expressions (sql/002_ddl_capture.sql).
 */
function globToRegex(part: string, literal: boolean): RegExp {
  let src = '^';
  for (const ch of part) {
    if (!literal && ch === '*') src += '.*';
    else if (!literal && ch === '?') src += '.';
    else if (/[A-Za-z0-9_ ]/.test(ch) || ch.codePointAt(0)! > 127) src += ch;
    else src += '\\' + ch;
  }
  return new RegExp(src + '$');
}

export function compilePattern(text: string): TablePattern | null {
  const parts = splitQualified(text);
  if (!parts) return null;
  return { schema: globToRegex(parts[0], parts[2]), table: globToRegex(parts[1], parts[3]), source: text };
}
