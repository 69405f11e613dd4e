/**
 * Hostile PSFS blob corpus (issue 4, item 3).
 *
 * `baseBlob()` encodes a small, valid, deterministic blob with src/blob/writer
 * (two roots, directories, a 0700 directory, symlink cycles, a 41-hop chain,
 * targets leaving the domain, a 255-byte name). `hostileCorpus()` derives one
 * faulty blob per fault from it:
 *
 * - level "header": a fault psfs_view_init must see (magic, versions, sizes,
 *   checksum, flags, counts, section bounds/alignment/overlap, roots, file
 *   size vs. real size). Where the fault is not the checksum itself, the
 *   header CRC is re-signed so that the fault is what is tested. The shim must
 *   reject the whole blob: every answer equals the kernel's.
 * - level "body": the header is valid (re-signed) but buckets, entries or
 *   strings are corrupt, which an O(1) init cannot see. The shim must not
 *   crash, hang or read outside the mapping, and must answer every path
 *   outside the domain exactly as the kernel.
 *
 * The roots (/vrift-hostile, /vrift-hostile2) do not exist on the host, so
 * any answer taken from a blob differs from the kernel's ENOENT: a rejected
 * blob is visible as "no difference", an accepted one as a difference.
 *
 * shim/corpus/ holds the committed output (`<name>.blob`, plus
 * `MANIFEST.tsv`); test/hostile/hostile.test.ts fails when it drifts from
 * this generator, and rewrites it with VRIFT_UPDATE_CORPUS=1.
 */
import { crc32 } from 'node:zlib';
import * as F from '../../src/blob/format';
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import { prngUnit } from '../prng';

export const ROOT = '/vrift-hostile';
export const ROOT2 = '/vrift-hostile2';

/** One corpus member. */
export interface HostileBlob {
  /** File stem, [a-z0-9-]. */
  name: string;
  level: 'valid' | 'header' | 'body';
  /** What is wrong with it, one line. */
  why: string;
  bytes: Buffer;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** Deterministic entry for `path` (synthetic identity, fixed times; with `tagged`, mtime nanoseconds = identity tag i). */
function entry(path: string, mode: number, i: number, target?: string, size?: number, tagged = false): BlobEntry {
  const t = { sec: 1_700_000_000n + BigInt(i), nsec: tagged ? i : i * 1000 };
  const isLink = (mode & 0o170000) === S_IFLNK;
  return {
    path: Buffer.from(path, 'latin1'),
    mode,
    uid: 0,
    gid: 0,
    nlink: (mode & 0o170000) === S_IFDIR ? 2 : 1,
    size: BigInt(size ?? (isLink ? Buffer.byteLength(target!, 'latin1') : i * 7)),
    blocks: 8n,
    blksize: 4096,
    ino: 0x7000_0000_0000_0000n + BigInt(i),
    dev: 0x801n,
    rdev: 0n,
    atime: t,
    mtime: t,
    ctime: t,
    ...(isLink ? { target: Buffer.from(target!, 'latin1') } : {}),
  };
}

/** Paths of the base blob (relative to ROOT unless absolute) and their kinds. */
const BASE: [string, 'd' | 'f' | 'p' | string][] = [
  // kind: 'd' dir 0755, 'f' file 0644, 'p' dir 0700, anything else: symlink target
  ['', 'd'],
  ['a', 'f'],
  ['d', 'd'],
  ['d/f', 'f'],
  ['d/sub', 'd'],
  ['d/sub/g', 'f'],
  ['priv', 'p'],
  ['priv/s', 'f'],
  ['l-self', '>l-self'],
  ['l-a', '>l-b'],
  ['l-b', '>l-a'],
  ['l-up', '>../../../../etc/passwd'],
  ['l-abs', `>${ROOT}/d/f`],
  ['l-root2', `>${ROOT2}/x`],
  ['l-out', '>/etc/hostname'],
  ['l-dir', '>d'],
  ['l-dot', '>.'],
  ['l-dotdot', '>d/..'],
  ['l-long', `>${'x/'.repeat(150)}a`],
  ['n'.repeat(255), 'f'],
];

/**
 * The valid base blob every fault is derived from; with `tagged`, the same
 * tree with PSFS_H_IDENTITY_TAG (dense tags, an inode table after the strings).
 */
export function baseBlob(tagged = false): Buffer {
  const entries: BlobEntry[] = [];
  let i = 1;
  const add = (p: string, mode: number, target?: string): void => void entries.push(entry(p, mode, i++, target, undefined, tagged));
  for (const [rel, kind] of BASE) {
    const p = rel === '' ? ROOT : `${ROOT}/${rel}`;
    if (kind === 'd') add(p, S_IFDIR | 0o755);
    else if (kind === 'p') add(p, S_IFDIR | 0o700);
    else if (kind === 'f') add(p, S_IFREG | 0o644);
    else add(p, S_IFLNK | 0o777, kind.slice(1));
  }
  // 41 symlink hops ending at "a": the 41st is ELOOP for the kernel.
  for (let h = 0; h <= 40; h++) add(`${ROOT}/hop${h}`, S_IFLNK | 0o777, h === 40 ? 'a' : `hop${h + 1}`);
  add(ROOT2, S_IFDIR | 0o755);
  add(`${ROOT2}/x`, S_IFREG | 0o644);
  return encodeBlob({ roots: [Buffer.from(ROOT), Buffer.from(ROOT2)], entries, flags: tagged ? F.H_IDENTITY_TAG : 0 });
}

/** Recompute header_crc32 over the 128 header bytes (field read as 0). */
export function resign(b: Buffer): Buffer {
  b.writeUInt32LE(0, F.HEADER.headerCrc32);
  b.writeUInt32LE(crc32(b.subarray(0, F.HEADER_SIZE)), F.HEADER.headerCrc32);
  return b;
}

/** Parsed header offsets of a blob (for the fault builders). */
export interface Layout {
  fileSize: number;
  entryCount: number;
  bucketCount: number;
  maxProbe: number;
  seed: number;
  rootsOff: number;
  bucketsOff: number;
  entriesOff: number;
  stringsOff: number;
  stringsSize: number;
  rootCount: number;
}

export function layout(b: Buffer): Layout {
  const H = F.HEADER;
  return {
    fileSize: Number(b.readBigUInt64LE(H.fileSize)),
    entryCount: b.readUInt32LE(H.entryCount),
    bucketCount: b.readUInt32LE(H.bucketCount),
    maxProbe: b.readUInt32LE(H.maxProbe),
    seed: b.readUInt32LE(H.hashSeed),
    rootsOff: Number(b.readBigUInt64LE(H.rootsOff)),
    bucketsOff: Number(b.readBigUInt64LE(H.bucketsOff)),
    entriesOff: Number(b.readBigUInt64LE(H.entriesOff)),
    stringsOff: Number(b.readBigUInt64LE(H.stringsOff)),
    stringsSize: Number(b.readBigUInt64LE(H.stringsSize)),
    rootCount: b.readUInt32LE(H.rootCount),
  };
}

/** Byte offset of the entry whose key is `p`. */
export function entryAt(b: Buffer, p: string): number {
  const L = layout(b);
  const key = Buffer.from(p, 'latin1');
  for (let i = 0; i < L.entryCount; i++) {
    const o = L.entriesOff + i * F.ENTRY_SIZE;
    const off = b.readUInt32LE(o + F.ENTRY.pathOff);
    const len = b.readUInt32LE(o + F.ENTRY.pathLen);
    if (b.subarray(L.stringsOff + off, L.stringsOff + off + len).equals(key)) return o;
  }
  throw new Error(`corpus: no entry ${p}`);
}

/** Byte offset of the bucket that holds entry index+1 == `idx1`. */
function bucketOf(b: Buffer, entryOff: number): number {
  const L = layout(b);
  const idx1 = (entryOff - L.entriesOff) / F.ENTRY_SIZE + 1;
  for (let s = 0; s < L.bucketCount; s++) {
    const o = L.bucketsOff + s * F.BUCKET_SIZE;
    if (b.readUInt32LE(o + F.BUCKET.entry) === idx1) return o;
  }
  throw new Error('corpus: entry has no bucket');
}


/**
 * Every hostile blob, derived from baseBlob(). Deterministic: the same
 * bytes on every run (the committed corpus is compared against it).
 */
export function hostileCorpus(): HostileBlob[] {
  const base = baseBlob();
  const L = layout(base);
  const H = F.HEADER;
  const out: HostileBlob[] = [{ name: 'valid', level: 'valid', why: 'the unmodified base blob (control)', bytes: base }];
  const hdr = (name: string, why: string, edit: (b: Buffer) => Buffer | void, sign = true): void => {
    const b = Buffer.from(base);
    const r = edit(b) ?? b;
    out.push({ name, level: 'header', why, bytes: sign ? resign(r) : r });
  };
  const body = (name: string, why: string, edit: (b: Buffer) => void): void => {
    const b = Buffer.from(base);
    edit(b);
    out.push({ name, level: 'body', why, bytes: resign(b) });
  };

  // --- sizes -----------------------------------------------------------
  out.push({ name: 'empty', level: 'header', why: 'zero-length file', bytes: Buffer.alloc(0) });
  out.push({ name: 'short-header', level: 'header', why: '127 bytes: shorter than the header', bytes: base.subarray(0, 127) });
  // Truncated at every section boundary (file_size then disagrees with the real size) ...
  const cuts: [string, number][] = [
    ['header', F.HEADER_SIZE],
    ['roots', L.bucketsOff],
    ['buckets', L.entriesOff],
    ['entries', L.stringsOff],
    ['mid-entries', L.entriesOff + F.ENTRY_SIZE * 3 + 17],
    ['strings-1', L.stringsOff + L.stringsSize - 1],
  ];
  for (const [where, at] of cuts) {
    out.push({ name: `trunc-${where}`, level: 'header', why: `truncated at byte ${at} (after ${where}); file_size says ${L.fileSize}`, bytes: base.subarray(0, at) });
  }
  // ... and the same with file_size re-written to match (sections now past the end).
  for (const [where, at] of cuts) {
    if (at < F.HEADER_SIZE) continue;
    hdr(`trunc-${where}-resized`, `truncated at byte ${at} with file_size rewritten to match: a section ends past the file`, (b) => {
      const t = Buffer.from(b.subarray(0, at));
      t.writeBigUInt64LE(BigInt(at), H.fileSize);
      return t;
    });
  }
  hdr('grown', 'one page of zeros appended; file_size still the old size', (b) => Buffer.concat([b, Buffer.alloc(4096)]));
  hdr('file-size-big', 'file_size larger than the file', (b) => void b.writeBigUInt64LE(BigInt(L.fileSize + 8), H.fileSize));

  // --- identity ----------------------------------------------------------
  hdr('bad-magic', 'magic "PSFZ..."', (b) => void b.write('Z', 3, 'latin1'));
  hdr('magic-text-mangled', 'magic with \\r\\n turned into \\n (text-mode copy)', (b) => Buffer.concat([b.subarray(0, 5), b.subarray(6)]));
  hdr('version-4', 'container version 4 (future)', (b) => void b.writeUInt32LE(4, H.version));
  hdr('version-2', 'container version 2 (two 32-bit hash lanes, retired)', (b) => void b.writeUInt32LE(2, H.version));
  hdr('version-1', 'container version 1 (FNV-1a key hash, retired)', (b) => void b.writeUInt32LE(1, H.version));
  hdr('version-0', 'container version 0', (b) => void b.writeUInt32LE(0, H.version));
  hdr('content-version-2', 'content version 2 (future)', (b) => void b.writeUInt32LE(2, H.contentVersion));
  hdr('content-version-0', 'content version 0', (b) => void b.writeUInt32LE(0, H.contentVersion));
  hdr('big-endian', 'every header integer byte-swapped (a big-endian writer)', (b) => {
    const swap = (off: number, n: 4 | 8): void => void b.subarray(off, off + n).reverse();
    for (const f of ['version', 'headerSize', 'flags', 'entryCount', 'entrySize', 'bucketCount', 'maxProbe', 'hashSeed', 'rootCount', 'bodyCrc32', 'contentVersion'] as const) swap(H[f], 4);
    for (const f of ['fileSize', 'entriesOff', 'bucketsOff', 'stringsOff', 'stringsSize', 'rootsOff'] as const) swap(H[f], 8);
  });
  hdr('bad-crc', 'header_crc32 off by one (not re-signed)', (b) => void b.writeUInt32LE((b.readUInt32LE(H.headerCrc32) + 1) >>> 0, H.headerCrc32), false);
  hdr('bad-crc-flip', 'one header bit flipped (entry_count), checksum left as it was', (b) => void (b[H.entryCount] ^= 1), false);
  hdr('header-size-256', 'header_size 256', (b) => void b.writeUInt32LE(256, H.headerSize));
  hdr('entry-size-64', 'entry_size 64', (b) => void b.writeUInt32LE(64, H.entrySize));
  hdr('unknown-flag', 'header flag bit 31 (unknown)', (b) => void b.writeUInt32LE(0x80000000, H.flags));

  // --- counts --------------------------------------------------------------
  hdr('entry-count-huge', 'entry_count 0x7fffffff (entries past the end)', (b) => void b.writeUInt32LE(0x7fffffff, H.entryCount));
  hdr('entry-count-2g', 'entry_count 0x80000000 (index+1 overflows)', (b) => void b.writeUInt32LE(0x80000000, H.entryCount));
  hdr('entry-count-over-buckets', 'entry_count > bucket_count', (b) => void b.writeUInt32LE(L.bucketCount + 1, H.entryCount));
  hdr('bucket-count-0', 'bucket_count 0', (b) => void b.writeUInt32LE(0, H.bucketCount));
  hdr('bucket-count-npot', 'bucket_count not a power of two', (b) => void b.writeUInt32LE(L.bucketCount - 1, H.bucketCount));
  hdr('bucket-count-huge', 'bucket_count 2^31 (buckets past the end)', (b) => void b.writeUInt32LE(0x80000000, H.bucketCount));
  hdr('max-probe-0', 'max_probe 0', (b) => void b.writeUInt32LE(0, H.maxProbe));
  hdr('max-probe-over', 'max_probe > bucket_count', (b) => void b.writeUInt32LE(L.bucketCount + 1, H.maxProbe));
  hdr('root-count-0', 'root_count 0', (b) => void b.writeUInt32LE(0, H.rootCount));
  hdr('root-count-17', 'root_count 17 (> PSFS_MAX_ROOTS)', (b) => void b.writeUInt32LE(17, H.rootCount));
  hdr('root-count-big', 'root_count 16: roots past their section into the buckets', (b) => void b.writeUInt32LE(16, H.rootCount));

  // --- section bounds, alignment, overlap ------------------------------------
  const offs = ['rootsOff', 'bucketsOff', 'entriesOff', 'stringsOff'] as const;
  for (const f of offs) {
    const n = f.replace('Off', '').toLowerCase();
    hdr(`${n}-past-end`, `${f} = file_size + 8`, (b) => void b.writeBigUInt64LE(BigInt(L.fileSize + 8), H[f]));
    hdr(`${n}-off-huge`, `${f} = 2^64 - 8 (offset + length overflows)`, (b) => void b.writeBigUInt64LE((1n << 64n) - 8n, H[f]));
    hdr(`${n}-unaligned`, `${f} + 4 (not 8-aligned)`, (b) => void b.writeBigUInt64LE(b.readBigUInt64LE(H[f]) + 4n, H[f]));
    hdr(`${n}-in-header`, `${f} = 64 (inside the header)`, (b) => void b.writeBigUInt64LE(64n, H[f]));
  }
  hdr('strings-size-past-end', 'strings_size one byte past the end', (b) => void b.writeBigUInt64LE(BigInt(L.fileSize - L.stringsOff + 1), H.stringsSize));
  hdr('strings-size-huge', 'strings_size 2^64 - 1', (b) => void b.writeBigUInt64LE((1n << 64n) - 1n, H.stringsSize));
  hdr('overlap-buckets-entries', 'buckets_off = entries_off', (b) => void b.writeBigUInt64LE(BigInt(L.entriesOff), H.bucketsOff));
  hdr('overlap-entries-strings', 'strings_off inside the entries', (b) => void b.writeBigUInt64LE(BigInt(L.entriesOff + F.ENTRY_SIZE), H.stringsOff));
  hdr('overlap-roots-buckets', 'roots_off = buckets_off', (b) => void b.writeBigUInt64LE(BigInt(L.bucketsOff), H.rootsOff));

  // --- roots -------------------------------------------------------------------
  const root0 = L.rootsOff;
  hdr('root-off-past-strings', 'roots[0].path_off past strings_size', (b) => void b.writeUInt32LE(L.stringsSize, root0 + F.ROOT.pathOff));
  hdr('root-len-huge', 'roots[0].path_len 0xffffffff', (b) => void b.writeUInt32LE(0xffffffff, root0 + F.ROOT.pathLen));
  hdr('root-len-0', 'roots[0].path_len 0', (b) => void b.writeUInt32LE(0, root0 + F.ROOT.pathLen));
  hdr('root-slash', 'roots[0] = "/" (path_len 1)', (b) => void b.writeUInt32LE(1, root0 + F.ROOT.pathLen));
  // roots[0] pointing at the key of "/vrift-hostile/d/sub" shortened to "/vrift-hostile/d/" (trailing slash)
  hdr('root-trailing-slash', 'roots[0] = "/vrift-hostile/d/" (trailing slash)', (b) => {
    const e = entryAt(b, `${ROOT}/d/sub`);
    b.writeUInt32LE(b.readUInt32LE(e + F.ENTRY.pathOff), root0 + F.ROOT.pathOff);
    b.writeUInt32LE(ROOT.length + 3, root0 + F.ROOT.pathLen);
  });
  hdr('root-relative', 'roots[0] = "vrift-hostile" (not absolute)', (b) => {
    b.writeUInt32LE(b.readUInt32LE(root0 + F.ROOT.pathOff) + 1, root0 + F.ROOT.pathOff);
    b.writeUInt32LE(ROOT.length - 1, root0 + F.ROOT.pathLen);
  });
  hdr('root-dotdot', 'roots[0] = "/a/../b" (not normalized)', (b) => {
    // Written over the start of the l-long target bytes.
    const e = entryAt(b, `${ROOT}/l-long`);
    const t = L.stringsOff + b.readUInt32LE(e + F.ENTRY.targetOff);
    b.write('/a/../b', t, 'latin1');
    b.writeUInt32LE(t - L.stringsOff, root0 + F.ROOT.pathOff);
    b.writeUInt32LE(7, root0 + F.ROOT.pathLen);
  });
  hdr('root-nul', 'roots[0] holds a NUL byte', (b) => {
    const e = entryAt(b, `${ROOT}/l-long`);
    const t = L.stringsOff + b.readUInt32LE(e + F.ENTRY.targetOff);
    b.write('/ab\0cd', t, 'latin1');
    b.writeUInt32LE(t - L.stringsOff, root0 + F.ROOT.pathOff);
    b.writeUInt32LE(6, root0 + F.ROOT.pathLen);
  });
  hdr('root-long-component', 'roots[0] with a 256-byte component', (b) => {
    const e = entryAt(b, `${ROOT}/l-long`);
    const t = L.stringsOff + b.readUInt32LE(e + F.ENTRY.targetOff);
    b.write('/' + 'c'.repeat(256), t, 'latin1');
    b.writeUInt32LE(t - L.stringsOff, root0 + F.ROOT.pathOff);
    b.writeUInt32LE(257, root0 + F.ROOT.pathLen);
  });

  // --- body-level: header valid, contents lie ---------------------------------------
  const E = F.ENTRY;
  const at = (p: string): number => entryAt(base, p);
  const eA = at(`${ROOT}/a`);
  body('bucket-past-count', 'the bucket of "a" points at entry_count + 1', (b) => void b.writeUInt32LE(L.entryCount + 1, bucketOf(b, eA) + F.BUCKET.entry));
  body('bucket-index-max', 'every non-empty bucket points at entry 0xffffffff', (b) => {
    for (let s = 0; s < L.bucketCount; s++) {
      const o = L.bucketsOff + s * F.BUCKET_SIZE + F.BUCKET.entry;
      if (b.readUInt32LE(o) !== 0) b.writeUInt32LE(0xffffffff, o);
    }
  });
  body('buckets-all-one-hash', 'every bucket full, same hash as "a", max_probe = bucket_count (longest legal chain)', (b) => {
    const h = b.readUInt32LE(bucketOf(b, eA) + F.BUCKET.hash);
    for (let s = 0; s < L.bucketCount; s++) {
      b.writeUInt32LE(h, L.bucketsOff + s * F.BUCKET_SIZE);
      b.writeUInt32LE((s % L.entryCount) + 1, L.bucketsOff + s * F.BUCKET_SIZE + 4);
    }
    b.writeUInt32LE(L.bucketCount, H.maxProbe);
  });
  body('max-probe-short', 'max_probe 1 while chains are longer (lookups past the bound miss)', (b) => void b.writeUInt32LE(1, H.maxProbe));
  body('buckets-empty', 'every bucket empty: nothing is found', (b) => void b.fill(0, L.bucketsOff, L.entriesOff));
  body('hash-only-match', 'the bucket of "a" points at entry "d/f" (hash matches, key does not)', (b) => {
    const idxF = (at(`${ROOT}/d/f`) - L.entriesOff) / F.ENTRY_SIZE + 1;
    b.writeUInt32LE(idxF, bucketOf(b, eA) + F.BUCKET.entry);
  });
  body('key-off-past-strings', 'key of "a" starts past strings_size', (b) => void b.writeUInt32LE(L.stringsSize, eA + E.pathOff));
  body('key-off-wrap', 'key of "a": path_off 0xffffffff (path_off + path_len wraps u32)', (b) => void b.writeUInt32LE(0xffffffff, eA + E.pathOff));
  body('key-len-huge', 'key of "a": path_len 0xffffffff (unterminated, past the end)', (b) => void b.writeUInt32LE(0xffffffff, eA + E.pathLen));
  body('key-len-overlong', 'key of "d/f": path_len runs to the end of strings (overlong, > PATH_MAX in no case)', (b) => {
    const e = at(`${ROOT}/d/f`);
    b.writeUInt32LE(L.stringsSize - b.readUInt32LE(e + E.pathOff), e + E.pathLen);
  });
  body('keys-all-zero-len', 'every key path_len 0', (b) => {
    for (let i = 0; i < L.entryCount; i++) b.writeUInt32LE(0, L.entriesOff + i * F.ENTRY_SIZE + E.pathLen);
  });
  body('root-entry-missing', 'the root entry\'s key renamed (root not in the blob)', (b) => {
    const e = at(ROOT);
    b.write('X', L.stringsOff + b.readUInt32LE(e + E.pathOff) + 1, 'latin1');
  });
  body('root-entry-file', 'the root entry is a regular file', (b) => void b.writeUInt32LE(S_IFREG | 0o644, at(ROOT) + E.mode));
  body('root-entry-symlink', 'the root entry is a symlink to itself', (b) => {
    const e = at(ROOT);
    b.writeUInt32LE(S_IFLNK | 0o777, e + E.mode);
    b.writeUInt32LE(b.readUInt32LE(e + E.pathOff), e + E.targetOff);
    b.writeUInt32LE(ROOT.length, e + E.targetLen);
  });
  body('dir-is-symlink-no-target', '"d" is a symlink with target_len 0', (b) => void b.writeUInt32LE(S_IFLNK | 0o777, at(`${ROOT}/d`) + E.mode));
  body('target-off-past-strings', 'target of "l-abs" starts past strings_size', (b) => void b.writeUInt32LE(L.stringsSize + 1, at(`${ROOT}/l-abs`) + E.targetOff));
  body('target-len-huge', 'target of "l-abs": target_len 0xffffffff', (b) => void b.writeUInt32LE(0xffffffff, at(`${ROOT}/l-abs`) + E.targetLen));
  body('target-off-wrap', 'target of "l-abs": target_off 0xfffffff0', (b) => void b.writeUInt32LE(0xfffffff0, at(`${ROOT}/l-abs`) + E.targetOff));
  body('target-overlong', 'target of "l-abs" = the whole string table (> PATH_MAX bytes in components)', (b) => {
    const e = at(`${ROOT}/l-abs`);
    b.writeUInt32LE(0, e + E.targetOff);
    b.writeUInt32LE(L.stringsSize, e + E.targetLen);
  });
  body('target-nul', 'target of "l-dir" holds a NUL', (b) => {
    const e = at(`${ROOT}/l-long`);
    b[L.stringsOff + b.readUInt32LE(e + E.targetOff) + 3] = 0;
    const d = at(`${ROOT}/l-dir`);
    b.writeUInt32LE(b.readUInt32LE(e + E.targetOff), d + E.targetOff);
    b.writeUInt32LE(10, d + E.targetLen);
  });
  body('target-self-abs', 'every symlink\'s target is its own absolute path (cycles of length 1)', (b) => {
    for (let i = 0; i < L.entryCount; i++) {
      const o = L.entriesOff + i * F.ENTRY_SIZE;
      if ((b.readUInt32LE(o + E.mode) & 0o170000) !== S_IFLNK) continue;
      b.writeUInt32LE(b.readUInt32LE(o + E.pathOff), o + E.targetOff);
      b.writeUInt32LE(b.readUInt32LE(o + E.pathLen), o + E.targetLen);
    }
  });
  body('all-symlinks', 'every entry (directories too) is a symlink to "a" or itself: cycles through parents', (b) => {
    for (let i = 0; i < L.entryCount; i++) {
      const o = L.entriesOff + i * F.ENTRY_SIZE;
      b.writeUInt32LE(S_IFLNK | 0o777, o + E.mode);
      if (b.readUInt32LE(o + E.targetLen) === 0) {
        b.writeUInt32LE(b.readUInt32LE(o + E.pathOff), o + E.targetOff);
        b.writeUInt32LE(b.readUInt32LE(o + E.pathLen), o + E.targetLen);
      }
    }
  });
  body('modes-garbage', 'every st_mode 0xffffffff, every flag word 0xffffffff', (b) => {
    for (let i = 0; i < L.entryCount; i++) {
      const o = L.entriesOff + i * F.ENTRY_SIZE;
      b.writeUInt32LE(0xffffffff, o + E.mode);
      b.writeUInt32LE(0xffffffff, o + E.flags);
    }
  });
  body('unreachable-all', 'PSFS_E_REACHABLE cleared everywhere (everything passes through)', (b) => {
    for (let i = 0; i < L.entryCount; i++) b.writeUInt32LE(0, L.entriesOff + i * F.ENTRY_SIZE + E.flags);
  });
  body('strings-ff', 'string table overwritten with 0xff except the root strings (no key matches)', (b) => {
    // Keep the two root strings (validated at init), trash every other byte.
    const keep = new Set<number>();
    for (let r = 0; r < L.rootCount; r++) {
      const o = b.readUInt32LE(L.rootsOff + r * F.ROOT_SIZE);
      const n = b.readUInt32LE(L.rootsOff + r * F.ROOT_SIZE + 4);
      for (let k = o; k < o + n; k++) keep.add(k);
    }
    for (let k = 0; k < L.stringsSize; k++) if (!keep.has(k)) b[L.stringsOff + k] = 0xff;
  });
  body('entries-zero', 'every entry zeroed (keys empty, modes 0)', (b) => void b.fill(0, L.entriesOff, L.entriesOff + L.entryCount * F.ENTRY_SIZE));
  body('reserved-nonzero', 'header reserved words non-zero (allowed: room to grow)', (b) => void b.fill(0xab, H.reserved, F.HEADER_SIZE));
  // --- identity tags (PSFS_H_IDENTITY_TAG inode table) ---------------------------
  const tb = baseBlob(true);
  const inodesOff = Number(tb.readBigUInt64LE(H.inodesOff));
  const inodeCount = tb.readUInt32LE(H.inodeCount);
  if (!(tb.readUInt32LE(H.flags) & F.H_IDENTITY_TAG) || inodesOff === 0 || inodeCount === 0) throw new Error('corpus: tagged base has no inode table');
  const tagged = (name: string, level: HostileBlob['level'], why: string, edit: (b: Buffer) => void): void => {
    const b = Buffer.from(tb);
    edit(b);
    out.push({ name, level, why, bytes: resign(b) });
  };
  tagged('tag-valid', 'valid', 'valid tagged blob (PSFS_H_IDENTITY_TAG, inode table): accepted, outside answers unchanged', () => undefined);
  tagged('tag-table-without-flag', 'header', 'inode table fields set, PSFS_H_IDENTITY_TAG clear', (b) => void b.writeUInt32LE(0, H.flags));
  tagged('tag-count-over-max', 'header', 'inode_count = PSFS_TAG_MAX + 1', (b) => void b.writeUInt32LE(F.TAG_MAX + 1, H.inodeCount));
  tagged('tag-inodes-past-end', 'header', 'inodes_off = file_size + 8', (b) => void b.writeBigUInt64LE(BigInt(b.length + 8), H.inodesOff));
  tagged('tag-inodes-unaligned', 'header', 'inodes_off + 4 (not 8-aligned)', (b) => void b.writeBigUInt64LE(BigInt(inodesOff + 4), H.inodesOff));
  tagged('tag-inodes-overlap-strings', 'header', 'inodes_off = strings_off (overlap)', (b) => void b.writeBigUInt64LE(b.readBigUInt64LE(H.stringsOff), H.inodesOff));
  tagged('tag-off-without-count', 'header', 'inodes_off set, inode_count 0', (b) => void b.writeUInt32LE(0, H.inodeCount));
  tagged('tag-index-past-count', 'body', 'every inode table slot points past entry_count (0xffffffff, entry_count + 1)', (b) => {
    for (let k = 0; k < inodeCount; k++) b.writeUInt32LE(k % 2 ? 0xffffffff : layout(tb).entryCount + 1, inodesOff + 4 * k);
  });
  tagged('tag-index-wrong-entry', 'body', 'every inode table slot points at entry 1 (tags name the wrong inode)', (b) => {
    for (let k = 0; k < inodeCount; k++) b.writeUInt32LE(1, inodesOff + 4 * k);
  });

  // Random corruption of buckets, entries and strings, 16 seeds x 32 bytes;
  // the roots and the root strings (validated at init) are left alone.
  const rootBytes = new Set<number>();
  for (let r = 0; r < L.rootCount; r++) {
    const o = L.stringsOff + base.readUInt32LE(L.rootsOff + r * F.ROOT_SIZE);
    for (let k = 0; k < base.readUInt32LE(L.rootsOff + r * F.ROOT_SIZE + 4); k++) rootBytes.add(o + k);
  }
  for (let s = 1; s <= 16; s++) {
    body(`random-${String(s).padStart(2, '0')}`, `32 random bytes of buckets/entries/strings replaced (seed ${s})`, (b) => {
      const r = prngUnit(s);
      for (let k = 0; k < 32; k++) {
        const at = L.bucketsOff + Math.floor(r() * (L.fileSize - L.bucketsOff));
        const v = Math.floor(r() * 256);
        if (!rootBytes.has(at)) b[at] = v;
      }
    });
  }
  return out;
}

/**
 * Paths probed against every corpus member: every key of the base blob,
 * adversarial spellings of domain paths (and near-domain prefixes), and
 * paths outside the domain. None holds a newline or NUL (oracle input).
 */
export function probePaths(): string[] {
  const inDomain = [ROOT, ...BASE.slice(1).map(([rel]) => `${ROOT}/${rel}`), `${ROOT}/hop0`, `${ROOT}/hop39`, ROOT2, `${ROOT2}/x`];
  const spell: string[] = [];
  for (const p of inDomain) spell.push(p, `${p}/`, `${p}/.`, `${p}/..`, `${p}/x`);
  spell.push(
    `${ROOT}//d/./sub/../f`, `${ROOT}/d/../../vrift-hostile/a`, `${ROOT}/../etc/hostname`, `${ROOT}/missing`, `${ROOT}/missing/x`,
    `${ROOT}/a/x`, `${ROOT}/${'q'.repeat(256)}`, `${ROOT}/${'./'.repeat(2100)}a`, `${ROOT}/priv/s`, `${ROOT}/priv/missing`,
  );
  const outside = [
    // Only paths whose metadata does not change while the tests run (no /tmp, /proc, /dev).
    '/', '/etc/hostname', '/etc', '/etc/', '/etc/passwd', '/usr', '/usr/bin/env', '/nonexistent', `${ROOT}x`, `${ROOT}x/a`,
    `${ROOT.slice(0, -1)}`, `${ROOT2}x/a`, `/${ROOT}/a`, `//${ROOT.slice(1)}/a`, '.', '..', 'a', 'vrift-hostile/a', '<EMPTY>', '<NULL>',
  ];
  return [...spell, ...outside];
}

/** Whether probe path `p` is outside the domain (the kernel must answer it). */
export function isOutside(p: string): boolean {
  if (!p.startsWith('/')) return true;
  for (const r of [ROOT, ROOT2]) if (p === r || p.startsWith(`${r}/`)) return false;
  return true;
}

/** Seed of fuzz_lookup (shim/fuzz/fuzz_lookup.c): a one-root blob as 16 parameter bytes + body. */
export function lookupSeed(blob: Buffer): Buffer {
  const L = layout(blob);
  if (L.rootCount !== 1 || L.rootsOff !== 128 || L.bucketsOff !== 136 || L.bucketCount > 128) throw new Error('lookupSeed: needs one root and <= 128 buckets');
  const p = Buffer.alloc(16);
  p[0] = Math.log2(L.bucketCount);
  p.writeUInt16LE(L.entryCount, 1);
  p.writeUInt16LE(L.maxProbe - 1, 3);
  p.writeUInt32LE(L.seed, 5);
  p.writeUInt16LE(blob.readUInt32LE(L.rootsOff), 9);
  p[11] = blob.readUInt32LE(L.rootsOff + 4);
  return Buffer.concat([p, blob.subarray(L.bucketsOff, L.stringsOff + L.stringsSize)]);
}

/** One-root blobs for the fuzz_lookup seeds: the base tree under ROOT, and a 3-entry tree. */
function oneRootBlobs(): Buffer[] {
  const big: BlobEntry[] = [];
  let i = 1;
  for (const [rel, kind] of BASE) {
    const p = rel === '' ? ROOT : `${ROOT}/${rel}`;
    if (kind === 'd' || kind === 'p') big.push(entry(p, S_IFDIR | (kind === 'd' ? 0o755 : 0o700), i++));
    else if (kind === 'f') big.push(entry(p, S_IFREG | 0o644, i++));
    else big.push(entry(p, S_IFLNK | 0o777, i++, kind.slice(1)));
  }
  const small = [entry('/r', S_IFDIR | 0o755, 1), entry('/r/a', S_IFREG | 0o644, 2), entry('/r/l', S_IFLNK | 0o777, 3, '../r/a')];
  return [encodeBlob({ roots: [Buffer.from(ROOT)], entries: big }), encodeBlob({ roots: [Buffer.from('/r')], entries: small })];
}

/**
 * Seed corpora of the libFuzzer targets (shim/fuzz/corpus/<target>/<name>):
 * fuzz_header gets the valid blob and a sample of header faults, fuzz_resolve
 * every probe path, fuzz_lookup the one-root blobs in its input form.
 */
export function fuzzSeeds(): Record<string, Record<string, Buffer>> {
  const corpus = hostileCorpus();
  const header: Record<string, Buffer> = {};
  for (const c of corpus) {
    if (['valid', 'version-4', 'version-2', 'version-1', 'big-endian', 'bad-crc', 'trunc-entries-resized', 'overlap-buckets-entries', 'root-trailing-slash', 'max-probe-over', 'random-01', 'tag-valid', 'tag-index-past-count'].includes(c.name)) header[c.name] = c.bytes;
  }
  const resolve: Record<string, Buffer> = {};
  probePaths()
    .filter((p) => !p.startsWith('<'))
    .forEach((p, i) => (resolve[`p${String(i).padStart(3, '0')}`] = Buffer.from(p, 'latin1')));
  const lookup: Record<string, Buffer> = {};
  oneRootBlobs().forEach((b, i) => (lookup[`blob${i}`] = lookupSeed(b)));
  return { fuzz_header: header, fuzz_resolve: resolve, fuzz_lookup: lookup };
}
