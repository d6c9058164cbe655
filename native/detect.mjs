#!/usr/bin/env node
/**
 * binding.gyp asks this at build time which fast deflate libraries can be linked:
 * `node native/detect.mjs defines` → HAVE_ISAL HAVE_LIBDEFLATE, `... libraries` → -lisal -ldeflate.
 * A library counts when a test program that includes its header and calls it compiles and links
 * (Debian: `apt-get install libisal-dev libdeflate-dev`). PG_EGRESS_DEFLATE=zlib links neither
 * (the addon then leaves compression to Node's zlib).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const LIBS = [
  { define: 'HAVE_ISAL', lib: '-lisal', src: '#include <isa-l/igzip_lib.h>\nint main(void){struct isal_zstream s; isal_deflate_stateless_init(&s); return 0;}\n' },
  { define: 'HAVE_LIBDEFLATE', lib: '-ldeflate', src: '#include <libdeflate.h>\nint main(void){libdeflate_free_compressor(libdeflate_alloc_compressor(1)); return 0;}\n' },
];

function found() {
  if (process.env.PG_EGRESS_DEFLATE === 'zlib') return [];
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-egress-detect-'));
  try {
    return LIBS.filter((l, i) => {
      const file = path.join(dir, `t${i}.c`);
      writeFileSync(file, l.src);
      const r = spawnSync(process.env.CC || 'cc', [file, '-o', path.join(dir, `t${i}`), l.lib], { stdio: 'ignore' });
      return r.status === 0;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const what = process.argv[2];
const libs = found();
process.stdout.write(libs.map((l) => (what === 'libraries' ? l.lib : l.define)).join(' ') + '\n');
