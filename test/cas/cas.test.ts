import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DigestCache, sha256File, casObjectPath, defaultCacheDir, CACHE_FILE, type FileBatch } from '../../src/cas';
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
  await expect(sha256File(path.join(dir, 'nope'))).rejects.toThrow(/hashing file .*nope/);
});

/** A FileBatch of host files (lstat now). */
const batchOf = async (files: string[]): Promise<FileBatch> => {
  const keys = await Promise.all(files.map(keyOf));
  return { count: files.length, path: (i) => Buffer.from(files[i]), key: (i) => keys[i] };
};

/** One build's use of the cache: lookup, hash what was not found, save; the digests and the cache. */
async function build(cacheDir: string | false, files: string[]): Promise<{ hex: string[]; cache: DigestCache }> {
  const cache = await DigestCache.open(cacheDir);
  const batch = await batchOf(files);
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
  expect((await fsp.readdir(cacheDir)).sort()).toEqual([CACHE_FILE]);

  const c2 = await build(cacheDir, [f]);
  expect(c2.hex).toEqual([sha('hello')]);
  expect([c2.cache.hits, c2.cache.misses]).toEqual([1, 0]);

  await fsp.writeFile(f, 'HELLO'); // same size, new mtime
  await fsp.utimes(f, 1000, 1000);
  const c3 = await build(cacheDir, [f]);
  expect(c3.hex).toEqual([sha('HELLO')]);
  expect([c3.cache.hits, c3.cache.misses]).toEqual([0, 1]);
});

test('digest cache: records of other paths are kept across builds, the same path given twice is recorded once', async () => {
  const names = ['a', 'b', 'c', 'd'].map((n) => path.join(dir, n));
  for (const n of names) {
    await fsp.writeFile(n, `content of ${n}`);
    await fsp.utimes(n, 500, 500);
  }
  const cacheDir = path.join(dir, 'cache');
  await build(cacheDir, [names[0], names[1], names[0]]);
  await build(cacheDir, [names[2]]);
  await build(cacheDir, [names[3], names[1]]); // b found, d added, a and c copied
  const recorded = JSON.parse(await fsp.readFile(path.join(cacheDir, CACHE_FILE), 'utf8')) as { version: number; files: Record<string, { sha256: string }> };
  expect(Object.keys(recorded.files).map((k) => Buffer.from(k, 'base64').toString()).sort()).toEqual(names);
  for (const n of names) expect(recorded.files[Buffer.from(n).toString('base64')].sha256).toBe(sha(`content of ${n}`));
  const again = await build(cacheDir, [...names].reverse());
  expect([again.cache.hits, again.cache.misses]).toEqual([4, 0]);
  expect(again.hex).toEqual([...names].reverse().map((n) => sha(`content of ${n}`)));
});

test('digest cache: a file written by the previous whole-object format is read (same bytes as JSON.stringify gave)', async () => {
  const f = path.join(dir, 'old');
  await fsp.writeFile(f, 'old');
  await fsp.utimes(f, 500, 500);
  const k = await keyOf(f);
  const cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(cacheDir);
  const rec = { size: String(k.size), mtimeNs: String(k.mtimeNs), ctimeNs: String(k.ctimeNs), ino: String(k.ino), sha256: 'a'.repeat(64) };
  const other = { size: '1', mtimeNs: '2', ino: '3', sha256: 'b'.repeat(64) }; // no ctimeNs: never found, kept
  await fsp.writeFile(path.join(cacheDir, CACHE_FILE), JSON.stringify({ version: 1, files: { [Buffer.from('/elsewhere').toString('base64')]: other, [Buffer.from(f).toString('base64')]: rec } }));
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
  await fsp.mkdir(cacheDir);
  await fsp.writeFile(path.join(cacheDir, CACHE_FILE), '{not json');
  const f = path.join(dir, 'a');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const c = await build(cacheDir, [f]);
  expect([c.cache.hits, c.cache.misses]).toEqual([0, 1]);
  expect(JSON.parse(await fsp.readFile(path.join(cacheDir, CACHE_FILE), 'utf8')).version).toBe(1);
  // A record followed by garbage: what precedes the garbage is still read.
  const good = await fsp.readFile(path.join(cacheDir, CACHE_FILE), 'latin1');
  await fsp.writeFile(path.join(cacheDir, CACHE_FILE), good.slice(0, -2) + ',garbage' + 'x'.repeat(10000));
  const d = await build(cacheDir, [f]);
  expect([d.cache.hits, d.cache.misses]).toEqual([1, 0]);
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
