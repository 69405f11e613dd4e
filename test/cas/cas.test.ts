import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DigestCache, sha256File, casObjectPath, defaultCacheDir, CACHE_FILE } from '../../src/cas';
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

test('digest cache: miss, persist, hit on reopen, miss after the file changes', async () => {
  const f = path.join(dir, 'a.txt');
  await fsp.writeFile(f, 'hello');
  await fsp.utimes(f, 500, 500); // not "racy" (see the next test)
  const cacheDir = path.join(dir, 'cache');
  const c1 = await DigestCache.open(cacheDir);
  const h1 = await c1.sha256(Buffer.from(f), await keyOf(f));
  expect(h1).toBe(createHash('sha256').update('hello').digest('hex'));
  expect([c1.hits, c1.misses]).toEqual([0, 1]);
  await c1.save();
  expect((await fsp.readdir(cacheDir)).sort()).toEqual([CACHE_FILE]);

  const c2 = await DigestCache.open(cacheDir);
  expect(await c2.sha256(Buffer.from(f), await keyOf(f))).toBe(h1);
  expect([c2.hits, c2.misses]).toEqual([1, 0]);

  await fsp.writeFile(f, 'HELLO'); // same size, new mtime
  await fsp.utimes(f, 1000, 1000);
  const c3 = await DigestCache.open(cacheDir);
  expect(await c3.sha256(Buffer.from(f), await keyOf(f))).toBe(createHash('sha256').update('HELLO').digest('hex'));
  expect([c3.hits, c3.misses]).toEqual([0, 1]);
});

test('digest cache: a same-size rewrite with its mtime set back (touch -r) is re-hashed (st_ctime in the key)', async () => {
  const f = path.join(dir, 'back.txt');
  await fsp.writeFile(f, 'AAAA');
  await fsp.utimes(f, 500, 500);
  const cacheDir = path.join(dir, 'cache-back');
  const c1 = await DigestCache.open(cacheDir);
  await c1.sha256(Buffer.from(f), await keyOf(f));
  await c1.save();
  await new Promise((r) => setTimeout(r, 20)); // a later ctime
  await fsp.writeFile(f, 'BBBB');
  await fsp.utimes(f, 500, 500); // same size, same mtime, same inode
  const c2 = await DigestCache.open(cacheDir);
  expect(await c2.sha256(Buffer.from(f), await keyOf(f))).toBe(createHash('sha256').update('BBBB').digest('hex'));
  expect([c2.hits, c2.misses]).toEqual([0, 1]);
});

test('a file modified just now is hashed but not cached (racy mtime)', async () => {
  const f = path.join(dir, 'fresh');
  await fsp.writeFile(f, 'new');
  const cacheDir = path.join(dir, 'cache');
  const c1 = await DigestCache.open(cacheDir);
  await c1.sha256(Buffer.from(f), await keyOf(f));
  await c1.save();
  const c2 = await DigestCache.open(cacheDir);
  await c2.sha256(Buffer.from(f), await keyOf(f));
  expect([c2.hits, c2.misses]).toEqual([0, 1]);
});

test('a corrupt cache file counts as empty', async () => {
  const cacheDir = path.join(dir, 'cache');
  await fsp.mkdir(cacheDir);
  await fsp.writeFile(path.join(cacheDir, CACHE_FILE), '{not json');
  const f = path.join(dir, 'a');
  await fsp.writeFile(f, 'x');
  await fsp.utimes(f, 500, 500);
  const c = await DigestCache.open(cacheDir);
  expect(c.size).toBe(0);
  await c.sha256(Buffer.from(f), await keyOf(f));
  await c.save();
  expect(JSON.parse(await fsp.readFile(path.join(cacheDir, CACHE_FILE), 'utf8')).version).toBe(1);
});

test('defaultCacheDir follows XDG_CACHE_HOME, else ~/.cache/vrift', () => {
  expect(defaultCacheDir({ XDG_CACHE_HOME: '/x/y' })).toBe('/x/y/vrift');
  expect(defaultCacheDir({ XDG_CACHE_HOME: 'relative' })).toBe(path.join(os.homedir(), '.cache', 'vrift'));
  expect(defaultCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'vrift'));
});

test('casObjectPath: 2 hex / 62 hex, mode suffix for non-primary objects', () => {
  const h = 'ab' + 'c'.repeat(62);
  expect(casObjectPath(Buffer.from('/vrift'), h).toString()).toBe(`/vrift/.cas/ab/${'c'.repeat(62)}`);
  expect(casObjectPath(Buffer.from('/vrift'), h, 0o755).toString()).toBe(`/vrift/.cas/ab/${'c'.repeat(62)}.0755`);
  expect(() => casObjectPath(Buffer.from('/vrift'), 'xyz')).toThrow();
});
