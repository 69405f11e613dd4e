#!/usr/bin/env node
/**
 * bench/reach.mjs - `npm run reach`: the measured reach of libvrift.so per
 * runtime (issue 7, requirement 5), inside an image built by `vrift build`.
 *
 * 1. Base image vrift-test/bookworm-reach (debootstrap bookworm minbase +
 *    python3, nodejs, gcc, libc6-dev, make, strace; scripts/setup-machine.sh
 *    functions, cached under $VRIFT_CACHE).
 * 2. Trees, made at run time in a temp dir:
 *      /vrift/py    python3-sympy + python3-mpmath (Debian .debs), .pyc
 *                   compiled with unchecked-hash so Python never writes there
 *      /vrift/node  eslint 9, @babel/core, @babel/preset-env, webpack 5 from
 *                   the npm registry (hundreds of packages)
 *      /vrift/ts    typescript 5 + @types/node 20 and a small project
 *      /vrift/c     libpython3.11-dev's headers, a C extension source, and a
 *                   generated make tree (2000 sources and objects)
 *      /vrift/go    Debian's umoci (Go) and an OCI layout
 * 3. `vrift build --base vrift-test/bookworm-reach --load` (the log says which
 *    shim variant it picked).
 * 4. In one container (--network none, SYS_PTRACE for strace) every workload
 *    runs without the shim (LD_PRELOAD emptied) and with it:
 *      - strace -f -y: stat-family syscalls (stat, lstat, fstat, newfstatat,
 *        statx) that name a /vrift path (string argument, or a descriptor
 *        strace -y decodes to /vrift), classified; access/open/readlink
 *        probes of /vrift paths counted apart;
 *      - wall time, measured inside the container (date +%s%N around the
 *        command), REACH_RUNS runs per mode (default 5), modes alternated,
 *        median; warm cache, and cold (host `sync; echo 3 >
 *        /proc/sys/vm/drop_caches` before each run).
 * 5. docs/runtime-reach.md (table + the explanation of every remaining class).
 *
 * Environment: REACH_RUNS (5), REACH_KEEP=1 keeps the temp dir and container,
 * REACH_ONLY=strace recounts the syscalls and keeps the times already in
 * bench/reach-results.json,
 * VRIFT_CACHE (/var/cache/vrift). Needs root, docker, the npm registry and
 * Debian's mirror. Takes about 10 minutes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.env.VRIFT_CACHE ?? '/var/cache/vrift';
const RUNS = Number(process.env.REACH_RUNS ?? 5);
const BASE = 'vrift-test/bookworm-reach:latest';
const TAG = 'vrift-reach:latest';
const SHIM = '/usr/lib/vrift/libvrift.so';
const log = (s) => process.stderr.write(`reach: ${s}\n`);

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r;
}

// ---- 1. base image --------------------------------------------------------
function ensureBase() {
  sh('bash', ['-c', `source ${REPO}/scripts/setup-machine.sh; VRIFT_LOG_PREFIX=reach; set -e; vrift_ensure_dockerd; vrift_ensure_base_image ${BASE} bookworm-reach bookworm python3,nodejs,gcc,libc6-dev,make,strace`], { stdio: ['ignore', 'inherit', 'inherit'] });
}

// ---- 2. trees -------------------------------------------------------------
function aptDownload(dir, pkgs) {
  const d = path.join(CACHE, 'apt-amd64');
  for (const p of ['lists/partial', 'cache/archives/partial']) fs.mkdirSync(path.join(d, p), { recursive: true });
  if (!fs.existsSync(path.join(d, 'status'))) fs.writeFileSync(path.join(d, 'status'), '');
  const A = ['-o', 'APT::Architecture=amd64', '-o', 'APT::Architectures::=amd64', '-o', `Dir::State::Lists=${d}/lists`, '-o', `Dir::Cache=${d}/cache`, '-o', `Dir::State::status=${d}/status`];
  if (!fs.readdirSync(path.join(d, 'lists')).some((f) => f.endsWith('_Packages'))) sh('apt-get', [...A, 'update']);
  sh('apt-get', [...A, 'download', ...pkgs], { cwd: dir });
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.deb'))) sh('dpkg-deb', ['-x', path.join(dir, f), path.join(dir, 'x')]);
  return path.join(dir, 'x');
}

function npmInstall(dir, pkgs) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: path.basename(dir), private: true }));
  sh('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', ...pkgs], { cwd: dir });
  return Number(sh('npm', ['ls', '--all', '--parseable'], { cwd: dir, allowFail: true }).stdout.trim().split('\n').length - 1);
}

const mkd = (p) => (fs.mkdirSync(p, { recursive: true }), p);

function makeTrees(work) {
  const t = {};
  // Python: sympy + mpmath from Debian.
  const pyx = aptDownload(mkd(path.join(work, 'debs-py')), ['python3-sympy', 'python3-mpmath']);
  fs.renameSync(path.join(pyx, 'usr/lib/python3/dist-packages'), path.join(work, 'py'));
  sh('python3', ['-m', 'compileall', '-q', '-j', '0', '--invalidation-mode', 'unchecked-hash', path.join(work, 'py')]);
  // C: Python's headers (Debian libpython3.11-dev), an extension source, a make tree.
  const cx = aptDownload(mkd(path.join(work, 'debs-c')), ['libpython3.11-dev']);
  fs.mkdirSync(path.join(work, 'c/src'), { recursive: true });
  fs.renameSync(path.join(cx, 'usr/include'), path.join(work, 'c/include'));
  fs.writeFileSync(path.join(work, 'c/src/ext.c'), '#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n#include <structmember.h>\n#include <datetime.h>\nstatic PyObject *f(PyObject *s, PyObject *a) { (void)s; (void)a; Py_RETURN_NONE; }\nstatic PyMethodDef m[] = {{"f", f, METH_NOARGS, ""}, {0}};\nstatic struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "ext", 0, -1, m};\nPyMODINIT_FUNC PyInit_ext(void) { return PyModule_Create(&d); }\n');
  const mk = path.join(work, 'c/mk');
  fs.mkdirSync(path.join(mk, 'src'), { recursive: true });
  fs.mkdirSync(path.join(mk, 'obj'), { recursive: true });
  const objs = [];
  for (let i = 0; i < 2000; i++) {
    fs.writeFileSync(path.join(mk, 'src', `f${i}.c`), `int f${i}(void) { return ${i}; }\n`);
    fs.writeFileSync(path.join(mk, 'src', `f${i}.h`), `int f${i}(void);\n`);
    objs.push(`/vrift/c/mk/obj/f${i}.o`);
  }
  // Objects with distinct bytes (equal files would share one CAS inode) and newer than their
  // sources: everything is up to date, so `make -q` stats every target and prerequisite.
  const old = new Date('2020-01-01T00:00:00Z'), newer = new Date('2021-01-01T00:00:00Z');
  for (let i = 0; i < 2000; i++) {
    fs.writeFileSync(path.join(mk, 'obj', `f${i}.o`), `obj ${i}\n`);
    fs.utimesSync(path.join(mk, 'obj', `f${i}.o`), newer, newer);
    fs.utimesSync(path.join(mk, 'src', `f${i}.c`), old, old);
    fs.utimesSync(path.join(mk, 'src', `f${i}.h`), old, old);
  }
  fs.writeFileSync(path.join(mk, 'Makefile'), `# every path absolute: make stats each target and prerequisite\nall: ${objs.join(' ')}\n/vrift/c/mk/obj/%.o: /vrift/c/mk/src/%.c /vrift/c/mk/src/%.h\n\t$(CC) -c -o $@ $<\n`);
  // Node: a real toolchain tree from the npm registry.
  t.nodePackages = npmInstall(path.join(work, 'node'), ['eslint@9', '@babel/core@7', '@babel/preset-env@7', 'webpack@5']);
  // TypeScript: compiler + @types/node, and a small project that uses them.
  t.tsPackages = npmInstall(path.join(work, 'ts'), ['typescript@5', '@types/node@20']);
  fs.mkdirSync(path.join(work, 'ts/src'), { recursive: true });
  fs.writeFileSync(path.join(work, 'ts/tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'es2022', module: 'commonjs', moduleResolution: 'node', types: ['node'], noEmit: true }, include: ['src'] }, null, 2));
  fs.writeFileSync(path.join(work, 'ts/src/a.ts'), "import * as fs from 'node:fs';\nimport * as path from 'node:path';\nimport { b } from './b';\nexport function a(p: string): number { return fs.statSync(path.resolve(p)).size + b(); }\n");
  fs.writeFileSync(path.join(work, 'ts/src/b.ts'), "import { createHash } from 'node:crypto';\nimport { EventEmitter } from 'node:events';\nexport function b(): number { const e = new EventEmitter(); e.emit('x'); return createHash('sha256').update('x').digest().length; }\n");
  // Go: Debian's umoci (dynamically linked Go; Go's os.Stat is a raw syscall).
  fs.mkdirSync(path.join(work, 'go'), { recursive: true });
  fs.copyFileSync('/usr/bin/umoci', path.join(work, 'go/umoci'));
  fs.chmodSync(path.join(work, 'go/umoci'), 0o755);
  sh('umoci', ['init', '--layout', path.join(work, 'go/layout')]);
  sh('umoci', ['new', '--image', `${path.join(work, 'go/layout')}:t`]);
  return t;
}

// ---- 4. workloads -----------------------------------------------------------
const WORKLOADS = [
  { name: 'Python: import sympy (Debian python3-sympy + mpmath)', key: 'python', cmd: ['python3', '-c', 'import sympy, sympy.integrals, sympy.solvers, sympy.physics.mechanics'], env: ['PYTHONPATH=/vrift/py', 'PYTHONDONTWRITEBYTECODE=1'] },
  { name: 'Node: require eslint, @babel/core, @babel/preset-env, webpack', key: 'node', cmd: ['node', '-e', "require('eslint');require('@babel/core');require('@babel/preset-env');require('webpack')"], cwd: '/vrift/node' },
  { name: 'TypeScript: tsc --noEmit (typescript + @types/node under /vrift)', key: 'tsc', runs: 3, cmd: ['node', '/vrift/ts/node_modules/typescript/bin/tsc', '--noEmit', '-p', '/vrift/ts/tsconfig.json'] },
  { name: 'C: gcc -fsyntax-only -I/vrift/c/include/python3.11 (Python.h)', key: 'gcc', cmd: ['gcc', '-fsyntax-only', '-I/vrift/c/include/python3.11', '-I/vrift/c/include', '/vrift/c/src/ext.c'] },
  { name: 'C: make -q, all up to date (2000 targets, 4000 prerequisites, absolute paths)', key: 'make', cmd: ['make', '-q', '-f', '/vrift/c/mk/Makefile'] },
  { name: 'ls -lR /vrift/py/sympy', key: 'ls', cmd: ['sh', '-c', 'ls -lR /vrift/py/sympy >/dev/null'] },
  { name: 'find /vrift/node/node_modules -name package.json', key: 'find', cmd: ['sh', '-c', 'find /vrift/node/node_modules -name package.json >/dev/null'] },
  { name: 'Go: umoci ls --layout /vrift/go/layout', key: 'go', cmd: ['/vrift/go/umoci', 'ls', '--layout', '/vrift/go/layout'] },
];

const STAT = new Set(['stat', 'lstat', 'fstat', 'newfstatat', 'statx', 'stat64', 'lstat64', 'fstat64', 'fstatat64']);
const PROBE = new Set(['access', 'faccessat', 'faccessat2', 'open', 'openat', 'readlink', 'readlinkat']);

/**
 * Classify one strace -f -y line. Returns undefined when it does not touch
 * /vrift. `init` says whether this pid's shim constructor has run (it opens
 * the blob); `shim` whether the run has the shim at all.
 */
function classify(sys, args, init, shim) {
  const m = /^(-?\d+|AT_FDCWD)(<([^>]*)>)?, "([^"]*)"/.exec(args) ?? /^"([^"]*)"/.exec(args);
  let dirfd, dirPath, p;
  if (sys === 'stat' || sys === 'lstat' || sys === 'access' || sys === 'open' || sys === 'readlink') {
    const s = /^"([^"]*)"/.exec(args);
    p = s?.[1];
  } else if (sys === 'fstat') {
    const f = /^\d+<([^>]*)>/.exec(args);
    if (!f || !f[1].startsWith('/vrift')) return undefined;
    return 'fstat(fd)';
  } else if (m && m.length === 5) {
    dirfd = m[1];
    dirPath = m[3];
    p = m[4];
  } else return undefined;
  if (p === undefined) return undefined;
  if (p === '' && dirPath?.startsWith('/vrift')) return 'fstat(fd)'; // AT_EMPTY_PATH
  if (p.startsWith('/')) {
    if (!p.startsWith('/vrift')) return undefined;
    if (!shim) return 'absolute';
    const mask = /^[^,]+, "[^"]*", [^,]+, ([^,]+),/.exec(args)?.[1] ?? '';
    if (sys === 'statx' && init && !/STATX_BASIC_STATS|STATX_ALL/.test(mask)) return 'statx with a mask narrower than STATX_BASIC_STATS (passthrough by policy)';
    return init ? 'absolute, after init (uncertain blob entry, glibc-internal or raw syscall)' : 'before the shim init (loader, earlier constructors)';
  }
  if (dirfd !== undefined && dirfd !== 'AT_FDCWD' && dirPath?.startsWith('/vrift')) return 'dirfd-relative';
  if (dirfd === 'AT_FDCWD' && dirPath?.startsWith('/vrift')) return 'cwd-relative';
  return undefined;
}

function countTrace(text, shim) {
  const init = new Map();
  const stat = {};
  const probes = { total: 0, enoent: 0 };
  let statTotal = 0;
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+([a-z0-9_]+)\((.*)$/.exec(line);
    if (!m) continue;
    const [, pid, sys, args] = m;
    if (sys === 'execve') {
      init.set(pid, false);
      continue;
    }
    if (sys === 'openat' && args.includes('"/usr/lib/vrift/psfs.blob"')) {
      init.set(pid, true);
      continue;
    }
    if (sys === 'clone' || sys === 'clone3' || sys === 'vfork' || sys === 'fork') continue;
    if (!STAT.has(sys) && !PROBE.has(sys)) continue;
    // The shim's own cold statx of roots[0] at init (PSFS_H_DEV_RUNTIME / root mtime check).
    const own = shim && sys === 'statx' && /^AT_FDCWD(<[^>]*>)?, "\/vrift", .*STATX_MNT_ID/.test(args);
    // strace -y decodes dirfds; a fork child inherits its parent's init state
    const c = own ? 'shim init: statx of the root, once per process' : classify(sys, args, init.get(pid) ?? true, shim);
    if (!c) continue;
    if (STAT.has(sys)) {
      statTotal++;
      stat[c] = (stat[c] ?? 0) + 1;
    } else {
      probes.total++;
      if (/= -1 ENOENT/.test(line)) probes.enoent++;
    }
  }
  return { statTotal, stat, probes };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

let loadStart = '';
// REACH_ONLY=strace: recount the syscalls, keep the wall/CPU times of bench/reach-results.json.
const ONLY_STRACE = process.env.REACH_ONLY === 'strace';
let prevMeta;

function main() {
  if (process.getuid?.() !== 0) throw new Error('needs root (drop_caches, debootstrap, docker)');
  const t0 = Date.now();
  loadStart = os.loadavg().map((x) => x.toFixed(1)).join(' ');
  ensureBase();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-reach-'));
  fs.chmodSync(work, 0o755);
  let cid;
  try {
    log(`making trees in ${work}`);
    const trees = makeTrees(work);
    log(`npm: ${trees.nodePackages} packages (node), ${trees.tsPackages} (ts)`);
    const adds = ['py', 'node', 'ts', 'c', 'go'].flatMap((d) => ['--add', `${path.join(work, d)}:/vrift/${d}`]);
    const b = sh('node', [path.join(REPO, 'bin/vrift.js'), 'build', '--base', BASE, '--tag', TAG, '--load', '--json', ...adds]);
    const picked = b.stderr.split('\n').find((l) => l.includes('shim: picked')) ?? b.stderr.split('\n').find((l) => l.includes('shim:')) ?? '';
    const built = JSON.parse(b.stdout);
    log(picked);
    cid = sh('docker', ['run', '-d', '--network', 'none', '--cap-add', 'SYS_PTRACE', '--security-opt', 'seccomp=unconfined', TAG, 'sleep', 'infinity']).stdout.trim();
    const execIn = (w, withShim, extra) => {
      const args = ['exec', '-e', `LD_PRELOAD=${withShim ? SHIM : ''}`, ...(w.env ?? []).flatMap((e) => ['-e', e]), ...(w.cwd ? ['-w', w.cwd] : []), cid, ...extra];
      return sh('docker', args, { allowFail: true });
    };
    const versions = execIn({}, false, ['sh', '-c', 'python3 --version; node --version; gcc --version | head -1; make --version | head -1; ls --version | head -1; strace -V | head -1; ldd --version | head -1']).stdout.trim().split('\n');
    const results = [];
    for (const w of WORKLOADS) {
      const r = { w };
      for (const mode of [false, true]) {
        const tr = execIn(w, mode, ['sh', '-c', 'strace -f -qq -y -s 256 -o /tmp/trace.txt -e trace=execve,%stat,%lstat,%fstat,statx,newfstatat,access,faccessat,faccessat2,open,openat,readlink,readlinkat "$@" >/dev/null 2>/tmp/err.txt; echo rc=$?; cat /tmp/trace.txt', 'sh', ...w.cmd]);
        const rc = /^rc=(\d+)/.exec(tr.stdout)?.[1];
        if (rc !== '0') throw new Error(`${w.key} (${mode ? 'shim' : 'no shim'}) under strace: exit ${rc}: ${execIn({}, false, ['cat', '/tmp/err.txt']).stdout.slice(0, 2000)}`);
        r[mode ? 'shim' : 'plain'] = countTrace(tr.stdout, mode);
      }
      const prev = ONLY_STRACE ? JSON.parse(fs.readFileSync(path.join(REPO, 'bench/reach-results.json'), 'utf8')) : undefined;
      if (prev) {
        const p = prev.results.find((x) => x.key === w.key);
        Object.assign(r, { warm: p.warm, cold: p.cold });
        prevMeta = prev.meta;
      }
      for (const cold of ONLY_STRACE ? [] : [false, true]) {
        const times = { plain: [], shim: [] };
        const cpus = { plain: [], shim: [] };
        const runs = Math.min(RUNS, w.runs ?? RUNS);
        for (let i = 0; i < runs + 1; i++) {
          for (const mode of [false, true]) {
            if (cold) sh('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
            // wall time (date +%s%N) and the children's user+sys CPU time (dash `times`, 10 ms ticks)
            const out = execIn(w, mode, ['sh', '-c', 't0=$(date +%s%N); "$@" >/dev/null 2>&1; rc=$?; t1=$(date +%s%N); echo $rc $((t1 - t0)); times', 'sh', ...w.cmd]).stdout.trim().split('\n');
            const [rc, ns] = out[0].split(' ');
            if (rc !== '0') throw new Error(`${w.key}: exit ${rc}`);
            const cpu = (out[2] ?? '').split(' ').reduce((a, t) => { const m = /^(\d+)m([\d.]+)s$/.exec(t); return a + (m ? Number(m[1]) * 60e3 + Number(m[2]) * 1e3 : 0); }, 0);
            if (i > 0 || cold) {
              times[mode ? 'shim' : 'plain'].push(Number(ns) / 1e6); // warm: first pair warms up
              cpus[mode ? 'shim' : 'plain'].push(cpu);
            }
          }
        }
        r[cold ? 'cold' : 'warm'] = { plain: median(times.plain), shim: median(times.shim), cpuPlain: median(cpus.plain), cpuShim: median(cpus.shim), n: times.plain.length };
      }
      log(`${w.key}: stat on /vrift ${r.plain.statTotal} -> ${r.shim.statTotal}; warm ${r.warm.plain.toFixed(0)} -> ${r.warm.shim.toFixed(0)} ms; cold ${r.cold.plain.toFixed(0)} -> ${r.cold.shim.toFixed(0)} ms`);
      results.push(r);
    }
    const meta = prevMeta ? { ...prevMeta, picked, files: built.stats.files, blobBytes: built.stats.blobBytes, versions, trees } : { date: new Date().toISOString(), picked, files: built.stats.files, blobBytes: built.stats.blobBytes, versions, trees, runs: RUNS, seconds: (Date.now() - t0) / 1000, cores: os.cpus().length, kernel: os.release(), load: `${loadStart} at the start, ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} at the end` };
    const saved = { meta, results: results.map((r) => ({ key: r.w.key, name: r.w.name, plain: r.plain, shim: r.shim, warm: r.warm, cold: r.cold })) };
    fs.writeFileSync(path.join(REPO, 'bench/reach-results.json'), JSON.stringify(saved, null, 2) + '\n');
    writeDoc(saved);
    log(`wrote docs/runtime-reach.md and bench/reach-results.json in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    if (!process.env.REACH_KEEP) {
      if (cid) spawnSync('docker', ['rm', '-f', cid], { stdio: 'ignore' });
      fs.rmSync(work, { recursive: true, force: true });
    } else log(`kept ${work} and container ${cid}`);
  }
}

function writeDoc(saved) {
  fs.writeFileSync(path.join(REPO, 'docs/runtime-reach.md.tmp'), render(saved.results, saved.meta));
  fs.renameSync(path.join(REPO, 'docs/runtime-reach.md.tmp'), path.join(REPO, 'docs/runtime-reach.md'));
}

const pct = (a, b) => (a === 0 ? '-' : `${((100 * (a - b)) / a).toFixed(1)} %`);
const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const ratio = (p, s) => (s / p).toFixed(2);

function render(results, meta) {
  const L = [];
  L.push('# Runtime reach of libvrift.so (issue 7)', '');
  L.push(`Generated by \`npm run reach\` (bench/reach.mjs) on ${meta.date.slice(0, 10)}; raw numbers in bench/reach-results.json. Do not edit the tables by hand: rerun the script.`, '');
  L.push(`Image: \`${TAG}\` built by \`vrift build --base ${BASE}\` (debootstrap bookworm minbase + python3, nodejs, gcc, libc6-dev, make, strace), ${meta.files} files under /vrift, blob ${meta.blobBytes} bytes. Build log: \`${meta.picked.trim()}\`.`, '');
  L.push(`In the container: ${meta.versions.join('; ')}. Host: ${meta.cores} cores (shared with other work while measured), Linux ${meta.kernel}.`, '');
  L.push(`Trees: /vrift/py = Debian python3-sympy + python3-mpmath (.pyc precompiled, unchecked-hash); /vrift/node = eslint 9, @babel/core 7, @babel/preset-env 7, webpack 5 installed from the npm registry at run time (${meta.trees.nodePackages} packages); /vrift/ts = typescript 5 + @types/node 20 (${meta.trees.tsPackages} packages) and a 2-file project; /vrift/c = libpython3.11-dev headers + a C extension source + a generated make tree; /vrift/go = Debian umoci (Go) + an OCI layout.`, '');
  L.push('## Stat-family syscalls on /vrift paths', '');
  L.push('Counted with `strace -f -y` (stat, lstat, fstat, newfstatat, statx whose path is under /vrift, or whose descriptor strace decodes to /vrift), one run each, without the shim (`LD_PRELOAD=`) and with it (the image default).', '');
  L.push('"by path" leaves out `fstat(fd)` (fstat, or fstatat/statx with AT_EMPTY_PATH, on a descriptor open on a /vrift file: a descriptor names no path, so no stat shim can answer it, see below) and the shim\'s own statx of the root at init.', '');
  L.push('| workload | all: without | all: with | all: removed | by path: without | by path: with | by path: removed | remaining with the shim, by class | access/open/readlink probes of /vrift, without -> with (of which ENOENT) |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of results) {
    const cls = Object.entries(r.shim.stat).map(([k, v]) => `${k}: ${v}`).join('; ') || '-';
    const byPath = (x) => x.statTotal - (x.stat['fstat(fd)'] ?? 0) - (x.stat['shim init: statx of the root, once per process'] ?? 0);
    L.push(`| ${r.name} | ${r.plain.statTotal} | ${r.shim.statTotal} | ${pct(r.plain.statTotal, r.shim.statTotal)} | ${byPath(r.plain)} | ${byPath(r.shim)} | ${pct(byPath(r.plain), byPath(r.shim))} | ${cls} | ${r.plain.probes.total} (${r.plain.probes.enoent}) -> ${r.shim.probes.total} (${r.shim.probes.enoent}) |`);
  }
  L.push('', '## Wall time', '');
  L.push(`Median of ${meta.runs} runs per mode (tsc: 3) (modes alternated, side by side), measured inside the container around the command (\`date +%s%N\`). Warm: page and dentry caches warm (one unmeasured pair first). Cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` on the host before every run. Ratio = with / without (< 1: faster with the shim). CPU = user + sys time of the command and its children (dash \`times\`, 10 ms ticks), less sensitive than wall time to the other work on the machine. Load average while measured: ${meta.load}.`, '');
  L.push('| workload | warm wall without (ms) | warm wall with (ms) | ratio | warm CPU without / with (ms) | cold wall without (ms) | cold wall with (ms) | ratio | cold CPU without / with (ms) |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) L.push(`| ${r.name} | ${ms(r.warm.plain)} | ${ms(r.warm.shim)} | ${ratio(r.warm.plain, r.warm.shim)} | ${ms(r.warm.cpuPlain)} / ${ms(r.warm.cpuShim)} | ${ms(r.cold.plain)} | ${ms(r.cold.shim)} | ${ratio(r.cold.plain, r.cold.shim)} | ${ms(r.cold.cpuPlain)} / ${ms(r.cold.cpuShim)} |`);
  L.push('', `Whole run: ${meta.seconds.toFixed(0)} s.`, '');
  L.push(fs.readFileSync(path.join(REPO, 'bench/reach-notes.md'), 'utf8'));
  return L.join('\n');
}

// --render: rewrite docs/runtime-reach.md from bench/reach-results.json (after editing the notes).
if (process.argv.includes('--render')) writeDoc(JSON.parse(fs.readFileSync(path.join(REPO, 'bench/reach-results.json'), 'utf8')));
else main();
