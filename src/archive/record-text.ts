/**
 * One CSV record (SPEC §4, COPY's CSV) split into fields as byte strings: latin1, one char per
 * byte, so the UTF-8 bytes are kept exactly and a multi-byte character is never split. `null` is
 * NULL (an empty unquoted field); `""` is the empty string.
 *
 * Rebuild and load read every streaming row through this. Fields are cut from the chunk directly
 * (`toString('latin1', start, end)`), without a Buffer per field as output/csv.ts's parseRecord
 * makes: on a 1M-row change set those Buffer objects were most of the garbage V8 had to collect,
 * and they kept its heap ~30 MB larger.
 */
const COMMA = 0x2c;
const QUOTE = 0x22;

export function recordFields(buf: Buffer, start: number, end: number): (string | null)[] {
  const fields: (string | null)[] = [];
  let i = start;
  for (;;) {
    if (i < end && buf[i] === QUOTE) {
      // Quoted: up to the closing quote, a doubled quote standing for one.
      let out = '';
      let from = i + 1;
      let j = from;
      for (;;) {
        if (j >= end) throw new Error('unterminated quoted CSV field');
        if (buf[j] === QUOTE) {
          if (j + 1 < end && buf[j + 1] === QUOTE) {
            out += buf.toString('latin1', from, j + 1);
            j += 2;
            from = j;
            continue;
          }
          out += buf.toString('latin1', from, j);
          j++;
          break;
        }
        j++;
      }
      fields.push(out);
      i = j;
    } else {
      let j = i;
      while (j < end && buf[j] !== COMMA) j++;
      fields.push(j === i ? null : buf.toString('latin1', i, j));
      i = j;
    }
    if (i >= end) break;
    if (buf[i] !== COMMA) throw new Error(`malformed CSV record at byte ${i - start}`);
    i++;
    if (i === end) {
      fields.push(null);
      break;
    }
  }
  return fields;
}

/** A byte string's text (header names, `_unchanged` lists are UTF-8). */
export const utf8Of = (s: string): string => Buffer.from(s, 'latin1').toString('utf8');
