import { crc32 } from './crc32';
import { VriftError } from '../errors';
import * as F from './format';
import { isNormalizedPath, type BlobEntry, type BlobRows, type Timespec } from './writer';

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
 * @param blob the whole blob (bytes, or a BlobSource)
 * @returns code 0 / -PSFS_EINVAL / -PSFS_ENOTSUP and a human reason
 */
export function checkHeader(blob: Buffer | BlobSource): HeaderCheck {
  const src = sourceOf(blob);
  const size = BigInt(src.length);
  if (src.length < F.HEADER_SIZE) return EINVAL(`blob is ${src.length} bytes, shorter than the ${F.HEADER_SIZE}-byte header`);
  const buf = src.read(0, F.HEADER_SIZE);
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
    const root = src.read(Number(h.rootsOff) + i * F.ROOT_SIZE, F.ROOT_SIZE);
    const off = root.readUInt32LE(F.ROOT.pathOff);
    const len = root.readUInt32LE(F.ROOT.pathLen);
    if (BigInt(off) + BigInt(len) > h.stringsSize) return EINVAL(`root ${i} path is outside the string table`);
    const p = src.read(Number(h.stringsOff) + off, len);
    if (!isNormalizedPath(p) || p.length === 1) return EINVAL(`root ${i} ${JSON.stringify(p.toString('latin1'))} is not a normalized absolute path other than "/"`);
  }
  return { code: 0, reason: 'ok' };
}

/**
 * The bytes of a blob, read by range: a Buffer (bufferSource) or PagedBytes
 * (src/paged.ts: a base image's blob, not held in memory whole).
 */
export interface BlobSource {
  readonly length: number;
  /** Bytes [off, off + len), inside [0, length): a view or a copy, valid as long as the source. */
  read(off: number, len: number): Buffer;
}

/** A Buffer as a BlobSource (reads are views). */
const bufferSource = (buf: Buffer): BlobSource => ({ length: buf.length, read: (off, len) => buf.subarray(off, off + len) });

const sourceOf = (blob: Buffer | BlobSource): BlobSource => (Buffer.isBuffer(blob) ? bufferSource(blob) : blob);

/** The VriftError of a blob that does not validate (message style of decodeBlob). */
function blobError(why: string, unsupported = false): VriftError {
  return new VriftError(
    `decoding PSFS blob: ${why}; ${unsupported ? (/older vrift/.test(why) ? 'rewrite it with `vrift blob`' : 'the blob was written by a newer vrift, upgrade this one') : 'the blob is corrupt or not a PSFS blob, rewrite it with `vrift blob`'}`,
  );
}

/** Blob entries in path-byte order, read from the blob's bytes (`uncertain`: the stored PSFS_E_UNCERTAIN), with their stored index. */
export interface BlobViewRows extends BlobRows {
  /** Stored index of the k-th entry (bucket value - 1). */
  stored(k: number): number;
}

/** Result of openBlob: a validated blob read in place. */
export interface BlobView {
  header: BlobHeader;
  roots: Buffer[];
  /** The entries in path-byte order (strictly increasing): BlobRows read from the bytes, no object per entry. */
  rows: BlobViewRows;
  /** Stored entry i (0..entry_count-1) as an object. */
  entry(i: number): DecodedEntry;
  /** Key (path bytes) of stored entry i. */
  key(i: number): Buffer;
  /** Row k whose path equals `p`, or -1 (binary search: O(log n) reads). */
  find(p: Buffer): number;
}

const CHECK_BYTES = 1 << 20;

/**
 * Validate a PSFS v1 blob's header (checkHeader: the rules of
 * psfs_view_init), its body_crc32, reserved fields and every entry (key and
 * target inside the string table, keys normalized, unique and under a root,
 * targets only on symlinks, nanoseconds below 10^9), and read it in place:
 * the entries as BlobRows in path-byte order, without an object per entry.
 * What the shim's lookups need beyond that (buckets, the inode table) is
 * checkBlob's. Entries a vrift writer stored are already in path order;
 * any other order is sorted (4 bytes per entry).
 *
 * @param blob the whole blob: bytes, or a BlobSource (e.g. PagedBytes: then every read is a copy from the paged pool)
 * @throws VriftError("decoding PSFS blob: <cause>") on the first violation, as decodeBlob
 */
export function openBlob(blob: Buffer | BlobSource): BlobView {
  const src = sourceOf(blob);
  const fail = (why: string, unsupported = false): never => {
    throw blobError(why, unsupported);
  };
  const c = checkHeader(src);
  if (c.code !== 0) fail(c.reason, c.code === -PSFS_ENOTSUP);
  const head = src.read(0, F.HEADER_SIZE);
  const h = readHeader(head);
  let crc = 0;
  for (let o = h.headerSize; o < src.length; o += CHECK_BYTES) crc = crc32(src.read(o, Math.min(CHECK_BYTES, src.length - o)), crc);
  if (crc !== h.bodyCrc32) fail('body checksum mismatch (body_crc32)');
  for (let o = F.HEADER.reserved; o < F.HEADER_SIZE; o += 4) if (head.readUInt32LE(o) !== 0) fail(`header reserved field at byte ${o} is not zero`);

  const stringsOff = Number(h.stringsOff);
  const stringsSize = Number(h.stringsSize);
  const str = (off: number, len: number, what: string): Buffer => {
    if (off + len > stringsSize) fail(`${what} [${off}, +${len}) is outside the string table (${stringsSize} bytes)`);
    return src.read(stringsOff + off, len);
  };
  const roots: Buffer[] = [];
  for (let i = 0; i < h.rootCount; i++) {
    const r = src.read(Number(h.rootsOff) + i * F.ROOT_SIZE, F.ROOT_SIZE);
    roots.push(Buffer.from(str(r.readUInt32LE(F.ROOT.pathOff), r.readUInt32LE(F.ROOT.pathLen), `root ${i}`)));
  }
  const underRoot = (p: Buffer): boolean =>
    roots.some((r) => p.equals(r) || (p.length > r.length && p[r.length] === 0x2f && p.subarray(0, r.length).equals(r)));

  // One entry's 128 bytes, the last one read kept: the encoder reads a row's fields one after another.
  const E = F.ENTRY;
  let lastI = -1;
  let last: Buffer = Buffer.alloc(0);
  const rec = (i: number): Buffer => {
    if (i !== lastI) {
      last = src.read(Number(h.entriesOff) + i * F.ENTRY_SIZE, F.ENTRY_SIZE);
      lastI = i;
    }
    return last;
  };
  const keyOf = (i: number): Buffer => {
    const o = rec(i);
    return str(o.readUInt32LE(E.pathOff), o.readUInt32LE(E.pathLen), `entry ${i} key`);
  };
  const isLink = (i: number): boolean => (rec(i).readUInt32LE(E.mode) & 0o170000) === 0o120000;
  const targetOf = (i: number): Buffer | undefined => {
    if (!isLink(i)) return undefined;
    const o = rec(i);
    return str(o.readUInt32LE(E.targetOff), o.readUInt32LE(E.targetLen), `entry ${i} symlink target`);
  };

  let sorted = true;
  let prev: Buffer | undefined;
  for (let i = 0; i < h.entryCount; i++) {
    const p = keyOf(i);
    const show = JSON.stringify(p.toString('latin1'));
    if (!isNormalizedPath(p)) fail(`entry ${i} key ${show} is not a normalized absolute path`);
    if (!underRoot(p)) fail(`entry ${i} key ${show} is outside every root`);
    if (prev !== undefined && Buffer.compare(prev, p) >= 0) sorted = false;
    prev = p;
    const o = rec(i);
    if (!isLink(i) && o.readUInt32LE(E.targetLen) !== 0) fail(`entry ${i} ${show} has a symlink target but is not a symlink`);
    for (let r = E.reserved; r < F.ENTRY_SIZE; r += 4) if (o.readUInt32LE(r) !== 0) fail(`entry ${i} ${show} reserved field is not zero`);
    for (const [off, name] of [[E.atimeNsec, 'atime'], [E.mtimeNsec, 'mtime'], [E.ctimeNsec, 'ctime']] as const) {
      const nsec = o.readUInt32LE(off);
      if (nsec > 999_999_999) fail(`entry ${i} ${show} ${name} nanoseconds ${nsec} out of range`);
    }
    targetOf(i);
  }
  // Path order: stored order when it already is (a vrift writer's), else sorted by (key, index).
  let order: Uint32Array | undefined;
  if (!sorted) {
    order = new Uint32Array(h.entryCount);
    for (let i = 0; i < order.length; i++) order[i] = i;
    order.sort((a, b) => Buffer.compare(keyOf(a), keyOf(b)) || a - b);
    // The first entry (stored order) whose key an earlier one has: decodeBlob's "appears twice".
    let dup = -1;
    for (let k = 1; k < order.length; k++) {
      if (keyOf(order[k - 1]).equals(keyOf(order[k])) && (dup < 0 || order[k] < dup)) dup = order[k];
    }
    if (dup >= 0) fail(`entry ${dup} key ${JSON.stringify(keyOf(dup).toString('latin1'))} appears twice`);
  }
  const at = order ? (k: number): number => order[k] : (k: number): number => k;
  const u32 = (off: number) => (k: number): number => rec(at(k)).readUInt32LE(off);
  const u64 = (off: number) => (k: number): bigint => rec(at(k)).readBigUInt64LE(off);
  const i64 = (off: number) => (k: number): bigint => rec(at(k)).readBigInt64LE(off);
  const rows: BlobViewRows = {
    count: h.entryCount,
    path: (k) => keyOf(at(k)),
    mode: u32(E.mode),
    uid: u32(E.uid),
    gid: u32(E.gid),
    nlink: u32(E.nlink),
    size: u64(E.size),
    blocks: u64(E.blocks),
    blksize: u32(E.blksize),
    ino: u64(E.ino),
    dev: u64(E.dev),
    rdev: u64(E.rdev),
    atimeSec: i64(E.atimeSec),
    atimeNsec: u32(E.atimeNsec),
    mtimeSec: i64(E.mtimeSec),
    mtimeNsec: u32(E.mtimeNsec),
    ctimeSec: i64(E.ctimeSec),
    ctimeNsec: u32(E.ctimeNsec),
    target: (k) => targetOf(at(k)),
    uncertain: (k) => (rec(at(k)).readUInt32LE(E.flags) & F.E_UNCERTAIN) !== 0,
    stored: at,
  };
  const entry = (i: number): DecodedEntry => {
    const path = Buffer.from(keyOf(i));
    const target = targetOf(i);
    const o = rec(i);
    const ts = (secOff: number, nsecOff: number): Timespec => ({ sec: o.readBigInt64LE(secOff), nsec: o.readUInt32LE(nsecOff) });
    return {
      path, mode: o.readUInt32LE(E.mode), uid: o.readUInt32LE(E.uid), gid: o.readUInt32LE(E.gid), nlink: o.readUInt32LE(E.nlink),
      size: o.readBigUInt64LE(E.size), blocks: o.readBigUInt64LE(E.blocks), blksize: o.readUInt32LE(E.blksize),
      ino: o.readBigUInt64LE(E.ino), dev: o.readBigUInt64LE(E.dev), rdev: o.readBigUInt64LE(E.rdev),
      atime: ts(E.atimeSec, E.atimeNsec), mtime: ts(E.mtimeSec, E.mtimeNsec), ctime: ts(E.ctimeSec, E.ctimeNsec),
      ...(target !== undefined ? { target: Buffer.from(target) } : {}),
      flags: o.readUInt32LE(E.flags),
    };
  };
  const find = (p: Buffer): number => {
    let lo = 0;
    let hi = h.entryCount - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = Buffer.compare(rows.path(mid), p);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  };
  return { header: h, roots, rows, entry, key: keyOf, find };
}

/**
 * Fully validate a PSFS v1 blob (layout: shim/psfs_format.h) without an
 * object per entry: what openBlob checks (the header with the rules of
 * psfs_view_init, body_crc32, reserved fields zero, every entry's key and
 * target inside the string table, keys normalized, unique and under a root,
 * targets only on symlinks), then the lookup structures the shim reads:
 * every entry is found from its key's home slot by the shim's probe (no
 * empty slot before it, within max_probe, the bucket's hash its key's), no
 * bucket points past entry_count or at an entry twice (as many buckets in
 * use as entries), and every inode tag points at an entry whose mtime
 * nanoseconds are that tag. Entries are visited in stored order, buckets and
 * tags looked up by slot: no memory per entry, and over PagedBytes the
 * entries and strings are read in sequence.
 *
 * @param blob the whole blob: bytes, or a BlobSource
 * @returns the blob read in place (openBlob)
 * @throws VriftError("decoding PSFS blob: <cause>") on the first violation; its
 *   message says whether the blob is unsupported (newer writer) or corrupt
 */
export function checkBlob(blob: Buffer | BlobSource): BlobView {
  const fail = (why: string): never => {
    throw blobError(why);
  };
  const src = sourceOf(blob);
  const view = openBlob(src);
  const h = view.header;
  const bucketsOff = Number(h.bucketsOff);
  const bucket = (s: number): Buffer => src.read(bucketsOff + s * F.BUCKET_SIZE, F.BUCKET_SIZE);
  let used = 0;
  for (let s = 0; s < h.bucketCount; s++) {
    const entry = bucket(s).readUInt32LE(F.BUCKET.entry);
    if (entry > h.entryCount) fail(`bucket ${s} points at entry ${entry - 1}, past entry_count ${h.entryCount}`);
    if (entry !== 0) used++;
  }
  const mask = h.bucketCount - 1;
  const inodesOff = Number(h.inodesOff);
  let tagged = 0;
  for (let i = 0; i < h.entryCount; i++) {
    // The shim's lookup: probe from the key's home slot; an empty slot ends the chain.
    const hash = F.hash(h.hashSeed, view.key(i));
    for (let dist = 0, s = hash & mask; ; dist++, s = (s + 1) & mask) {
      const b = bucket(s);
      const entry = b.readUInt32LE(F.BUCKET.entry);
      if (entry === 0 || dist === h.bucketCount) fail(`entry ${i} is not referenced by any bucket on its probe chain (from home slot ${hash & mask})`);
      if (entry !== i + 1) continue;
      if (b.readUInt32LE(F.BUCKET.hash) !== hash) fail(`bucket ${s} hash does not match the key of entry ${i}`);
      if (dist + 1 > h.maxProbe) fail(`bucket ${s} is ${dist + 1} probes from its home slot, more than max_probe ${h.maxProbe}`);
      break;
    }
    const t = src.read(Number(h.entriesOff) + i * F.ENTRY_SIZE + F.ENTRY.mtimeNsec, 4).readUInt32LE(0);
    if (t >= 1 && t <= h.inodeCount && src.read(inodesOff + (t - 1) * 4, 4).readUInt32LE(0) === i + 1) tagged++;
  }
  // Each entry was found in a bucket of its own: any other bucket in use points at one twice.
  if (used !== h.entryCount) fail(`${used} buckets are in use for ${h.entryCount} entries: an entry is referenced by two buckets`);
  let tags = 0;
  for (let t = 1; t <= h.inodeCount; t++) {
    const v = src.read(inodesOff + (t - 1) * 4, 4).readUInt32LE(0);
    if (v > h.entryCount) fail(`inode tag ${t} points at entry ${v - 1}, past entry_count ${h.entryCount}`);
    if (v !== 0) tags++;
  }
  // Each entry counted above is the one its own tag points at: any other tag in use points at an entry with other nanoseconds.
  if (tags !== tagged) fail(`${tags - tagged} inode tags point at entries whose mtime nanoseconds are not the tag`);
  return view;
}

/**
 * checkBlob, with the entries and buckets as objects (stored order).
 *
 * @param buf the whole blob
 * @returns header fields, roots, entries (stored order), buckets
 * @throws VriftError as checkBlob
 */
export function decodeBlob(buf: Buffer): DecodedBlob {
  const view = checkBlob(buf);
  const h = view.header;
  const buckets = Array.from({ length: h.bucketCount }, (_, s) => {
    const o = Number(h.bucketsOff) + s * F.BUCKET_SIZE;
    return { hash: buf.readUInt32LE(o + F.BUCKET.hash), entry: buf.readUInt32LE(o + F.BUCKET.entry) };
  });
  return { header: h, roots: view.roots, entries: Array.from({ length: h.entryCount }, (_, i) => view.entry(i)), buckets };
}
