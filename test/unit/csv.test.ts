import { describe, expect, it } from 'vitest';
import { CsvBuffer, CsvRecordSplitter, headerLine, needsQuote, parseRecord, textArrayLiteral } from '../../src/output/csv.js';

const b = (s: string) => Buffer.from(s, 'utf8');

function encode(values: (string | null)[], single = false): string {
  const out = new CsvBuffer(4);
  values.forEach((v, i) => {
    if (i > 0) out.byte(0x2c);
    if (v !== null) out.value(b(v), single);
  });
  out.byte(0x0a);
  return out.take().toString('utf8');
}

describe('CSV encoding (COPY FORMAT csv rules)', () => {
  it('leaves plain values bare and NULL empty', () => {
    expect(encode(['1', 'abc', null, 'ü€'])).toBe('1,abc,,ü€\n');
  });
  it('quotes the empty string so it differs from NULL', () => {
    expect(encode(['', null])).toBe('"",\n');
  });
  it('quotes delimiter, quote, CR and LF, doubling quotes', () => {
    expect(encode(['a,b', 'say "hi"', 'l1\nl2', 'cr\r', '"'])).toBe('"a,b","say ""hi""","l1\nl2","cr\r",""""\n');
  });
  it('quotes \\. only when it is the single column', () => {
    expect(encode(['\\.'], true)).toBe('"\\."\n');
    expect(encode(['\\.', 'x'])).toBe('\\.,x\n');
  });
  it('does not quote other characters COPY leaves alone', () => {
    expect(needsQuote(b(' lead and trail '))).toBe(false);
    expect(needsQuote(b('back\\slash'))).toBe(false);
    expect(needsQuote(b("it's"))).toBe(false);
  });
  it('grows its buffer for large values', () => {
    const big = 'x"'.repeat(100_000);
    const out = encode([big]);
    expect(out.length).toBe(big.length + 100_000 + 3);
  });
  it('encodes spans of a larger buffer like the values themselves, for every length around the short/long cut-offs', () => {
    // Reference: COPY's rule written plainly.
    const ref = (v: string) => (v === '' || /[,"\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v);
    const pieces = ['a', 'ü', ',', '"', '\n', '\r', ' ', '+', '-', '\\'];
    for (let len = 0; len <= 300; len += len < 70 ? 1 : len < 250 ? 7 : 1) {
      for (const special of [-1, 0, len >> 1, len - 1]) {
        let v = '';
        for (let i = 0; i < len; i++) v += i === special ? pieces[1 + (i % 5)] : pieces[(i * 7) % 10 === 1 ? 1 : 0];
        const src = Buffer.concat([b('x"'), b(v), b(',y')]);
        const out = new CsvBuffer(4);
        out.byte(0x2c);
        out.valueRange(src, 2, src.length - 2);
        out.byte(0x2c);
        expect(out.take().toString('utf8'), `length ${len}, special at ${special}`).toBe(',' + ref(v) + ',');
      }
    }
    const single = new CsvBuffer(4);
    single.valueRange(b('x\\.'), 1, 3, true);
    expect(single.take().toString()).toBe('"\\."');
  });

  it('writes integers in decimal without a string', () => {
    const out = new CsvBuffer(1);
    for (const v of [0, 7, 9, 10, 99, 100, 12345, 4_294_967_295, Number.MAX_SAFE_INTEGER]) {
      out.uint(v);
      out.byte(0x2c);
    }
    expect(out.take().toString()).toBe('0,7,9,10,99,100,12345,4294967295,9007199254740991,');
  });

  it('writes header lines like COPY HEADER', () => {
    expect(headerLine(['id', 'Weird "Name", x', 'my col']).toString()).toBe('id,"Weird ""Name"", x",my col\n');
  });
});

describe('text array literal for _unchanged', () => {
  it('quotes names that need it', () => {
    expect(textArrayLiteral(['body'])).toBe('{body}');
    expect(textArrayLiteral(['body', 'my col', 'a"b', 'null', 'c,d', 'x\\y'])).toBe('{body,"my col","a\\"b","null","c,d","x\\\\y"}');
  });
});

describe('CSV record splitting and parsing', () => {
  const text = 'h1,h2\n1,"a\nb"\n2,""\n3,\n"x""y",z\n';
  const expected = ['h1,h2', '1,"a\nb"', '2,""', '3,', '"x""y",z'];

  it('splits records in one chunk', () => {
    const recs: string[] = [];
    const s = new CsvRecordSplitter((r) => recs.push(r.toString()));
    s.push(b(text));
    s.end();
    expect(recs).toEqual(expected);
  });

  it('splits records identically for every split point of the input', () => {
    const bytes = b(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      for (let cut2 = cut; cut2 < bytes.length; cut2 += 3) {
        const recs: string[] = [];
        const s = new CsvRecordSplitter((r) => recs.push(r.toString()));
        s.push(bytes.subarray(0, cut));
        s.push(bytes.subarray(cut, cut2));
        s.push(bytes.subarray(cut2));
        s.end();
        expect(recs).toEqual(expected);
      }
    }
  });

  it('rejects input that ends inside a record', () => {
    const s = new CsvRecordSplitter(() => undefined);
    s.push(b('1,"open\n'));
    expect(() => s.end()).toThrow(/ends inside/);
  });

  it('parses fields: NULL, empty string, quotes, trailing empty', () => {
    const f = parseRecord(b('1,"a,b",,"","x""y",'));
    expect(f.map((v) => (v === null ? null : v.toString()))).toEqual(['1', 'a,b', null, '', 'x"y', null]);
  });

  it('round-trips through encode and parse', () => {
    const values = ['', null, 'plain', 'a,b', 'q"q', 'multi\nline\r\n', 'ü'];
    const rec = encode(values).slice(0, -1);
    expect(parseRecord(b(rec)).map((v) => (v === null ? null : v.toString()))).toEqual(values);
  });
});
