import { crc32 } from './crc32';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VriftError } from '../errors';
import * as F from './format';

/** A time as POSIX `struct timespec`: seconds since the epoch and nanoseconds (0..999999999). */
export interface Timespec {
  sec: bigint;
  nsec: number;
}

/**
 * One path of the domain, as the kernel would report it from lstat(2).
 * Field names follow POSIX `struct stat`.
 */
export interface BlobEntry {
  /** Normalized absolute path bytes (no `//`, `.`, `..`, no trailing `/`). */
  path: Buffer;
  /** st_mode: file type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** st_size in bytes. */
  size: bigint;
  /** st_blocks in 512-byte units. */
  blocks: bigint;
  /** st_blksize in bytes. */
  blksize: number;
  ino: bigint;
  dev: bigint;
  rdev: bigint;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Symlink target bytes as readlink(2) returns them; required iff S_ISLNK(mode). */
  target?: Buffer;
  /**
   * st_size/st_blocks are estimates (PSFS_E_UNCERTAIN): the shim passes this
   * path through instead of answering from memory. Default false.
   */
  uncertain?: boolean;
}

/** Input of encodeBlob. */
export interface BlobOptions {
  /** Domain roots: normalized absolute paths, not "/"; each must have a directory entry. */
  roots: Buffer[];
  /** Every path under the roots, roots included. Order does not matter (the writer sorts). */
  entries: BlobEntry[];
  /**
   * PSFS_H_* header flags. Default 0. With PSFS_H_IDENTITY_TAG every entry's
   * mtime.nsec (1..TAG_MAX) is its inode's tag: entries sharing a tag must
   * share st_ino, and the writer emits the inode table (tag -> entry).
   * Entries with mtime.nsec 0 carry no tag. The entry of roots[0] may carry
   * any mtime.nsec above every other entry's (a tree digest, see
   * digestRootMtime in src/tree/blobEntries.ts): it is then left out of the
   * table, and readers recognise it by that value.
   */
  flags?: number;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const SLASH = 0x2f;

const align = (n: number): number => (n + F.ALIGN - 1) & ~(F.ALIGN - 1);

/**
 * Whether `p` is a normalized absolute path in the blob's sense: starts with
 * "/", no empty, "." or ".." component, no trailing "/", no NUL, each
 * component <= NAME_MAX bytes and the whole < PATH_MAX bytes.
 */
export function isNormalizedPath(p: Buffer): boolean {
  if (p.length < 1 || p.length >= F.PATH_MAX || p[0] !== SLASH) return false;
  if (p.length === 1) return true;
  if (p[p.length - 1] === SLASH) return false;
  if (p.includes(0)) return false;
  let start = 1;
  for (let i = 1; i <= p.length; i++) {
    if (i === p.length || p[i] === SLASH) {
      const len = i - start;
      if (len === 0 || len > F.NAME_MAX) return false;
      if (len === 1 && p[start] === 0x2e) return false;
      if (len === 2 && p[start] === 0x2e && p[start + 1] === 0x2e) return false;
      start = i + 1;
    }
  }
  return true;
}

function parentOf(p: Buffer): Buffer {
  const i = p.lastIndexOf(SLASH);
  return i <= 0 ? Buffer.from('/') : p.subarray(0, i);
}

function show(p: Buffer): string {
  return JSON.stringify(p.toString('latin1'));
}

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Every numeric field must fit its on-disk width (nothing is silently truncated). */
function checkFields(e: BlobEntry): void {
  const bad = (field: string, v: unknown, range: string): never => {
    throw new VriftError(`encoding PSFS blob: ${show(e.path)}: ${field} ${String(v)} is outside ${range}`);
  };
  for (const f of ['mode', 'uid', 'gid', 'nlink', 'blksize'] as const) {
    const v = e[f];
    if (!Number.isInteger(v) || v < 0 || v > U32_MAX) bad(f, v, '0..2^32-1');
  }
  for (const f of ['size', 'blocks', 'ino', 'dev', 'rdev'] as const) {
    const v = e[f];
    if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) bad(f, v, '0..2^64-1');
  }
  for (const f of ['atime', 'mtime', 'ctime'] as const) {
    const t = e[f];
    if (typeof t.sec !== 'bigint' || t.sec < I64_MIN || t.sec > I64_MAX) bad(`${f} seconds`, t.sec, 'int64');
    if (!Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec > 999_999_999) bad(`${f} nanoseconds`, t.nsec, '0..999999999');
  }
}

/** Everything the encoder decides before it writes a byte (planBlob). */
interface BlobPlan {
  flags: number;
  roots: Buffer[];
  /** Entries sorted by path bytes: the on-disk order. */
  entries: BlobEntry[];
  /** 1 where PSFS_E_REACHABLE is set, by sorted index. */
  reachable: Uint8Array;
  /** Bytes of all paths (the string table's first part); targets follow. */
  pathsSize: number;
  stringsSize: number;
  /** String-table offset of each root's bytes (its entry's path). */
  rootOffs: number[];
  bucketCount: number;
  /** The bucket table's memory (2 uint32 per bucket), reused by every seed tried. */
  table: Uint32Array;
  /** The seed `table` was last filled for (usually `seed`: the search stops at a good one). */
  tableSeed: number;
  seed: number;
  maxProbe: number;
  /** PSFS_H_IDENTITY_TAG: inodes[tag - 1] = entry index + 1; else empty. */
  inodes: Uint32Array;
  rootsOff: number;
  bucketsOff: number;
  entriesOff: number;
  stringsOff: number;
  inodesOff: number;
  fileSize: number;
}

/**
 * Encode a PSFS v3 blob (layout: shim/psfs_format.h).
 *
 * The output is deterministic for the same set of entries: entries are
 * sorted by path bytes, the hash seed is chosen by a fixed search, reserved
 * fields are zero. PSFS_E_REACHABLE is computed here: set on an entry when
 * every directory from its root down to its parent has mode & 0o111 == 0o111.
 * Memory beyond the output: the sorted entry array and ~20 bytes per entry
 * (parent and root lookups are binary searches, strings are copied straight
 * into the output); no map keyed by a string per path. writeBlobFile
 * streams the same bytes to a file without holding them.
 *
 * @returns the blob bytes
 * @throws VriftError when a root or entry path is not normalized or outside
 *   every root, a path appears twice, a root has no directory entry, an
 *   entry's parent is missing or not a directory (the domain must be
 *   complete), a symlink has no target, a numeric field does not fit its
 *   on-disk width (u32 / u64 / int64 seconds, nanoseconds 0..999999999), or
 *   counts exceed the format limits.
 */
export function encodeBlob(opts: BlobOptions): Buffer {
  const plan = planBlob(opts);
  const out = Buffer.alloc(plan.fileSize);
  emitBlob(plan, (chunk, position) => chunk.copy(out, position));
  return out;
}

/** Validate `opts` and decide the layout, the seed and the tables (encodeBlob's errors). */
function planBlob(opts: BlobOptions): BlobPlan {
  const flags = opts.flags ?? 0;
  if ((flags & ~F.H_KNOWN_FLAGS) !== 0) throw new VriftError(`encoding PSFS blob: unknown header flags 0x${flags.toString(16)}`);
  const roots = opts.roots;
  if (roots.length < 1 || roots.length > F.MAX_ROOTS) {
    throw new VriftError(`encoding PSFS blob: need 1..${F.MAX_ROOTS} domain roots, got ${roots.length}`);
  }
  for (const r of roots) {
    if (!isNormalizedPath(r) || r.length === 1) {
      throw new VriftError(`encoding PSFS blob: domain root ${show(r)} must be a normalized absolute path other than "/"`);
    }
  }
  roots.forEach((a, i) =>
    roots.forEach((b, j) => {
      if (i !== j && (a.equals(b) || (b.length > a.length && b[a.length] === SLASH && b.subarray(0, a.length).equals(a)))) {
        throw new VriftError(`encoding PSFS blob: domain roots ${show(a)} and ${show(b)} overlap`);
      }
    }),
  );
  if (opts.entries.length > F.MAX_ENTRIES) throw new VriftError('encoding PSFS blob: too many entries');

  // Sorted by path bytes; lookups below are binary searches over this order
  // (no map keyed by a string per path: the builder's peak memory).
  const entries = [...opts.entries].sort((a, b) => Buffer.compare(a.path, b.path));
  const indexOf = (p: Buffer): number => {
    let lo = 0;
    let hi = entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = Buffer.compare(entries[mid].path, p);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid;
    }
    return -1;
  };
  const rootOf = (p: Buffer): Buffer | undefined =>
    roots.find((r) => p.equals(r) || (p.length > r.length && p[r.length] === SLASH && p.subarray(0, r.length).equals(r)));
  entries.forEach((e, i) => {
    if (!isNormalizedPath(e.path)) throw new VriftError(`encoding PSFS blob: path ${show(e.path)} is not a normalized absolute path`);
    if (!rootOf(e.path)) throw new VriftError(`encoding PSFS blob: path ${show(e.path)} is outside every domain root`);
    if (i > 0 && entries[i - 1].path.equals(e.path)) throw new VriftError(`encoding PSFS blob: path ${show(e.path)} appears twice`);
    checkFields(e);
    const isLink = (e.mode & S_IFMT) === S_IFLNK;
    if (isLink !== (e.target !== undefined)) {
      throw new VriftError(`encoding PSFS blob: ${show(e.path)}: a symlink needs a target and only a symlink may have one`);
    }
  });
  const rootIdx = roots.map((r) => {
    const i = indexOf(r);
    if (i < 0 || (entries[i].mode & S_IFMT) !== S_IFDIR) throw new VriftError(`encoding PSFS blob: domain root ${show(r)} has no directory entry`);
    return i;
  });

  // Reachability (by sorted index): computed parent-first, which sorted order
  // guarantees (a parent's bytes are a strict prefix of its children's, so it sorts first).
  const reachable = new Uint8Array(entries.length);
  entries.forEach((e, i) => {
    const isRoot = roots.some((r) => r.equals(e.path));
    let ok = true;
    if (!isRoot) {
      const p = indexOf(parentOf(e.path));
      const parent = p < 0 ? undefined : entries[p];
      if (!parent || (parent.mode & S_IFMT) !== S_IFDIR) {
        throw new VriftError(`encoding PSFS blob: ${show(e.path)}: parent is missing or not a directory (the domain must be complete)`);
      }
      ok = reachable[p] === 1 && (parent.mode & 0o111) === 0o111;
    }
    reachable[i] = ok ? 1 : 0;
  });

  // String table: every path in entry order, then every symlink target in
  // entry order (emitBlob recomputes each offset as a running sum).
  let pathsSize = 0;
  let stringsSize = 0;
  const rootOffs = rootIdx.map(() => 0);
  entries.forEach((e, i) => {
    const at = rootIdx.indexOf(i);
    if (at >= 0) rootOffs[at] = pathsSize;
    pathsSize += e.path.length;
  });
  stringsSize = pathsSize;
  for (const e of entries) if (e.target) stringsSize += e.target.length;
  if (stringsSize > 0xffffffff) throw new VriftError('encoding PSFS blob: string table exceeds 4 GiB');

  let bucketCount = 1;
  while (bucketCount < entries.length * 2) bucketCount *= 2;

  // Identity tags: inodes[tag - 1] = entry index + 1 (entries sorted above).
  let inodes = new Uint32Array(0);
  if (flags & F.H_IDENTITY_TAG) {
    // Tags are dense (the builder numbers inodes 1, 2, ...): a sparse one
    // would make the table, 4 bytes per tag value, absurdly large.
    const limit = Math.max(1024, 4 * entries.length);
    // roots[0]'s entry may carry a tree digest above every tag instead
    // (psfs_format.h PSFS_H_IDENTITY_TAG): then it stays out of the table.
    const r0 = rootIdx[0];
    const others = entries.reduce((m, e, i) => (i === r0 ? m : Math.max(m, e.mtime.nsec)), 0);
    const digestRoot = entries[r0].mtime.nsec > others ? r0 : -1;
    let maxTag = 0;
    for (const [i, e] of entries.entries()) {
      if (i === digestRoot) continue;
      if (e.mtime.nsec > limit) {
        throw new VriftError(`encoding PSFS blob: ${show(e.path)}: identity tag ${e.mtime.nsec} (mtime nanoseconds) exceeds ${limit}; number inodes densely from 1, or leave PSFS_H_IDENTITY_TAG unset`);
      }
      maxTag = Math.max(maxTag, e.mtime.nsec);
    }
    inodes = new Uint32Array(maxTag);
    entries.forEach((e, i) => {
      const tag = e.mtime.nsec;
      if (tag === 0 || i === digestRoot) return;
      const prev = inodes[tag - 1];
      if (prev !== 0 && entries[prev - 1].ino !== e.ino) {
        throw new VriftError(`encoding PSFS blob: ${show(e.path)} and ${show(entries[prev - 1].path)} share identity tag ${tag} but not st_ino`);
      }
      if (prev === 0) inodes[tag - 1] = i + 1;
    });
  }

  // Pick the seed with the shortest worst-case probe chain among a fixed set
  // (deterministic). The bound is recorded in the header. One table serves
  // every seed; emitBlob fills it again only when the winner was not the
  // last seed tried (a table per seed was garbage V8 freed late, up to
  // 7 x 8 MiB at 320k entries).
  const table = new Uint32Array(bucketCount * 2);
  let seed = 0;
  let maxProbe = Infinity;
  let tableSeed = 0;
  for (let s = 0; s < 8; s++) {
    const probe = fillBuckets(table, entries, s);
    tableSeed = s;
    if (probe < maxProbe) {
      seed = s;
      maxProbe = probe;
    }
    if (probe <= 8) break;
  }

  const rootsOff = F.HEADER_SIZE;
  const bucketsOff = align(rootsOff + roots.length * F.ROOT_SIZE);
  const entriesOff = align(bucketsOff + bucketCount * F.BUCKET_SIZE);
  const stringsOff = align(entriesOff + entries.length * F.ENTRY_SIZE);
  const inodesOff = align(stringsOff + stringsSize);
  const fileSize = align(inodesOff + inodes.length * 4);
  return {
    flags, roots, entries, reachable, pathsSize, stringsSize, rootOffs, bucketCount, table, tableSeed, seed, maxProbe, inodes,
    rootsOff, bucketsOff, entriesOff, stringsOff, inodesOff, fileSize,
  };
}

/**
 * Fill `table` (2 uint32 per bucket: hash, entry index + 1; zeroed here)
 * with `entries` for `seed`: open addressing, linear probing
 * (psfs_format.h). Returns the longest probe chain.
 */
function fillBuckets(table: Uint32Array, entries: BlobEntry[], seed: number): number {
  table.fill(0);
  const mask = table.length / 2 - 1;
  let maxProbe = 1;
  entries.forEach((e, i) => {
    const h = F.hash(seed, e.path);
    let slot = h & mask;
    let probe = 1;
    while (table[slot * 2 + 1] !== 0) {
      slot = (slot + 1) & mask;
      probe++;
    }
    table[slot * 2] = h;
    table[slot * 2 + 1] = i + 1;
    if (probe > maxProbe) maxProbe = probe;
  });
  return maxProbe;
}

/** Bytes per chunk handed to emitBlob's sink. */
const CHUNK = 1 << 20;

/**
 * Write the blob `plan` describes through `sink` (chunk, file position):
 * the body in file order in chunks of at most 1 MiB, then the 128-byte
 * header at position 0 (its body_crc32 covers what came before). The
 * chunk buffer is reused: a sink must copy or write it before returning.
 */
function emitBlob(plan: BlobPlan, sink: (chunk: Buffer, position: number) => void): void {
  const { entries, roots, reachable } = plan;
  const buf = Buffer.alloc(CHUNK);
  let used = 0;
  let pos = F.HEADER_SIZE; // file position of buf[0]
  let bodyCrc = 0;
  const flush = (): void => {
    if (used === 0) return;
    const chunk = buf.subarray(0, used);
    bodyCrc = crc32(chunk, bodyCrc);
    sink(chunk, pos);
    pos += used;
    used = 0;
  };
  const room = (n: number): number => {
    if (used + n > CHUNK) flush();
    const at = used;
    used += n; // n <= CHUNK always: entries, buckets and strings are written piecewise
    return at;
  };
  const padTo = (offset: number): void => {
    const n = offset - (pos + used);
    if (n > 0) buf.fill(0, room(n), used);
  };
  const bytes = (b: Buffer): void => {
    for (let i = 0; i < b.length; i += CHUNK) {
      const part = b.subarray(i, Math.min(b.length, i + CHUNK));
      part.copy(buf, room(part.length));
    }
  };

  roots.forEach((r, i) => {
    const o = room(F.ROOT_SIZE);
    buf.fill(0, o, o + F.ROOT_SIZE);
    buf.writeUInt32LE(plan.rootOffs[i], o + F.ROOT.pathOff);
    buf.writeUInt32LE(r.length, o + F.ROOT.pathLen);
  });
  padTo(plan.bucketsOff);
  const table = plan.table;
  if (plan.tableSeed !== plan.seed) fillBuckets(table, entries, plan.seed);
  for (let i = 0; i < plan.bucketCount; i++) {
    const o = room(F.BUCKET_SIZE);
    buf.writeUInt32LE(table[i * 2], o + F.BUCKET.hash);
    buf.writeUInt32LE(table[i * 2 + 1], o + F.BUCKET.entry);
  }
  padTo(plan.entriesOff);
  let pathOff = 0;
  let targetOff = plan.pathsSize;
  entries.forEach((e, i) => {
    const o = room(F.ENTRY_SIZE);
    const E = F.ENTRY;
    buf.fill(0, o, o + F.ENTRY_SIZE);
    buf.writeUInt32LE(pathOff, o + E.pathOff);
    buf.writeUInt32LE(e.path.length, o + E.pathLen);
    buf.writeUInt32LE(e.target ? targetOff : 0, o + E.targetOff);
    buf.writeUInt32LE(e.target ? e.target.length : 0, o + E.targetLen);
    buf.writeUInt32LE(e.mode >>> 0, o + E.mode);
    buf.writeUInt32LE(e.uid >>> 0, o + E.uid);
    buf.writeUInt32LE(e.gid >>> 0, o + E.gid);
    buf.writeUInt32LE(e.nlink >>> 0, o + E.nlink);
    buf.writeBigUInt64LE(e.size, o + E.size);
    buf.writeBigUInt64LE(e.blocks, o + E.blocks);
    buf.writeBigUInt64LE(e.ino, o + E.ino);
    buf.writeBigUInt64LE(e.dev, o + E.dev);
    buf.writeBigUInt64LE(e.rdev, o + E.rdev);
    buf.writeBigInt64LE(e.atime.sec, o + E.atimeSec);
    buf.writeBigInt64LE(e.mtime.sec, o + E.mtimeSec);
    buf.writeBigInt64LE(e.ctime.sec, o + E.ctimeSec);
    buf.writeUInt32LE(e.atime.nsec, o + E.atimeNsec);
    buf.writeUInt32LE(e.mtime.nsec, o + E.mtimeNsec);
    buf.writeUInt32LE(e.ctime.nsec, o + E.ctimeNsec);
    buf.writeUInt32LE(e.blksize >>> 0, o + E.blksize);
    buf.writeUInt32LE((reachable[i] === 1 ? F.E_REACHABLE : 0) | (e.uncertain ? F.E_UNCERTAIN : 0), o + E.flags);
    pathOff += e.path.length;
    if (e.target) targetOff += e.target.length;
  });
  padTo(plan.stringsOff);
  for (const e of entries) bytes(e.path);
  for (const e of entries) if (e.target) bytes(e.target);
  padTo(plan.inodesOff);
  for (let i = 0; i < plan.inodes.length; i++) buf.writeUInt32LE(plan.inodes[i], room(4));
  padTo(plan.fileSize);
  flush();

  const h = Buffer.alloc(F.HEADER_SIZE);
  const H = F.HEADER;
  F.MAGIC.copy(h, H.magic);
  h.writeUInt32LE(F.VERSION, H.version);
  h.writeUInt32LE(F.HEADER_SIZE, H.headerSize);
  h.writeUInt32LE(plan.flags, H.flags);
  h.writeBigUInt64LE(BigInt(plan.fileSize), H.fileSize);
  h.writeUInt32LE(entries.length, H.entryCount);
  h.writeUInt32LE(F.ENTRY_SIZE, H.entrySize);
  h.writeBigUInt64LE(BigInt(plan.entriesOff), H.entriesOff);
  h.writeUInt32LE(plan.bucketCount, H.bucketCount);
  h.writeUInt32LE(plan.maxProbe, H.maxProbe);
  h.writeBigUInt64LE(BigInt(plan.bucketsOff), H.bucketsOff);
  h.writeBigUInt64LE(BigInt(plan.stringsOff), H.stringsOff);
  h.writeBigUInt64LE(BigInt(plan.stringsSize), H.stringsSize);
  h.writeUInt32LE(plan.seed, H.hashSeed);
  h.writeUInt32LE(roots.length, H.rootCount);
  h.writeBigUInt64LE(BigInt(plan.rootsOff), H.rootsOff);
  if (plan.inodes.length > 0) {
    h.writeBigUInt64LE(BigInt(plan.inodesOff), H.inodesOff);
    h.writeUInt32LE(plan.inodes.length, H.inodeCount);
  }
  h.writeUInt32LE(bodyCrc, H.bodyCrc32);
  h.writeUInt32LE(F.CONTENT_VERSION_MAX, H.contentVersion);
  h.writeUInt32LE(crc32(h), H.headerCrc32);
  sink(h, 0);
}

/**
 * Encode a blob and write it to `file` atomically (temp file in the same
 * directory, fsync, rename), mode 0644. The bytes are streamed to the file
 * as they are encoded (1 MiB at a time: the blob is never whole in memory),
 * then read back once for the digest.
 *
 * @returns blob size in bytes, entry count and its OCI-style digest ("sha256:<hex>")
 * @throws VriftError from encodeBlob, or on I/O failure (the temp file is removed)
 */
export async function writeBlobFile(file: string, opts: BlobOptions): Promise<{ size: number; entryCount: number; digest: string }> {
  const plan = planBlob(opts);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
  const digest = createHash('sha256');
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      emitBlob(plan, (chunk, position) => {
        for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done, chunk.length - done, position + done);
      });
      // World-readable whatever the umask: every process that preloads the
      // shim, whatever its uid, must be able to map the blob.
      fs.fchmodSync(fd, 0o644);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    for await (const chunk of fs.createReadStream(tmp, { highWaterMark: CHUNK })) digest.update(chunk as Buffer);
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    // Name the file asked for, not the temp file beside it.
    const code = (err as NodeJS.ErrnoException).code;
    const why = code ? `${code} in ${path.dirname(file)}; check that the directory exists, is writable and has space` : (err as Error).message;
    throw new VriftError(`writing PSFS blob ${file}: ${why}`, { cause: err });
  }
  return { size: plan.fileSize, entryCount: plan.entries.length, digest: `sha256:${digest.digest('hex')}` };
}
