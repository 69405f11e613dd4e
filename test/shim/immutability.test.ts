/**
 * Immutability of the domain (issue 4 item 6; docs/shim-safety.md section 6).
 *
 * shim/build/mutate calls every mutating entry point the shim interposes
 * (open/openat/creat/fopen for writing, truncate, unlink, rmdir, remove,
 * rename*, mkdir*, link*, symlink*, mknod*, __xmknod, mkfifo*, mkstemp*,
 * mkdtemp, chmod/fchmodat, chown/lchown/fchownat, utime*, xattrs, access
 * W_OK, and the same numbers through syscall()), each on its own copy of a
 * small tree. Three runs over identical trees:
 *  - under the shim with a blob for the tree: the tree is unchanged after;
 *  - plainly on a read-only bind mount (the kernel is the oracle): every
 *    result equals the shim's, except the documented cross-mount cases
 *    (EXDEV there, EROFS from the shim: the domain is no mount);
 *  - plainly on a writable tree: every call the shim refused succeeds.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob } from '../../src/blob/writer';
import { BUILD, SHIM, buildShim } from './helpers';

const MUTATE = path.join(BUILD, 'mutate');
let tmp: string;
let count: number;
let ro: string | undefined;

/** `count` case directories under `dom`, each pointing `out` at its own directory under `outside`. */
function makeTree(dom: string, outside: string): void {
  fs.mkdirSync(dom, { recursive: true });
  fs.mkdirSync(outside, { recursive: true });
  for (let i = 1; i <= count; i++) {
    const c = path.join(dom, `c${i}`);
    fs.mkdirSync(path.join(c, 'd'), { recursive: true });
    fs.mkdirSync(path.join(c, 'e'));
    fs.writeFileSync(path.join(c, 'f'), 'hello\n');
    fs.writeFileSync(path.join(c, 'd', 'g'), 'g\n');
    fs.symlinkSync('f', path.join(c, 'lnk'));
    fs.symlinkSync('nothere', path.join(c, 'dangling'));
    execFileSync('mkfifo', [path.join(c, 'fifo')]);
    const o = path.join(outside, `o${i}`);
    fs.mkdirSync(o);
    fs.chmodSync(o, 0o755);
    fs.writeFileSync(path.join(o, 'file'), 'outside\n');
    fs.symlinkSync(o, path.join(c, 'out'));
  }
}

/** Every path under `root`: lstat fields (ctime included: any metadata change shows), link targets, names. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    const s = fs.lstatSync(p, { bigint: true });
    out[p] = [s.mode, s.ino, s.nlink, s.uid, s.gid, s.size, s.mtimeNs, s.ctimeNs].join(' ');
    if (s.isSymbolicLink()) out[p] += ` -> ${fs.readlinkSync(p)}`;
    if (s.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n));
  };
  walk(root);
  return out;
}

function mutate(dom: string, outside: string, env: NodeJS.ProcessEnv = {}): Map<string, string> {
  const r = spawnSync(MUTATE, [dom, outside], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
  if (r.status !== 0 || r.signal) throw new Error(`mutate failed (${r.status} ${r.signal}): ${r.stderr}`);
  const m = new Map<string, string>();
  for (const line of r.stdout.trim().split('\n')) {
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), line.slice(i + 1));
  }
  expect(m.size).toBe(count);
  return m;
}

let shim: Map<string, string>;
let kernel: Map<string, string>;
let domA: string;

beforeAll(async () => {
  buildShim();
  count = Number(execFileSync(MUTATE, ['--count'], { encoding: 'utf8' }).trim());
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-immut-')));
  fs.chmodSync(tmp, 0o755);
  fs.mkdirSync(path.join(tmp, 'blobs'));
});

afterAll(() => {
  if (ro) spawnSync('umount', [ro]);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('under the shim: the domain is unchanged after every mutating call', async () => {
  domA = path.join(tmp, 'a', 'dom');
  makeTree(domA, path.join(tmp, 'a', 'out'));
  const tree = await scanHostTree(domA);
  const blob = path.join(tmp, 'blobs', 'a.blob');
  fs.writeFileSync(blob, encodeBlob(tree), { mode: 0o644 });
  const before = snapshot(domA);
  shim = mutate(domA, path.join(tmp, 'a', 'out'), { LD_PRELOAD: SHIM, VRIFT_BLOB: blob });
  expect(snapshot(domA)).toEqual(before);
  const erofs = [...shim].filter(([, v]) => v === 'err=EROFS').map(([k]) => k);
  expect(erofs.length).toBeGreaterThan(100);
  // Reads still work under the shim.
  for (const k of ['read:open:RDONLY:f', 'read:open:RDONLY:d', 'read:openat:RDONLY:f', 'fopen:r:f', 'read:access:R_OK:f', 'read:stat:f', 'access:F_OK:f']) {
    expect(`${k} ${shim.get(k)}`).toBe(`${k} ok`);
  }
  // Paths that leave the domain through a symlink are not domain paths.
  for (const k of ['open:CREAT:out/new', 'mkdir:out/new', 'chmod:out']) expect(`${k} ${shim.get(k)}`).toBe(`${k} ok`);
  console.log(`immutability: ${count} mutating/probing calls, ${erofs.length} refused with EROFS`);
});

test('every directory marked PSFS_E_UNCERTAIN (large directories in image builds; stat asks the kernel for them): the same result for every call, the tree unchanged', async () => {
  const dom = path.join(tmp, 'u', 'dom');
  makeTree(dom, path.join(tmp, 'u', 'out'));
  const tree = await scanHostTree(dom);
  const entries = tree.entries.map((e) => ((e.mode & 0o170000) === 0o040000 ? { ...e, uncertain: true } : e));
  const blob = path.join(tmp, 'blobs', 'u.blob');
  fs.writeFileSync(blob, encodeBlob({ ...tree, entries }), { mode: 0o644 });
  const before = snapshot(dom);
  const u = mutate(dom, path.join(tmp, 'u', 'out'), { LD_PRELOAD: SHIM, VRIFT_BLOB: blob });
  expect(snapshot(dom)).toEqual(before);
  expect([...u].filter(([k, v]) => shim.get(k) !== v)).toEqual([]);
});

test('the kernel on a read-only bind mount of the same tree gives the same result for every call', () => {
  const src = path.join(tmp, 'b', 'dom');
  makeTree(src, path.join(tmp, 'b', 'out'));
  ro = path.join(tmp, 'ro');
  fs.mkdirSync(ro);
  execFileSync('mount', ['--bind', src, ro]);
  execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
  kernel = mutate(ro, path.join(tmp, 'b', 'out'));
  const diff: string[] = [];
  for (const [k, v] of kernel) {
    const s = shim.get(k);
    if (k.startsWith('x:')) {
      // Across the mount: EXDEV for the kernel, EROFS from the shim (the domain is no mount).
      expect(`${k} ${v}`).toBe(`${k} err=EXDEV`);
      expect(`${k} ${s}`).toBe(`${k} err=EROFS`);
    } else if (s !== v) {
      diff.push(`${k}: kernel ${v}, shim ${s}`);
    }
  }
  expect(diff).toEqual([]);
});

test('without the shim, every call it refused succeeds on a writable tree (or fails there for its own reason, as on a read-only mount)', () => {
  const dom = path.join(tmp, 'c', 'dom');
  makeTree(dom, path.join(tmp, 'c', 'out'));
  const plain = mutate(dom, path.join(tmp, 'c', 'out'));
  const refused = [...shim].filter(([, v]) => v === 'err=EROFS').map(([k]) => k);
  const failed = refused.filter((k) => plain.get(k) !== 'ok');
  // A read-only mount refuses removals and renames before it looks the name up, and
  // removexattr before it looks the attribute up: unlink of a missing name is EROFS there
  // too, ENOENT on a writable tree. Those are exactly these (the kernel oracle says EROFS).
  expect(failed.map((k) => `${k}: ${plain.get(k)}`).sort()).toEqual([
    'lremovexattr:d: err=ENODATA', 'removexattr:f: err=ENODATA', 'rename:e:d: err=ENOTEMPTY',
    'rename:missing:f2: err=ENOENT', 'rmdir:case-dir: err=ENOTEMPTY', 'rmdir:d: err=ENOTEMPTY',
    'syscall(lremovexattr):d: err=ENODATA', 'syscall(removexattr):f: err=ENODATA',
    'unlink:d: err=EISDIR', 'unlink:missing: err=ENOENT',
  ]);
  for (const k of failed) expect(`${k} ${kernel.get(k)}`).toBe(`${k} err=EROFS`);
  expect(refused.length - failed.length).toBeGreaterThan(100);
});

test('outside the domain the shim only passes through: with the blob of another tree accepted, every call gives the plain result and the same trees after', () => {
  // Every call the shim does not refuse goes to the real function (dlsym(RTLD_NEXT)): the
  // results must equal the plain run.
  // Every path's type and mode, link count, owner, size and link target (the run's own directory
  // name taken out), relative to root, mkstemp/mkdtemp names as their templates; inode numbers
  // and times differ between two trees.
  const shape = (root: string, base: string): Record<string, string> => {
    const rel: Record<string, string> = {};
    for (const [p, v] of Object.entries(snapshot(root))) {
      const [mode, , nlink, uid, gid, size] = v.split(' ');
      const target = (v.split(' -> ')[1] ?? '').replace(base, '<run>');
      const name = path.relative(root, p).replace(/\/([td])[A-Za-z0-9]{6}(\.c)?$/, '/$1XXXXXX$2');
      rel[name] = [mode, nlink, uid, gid, size, target].join(' ');
    }
    return rel;
  };
  const run = (name: string, env: NodeJS.ProcessEnv) => {
    const base = path.join(tmp, name);
    makeTree(path.join(base, 'dom'), path.join(base, 'out'));
    const results = mutate(path.join(base, 'dom'), path.join(base, 'out'), env);
    return { results, dom: shape(path.join(base, 'dom'), base), out: shape(path.join(base, 'out'), base) };
  };
  const blob = path.join(tmp, 'blobs', 'a.blob');
  const env = { LD_PRELOAD: SHIM, VRIFT_BLOB: blob };
  // The blob is accepted in this process environment (its own tree is refused).
  expect(spawnSync('sh', ['-c', `echo x > ${domA}/c1/new`], { env: { PATH: process.env.PATH, ...env } }).status).not.toBe(0);
  const viaShim = run('p1', env);
  const plain = run('p2', {});
  expect([...viaShim.results].filter(([k, v]) => plain.results.get(k) !== v)).toEqual([]);
  expect(viaShim.dom).toEqual(plain.dom);
  expect(viaShim.out).toEqual(plain.out);
});

test('a library preloaded after the shim sees every call the shim does not refuse (fakeroot, libeatmydata rely on it)', () => {
  // chaincount.so counts the mutating and probing calls it sees and passes them on. Outside the
  // domain, with a blob accepted, it must count the same calls behind the shim as alone: the shim
  // hands each to the next library (dlsym(RTLD_NEXT)), never straight to the kernel.
  const counter = path.join(BUILD, 'chaincount.so');
  const blob = path.join(tmp, 'blobs', 'a.blob');
  const run = (name: string, preload: string): string[] => {
    const base = path.join(tmp, name);
    makeTree(path.join(base, 'dom'), path.join(base, 'out'));
    const r = spawnSync(MUTATE, [path.join(base, 'dom'), path.join(base, 'out')], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, LD_PRELOAD: preload, VRIFT_BLOB: blob },
    });
    expect(r.status).toBe(0);
    return r.stderr.split('\n').filter((l) => l.startsWith('chaincount '));
  };
  const alone = run('chain1', counter);
  const behind = run('chain2', `${SHIM}:${counter}`);
  for (const f of ['unlink', 'rmdir', 'rename', 'mkdir', 'chmod', 'chown', 'link', 'symlink', 'truncate', 'access', 'mkfifo', 'setxattr', 'removexattr']) {
    expect(alone.some((l) => l.startsWith(`chaincount ${f} `))).toBe(true);
  }
  expect(behind).toEqual(alone);
});

test('LD_PRELOAD= and VRIFT_BLOB naming no blob switch the refusal off', () => {
  const dom = path.join(tmp, 'd', 'dom');
  makeTree(dom, path.join(tmp, 'd', 'out'));
  const r = spawnSync('sh', ['-c', `echo x > ${dom}/c1/new && mkdir ${dom}/c2/new && rm ${dom}/c3/f`], {
    env: { PATH: process.env.PATH, LD_PRELOAD: SHIM, VRIFT_BLOB: path.join(tmp, 'blobs', 'none.blob') },
    encoding: 'utf8',
  });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(fs.existsSync(`${dom}/c3/f`)).toBe(false);
});

test('a shell under the shim: redirections, mkdir, rm, mv, touch, sed -i get "Read-only file system"; the tree is unchanged', async () => {
  const blob = path.join(tmp, 'blobs', 'a.blob');
  const before = snapshot(domA);
  const c = `${domA}/c1`;
  const script = [
    `echo x > ${c}/new`, `echo x >> ${c}/f`, `mkdir ${c}/n`, `rm ${c}/f`, `mv ${c}/f ${c}/g`, `touch ${c}/f`,
    `sed -i s/h/j/ ${c}/f`, `cp ${c}/f ${c}/f2`, `ln -s f ${c}/l2`, `chmod 0 ${c}/f`, `cd ${c}/d && echo y > rel`,
  ];
  for (const cmd of script) {
    const r = spawnSync('sh', ['-c', cmd], { env: { PATH: process.env.PATH, LD_PRELOAD: SHIM, VRIFT_BLOB: blob }, encoding: 'utf8' });
    expect(`${cmd}: ${r.status === 0 ? 'ok' : 'failed'}`).toBe(`${cmd}: failed`);
    expect(r.stderr).toMatch(/Read-only file system/);
  }
  expect(snapshot(domA)).toEqual(before);
});
