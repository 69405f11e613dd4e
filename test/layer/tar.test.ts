import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { writeLayer, writeFileLayer } from '../../src/layer/tar';
import { MEDIA_TYPE_LAYER_GZIP, type LayerEntry } from '../../src/layer/types';
import { VriftError } from '../../src/errors';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-tar-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const T = (sec: number) => ({ sec: BigInt(sec), nsec: 0 });
const D = (p: string | Buffer, mode = 0o755, mtime = 1000): LayerEntry => ({
  type: 'directory', path: Buffer.isBuffer(p) ? p : Buffer.from(p), mode: 0o040000 | mode, uid: 0, gid: 0, mtime: T(mtime),
});
const F = (p: string | Buffer, content: string | Buffer, mode = 0o644, extra: Partial<LayerEntry> = {}): LayerEntry => {
  const c = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return {
    type: 'file', path: Buffer.isBuffer(p) ? p : Buffer.from(p), mode: 0o100000 | mode, uid: 0, gid: 0, mtime: T(2000),
    size: BigInt(c.length), source: { content: c }, nlink: 1, ...extra,
  } as LayerEntry;
};
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
/** `tar -tvf` lines of a layer, via the system tar (GNU tar). */
const tarList = (file: string, verbose = true) => execFileSync('tar', [verbose ? '-tvzf' : '-tzf', file]).toString().trimEnd().split('\n');
/** Extract as root with GNU tar, keeping owners and permissions. */
const extract = async (file: string) => {
  const to = path.join(dir, 'x');
  await fsp.mkdir(to);
  execFileSync('tar', ['-xzpf', file, '-C', to], { stdio: ['ignore', 'pipe', 'pipe'] });
  return to;
};

test('digest and diffID match the bytes; gzip header has no name and mtime 0', async () => {
  const l = await writeLayer([D('/a'), F('/a/f', 'hello')], path.join(dir, 'l.tgz'));
  const gz = readFileSync(l.path);
  expect(l.mediaType).toBe(MEDIA_TYPE_LAYER_GZIP);
  expect(l.size).toBe(gz.length);
  expect(l.digest).toBe(sha(gz));
  expect(l.diffID).toBe(sha(gunzipSync(gz)));
  expect(gz.subarray(0, 3)).toEqual(Buffer.from([0x1f, 0x8b, 8]));
  expect(gz[3]).toBe(0); // FLG: no FNAME/FCOMMENT/FEXTRA
  expect(gz.readUInt32LE(4)).toBe(0); // MTIME
  expect(tarList(l.path)).toEqual([
    'drwxr-xr-x root/root         0 1970-01-01 00:16 a/',
    '-rw-r--r-- root/root         5 1970-01-01 00:33 a/f',
  ]);
  expect(await fsp.readdir(dir)).toEqual(['l.tgz']);
});

test('writing the same entries twice gives identical bytes', async () => {
  const es = () => [D('/a'), F('/a/f', 'x'.repeat(100000)), { ...D('/a/d', 0o700), uid: 7, gid: 8 }];
  const a = await writeLayer(es(), path.join(dir, 'a.tgz'));
  const b = await writeLayer(es(), path.join(dir, 'b.tgz'));
  expect(a.digest).toBe(b.digest);
  expect(readFileSync(a.path).equals(readFileSync(b.path))).toBe(true);
});

test('PAX path/linkpath for names over 100 and 255 bytes, extracted intact by GNU tar', async () => {
  const c1 = 'c'.repeat(120);
  const long1 = `/vrift/${c1}`; // one 120-byte component: does not fit ustar's 100-byte name field
  const deep = `/vrift/${'d'.repeat(200)}`;
  const long2 = `${deep}/${'e'.repeat(200)}`; // 415 bytes
  const es: LayerEntry[] = [
    D('/vrift'), F(long1, 'one'), D(deep),
    F(long2, 'two', 0o600),
    { type: 'hardlink', path: Buffer.from(`${deep}/hl`), linkTo: Buffer.from(long2), mode: 0o100600, uid: 0, gid: 0, mtime: T(2000), size: 3n, nlink: 2 },
    { type: 'symlink', path: Buffer.from('/vrift/sl'), target: Buffer.from(`${'d'.repeat(200)}/${'e'.repeat(200)}`), mode: 0o120777, uid: 0, gid: 0, mtime: T(2000) },
  ];
  const l = await writeLayer(es, path.join(dir, 'l.tgz'));
  const names = tarList(l.path, false);
  expect(names).toEqual(['vrift/', long1.slice(1), deep.slice(1) + '/', long2.slice(1), `${deep.slice(1)}/hl`, 'vrift/sl']);
  const x = await extract(l.path);
  expect(await fsp.readFile(path.join(x, long2), 'utf8')).toBe('two');
  const st = await fsp.lstat(path.join(x, deep, 'hl'));
  expect(st.nlink).toBe(2);
  expect(st.ino).toBe((await fsp.lstat(path.join(x, long2))).ino);
  expect(await fsp.readlink(path.join(x, 'vrift/sl'))).toBe(`${'d'.repeat(200)}/${'e'.repeat(200)}`);
});

test('non-UTF-8 names survive byte for byte (PAX hdrcharset=BINARY)', async () => {
  const name = Buffer.concat([Buffer.from('/vrift/caf'), Buffer.from([0xe9, 0xff]), Buffer.from('.txt')]); // latin1, not UTF-8
  const l = await writeLayer([D('/vrift'), F(name, 'latin')], path.join(dir, 'l.tgz'));
  const x = await extract(l.path);
  const got = await fsp.readdir(path.join(x, 'vrift'), { encoding: 'buffer' });
  expect(got).toEqual([name.subarray('/vrift/'.length)]);
  expect(readFileSync(Buffer.concat([Buffer.from(x), name])).toString()).toBe('latin');
});

test('uid/gid beyond ustar octal and a pre-1970 mtime go through PAX and extract exactly', async () => {
  const big = 4_000_000; // > 0o7777777
  const l = await writeLayer(
    [D('/a'), { ...F('/a/f', 'z'), uid: big, gid: big + 1, mtime: T(-86400) }, { ...F('/a/g', 'y'), mtime: T(2 ** 32) }],
    path.join(dir, 'l.tgz'),
  );
  const x = await extract(l.path);
  const st = await fsp.lstat(path.join(x, 'a/f'));
  expect([st.uid, st.gid, Math.round(st.mtimeMs / 1000)]).toEqual([big, big + 1, -86400]);
  expect(Math.round((await fsp.lstat(path.join(x, 'a/g'))).mtimeMs / 1000)).toBe(2 ** 32);
});

test('a mode of 0 is written as 0, not as tar-stream default', async () => {
  const l = await writeLayer([D('/a'), F('/a/f', 'q', 0), D('/a/d', 0)], path.join(dir, 'l.tgz'));
  const x = await extract(l.path);
  expect((await fsp.lstat(path.join(x, 'a/f'))).mode).toBe(0o100000);
  expect((await fsp.lstat(path.join(x, 'a/d'))).mode).toBe(0o040000);
});

test('file content streamed from disk; a file that changed since hashing fails and leaves nothing', async () => {
  const src = path.join(dir, 'src.bin');
  const data = Buffer.alloc(3 << 20, 7);
  await fsp.writeFile(src, data);
  const good = createHash('sha256').update(data).digest('hex');
  const out = path.join(dir, 'out');
  await fsp.mkdir(out);
  const ok = await writeLayer([D('/a'), { ...F('/a/f', ''), size: BigInt(data.length), source: { file: src }, sha256: good } as LayerEntry], path.join(out, 'ok.tgz'));
  const x = await extract(ok.path);
  expect(readFileSync(path.join(x, 'a/f')).equals(data)).toBe(true);

  const bad = 'f'.repeat(64);
  await expect(writeLayer([D('/a'), { ...F('/a/f', ''), size: BigInt(data.length), source: { file: src }, sha256: bad } as LayerEntry], path.join(out, 'bad.tgz')))
    .rejects.toThrow(/changed since it was hashed/);
  await expect(writeLayer([D('/a'), { ...F('/a/f', ''), size: BigInt(data.length + 1), source: { file: src } } as LayerEntry], path.join(out, 'bad.tgz')))
    .rejects.toThrow(VriftError);
  expect(await fsp.readdir(out)).toEqual(['ok.tgz']);
});

test('a source file deleted (or replaced by a directory) after planning: one line saying so and what to do, no raw errno, nothing left', async () => {
  const src = path.join(dir, 'gone.bin');
  await fsp.writeFile(src, 'data');
  const out = path.join(dir, 'out');
  await fsp.mkdir(out);
  const entry = { ...F('/a/f', ''), size: 4n, source: { file: src } } as LayerEntry;
  await fsp.rm(src);
  const err = await writeLayer([D('/a'), entry], path.join(out, 'l.tgz')).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(VriftError);
  expect((err as Error).message).toBe(`reading file "${src}" for the layer: it was deleted or replaced since it was hashed (ENOENT); build again once the source is stable`);
  await fsp.mkdir(src);
  await expect(writeLayer([D('/a'), entry], path.join(out, 'l.tgz'))).rejects.toThrow(/it was deleted or replaced since it was hashed \(EISDIR\); build again/);
  expect(await fsp.readdir(out)).toEqual([]);
});

test('malformed entries are refused and leave no file', async () => {
  const out = path.join(dir, 'o.tgz');
  await expect(writeLayer([D('/a'), F('/a/../etc/passwd', 'x')], out)).rejects.toThrow(/"\.\." component/);
  await expect(writeLayer([F('relative', 'x')], out)).rejects.toThrow(/not absolute/);
  await expect(writeLayer([D('/a'), { type: 'hardlink', path: Buffer.from('/a/h'), linkTo: Buffer.from('/a/f'), mode: 0o100644, uid: 0, gid: 0, mtime: T(0), size: 1n, nlink: 2 }, F('/a/f', 'x')], out))
    .rejects.toThrow(/precedes its target/);
  await expect(writeLayer([{ ...D('/a'), mode: 0o100755 }], out)).rejects.toThrow(/does not match type/);
  expect(await fsp.readdir(dir)).toEqual([]);
});

test('writeFileLayer adds parent directories and is identical across runs', async () => {
  const so = path.join(dir, 'lib.so');
  await fsp.writeFile(so, 'ELF...');
  const a = await writeFileLayer([{ path: '/usr/lib/vrift/libvrift.so', mode: 0o755, srcPath: so }], path.join(dir, 'a.tgz'));
  await fsp.utimes(so, 12345, 12345); // host mtime is not used
  const b = await writeFileLayer([{ path: '/usr/lib/vrift/libvrift.so', mode: 0o755, srcPath: so }], path.join(dir, 'b.tgz'));
  expect(a.digest).toBe(b.digest);
  expect(tarList(a.path)).toEqual([
    'drwxr-xr-x root/root         0 1970-01-01 00:00 usr/',
    'drwxr-xr-x root/root         0 1970-01-01 00:00 usr/lib/',
    'drwxr-xr-x root/root         0 1970-01-01 00:00 usr/lib/vrift/',
    '-rwxr-xr-x root/root         6 1970-01-01 00:00 usr/lib/vrift/libvrift.so',
  ]);
  await expect(writeFileLayer([{ path: '/x/y', mode: 0o644, srcPath: path.join(dir, 'missing') }], path.join(dir, 'c.tgz'))).rejects.toThrow(VriftError);
  await expect(writeFileLayer([{ path: 'x/y', mode: 0o644, content: Buffer.from('') }], path.join(dir, 'c.tgz'))).rejects.toThrow(VriftError);
  expect((await fsp.readdir(dir)).sort()).toEqual(['a.tgz', 'b.tgz', 'lib.so']);
});

test('an unwritable output location fails with VriftError instead of hanging', async () => {
  const big = Buffer.alloc(4 << 20, 3); // more than the stream buffers hold, so the writer would wait for 'drain'
  await expect(writeLayer([D('/a'), F('/a/f', big)], path.join(dir, 'missing-dir', 'l.tgz'))).rejects.toThrow(/writing layer .*missing-dir.*ENOENT/);
  const src = path.join(dir, 'src.bin');
  await fsp.writeFile(src, big);
  await expect(writeLayer([D('/a'), { ...F('/a/f', ''), size: BigInt(big.length), source: { file: src } } as LayerEntry], path.join(dir, 'missing-dir', 'l.tgz')))
    .rejects.toThrow(VriftError);
  expect(await fsp.readdir(dir)).toEqual(['src.bin']);
});

test('golden: the tar bytes (diffID) of a fixed entry list do not drift', async () => {
  // Any change here changes every image digest vrift produces: update the
  // constant only for an intended format change, and say so in the commit.
  const es: LayerEntry[] = [
    D('/vrift', 0o755, 1_700_000_000),
    D('/vrift/.cas', 0o755, 1_700_000_000),
    D('/vrift/.cas/2c', 0o755, 1_700_000_000),
    F(`/vrift/.cas/2c/${'f'.repeat(62)}`, 'golden\n', 0o644, { nlink: 3, mtime: T(1_600_000_000) }),
    D('/vrift/app', 0o750, 1_650_000_000),
    { type: 'hardlink', path: Buffer.from('/vrift/app/a'), linkTo: Buffer.from(`/vrift/.cas/2c/${'f'.repeat(62)}`), mode: 0o100644, uid: 0, gid: 0, mtime: T(1_600_000_000), size: 7n, nlink: 3 },
    { type: 'hardlink', path: Buffer.concat([Buffer.from('/vrift/app/'), Buffer.from([0xff]), Buffer.from('x'.repeat(150))]), linkTo: Buffer.from(`/vrift/.cas/2c/${'f'.repeat(62)}`), mode: 0o100644, uid: 0, gid: 0, mtime: T(1_600_000_000), size: 7n, nlink: 3 },
    { type: 'symlink', path: Buffer.from('/vrift/app/l'), target: Buffer.from('a'), mode: 0o120777, uid: 1000, gid: 1000, mtime: T(1_650_000_000) },
  ];
  const l = await writeLayer(es, path.join(dir, 'g.tgz'));
  expect(l.diffID).toBe(GOLDEN_DIFF_ID);
});
const GOLDEN_DIFF_ID = 'sha256:397af82506ebdb0448a3021dd8ee8894aee8aea0314b4bebf927fb32e84f850b';

test('zstd: the same tar as gzip (same diffID), digest over the zstd bytes, identical across runs', async () => {
  const es = (): LayerEntry[] => [D('/a'), F('/a/f', 'x'.repeat(100000)), F(Buffer.from('/a/caf\xe9', 'latin1'), 'y'), { ...D('/a/d', 0o700), uid: 7, gid: 8 }];
  const gz = await writeLayer(es(), path.join(dir, 'g.tgz'));
  const z1 = await writeLayer(es(), path.join(dir, 'z1.tar.zst'), { compression: 'zstd' });
  const z2 = await writeLayer(es(), path.join(dir, 'z2.tar.zst'), { compression: 'zstd' });
  expect(z1.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
  expect(z1.diffID).toBe(gz.diffID);
  const bytes = readFileSync(z1.path);
  expect(bytes.readUInt32LE(0)).toBe(0xfd2fb528);
  expect([z1.digest, z1.size]).toEqual([sha(bytes), bytes.length]);
  expect(sha(execFileSync('zstd', ['-dc', z1.path], { maxBuffer: 64 << 20 }))).toBe(z1.diffID);
  expect([z2.digest, z2.diffID]).toEqual([z1.digest, z1.diffID]);
});

test('zstd without zstd-napi: refused with what to install, nothing written', async () => {
  await jest.isolateModulesAsync(async () => {
    jest.doMock('zstd-napi', () => {
      throw new Error('Cannot find module zstd-napi');
    });
    const { writeLayer: w } = await import('../../src/layer/tar');
    await expect(w([D('/a')], path.join(dir, 'z.tar.zst'), { compression: 'zstd' })).rejects.toThrow(
      'compressing a layer with zstd: zstd needs the optional package zstd-napi, which is not installed here; run `npm install zstd-napi` (it builds libzstd with node-gyp) or use --compression gzip',
    );
  });
  expect(await fsp.readdir(dir)).toEqual([]);
});
