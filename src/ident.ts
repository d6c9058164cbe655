/**
 * Names of tables, written once: as SQL identifiers (always quoted, so any name works:
 * https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS) and as
 * map keys (NUL cannot occur in a PostgreSQL name, so schema and table never run together).
 */

/** A double-quoted SQL identifier, `"` doubled. */
export const quoteIdent = (s: string): string => '"' + s.replace(/"/g, '""') + '"';

/** `"schema"."table"`. */
export const qualifiedName = (schema: string, table: string): string => `${quoteIdent(schema)}.${quoteIdent(table)}`;

/** A map key for a table: schema and table joined by NUL. */
export const tableKey = (schema: string, table: string): string => `${schema}\u0000${table}`;
