import { crc32 } from './crc32';
import { createHash } from 'node:crypto';
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

/**
 * Encode a PSFS v1 blob (layout: shim/psfs_format.h).
 *
 * The output is deterministic for the same set of entries: entries are
 * sorted by path bytes, the hash seed is chosen by a fixed search, reserved
 * fields are zero. PSFS_E_REACHABLE is computed here: set on an entry when
 * every directory from its root down to its parent has mode & 0o111 == 0o111.
 * Memory beyond the output: the sorted entry array and ~20 bytes per entry
 * (parent and root lookups are binary searches, strings are copied straight
 * into the output); no map keyed by a string per path.
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
  for (const r of roots) {
    const i = indexOf(r);
    if (i < 0 || (entries[i].mode & S_IFMT) !== S_IFDIR) throw new VriftError(`encoding PSFS blob: domain root ${show(r)} has no directory entry`);
  }

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

  // String table: paths and targets, each stored once (copied into the
  // output at the end, straight from the entries).
  let stringsSize = 0;
  const addString = (b: Buffer): number => {
    const off = stringsSize;
    stringsSize += b.length;
    if (stringsSize > 0xffffffff) throw new VriftError('encoding PSFS blob: string table exceeds 4 GiB');
    return off;
  };
  const pathOffs = entries.map((e) => addString(e.path));
  const targetOffs = entries.map((e) => (e.target ? addString(e.target) : 0));
  const rootOffs = roots.map((r) => pathOffs[entries.findIndex((e) => e.path.equals(r))]);

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
    const rootIdx = entries.findIndex((e) => e.path.equals(roots[0]));
    const others = entries.reduce((m, e, i) => (i === rootIdx ? m : Math.max(m, e.mtime.nsec)), 0);
    const digestRoot = rootIdx >= 0 && entries[rootIdx].mtime.nsec > others ? rootIdx : -1;
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

  const layout = (): { rootsOff: number; bucketsOff: number; entriesOff: number; stringsOff: number; inodesOff: number; fileSize: number } => {
    const rootsOff = F.HEADER_SIZE;
    const bucketsOff = align(rootsOff + roots.length * F.ROOT_SIZE);
    const entriesOff = align(bucketsOff + bucketCount * F.BUCKET_SIZE);
    const stringsOff = align(entriesOff + entries.length * F.ENTRY_SIZE);
    const inodesOff = align(stringsOff + stringsSize);
    return { rootsOff, bucketsOff, entriesOff, stringsOff, inodesOff, fileSize: align(inodesOff + inodes.length * 4) };
  };

  // Pick the seed with the shortest worst-case probe chain among a fixed set
  // (deterministic). The bound is recorded in the header. Two tables are
  // reused (the best so far, the one being filled): a new table per seed was
  // garbage V8 freed late, up to 7 x 8 MiB at 320k entries (all 8 seeds are
  // tried when none gets the chain to 8 or less, as for 160k entries here).
  let best: { seed: number; maxProbe: number; table: Uint32Array } | undefined;
  let spare: Uint32Array = new Uint32Array(bucketCount * 2);
  for (let seed = 0; seed < 8; seed++) {
    const table = spare.fill(0);
    let maxProbe = 1;
    const mask = bucketCount - 1;
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
    if (!best || maxProbe < best.maxProbe) {
      spare = best?.table ?? new Uint32Array(bucketCount * 2);
      best = { seed, maxProbe, table };
    }
    if (maxProbe <= 8) break;
  }
  const { seed, maxProbe, table } = best!;

  const L = layout();
  const out = Buffer.alloc(L.fileSize);
  roots.forEach((r, i) => {
    out.writeUInt32LE(rootOffs[i], L.rootsOff + i * F.ROOT_SIZE + F.ROOT.pathOff);
    out.writeUInt32LE(r.length, L.rootsOff + i * F.ROOT_SIZE + F.ROOT.pathLen);
  });
  for (let i = 0; i < bucketCount; i++) {
    out.writeUInt32LE(table[i * 2], L.bucketsOff + i * F.BUCKET_SIZE + F.BUCKET.hash);
    out.writeUInt32LE(table[i * 2 + 1], L.bucketsOff + i * F.BUCKET_SIZE + F.BUCKET.entry);
  }
  entries.forEach((e, i) => {
    const o = L.entriesOff + i * F.ENTRY_SIZE;
    const E = F.ENTRY;
    out.writeUInt32LE(pathOffs[i], o + E.pathOff);
    out.writeUInt32LE(e.path.length, o + E.pathLen);
    out.writeUInt32LE(targetOffs[i], o + E.targetOff);
    out.writeUInt32LE(e.target ? e.target.length : 0, o + E.targetLen);
    out.writeUInt32LE(e.mode >>> 0, o + E.mode);
    out.writeUInt32LE(e.uid >>> 0, o + E.uid);
    out.writeUInt32LE(e.gid >>> 0, o + E.gid);
    out.writeUInt32LE(e.nlink >>> 0, o + E.nlink);
    out.writeBigUInt64LE(e.size, o + E.size);
    out.writeBigUInt64LE(e.blocks, o + E.blocks);
    out.writeBigUInt64LE(e.ino, o + E.ino);
    out.writeBigUInt64LE(e.dev, o + E.dev);
    out.writeBigUInt64LE(e.rdev, o + E.rdev);
    out.writeBigInt64LE(e.atime.sec, o + E.atimeSec);
    out.writeBigInt64LE(e.mtime.sec, o + E.mtimeSec);
    out.writeBigInt64LE(e.ctime.sec, o + E.ctimeSec);
    out.writeUInt32LE(e.atime.nsec, o + E.atimeNsec);
    out.writeUInt32LE(e.mtime.nsec, o + E.mtimeNsec);
    out.writeUInt32LE(e.ctime.nsec, o + E.ctimeNsec);
    out.writeUInt32LE(e.blksize >>> 0, o + E.blksize);
    out.writeUInt32LE((reachable[i] === 1 ? F.E_REACHABLE : 0) | (e.uncertain ? F.E_UNCERTAIN : 0), o + E.flags);
    e.path.copy(out, L.stringsOff + pathOffs[i]);
    if (e.target) e.target.copy(out, L.stringsOff + targetOffs[i]);
  });
  inodes.forEach((v, i) => out.writeUInt32LE(v, L.inodesOff + i * 4));

  const H = F.HEADER;
  F.MAGIC.copy(out, H.magic);
  out.writeUInt32LE(F.VERSION, H.version);
  out.writeUInt32LE(F.HEADER_SIZE, H.headerSize);
  out.writeUInt32LE(flags, H.flags);
  out.writeBigUInt64LE(BigInt(L.fileSize), H.fileSize);
  out.writeUInt32LE(entries.length, H.entryCount);
  out.writeUInt32LE(F.ENTRY_SIZE, H.entrySize);
  out.writeBigUInt64LE(BigInt(L.entriesOff), H.entriesOff);
  out.writeUInt32LE(bucketCount, H.bucketCount);
  out.writeUInt32LE(maxProbe, H.maxProbe);
  out.writeBigUInt64LE(BigInt(L.bucketsOff), H.bucketsOff);
  out.writeBigUInt64LE(BigInt(L.stringsOff), H.stringsOff);
  out.writeBigUInt64LE(BigInt(stringsSize), H.stringsSize);
  out.writeUInt32LE(seed, H.hashSeed);
  out.writeUInt32LE(roots.length, H.rootCount);
  out.writeBigUInt64LE(BigInt(L.rootsOff), H.rootsOff);
  if (inodes.length > 0) {
    out.writeBigUInt64LE(BigInt(L.inodesOff), H.inodesOff);
    out.writeUInt32LE(inodes.length, H.inodeCount);
  }
  out.writeUInt32LE(crc32(out.subarray(F.HEADER_SIZE)), H.bodyCrc32);
  out.writeUInt32LE(F.CONTENT_VERSION_MAX, H.contentVersion);
  out.writeUInt32LE(crc32(out.subarray(0, F.HEADER_SIZE)), H.headerCrc32);
  return out;
}

/**
 * Encode a blob and write it to `file` atomically (temp file in the same
 * directory, fsync, rename), mode 0644.
 *
 * @returns blob size in bytes, entry count and its OCI-style digest ("sha256:<hex>")
 * @throws VriftError from encodeBlob, or on I/O failure (the temp file is removed)
 */
export async function writeBlobFile(file: string, opts: BlobOptions): Promise<{ size: number; entryCount: number; digest: string }> {
  const bytes = encodeBlob(opts);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
  try {
    const fh = await fsp.open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(bytes);
      // World-readable whatever the umask: every process that preloads the
      // shim, whatever its uid, must be able to map the blob.
      await fh.chmod(0o644);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    // Name the file asked for, not the temp file beside it.
    const code = (err as NodeJS.ErrnoException).code;
    const why = code ? `${code} in ${path.dirname(file)}; check that the directory exists and is writable` : (err as Error).message;
    throw new VriftError(`writing PSFS blob ${file}: ${why}`, { cause: err });
  }
  return { size: bytes.length, entryCount: opts.entries.length, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}` };
}
