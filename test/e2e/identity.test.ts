/**
 * Identity policy, end to end (issue 2, item 7): inside an image built by
 * `vrift build`, the shim reports synthetic st_ino and ctime = atime = mtime
 * (docs/psfs-format.md, "Identity policy"). Real tools that walk, copy and
 * compare files must print exactly what they print with the shim switched
 * off (LD_PRELOAD emptied): find, find -L, du -a, ls -laR, cp -a, tar -c |
 * tar -tv, rm -r of a copy, Python os.walk / shutil.copytree /
 * os.path.samefile, and Node fs.realpathSync through symlinks; and a
 * `cp -a` copy outside /vrift stays another file (same tags, other inode).
 *
 * Node is the host's binary, bind-mounted with its two C++ runtime
 * libraries (the base image is Debian minbase + python3; same glibc).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BASE_IMAGE, imageExists, requireEnvironment, vrift } from './helpers';

jest.setTimeout(600_000);

const TAG = `vrift-e2e/identity:${process.pid}`;

/** The tools, each printing to stdout; one shell script per run. */
const SCRIPT = String.raw`
set -u
cd /
echo '== find';    find /vrift/t
echo '== find -L'; find -L /vrift/t
echo '== du -a';   du -a /vrift/t
echo '== du -aL';  du -aL /vrift/t
echo '== ls -laR'; ls -laR --time-style=full-iso /vrift/t
echo '== cp -a';   cp -a /vrift/t /tmp/copy && ls -laR --time-style=full-iso /tmp/copy | grep -v ' \.\.$'
echo '== hardlinks in the copy'; find /tmp/copy -type f -printf '%n %p\n' | sort
echo '== copies are other files (cp -a keeps mtime nanoseconds, mode, owner, link counts)'
cp -a /vrift/t /tmp/copy2
python3 -c "import os; print(os.path.samefile('/vrift/t/pkg/a.py', '/tmp/copy2/pkg/a.py'), os.path.samefile('/vrift/t/pkg/sub', '/tmp/copy2/pkg/sub'))"
du -s /vrift/t/pkg/sub /tmp/copy2/pkg/sub | awk '{print $2}'
cp -a /vrift/t/pkg/sub/. /tmp/copy2/pkg/sub/ && echo cp into the copy ok
find /tmp/copy2 -samefile /vrift/t/pkg/a.py
rm -r /tmp/copy2
echo '== tar';     tar -C /vrift -cf - t | tar -tvf -
echo '== rm -r';   rm -r /tmp/copy && echo removed
python3 - <<'PY'
import os, shutil
print('== os.walk')
for root, dirs, files in os.walk('/vrift/t'):
    print(root, sorted(dirs), sorted(files))
print('== os.walk followlinks')
for root, dirs, files in os.walk('/vrift/t', followlinks=True):
    print(root, sorted(dirs), sorted(files))
print('== shutil.copytree')
shutil.copytree('/vrift/t', '/tmp/c2', symlinks=True)
for root, dirs, files in os.walk('/tmp/c2'):
    for n in sorted(dirs + files):
        s = os.lstat(os.path.join(root, n))
        print(os.path.join(root, n), oct(s.st_mode), s.st_size, s.st_mtime_ns)
shutil.rmtree('/tmp/c2')
print('== samefile')
P = '/vrift/t/pkg/'
for a, b in [('a.py', 'b.py'), ('a.py', 'link-to-a'), ('a.py', 'sub/up'), ('a.py', 'sub/c.txt'), ('sub', 'dirlink'), ('sub/c.txt', 'dirlink/c.txt')]:
    print(a, b, os.path.samefile(P + a, P + b))
PY
echo '== node realpathSync'
LD_LIBRARY_PATH=/opt/node/lib /opt/node/node -e '
const fs = require("fs");
for (const p of ["/vrift/t/pkg/link-to-a", "/vrift/t/pkg/dirlink/c.txt", "/vrift/t/pkg/sub/up", "/vrift/t/pkg/dirlink/deep/../c.txt", "/vrift/t/pkg/a.py"]) {
  console.log(p, fs.realpathSync(p), fs.realpathSync.native(p));
}
for (const p of ["/vrift/t/pkg/missing", "/vrift/t/pkg/a.py/x"]) {
  try { fs.realpathSync(p); } catch (e) { console.log(p, e.code); }
}'
echo "== exit $?"
`;

function nodeMounts(): string[] {
  const node = realpathSync(process.execPath);
  const libs = ['libstdc++.so.6', 'libgcc_s.so.1'].map((l) => realpathSync(path.join('/lib/x86_64-linux-gnu', l)));
  return [
    '-v', `${node}:/opt/node/node:ro`,
    '-v', `${libs[0]}:/opt/node/lib/libstdc++.so.6:ro`,
    '-v', `${libs[1]}:/opt/node/lib/libgcc_s.so.1:ro`,
  ];
}

function runInImage(shim: boolean, script: string): { status: number | null; stdout: string; stderr: string } {
  const env = shim ? [] : ['-e', 'LD_PRELOAD='];
  const r = spawnSync('docker', ['run', '--rm', '--network', 'none', ...env, ...nodeMounts(), TAG, 'bash', '-c', script], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 300_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('identity policy: real tools print the same with and without the shim', () => {
  let src: string;

  beforeAll(() => {
    requireEnvironment();
    src = mkdtempSync(path.join(os.tmpdir(), 'vrift-identity-'));
    chmodSync(src, 0o755); // mkdtemp's 0700 would make every path below unreachable: passthrough
    const t = (...p: string[]): string => path.join(src, 'pkg', ...p);
    mkdirSync(t('sub', 'deep'), { recursive: true });
    mkdirSync(t('empty'));
    writeFileSync(t('a.py'), 'print("a")\n');
    writeFileSync(t('b.py'), 'print("a")\n'); // same content: one CAS object, hardlinked
    writeFileSync(t('tool.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(t('tool.sh'), 0o755);
    writeFileSync(t('sub', 'c.txt'), 'c'.repeat(5000));
    writeFileSync(t('sub', 'deep', 'd.txt'), '');
    writeFileSync(t('big.bin'), Buffer.alloc(70_000, 7));
    linkSync(t('big.bin'), t('big-hardlink.bin'));
    symlinkSync('a.py', t('link-to-a'));
    symlinkSync('sub', t('dirlink'));
    symlinkSync('../a.py', t('sub', 'up'));
    symlinkSync('missing', t('dangling'));
    // More than one 4 KiB block of entries: the builder flags it PSFS_E_UNCERTAIN
    // (its size depends on the filesystem), so stat asks the kernel.
    mkdirSync(t('bigdir'));
    for (let i = 0; i < 200; i++) writeFileSync(t('bigdir', `module-with-a-long-name-${String(i).padStart(4, '0')}.py`), '');
    const when = new Date('2024-05-01T12:00:00Z');
    for (const p of [t('a.py'), t('b.py'), t('sub', 'c.txt')]) utimesSync(p, when, when);
    const r = vrift(['build', '--base', `docker-daemon:${BASE_IMAGE}`, '--add', `${src}:/vrift/t`, '--tag', TAG, '--load', '--quiet']);
    if (r.status !== 0) throw new Error(`vrift build failed: ${r.stderr}`);
  });

  afterAll(() => {
    if (imageExists(TAG)) execFileSync('docker', ['rmi', '-f', TAG], { stdio: 'ignore' });
    if (src) rmSync(src, { recursive: true, force: true });
  });

  test('the shim is active in the image (synthetic st_ino answered from the blob)', () => {
    const py = `python3 -c "import os; s = os.stat('/vrift/t/pkg/a.py'); print(s.st_ino, s.st_ctime_ns == s.st_mtime_ns)"`;
    const withShim = runInImage(true, py).stdout.trim().split(' ');
    const without = runInImage(false, py).stdout.trim().split(' ');
    expect(withShim[0]).not.toBe(without[0]);
    expect(BigInt(withShim[0])).toBeGreaterThanOrEqual(0x5652n << 48n);
    expect(withShim[1]).toBe('True');
  });

  test('stat(path), fstat(open(path)) and dirfd-relative fstatat agree on identity (identity tags)', () => {
    const py = String.raw`python3 -c "
import os
for p in ['/vrift/t/pkg/a.py', '/vrift/t/pkg/sub', '/vrift/t/pkg/big-hardlink.bin']:
    s = os.stat(p)
    fd = os.open(p, os.O_RDONLY)
    f = os.fstat(fd)
    os.close(fd)
    d = os.open(os.path.dirname(p), os.O_RDONLY)
    r = os.stat(os.path.basename(p), dir_fd=d)
    os.close(d)
    print(p, s.st_ino == f.st_ino == r.st_ino, s.st_dev == f.st_dev == r.st_dev, s.st_ctime_ns == f.st_ctime_ns == r.st_ctime_ns, s.st_ino >= 0x5652 << 48)
"`;
    const out = runInImage(true, py);
    expect(out.stderr).toBe('');
    expect(out.stdout.trim().split('\n')).toEqual([
      '/vrift/t/pkg/a.py True True True True',
      '/vrift/t/pkg/sub True True True True',
      '/vrift/t/pkg/big-hardlink.bin True True True True',
    ]);
  });

  test('a large directory (PSFS_E_UNCERTAIN, passed through) costs one stat syscall per call, as without the shim, and has the blob identity from every entry point', () => {
    // Before the fix each stat of it cost two: the call, then a raw lstat confirming
    // the kernel's answer was the domain inode (node_modules in a Node tree); and
    // `stat -c %i` (statx asking for STATX_INO alone) printed the kernel's inode.
    const py = [
      'import os',
      "p = '/vrift/t/pkg/bigdir'",
      'for _ in range(20): os.stat(p)',
      'fd = os.open(p, os.O_RDONLY)',
      'print(os.stat(p).st_ino == os.lstat(p).st_ino == os.fstat(fd).st_ino, os.stat(p).st_ino)',
    ].join('\n');
    const script = `strace -f -qq -e trace=%%stat -o /tmp/s python3 -c "${py}" && grep -c '"/vrift/t/pkg/bigdir"' /tmp/s; stat -c %i /vrift/t/pkg/bigdir`;
    const withShim = runInImage(true, script);
    const without = runInImage(false, script);
    expect([withShim.status, withShim.stderr]).toEqual([0, '']);
    expect([without.status, without.stderr]).toEqual([0, '']);
    const [py1, countWith, statInoWith] = withShim.stdout.trim().split('\n');
    const [py0, countWithout] = without.stdout.trim().split('\n');
    const [same, ino] = py1.split(' ');
    expect([same, py0.split(' ')[0]]).toEqual(['True', 'True']);
    expect(BigInt(ino) >> 48n).toBe(0x5652n); // synthetic (SYNTHETIC_INO_BASE)
    expect(statInoWith).toBe(ino);
    // 22 path calls either way; the shim adds only fstat's one confirming lstat.
    expect(Number(countWithout)).toBeGreaterThanOrEqual(22);
    expect(Number(countWith)).toBe(Number(countWithout) + 1);
  });

  test('find, du, ls, cp -a, tar, rm -r, os.walk, copytree, samefile, realpathSync: identical output', () => {
    const withShim = runInImage(true, SCRIPT);
    const without = runInImage(false, SCRIPT);
    expect(without.status).toBe(0);
    expect(without.stderr).toMatch(/^du: cannot access '\/vrift\/t\/pkg\/dangling'.*\n$/);
    expect(without.stdout).toContain('== exit 0');
    expect(without.stdout).toContain('a.py b.py True');
    expect(without.stdout).toContain('/vrift/t/pkg/link-to-a /vrift/t/pkg/a.py /vrift/t/pkg/a.py');
    // Line by line, so a failure shows the first tool that differs.
    expect(withShim.stdout.split('\n')).toEqual(without.stdout.split('\n'));
    expect(withShim.stderr).toBe(without.stderr);
    expect(withShim.status).toBe(without.status);
  });
});
