import { crc32 } from './crc32';
import { VriftError } from '../errors';
import * as F from './format';
import { isNormalizedPath, type BlobEntry } from './writer';

/** Negative codes of psfs_view_init (shim/psfs_core.h), Linux errno values. */
export const PSFS_EINVAL = 22 as const;
export const PSFS_ENOTSUP = 95 as const;

/** Decoded struct psfs_header (u64 fields as bigint, offsets in bytes). */
export interface BlobHeader {
  version: number;
  headerSize: number;
  headerCrc32: number;
  flags: number;
  fileSize: bigint;
  entryCount: number;
  entrySize: number;
  entriesOff: bigint;
  bucketCount: number;
  maxProbe: number;
  bucketsOff: bigint;
  stringsOff: bigint;
  stringsSize: bigint;
  hashSeed: number;
  rootCount: number;
  rootsOff: bigint;
  bodyCrc32: number;
  contentVersion: number;
  /** PSFS_H_IDENTITY_TAG inode table: offset and count (0 and 0 without the flag). */
  inodesOff: bigint;
  inodeCount: number;
}

/** One decoded struct psfs_entry: the writer's BlobEntry plus its PSFS_E_* flags. */
export interface DecodedEntry extends BlobEntry {
  /** PSFS_E_* bits as stored. */
  flags: number;
}

/** Result of decodeBlob. */
export interface DecodedBlob {
  header: BlobHeader;
  roots: Buffer[];
  /** Entries in stored order (index i is bucket value i + 1). */
  entries: DecodedEntry[];
  /** Buckets as stored: hash and entry (index + 1, 0 = empty). */
  buckets: { hash: number; entry: number }[];
}

/** Outcome of checkHeader: 0 when valid, else the negative code psfs_view_init returns, and why. */
export interface HeaderCheck {
  code: number;
  reason: string;
}

/** Parse the 128 header bytes (no validation). `buf` must hold at least HEADER_SIZE bytes. */
export function readHeader(buf: Buffer): BlobHeader {
  const H = F.HEADER;
  return {
    version: buf.readUInt32LE(H.version),
    headerSize: buf.readUInt32LE(H.headerSize),
    headerCrc32: buf.readUInt32LE(H.headerCrc32),
    flags: buf.readUInt32LE(H.flags),
    fileSize: buf.readBigUInt64LE(H.fileSize),
    entryCount: buf.readUInt32LE(H.entryCount),
    entrySize: buf.readUInt32LE(H.entrySize),
    entriesOff: buf.readBigUInt64LE(H.entriesOff),
    bucketCount: buf.readUInt32LE(H.bucketCount),
    maxProbe: buf.readUInt32LE(H.maxProbe),
    bucketsOff: buf.readBigUInt64LE(H.bucketsOff),
    stringsOff: buf.readBigUInt64LE(H.stringsOff),
    stringsSize: buf.readBigUInt64LE(H.stringsSize),
    hashSeed: buf.readUInt32LE(H.hashSeed),
    rootCount: buf.readUInt32LE(H.rootCount),
    rootsOff: buf.readBigUInt64LE(H.rootsOff),
    bodyCrc32: buf.readUInt32LE(H.bodyCrc32),
    contentVersion: buf.readUInt32LE(H.contentVersion),
    inodesOff: buf.readBigUInt64LE(H.inodesOff),
    inodeCount: buf.readUInt32LE(H.inodeCount),
  };
}

/** CRC-32 of the header bytes with the header_crc32 field taken as zero. */
export function headerCrc32(buf: Buffer): number {
  const h = Buffer.from(buf.subarray(0, F.HEADER_SIZE));
  h.writeUInt32LE(0, F.HEADER.headerCrc32);
  return crc32(h);
}

const EINVAL = (reason: string): HeaderCheck => ({ code: -PSFS_EINVAL, reason });
const ENOTSUP = (reason: string): HeaderCheck => ({ code: -PSFS_ENOTSUP, reason });

/**
 * Validate a blob's header with exactly the rules of psfs_view_init
 * (shim/psfs_core.h, shim/psfs_core.c), in the same order, in O(1): the
 * result code equals what the C reader returns for the same bytes
 * (test/blob/crossLanguage.test.ts checks this on mutated headers). The body
 * is not checked here. (The C reader also needs an 8-aligned base address;
 * a Buffer has no such requirement.)
 *
 * @param buf the whole blob
 * @returns code 0 / -PSFS_EINVAL / -PSFS_ENOTSUP and a human reason
 */
export function checkHeader(buf: Buffer): HeaderCheck {
  const size = BigInt(buf.length);
  if (buf.length < F.HEADER_SIZE) return EINVAL(`blob is ${buf.length} bytes, shorter than the ${F.HEADER_SIZE}-byte header`);
  if (!buf.subarray(0, F.MAGIC_LEN).equals(F.MAGIC)) return EINVAL('bad magic (not a PSFS blob)');
  const h = readHeader(buf);
  if (h.version !== F.VERSION) {
    // Version 1 used the FNV-1a key hash: an older writer's blob, not a newer one's.
    const older = h.version >= 1 && h.version < F.VERSION;
    return ENOTSUP(`container version ${h.version} is not supported (this reader knows ${F.VERSION})${older ? ': written by an older vrift, rebuild the blob with this one' : ''}`);
  }
  if (h.headerSize !== F.HEADER_SIZE) return EINVAL(`header_size ${h.headerSize} is not ${F.HEADER_SIZE}`);
  if (h.entrySize !== F.ENTRY_SIZE) return EINVAL(`entry_size ${h.entrySize} is not ${F.ENTRY_SIZE}`);
  if (headerCrc32(buf) !== h.headerCrc32) return EINVAL('header checksum mismatch (header_crc32)');
  if ((h.flags & ~F.H_KNOWN_FLAGS) !== 0) return ENOTSUP(`unknown header flags 0x${(h.flags >>> 0).toString(16)}`);
  if (h.contentVersion === 0) return EINVAL('content version 0 is invalid');
  if (h.contentVersion > F.CONTENT_VERSION_MAX) return ENOTSUP(`content version ${h.contentVersion} is not supported (1..${F.CONTENT_VERSION_MAX})`);
  if (h.fileSize !== size) return EINVAL(`file_size ${h.fileSize} differs from the blob's ${size} bytes`);
  if (h.entryCount > F.MAX_ENTRIES) return EINVAL(`entry_count ${h.entryCount} exceeds ${F.MAX_ENTRIES}`);
  if (h.bucketCount === 0 || (h.bucketCount & (h.bucketCount - 1)) !== 0) return EINVAL(`bucket_count ${h.bucketCount} is not a power of two`);
  if (h.bucketCount < h.entryCount) return EINVAL(`bucket_count ${h.bucketCount} is below entry_count ${h.entryCount}`);
  if (h.maxProbe < 1 || h.maxProbe > h.bucketCount) return EINVAL(`max_probe ${h.maxProbe} is outside 1..bucket_count`);
  if (h.rootCount < 1 || h.rootCount > F.MAX_ROOTS) return EINVAL(`root_count ${h.rootCount} is outside 1..${F.MAX_ROOTS}`);

  const tagged = (h.flags & F.H_IDENTITY_TAG) !== 0;
  if (!tagged && (h.inodesOff !== 0n || h.inodeCount !== 0)) return EINVAL('inode table present without PSFS_H_IDENTITY_TAG');
  if (h.inodeCount > F.TAG_MAX) return EINVAL(`inode_count ${h.inodeCount} exceeds ${F.TAG_MAX}`);
  if (h.inodeCount === 0 && h.inodesOff !== 0n) return EINVAL('inodes_off set for an empty inode table');
  const sections: [string, bigint, bigint][] = [
    ['roots', h.rootsOff, BigInt(h.rootCount) * BigInt(F.ROOT_SIZE)],
    ['buckets', h.bucketsOff, BigInt(h.bucketCount) * BigInt(F.BUCKET_SIZE)],
    ['entries', h.entriesOff, BigInt(h.entryCount) * BigInt(F.ENTRY_SIZE)],
    ['strings', h.stringsOff, h.stringsSize],
    ...(h.inodeCount > 0 ? [['inodes', h.inodesOff, BigInt(h.inodeCount) * 4n] as [string, bigint, bigint]] : []),
  ];
  const A = BigInt(F.ALIGN);
  for (const [name, off, len] of sections) {
    if (off % A !== 0n) return EINVAL(`${name} section offset ${off} is not ${F.ALIGN}-aligned`);
    if (off < BigInt(h.headerSize) || off > size || len > size - off) return EINVAL(`${name} section [${off}, +${len}) is outside the blob`);
  }
  for (let i = 0; i < sections.length; i++) {
    for (let j = i + 1; j < sections.length; j++) {
      const [an, ao, al] = sections[i];
      const [bn, bo, bl] = sections[j];
      if (al !== 0n && bl !== 0n && ao < bo + bl && bo < ao + al) return EINVAL(`${an} and ${bn} sections overlap`);
    }
  }
  for (let i = 0; i < h.rootCount; i++) {
    const o = Number(h.rootsOff) + i * F.ROOT_SIZE;
    const off = buf.readUInt32LE(o + F.ROOT.pathOff);
    const len = buf.readUInt32LE(o + F.ROOT.pathLen);
    if (BigInt(off) + BigInt(len) > h.stringsSize) return EINVAL(`root ${i} path is outside the string table`);
    const start = Number(h.stringsOff) + off;
    const p = buf.subarray(start, start + len);
    if (!isNormalizedPath(p) || p.length === 1) return EINVAL(`root ${i} ${JSON.stringify(p.toString('latin1'))} is not a normalized absolute path other than "/"`);
  }
  return { code: 0, reason: 'ok' };
}

/**
 * Decode and fully validate a PSFS v1 blob (layout: shim/psfs_format.h): the
 * header with the rules of psfs_view_init (checkHeader), then what the shim
 * does not check because it is O(n): body_crc32, reserved fields zero, every
 * entry's key and target inside the string table, keys normalized, unique and
 * under a root, targets only on symlinks, and every bucket pointing at an
 * existing entry whose key hashes to the bucket's hash, reachable from its
 * home slot within max_probe probes, every entry referenced by exactly one bucket.
 *
 * @param buf the whole blob
 * @returns header fields, roots, entries (stored order), buckets
 * @throws VriftError("decoding PSFS blob: <cause>") on the first violation; its
 *   message says whether the blob is unsupported (newer writer) or corrupt
 */
export function decodeBlob(buf: Buffer): DecodedBlob {
  const fail = (why: string, unsupported = false): never => {
    throw new VriftError(
      `decoding PSFS blob: ${why}; ${unsupported ? (/older vrift/.test(why) ? 'rewrite it with `vrift blob`' : 'the blob was written by a newer vrift, upgrade this one') : 'the blob is corrupt or not a PSFS blob, rewrite it with `vrift blob`'}`,
    );
  };
  const c = checkHeader(buf);
  if (c.code !== 0) fail(c.reason, c.code === -PSFS_ENOTSUP);
  const h = readHeader(buf);
  if (crc32(buf.subarray(h.headerSize)) !== h.bodyCrc32) fail('body checksum mismatch (body_crc32)');
  for (let o = F.HEADER.reserved; o < F.HEADER_SIZE; o += 4) if (buf.readUInt32LE(o) !== 0) fail(`header reserved field at byte ${o} is not zero`);

  const stringsOff = Number(h.stringsOff);
  const stringsSize = Number(h.stringsSize);
  const str = (off: number, len: number, what: string): Buffer => {
    if (off + len > stringsSize) fail(`${what} [${off}, +${len}) is outside the string table (${stringsSize} bytes)`);
    return Buffer.from(buf.subarray(stringsOff + off, stringsOff + off + len));
  };

  const roots: Buffer[] = [];
  for (let i = 0; i < h.rootCount; i++) {
    const o = Number(h.rootsOff) + i * F.ROOT_SIZE;
    roots.push(str(buf.readUInt32LE(o + F.ROOT.pathOff), buf.readUInt32LE(o + F.ROOT.pathLen), `root ${i}`));
  }
  const underRoot = (p: Buffer): boolean =>
    roots.some((r) => p.equals(r) || (p.length > r.length && p[r.length] === 0x2f && p.subarray(0, r.length).equals(r)));

  const entries: DecodedEntry[] = [];
  const seen = new Set<string>();
  const E = F.ENTRY;
  for (let i = 0; i < h.entryCount; i++) {
    const o = Number(h.entriesOff) + i * F.ENTRY_SIZE;
    const p = str(buf.readUInt32LE(o + E.pathOff), buf.readUInt32LE(o + E.pathLen), `entry ${i} key`);
    const show = JSON.stringify(p.toString('latin1'));
    if (!isNormalizedPath(p)) fail(`entry ${i} key ${show} is not a normalized absolute path`);
    if (!underRoot(p)) fail(`entry ${i} key ${show} is outside every root`);
    if (seen.has(p.toString('latin1'))) fail(`entry ${i} key ${show} appears twice`);
    seen.add(p.toString('latin1'));
    const mode = buf.readUInt32LE(o + E.mode);
    const targetLen = buf.readUInt32LE(o + E.targetLen);
    const isLink = (mode & 0o170000) === 0o120000;
    if (!isLink && targetLen !== 0) fail(`entry ${i} ${show} has a symlink target but is not a symlink`);
    for (let r = E.reserved; r < F.ENTRY_SIZE; r += 4) if (buf.readUInt32LE(o + r) !== 0) fail(`entry ${i} ${show} reserved field is not zero`);
    const ts = (secOff: number, nsecOff: number, name: string): { sec: bigint; nsec: number } => {
      const nsec = buf.readUInt32LE(o + nsecOff);
      if (nsec > 999_999_999) fail(`entry ${i} ${show} ${name} nanoseconds ${nsec} out of range`);
      return { sec: buf.readBigInt64LE(o + secOff), nsec };
    };
    entries.push({
      path: p,
      mode,
      uid: buf.readUInt32LE(o + E.uid),
      gid: buf.readUInt32LE(o + E.gid),
      nlink: buf.readUInt32LE(o + E.nlink),
      size: buf.readBigUInt64LE(o + E.size),
      blocks: buf.readBigUInt64LE(o + E.blocks),
      blksize: buf.readUInt32LE(o + E.blksize),
      ino: buf.readBigUInt64LE(o + E.ino),
      dev: buf.readBigUInt64LE(o + E.dev),
      rdev: buf.readBigUInt64LE(o + E.rdev),
      atime: ts(E.atimeSec, E.atimeNsec, 'atime'),
      mtime: ts(E.mtimeSec, E.mtimeNsec, 'mtime'),
      ctime: ts(E.ctimeSec, E.ctimeNsec, 'ctime'),
      ...(isLink ? { target: str(buf.readUInt32LE(o + E.targetOff), targetLen, `entry ${i} symlink target`) } : {}),
      flags: buf.readUInt32LE(o + E.flags),
    });
  }

  const buckets: { hash: number; entry: number }[] = [];
  const referenced = new Uint8Array(h.entryCount);
  const mask = h.bucketCount - 1;
  for (let s = 0; s < h.bucketCount; s++) {
    const o = Number(h.bucketsOff) + s * F.BUCKET_SIZE;
    const b = { hash: buf.readUInt32LE(o + F.BUCKET.hash), entry: buf.readUInt32LE(o + F.BUCKET.entry) };
    buckets.push(b);
    if (b.entry === 0) continue;
    if (b.entry > h.entryCount) fail(`bucket ${s} points at entry ${b.entry - 1}, past entry_count ${h.entryCount}`);
    const e = entries[b.entry - 1];
    if (F.hash(h.hashSeed, e.path) !== b.hash) fail(`bucket ${s} hash does not match the key of entry ${b.entry - 1}`);
    if (referenced[b.entry - 1]++) fail(`entry ${b.entry - 1} is referenced by two buckets`);
    // Distance from the home slot along the probe sequence, with no empty slot in between.
    const home = b.hash & mask;
    const dist = (s - home + h.bucketCount) & mask;
    if (dist + 1 > h.maxProbe) fail(`bucket ${s} is ${dist + 1} probes from its home slot, more than max_probe ${h.maxProbe}`);
  }
  for (let s = 0; s < h.bucketCount; s++) {
    const b = buckets[s];
    if (b.entry === 0) continue;
    for (let k = b.hash & mask; k !== s; k = (k + 1) & mask) {
      if (buckets[k].entry === 0) fail(`bucket ${s} is behind an empty slot on its probe chain (lookup would miss entry ${b.entry - 1})`);
    }
  }
  const missing = referenced.indexOf(0);
  if (missing >= 0) fail(`entry ${missing} is not referenced by any bucket`);
  for (let t = 1; t <= h.inodeCount; t++) {
    const v = buf.readUInt32LE(Number(h.inodesOff) + (t - 1) * 4);
    if (v === 0) continue;
    if (v > h.entryCount) fail(`inode tag ${t} points at entry ${v - 1}, past entry_count ${h.entryCount}`);
    if (entries[v - 1].mtime.nsec !== t) fail(`inode tag ${t} points at entry ${v - 1} whose mtime nanoseconds are ${entries[v - 1].mtime.nsec}`);
  }
  return { header: h, roots, entries, buckets };
}
