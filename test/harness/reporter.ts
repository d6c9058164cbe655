/**
 * Prints plain closing lines that CI log readers understand: `failed test: <file> > <name>: <error>`
 * for each failure, then `tests: N passed, N failed`. `.ci/run` repeats the failed-test lines in its
 * summary, the part of a long log that is kept.
 */
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';

/** The first line of an error message, short enough for one log line. */
function firstLine(message: string | undefined, max = 200): string {
  const line = (message ?? '').split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

export default class PlainSummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const lines: string[] = [];
    for (const m of modules) {
      const file = path.relative(process.cwd(), m.moduleId);
      let failedHere = 0;
      for (const t of m.children.allTests()) {
        const r = t.result();
        if (r.state === 'passed') passed++;
        else if (r.state === 'failed') {
          failedHere++;
          // A later error (an afterEach's diagnosis of a time-out) is kept too: the first may name no cause.
          const more = (r.errors ?? []).slice(1, 3).map((e) => ` | then: ${firstLine(e.message, 600)}`).join('');
          lines.push(`failed test: ${file} > ${t.fullName}: ${firstLine(r.errors?.[0]?.message)}${more}`);
        } else skipped++;
      }
      // A file whose hooks failed has no failed test of its own: count the file.
      if (m.state() === 'failed' && failedHere === 0) {
        failedHere = 1;
        lines.push(`failed test: ${file} (its hooks): ${firstLine(m.errors()[0]?.message)}`);
      }
      failed += failedHere;
    }
    const text = lines.map((l) => `${l}\n`).join('');
    process.stdout.write(`\n${text}tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  }
}
