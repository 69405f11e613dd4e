import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVriftLayer, buildShimLayer, blobEntriesFromPlan, planTree, SYNTHETIC_INO_BASE } from '../../src/tree';
import { H_CHECK_ROOT_MTIME, H_DEV_RUNTIME, H_IDENTITY_TAG } from '../../src/blob/format';
import { decodeBlob, makeFixture, tar, walk, type Decoded } from './helpers';

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-build-'));
  await makeFixture(path.join(dir, 'orig'));
  // Two independent copies (other inodes, other paths), mtimes preserved.
  execFileSync('cp', ['-a', path.join(dir, 'orig'), path.join(dir, 'copy1')]);
  execFileSync('cp', ['-a', path.join(dir, 'orig'), path.join(dir, 'copy2')]);
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const build = (src: string, tag: string, extra: { sourceDateEpoch?: number; chown?: { uid: number; gid: number } } = {}) =>
  buildVriftLayer({ adds: [{ src, dest: '/vrift/python' }], cacheDir: path.join(dir, `cache-${tag}`), tmpDir: path.join(dir, `out-${tag}`), ...extra });

test('determinism: two copies of the same tree give identical layer digest, diffID and blob', async () => {
  const a = await build(path.join(dir, 'copy1'), 'a');
  const b = await build(path.join(dir, 'copy2'), 'b');
  expect(a.layer.digest).toBe(b.layer.digest);
  expect(a.layer.diffID).toBe(b.layer.diffID);
  expect(a.blobDigest).toBe(b.blobDigest);
  expect(readFileSync(a.layer.path).equals(readFileSync(b.layer.path))).toBe(true);
  expect(path.basename(a.layer.path)).toBe(`vrift-layer-${a.layer.digest.slice(7)}.tar.gz`);
  expect((await fsp.readdir(path.join(dir, 'out-a'))).sort()).toEqual([path.basename(a.blobFile), path.basename(a.layer.path)]);
  expect(path.basename(a.blobFile)).toBe(`psfs-${a.blobDigest.slice(7)}.blob`);
});

test('determinism with SOURCE_DATE_EPOCH: copies with fresh mtimes (cp -r) give the same layer as preserved ones', async () => {
  execFileSync('cp', ['-r', path.join(dir, 'orig'), path.join(dir, 'fresh')]);
  await fsp.chmod(path.join(dir, 'fresh', 'private'), 0o700);
  const sde = 1_000_000_000; // earlier than every fixture mtime
  const a = await build(path.join(dir, 'copy1'), 'sde1', { sourceDateEpoch: sde });
  const b = await build(path.join(dir, 'fresh'), 'sde2', { sourceDateEpoch: sde });
  expect(b.layer.diffID).toBe(a.layer.diffID);
  expect(b.layer.digest).toBe(a.layer.digest);
  const unclamped = await build(path.join(dir, 'fresh'), 'sde3');
  expect(unclamped.layer.diffID).not.toBe(a.layer.diffID); // the clamp is what made them equal
});

test('digest cache: a rebuild of an unchanged tree hashes nothing and gives the same layer', async () => {
  const first = await build(path.join(dir, 'copy1'), 'cache');
  const files = first.stats.files;
  expect(first.stats).toMatchObject({ hashHits: 0, hashMisses: files });
  const again = await build(path.join(dir, 'copy1'), 'cache');
  expect(again.stats).toMatchObject({ hashHits: files, hashMisses: 0 });
  expect(again.layer.digest).toBe(first.layer.digest);
  await fsp.appendFile(path.join(dir, 'copy1', 'data', 'one'), 'y');
  const changed = await build(path.join(dir, 'copy1'), 'cache');
  expect(changed.stats).toMatchObject({ hashHits: files - 1, hashMisses: 1 });
  expect(changed.layer.digest).not.toBe(first.layer.digest);
  await fsp.writeFile(path.join(dir, 'copy1', 'data', 'one'), 'x');
});

test('dedup stats: identical contents stored once', async () => {
  const r = await build(path.join(dir, 'orig'), 'stats');
  // __init__.py x3 share one object; tool + tool-copy share one; tool-noexec has its own (other mode).
  expect(r.stats.files).toBe(14 + 140 + 200);
  expect(r.stats.casObjects).toBe(r.stats.files - 2 - 1 - 140 - 193); // middir and bigdir files hold the same 7 distinct contents
  expect(r.stats.dedupRatio).toBeGreaterThan(1);
  expect(r.stats.symlinks).toBe(2);
});

describe('layer content: system tar lists it, tar -x as root reproduces the blob', () => {
  let r: Awaited<ReturnType<typeof buildVriftLayer>>;
  let x: string;
  let blob: ReturnType<typeof decodeBlob>;
  beforeAll(async () => {
    r = await build(path.join(dir, 'orig'), 'x', { chown: { uid: 1234, gid: 5678 } });
    x = path.join(dir, 'extract');
    await fsp.mkdir(x);
    tar(['-xzpf', r.layer.path, '-C', x]);
    blob = decodeBlob(readFileSync(r.blobFile));
  });

  test('tar -tvf: relative names, explicit owners, hardlinks into /vrift/.cas, usr/lib/vrift/psfs.blob', () => {
    const lines = tar(['-tvzf', r.layer.path]).trimEnd().split('\n');
    expect(lines.slice(0, 4).map((l) => l.replace(/\s+/g, ' '))).toEqual([
      'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/',
      'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/lib/',
      'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/lib/vrift/',
      `-rw-r--r-- root/root ${r.blobSize} 1970-01-01 00:00 usr/lib/vrift/psfs.blob`,
    ]);
    const names = tar(['-tzf', r.layer.path]).trimEnd().split('\n');
    expect(names.length).toBe(4 + blob.entries.length);
    for (const n of names) {
      expect(n.startsWith('/')).toBe(false);
      expect(n.split('/')).not.toContain('..');
    }
    const vr = lines.slice(4);
    expect(vr.every((l) => l.includes(' 1234/5678 '))).toBe(true);
    const links = vr.filter((l) => l.startsWith('h'));
    expect(links.length).toBe(r.stats.files);
    for (const l of links) expect(l).toMatch(/ link to vrift\/\.cas\/[0-9a-f]{2}\/[0-9a-f]{62}(\.[0-7]{4}\.\d+\.\d+)?$/);
    // Directories precede their contents.
    const seen = new Set<string>();
    for (const n of names) {
      const parent = n.replace(/\/$/, '').split('/').slice(0, -1).join('/');
      if (parent) expect(seen.has(parent)).toBe(true);
      seen.add(n.replace(/\/$/, ''));
    }
  });

  test('the blob shipped in the layer is the returned blob: root /vrift, flags DEV_RUNTIME|CHECK_ROOT_MTIME|IDENTITY_TAG', () => {
    const shipped = readFileSync(path.join(x, 'usr/lib/vrift/psfs.blob'));
    expect(shipped.equals(readFileSync(r.blobFile))).toBe(true);
    expect(shipped.length).toBe(r.blobSize);
    expect(r.blobDigest).toBe(`sha256:${createHash('sha256').update(shipped).digest('hex')}`);
    expect(blob.flags).toBe(H_DEV_RUNTIME | H_CHECK_ROOT_MTIME | H_IDENTITY_TAG);
    expect(blob.roots.map(String)).toEqual(['/vrift']);
  });

  test('blob entries cover exactly the extracted /vrift tree', async () => {
    const onDisk = await walk(x, path.join(x, 'vrift'));
    expect(blob.entries.map((e) => e.path).sort(Buffer.compare)).toEqual(onDisk);
  });

  test('kernel lstat of the extracted tree matches every blob entry (mode, uid, gid, size, mtime, nlink, blocks, blksize, target)', async () => {
    const uncertain = new Set(r.uncertain.map((p) => p.toString('latin1')));
    expect([...uncertain]).toEqual(['/vrift/python/bigdir']); // 200 entries overflow one 4 KiB ext4 block by far
    expect(blob.entries.find((e) => e.path.toString() === '/vrift/python/middir')).toMatchObject({ size: 12288n, blocks: 24n });
    const fsType = execFileSync('stat', ['-f', '-c', '%T', x]).toString().trim();
    expect(fsType).toBe('ext2/ext3'); // the FS_MODEL rules are for ext4 (what overlay2 sits on here)
    const mismatches: string[] = [];
    for (const e of blob.entries) {
      const p = Buffer.concat([Buffer.from(x), e.path]);
      const st = await fsp.lstat(p, { bigint: true });
      const want: { [k: string]: unknown } = {
        mode: BigInt(e.mode), uid: BigInt(e.uid), gid: BigInt(e.gid), nlink: BigInt(e.nlink), mtimeNs: e.mtime[0] * 1_000_000_000n + BigInt(e.mtime[1]),
        blksize: BigInt(e.blksize),
      };
      const got: { [k: string]: unknown } = { mode: st.mode, uid: st.uid, gid: st.gid, nlink: st.nlink, mtimeNs: st.mtimeNs, blksize: st.blksize };
      if (!uncertain.has(e.path.toString('latin1'))) {
        want.size = e.size;
        want.blocks = e.blocks;
        got.size = st.size;
        got.blocks = st.blocks;
      }
      if (e.target) {
        want.target = e.target.toString('latin1');
        got.target = (await fsp.readlink(p, { encoding: 'buffer' })).toString('latin1');
      }
      for (const k of Object.keys(want)) {
        if (want[k] !== got[k]) mismatches.push(`${e.path.toString('latin1')} ${k}: blob ${want[k]} kernel ${got[k]}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  test('identity fields: synthetic st_ino shared exactly by hardlinks, dev 0, atime = ctime = mtime', async () => {
    const byIno = new Map<bigint, Decoded[]>();
    for (const e of blob.entries) {
      expect(e.ino > SYNTHETIC_INO_BASE).toBe(true);
      expect(e.dev).toBe(0n);
      expect(e.atime).toEqual(e.mtime);
      expect(e.ctime).toEqual(e.mtime);
      byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), e]);
    }
    for (const group of byIno.values()) {
      const real = new Set<bigint>();
      for (const e of group) real.add((await fsp.lstat(Buffer.concat([Buffer.from(x), e.path]), { bigint: true })).ino);
      expect(real.size).toBe(1); // same synthetic ino -> same real inode
      expect(group[0].nlink).toBe((group[0].mode & 0o170000) === 0o040000 ? group[0].nlink : group.length);
    }
    const realInodes = new Set<bigint>();
    for (const e of blob.entries) realInodes.add((await fsp.lstat(Buffer.concat([Buffer.from(x), e.path]), { bigint: true })).ino);
    expect(byIno.size).toBe(realInodes.size); // and different synthetic inos -> different real inodes
  });

  test('blobEntriesFromPlan equals the shipped blob (same input, same entries)', async () => {
    const plan = await planTree([{ src: path.join(dir, 'orig'), dest: '/vrift/python' }], { cacheDir: path.join(dir, 'cache-x'), chown: { uid: 1234, gid: 5678 } });
    const { entries } = blobEntriesFromPlan(plan);
    const sorted = [...entries].sort((a, b) => Buffer.compare(a.path, b.path));
    expect(sorted.map((e) => [e.path.toString('latin1'), e.mode, e.size, e.nlink, e.ino])).toEqual(
      blob.entries.map((e) => [e.path.toString('latin1'), e.mode, e.size, e.nlink, e.ino]),
    );
  });
});

test('buildShimLayer: the same .so gives the same layer, whatever its host mtime', async () => {
  const so = path.join(dir, 'libvrift.so');
  await fsp.writeFile(so, Buffer.alloc(5000, 0x7f));
  const a = await buildShimLayer(so, path.join(dir, 'shim-a'));
  await fsp.utimes(so, 99999, 99999);
  const b = await buildShimLayer(so, path.join(dir, 'shim-b'));
  expect(b.digest).toBe(a.digest);
  expect(b.diffID).toBe(a.diffID);
  expect(tar(['-tvzf', a.path]).trimEnd().split('\n').map((l) => l.replace(/\s+/g, ' '))).toEqual([
    'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/',
    'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/lib/',
    'drwxr-xr-x root/root 0 1970-01-01 00:00 usr/lib/vrift/',
    '-rwxr-xr-x root/root 5000 1970-01-01 00:00 usr/lib/vrift/libvrift.so',
  ]);
});

test('memory bound: a build whose columns and sorts spill (a 4-page pool, 1 KiB runs) gives the bytes of one in memory', async () => {
  // ~4000 paths: the table's columns, the file keys, the digest cache's index
  // and the blob's columns all exceed 4 pages of 16 KiB, so every paged array
  // reads evicted pages back from its temp file, and every sort merges runs.
  const src = path.join(dir, 'big');
  for (let d = 0; d < 40; d++) {
    const sub = path.join(src, `d${String(d).padStart(2, '0')}`, d % 3 ? 'x' : 'y.z');
    await fsp.mkdir(sub, { recursive: true });
    for (let f = 0; f < 80; f++) {
      const p = path.join(sub, `f${f}.py`);
      await fsp.writeFile(p, `content ${(d * 80 + f) % 700}\n`, { mode: f % 7 ? 0o644 : 0o755 }); // 700 contents: groups
      await fsp.utimes(p, 1_600_000_000 + (f % 5), 1_600_000_000 + (f % 5)); // one content, several mtimes: several objects
      if (f % 20 === 0) await fsp.symlink(`f${f}.py`, path.join(sub, `l${f}`));
    }
  }
  const { configurePaging, DEFAULT_POOL_BYTES, PAGE_BYTES, pagingStats } = await import('../../src/paged');
  const inMemory = await build(src, 'mem');
  const warmMem = await build(src, 'mem');
  const spills = path.join(dir, 'spills');
  await fsp.mkdir(spills);
  configurePaging({ poolBytes: 4 * PAGE_BYTES, runBytes: 1024, dir: spills });
  try {
    const before = pagingStats();
    const spilled = await build(src, 'spill');
    const warmSpilled = await build(src, 'spill');
    const after = pagingStats();
    expect(after.pagesWritten - before.pagesWritten).toBeGreaterThan(100);
    expect(after.runsWritten - before.runsWritten).toBeGreaterThan(10);
    expect(await fsp.readdir(spills)).toEqual([]); // unlinked at once
    for (const b of [spilled, warmSpilled, warmMem]) {
      expect(b.layer.digest).toBe(inMemory.layer.digest);
      expect(b.blobDigest).toBe(inMemory.blobDigest);
    }
    expect({ ...spilled.stats, hashHits: 0, hashMisses: 0 }).toEqual({ ...inMemory.stats, hashHits: 0, hashMisses: 0 });
    expect(warmSpilled.stats).toMatchObject({ hashHits: inMemory.stats.files, hashMisses: 0 });
    // The digest cache is saved in path order: the next lookup then reads the paged columns sequentially.
    const cacheFiles = await fsp.readdir(path.join(dir, 'cache-spill', 'digests-v2'));
    expect(cacheFiles).toHaveLength(1);
    const saved = Object.keys(JSON.parse(readFileSync(path.join(dir, 'cache-spill', 'digests-v2', cacheFiles[0]), 'utf8')).files).map((k) => Buffer.from(k, 'base64'));
    expect(saved).toHaveLength(inMemory.stats.files);
    for (let k = 1; k < saved.length; k++) expect(Buffer.compare(saved[k - 1], saved[k])).toBe(-1);
    expect(inMemory.stats.casObjects).toBeLessThan(inMemory.stats.files);
    expect((await fsp.readdir(path.join(dir, 'out-spill'))).sort()).toEqual([path.basename(spilled.blobFile), path.basename(spilled.layer.path)].sort());
  } finally {
    configurePaging({ poolBytes: DEFAULT_POOL_BYTES, runBytes: 4 << 20, dir: null });
  }
});
