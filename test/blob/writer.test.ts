/**
 * encodeBlob / writeBlobFile / decodeBlob: determinism, validation of bad
 * input, REACHABLE computation, and the decoder's rejection of corrupt blobs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import * as F from '../../src/blob/format';
import { blobRowsOf, encodeBlob, encodeBlobRows, writeBlobFile, type BlobEntry, type BlobOptions } from '../../src/blob/writer';
import { checkHeader, decodeBlob, PSFS_EINVAL, PSFS_ENOTSUP } from '../../src/blob/reader';
import { VriftError } from '../../src/errors';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

let ino = 100n;
function ent(p: string | Buffer, mode: number, extra: Partial<BlobEntry> = {}): BlobEntry {
  return {
    path: typeof p === 'string' ? Buffer.from(p) : p,
    mode,
    uid: 1000,
    gid: 1000,
    nlink: 1,
    size: 10n,
    blocks: 8n,
    blksize: 4096,
    ino: ino++,
    dev: 0x803n,
    rdev: 0n,
    atime: { sec: 1_700_000_000n, nsec: 1 },
    mtime: { sec: 1_700_000_001n, nsec: 2 },
    ctime: { sec: 1_700_000_002n, nsec: 3 },
    ...extra,
  };
}
const dir = (p: string | Buffer, perm = 0o755): BlobEntry => ent(p, S_IFDIR | perm, { nlink: 2, size: 4096n });
const file = (p: string | Buffer, perm = 0o644): BlobEntry => ent(p, S_IFREG | perm);
const link = (p: string, target: string): BlobEntry => ent(p, S_IFLNK | 0o777, { target: Buffer.from(target), size: BigInt(target.length) });

function sample(): BlobOptions {
  ino = 100n;
  return {
    roots: [Buffer.from('/vrift')],
    entries: [
      dir('/vrift'),
      dir('/vrift/a'),
      file('/vrift/a/f'),
      file('/vrift/a/setuid', 0o4755),
      file('/vrift/a/none', 0o000),
      link('/vrift/a/l', '../b/x'),
      dir('/vrift/b', 0o700),
      file('/vrift/b/x'),
      dir('/vrift/b/c'),
      file('/vrift/b/c/y'),
      file(Buffer.from([...Buffer.from('/vrift/a/'), 0xff, 0xfe, 0x80])),
      file(`/vrift/a/${'n'.repeat(255)}`),
    ],
  };
}

function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  let s = 12345;
  for (let i = a.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

describe('encodeBlob', () => {
  test('is deterministic: same input twice, and the same entries in another order, give identical bytes', () => {
    const a = encodeBlob(sample());
    const b = encodeBlob(sample());
    const c = encodeBlob({ ...sample(), entries: shuffle(sample().entries) });
    expect(b.equals(a)).toBe(true);
    expect(c.equals(a)).toBe(true);
  });

  test('round trip through decodeBlob keeps every field, sorts by path bytes, sets REACHABLE', () => {
    const opts = sample();
    const d = decodeBlob(encodeBlob({ ...opts, flags: F.H_DEV_RUNTIME }));
    expect(d.header.flags).toBe(F.H_DEV_RUNTIME);
    expect(d.header.version).toBe(F.VERSION);
    expect(d.header.contentVersion).toBe(F.CONTENT_VERSION_MAX);
    expect(d.roots).toEqual(opts.roots);
    const sorted = [...opts.entries].sort((x, y) => Buffer.compare(x.path, y.path));
    expect(d.entries.map((e) => e.path)).toEqual(sorted.map((e) => e.path));
    for (const [i, e] of d.entries.entries()) {
      const { flags, ...rest } = e;
      expect(rest).toEqual(sorted[i]);
      // /vrift/b is 0700: everything below it is not reachable by every caller.
      const under700 = e.path.toString('latin1').startsWith('/vrift/b/');
      expect({ p: e.path.toString('latin1'), reachable: (flags & F.E_REACHABLE) !== 0 }).toEqual({
        p: e.path.toString('latin1'),
        reachable: !under700,
      });
    }
  });

  test('header: sections aligned and in order, counts, crcs valid, bucket_count a power of two >= 2x entries', () => {
    const blob = encodeBlob(sample());
    const h = decodeBlob(blob).header;
    expect(checkHeader(blob)).toEqual({ code: 0, reason: 'ok' });
    expect(h.fileSize).toBe(BigInt(blob.length));
    expect(h.entryCount).toBe(sample().entries.length);
    expect(h.bucketCount & (h.bucketCount - 1)).toBe(0);
    expect(h.bucketCount).toBeGreaterThanOrEqual(2 * h.entryCount);
    for (const off of [h.rootsOff, h.bucketsOff, h.entriesOff, h.stringsOff]) expect(off % 8n).toBe(0n);
    expect(blob.length % 8).toBe(0);
    expect(crc32(blob.subarray(F.HEADER_SIZE))).toBe(h.bodyCrc32);
  });

  test('max_probe is the real worst case for a large table (10000 entries)', () => {
    const entries = [dir('/r')];
    for (let i = 0; i < 100; i++) {
      entries.push(dir(`/r/d${i}`));
      for (let j = 0; j < 99; j++) entries.push(file(`/r/d${i}/f${j}`));
    }
    const d = decodeBlob(encodeBlob({ roots: [Buffer.from('/r')], entries }));
    // decodeBlob checks every bucket is within max_probe of home; check it is tight.
    const mask = d.header.bucketCount - 1;
    let worst = 0;
    d.buckets.forEach((b, s) => {
      if (b.entry) worst = Math.max(worst, ((s - (b.hash & mask) + d.header.bucketCount) & mask) + 1);
    });
    expect(d.header.maxProbe).toBe(worst);
    expect(d.entries).toHaveLength(10001);
  });

  test('multiple roots', () => {
    const d = decodeBlob(encodeBlob({ roots: [Buffer.from('/x'), Buffer.from('/y/z')], entries: [dir('/x'), dir('/y/z'), file('/y/z/f')] }));
    expect(d.roots.map(String)).toEqual(['/x', '/y/z']);
  });

  test('names sorting between a directory and its children (bytes below "/"): parents and REACHABLE as a map of paths says', () => {
    // Byte order is not depth-first: "/r/a" < "/r/a b" < "/r/a.b" < "/r/a.b/y" < "/r/a/x".
    const names = ['a', 'a\x01', 'a b', 'a b/f', 'a-c', 'a.b', 'a.b/y', 'a.b/y/z', 'a/x', 'a/x.y', 'a/x.y/q', 'a/x/deep', 'a/x/deep/f', 'a0', 'a0/f', 'b\xff', 'b\xff/f'];
    const closed = new Set(['a', 'a.b/y', 'a/x.y']); // 0o700: nothing below is reachable by every caller
    const isFile = (n: string): boolean => /\/(f|z|q)$/.test(n) || n === 'a\x01';
    const entries = [dir('/r'), ...names.map((n) => (isFile(n) ? file(Buffer.from(`/r/${n}`, 'latin1')) : dir(Buffer.from(`/r/${n}`, 'latin1'), closed.has(n) ? 0o700 : 0o755)))];
    // The oracle: every directory between the root and the path, by its path.
    const byPath = new Map(entries.map((e) => [e.path.toString('latin1'), e]));
    const reachable = (p: string): boolean => {
      for (let q = p.slice(0, p.lastIndexOf('/')); q.length > '/r'.length; q = q.slice(0, q.lastIndexOf('/'))) {
        if ((byPath.get(q)!.mode & 0o111) !== 0o111) return false;
      }
      return true;
    };
    const d = decodeBlob(encodeBlob({ roots: [Buffer.from('/r')], entries: [...entries].reverse() }));
    expect(d.entries.map((e) => e.path.toString('latin1'))).toEqual([...byPath.keys()].sort((x, y) => Buffer.compare(Buffer.from(x, 'latin1'), Buffer.from(y, 'latin1'))));
    const got = d.entries.map((e) => [e.path.toString('latin1'), (e.flags & F.E_REACHABLE) !== 0]);
    expect(got).toEqual(d.entries.map((e) => [e.path.toString('latin1'), reachable(e.path.toString('latin1'))]));
    expect(got.filter(([, r]) => !r).map(([p]) => p)).toEqual(['/r/a.b/y/z', '/r/a/x', '/r/a/x.y', '/r/a/x.y/q', '/r/a/x/deep', '/r/a/x/deep/f']);
    // The same parent missing, or a file, with such names in between.
    const without = entries.filter((e) => e.path.toString('latin1') !== '/r/a');
    expect(() => encodeBlob({ roots: [Buffer.from('/r')], entries: without })).toThrow(/"\/r\/a\/x": parent is missing or not a directory/);
    expect(() => encodeBlob({ roots: [Buffer.from('/r')], entries: [...without, file('/r/a')] })).toThrow(/"\/r\/a\/x": parent is missing or not a directory/);
  });

  test('encodeBlobRows refuses rows out of path order', () => {
    const es = [dir('/r'), file('/r/b'), file('/r/a')];
    const rows = blobRowsOf(es);
    expect(encodeBlobRows(rows, [Buffer.from('/r')]).equals(encodeBlob({ roots: [Buffer.from('/r')], entries: [...es].reverse() }))).toBe(true);
    const swapped = { ...rows, path: (k: number) => rows.path(k === 1 ? 2 : k === 2 ? 1 : k) };
    expect(() => encodeBlobRows(swapped, [Buffer.from('/r')])).toThrow(/"\/r\/a" comes after "\/r\/b": rows not in path-byte order \(internal error\)/);
  });

  const bad: [string, () => BlobOptions, RegExp][] = [
    ['no root', () => ({ roots: [], entries: [dir('/r')] }), /need 1\.\.16 domain roots/],
    ['17 roots', () => ({ roots: Array.from({ length: 17 }, (_, i) => Buffer.from(`/r${i}`)), entries: [] }), /need 1\.\.16/],
    ['root "/"', () => ({ roots: [Buffer.from('/')], entries: [dir('/')] }), /other than "\/"/],
    ['root with trailing slash', () => ({ roots: [Buffer.from('/r/')], entries: [dir('/r')] }), /normalized/],
    ['overlapping roots', () => ({ roots: [Buffer.from('/r'), Buffer.from('/r/s')], entries: [dir('/r'), dir('/r/s')] }), /overlap/],
    ['duplicate roots', () => ({ roots: [Buffer.from('/r'), Buffer.from('/r')], entries: [dir('/r')] }), /overlap/],
    ['root without entry', () => ({ roots: [Buffer.from('/r')], entries: [] }), /no directory entry/],
    ['root is a file', () => ({ roots: [Buffer.from('/r')], entries: [file('/r')] }), /no directory entry/],
    ['relative path', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('r/x')] }), /not a normalized/],
    ['"." component', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/./x')] }), /not a normalized/],
    ['".." component', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/../x')] }), /not a normalized/],
    ['"//"', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r//x')] }), /not a normalized/],
    ['NUL byte', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/a\0b')] }), /not a normalized/],
    ['name of 256 bytes', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file(`/r/${'x'.repeat(256)}`)] }), /not a normalized/],
    ['outside every root', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/rx')] }), /outside every domain root/],
    ['duplicate path', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/x'), file('/r/x')] }), /appears twice/],
    ['missing parent', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/a/x')] }), /parent is missing/],
    ['parent not a directory', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/a'), file('/r/a/x')] }), /parent is missing or not a directory/],
    ['symlink without target', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), ent('/r/l', S_IFLNK | 0o777)] }), /needs a target/],
    ['target on a file', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/f'), { ...file('/r/g'), target: Buffer.from('x') }] }), /only a symlink/],
    ['unknown header flag', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r')], flags: 8 }), /unknown header flags 0x8/],
    ['nsec out of range', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), file('/r/f', 0o644)].map((e, i) => (i ? { ...e, mtime: { sec: 0n, nsec: 1e9 } } : e)) }), /nanoseconds/],
    ['negative size', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), { ...file('/r/f'), size: -1n }] }), /size/],
    ['uid above 32 bits', () => ({ roots: [Buffer.from('/r')], entries: [dir('/r'), { ...file('/r/f'), uid: 2 ** 32 }] }), /uid/],
  ];
  test.each(bad)('rejects %s with a VriftError', (_name, make, message) => {
    let err: unknown;
    try {
      encodeBlob(make());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VriftError);
    expect((err as Error).message).toMatch(/^encoding PSFS blob: /);
    expect((err as Error).message).toMatch(message);
  });
});

describe('writeBlobFile', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-writer-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('writes the encoded bytes atomically and reports size, count and sha256 digest', async () => {
    const out = path.join(tmp, 'psfs.blob');
    fs.writeFileSync(out, 'old contents');
    const r = await writeBlobFile(out, sample());
    const bytes = fs.readFileSync(out);
    expect(bytes.equals(encodeBlob(sample()))).toBe(true);
    expect(r).toEqual({ size: bytes.length, entryCount: sample().entries.length, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` });
    expect(fs.readdirSync(tmp)).toEqual(['psfs.blob']);
  });

  test('a blob of several 1 MiB chunks: the streamed file equals encodeBlob and decodes back to every entry', async () => {
    ino = 1000n;
    const entries: BlobEntry[] = [dir('/vrift')];
    for (let d = 0; d < 40; d++) {
      entries.push(dir(`/vrift/pkg-${d}`));
      for (let f = 0; f < 500; f++) entries.push(f % 50 === 0 ? link(`/vrift/pkg-${d}/l-${f}`, `m-${f + 1}.js`) : file(`/vrift/pkg-${d}/module-with-a-longer-name-${f}.js`));
    }
    const opts: BlobOptions = { roots: [Buffer.from('/vrift')], entries };
    const out = path.join(tmp, 'big.blob');
    const r = await writeBlobFile(out, opts);
    const bytes = fs.readFileSync(out);
    expect(bytes.length).toBeGreaterThan(3 << 20); // entries and strings span chunk boundaries
    expect(bytes.equals(encodeBlob(opts))).toBe(true);
    expect(r.digest).toBe(`sha256:${createHash('sha256').update(bytes).digest('hex')}`);
    const back = decodeBlob(bytes); // checks both CRCs and every offset
    expect(back.entries.map((e) => e.path.toString())).toEqual(entries.map((e) => e.path.toString()).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    const byPath = new Map(back.entries.map((e) => [e.path.toString(), e]));
    for (const e of entries) {
      const b = byPath.get(e.path.toString())!;
      expect([b.mode, b.ino, b.size, b.target?.toString()]).toEqual([e.mode, e.ino, e.size, e.target?.toString()]);
    }
  });

  test('bad input: VriftError, the previous file untouched, no temp file left', async () => {
    const out = path.join(tmp, 'psfs.blob');
    fs.writeFileSync(out, 'old contents');
    await expect(writeBlobFile(out, { roots: [Buffer.from('/r')], entries: [] })).rejects.toThrow(VriftError);
    expect(fs.readFileSync(out, 'utf8')).toBe('old contents');
    expect(fs.readdirSync(tmp)).toEqual(['psfs.blob']);
  });

  test('unwritable destination: VriftError naming the file, nothing left behind', async () => {
    const out = path.join(tmp, 'no-such-dir', 'psfs.blob');
    await expect(writeBlobFile(out, sample())).rejects.toThrow(/^writing PSFS blob .*no-such-dir\/psfs\.blob: /);
    expect(fs.readdirSync(tmp)).toEqual([]);
    // Destination is a directory: rename fails after the temp file was written; it must be removed.
    const asDir = path.join(tmp, 'd');
    fs.mkdirSync(path.join(asDir, 'x'), { recursive: true });
    await expect(writeBlobFile(asDir, sample())).rejects.toThrow(VriftError);
    expect(fs.readdirSync(tmp)).toEqual(['d']);
  });
});

describe('decodeBlob rejects corrupt blobs', () => {
  const good = encodeBlob(sample());
  const h = F.HEADER;
  /** Copy of `good` with `edit` applied; `fixCrc` recomputes header_crc32 so later checks are reached. */
  const mutate = (edit: (b: Buffer) => void, fixCrc = true): Buffer => {
    const b = Buffer.from(good);
    edit(b);
    if (fixCrc) {
      b.writeUInt32LE(0, h.headerCrc32);
      b.writeUInt32LE(crc32(b.subarray(0, F.HEADER_SIZE)), h.headerCrc32);
    }
    return b;
  };
  const cases: [string, Buffer, RegExp, number][] = [
    ['empty', Buffer.alloc(0), /shorter than the 128-byte header/, -PSFS_EINVAL],
    ['truncated header', good.subarray(0, 100), /shorter than the 128-byte header/, -PSFS_EINVAL],
    ['bad magic', mutate((b) => (b[0] = 0x51)), /bad magic/, -PSFS_EINVAL],
    ['CRLF-mangled magic', mutate((b) => (b[6] = 0x0d)), /bad magic/, -PSFS_EINVAL],
    ['header bit flip (crc not fixed)', mutate((b) => (b[h.entryCount] ^= 1), false), /header checksum/, -PSFS_EINVAL],
    ['version 1 (FNV-1a hash, retired)', mutate((b) => b.writeUInt32LE(1, h.version)), /container version 1 is not supported/, -PSFS_ENOTSUP],
    ['future version', mutate((b) => b.writeUInt32LE(F.VERSION + 1, h.version)), new RegExp(`container version ${F.VERSION + 1} is not supported`), -PSFS_ENOTSUP],
    ['content version 2', mutate((b) => b.writeUInt32LE(2, h.contentVersion)), /content version 2/, -PSFS_ENOTSUP],
    ['unknown header flag', mutate((b) => b.writeUInt32LE(0x80, h.flags)), /unknown header flags 0x80/, -PSFS_ENOTSUP],
    ['truncated body', mutate(() => undefined).subarray(0, good.length - 8), /file_size/, -PSFS_EINVAL],
    ['entry_size 64', mutate((b) => b.writeUInt32LE(64, h.entrySize)), /entry_size/, -PSFS_EINVAL],
    ['bucket_count not a power of two', mutate((b) => b.writeUInt32LE(24, h.bucketCount)), /power of two/, -PSFS_EINVAL],
    ['max_probe 0', mutate((b) => b.writeUInt32LE(0, h.maxProbe)), /max_probe/, -PSFS_EINVAL],
    ['root_count 0', mutate((b) => b.writeUInt32LE(0, h.rootCount)), /root_count/, -PSFS_EINVAL],
    ['misaligned entries', mutate((b) => b.writeBigUInt64LE(b.readBigUInt64LE(h.entriesOff) + 4n, h.entriesOff)), /not 8-aligned/, -PSFS_EINVAL],
    ['strings past the end', mutate((b) => b.writeBigUInt64LE(1n << 40n, h.stringsSize)), /outside the blob/, -PSFS_EINVAL],
    ['sections overlap', mutate((b) => b.writeBigUInt64LE(b.readBigUInt64LE(h.bucketsOff), h.entriesOff)), /overlap/, -PSFS_EINVAL],
  ];
  test.each(cases)('%s', (_name, blob, message, code) => {
    expect(() => decodeBlob(blob)).toThrow(VriftError);
    expect(() => decodeBlob(blob)).toThrow(message);
    expect(checkHeader(blob).code).toBe(code);
  });

  test('unsupported versions say to upgrade, corruption says to rewrite', () => {
    expect(() => decodeBlob(mutate((b) => b.writeUInt32LE(F.VERSION + 1, h.version)))).toThrow(/upgrade/);
    expect(() => decodeBlob(mutate((b) => (b[0] = 0)))).toThrow(/rewrite it/);
  });

  test('body bit flips fail body_crc32 (the header check alone passes)', () => {
    const hd = decodeBlob(good).header;
    for (const off of [Number(hd.bucketsOff) + 1, Number(hd.entriesOff) + 20, good.length - 1]) {
      const b = Buffer.from(good);
      b[off] ^= 0x10;
      expect(checkHeader(b).code).toBe(0);
      expect(() => decodeBlob(b)).toThrow(/body checksum mismatch/);
    }
  });

  test('body-level corruption with a fixed-up body crc is still found', () => {
    const d = decodeBlob(good);
    const withBody = (edit: (b: Buffer) => void): Buffer =>
      mutate((b) => {
        edit(b);
        b.writeUInt32LE(crc32(b.subarray(F.HEADER_SIZE)), h.bodyCrc32);
      });
    const e0 = Number(d.header.entriesOff);
    const firstFull = d.buckets.findIndex((b) => b.entry !== 0);
    const bOff = Number(d.header.bucketsOff) + firstFull * F.BUCKET_SIZE;
    expect(() => decodeBlob(withBody((b) => b.writeUInt32LE(0xffffff, e0 + F.ENTRY.pathOff)))).toThrow(/outside the string table/);
    expect(() => decodeBlob(withBody((b) => b.writeUInt32LE((b.readUInt32LE(bOff) ^ 1) >>> 0, bOff)))).toThrow(/hash does not match/);
    expect(() => decodeBlob(withBody((b) => b.writeUInt32LE(0, bOff + 4)))).toThrow(/not referenced by any bucket/);
    expect(() => decodeBlob(withBody((b) => b.writeUInt32LE(1, e0 + F.ENTRY.reserved)))).toThrow(/reserved/);
  });
});
