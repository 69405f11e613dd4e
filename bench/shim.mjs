#!/usr/bin/env node
// bench/shim.mjs - `npm run bench:shim`: ns/call medians of stat(2) for
// kernel stat, hot stat via libvrift.so, in-domain ENOENT via the shim and
// cold (non-domain) stat via the shim, over a 10k-path working set and over
// a single path, plus the ratios (issue 2 goals: hot >= 40x, cold <= 2%).
//
// One run: builds a temp tree (10,000 files in the domain, 10,000 outside),
// writes its blob with `vrift blob`, then runs shim/build/bench-shim
// alternately without and with LD_PRELOAD (RUNS times each, ROUNDS rounds
// per run) and reports the median of the per-run medians.
//
// Needs `npm run build:ts` (for bin/vrift.js) and `make -C shim`.
// Env: VRIFT_BENCH_RUNS (default 3), VRIFT_BENCH_ROUNDS (default 21).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(repo, 'shim', 'build');
const shim = path.join(build, 'libvrift.so');
const bench = path.join(build, 'bench-shim');
const RUNS = Number(process.env.VRIFT_BENCH_RUNS ?? 3);
const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 21);

for (const f of [shim, bench, path.join(repo, 'dist', 'cli', 'main.js')]) {
  if (!fs.existsSync(f)) {
    console.error(`bench:shim: ${path.relative(repo, f)} is missing; run \`npm run build\` first`);
    process.exit(1);
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-bench-shim-'));
try {
  // node_modules-like paths (~75 bytes): 100 packages x 100 files.
  const lists = { hot: [], enoent: [], cold: [] };
  for (const top of ['dom', 'cold']) {
    for (let p = 0; p < 100; p++) {
      const dir = path.join(tmp, top, 'node_modules', '@bench', `package-${String(p).padStart(3, '0')}`, 'lib');
      fs.mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 100; f++) {
        const file = path.join(dir, `module-${String(f).padStart(4, '0')}.js`);
        fs.writeFileSync(file, '');
        if (top === 'dom') {
          lists.hot.push(file);
          lists.enoent.push(path.join(dir, `missing-${String(f).padStart(4, '0')}.js`));
        } else {
          lists.cold.push(file);
        }
      }
    }
  }
  const blob = path.join(tmp, 'psfs.blob');
  execFileSync(process.execPath, [path.join(repo, 'bin', 'vrift.js'), 'blob', path.join(tmp, 'dom'), '-o', blob], { stdio: 'pipe' });
  const files = Object.entries(lists).map(([name, l]) => {
    const f = path.join(tmp, 'lists', name);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, l.join('\n') + '\n');
    return f;
  });

  // results[mode][list][kind] = [median per run]
  const results = { kernel: {}, shim: {} };
  const run = (mode) => {
    const env = { PATH: process.env.PATH };
    if (mode === 'shim') Object.assign(env, { LD_PRELOAD: shim, VRIFT_BLOB: blob });
    const out = execFileSync(bench, [String(ROUNDS), ...files], { env }).toString();
    for (const line of out.trim().split('\n')) {
      const [list, kind, median] = line.split(' ');
      ((results[mode][list] ??= {})[kind] ??= []).push(Number(median));
    }
  };
  for (let i = 0; i < RUNS; i++) {
    run('kernel');
    run('shim');
  }
  const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const get = (mode, list, kind) => med(results[mode][list][kind]);

  const rows = [
    ['kernel stat (domain paths)', 'kernel', 'hot'],
    ['hot stat via shim', 'shim', 'hot'],
    ['kernel ENOENT (domain)', 'kernel', 'enoent'],
    ['in-domain ENOENT via shim', 'shim', 'enoent'],
    ['kernel stat (non-domain)', 'kernel', 'cold'],
    ['cold stat via shim', 'shim', 'cold'],
  ];
  const w = 30;
  console.log(`shim bench: stat(2) ns/call, median of ${RUNS} runs x ${ROUNDS} rounds`);
  console.log(`${''.padEnd(w)}${'10k working set'.padStart(16)}${'single path'.padStart(14)}`);
  for (const [label, mode, list] of rows) {
    console.log(`${label.padEnd(w)}${get(mode, list, 'ws').toFixed(1).padStart(16)}${get(mode, list, 'single').toFixed(1).padStart(14)}`);
  }
  const ratio = (a, b) => (a / b).toFixed(1) + 'x';
  const pct = (a, b) => ((a / b - 1) * 100).toFixed(1) + '%';
  console.log('ratios');
  console.log(`${'hot speedup (kernel/shim)'.padEnd(w)}${ratio(get('kernel', 'hot', 'ws'), get('shim', 'hot', 'ws')).padStart(16)}${ratio(get('kernel', 'hot', 'single'), get('shim', 'hot', 'single')).padStart(14)}`);
  console.log(`${'ENOENT speedup (kernel/shim)'.padEnd(w)}${ratio(get('kernel', 'enoent', 'ws'), get('shim', 'enoent', 'ws')).padStart(16)}${ratio(get('kernel', 'enoent', 'single'), get('shim', 'enoent', 'single')).padStart(14)}`);
  console.log(`${'cold overhead (shim/kernel-1)'.padEnd(w)}${pct(get('shim', 'cold', 'ws'), get('kernel', 'cold', 'ws')).padStart(16)}${pct(get('shim', 'cold', 'single'), get('kernel', 'cold', 'single')).padStart(14)}`);
  console.log('goals (issue 2): hot speedup >= 40x, cold overhead <= 2%');
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
