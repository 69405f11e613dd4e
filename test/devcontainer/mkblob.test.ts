/**
 * vrift-mkblob (shim/mkblob.c, static musl) against the TypeScript writer and
 * the kernel: byte-identical blobs for the same varied host tree (host and
 * synthetic identity, with and without header flags), --verify against the
 * kernel's lstat (passes, then catches drift), --truncate-mtime-ns, --copy in
 * byte order with owners/modes/times/hardlinks/symlinks preserved, and the
 * one-line errors and exit codes.
 *
 * Needs: `npm run build` (dist/ for bin/vrift.js), musl-gcc (musl-tools), root.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeBlob } from '../../src/blob/reader';
import * as F from '../../src/blob/format';

const PKG = path.join(__dirname, '..', '..');
const BIN = path.join(PKG, 'bin', 'vrift.js');
const MKBLOB = path.join(PKG, 'shim', 'build', 'vrift-mkblob');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function mkblob(args: string[]): Run {
  const r = spawnSync(MKBLOB, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function vrift(args: string[]): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, VRIFT_DEBUG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let tmp: string;
let tree: string;

/** A tree with every kind of entry the writer handles. */
function buildTree(dir: string): void {
  const p = (...s: string[]): string => path.join(dir, ...s);
  fs.mkdirSync(p('pkg', 'sub', 'deep', 'er'), { recursive: true });
  fs.writeFileSync(p('pkg', '__init__.py'), 'x = 1\n');
  fs.writeFileSync(p('pkg', 'empty'), '');
  fs.writeFileSync(p('pkg', 'big.bin'), Buffer.alloc(100_000, 7));
  fs.writeFileSync(p('pkg', 'sub', 'mod.py'), 'y = 2\n');
  fs.linkSync(p('pkg', 'sub', 'mod.py'), p('pkg', 'hardlink.py'));
  fs.linkSync(p('pkg', 'sub', 'mod.py'), p('pkg', 'sub', 'deep', 'hardlink2.py'));
  fs.symlinkSync('sub/mod.py', p('pkg', 'rel-link'));
  fs.symlinkSync('/nonexistent/target', p('pkg', 'dangling'));
  fs.symlinkSync('x'.repeat(80), p('pkg', 'long-target'));
  fs.symlinkSync('sub', p('pkg', 'dir-link'));
  fs.writeFileSync(p('pkg', 'setuid'), '#!/bin/sh\n');
  fs.chmodSync(p('pkg', 'setuid'), 0o4755);
  fs.mkdirSync(p('sticky'));
  fs.chmodSync(p('sticky'), 0o1777);
  fs.mkdirSync(p('private'));
  fs.writeFileSync(p('private', 'secret'), 's');
  fs.chmodSync(p('private'), 0o700); // children not REACHABLE
  fs.writeFileSync(Buffer.concat([Buffer.from(dir), Buffer.from('/name-\xe9\xff-latin1', 'latin1')]), 'raw bytes name');
  execFileSync('mkfifo', [p('pkg', 'fifo')]);
  fs.mkdirSync(p('many'));
  for (let i = 0; i < 400; i++) fs.writeFileSync(p('many', `module_with_a_longish_name_${i}.py`), '');
  fs.writeFileSync(p('pkg', 'old'), 'old');
  fs.utimesSync(p('pkg', 'old'), new Date(-1500), new Date(-1500)); // before 1970, fractional
  fs.writeFileSync(p('pkg', 'chowned'), 'c');
  fs.chownSync(p('pkg', 'chowned'), 1234, 5678);
}

beforeAll(() => {
  if (!fs.existsSync(path.join(PKG, 'dist', 'cli', 'main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  execFileSync('make', ['-s', '-C', path.join(PKG, 'shim'), 'mkblob'], { stdio: 'inherit' });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-mkblob-'));
  fs.chmodSync(tmp, 0o755);
  tree = path.join(tmp, 'tree');
  fs.mkdirSync(tree);
  buildTree(tree);
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('vrift-mkblob is byte-identical to the TypeScript writer', () => {
  test('is a static executable (runs in any image, never preloaded)', () => {
    const out = execFileSync('file', ['-L', MKBLOB], { encoding: 'utf8' });
    expect(out).toMatch(/statically linked/);
  });

  test.each([
    ['host identity, no flags', ['--identity', 'host'], []],
    ['host identity, --dev-runtime --check-root-mtime', ['--identity', 'host', '--dev-runtime', '--check-root-mtime'], ['--dev-runtime', '--check-root-mtime']],
    ['synthetic identity (vrift blob --image-mode)', ['--identity', 'synthetic', '--dev-runtime', '--check-root-mtime'], ['--image-mode']],
  ])('%s', (_name, cArgs, tsArgs) => {
    const a = path.join(tmp, 'a.psfs');
    const b = path.join(tmp, 'b.psfs');
    const rc = mkblob([...cArgs, '--root', tree, '--blob', a]);
    expect(rc.stderr).toMatch(/^vrift-mkblob: wrote .*: \d+ entries/);
    expect(rc.status).toBe(0);
    const rt = vrift(['blob', tree, '-o', b, ...tsArgs]);
    expect(rt.status).toBe(0);
    const ab = fs.readFileSync(a);
    const bb = fs.readFileSync(b);
    const d = decodeBlob(ab);
    expect(d.entries.length).toBeGreaterThan(420);
    // Not vacuous: non-REACHABLE entries, symlinks, hardlinks, raw names are in there.
    expect(d.entries.some((e) => (e.flags & F.E_REACHABLE) === 0)).toBe(true);
    expect(d.entries.some((e) => e.path.includes(0xff))).toBe(true);
    // Synthetic identity flags the one directory past one block ("many", 400 entries).
    const uncertain = d.entries.filter((e) => e.flags & F.E_UNCERTAIN).map((e) => e.path.toString('latin1').slice(tree.length));
    expect(uncertain).toEqual(cArgs.includes('synthetic') ? ['/many'] : []);
    expect(ab.equals(bb)).toBe(true);
    expect(fs.statSync(a).mode & 0o777).toBe(0o644);
  });

  test('the arm64 build (static, run with qemu-aarch64-static) writes the same bytes', () => {
    const arm = path.join(PKG, 'shim', 'build', 'vrift-mkblob-arm64');
    if (!fs.existsSync(arm)) throw new Error('shim/build/vrift-mkblob-arm64 is missing: install gcc-aarch64-linux-gnu (scripts/setup-machine.sh)');
    const a = path.join(tmp, 'arm.psfs');
    const b = path.join(tmp, 'amd.psfs');
    const r = spawnSync('qemu-aarch64-static', [arm, '--identity', 'synthetic', '--dev-runtime', '--root', tree, '--blob', a], { encoding: 'utf8' });
    expect(r.stderr).toMatch(/wrote/);
    expect(r.status).toBe(0);
    expect(mkblob(['--identity', 'synthetic', '--dev-runtime', '--root', tree, '--blob', b]).status).toBe(0);
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
  });

  test('synthetic identity: hardlinks share one st_ino from the high range, atime = ctime = mtime, st_dev 0', () => {
    const a = path.join(tmp, 's.psfs');
    expect(mkblob(['--identity', 'synthetic', '--root', tree, '--blob', a]).status).toBe(0);
    const d = decodeBlob(fs.readFileSync(a));
    const by = (suffix: string) => d.entries.find((e) => e.path.toString('latin1').endsWith(suffix))!;
    const inos = ['/pkg/sub/mod.py', '/pkg/hardlink.py', '/pkg/sub/deep/hardlink2.py'].map((s) => by(s).ino);
    expect(new Set(inos).size).toBe(1);
    expect(inos[0]).toBeGreaterThan(0x5652_0000_0000_0000n);
    const all = new Set(d.entries.map((e) => e.ino));
    expect(all.size).toBe(d.entries.length - 2); // two extra links share one inode
    for (const e of d.entries) {
      expect(e.dev).toBe(0n);
      expect(e.atime).toEqual(e.mtime);
      expect(e.ctime).toEqual(e.mtime);
    }
  });
});

describe('vrift-mkblob --verify', () => {
  test('passes on a fresh blob and reports drift with exit 3', () => {
    const dir = path.join(tmp, 'verify');
    fs.mkdirSync(dir);
    buildTree(dir);
    const blob = path.join(tmp, 'v.psfs');
    expect(mkblob(['--identity', 'host', '--root', dir, '--blob', blob]).status).toBe(0);
    let r = mkblob(['--verify', '--blob', blob]);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/verify .*: \d+ entries checked, 0 mismatches \(host identity\)/);
    expect(r.status).toBe(0);

    fs.writeFileSync(path.join(dir, 'pkg', 'added.py'), '');
    fs.chmodSync(path.join(dir, 'pkg', 'empty'), 0o600);
    fs.rmSync(path.join(dir, 'pkg', 'big.bin'));
    r = mkblob(['--verify', '--blob', blob]);
    expect(r.status).toBe(3);
    expect(r.stdout).toContain(`extra ${dir}/pkg/added.py: on disk, not in the blob`);
    expect(r.stdout).toContain(`missing ${dir}/pkg/big.bin: in the blob, not on disk`);
    expect(r.stdout).toMatch(new RegExp(`mismatch ${dir}/pkg/empty: st_mode 33188 in blob, 33152 on disk`));
    expect(r.stdout).toMatch(new RegExp(`mismatch ${dir}/pkg: st_mtim`));
  });

  test('agrees with `vrift verify` (src/verify) on a clean and on a drifted tree', () => {
    const dir = path.join(tmp, 'agree');
    fs.mkdirSync(dir);
    buildTree(dir);
    // Left out: a pre-1970 fractional mtime (kernel -1.5 s = {-2, 500000000}); src/verify
    // compares it as "-1.-500000000" and reports a mismatch (reported to its owner).
    fs.rmSync(path.join(dir, 'pkg', 'old'));
    const blob = path.join(tmp, 'agree.psfs');
    expect(mkblob(['--identity', 'synthetic', '--dev-runtime', '--check-root-mtime', '--root', dir, '--blob', blob]).status).toBe(0);
    const paths = (c: Run, re: RegExp): string[] => [...new Set(c.stdout.split('\n').flatMap((l) => (re.exec(l) ? [re.exec(l)![1]] : [])))].sort();
    const both = (): [Run, Run] => [mkblob(['--verify', '--blob', blob]), vrift(['verify', '--blob', blob])];
    let [c, t] = both();
    expect([c.status, t.status]).toEqual([0, 0]);
    fs.writeFileSync(path.join(dir, 'pkg', 'sub', 'added.py'), '');
    fs.chmodSync(path.join(dir, 'pkg', '__init__.py'), 0o600);
    fs.rmSync(path.join(dir, 'pkg', 'empty'));
    [c, t] = both();
    expect([c.status, t.status]).toEqual([3, 3]);
    const cPaths = paths(c, /^(?:mismatch|extra|missing) (.*?): /);
    // vrift verify also stats through in-domain symlinks ("link -> target" lines): not compared
    const tPaths = paths(t, /^ {2}(\/[^:>]*?)(?:: |$)/);
    expect(cPaths).toEqual([`${dir}/pkg`, `${dir}/pkg/__init__.py`, `${dir}/pkg/empty`, `${dir}/pkg/sub`, `${dir}/pkg/sub/added.py`]);
    expect(tPaths).toEqual(cPaths);
  });

  test('synthetic identity skips st_ino/st_atim/st_ctim, and a corrupt blob is an error (exit 1)', () => {
    const blob = path.join(tmp, 'vs.psfs');
    expect(mkblob(['--identity', 'synthetic', '--dev-runtime', '--root', tree, '--blob', blob]).status).toBe(0);
    const ok = mkblob(['--verify', '--blob', blob]);
    expect(ok.stderr).toMatch(/0 mismatches \(synthetic identity\)/);
    expect(ok.status).toBe(0);
    // Asking for host identity on a synthetic blob: every st_ino differs.
    const host = mkblob(['--verify', '--identity', 'host', '--blob', blob]);
    expect(host.status).toBe(3);
    expect(host.stdout).toMatch(/: st_ino /);

    const bytes = fs.readFileSync(blob);
    bytes[bytes.length - 200] ^= 0xff;
    const bad = path.join(tmp, 'bad.psfs');
    fs.writeFileSync(bad, bytes);
    const r = mkblob(['--verify', '--blob', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^vrift-mkblob: verifying: .*body CRC-32 mismatch/);
  });
});

describe('vrift-mkblob --copy and --truncate-mtime-ns', () => {
  test('copies in byte order with modes, owners, times, hardlinks and symlinks; truncates times to seconds', () => {
    const root = path.join(tmp, 'vroot');
    fs.mkdirSync(root, { mode: 0o755 });
    const blob = path.join(tmp, 'c.psfs');
    const r = mkblob(['--root', root, '--blob', blob, '--identity', 'synthetic', '--copy', `${tree}/pkg:${root}/usr/lib/pkg`, '--truncate-mtime-ns']);
    expect(r.stderr).toContain(`copied ${tree}/pkg -> ${root}/usr/lib/pkg`);
    expect(r.status).toBe(0);
    const src = path.join(tree, 'pkg');
    const dst = path.join(root, 'usr', 'lib', 'pkg');
    // the source is untouched
    expect(fs.existsSync(path.join(src, 'sub', 'mod.py'))).toBe(true);
    const names = (d: string): string[] => fs.readdirSync(d).sort();
    expect(names(dst)).toEqual(names(src));
    for (const n of names(src)) {
      const a = fs.lstatSync(path.join(src, n), { bigint: true });
      const b = fs.lstatSync(path.join(dst, n), { bigint: true });
      expect([n, b.mode, b.uid, b.gid, b.size, b.nlink]).toEqual([n, a.mode, a.uid, a.gid, a.size, a.nlink]);
      expect([n, b.mtimeNs / 1_000_000_000n]).toEqual([n, a.mtimeNs / 1_000_000_000n - (a.mtimeNs < 0n && a.mtimeNs % 1_000_000_000n !== 0n ? 1n : 0n)]);
      if (a.isSymbolicLink()) expect(fs.readlinkSync(path.join(dst, n))).toBe(fs.readlinkSync(path.join(src, n)));
      if (a.isFile()) expect(fs.readFileSync(path.join(dst, n)).equals(fs.readFileSync(path.join(src, n)))).toBe(true);
    }
    // hardlinks inside the copy share an inode
    expect(fs.statSync(path.join(dst, 'hardlink.py')).ino).toBe(fs.statSync(path.join(dst, 'sub', 'deep', 'hardlink2.py')).ino);
    expect(fs.statSync(path.join(dst, 'hardlink.py')).nlink).toBe(3);
    // every path of the root has whole-second times, and the blob agrees
    const d = decodeBlob(fs.readFileSync(blob));
    for (const e of d.entries) {
      const st = fs.lstatSync(e.path, { bigint: true });
      expect([e.path.toString('latin1'), st.mtimeNs % 1_000_000_000n, e.mtime.nsec]).toEqual([e.path.toString('latin1'), 0n, 0]);
    }
    // created parents are 0755 directories
    expect(fs.statSync(path.join(root, 'usr')).mode & 0o7777).toBe(0o755);
    expect(mkblob(['--verify', '--blob', blob]).status).toBe(0);
  });
});

describe('vrift-mkblob errors: one line, exit codes', () => {
  test.each([
    ['missing root', ['--root', '/nonexistent/vrift', '--blob', '/tmp/x.psfs'], 1, /^vrift-mkblob: scanning "\/nonexistent\/vrift": ENOENT/],
    ['unknown flag', ['--frobnicate'], 2, /^vrift-mkblob: unknown argument '--frobnicate'; usage: /],
    ['bad identity', ['--identity', 'fake'], 2, /--identity takes host or synthetic/],
    ['--copy outside the root', ['--root', '/tmp', '--copy', '/etc:/elsewhere/x'], 2, /destination \/elsewhere\/x is not under the root/],
  ])('%s', (_n, args, code, re) => {
    const r = mkblob(args as string[]);
    expect(r.status).toBe(code);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(re as RegExp);
  });

  test('a blob inside the tree it describes is refused and nothing is written', () => {
    const r = mkblob(['--root', tree, '--blob', path.join(tree, 'pkg', 'x.psfs')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/inside the tree it describes/);
    expect(fs.readdirSync(path.join(tree, 'pkg')).filter((n) => n.includes('psfs'))).toEqual([]);
  });

  test('an unwritable blob directory leaves no temp file behind', () => {
    const ro = path.join(tmp, 'ro');
    fs.mkdirSync(ro);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', MKBLOB, '--root', path.join(tree, 'pkg', 'sub'), '--blob', path.join(ro, 'x.psfs')], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^vrift-mkblob: writing PSFS blob .*EACCES/);
    expect(fs.readdirSync(ro)).toEqual([]);
  });
});
