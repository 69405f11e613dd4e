import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DigestCache, sha256File, casObjectPath, defaultCacheDir, cacheFileFor, CACHE_SUBDIR, OLD_CACHE_FILE, PRUNE_AGE_MS, STALE_TMP_MS, type FileBatch } from '../../src/cas';
import { VriftError } from '../../src/errors';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-cas-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const keyOf = async (p: string) => {
  const st = await fsp.lstat(p, { bigint: true });
  return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino };
};

test('sha256File streams and agrees with sha256sum on a 40 MiB file', async () => {
  const f = path.join(dir, 'big');
  const fh = await fsp.open(f, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < 40; i++) {
    chunk.fill(i);
    await fh.write(chunk);
  }
  await fh.close();
  const want = execFileSync('sha256sum', [f]).toString().split(' ')[0];
  const got = await sha256File(f);
  expect(got.hex).toBe(want);
  expect(got.size).toBe(40n << 20n);
});

test('sha256File of a missing file throws VriftError naming it', async () => {
  await expect(sha256File(path.join(dir, 'nope'))).rejects.toThrow(VriftError);
  await expect(sha256File(path.join(dir, 'nope'))).rejects.toThrow(`hashing file "${dir}/nope": it was deleted or replaced after the source was walked (ENOENT); build again once the source is stable`);
  await expect(sha256File(dir)).rejects.toThrow(`hashing file "${dir}": it was deleted or replaced after the source was walked (EISDIR)`);
});

test('sha256File with the walked identity hashes only that file: not a symlink put at its path, not another file reached through a directory swapped for a symlink', async () => {
  await fsp.mkdir(path.join(dir, 'src', 'd'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'secret', 'd'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'src', 'd', 'f'), 'innocent-content12');
  await fsp.writeFile(path.join(dir, 'secret', 'd', 'f'), 'TOP-SECRET-CONTENT'); // same size
  const f = path.join(dir, 'src', 'd', 'f');
  const st = await fsp.lstat(f, { bigint: true });
  const id = { dev: st.dev, ino: st.ino };
  expect((await sha256File(f, st.size, id)).hex).toBe(createHash('sha256').update('innocent-content12').digest('hex'));
  // The directory on the way swapped for a symlink to another tree: another inode at the path.
  await fsp.rename(path.join(dir, 'src', 'd'), path.join(dir, 'src', 'd.real'));
  await fsp.symlink(path.join(dir, 'secret', 'd'), path.join(dir, 'src', 'd'));
  await expect(sha256File(f, st.size, id)).rejects.toThrow(`hashing file "${f}": it was deleted or replaced after the source was walked (another file is at its path now); build again once the source is stable`);
  // The file itself a symlink now (to the very file walked): O_NOFOLLOW refuses it.
  await fsp.rm(path.join(dir, 'src', 'd'));
  await fsp.mkdir(path.join(dir, 'src', 'd'));
  await fsp.symlink(path.join(dir, 'src', 'd.real', 'f'), f);
  await expect(sha256File(f, st.size, id)).rejects.toThrow(`hashing file "${f}": it was deleted or replaced after the source was walked (ELOOP); build again once the source is stable`);
});

/** A FileBatch of host files (lstat now), walked from `roots` (default: the test's directory). */
const batchOf = async (files: string[], roots: string[] = [dir]): Promise<FileBatch> => {
  const keys = await Promise.all(files.map(keyOf));
  return { count: files.length, roots: roots.map((r) => Buffer.from(r)), path: (i) => Buffer.from(files[i]), key: (i) => keys[i] };
};

/** One build's use of the cache: lookup, hash what was not found, save; the digests and the cache. */
async function build(cacheDir: string | false, files: string[], roots?: string[], warn?: (line: string) => void): Promise<{ hex: string[]; cache: DigestCache }> {
  const cache = await DigestCache.open(cacheDir, { warn });
  const batch = await batchOf(files, roots);
  const hex: string[] = [];
  await cache.lookup(batch, (i, h) => {
    hex[i] = h;
  });
  for (let i = 0; i < files.length; i++) {
    expect(cache.found(i)).toBe(hex[i] !== undefined);
    hex[i] ??= await cache.hash(batch, i);
  }
  await cache.save(batch, (i) => hex[i]);
  return { hex, cache };
}
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

test('digest cache: miss, persist, hit on reopen, miss after the file changes', async () => {
  const f = path.join(dir, 'a.txt');
  await fsp.writeFile(f, 'hello');
  await fsp.utimes(f, 500, 500); // not "racy" (see the next test)
  const cacheDir = path.join(dir, 'cache');
  const c1 = await build(cacheDir, [f]);
  expect(c1.hex).toEqual([sha('hello')]);
  expect([c1.cache.hits, c1.cache.misses]).toEqual([0, 1]);
  expect(await fsp.readdir(path.join(cacheDir, CACHE_SUBDIR))).toEqual([path.basename(cacheFileFor(cacheDir, Buffer.from(dir)))]);

  const c2 = await build(cacheDir, [f]);
  expect(c2.hex).toEqual([sha('hello')]);
  expect([c2.cache.hits, c2.cache.misses]).toEqual([1, 0]);

  await fsp.writeFile(f, 'HELLO'); // same size, new mtime
  await fsp.utimes(f, 1000, 1000);
  const c3 = await build(cacheDir, [f]);
  expect(c3.hex).toEqual([sha('HELLO')]);
  expect([c3.cache.hits, c3.cache.misses]).toEqual([0, 1]);
});

test('digest cache: one file per source root; a build reads and rewrites only its roots\' files; the same path given twice is recorded once', async () => {
  const rootA = path.join(dir, 'A');
  const rootB = path.join(dir, 'B');
  await fsp.mkdir(rootA);
  await fsp.mkdir(rootB);
  const [a1, a2, b1] = [path.join(rootA, 'a1'), path.join(rootA, 'a2'), path.join(rootB, 'b1')];
  for (const n of [a1, a2, b1]) {
    await fsp.writeFile(n, `content of ${n}`);
    await fsp.utimes(n, 500, 500);
  }
  const cacheDir = path.join(dir, 'cache');
  const fileA = cacheFileFor(cacheDir, Buffer.from(rootA));
  const fileB = cacheFileFor(cacheDir, Buffer.from(rootB));
  const recorded = async (f: string) => {
    const j = JSON.parse(await fsp.readFile(f, 'utf8')) as { version: number; files: Record<string, { sha256: string }> };
    expect(j.version).toBe(2);
    return Object.fromEntries(Object.entries(j.files).map(([k, v]) => [Buffer.from(k, 'base64').toString(), v.sha256]));
  };
  await build(cacheDir, [a1, a2, a1], [rootA]);
  await build(cacheDir, [b1], [rootB]);
  expect((await fsp.readdir(path.join(cacheDir, CACHE_SUBDIR))).sort()).toEqual([path.basename(fileA), path.basename(fileB)].sort());
  expect(await recorded(fileA)).toEqual({ [a1]: sha(`content of ${a1}`), [a2]: sha(`content of ${a2}`) });
  expect(await recorded(fileB)).toEqual({ [b1]: sha(`content of ${b1}`) });
  // Root B's file is not read by a build of A: a record there for a file of A is not used.
  const rec = async (p: string, hex: string) => {
    const k = await keyOf(p);
    return { size: String(k.size), mtimeNs: String(k.mtimeNs), ctimeNs: String(k.ctimeNs), ino: String(k.ino), sha256: hex };
  };
  const b64 = (p: string) => Buffer.from(p).toString('base64');
  await fsp.writeFile(fileB, JSON.stringify({ version: 2, files: { [b64(a1)]: await rec(a1, 'f'.repeat(64)), [b64(b1)]: await rec(b1, sha(`content of ${b1}`)) } }));
  const again = await build(cacheDir, [a2, a1], [rootA]);
  expect([again.cache.hits, again.cache.misses]).toEqual([2, 0]);
  expect(again.hex).toEqual([sha(`content of ${a2}`), sha(`content of ${a1}`)]);
  // a2 deleted from A: the next build of A drops its record (nothing hashed, still rewritten).
  await fsp.rm(a2);
  const after = await build(cacheDir, [a1], [rootA]);
  expect([after.cache.hits, after.cache.misses]).toEqual([1, 0]);
  expect(await recorded(fileA)).toEqual({ [a1]: sha(`content of ${a1}`) });
  // Two roots in one build, one nested in the other: a path goes to the longest root holding it.
  const both = await build(cacheDir, [a1, b1], [dir, rootB]);
  expect([both.cache.hits, both.cache.misses]).toEqual([1, 1]); // b1 found in B's file; a1 hashed (the root is now `dir`)
  expect(await recorded(cacheFileFor(cacheDir, Buffer.from(dir)))).toEqual({ [a1]: sha(`content of ${a1}`) });
  expect(await recorded(fileB)).toEqual({ [b1]: sha(`content of ${b1}`) }); // a1's record dropped: not under B
});

test('digest cache: a file in the shape JSON.stringify gives is read by the streamed reader', async () => {
  const f = path.join(dir, 'old');
  await fsp.writeFile(f, 'old');
  await fsp.utimes(f, 500, 500);
  const k = await keyOf(f);
  const cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(path.join(cacheDir, CACHE_SUBDIR), { recursive: true });
  const rec = { size: String(k.size), mtimeNs: String(k.mtimeNs), ctimeNs: String(k.ctimeNs), ino: String(k.ino), sha256: 'a'.repeat(64) };
  const other = { size: '1', mtimeNs: '2', ino: '3', sha256: 'b'.repeat(64) }; // no ctimeNs: never found, kept
  await fsp.writeFile(cacheFileFor(cacheDir, Buffer.from(dir)), JSON.stringify({ version: 2, files: { [Buffer.from('/elsewhere').toString('base64')]: other, [Buffer.from(f).toString('base64')]: rec } }));
  const c = await build(cacheDir, [f]);
  expect(c.hex).toEqual(['a'.repeat(64)]); // the record is trusted: the key matches
  expect(c.cache.hits).toBe(1);
});

test('digest cache: a same-size rewrite with its mtime set back (touch -r) is re-hashed (st_ctime in the key)', async () => {
  const f = path.join(dir, 'back.txt');
  await fsp.writeFile(f, 'AAAA');
  await fsp.utimes(f, 500, 500);
  const cacheDir = path.join(dir, 'cache-back');
  await build(cacheDir, [f]);
  await new Promise((r) => setTimeout(r, 20)); // a later ctime
  await fsp.writeFile(f, 'BBBB');
  await fsp.utimes(f, 500, 500); // same size, same mtime, same inode
  const c2 = await build(cacheDir, [f]);
  expect(c2.hex).toEqual([sha('BBBB')]);
  expect([c2.cache.hits, c2.cache.misses]).toEqual([0, 1]);
});

test('a file modified just now is hashed but not cached (racy mtime)', async () => {
  const f = path.join(dir, 'fresh');
  await fsp.writeFile(f, 'new');
  const cacheDir = path.join(dir, 'cache');
  await build(cacheDir, [f]);
  const c2 = await build(cacheDir, [f]);
  expect([c2.cache.hits, c2.cache.misses]).toEqual([0, 1]);
});

test('a corrupt cache file counts as empty, and is replaced by a good one', async () => {
  const cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(path.join(cacheDir, CACHE_SUBDIR), { recursive: true });
  await fsp.writeFile(cacheFileFor(cacheDir, Buffer.from(dir)), '{not json');
  const f = path.join(dir, 'a');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const c = await build(cacheDir, [f]);
  expect([c.cache.hits, c.cache.misses]).toEqual([0, 1]);
  expect(JSON.parse(await fsp.readFile(cacheFileFor(cacheDir, Buffer.from(dir)), 'utf8')).version).toBe(2);
  // A record followed by garbage: what precedes the garbage is still read.
  const good = await fsp.readFile(cacheFileFor(cacheDir, Buffer.from(dir)), 'latin1');
  await fsp.writeFile(cacheFileFor(cacheDir, Buffer.from(dir)), good.slice(0, -2) + ',garbage' + 'x'.repeat(10000));
  const d = await build(cacheDir, [f]);
  expect([d.cache.hits, d.cache.misses]).toEqual([1, 0]);
});

test('save prunes the cache directory: files unused for PRUNE_AGE_MS, stale temp files of other processes, the old digests-v1.json; a file only read is marked used', async () => {
  const src = path.join(dir, 'src');
  await fsp.mkdir(src);
  const f = path.join(src, 'f');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const cacheDir = path.join(dir, 'cache');
  const sub = path.join(cacheDir, CACHE_SUBDIR);
  await build(cacheDir, [f], [src]);
  const mine = cacheFileFor(cacheDir, Buffer.from(src));
  const ago = (ms: number) => new Date(Date.now() - ms);
  const day = 24 * 3600 * 1000;
  // Another root's file, unused for longer than PRUNE_AGE_MS, one unused a bit less; temp files.
  const gone = cacheFileFor(cacheDir, Buffer.from('/tmp/gone'));
  const recent = cacheFileFor(cacheDir, Buffer.from('/tmp/recent'));
  const crashed = path.join(sub, `.${'a'.repeat(32)}.json.tmp-999999-0123abcd`);
  const young = path.join(sub, `.${'b'.repeat(32)}.json.tmp-999999-0123abcd`);
  const ours = path.join(sub, `.${'c'.repeat(32)}.json.tmp-${process.pid}-0123abcd`);
  const oldTmp = path.join(cacheDir, '.digests-v1.json.tmp-7942-31a21b17');
  const oldFile = path.join(cacheDir, OLD_CACHE_FILE);
  const unrelated = path.join(cacheDir, 'notes.json');
  for (const p of [gone, recent, crashed, young, ours, oldTmp, oldFile, unrelated]) await fsp.writeFile(p, '');
  await fsp.utimes(gone, ago(PRUNE_AGE_MS + day), ago(PRUNE_AGE_MS + day));
  await fsp.utimes(recent, ago(PRUNE_AGE_MS - day), ago(PRUNE_AGE_MS - day));
  for (const p of [crashed, ours, oldTmp, unrelated, oldFile]) await fsp.utimes(p, ago(STALE_TMP_MS + 60_000), ago(STALE_TMP_MS + 60_000));
  await fsp.utimes(young, ago(STALE_TMP_MS - 60_000), ago(STALE_TMP_MS - 60_000));
  await fsp.utimes(mine, ago(PRUNE_AGE_MS - day), ago(PRUNE_AGE_MS - day));
  const c = await build(cacheDir, [f], [src]); // all found: nothing written, the file only marked used
  expect([c.cache.hits, c.cache.misses]).toEqual([1, 0]);
  expect((await fsp.readdir(sub)).sort()).toEqual([young, ours, recent, mine].map((p) => path.basename(p)).sort());
  expect((await fsp.readdir(cacheDir)).sort()).toEqual([CACHE_SUBDIR, 'notes.json']);
  expect(Date.now() - (await fsp.stat(mine)).mtimeMs).toBeLessThan(day);
});

test('a cache that cannot be written is one warning line, not an error (the build goes on)', async () => {
  const f = path.join(dir, 'a');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(cacheDir);
  await fsp.writeFile(path.join(cacheDir, CACHE_SUBDIR), 'a file where the directory goes');
  const lines: string[] = [];
  const c = await build(cacheDir, [f], [dir], (l) => lines.push(l));
  expect(c.hex).toEqual([sha('x')]);
  expect(lines).toEqual([
    `warning: writing digest cache ${path.join(cacheDir, CACHE_SUBDIR)}: a file of that name is in the way (EEXIST); the build goes on without saving it (fix the permissions or pass --cache-dir <a directory you can write>)`,
  ]);
  expect(await fsp.readdir(cacheDir)).toEqual([CACHE_SUBDIR]); // no temp file left
});

test('cacheDir false: nothing found, nothing written', async () => {
  const f = path.join(dir, 'a');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const c = await build(false, [f]);
  expect([c.cache.hits, c.cache.misses]).toEqual([0, 1]);
  expect(await fsp.readdir(dir)).toEqual(['a']);
});

test('defaultCacheDir follows XDG_CACHE_HOME, else ~/.cache/vrift', () => {
  expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/y' })).toBe('/x/y/vrift');
  expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative' })).toBe(path.join(os.homedir(), '.cache', 'vrift'));
  expect(defaultCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'vrift'));
});

test('casObjectPath: 2 hex / 62 hex, perm.mtime.batch suffix for non-primary objects', () => {
  const h = 'ab' + 'c'.repeat(62);
  expect(casObjectPath(Buffer.from('/vrift'), h).toString()).toBe(`/vrift/.cas/ab/${'c'.repeat(62)}`);
  expect(casObjectPath(Buffer.from('/vrift'), h, { perm: 0o755, mtime: 1700000000, batch: 0 }).toString()).toBe(`/vrift/.cas/ab/${'c'.repeat(62)}.0755.1700000000.0`);
  expect(casObjectPath(Buffer.from('/vrift'), h, { perm: 0o4755, mtime: 0, batch: 2 }).toString()).toBe(`/vrift/.cas/ab/${'c'.repeat(62)}.4755.0.2`);
  expect(() => casObjectPath(Buffer.from('/vrift'), 'xyz')).toThrow();
});
