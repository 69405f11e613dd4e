/**
 * Stress tests of libvrift.so (issue 4, item 2), bounded for CI. Every run
 * has a hard timeout (a hang fails), every answer is compared with the
 * kernel's, and a canary blob (one entry's st_size changed) proves that the
 * shim really answered in each kind of process.
 *
 * Counts (env, CI defaults in brackets):
 *   STRESS_LAUNCHES   serial launches mixing bash, python3, node, coreutils, C [2000]
 *   STRESS_CONCURRENT launches in rounds of 64 started at once [128]
 *   STRESS_PASSES     stat passes per thread in the storm / spawn tests [100]
 * The full run (docs/shim-safety.md): STRESS_LAUNCHES=10000 STRESS_CONCURRENT=640.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import { BUILD, buildAll, REPO, run, SHIM } from '../hostile/helpers';

const LAUNCHES = Number(process.env.STRESS_LAUNCHES ?? 2000);
const CONCURRENT = Number(process.env.STRESS_CONCURRENT ?? 128);
const PASSES = Number(process.env.STRESS_PASSES ?? 100);
const STORM = path.join(BUILD, 'stress-storm');
const PROBE = path.join(BUILD, 'stress-probe');
const EARLY = path.join(BUILD, 'earlyctor.so');
const CANARY_SIZE = 5;

let tmp: string;
let root: string;
let blob: string;
let canaryBlob: string;
let paths: string[];
let pathsFile: string;
let canary: string;

beforeAll(async () => {
  buildAll('stress');
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-stress-')));
  fs.chmodSync(tmp, 0o755);
  root = path.join(tmp, 'dom');
  const r = (p: string): string => path.join(root, p);
  fs.mkdirSync(r('d/sub/deeper'), { recursive: true });
  fs.mkdirSync(r('empty'));
  fs.writeFileSync(r('small'), 'hello\n');
  fs.writeFileSync(r('d/f'), Buffer.alloc(5000, 1));
  fs.writeFileSync(r('d/sub/deeper/leaf'), 'leaf');
  fs.writeFileSync(r('exe'), '#!/bin/sh\n');
  fs.chmodSync(r('exe'), 0o755);
  fs.writeFileSync(r('canary'), ''); // size 0 on disk; the canary blob says 5
  fs.symlinkSync('small', r('l-file'));
  fs.symlinkSync('d', r('l-dir'));
  fs.symlinkSync(r('d/f'), r('l-abs'));
  fs.symlinkSync('missing', r('l-dangling'));
  fs.symlinkSync('l-loop2', r('l-loop1'));
  fs.symlinkSync('l-loop1', r('l-loop2'));
  fs.symlinkSync('/etc/hostname', r('l-outside'));
  fs.linkSync(r('small'), r('hard'));
  fs.mkdirSync(path.join(tmp, 'blobs'));
  await scanHostTree(root); // first scan updates directory atimes (relatime)
  const tree = await scanHostTree(root);
  blob = path.join(tmp, 'blobs', 'stress.blob');
  fs.writeFileSync(blob, encodeBlob(tree), { mode: 0o644 });
  const lie = tree.entries.map((e: BlobEntry) => (e.path.toString() === r('canary') ? { ...e, size: BigInt(CANARY_SIZE) } : e));
  canaryBlob = path.join(tmp, 'blobs', 'canary.blob');
  fs.writeFileSync(canaryBlob, encodeBlob({ ...tree, entries: lie }), { mode: 0o644 });
  canary = r('canary');
  paths = [
    ...tree.entries.map((e) => e.path.toString()),
    r('missing'), r('d/missing/x'), r('small/x'), r('small/'), r('d/'), r('d/./sub/../f'), r('l-dir/f'), r('l-dir/'),
    `${root}//d//f`, '/etc/hostname', '/nonexistent', '/usr/bin',
  ];
  pathsFile = path.join(tmp, 'paths.txt');
  fs.writeFileSync(pathsFile, paths.join('\n') + '\n');
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Run launches.sh; returns its summary line fields. */
function launches(mode: 'serial' | 'concurrent', count: number, withBlob: string, timeoutMs: number): Record<string, string> {
  const res = run('bash', [path.join(REPO, 'test/stress/launches.sh'), mode, String(count), SHIM, withBlob, PROBE, pathsFile], { timeoutMs });
  expect(res.timedOut).toBe(false);
  const line = res.stdout.split('\n').find((l) => l.startsWith('launches=')) ?? '';
  console.log(`launches.sh ${mode} ${count}: ${res.stdout.trim()}`);
  return Object.fromEntries(line.split(' ').map((kv) => kv.split('=') as [string, string]));
}

test('canary: under the canary blob every kind of process (bash, python3, node, coreutils, C) sees the shim answer', () => {
  const s = launches('serial', 5, canaryBlob, 120_000);
  // Each of the 5 kinds differs from the kernel exactly where the canary lies.
  expect(s).toMatchObject({ launches: '5', mismatches: '5', hangs: '0', crashes: '0' });
});

test(`${LAUNCHES} serial launches with LD_PRELOAD (bash, python3, node, coreutils, C): 0 hangs, 0 crashes, output equal to the kernel's`, () => {
  const s = launches('serial', LAUNCHES, blob, 60_000 + LAUNCHES * 500);
  expect(s).toMatchObject({ launches: String(LAUNCHES), mismatches: '0', hangs: '0', crashes: '0' });
}, 120_000 + LAUNCHES * 500);

test(`${CONCURRENT} launches in rounds of 64 at once: 0 hangs, 0 crashes, output equal to the kernel's`, () => {
  const s = launches('concurrent', CONCURRENT, blob, 60_000 + CONCURRENT * 500);
  expect(s).toMatchObject({ launches: String(CONCURRENT), mismatches: '0', hangs: '0', crashes: '0' });
}, 120_000 + CONCURRENT * 500);

/** Run stress-storm under the canary blob; the canary path is not compared, but must read CANARY_SIZE. */
function storm(args: string[], timeoutMs = 240_000): Record<string, string> {
  const compared = paths.filter((p) => p !== canary);
  const res = run(STORM, [...args, ...compared], { env: { LD_PRELOAD: SHIM, VRIFT_BLOB: canaryBlob, STRESS_CANARY: canary }, timeoutMs });
  console.log(`stress-storm ${args.join(' ')}: ${res.stdout.trim()} ${res.stderr.trim()}`);
  expect({ timedOut: res.timedOut, signal: res.signal, status: res.status }).toEqual({ timedOut: false, signal: null, status: 0 });
  const kv = Object.fromEntries(res.stdout.trim().split(/\s+/).map((t) => t.split('=') as [string, string]));
  expect(kv.canary_size).toBe(String(CANARY_SIZE));
  expect(kv.mismatches).toBe('0');
  expect(kv.child_failures).toBe('0');
  return kv;
}

test('32-thread stat storm while another thread forks (child stats before exec) and execs', () => {
  const kv = storm(['storm', '32', String(PASSES)]);
  expect(Number(kv.forks)).toBeGreaterThanOrEqual(100);
  expect(Number(kv.calls)).toBeGreaterThanOrEqual(32 * PASSES * 3 * (paths.length - 1));
}, 300_000);

test('vfork and posix_spawn from a 16-thread storm', () => {
  const kv = storm(['spawn', '16', String(Math.max(10, PASSES / 4))]);
  expect(Number(kv.forks)).toBe(16 * Math.max(10, PASSES / 4));
}, 300_000);

test('a signal handler stats while the main thread is inside stat', () => {
  const kv = storm(['signal', String(PASSES * 200)]);
  expect(Number(kv.handled)).toBeGreaterThan(100);
  expect(Number(kv.nested)).toBeGreaterThan(0); // the handler really interrupted a stat
}, 300_000);

test('a preloaded library whose constructor stats a domain path, before and after ours: the kernel answer, every time', () => {
  const env = { EARLY_PATH: path.join(root, 'd/f') };
  const kernel = run('/bin/true', [], { env: { ...env, LD_PRELOAD: EARLY } });
  expect(kernel.stderr).toMatch(/^early stat rc=0 size=5000 statx rc=0 size=5000$/m);
  const n = Math.max(20, LAUNCHES / 20);
  let same = 0;
  for (let i = 0; i < n; i++) {
    const order = i % 2 === 0 ? `${EARLY}:${SHIM}` : `${SHIM}:${EARLY}`;
    const r = run('/bin/true', [], { env: { ...env, LD_PRELOAD: order, VRIFT_BLOB: blob }, timeoutMs: 30_000 });
    expect({ timedOut: r.timedOut, signal: r.signal, status: r.status }).toEqual({ timedOut: false, signal: null, status: 0 });
    if (r.stderr === kernel.stderr) same++;
  }
  expect(same).toBe(n);
  // Both paths really ran: with the canary blob, the constructor that runs before ours gets the
  // kernel's size (raw-syscall passthrough), the one that runs after ours the blob's.
  const sizes = [`${EARLY}:${SHIM}`, `${SHIM}:${EARLY}`].map((order) => {
    const r = run('/bin/true', [], { env: { EARLY_PATH: canary, LD_PRELOAD: order, VRIFT_BLOB: canaryBlob }, timeoutMs: 30_000 });
    return /early stat rc=0 size=(\d+) statx rc=0 size=\1$/m.exec(r.stderr)?.[1];
  });
  expect(sizes.sort()).toEqual(['0', String(CANARY_SIZE)]);
});

test('stat from inside malloc (a preloaded malloc that stats a domain path, both orders): no hang, no recursion, kernel answers', () => {
  const MALLOCSTAT = path.join(BUILD, 'stress-mallocstat.so');
  for (const prog of [['/usr/bin/python3', '-S', '-c', 'import os; print(os.stat("/").st_mode)'], [PROBE, path.join(root, 'small')]]) {
    const preInit: number[] = [];
    for (const order of [`${MALLOCSTAT}:${SHIM}`, `${SHIM}:${MALLOCSTAT}`]) {
      // Correct blob: every stat made inside malloc (in mallocstat's constructor and later) is right.
      const ok = run(prog[0], prog.slice(1), { env: { LD_PRELOAD: order, VRIFT_BLOB: blob, MALLOCSTAT_PATH: path.join(root, 'd/f'), MALLOCSTAT_SIZE: '5000' }, timeoutMs: 30_000 });
      expect({ timedOut: ok.timedOut, signal: ok.signal, status: ok.status }).toEqual({ timedOut: false, signal: null, status: 0 });
      const m = /mallocstat calls=(\d+) bad=(\d+)/.exec(ok.stderr);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(0);
      expect(m![2]).toBe('0');
      // Canary blob: the stats inside malloc before our constructor published the state get the
      // kernel's size (raw passthrough), the later ones the blob's. The shim's constructor
      // allocates nothing (glibc), so only the order that runs mallocstat's constructor first
      // has a stat before init: one order 1, the other 0, and the blob answers the rest.
      const c = run(prog[0], prog.slice(1), { env: { LD_PRELOAD: order, VRIFT_BLOB: canaryBlob, MALLOCSTAT_PATH: canary, MALLOCSTAT_SIZE: String(CANARY_SIZE) }, timeoutMs: 30_000 });
      expect(c.status).toBe(0);
      const [, calls, bad] = /mallocstat calls=(\d+) bad=(\d+)/.exec(c.stderr)!.map(Number);
      expect(bad).toBeLessThan(calls);
      preInit.push(bad);
    }
    expect(preInit.sort((a, b) => a - b)).toEqual([0, 1]);
  }
});
