#!/usr/bin/env node
// bench/index.mjs - `npm run bench`: every benchmark section in one run, each
// in its own process (output passed through), then their ratio lines side
// by side. Sections: shim (bench/shim.mjs: stat ns/call, hot/cold ratios) and
// builder (bench/builder.mjs: vrift build vs docker build COPY).
// VRIFT_BENCH_SECTIONS=shim,builder picks sections. Needs `npm run build`.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SECTIONS = { shim: 'shim.mjs', builder: 'builder.mjs' };
const wanted = (process.env.VRIFT_BENCH_SECTIONS ?? Object.keys(SECTIONS).join(',')).split(',').map((s) => s.trim()).filter(Boolean);
const summary = [];
let failed = false;
for (const name of wanted) {
  const script = SECTIONS[name];
  if (!script) {
    console.error(`bench: unknown section ${name}; known: ${Object.keys(SECTIONS).join(', ')}`);
    process.exit(2);
  }
  console.log(`\n=== bench: ${name} ===`);
  const r = spawnSync(process.execPath, [path.join(here, script)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  process.stdout.write(r.stdout ?? '');
  if (r.status !== 0) {
    failed = true;
    summary.push([name, `FAILED (exit ${r.status})`]);
    continue;
  }
  // Ratio lines: what each section prints after its "ratios" heading, plus any line naming a speedup/overhead/ratio.
  const lines = (r.stdout ?? '').split('\n');
  const at = lines.findIndex((l) => /^ratios/.test(l));
  const picked = (at >= 0 ? lines.slice(at + 1) : lines).filter((l) => /ratio|speedup|overhead/i.test(l) && !/^goal/.test(l));
  for (const l of picked) summary.push([name, l.trim()]);
}
console.log('\n=== bench: ratios ===');
for (const [name, line] of summary) console.log(`${name.padEnd(8)} ${line}`);
if (failed) process.exitCode = 1;
