#!/usr/bin/env node
// bench/shim.mjs - `npm run bench:shim`: ns/call medians of stat(2) for
// kernel stat, hot stat via libvrift.so, in-domain ENOENT via the shim and
// cold (non-domain) stat via the shim, over a 10k-path working set and over
// a single path, plus the ratios (issue 2 goals: hot >= 40x, cold <= 2%).
//
// One run: builds a temp tree (10,000 files in the domain, 10,000 outside,
// node_modules-like paths), writes its blob with `vrift blob`, then runs
// shim/build/bench-shim once under LD_PRELOAD. In that one process, rounds
// alternate libc's own stat ("kernel stat") and the interposed stat, so VM
// noise hits both alike (time = the thread's CPU time, so preemption by
// other processes is not counted). In each round each side runs 4 times in
// a row and its last run counts (its steady state); the shim's first run,
// right after the kernel's path walks evicted the blob from the caches, is
// printed as its own row ("caches cold"). Medians over ROUNDS rounds, the
// cold overhead as the median of per-round paired ratios; plus
// psfs_resolve alone (the shim's decision cost, no syscall), which bounds
// the cold overhead without the machine's noise.
//
// Needs `npm run build:ts` (for bin/vrift.js) and `make -C shim`.
// Env: VRIFT_BENCH_ROUNDS (default 31).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(repo, 'shim', 'build');
const shim = path.join(build, 'libvrift.so');
const bench = path.join(build, 'bench-shim');
const ROUNDS = Number(process.env.VRIFT_BENCH_ROUNDS ?? 31);

for (const f of [shim, bench, path.join(repo, 'dist', 'cli', 'main.js')]) {
  if (!fs.existsSync(f)) {
    console.error(`bench:shim: ${path.relative(repo, f)} is missing; run \`npm run build\` first`);
    process.exit(1);
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-bench-shim-'));
// The shim rejects a blob whose root has an ancestor others cannot search
// (mkdtemp makes 0700 directories).
fs.chmodSync(tmp, 0o755);
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

  const env = { PATH: process.env.PATH, LD_PRELOAD: shim, VRIFT_BLOB: blob, BENCH_BLOB: blob };
  const out = execFileSync(bench, [String(ROUNDS), ...files], { env }).toString();
  const r = {}; // r[list][kind] = { kernel, shim, ratio }
  for (const line of out.trim().split('\n')) {
    const [list, kind, ...kv] = line.split(' ');
    (r[list] ??= {})[kind] = Object.fromEntries(kv.map((t) => t.split('=')).map(([k, v]) => [k, Number(v)]));
  }
  const rows = [
    ['kernel stat (domain paths)', 'hot', 'kernel'],
    ['hot stat via shim', 'hot', 'shim'],
    ['kernel ENOENT (domain)', 'enoent', 'kernel'],
    ['in-domain ENOENT via shim', 'enoent', 'shim'],
    ['kernel stat (non-domain)', 'cold', 'kernel'],
    ['cold stat via shim', 'cold', 'shim'],
  ];
  const w = 31;
  const line = (label, a, b) => console.log(`${label.padEnd(w)}${a.padStart(16)}${b.padStart(14)}`);
  console.log(`shim bench: stat(2) ns/call (thread CPU time), medians of ${ROUNDS} paired rounds (one process)`);
  console.log('each side measured in its steady state; "caches cold" = the shim right after 10k kernel path walks');
  line('', '10k working set', 'single path');
  for (const [label, list, who] of rows) line(label, r[list].ws[who].toFixed(1), r[list].single[who].toFixed(1));
  line('hot stat via shim, caches cold', r.hot.ws.shim_cold.toFixed(1), r.hot.single.shim_cold.toFixed(1));
  const speed = (list, kind) => (r[list][kind].kernel / r[list][kind].shim).toFixed(1) + 'x';
  const over = (kind) => ((r.cold[kind].ratio - 1) * 100).toFixed(1) + '%';
  console.log('ratios');
  line('hot speedup (kernel/shim)', speed('hot', 'ws'), speed('hot', 'single'));
  line('  with the shim\'s caches cold', (r.hot.ws.kernel / r.hot.ws.shim_cold).toFixed(1) + 'x', (r.hot.single.kernel / r.hot.single.shim_cold).toFixed(1) + 'x');
  line('ENOENT speedup (kernel/shim)', speed('enoent', 'ws'), speed('enoent', 'single'));
  line('cold overhead (paired median)', over('ws'), over('single'));
  const dec = (list) => r[list].resolve.ns;
  console.log(`shim decision cost alone (psfs_resolve, no syscall), 10k working set: hot ${dec('hot').toFixed(1)} ns, ENOENT ${dec('enoent').toFixed(1)} ns, cold ${dec('cold').toFixed(1)} ns`);
  line('cold overhead (decision/kernel)', ((dec('cold') / r.cold.ws.kernel) * 100).toFixed(2) + '%', ((dec('cold') / r.cold.single.kernel) * 100).toFixed(2) + '%');
  console.log('goals (issue 2): hot speedup >= 40x, cold overhead <= 2%');
  if (r.hot.single.shim > r.hot.single.kernel / 2) {
    console.error('bench:shim: the shim did not answer (blob rejected?): hot stat is not faster than the kernel');
    process.exitCode = 1;
  }
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
