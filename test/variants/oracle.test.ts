/**
 * The differential oracle (shim/tests/oracle.c) for every shim variant, in
 * the environment it is built for (issue 7, requirement 4). Each run compares
 * every field and errno of every entry point the oracle calls, kernel vs.
 * shim, in the same environment; only the documented statx fields
 * (helpers.normalizeLine) are masked. The host run (bookworm, glibc 2.36) is
 * test/shim/differential.test.ts.
 *
 * - bullseye (glibc 2.31): container vrift-test/bullseye (scripts/setup-machine.sh),
 *   the amd64-glibc shim built on bookworm, and the oracle built against
 *   glibc 2.31 headers in the bullseye-gcc rootfs (scripts/variants-setup.sh),
 *   so it calls what bullseye programs call: __xstat*, __fxstatat*, statx, syscall.
 * - musl (Debian musl 1.2.3): container vrift-test/musl (a rootfs with only
 *   /lib/ld-musl-x86_64.so.1), amd64-musl shim and oracle.
 * - arm64 glibc and arm64 musl: qemu-aarch64-static -L <sysroot> on the host.
 *
 * The test tree, blobs, oracle and shim are bind-mounted read-only at the same
 * paths; containers run with --network none. A canary blob (a wrong st_size)
 * proves the shim really answers in each environment.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as F from '../../src/blob/format';
import {
  adversarial,
  blobFor,
  BUILD,
  buildShim,
  countCalls,
  diffOutputs,
  entryOffset,
  makeHostTree,
  oracleInput,
  writeBlob,
  type HostFixture,
} from '../shim/helpers';

const CACHE = process.env.VRIFT_CACHE ?? '/var/cache/vrift';
const BULLSEYE_GCC = path.join(CACHE, 'rootfs-bullseye-gcc');
const MUSL_ARM64 = process.env.MUSL_ARM64_ROOT ?? path.join(CACHE, 'musl-arm64');
const BULLSEYE_ORACLE_DIR = path.join(BUILD, 'bullseye');

let fx: HostFixture;
let paths: (Buffer | null)[];
let input: Buffer;
let blob: string;
let canaryBlob: string;

/** Run the oracle in one environment; `preload` with a blob path runs it under the shim. */
type Runner = (input: Buffer, blob?: string) => string[];

function check(r: ReturnType<typeof spawnSync>, what: string): string[] {
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status} signal ${r.signal}: ${r.stderr?.toString()}`);
  return r.stdout.toString('latin1').split('\n');
}

const containers: string[] = [];

/**
 * One container per environment (docker run -d --network none, the fixture
 * and the programs read-only at the same paths), kept alive by an oracle
 * waiting on its open stdin; every run is a `docker exec` in it, so kernel
 * and shim runs see the same container filesystem (its "/" and "/tmp").
 */
function docker(image: string, oracle: string, shim: string): Runner {
  const cid = execFileSync('docker', [
    'run', '-d', '-i', '--rm', '--network', 'none',
    '-v', `${fx.tmp}:${fx.tmp}:ro`, '-v', `${path.dirname(oracle)}:/o:ro`, '-v', `${path.dirname(shim)}:/s:ro`,
    image, `/o/${path.basename(oracle)}`,
  ], { encoding: 'utf8' }).trim();
  containers.push(cid);
  return (inp, b) => {
    const args = ['exec', '-i'];
    if (b) args.push('-e', `LD_PRELOAD=/s/${path.basename(shim)}`, '-e', `VRIFT_BLOB=${b}`);
    args.push(cid, `/o/${path.basename(oracle)}`);
    return check(spawnSync('docker', args, { input: inp, maxBuffer: 1 << 30 }), `docker exec (${image})`);
  };
}

/** qemu-aarch64-static -L sysroot oracle, LD_PRELOAD passed to the guest. */
function qemu(sysroot: string, oracle: string, shim: string): Runner {
  return (inp, b) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
    if (b) Object.assign(env, { LD_PRELOAD: shim, VRIFT_BLOB: b });
    return check(spawnSync('qemu-aarch64-static', ['-L', sysroot, oracle], { input: inp, env, maxBuffer: 1 << 30 }), `qemu ${oracle}`);
  };
}

/** The oracle built against bullseye's glibc 2.31 headers (chroot into the bullseye-gcc rootfs). */
function bullseyeOracle(): string {
  if (!fs.existsSync(path.join(BULLSEYE_GCC, 'usr/bin/gcc'))) {
    throw new Error(`${BULLSEYE_GCC} has no gcc: run scripts/variants-setup.sh bullseye-gcc`);
  }
  const work = path.join(BULLSEYE_GCC, 'tmp', `vrift-oracle-${process.pid}`);
  fs.mkdirSync(work, { recursive: true });
  try {
    fs.copyFileSync(path.join(BUILD, '..', 'tests', 'oracle.c'), path.join(work, 'oracle.c'));
    const w = `/tmp/${path.basename(work)}`;
    execFileSync('chroot', [BULLSEYE_GCC, 'gcc', '-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', `${w}/oracle`, `${w}/oracle.c`], { stdio: 'pipe' });
    fs.mkdirSync(BULLSEYE_ORACLE_DIR, { recursive: true });
    const out = path.join(BULLSEYE_ORACLE_DIR, 'oracle');
    fs.copyFileSync(path.join(work, 'oracle'), `${out}.tmp${process.pid}`);
    fs.chmodSync(`${out}.tmp${process.pid}`, 0o755);
    fs.renameSync(`${out}.tmp${process.pid}`, out);
    return out;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function imageExists(ref: string): boolean {
  return spawnSync('docker', ['image', 'inspect', ref], { stdio: 'ignore' }).status === 0;
}

beforeAll(async () => {
  buildShim();
  fx = await makeHostTree();
  paths = [...fx.paths, ...adversarial(fx)];
  input = oracleInput(paths);
  blob = writeBlob(fx, 'variants.blob', blobFor(fx));
  const c = blobFor(fx);
  c.writeBigUInt64LE(999_999n, entryOffset(c, Buffer.concat([fx.root, Buffer.from('/small')])) + F.ENTRY.size);
  canaryBlob = writeBlob(fx, 'variants-canary.blob', c);
}, 60_000);

afterAll(() => {
  for (const c of containers) spawnSync('docker', ['rm', '-f', c], { stdio: 'ignore' });
  if (fx) {
    fs.chmodSync(`${fx.tmp}/dom/locked`, 0o755);
    fs.rmSync(fx.tmp, { recursive: true, force: true });
  }
});

interface Env {
  name: string;
  runner: () => Runner;
  /** Calls the oracle makes per path there (proves which entry points ran). */
  expectCalls: RegExp[];
}

const ENVS: Env[] = [
  {
    name: 'bullseye container (glibc 2.31), amd64-glibc shim, oracle built against glibc 2.31',
    runner: () => {
      if (!imageExists('vrift-test/bullseye:latest')) throw new Error('image vrift-test/bullseye:latest missing: run scripts/setup-machine.sh images');
      return docker('vrift-test/bullseye:latest', bullseyeOracle(), path.join(BUILD, 'amd64-glibc', 'libvrift.so'));
    },
    expectCalls: [/^__xstat64 rc=/m, /^__fxstatat rc=/m, /^statx rc=/m, /^syscall\(statx\) rc=/m, /^syscall\(stat\) rc=/m],
  },
  {
    name: 'musl rootfs container (Debian musl 1.2.3), amd64-musl shim and oracle',
    runner: () => {
      if (!imageExists('vrift-test/musl:latest')) throw new Error('image vrift-test/musl:latest missing: run scripts/variants-setup.sh musl-image');
      return docker('vrift-test/musl:latest', path.join(BUILD, 'amd64-musl', 'oracle'), path.join(BUILD, 'amd64-musl', 'libvrift.so'));
    },
    expectCalls: [/^stat rc=/m, /^fstatat:NOFOLLOW rc=/m, /^syscall\(statx\):DONT_SYNC rc=/m, /^syscall\(newfstatat\) rc=/m],
  },
  {
    name: 'qemu-aarch64-static, arm64-glibc shim and oracle (bookworm glibc 2.36 for arm64)',
    runner: () => qemu('/usr/aarch64-linux-gnu', path.join(BUILD, 'arm64-glibc', 'oracle'), path.join(BUILD, 'arm64-glibc', 'libvrift.so')),
    expectCalls: [/^stat rc=/m, /^__xstat64 rc=/m, /^__fxstatat64 rc=/m, /^statx rc=/m, /^syscall\(statx\) rc=/m],
  },
  {
    name: 'qemu-aarch64-static, arm64-musl shim and oracle (Debian musl 1.2.3 for arm64)',
    runner: () => {
      if (!fs.existsSync(path.join(MUSL_ARM64, 'lib/ld-musl-aarch64.so.1'))) throw new Error(`${MUSL_ARM64} missing: run scripts/variants-setup.sh musl-arm64`);
      return qemu(MUSL_ARM64, path.join(BUILD, 'arm64-musl', 'oracle'), path.join(BUILD, 'arm64-musl', 'libvrift.so'));
    },
    expectCalls: [/^stat rc=/m, /^fstatat64 rc=/m, /^syscall\(statx\) rc=/m],
  },
];

describe.each(ENVS)('$name', (env) => {
  let run: Runner;
  beforeAll(() => {
    run = env.runner();
  }, 60_000);

  test('canary: the shim answers there (a wrong st_size in the blob is visible)', () => {
    const p = [Buffer.concat([fx.root, Buffer.from('/small')])];
    const inp = oracleInput(p);
    const k = run(inp);
    const s = run(inp, canaryBlob);
    const d = diffOutputs(p, k, s, false, 1000);
    expect(d.length).toBeGreaterThan(3);
    expect(d.every((l) => l.includes('size=999999'))).toBe(true);
  }, 60_000);

  test('every entry point, every field and errno equal the kernel (except documented statx fields)', () => {
    const kernel = run(input);
    const all = kernel.join('\n');
    for (const re of env.expectCalls) expect(all).toMatch(re);
    for (const e of ['err=ENOENT', 'err=ENOTDIR', 'err=ELOOP', 'err=ENAMETOOLONG']) expect(all).toContain(e);
    const shim = run(input, blob);
    expect(diffOutputs(paths, kernel, shim, false)).toEqual([]);
    console.log(`${env.name}: ${paths.length} paths, ${countCalls(kernel)} calls compared`);
  }, 120_000);
});
