/**
 * scanHostTree against the real kernel: every recorded field equals what
 * lstat(2) reports for the same path after the scan, names are raw bytes,
 * the output is deterministic, bad input fails with a clear VriftError.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import { decodeBlob } from '../../src/blob/reader';
import { VriftError } from '../../src/errors';
import * as F from '../../src/blob/format';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const NS = 1_000_000_000n;

let tmp: string;
let root: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-host-'));
  root = path.join(tmp, 'tree');
  const at = (rel: string): string => path.join(root, rel);
  fs.mkdirSync(at('a/b/c'), { recursive: true });
  fs.mkdirSync(at('empty'));
  fs.writeFileSync(at('a/small'), 'x');
  fs.writeFileSync(at('a/big'), Buffer.alloc(200_000, 1));
  fs.writeFileSync(at('a/sparse'), '');
  fs.truncateSync(at('a/sparse'), 10 * 1024 * 1024); // st_blocks far below st_size
  fs.writeFileSync(at('a/setuid'), '#!/bin/sh\n');
  fs.chmodSync(at('a/setuid'), 0o4755);
  fs.writeFileSync(at('a/none'), '');
  fs.chmodSync(at('a/none'), 0o000);
  fs.linkSync(at('a/small'), at('a/b/hardlink'));
  fs.symlinkSync('../small', at('a/b/rel'));
  fs.symlinkSync('/etc/passwd', at('abs'));
  fs.symlinkSync('dangling', at('dangling'));
  fs.symlinkSync(B('\xff\xfetarget'), Buffer.concat([B(root), B('/raw-target')]));
  fs.writeFileSync(Buffer.concat([B(root), B('/name-\xff\xfe\x80')]), '');
  fs.writeFileSync(at('n'.repeat(255)), '');
  fs.utimesSync(at('a/small'), new Date(-1_000_123), new Date(-5_000_001)); // pre-1970 timestamps
  fs.chmodSync(at('empty'), 0o711);
  // A deep chain (iterative walk, no recursion limit): 300 levels.
  let deep = at('deep');
  for (let i = 0; i < 300; i++) deep = path.join(deep, 'd');
  fs.mkdirSync(deep, { recursive: true });
  if (spawnSync('mkfifo', [at('fifo')]).status !== 0) throw new Error('mkfifo failed');
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('scanHostTree', () => {
  test('records exactly what lstat(2) reports for every path, raw-byte names, sorted', async () => {
    const t = await scanHostTree(root);
    expect(t.roots).toEqual([B(fs.realpathSync(root))]);
    expect(t.flags).toBe(0);
    expect(t.skippedTooLong).toBe(0);
    const paths = t.entries.map((e) => e.path);
    expect(paths).toEqual([...paths].sort(Buffer.compare));
    // Same set as find(1) prints (raw bytes, NUL-separated).
    const found = spawnSync('find', [root, '-print0']).stdout as Buffer;
    const want: Buffer[] = [];
    for (let i = 0; i < found.length; ) {
      const j = found.indexOf(0, i);
      want.push(found.subarray(i, j));
      i = j + 1;
    }
    expect(paths.map((p) => p.toString('latin1')).sort()).toEqual(want.map((p) => p.toString('latin1')).sort());
    expect(paths.some((p) => p.includes(Buffer.from([0xff, 0xfe, 0x80])))).toBe(true);
    expect(t.entries.length).toBe(319); // 300 deep + 19 others

    for (const e of t.entries) {
      const st = fs.lstatSync(e.path, { bigint: true });
      const ns = (x: { sec: bigint; nsec: number }): bigint => x.sec * NS + BigInt(x.nsec);
      expect({ p: e.path.toString('latin1'), mode: e.mode, uid: e.uid, gid: e.gid, nlink: e.nlink, blksize: e.blksize }).toEqual({
        p: e.path.toString('latin1'),
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        nlink: Number(st.nlink),
        blksize: Number(st.blksize),
      });
      expect([e.size, e.blocks, e.ino, e.dev, e.rdev]).toEqual([st.size, st.blocks, st.ino, st.dev, st.rdev]);
      expect([ns(e.atime), ns(e.mtime), ns(e.ctime)]).toEqual([st.atimeNs, st.mtimeNs, st.ctimeNs]);
      for (const t2 of [e.atime, e.mtime, e.ctime]) expect(t2.nsec >= 0 && t2.nsec < 1e9).toBe(true);
      if (st.isSymbolicLink()) expect(e.target).toEqual(fs.readlinkSync(e.path, { encoding: 'buffer' }));
      else expect(e.target).toBeUndefined();
    }
    const byName = (rel: string): (typeof t.entries)[number] => t.entries.find((e) => e.path.equals(Buffer.concat([B(root), B(rel)])))!;
    expect(byName('/raw-target').target).toEqual(B('\xff\xfetarget'));
    expect(byName('/a/b/hardlink').ino).toBe(byName('/a/small').ino);
    expect(byName('/a/small').nlink).toBe(2);
    expect(byName('/a/small').mtime).toEqual({ sec: -5001n, nsec: 999_000_000 }); // floor, not truncation
    expect(byName('/a/sparse').blocks).toBeLessThan(byName('/a/sparse').size / 512n);
    expect(byName('/fifo').mode & 0o170000).toBe(0o010000);
  });

  test('deterministic: two scans encode to identical bytes; decodeBlob round trip', async () => {
    const a = encodeBlob(await scanHostTree(root));
    const b = encodeBlob(await scanHostTree(root));
    expect(b.equals(a)).toBe(true);
    const d = decodeBlob(a);
    const t = await scanHostTree(root);
    expect(d.entries.map(({ flags: _f, ...e }) => e)).toEqual(t.entries);
    // Reachability: everything is reachable except below no directory here... all dirs are 0755 or 0711.
    expect(d.entries.every((e) => (e.flags & F.E_REACHABLE) !== 0)).toBe(true);
  });

  test('a second scan after the first leaves directory and symlink atimes as recorded', async () => {
    const first = await scanHostTree(root);
    await scanHostTree(root);
    for (const e of first.entries) {
      const st = fs.lstatSync(e.path, { bigint: true });
      expect({ p: e.path.toString('latin1'), atime: e.atime.sec * NS + BigInt(e.atime.nsec) }).toEqual({ p: e.path.toString('latin1'), atime: st.atimeNs });
    }
  });

  test('root is realpath: through a symlink, with "./" and trailing "/"', async () => {
    const via = path.join(tmp, 'via');
    fs.symlinkSync('tree', via);
    try {
      for (const spelling of [via, `${via}/`, `${tmp}/./tree/../tree/`]) {
        const t = await scanHostTree(spelling);
        expect(t.roots[0].toString()).toBe(fs.realpathSync(root));
      }
    } finally {
      fs.unlinkSync(via);
    }
  });

  test('uid/gid override applies to every entry', async () => {
    const t = await scanHostTree(root, { uid: 0, gid: 12345 });
    expect(new Set(t.entries.map((e) => `${e.uid}:${e.gid}`))).toEqual(new Set(['0:12345']));
    await expect(scanHostTree(root, { uid: -1 })).rejects.toThrow(/--uid -1 is not a valid uid/);
    await expect(scanHostTree(root, { gid: 1.5 })).rejects.toThrow(VriftError);
  });

  test('paths of PATH_MAX bytes or more are left out and counted', async () => {
    const base = path.join(tmp, 'long');
    // Build a chain whose deepest paths cross 4095 bytes with relative
    // mkdir/chdir (the kernel limit applies per call, not per depth).
    fs.mkdirSync(base);
    const depth = Math.ceil((4400 - base.length) / 201);
    const py = spawnSync('python3', ['-c', `import os\nos.chdir(${JSON.stringify(base)})\nfor _ in range(${depth}):\n    os.mkdir('x' * 200)\n    os.chdir('x' * 200)\nopen('leaf', 'w').close()`]);
    expect(py.status).toBe(0);
    const t = await scanHostTree(base);
    expect(t.skippedTooLong).toBeGreaterThan(0);
    expect(t.entries.every((e) => e.path.length < F.PATH_MAX)).toBe(true);
    expect(() => encodeBlob(t)).not.toThrow();
    spawnSync('rm', ['-rf', base]);
  });

  test('missing path, file, and "/" are rejected with one clear VriftError', async () => {
    await expect(scanHostTree(path.join(tmp, 'missing'))).rejects.toThrow(/^scanning host tree ".*missing": ENOENT \(no such file or directory\); pass an existing directory$/);
    await expect(scanHostTree(path.join(root, 'a/small'))).rejects.toThrow(/not a directory; pass the directory that is the domain root/);
    await expect(scanHostTree('/')).rejects.toThrow(/the domain root cannot be "\/"/);
  });

  test('an unreadable directory (scanned as an unprivileged user) names the path and what to do', () => {
    const t = path.join(tmp, 'perm');
    fs.mkdirSync(path.join(t, 'locked', 'inner'), { recursive: true });
    fs.chmodSync(tmp, 0o755);
    fs.chmodSync(path.join(t, 'locked'), 0o300); // search but no read
    const mod = path.join(__dirname, '..', '..', 'dist', 'blob', 'hostTree.js');
    const r = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `require(${JSON.stringify(mod)}).scanHostTree(${JSON.stringify(t)}).then(() => process.exit(0), (e) => { console.error(e.name + ': ' + e.message); process.exit(1); })`],
      { encoding: 'utf8' },
    );
    fs.chmodSync(path.join(t, 'locked'), 0o755);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`VriftError: reading directory ${JSON.stringify(path.join(t, 'locked'))}: EACCES (permission denied); run as a user who can read it, or make it readable (chmod a+rx)`);
  });
});
