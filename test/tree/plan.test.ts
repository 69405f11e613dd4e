import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { planTree, parseSourceDateEpoch, buildVriftLayer } from '../../src/tree';
import { VriftError } from '../../src/errors';
import type { LayerEntry } from '../../src/layer/types';
import { CAS_MAX_LINKS } from '../../src/cas';

/** The built CLI (bin/vrift.js -> dist/: `npm run build` first). */
const BIN = path.join(__dirname, '..', '..', 'bin', 'vrift.js');

let dir: string;
let src: string;
let out: string;
let cacheDir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-plan-'));
  src = path.join(dir, 'src');
  out = path.join(dir, 'out');
  cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(src);
  await fsp.mkdir(out);
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const byPath = (es: LayerEntry[]) => new Map(es.map((e) => [e.path.toString('latin1'), e]));

test('parseSourceDateEpoch is strict', () => {
  expect(parseSourceDateEpoch(undefined)).toBeUndefined();
  expect(parseSourceDateEpoch('')).toBeUndefined();
  expect(parseSourceDateEpoch('1700000000')).toBe(1700000000);
  expect(parseSourceDateEpoch('0')).toBe(0);
  for (const bad of ['-1', '1e9', '12.5', ' 12', '0x10', 'now', '1700000000 ']) {
    expect(() => parseSourceDateEpoch(bad)).toThrow(/SOURCE_DATE_EPOCH/);
  }
});

test('dedup: identical files share one CAS object by hardlinks; another mode gets its own object', async () => {
  await fsp.mkdir(path.join(src, 'a'));
  await fsp.mkdir(path.join(src, 'b'));
  for (const p of ['a/x', 'b/x', 'b/y']) await fsp.writeFile(path.join(src, p), 'same content\n');
  await fsp.writeFile(path.join(src, 'exe'), 'same content\n', { mode: 0o755 });
  await fsp.chmod(path.join(src, 'exe'), 0o755);
  await fsp.writeFile(path.join(src, 'other'), 'different\n');
  for (const p of ['a/x', 'b/x', 'b/y', 'exe', 'other']) await fsp.utimes(path.join(src, p), 1700000000, 1700000000);
  const plan = await planTree([{ src, dest: '/vrift/app' }], { cacheDir });
  expect(plan.stats).toMatchObject({ files: 5, casObjects: 3, symlinks: 0, bytes: 4n * 13n + 10n });
  expect(plan.stats.dedupRatio).toBeCloseTo(62 / (13 + 13 + 10));
  const m = byPath(plan.entries);
  const ax = m.get('/vrift/app/a/x')!;
  const exe = m.get('/vrift/app/exe')!;
  if (ax.type !== 'hardlink' || exe.type !== 'hardlink') throw new Error('expected hardlinks');
  expect(m.get('/vrift/app/b/x')).toMatchObject({ type: 'hardlink', linkTo: ax.linkTo, nlink: 4 });
  // The primary object takes the mode of the first path in byte order ("a/x": 0644); "exe" (0755) gets a suffixed object.
  expect(ax.linkTo.toString()).toMatch(/^\/vrift\/\.cas\/[0-9a-f]{2}\/[0-9a-f]{62}$/);
  expect(exe.linkTo.toString()).toBe(`${ax.linkTo.toString()}.0755.1700000000.0`);
  expect(m.get(ax.linkTo.toString())).toMatchObject({ type: 'file', mode: 0o100644, nlink: 4, size: 13n });
  expect(m.get(exe.linkTo.toString())).toMatchObject({ type: 'file', mode: 0o100755, nlink: 2 });
  // Order: /vrift, the .cas subtree, then the rest by bytes; directories before contents.
  const order = plan.entries.map((e) => e.path.toString());
  expect(order[0]).toBe('/vrift');
  expect(order[1]).toBe('/vrift/.cas');
  const firstTree = order.findIndex((p, i) => i > 0 && !p.startsWith('/vrift/.cas'));
  expect(order.slice(firstTree + 1).every((p) => !p.startsWith('/vrift/.cas'))).toBe(true);
  const rest = order.slice(firstTree);
  expect(rest).toEqual([...rest].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
});

test('dedup keeps every mtime: identical files with other mtimes get their own objects (hardlinks share one st_mtime)', async () => {
  // A .pyc records its source's mtime: a source reporting another file's mtime makes Python recompile it.
  for (const [p, t] of [['a.py', 1600000000], ['b.py', 1600000000], ['c.py', 1650000000]] as const) {
    await fsp.writeFile(path.join(src, p), '');
    await fsp.utimes(path.join(src, p), t, t);
  }
  const plan = await planTree([{ src, dest: '/vrift/app' }], { cacheDir });
  expect(plan.stats).toMatchObject({ files: 3, casObjects: 2 });
  const m = byPath(plan.entries);
  const [a, b, cc] = ['a', 'b', 'c'].map((n) => m.get(`/vrift/app/${n}.py`)!);
  if (a.type !== 'hardlink' || b.type !== 'hardlink' || cc.type !== 'hardlink') throw new Error('expected hardlinks');
  expect(b.linkTo).toEqual(a.linkTo);
  expect(cc.linkTo.toString()).toBe(`${a.linkTo.toString()}.0644.1650000000.0`);
  expect([a, b, cc].map((e) => e.mtime.sec)).toEqual([1600000000n, 1600000000n, 1650000000n]);
  expect(m.get(a.linkTo.toString())).toMatchObject({ mtime: { sec: 1600000000n }, nlink: 3 });
  expect(m.get(cc.linkTo.toString())).toMatchObject({ mtime: { sec: 1650000000n }, nlink: 2 });
  expect([a.nlink, b.nlink, cc.nlink]).toEqual([3, 3, 2]);
});

test(`one CAS object takes at most CAS_MAX_LINKS (${CAS_MAX_LINKS}) links: ext4 refuses more, and docker load fails`, async () => {
  // CAS_MAX_LINKS + 1 identical empty files (empty __init__.py, py.typed: common in big trees).
  const n = CAS_MAX_LINKS + 1;
  for (let d = 0; d < Math.ceil(n / 1000); d++) {
    const sub = path.join(src, `d${d}`);
    await fsp.mkdir(sub);
    await Promise.all(Array.from({ length: Math.min(1000, n - d * 1000) }, (_, i) => fsp.writeFile(path.join(sub, `e${i}`), '')));
  }
  execFileSync('find', [src, '-type', 'f', '-exec', 'touch', '-d', '@1700000000', '{}', '+']);
  const plan = await planTree([{ src, dest: '/vrift/m' }], { cacheDir: false });
  expect(plan.stats).toMatchObject({ files: n, casObjects: 2 });
  const objects = plan.entries.filter((e) => e.type === 'file');
  expect(objects.map((o) => (o.type === 'file' ? o.nlink : 0))).toEqual([CAS_MAX_LINKS + 1, 2]);
  expect(objects[1].path.toString()).toBe(`${objects[0].path.toString()}.0644.1700000000.1`);
  // The first CAS_MAX_LINKS paths in byte order link to the first object, the last one to the second.
  const links = plan.entries.filter((e) => e.type === 'hardlink');
  expect(links).toHaveLength(n);
  const last = [...links].sort((x, y) => Buffer.compare(x.path, y.path)).pop()!;
  if (last.type !== 'hardlink') throw new Error('expected a hardlink');
  expect(last.linkTo).toEqual(objects[1].path);
  expect(links.filter((e) => e.type === 'hardlink' && e.linkTo.equals(objects[0].path))).toHaveLength(CAS_MAX_LINKS);
}, 300_000);

test('modes, owner, mtimes: source modes kept, created parents 0755, chown applied, mtimes clamped to SOURCE_DATE_EPOCH', async () => {
  await fsp.mkdir(path.join(src, 'private'), { mode: 0o700 });
  await fsp.writeFile(path.join(src, 'private', 'f'), 'x');
  await fsp.chmod(path.join(src, 'private'), 0o700);
  await fsp.utimes(path.join(src, 'private', 'f'), 1000, 1000.75);
  await fsp.utimes(path.join(src, 'private'), 2000, 2000);
  await fsp.symlink('private/f', path.join(src, 'ln'));
  const plan = await planTree([{ src, dest: '/vrift/deep/er/app' }], { cacheDir, chown: { uid: 1000, gid: 100 }, sourceDateEpoch: 1500 });
  const m = byPath(plan.entries);
  expect(m.get('/vrift/deep')).toMatchObject({ mode: 0o040755, uid: 1000, gid: 100 });
  expect(m.get('/vrift/deep/er')).toMatchObject({ mode: 0o040755 });
  expect(m.get('/vrift/deep/er/app/private')).toMatchObject({ mode: 0o040700, mtime: { sec: 1500n, nsec: 0 } });
  expect(m.get('/vrift/deep/er/app/private/f')).toMatchObject({ mtime: { sec: 1000n, nsec: 0 }, uid: 1000, gid: 100 });
  expect(m.get('/vrift/deep/er/app/ln')).toMatchObject({ type: 'symlink', mode: 0o120777, target: Buffer.from('private/f') });
  // Created directories carry the newest (clamped) mtime of the tree.
  expect(m.get('/vrift')!.mtime.sec).toBe(1500n);
  for (const e of plan.entries) expect(e.mtime.sec <= 1500n).toBe(true);
});

test('an engine path limit (--load) applies to a destination too, even when its source is empty', async () => {
  const pathLimit = { bytes: 40, why: 'the test engine holds at most 40 bytes' };
  const dest = `/vrift/${'d'.repeat(34)}`; // 41 bytes
  await expect(planTree([{ src, dest }], { cacheDir: false, pathLimit })).rejects.toThrow(
    `checking destination "${dest}" (--add ${src}:${dest}): the path is 41 bytes; the test engine holds at most 40 bytes; choose a shorter destination`,
  );
  const ok = await planTree([{ src, dest: dest.slice(0, -1) }], { cacheDir: false, pathLimit });
  expect(ok.entries.map((e) => e.path.toString())).toEqual(['/vrift', dest.slice(0, -1)]);
});

test('a name starting with ".wh." (an OCI whiteout) is refused, in a source and in a destination: the engine would delete a path instead', async () => {
  await fsp.mkdir(path.join(src, 'd'));
  await fsp.writeFile(path.join(src, 'd', '.wh..wh..opq'), 'x');
  const why = 'its name starts with ".wh.", which image layers reserve for whiteouts (OCI image-spec, layer.md): the engine would delete a path instead of adding this one';
  await expect(planTree([{ src, dest: '/vrift/w' }], { cacheDir: false })).rejects.toThrow(`checking "${src}/d/.wh..wh..opq": ${why}; rename it or remove it from the source`);
  await fsp.rm(path.join(src, 'd', '.wh..wh..opq'));
  await fsp.writeFile(path.join(src, 'd', '.wh'), 'x'); // ".wh" alone and "a.wh.b" are ordinary names
  await fsp.writeFile(path.join(src, 'd', 'a.wh.b'), 'x');
  expect((await planTree([{ src, dest: '/vrift/w' }], { cacheDir: false })).stats.files).toBe(2);
  await expect(planTree([{ src, dest: '/vrift/a/.wh.b' }], { cacheDir: false })).rejects.toThrow(`checking destination "/vrift/a/.wh.b" (--add ${src}:/vrift/a/.wh.b): a component ${why}; choose another path under /vrift`);
});

test('unreadable source paths: each error names the cause and its fix (uid 65534; a host path over PATH_MAX whose image path fits)', async () => {
  // As uid 65534 (root reads everything): a directory without search permission, one without read permission.
  await fsp.mkdir(path.join(src, 'nosearch'), { mode: 0o744 });
  await fsp.writeFile(path.join(src, 'nosearch', 'f'), 'x');
  await fsp.chmod(path.join(src, 'nosearch'), 0o744);
  await fsp.chmod(dir, 0o755);
  await fsp.chmod(src, 0o755);
  const asNobody = (args: string[]) => execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VRIFT_DEBUG: '', TMPDIR: os.tmpdir() } });
  const stderrOf = (args: string[]): string => {
    try {
      asNobody(args);
    } catch (err) {
      return (err as { stderr: string }).stderr;
    }
    throw new Error('expected a failure');
  };
  const layer = (s: string) => ['layer', '--add', `${s}:/vrift/x`, '--out-dir', path.join(os.tmpdir(), `vrift-plan-nobody-${process.pid}`), '--cache-dir', path.join(os.tmpdir(), `vrift-plan-nobody-cache-${process.pid}`)];
  expect(stderrOf(layer(src))).toMatch(new RegExp(`^vrift: reading "${src}/nosearch/f": EACCES: .*; its directory needs search permission \\(x\\) for the user running vrift; chmod it or remove it from the source\n$`));
  await fsp.chmod(path.join(src, 'nosearch'), 0o311);
  expect(stderrOf(layer(src))).toMatch(new RegExp(`^vrift: reading directory "${src}/nosearch": EACCES: .*; the directory needs read and search permission \\(r-x\\) for the user running vrift; chmod it or remove it from the source\n$`));
  await fsp.chmod(path.join(src, 'nosearch'), 0o755);
  await fsp.rm(path.join(src, 'nosearch'), { recursive: true });

  // A source root 3,900 bytes deep on the host: its names' host paths pass PATH_MAX, their image paths do not.
  execFileSync('bash', ['-c', 'cd "$1" && for i in $(seq 1 26); do d=$(printf "d%.0s" $(seq 1 149)); mkdir "$d" && cd "$d"; done && mkdir deep && printf x > deep/$(printf "n%.0s" $(seq 1 250))', '_', src]);
  const deep = `${src}${`/${'d'.repeat(149)}`.repeat(26)}/deep`;
  expect(deep.length).toBeLessThan(4096);
  try {
    // The walk reaches each name through its directory's descriptor (short paths); reading the file takes its whole host path.
    await expect(planTree([{ src: deep, dest: '/vrift/deep' }], { cacheDir: false })).rejects.toThrow(new RegExp(`^hashing file ".*/deep/n{250}": ENAMETOOLONG; the host path is ${deep.length + 251} bytes, longer than the kernel takes \\(PATH_MAX 4096\\); move the source to a shorter host path \\(the image path may be fine\\)$`));
  } finally {
    execFileSync('rm', ['-rf', path.join(src, 'd'.repeat(149))]); // GNU rm descends relative to each directory; fs.rm passes PATH_MAX
  }
});

test('a source directory swapped for a symlink to elsewhere while it is walked never brings the other tree in: the plan holds the source\'s files or fails "replaced"', async () => {
  // 40k names "d.NNNNN" sort between "d" and "d/": the walk lstats d, then works through them before it lists d.
  const secret = path.join(dir, 'secret');
  await fsp.mkdir(path.join(secret, 'd'), { recursive: true });
  await fsp.writeFile(path.join(secret, 'd', 'f'), 'TOP-SECRET-CONTENT');
  await fsp.mkdir(path.join(src, 'd'));
  await fsp.writeFile(path.join(src, 'd', 'f'), 'innocent-content12'); // same size
  execFileSync('bash', ['-c', 'cd "$1" && for i in $(seq 10000 49999); do : > d.$i; done', '_', src]);
  const secretSha = createHash('sha256').update('TOP-SECRET-CONTENT').digest('hex');
  const innocentSha = createHash('sha256').update('innocent-content12').digest('hex');
  // Swap d <-> a symlink to the secret directory, over and over, while planning.
  const swapper = spawn('bash', ['-c', 'cd "$1"; while :; do mv d d.real && ln -s "$2" d; sleep 0.002; rm d && mv d.real d; sleep 0.002; done', '_', src, path.join(secret, 'd')], { stdio: 'ignore' });
  let failed = 0;
  try {
    for (let run = 0; run < 4; run++) {
      try {
        const plan = await planTree([{ src, dest: '/vrift/s' }], { cacheDir: false });
        // d may have been seen as d.real, or missed by a listing racing a rename (POSIX allows it): whatever was planned holds the source's bytes only.
        const shas = plan.objects.map((o) => o.sha256);
        expect(shas).not.toContain(secretSha);
        if (plan.entries.some((e) => /^\/vrift\/s\/d(\.real)?\/f$/.test(e.path.toString()))) expect(shas).toContain(innocentSha);
      } catch (err) {
        // Or d was listed as the symlink (its absolute target is refused), or changed under the walk.
        expect((err as Error).message).toMatch(/(removed or replaced while vrift walked the source; build again|deleted or replaced after the source was walked .*; build again|changed type while being read .*; build again|it has an absolute target)/);
        failed++;
      }
    }
  } finally {
    swapper.kill('SIGKILL');
    await new Promise((r) => swapper.once('exit', r));
  }
  expect(failed).toBeLessThanOrEqual(4); // either outcome is fine; neither may carry the secret
}, 120_000);

test('a symlink may go up with ".." as long as it stays inside its source', async () => {
  await fsp.mkdir(path.join(src, 'a'));
  await fsp.mkdir(path.join(src, 'b'));
  await fsp.writeFile(path.join(src, 'b', 't'), 't');
  await fsp.symlink('../b/t', path.join(src, 'a', 'ok'));
  await fsp.symlink('missing/../../b', path.join(src, 'a', 'dangling-inside'));
  const plan = await planTree([{ src, dest: '/vrift/x' }], { cacheDir });
  expect(plan.stats.symlinks).toBe(2);
});

test('non-UTF-8 names are kept as bytes', async () => {
  const name = Buffer.from([0x66, 0xe9, 0xfe]); // "f\xe9\xfe"
  await fsp.writeFile(Buffer.concat([Buffer.from(src + '/'), name]), 'bytes');
  const plan = await planTree([{ src, dest: '/vrift/n' }], { cacheDir });
  const want = Buffer.concat([Buffer.from('/vrift/n/'), name]);
  expect(plan.entries.some((e) => e.path.equals(want))).toBe(true);
});

describe('bad input: VriftError naming the path and the fix, and no layer file left', () => {
  const expectBad = async (adds: { src: string; dest: string }[], re: RegExp) => {
    const err = await buildVriftLayer({ adds, cacheDir, tmpDir: out }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(VriftError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message.split('\n')).toHaveLength(1);
    expect(await fsp.readdir(out)).toEqual([]);
  };

  test('missing source', async () => {
    await expectBad([{ src: path.join(dir, 'nope'), dest: '/vrift/a' }], /reading source ".*nope".*no such file or directory; check the source path/);
  });
  test('source is a file', async () => {
    await fsp.writeFile(path.join(dir, 'file'), '');
    await expectBad([{ src: path.join(dir, 'file'), dest: '/vrift/a' }], /not a directory; --add takes a directory/);
  });
  test('unreadable source (as an unprivileged user)', async () => {
    // Root reads everything: drop the effective uid to nobody for the build.
    await fsp.chmod(dir, 0o755);
    await fsp.chmod(src, 0o700);
    process.setegid!(65534);
    process.seteuid!(65534);
    let err: unknown;
    try {
      err = await buildVriftLayer({ adds: [{ src, dest: '/vrift/a' }], cacheDir, tmpDir: out }).then(() => undefined, (e: unknown) => e);
    } finally {
      process.seteuid!(0);
      process.setegid!(0);
    }
    expect(err).toBeInstanceOf(VriftError);
    expect((err as Error).message).toMatch(/reading source ".*src".*EACCES.*make it readable/);
    expect(await fsp.readdir(out)).toEqual([]);
  });
  test('destination outside /vrift', async () => {
    await expectBad([{ src, dest: '/opt/app' }], /destination "\/opt\/app".*not under \/vrift/);
    await expectBad([{ src, dest: '/vrift' }], /not under \/vrift/);
    await expectBad([{ src, dest: 'vrift/app' }], /must be an absolute path under \/vrift/);
  });
  test('destination escaping /vrift with ..', async () => {
    await expectBad([{ src, dest: '/vrift/../etc' }], /"\.\." components are not allowed/);
  });
  test('destination under the reserved /vrift/.cas', async () => {
    await expectBad([{ src, dest: '/vrift/.cas/x' }], /reserved for content-addressed objects/);
  });
  test('two adds onto the same destination', async () => {
    await expectBad([{ src, dest: '/vrift/a' }, { src, dest: '/vrift/a/' }], /have the same destination; give each --add its own/);
  });
  test('overlapping destinations', async () => {
    await expectBad([{ src, dest: '/vrift/a' }, { src, dest: '/vrift/a/b' }], /nested destinations/);
  });
  test('a socket in the source', async () => {
    await fsp.mkdir(path.join(src, 'run'));
    const sock = path.join(src, 'run', 's.sock');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      await expectBad([{ src, dest: '/vrift/a' }], /checking ".*run\/s\.sock": it is a socket;.*remove it from the source/);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
  test('a FIFO in the source', async () => {
    execFileSync('mkfifo', [path.join(src, 'fifo')]);
    await expectBad([{ src, dest: '/vrift/a' }], /".*fifo": it is a FIFO/);
  });
  test('a device in the source', async () => {
    execFileSync('mknod', [path.join(src, 'null'), 'c', '1', '3']);
    await expectBad([{ src, dest: '/vrift/a' }], /".*null": it is a character device/);
  });
  test('an absolute symlink', async () => {
    await fsp.symlink('/etc/passwd', path.join(src, 'abs'));
    await expectBad([{ src, dest: '/vrift/a' }], /checking symlink ".*abs" -> "\/etc\/passwd": it has an absolute target.*make it a relative link/);
  });
  test('a symlink leaving the source through ..', async () => {
    await fsp.mkdir(path.join(src, 'd'));
    await fsp.symlink('../../outside', path.join(src, 'd', 'up'));
    await expectBad([{ src, dest: '/vrift/a' }], /symlink ".*d\/up" -> "\.\.\/\.\.\/outside".*leaves the source through/);
  });
  test('a symlink leaving the source only through another symlink (physical resolution)', async () => {
    await fsp.mkdir(path.join(src, 'd'));
    await fsp.symlink('.', path.join(src, 'here')); // lexically one level deep, physically the source root
    await fsp.symlink('../here/..', path.join(src, 'd', 'sneaky'));
    await expectBad([{ src, dest: '/vrift/a' }], /symlink ".*d\/sneaky".*leaves the source/);
  });
});

test('planned mtimes are whole seconds, /vrift included (buildVriftLayer puts tags and the tree digest in the nanoseconds)', async () => {
  await fsp.writeFile(path.join(src, 'f'), 'one');
  await fsp.utimes(path.join(src, 'f'), 1000.5, 1000.5);
  await fsp.utimes(src, 1000.25, 1000.25);
  const a = await planTree([{ src, dest: '/vrift/x' }], { cacheDir: false });
  expect(a.entries[0].path.toString()).toBe('/vrift');
  expect(a.entries[0].mtime).toEqual({ sec: 1000n, nsec: 0 });
  expect(a.entries.map((e) => e.mtime.nsec)).toEqual(a.entries.map(() => 0));
  expect(a.entries.find((e) => e.path.toString() === '/vrift/x/f')?.mtime).toEqual({ sec: 1000n, nsec: 0 });
});
