/**
 * The statement text that goes into ddl.sql.
 *
 * An event trigger cannot see the text of the one command that fired it: the only text PostgreSQL
 * offers is `current_query()`, the client's whole query string. A migration sent as one simple
 * query (`INSERT ... ; ALTER TABLE ... ;`) would otherwise put its data statements, values of
 * excluded columns included, into ddl.sql. So the string is split into statements the way the
 * server's lexer sees them, and only the DDL statements are kept.
 * https://www.postgresql.org/docs/15/functions-info.html (current_query)
 * https://www.postgresql.org/docs/15/sql-syntax-lexical.html (quotes, dollar quotes, comments)
 */

/** First keywords of statements that carry data or control transactions, never DDL. */
const NOT_DDL = new Set([
  'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY', 'VALUES', 'SELECT', 'TABLE', 'WITH',
  'BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE', 'PREPARE', 'EXECUTE',
]);

const isIdentChar = (c: string): boolean => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

interface Statement {
  text: string;
  /** First word of the statement, upper-cased, after leading comments ('' when it starts with a symbol). */
  keyword: string;
}

/**
 * Splits SQL text at top-level semicolons, honouring '...' (with '' and, after E, backslash
 * escapes), "..." identifiers, $tag$...$tag$ bodies, -- and nested /* *\/ comments. Statements
 * come back trimmed, without their semicolon; those holding only white space or comments are
 * dropped.
 */
function scan(sql: string): Statement[] {
  const out: Statement[] = [];
  let start = 0;
  let keyword: string | null = null;
  let i = 0;
  const n = sql.length;
  const push = (end: number) => {
    if (keyword !== null) out.push({ text: sql.slice(start, end).trim(), keyword });
    keyword = null;
  };
  while (i < n) {
    const c = sql[i];
    const comment = (c === '-' && sql[i + 1] === '-') || (c === '/' && sql[i + 1] === '*');
    // The statement's first token: where its keyword is, past white space and comments.
    if (keyword === null && !comment && c !== ';' && !/\s/.test(c)) keyword = (/^[A-Za-z]+/.exec(sql.slice(i, i + 32))?.[0] ?? '').toUpperCase();
    if (c === "'") {
      // E'...' (or e'...') allows backslash escapes; a plain string does not (standard_conforming_strings).
      const escapes = i > 0 && (sql[i - 1] === 'E' || sql[i - 1] === 'e') && (i < 2 || !isIdentChar(sql[i - 2]));
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'") {
          if (sql[i + 1] === "'") i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '"') {
      i++;
      while (i < n) {
        if (sql[i] === '"') {
          if (sql[i + 1] === '"') i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === '$' && (i === 0 || !isIdentChar(sql[i - 1]))) {
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 64))?.[0];
      if (tag) {
        const close = sql.indexOf(tag, i + tag.length);
        i = close < 0 ? n : close + tag.length;
      } else i++;
    } else if (c === ';') {
      push(i);
      i++;
      start = i;
    } else i++;
  }
  push(n);
  return out;
}

/** The statements of SQL text (see `scan`). */
export const splitStatements = (sql: string): string[] => scan(sql).map((s) => s.text);

/**
 * The DDL statements of a client query string, for one event with `commandTag` (e.g. `ALTER
 * TABLE`): the statements that begin with the tag's first word; failing that (the DDL ran inside
 * a DO block or a function), every statement that is not data or transaction control. A single
 * statement is returned as it is.
 */
export function ddlStatements(query: string, commandTag: string): string[] {
  const all = scan(query);
  if (all.length <= 1) return all.map((s) => s.text);
  const verb = commandTag.trim().split(/\s+/)[0]?.toUpperCase() ?? '';
  const byVerb = all.filter((s) => s.keyword === verb);
  return (byVerb.length ? byVerb : all.filter((s) => !NOT_DDL.has(s.keyword))).map((s) => s.text);
}
