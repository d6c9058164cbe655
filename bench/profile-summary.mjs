#!/usr/bin/env node
/**
 * Where a V8 CPU profile (node --cpu-prof; BENCH_DAEMON_PROF=dir in the benchmark) spent its time:
 * self time per function, the top 25, as a share of all samples.   node bench/profile-summary.mjs file.cpuprofile
 */
import { readFileSync } from 'node:fs';

const prof = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const dt = new Map();
for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i] ?? 0));
const self = new Map();
let total = 0;
for (const [id, us] of dt) {
  const n = byId.get(id);
  const f = n.callFrame;
  const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + us);
  total += us;
}
const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.argv[3] ?? 25));
console.log(`total ${(total / 1e6).toFixed(2)} s of samples`);
for (const [k, us] of rows) console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}`);

// With a third argument naming a function: its callers' chains (self time of that function by caller chain).
if (process.argv[4]) {
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const chains = new Map();
  for (const [id, us] of dt) {
    const n = byId.get(id);
    if (n.callFrame.functionName !== process.argv[4]) continue;
    const names = [];
    for (let p = parent.get(id), k = 0; p !== undefined && k < 6; p = parent.get(p), k++) names.push(byId.get(p).callFrame.functionName || '(anon)');
    const key = names.join(' < ');
    chains.set(key, (chains.get(key) ?? 0) + us);
  }
  console.log(`\ncallers of ${process.argv[4]}:`);
  for (const [k, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`${(us / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
}
