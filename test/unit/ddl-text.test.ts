import { describe, expect, it } from 'vitest';
import { ddlStatements, splitStatements } from '../../src/batch/ddl-text.js';

describe('splitStatements', () => {
  it('splits at top-level semicolons, trims, drops empty statements', () => {
    expect(splitStatements(' SELECT 1;\n\n  SELECT 2 ;;; ')).toEqual(['SELECT 1', 'SELECT 2']);
    expect(splitStatements('ALTER TABLE t ADD COLUMN c int')).toEqual(['ALTER TABLE t ADD COLUMN c int']);
    expect(splitStatements('')).toEqual([]);
    expect(splitStatements('  -- only a comment\n ; /* and another */ ')).toEqual([]);
  });

  it('ignores semicolons inside strings, identifiers, dollar quotes and comments', () => {
    const sql = [
      `INSERT INTO t VALUES ('a;b', 'it''s;')`,
      `ALTER TABLE "we;ird""x" ADD COLUMN ";c" text DEFAULT E'back\\';slash'`,
      `CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$`,
      `DO $$ BEGIN PERFORM 1; END $$`,
      `-- a comment; with a semicolon\nCOMMENT ON TABLE t IS 'x'`,
      `/* nested /* comment; */ still; */ DROP TABLE u`,
    ];
    expect(splitStatements(sql.join(';\n') + ';')).toEqual(sql);
  });

  it('a $ inside an identifier or a parameter does not open a dollar quote', () => {
    expect(splitStatements('SELECT a$b$ FROM t; SELECT $1; SELECT 2')).toEqual(['SELECT a$b$ FROM t', 'SELECT $1', 'SELECT 2']);
  });

  it("a plain string's backslash is not an escape; an E string's is", () => {
    expect(splitStatements(`SELECT 'a\\'; SELECT 2`)).toEqual([`SELECT 'a\\'`, 'SELECT 2']);
    expect(splitStatements(`SELECT E'a\\'; b'; SELECT 2`)).toEqual([`SELECT E'a\\'; b'`, 'SELECT 2']);
    // An identifier ending in e before a quote is not an E string prefix.
    expect(splitStatements(`SELECT some'x\\'; SELECT 2`)).toEqual([`SELECT some'x\\'`, 'SELECT 2']);
  });

  it('unterminated quotes swallow the rest instead of splitting wrongly', () => {
    expect(splitStatements(`SELECT 'open; SELECT 2`)).toEqual([`SELECT 'open; SELECT 2`]);
    expect(splitStatements(`SELECT $x$ open; SELECT 2`)).toEqual([`SELECT $x$ open; SELECT 2`]);
  });
});

describe('ddlStatements', () => {
  it('keeps only the DDL of a multi-statement query string: no data values', () => {
    const q = `BEGIN; INSERT INTO users VALUES (1, 'TOPSECRET'); ALTER TABLE users ADD COLUMN x int;
               UPDATE users SET secret = 'ALSO SECRET'; ALTER TABLE users DROP COLUMN y; COMMIT;`;
    expect(ddlStatements(q, 'ALTER TABLE')).toEqual(['ALTER TABLE users ADD COLUMN x int', 'ALTER TABLE users DROP COLUMN y']);
  });

  it('matches the command tag by its first word, after leading comments', () => {
    const q = `-- migration 42\nCREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1); /* x */ create index on a (id)`;
    expect(ddlStatements(q, 'CREATE TABLE')).toEqual(['-- migration 42\nCREATE TABLE a (id int PRIMARY KEY)', '/* x */ create index on a (id)']);
    expect(ddlStatements(`INSERT INTO t VALUES (1); DROP TABLE t`, 'DROP TABLE')).toEqual(['DROP TABLE t']);
  });

  it('DDL run from a DO block: the non-data statements', () => {
    const q = `INSERT INTO t VALUES ('v'); DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD c int'; END $$; COMMIT`;
    expect(ddlStatements(q, 'ALTER TABLE')).toEqual([`DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD c int'; END $$`]);
  });

  it('a single statement is kept as it is', () => {
    expect(ddlStatements('ALTER TABLE t ADD c int;', 'ALTER TABLE')).toEqual(['ALTER TABLE t ADD c int']);
    expect(ddlStatements(`CALL migrate()`, 'ALTER TABLE')).toEqual(['CALL migrate()']);
  });
});
