/**
 * The shim never crashes where the kernel answers: stat-family calls on a
 * domain path with a NULL buffer get the kernel's EFAULT (the hot path
 * passes NULL buffers through), and a path of thousands of missing
 * components is answered like the kernel's (one walk down, not a rehash
 * per ancestor).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const SHIM = path.join(ROOT, 'shim', 'build', 'libvrift.so');

let tmp: string;
let dom: string;
let blob: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'vrift-badptr-'));
  chmodSync(tmp, 0o755);
  dom = path.join(tmp, 'dom');
  mkdirSync(path.join(dom, 'd'), { recursive: true });
  writeFileSync(path.join(dom, 'd', 'f'), 'x');
  blob = path.join(tmp, 'blob');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'vrift.js'), 'blob', dom, '-o', blob], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Python's ctypes calls libc's exported stat/lstat/fstatat/statx directly (glibc >= 2.33 names).
const PY = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(512)
out = []
for p in sys.argv[1:]:
    b = p.encode()
    for name, call in [
        ('stat', lambda: libc.stat(b, None)),
        ('lstat', lambda: libc.lstat(b, None)),
        ('fstatat', lambda: libc.fstatat(-100, b, None, 0)),
        ('statx', lambda: libc.statx(-100, b, 0, 0x7ff, None)),
        ('stat-buf', lambda: libc.stat(b, buf)),
    ]:
        ctypes.set_errno(0)
        rc = call()
        out.append('%s %s rc=%d errno=%s' % (name, p[-20:], rc, os.strerror(ctypes.get_errno()) if rc else '-'))
print('\n'.join(out))
`;

function run(withShim: boolean, paths: string[]): { status: number | null; stdout: string; stderr: string } {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  if (withShim) Object.assign(env, { LD_PRELOAD: SHIM, VRIFT_BLOB: blob });
  const r = spawnSync('python3', ['-c', PY, ...paths], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('NULL buffers on domain paths: EFAULT as from the kernel, no crash', () => {
  const paths = [path.join(dom, 'd', 'f'), path.join(dom, 'd'), path.join(dom, 'missing'), path.join(dom, 'd', 'f', 'x')];
  const kernel = run(false, paths);
  const shim = run(true, paths);
  expect(kernel.status).toBe(0);
  expect(kernel.stdout).toMatch(/^stat .*\/d\/f rc=-1 errno=Bad address$/m);
  expect(shim.status).toBe(0);
  expect(shim.stdout).toBe(kernel.stdout);
});

test('2,000 missing components under the root: ENOENT / ENOTDIR like the kernel', () => {
  const tail = Array.from({ length: 2000 }, () => 'm').join('/');
  const paths = [path.join(dom, tail), path.join(dom, 'd', 'f', tail), path.join(dom, 'd', tail)];
  const kernel = run(false, paths);
  const shim = run(true, paths);
  expect(kernel.stdout).toMatch(/stat-buf .* rc=-1 errno=No such file or directory/);
  expect(kernel.stdout).toMatch(/stat-buf .* rc=-1 errno=Not a directory/);
  expect(shim.stdout).toBe(kernel.stdout);
});

test('pointers into the first page (NULL plus an offset) as path or buffer: EFAULT as from the kernel, no crash', () => {
  // The shim reads neither: psfs_ptr_ok passes the call through and the kernel says EFAULT.
  // Before that check, path (char *)8 crashed every interposed entry point under a loaded blob.
  const script = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
bad = ctypes.c_void_p(8)
good = sys.argv[1].encode()
buf = ctypes.create_string_buffer(512)
calls = [
    ('stat', lambda: libc.stat(bad, buf)), ('lstat', lambda: libc.lstat(bad, buf)),
    ('fstatat', lambda: libc.fstatat(-100, bad, buf, 0)), ('statx', lambda: libc.statx(-100, bad, 0, 0x7ff, buf)),
    ('access', lambda: libc.access(bad, 0)), ('faccessat', lambda: libc.faccessat(-100, bad, 0, 0)),
    ('open', lambda: libc.open(bad, 0)), ('openat', lambda: libc.openat(-100, bad, 0)),
    ('unlink', lambda: libc.unlink(bad)), ('mkdir', lambda: libc.mkdir(bad, 0o755)),
    ('rename', lambda: libc.rename(bad, bad)), ('chmod', lambda: libc.chmod(bad, 0o644)),
    ('stat-buf8', lambda: libc.stat(good, ctypes.c_void_p(8))), ('statx-buf8', lambda: libc.statx(-100, good, 0, 0x7ff, ctypes.c_void_p(8))),
]
for name, call in calls:
    ctypes.set_errno(0)
    rc = call()
    print(name, rc, os.strerror(ctypes.get_errno()) if rc else '-')
`;
  const go = (withShim: boolean) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
    if (withShim) Object.assign(env, { LD_PRELOAD: SHIM, VRIFT_BLOB: blob });
    return spawnSync('python3', ['-c', script, path.join(dom, 'd', 'f')], { env, encoding: 'utf8', timeout: 60_000 });
  };
  const kernel = go(false);
  const shim = go(true);
  expect(kernel.status).toBe(0);
  expect(kernel.stdout.trim().split('\n')).toHaveLength(14);
  expect(kernel.stdout).toMatch(/^stat-buf8 -1 Bad address$/m);
  expect(shim.signal).toBeNull();
  expect(shim.stdout).toBe(kernel.stdout);
});
