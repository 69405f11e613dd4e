#!/usr/bin/env node
// bench/builder.mjs - the builder section of `npm run bench` (issue 5,
// requirement 9): `vrift build` of a real npm tree (>= 30k files) side by
// side with `docker build` of a Dockerfile that COPYs the same tree onto the
// same base (classic builder, --no-cache), in one run.
//
// The tree: `npm install --ignore-scripts` of PACKAGES from the npm registry,
// cached in /var/cache/vrift/bench-npm (VRIFT_BENCH_NPM_DIR) and reused while
// the package list is unchanged. Both builds read it from the same place;
// the page cache is warmed by one untimed walk first so neither pays the cold
// disk alone.
//
// Printed: files, raw bytes; per builder wall time, files/s, MB/s (raw tree
// bytes / wall time), peak RSS of the builder process (GNU time; the docker
// CLI's RSS says nothing about dockerd, so it is not shown), layer size vs
// raw tree size; and the time ratio docker/vrift. vrift is timed twice: cold
// (empty digest cache) and warm (digest cache filled, what a rebuild costs);
// vrift's own phases (tree, base, output) come from its --json summary.
//
// Peak RSS against tree size: vrift build (cold digest cache, base from a
// docker-archive saved once) of generated npm-like trees of RSS_SIZES files
// (packages of 50 small .js files in 5 directories, 1 in 7 duplicated
// content); printed per size with the marginal KiB per file between the
// smallest and the largest, and between the two largest. What a build holds
// per path is paged (src/paged.ts, a 16 MiB pool): the peak should stop
// growing once the pool is full (~100k files here); the PSFS blob is O(n)
// by nature (~430 B per file here) but streamed to its file, not held.
//
// Env: VRIFT_BENCH_BASE (default vrift-test/bookworm-python:latest),
// VRIFT_BENCH_NPM_DIR, VRIFT_BENCH_RSS_SIZES (default 20000,80000,160000,320000; ""
// skips), VRIFT_BENCH_SKIP_NPM=1 (only the peak RSS section: no npm tree,
// no docker build). Needs `npm run build`, dockerd, /usr/bin/time.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(repo, 'bin', 'vrift.js');
const BASE = process.env.VRIFT_BENCH_BASE ?? 'vrift-test/bookworm-python:latest';
const NPM_DIR = process.env.VRIFT_BENCH_NPM_DIR ?? '/var/cache/vrift/bench-npm';
const PACKAGES = ['typescript', 'eslint', 'jest', 'webpack', '@babel/core', '@babel/preset-env', 'rxjs', 'date-fns', 'core-js', 'lodash-es', 'lodash', '@mui/icons-material'];
const MIN_FILES = 30_000;
const RSS_SIZES = (process.env.VRIFT_BENCH_RSS_SIZES ?? '20000,80000,160000,320000').split(',').filter(Boolean).map(Number);
const SKIP_NPM = process.env.VRIFT_BENCH_SKIP_NPM === '1';

const fail = (msg) => {
  console.error(`bench:builder: ${msg}`);
  process.exit(1);
};

for (const f of [path.join(repo, 'dist', 'cli', 'main.js'), '/usr/bin/time']) {
  if (!fs.existsSync(f)) fail(`${f} is missing; run \`npm run build\` (and install GNU time)`);
}
if (spawnSync('docker', ['image', 'inspect', BASE], { stdio: 'ignore' }).status !== 0) fail(`base image ${BASE} is missing; run scripts/setup-machine.sh`);

/** The npm tree, installed once and cached. */
function npmTree() {
  const stamp = path.join(NPM_DIR, '.packages');
  const nm = path.join(NPM_DIR, 'node_modules');
  if (fs.existsSync(nm) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8').trim() === PACKAGES.join(' ')) return nm;
  console.log(`bench:builder: installing ${PACKAGES.join(' ')} from the npm registry into ${NPM_DIR} (once)`);
  const tmp = fs.mkdtempSync(path.join(path.dirname(NPM_DIR), '.bench-npm-'));
  try {
    fs.writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'vrift-bench-tree', private: true }));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', ...PACKAGES], { cwd: tmp, stdio: ['ignore', 'ignore', 'inherit'] });
    fs.writeFileSync(path.join(tmp, '.packages'), PACKAGES.join(' '));
    fs.rmSync(NPM_DIR, { recursive: true, force: true });
    fs.renameSync(tmp, NPM_DIR);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return nm;
}

/** Regular files, symlinks, directories and bytes (st_size of regular files) of a tree; reading it warms the page cache. */
function measureTree(dir) {
  let files = 0, dirs = 0, symlinks = 0, bytes = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop();
    dirs++;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isSymbolicLink()) symlinks++;
      else if (e.isFile()) {
        files++;
        const st = fs.statSync(p);
        bytes += st.size;
        fs.readFileSync(p); // page cache warm for both builders
      }
    }
  }
  return { files, dirs, symlinks, bytes };
}

/** Run a command under GNU time; wall seconds, peak RSS (KiB), stdout. */
function timed(cmd, args, opts = {}) {
  const tf = path.join(os.tmpdir(), `vrift-bench-time-${process.pid}`);
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', '-o', tf, cmd, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const rssKiB = Number(fs.readFileSync(tf, 'utf8').trim().split('\n').pop());
  fs.rmSync(tf, { force: true });
  return { wall, rssKiB, stdout: r.stdout };
}

/** An npm-like tree of n files: package-NNNNN/lib/module-K/file-NNNNNN.js, 50 files per package. */
function generateTree(dir, n) {
  for (let i = 0; i < n; i++) {
    const d = path.join(dir, `package-${String(Math.floor(i / 50)).padStart(5, '0')}`, 'lib', `module-${Math.floor((i % 50) / 10)}`);
    if (i % 10 === 0) fs.mkdirSync(d, { recursive: true });
    const body = i % 7 === 0 ? 'module.exports = {};\n' : `'use strict';\nmodule.exports = function f${i}() { return ${i}; };\n`.repeat(1 + (i % 13));
    fs.writeFileSync(path.join(d, `file-${String(i).padStart(6, '0')}.js`), body);
  }
}

const MB = 1e6;
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

const tree = SKIP_NPM ? undefined : npmTree();
const t = tree && measureTree(tree);
if (t && t.files < MIN_FILES) fail(`the npm tree has ${t.files} files, fewer than ${MIN_FILES}; add packages to PACKAGES`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-bench-builder-'));
const tag = `vrift-bench/builder:${process.pid}`;
const dtag = `vrift-bench/docker-copy:${process.pid}`;
try {
  const env = { ...process.env };
  delete env.SOURCE_DATE_EPOCH;
  const vrift = (name, cacheDir) => {
    const out = path.join(work, `${name}.tar`);
    const r = timed(process.execPath, [CLI, 'build', '--base', `docker-daemon:${BASE}`, '--add', `${tree}:/vrift/node_modules`, '--tag', tag, '--output', out, '--cache-dir', cacheDir, '--json', '--quiet'], { env });
    const s = JSON.parse(r.stdout);
    fs.rmSync(out, { force: true });
    return { ...r, summary: s, layer: s.layers[s.layers.length - 1].size };
  };
  const row = (label, ...cols) => console.log(`${label.padEnd(34)}${cols.map((c) => String(c).padStart(18)).join('')}`);
  if (t) {
    const cache = path.join(work, 'digest-cache');
    const cold = vrift('cold', cache);
    const warm = vrift('warm', cache);

    // docker build: the same tree COPYed onto the same base. The context is the cache directory
    // (node_modules only: a .dockerignore would change what is sent, so the Dockerfile lives outside).
    const dockerfile = path.join(work, 'Dockerfile');
    fs.writeFileSync(dockerfile, `FROM ${BASE}\nCOPY node_modules /vrift/node_modules\n`);
    const d = timed('docker', ['build', '-q', '--no-cache', '--network', 'none', '-f', dockerfile, '-t', dtag, NPM_DIR], { env: { ...env, DOCKER_BUILDKIT: '0' } });
    const hist = JSON.parse(execFileSync('docker', ['history', '--no-trunc', '--format', '{{json .}}', dtag], { encoding: 'utf8' }).trim().split('\n')[0]);
    const dockerLayer = JSON.parse(execFileSync('docker', ['image', 'inspect', dtag], { encoding: 'utf8' }))[0];
    const copySize = hist.Size; // human string from docker history
    // Uncompressed size of the COPY layer: `docker save` would compress nothing; the engine reports the diff size.
    const copyBytes = Number(execFileSync('docker', ['inspect', '-f', '{{.Size}}', dtag], { encoding: 'utf8' }).trim()) - Number(execFileSync('docker', ['inspect', '-f', '{{.Size}}', BASE], { encoding: 'utf8' }).trim());

    console.log(`builder bench: ${t.files} files, ${t.symlinks} symlinks, ${t.dirs} dirs, ${mib(t.bytes)} (npm: ${PACKAGES.join(' ')}), base ${BASE}`);
    row('', 'vrift (cold)', 'vrift (warm)', 'docker build COPY');
    row('wall time (s)', cold.wall.toFixed(2), warm.wall.toFixed(2), d.wall.toFixed(2));
    row('files/s', Math.round(t.files / cold.wall), Math.round(t.files / warm.wall), Math.round(t.files / d.wall));
    row('MB/s (raw tree bytes / wall)', (t.bytes / MB / cold.wall).toFixed(1), (t.bytes / MB / warm.wall).toFixed(1), (t.bytes / MB / d.wall).toFixed(1));
    row('peak RSS of the builder process', mib(cold.rssKiB * 1024), mib(warm.rssKiB * 1024), '(in dockerd)');
    row('tree layer size', `${mib(cold.layer)} gz`, `${mib(warm.layer)} gz`, `${mib(copyBytes)} tar`);
    row('layer size / raw tree size', (cold.layer / t.bytes).toFixed(3), (warm.layer / t.bytes).toFixed(3), (copyBytes / t.bytes).toFixed(3));
    const ph = (s) => `${s.timings.tree.toFixed(1)}/${s.timings.base.toFixed(1)}/${s.timings.output.toFixed(1)}`;
    row('vrift phases tree/base/output (s)', ph(cold.summary), ph(warm.summary), '');
    console.log(`vrift: ${cold.summary.stats.casObjects} CAS objects for ${cold.summary.stats.files} files (dedup ${cold.summary.stats.dedupRatio.toFixed(3)}x), PSFS blob ${mib(cold.summary.stats.blobBytes)}; docker history of the COPY layer: ${copySize}; ${dockerLayer.RootFS.Layers.length} layers`);
    console.log('ratios (docker build time / vrift build time)');
    row('time ratio', `${(d.wall / cold.wall).toFixed(2)}x`, `${(d.wall / warm.wall).toFixed(2)}x`, '1.00x');
    row('time ratio, vrift tree phase only', `${(d.wall / cold.summary.timings.tree).toFixed(2)}x`, `${(d.wall / warm.summary.timings.tree).toFixed(2)}x`, '');
  }
  if (RSS_SIZES.length) {
    const baseTar = path.join(work, 'base.tar');
    execFileSync('docker', ['save', '-o', baseTar, BASE]);
    const rows = [];
    for (const n of RSS_SIZES) {
      const dir = path.join(work, `gen-${n}`);
      generateTree(dir, n);
      const out = path.join(work, 'gen.tar');
      const r = timed(process.execPath, [CLI, 'build', '--base', `docker-archive:${baseTar}`, '--add', `${dir}:/vrift/node_modules`, '--tag', tag, '--output', out, '--cache-dir', path.join(work, `gen-cache-${n}`), '--json', '--quiet'], { env });
      const s = JSON.parse(r.stdout);
      rows.push({ n, rssKiB: r.rssKiB, wall: r.wall, blob: s.stats.blobBytes });
      fs.rmSync(out, { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
    console.log('peak RSS against tree size (generated npm-like trees, cold digest cache, docker-archive base)');
    row('files', 'peak RSS', 'PSFS blob', 'wall (s)');
    for (const x of rows) row(String(x.n), mib(x.rssKiB * 1024), mib(x.blob), x.wall.toFixed(2));
    if (rows.length > 1) {
      const [a, b] = [rows[0], rows[rows.length - 1]];
      const perFile = ((b.rssKiB - a.rssKiB) / (b.n - a.n)).toFixed(2);
      const blobPerFile = ((b.blob - a.blob) / 1024 / (b.n - a.n)).toFixed(2);
      console.log(`marginal peak RSS: ${perFile} KiB per file (the PSFS blob, ${blobPerFile} KiB per file, is streamed to its file, not held)`);
      if (rows.length > 2) {
        // The smallest tree's peak can be the build's floor (the base read, the archive write), not its tree phase.
        const [c, d] = [rows[rows.length - 2], rows[rows.length - 1]];
        console.log(`marginal peak RSS between the two largest trees: ${((d.rssKiB - c.rssKiB) / (d.n - c.n)).toFixed(2)} KiB per file`);
      }
    }
  }
  console.log('goal (issue 5): faster than docker build COPY; peak RSS bounded by streaming (independent of tree size)');
} finally {
  spawnSync('docker', ['rmi', '-f', tag, dtag], { stdio: 'ignore' });
  fs.rmSync(work, { recursive: true, force: true });
}
