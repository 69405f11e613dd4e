/**
 * `vrift verify` with the kernel as the oracle: inside a container of a
 * vrift image (the host's node binary mounted in; bookworm images have its
 * libraries), against a rootfs unpacked by umoci, against that rootfs after
 * deliberate changes, and inside a derived image whose Dockerfile RUN step
 * wrote into /vrift (classic builder).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, promises as fsp, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { BASE_IMAGE, CLI, ROOT, sh, vrift } from '../e2e/helpers';
import { buildFixture, classicBuild, nodeMounts, type BuiltFixture } from './fixture';

jest.setTimeout(300_000);

let fx: BuiltFixture;
let rootfs: string;
const DRIFT_TAG = `vrift-verify/drift:${process.pid}`;

interface Report {
  outcome: string;
  entries: number;
  checked: { lstat: number; stat: number };
  identityFields: string[];
  mismatches: { path: string; call: string; field: string; blob: string; kernel: string }[];
  missing: string[];
  extra: string[];
  shimBypassed: boolean;
}

function run(args: string[], cmd: string[], tag = fx.tag): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('docker', ['run', '--rm', '--network', 'none', ...nodeMounts(ROOT), ...args, tag, ...cmd], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  fx = buildFixture('verify');
  const layout = path.join(fx.work, 'oci');
  sh('skopeo', ['copy', `docker-archive:${fx.archive}`, `oci:${layout}:x`]);
  sh('umoci', ['unpack', '--image', `${layout}:x`, path.join(fx.work, 'bundle')]);
  rootfs = path.join(fx.work, 'bundle', 'rootfs');
});

afterAll(async () => {
  spawnSync('docker', ['rmi', '-f', DRIFT_TAG], { stdio: 'ignore' });
  if (fx) {
    spawnSync('docker', ['rmi', '-f', fx.tag], { stdio: 'ignore' });
    await fsp.rm(fx.work, { recursive: true, force: true });
  }
});

test('in a container with the shim active: every entry matches the kernel (exit 0), compared without the shim', () => {
  // The shim really answers in this container's node processes: synthetic st_ino ("VR" prefix).
  const ino = run([], ['node', '-e', "console.log(require('fs').lstatSync('/vrift/app/pkg/mod.py',{bigint:true}).ino.toString(16))"]);
  expect(ino.stdout.trim()).toMatch(/^5652/);
  const r = run([], ['node', '/opt/vrift/bin/vrift.js', 'verify', '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const rep = JSON.parse(r.stdout) as Report;
  expect(rep.outcome).toBe('ok');
  expect(rep.shimBypassed).toBe(true); // re-executed with LD_PRELOAD emptied
  const s = fx.summary.stats;
  expect(rep.entries).toBe(s.files + s.dirs + s.symlinks + s.casObjects);
  expect(rep.checked.lstat).toBe(rep.entries);
  expect(rep.checked.stat).toBe(3); // alias.py -> mod.py, deeplink -> sub/deep, dangling.py: ENOENT (the shim answers it from the blob)
  expect(rep.identityFields).toEqual(['st_ino', 'st_dev', 'st_atime', 'st_ctime']);
  expect(rep.mismatches).toEqual([]);
  expect(rep.extra).toEqual([]);
  // Without the re-exec the shim would answer lstat from the blob itself: verify refuses to run then.
  const forced = run(['-e', 'VRIFT_VERIFY_NO_SHIM=1'], ['node', '/opt/vrift/bin/vrift.js', 'verify']);
  expect(forced.status).toBe(1);
  expect(forced.stderr).toMatch(/libvrift.so is loaded even with LD_PRELOAD emptied/);
});

test('a container with a mount on part of /vrift (--tmpfs, -v): the shim rejects the blob at start, every answer is the kernel\'s', () => {
  // st_ino of a file the mount leaves alone, whether the mount hid a blob entry, whether a write is refused.
  const js = "const fs=require('fs');let w;try{fs.writeFileSync('/vrift/app/pkg/new.txt','x');w='wrote'}catch(e){w=e.code}" +
    "console.log(fs.lstatSync('/vrift/app/pkg/mod.py',{bigint:true}).ino.toString(16), fs.existsSync('/vrift/app/pkg/sub/__init__.py'), w)";
  const both = ['sh', '-c', `node -e "${js}"; LD_PRELOAD= node -e "${js}"`];
  // Control: no mount, the shim answers (synthetic st_ino) and refuses the write.
  const [shim, kernel] = run([], both).stdout.trim().split('\n');
  expect(shim).toMatch(/^5652\S* true EROFS$/);
  expect(kernel).toMatch(/^(?!5652)\S+ true wrote$/);
  const vol = path.join(fx.work, 'vol');
  mkdirSync(vol, { recursive: true });
  for (const args of [['--tmpfs', '/vrift/app/pkg/sub'], ['-v', `${vol}:/vrift/app/pkg/sub:ro`], ['--tmpfs', '/vrift/app/many']]) {
    const out = run(args, both).stdout.trim().split('\n');
    expect(out).toHaveLength(2);
    expect(out[0]).not.toMatch(/^5652/);
    expect(out[0].split(' ').slice(0, 2)).toEqual(out[1].split(' ').slice(0, 2));
    if (args[1].endsWith('/sub')) expect(out[0]).toMatch(/ false wrote$/); // the entry the mount hid is not answered from the blob
  }
});

test('--root on a rootfs unpacked by umoci: exit 0, table output', () => {
  const r = vrift(['verify', '--root', rootfs]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^verify: OK: every entry matches the kernel$/m);
});

test('--root after changes to the tree: each one reported, exit 3', () => {
  const app = path.join(rootfs, 'vrift', 'app');
  chmodSync(path.join(app, 'pkg', 'tool.sh'), 0o700);
  writeFileSync(path.join(app, 'pkg', 'sub', 'deep', 'big.bin'), Buffer.alloc(200_000, 7)); // same inode, new size and blocks
  unlinkSync(path.join(app, 'pkg', 'alias.py'));
  symlinkSync('sub/copy.py', path.join(app, 'pkg', 'alias.py'));
  rmSync(path.join(app, 'many', 'file-with-a-longish-name-0000.txt'));
  mkdirSync(path.join(app, 'added'));
  writeFileSync(path.join(app, 'added', 'x.txt'), 'x');
  utimesSync(path.join(rootfs, 'vrift'), new Date(0), new Date(1_000_000));
  const r = vrift(['verify', '--root', rootfs, '--json']);
  expect(r.status).toBe(3);
  expect(r.stderr).toMatch(/^vrift: verifying \/vrift: \d+ field mismatches, 1 missing, 2 paths not in the blob \(first: \/vrift\/app\/added\)$/m);
  const rep = JSON.parse(r.stdout) as Report;
  expect(rep.outcome).toBe('mismatch');
  const has = (p: string, field: string, call = 'lstat') => rep.mismatches.some((m) => m.path === p && m.field === field && m.call === call);
  expect(has('/vrift/app/pkg/tool.sh', 'st_mode')).toBe(true);
  expect(has('/vrift/app/pkg/sub/deep/big.bin', 'st_size')).toBe(true);
  expect(has('/vrift/app/pkg/sub/deep/big.bin', 'st_blocks')).toBe(true);
  expect(has('/vrift/app/pkg/alias.py', 'target')).toBe(true);
  expect(has('/vrift/app/pkg/alias.py', 'st_size')).toBe(true); // target length 6 -> 11
  expect(has('/vrift', 'st_mtime')).toBe(true);
  expect(has('/vrift/app', 'st_nlink')).toBe(true); // a new subdirectory
  expect(rep.missing).toEqual(['/vrift/app/many/file-with-a-longish-name-0000.txt']);
  expect(rep.extra).toEqual(['/vrift/app/added', '/vrift/app/added/x.txt']);
  // Nothing outside the documented identity fields is ignored: st_ctime changed on every touched path, yet is not reported.
  expect(rep.mismatches.filter((m) => ['st_ino', 'st_dev', 'st_atime', 'st_ctime'].includes(m.field))).toEqual([]);
});

test('a derived image whose RUN step writes into /vrift under the shim: the build stops at that step with EROFS', () => {
  const ctx = path.join(fx.work, 'refused');
  mkdirSync(ctx);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${fx.tag}\nRUN echo x > /vrift/app/pkg/new.txt\n`);
  expect(() => classicBuild(`${DRIFT_TAG}-refused`, ctx)).toThrow(/\/vrift\/app\/pkg\/new\.txt: Read-only file system/);
  // Control: the same write outside /vrift succeeds in the same image (the refusal is the shim's, not the engine's).
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${fx.tag}\nRUN echo x > /tmp/new.txt && mkdir /vrift-not-domain\n`);
  classicBuild(`${DRIFT_TAG}-refused`, ctx);
  spawnSync('docker', ['rmi', '-f', `${DRIFT_TAG}-refused`], { stdio: 'ignore' });
});

test('a derived image whose RUN step writes into /vrift with LD_PRELOAD= and regenerates the blob: verify exit 0, the shim answers and refuses again', () => {
  const ctx = path.join(fx.work, 'regen');
  mkdirSync(ctx);
  copyFileSync(path.join(ROOT, 'shim', 'build', 'vrift-mkblob'), path.join(ctx, 'vrift-mkblob'));
  // The documented path to success (docs/shim-safety.md section 6): the write and the new blob in one step;
  // --truncate-mtime-ns: the classic builder's layer commit keeps whole seconds only.
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${fx.tag}\nCOPY vrift-mkblob /usr/local/bin/\n` +
    "RUN LD_PRELOAD= sh -c 'echo x > /vrift/app/pkg/new.txt && vrift-mkblob --identity synthetic --dev-runtime --check-root-mtime --truncate-mtime-ns'\n");
  const tag = `${DRIFT_TAG}-regen`;
  classicBuild(tag, ctx);
  try {
    const r = run([], ['node', '/opt/vrift/bin/vrift.js', 'verify'], tag);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // The new file is answered from the new blob (present), and a write is refused again.
    const w = run([], ['sh', '-c', 'test -e /vrift/app/pkg/new.txt && echo present; echo y > /vrift/app/pkg/new2.txt'], tag);
    expect(w.stdout.trim()).toBe('present');
    expect(w.stderr).toMatch(/\/vrift\/app\/pkg\/new2\.txt: Read-only file system/);
  } finally {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
  }
});

test('a derived image whose RUN step wrote into /vrift with LD_PRELOAD= : verify names the path (exit 3); the shim passes everything through there', () => {
  const ctx = path.join(fx.work, 'drift');
  mkdirSync(ctx);
  // The documented way to write into /vrift in a derived image: the shim off for that command.
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${fx.tag}\nRUN LD_PRELOAD= sh -c 'echo x > /vrift/app/pkg/new.txt'\n`);
  classicBuild(DRIFT_TAG, ctx);
  const r = run([], ['node', '/opt/vrift/bin/vrift.js', 'verify'], DRIFT_TAG);
  expect(r.status).toBe(3);
  expect(r.stdout).toMatch(/^ {2}\/vrift\/app\/pkg\/new\.txt$/m);
  expect(r.stderr).toMatch(/first: \/vrift\/app\/pkg\/new\.txt\)$/m);
  // The commit of the RUN layer drops /vrift's mtime nanoseconds (the tree fingerprint):
  // the shim rejects the blob, so stat results are the kernel's, st_ino included.
  const dump = `
const fs = require('fs'); const out = {};
const walk = (p) => { for (const [n, f] of [['l', fs.lstatSync], ['s', fs.statSync]]) { try { const s = f(p, { bigint: true }); out[n + p] = [s.mode, s.ino, s.nlink, s.size, s.blocks, s.mtimeNs, s.uid].join(' '); } catch (e) { out[n + p] = e.code; } }
  let st; try { st = fs.lstatSync(p); } catch { return; } if (st.isDirectory()) for (const c of fs.readdirSync(p)) walk(p + '/' + c); };
walk('/vrift'); console.log(JSON.stringify(out));`;
  const withShim = JSON.parse(run([], ['node', '-e', dump], DRIFT_TAG).stdout) as Record<string, string>;
  const without = JSON.parse(run(['-e', 'LD_PRELOAD='], ['node', '-e', dump], DRIFT_TAG).stdout) as Record<string, string>;
  expect(withShim['l/vrift/app/pkg/new.txt']).toMatch(/^\d+ /); // present, not a stale ENOENT from the blob
  expect(Object.keys(withShim).length).toBeGreaterThan(fx.summary.stats.files);
  expect(withShim).toEqual(without);
});

describe('stat through symlinks as the shim answers it, and a caller without search permission', () => {
  // a/bc -> b/c; dd1 -> a/bc/../.. (POSIX: a/bc is followed before "..", so dd1 is a, not the root);
  // d700 (0700) holds `in`, via700 -> d700/in; dd2 -> a/b/c/../.. (".." over searchable directories: b... a);
  // gone -> a/nothing (ENOENT from the blob), notdir -> d700/../f/ (a file used as a directory).
  let work: string;
  let layout: string;
  const tag = `vrift-verify/symdot:${process.pid}`;
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), 'vrift-verify-symdot-'));
    chmodSync(work, 0o755);
    const t = path.join(work, 'tree');
    mkdirSync(path.join(t, 'a', 'b', 'c'), { recursive: true });
    mkdirSync(path.join(t, 'd700'));
    writeFileSync(path.join(t, 'd700', 'in'), 'x');
    writeFileSync(path.join(t, 'f'), 'f');
    chmodSync(path.join(t, 'd700'), 0o700);
    symlinkSync('b/c', path.join(t, 'a', 'bc'));
    symlinkSync('a/bc/../..', path.join(t, 'dd1'));
    symlinkSync('a/b/c/../..', path.join(t, 'dd2'));
    symlinkSync('d700/in', path.join(t, 'via700'));
    symlinkSync('a/nothing', path.join(t, 'gone'));
    symlinkSync('f/', path.join(t, 'notdir'));
    const r = vrift(['build', '--base', BASE_IMAGE, '--add', `${t}:/vrift/m`, '--tag', tag, '--load', '--output', path.join(work, 'image.tar'), '--cache-dir', path.join(work, 'cache'), '--quiet']);
    if (r.status !== 0) throw new Error(`vrift build failed (${r.status}): ${r.stderr}`);
    layout = path.join(work, 'oci');
    sh('skopeo', ['copy', `docker-archive:${path.join(work, 'image.tar')}`, `oci:${layout}:x`]);
  });
  afterAll(async () => {
    spawnSync('docker', ['rmi', '-f', tag], { stdio: 'ignore' });
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  test('as root in a container: exit 0; stat compared where the shim answers (a/bc, dd2, gone, notdir), passed through for dd1 and via700', () => {
    const r = run([], ['node', '/opt/vrift/bin/vrift.js', 'verify', '--json'], tag);
    expect(r.stderr).toBe('');
    const rep = JSON.parse(r.stdout) as Report & { passedThrough: string[] };
    expect(rep.mismatches).toEqual([]);
    expect(r.status).toBe(0);
    expect(rep.checked.stat).toBe(4);
    expect(rep.passedThrough).toEqual([]);
    // The oracle for dd1: the kernel's stat of it is a's (same mode, nlink, mtime), not /vrift/m's.
    const js = "const fs=require('fs');const k=(p)=>{const s=fs.statSync(p,{bigint:true});return [s.mode,s.nlink,s.mtimeNs].join(' ')};console.log(k('/vrift/m/dd1')===k('/vrift/m/a'), k('/vrift/m/dd1')===k('/vrift/m'))";
    expect(run(['-e', 'LD_PRELOAD='], ['node', '-e', js], tag).stdout.trim()).toBe('true false');
  });

  test('as uid 65534 in a container: exit 0; d700/in (EACCES, not reachable) is passed through, not a mismatch', () => {
    const r = run(['--user', '65534'], ['node', '/opt/vrift/bin/vrift.js', 'verify', '--json'], tag);
    expect(r.stderr).toBe('');
    const rep = JSON.parse(r.stdout) as Report & { passedThrough: string[] };
    expect(rep.mismatches).toEqual([]);
    expect(r.status).toBe(0);
    expect(rep.passedThrough).toEqual(['/vrift/m/d700/in']);
    expect(rep.checked.lstat).toBe(rep.entries - 1);
    // Control: this caller really gets EACCES there (the kernel, shim off).
    const js = "for (const p of ['/vrift/m/d700/in','/vrift/m/via700']) try{require('fs').statSync(p)}catch(e){console.log(e.code)}";
    expect(run(['--user', '65534', '-e', 'LD_PRELOAD='], ['node', '-e', js], tag).stdout.trim()).toBe('EACCES\nEACCES');
  });

  test('--root as uid 65534 on a rootfs where a reachable directory became 0700: the kernel\'s EACCES reported as such, exit 3', () => {
    const bundle = path.join(work, 'bundle');
    sh('umoci', ['unpack', '--image', `${layout}:x`, bundle]);
    chmodSync(bundle, 0o755);
    const rootfs2 = path.join(bundle, 'rootfs');
    chmodSync(path.join(rootfs2, 'vrift', 'm', 'a', 'b'), 0o700); // the blob says 0755 (reachable)
    const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, CLI, 'verify', '--root', rootfs2, '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(3);
    const rep = JSON.parse(r.stdout) as Report;
    const got = rep.mismatches.filter((m) => m.field === 'errno').map((m) => `${m.path} ${m.call} ${m.blob} ${m.kernel}`);
    expect(got).toEqual([
      '/vrift/m/a/b/c lstat 0 EACCES',
      '/vrift/m/a/bc stat 0 (/vrift/m/a/b/c) EACCES',
      '/vrift/m/dd2 stat 0 (/vrift/m/a) EACCES',
    ]);
    expect(rep.mismatches.some((m) => m.path === '/vrift/m/a/b' && m.field === 'st_mode')).toBe(true);
  });
});
