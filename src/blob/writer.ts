import { memoryBuckets, windowedBuckets, windowing, type BucketTable } from './buckets';
import { crc32 } from './crc32';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VriftError } from '../errors';
import * as F from './format';
import { PagedArray } from '../paged';

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
   * treeDigestNsec in src/tree/blobEntries.ts): it is then left out of the
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

/**
 * The entries of a blob as columns read by index, in path-byte order
 * (Buffer.compare order, strictly increasing: no duplicates): what the
 * encoder reads instead of BlobEntry objects, so that a builder can describe
 * a tree of any size with a few bytes per entry (src/tree/blobEntries.ts
 * reads an EntryTable). k runs 0..count-1; fields as BlobEntry's. The
 * encoder reads each field several times, in sequential passes over k: an
 * accessor must be cheap and return the same value every time.
 */
export interface BlobRows {
  readonly count: number;
  /** Path bytes of the k-th entry: a view, valid while the source is unchanged (the encoder keeps none). */
  path(k: number): Buffer;
  mode(k: number): number;
  uid(k: number): number;
  gid(k: number): number;
  nlink(k: number): number;
  size(k: number): bigint;
  blocks(k: number): bigint;
  blksize(k: number): number;
  ino(k: number): bigint;
  dev(k: number): bigint;
  rdev(k: number): bigint;
  atimeSec(k: number): bigint;
  atimeNsec(k: number): number;
  mtimeSec(k: number): bigint;
  mtimeNsec(k: number): number;
  ctimeSec(k: number): bigint;
  ctimeNsec(k: number): number;
  /** Symlink target bytes (a view, as path), undefined for other types. */
  target(k: number): Buffer | undefined;
  uncertain(k: number): boolean;
}

/**
 * BlobRows over BlobEntry objects: a sorted copy of `entries` (by path
 * bytes; the objects themselves are shared, not copied). For callers that
 * hold objects anyway (host trees, `vrift layer`, merges, tests).
 *
 * @param entries any order; duplicates stay (the encoder refuses them)
 * @returns rows in path-byte order; `entryAt(k)` is the k-th object
 */
export function blobRowsOf(entries: readonly BlobEntry[]): BlobRows & { entryAt(k: number): BlobEntry } {
  const s = [...entries].sort((a, b) => Buffer.compare(a.path, b.path));
  return {
    count: s.length,
    entryAt: (k) => s[k],
    path: (k) => s[k].path,
    mode: (k) => s[k].mode,
    uid: (k) => s[k].uid,
    gid: (k) => s[k].gid,
    nlink: (k) => s[k].nlink,
    size: (k) => s[k].size,
    blocks: (k) => s[k].blocks,
    blksize: (k) => s[k].blksize,
    ino: (k) => s[k].ino,
    dev: (k) => s[k].dev,
    rdev: (k) => s[k].rdev,
    atimeSec: (k) => s[k].atime.sec,
    atimeNsec: (k) => s[k].atime.nsec,
    mtimeSec: (k) => s[k].mtime.sec,
    mtimeNsec: (k) => s[k].mtime.nsec,
    ctimeSec: (k) => s[k].ctime.sec,
    ctimeNsec: (k) => s[k].ctime.nsec,
    target: (k) => s[k].target,
    uncertain: (k) => s[k].uncertain === true,
  };
}

/**
 * The k-th row of `rows` as a plain BlobEntry (own Timespecs; `target` and
 * `uncertain` present only when set): for merges and tests, not for the
 * builder's own path (one object per entry is what BlobRows avoids).
 */
export function blobEntryAt(rows: BlobRows, k: number): BlobEntry {
  const target = rows.target(k);
  return {
    path: Buffer.from(rows.path(k)), mode: rows.mode(k), uid: rows.uid(k), gid: rows.gid(k), nlink: rows.nlink(k),
    size: rows.size(k), blocks: rows.blocks(k), blksize: rows.blksize(k), ino: rows.ino(k), dev: rows.dev(k), rdev: rows.rdev(k),
    atime: { sec: rows.atimeSec(k), nsec: rows.atimeNsec(k) },
    mtime: { sec: rows.mtimeSec(k), nsec: rows.mtimeNsec(k) },
    ctime: { sec: rows.ctimeSec(k), nsec: rows.ctimeNsec(k) },
    ...(target !== undefined ? { target: Buffer.from(target) } : {}), ...(rows.uncertain(k) ? { uncertain: true } : {}),
  };
}

/**
 * Parents of paths visited in path-byte order, from a stack of the
 * directories visited so far: O(depth) per path, no map keyed by a string
 * per path. Byte order is not depth-first order ("/a" < "/a.b" < "/a.b/y" <
 * "/a/x": '.' < '/'), so a directory leaves the stack only once a path
 * sorts past every path it could contain (past `dir + "/"`); whatever stays
 * is a prefix of the current path, and its parent, if visited as a
 * directory, is among them (nothing between a parent and its child in byte
 * order sorts past the parent's "/").
 *
 * The stack keeps its own copy of the top directory's path bytes: every
 * directory below the top is a prefix of it, so one buffer holds all their
 * paths. Reading a directory's path again for each child cost a fresh
 * buffer a child, and from a spilled EntryTable a read of the parent's
 * slab a child: a directory of 200k files alternated the parent's slab
 * with its children's, a whole 1 MiB slab read back every ~16 children
 * (~4,800 reads, +40 MiB peak RSS of garbage buffers, measured).
 */
export class ParentStack {
  private ids: number[] = [];
  private lens: number[] = [];
  /** The top directory's path (its first lens[top] bytes); grows to the longest directory path pushed. */
  private top = Buffer.alloc(256);

  /**
   * The id of the pushed directory whose path is `p`'s parent, or -1.
   * Call for every path, in strictly increasing byte order (it drops the
   * directories `p` sorts past), before pushing `p` itself.
   */
  parent(p: Buffer): number {
    const { ids, lens } = this;
    // Pop what p sorts past: keep q only if p = q + (a byte <= "/") + ...
    while (ids.length > 0) {
      const m = lens[lens.length - 1];
      if (p.length > m && p[m] <= SLASH && p.compare(this.top, 0, m, 0, m) === 0) break;
      ids.pop();
      lens.pop();
    }
    // Every element left is a prefix of p, longer ones on top: find the one
    // as long as p's parent (p[0..L) with L its last "/").
    const l = p.lastIndexOf(SLASH);
    for (let s = lens.length - 1; s >= 0 && lens[s] >= l; s--) {
      if (lens[s] === l) return ids[s];
    }
    return -1;
  }

  /**
   * Push directory `id` whose path is `p` (copied; call after parent(p):
   * what is left on the stack is then a prefix of `p`, so `p` holds their
   * paths too).
   */
  push(id: number, p: Buffer): void {
    if (p.length > this.top.length) this.top = Buffer.alloc(Math.max(p.length, 2 * this.top.length));
    p.copy(this.top, 0);
    this.ids.push(id);
    this.lens.push(p.length);
  }
}
function show(p: Buffer): string {
  return JSON.stringify(p.toString('latin1'));
}

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** Every numeric field of row k must fit its on-disk width (nothing is silently truncated). */
function checkFields(rows: BlobRows, k: number): void {
  const bad = (field: string, v: unknown, range: string): never => {
    throw new VriftError(`encoding PSFS blob: ${show(rows.path(k))}: ${field} ${String(v)} is outside ${range}`);
  };
  for (const f of ['mode', 'uid', 'gid', 'nlink', 'blksize'] as const) {
    const v = rows[f](k);
    if (!Number.isInteger(v) || v < 0 || v > U32_MAX) bad(f, v, '0..2^32-1');
  }
  for (const f of ['size', 'blocks', 'ino', 'dev', 'rdev'] as const) {
    const v = rows[f](k);
    if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) bad(f, v, '0..2^64-1');
  }
  for (const f of ['atime', 'mtime', 'ctime'] as const) {
    const sec = rows[`${f}Sec`](k);
    const nsec = rows[`${f}Nsec`](k);
    if (typeof sec !== 'bigint' || sec < I64_MIN || sec > I64_MAX) bad(`${f} seconds`, sec, 'int64');
    if (!Number.isInteger(nsec) || nsec < 0 || nsec > 999_999_999) bad(`${f} nanoseconds`, nsec, '0..999999999');
  }
}

/** Everything the encoder decides before it writes a byte (planBlob). */
interface BlobPlan {
  flags: number;
  roots: Buffer[];
  /** The entries in path-byte order: the on-disk order. */
  rows: BlobRows;
  /** 1 where PSFS_E_REACHABLE is set, by row. */
  reachable: PagedArray;
  /** Bytes of all paths (the string table's first part); targets follow. */
  pathsSize: number;
  stringsSize: number;
  /** String-table offset of each root's bytes (its entry's path). */
  rootOffs: number[];
  /** A power of two >= 2n (2..4 buckets per entry). */
  bucketCount: number;
  /** PSFS_H_IDENTITY_TAG: inodes.get(tag - 1) = row + 1, for inodeCount tags; else none. */
  inodes: PagedArray;
  inodeCount: number;
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
 * Memory beyond the output: a sorted copy of the entry array (blobRowsOf)
 * and the encoder's ~20 bytes per entry (see encodeBlobRows). writeBlobFile
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
  if (opts.entries.length > F.MAX_ENTRIES) throw new VriftError('encoding PSFS blob: too many entries');
  return encodeBlobRows(blobRowsOf(opts.entries), opts.roots, opts.flags ?? 0);
}

/**
 * encodeBlob over rows already in path-byte order (BlobRows): the same
 * bytes for the same entries. Memory beyond the output and the rows: the
 * bucket table (2 uint32 per bucket, 2..4 buckets per entry; writeBlobRows
 * builds it a window at a time instead, src/blob/buckets.ts), 1 byte per
 * entry (PSFS_E_REACHABLE) and the inode table (4 bytes per identity tag),
 * both paged (src/paged.ts: bounded, past the pool in a temp file), and a
 * stack of directories as deep as the deepest path; no object per entry.
 *
 * @param rows the entries, strictly increasing by path bytes
 * @param roots domain roots (as BlobOptions.roots)
 * @param flags PSFS_H_* header flags (as BlobOptions.flags)
 * @returns the blob bytes
 * @throws VriftError as encodeBlob; rows out of order: "appears twice" when
 *   two are equal, an internal error otherwise
 */
export function encodeBlobRows(rows: BlobRows, roots: Buffer[], flags = 0): Buffer {
  const plan = planBlob(rows, roots, flags);
  const out = Buffer.alloc(plan.fileSize);
  emitBlob(plan, chooseSeed(memoryBuckets(rows, plan.bucketCount)), (chunk, position) => chunk.copy(out, position));
  return out;
}

/**
 * Validate the rows and decide the layout and the inode table (encodeBlob's
 * errors), in sequential passes over the rows. The bucket table and its
 * seed are chooseSeed's.
 */
function planBlob(rows: BlobRows, roots: Buffer[], flags: number): BlobPlan {
  if ((flags & ~F.H_KNOWN_FLAGS) !== 0) throw new VriftError(`encoding PSFS blob: unknown header flags 0x${flags.toString(16)}`);
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
  const n = rows.count;
  if (n > F.MAX_ENTRIES) throw new VriftError('encoding PSFS blob: too many entries');

  // Pass 1: each row on its own, and the order (strictly increasing: no
  // duplicates, and parents before children for pass 2); the roots' rows.
  // The index of the root each path lies under (-1: outside every root).
  const rootOf = (p: Buffer): number =>
    roots.findIndex((r) => p.equals(r) || (p.length > r.length && p[r.length] === SLASH && p.subarray(0, r.length).equals(r)));
  const rootIdx = roots.map(() => -1);
  let prev: Buffer | undefined;
  for (let k = 0; k < n; k++) {
    const p = rows.path(k);
    if (!isNormalizedPath(p)) throw new VriftError(`encoding PSFS blob: path ${show(p)} is not a normalized absolute path`);
    const r = rootOf(p);
    if (r < 0) throw new VriftError(`encoding PSFS blob: path ${show(p)} is outside every domain root`);
    if (prev !== undefined) {
      const c = Buffer.compare(prev, p);
      if (c === 0) throw new VriftError(`encoding PSFS blob: path ${show(p)} appears twice`);
      if (c > 0) throw new VriftError(`encoding PSFS blob: path ${show(p)} comes after ${show(prev)}: rows not in path-byte order (internal error)`);
    }
    prev = p;
    if (p.length === roots[r].length) rootIdx[r] = k;
    checkFields(rows, k);
    const isLink = (rows.mode(k) & S_IFMT) === S_IFLNK;
    if (isLink !== (rows.target(k) !== undefined)) {
      throw new VriftError(`encoding PSFS blob: ${show(p)}: a symlink needs a target and only a symlink may have one`);
    }
  }
  prev = undefined;
  roots.forEach((r, j) => {
    const k = rootIdx[j];
    if (k < 0 || (rows.mode(k) & S_IFMT) !== S_IFDIR) throw new VriftError(`encoding PSFS blob: domain root ${show(r)} has no directory entry`);
  });

  // Pass 2: parents and reachability, parent first (a parent's bytes are a
  // strict prefix of its children's, so it sorts first), from a stack of
  // directories (no lookup structure per path: the builder's peak memory).
  const reachable = new PagedArray(Uint8Array); // paged (src/paged.ts): bounded memory
  const stack = new ParentStack();
  for (let k = 0; k < n; k++) {
    const p = rows.path(k);
    const parent = stack.parent(p);
    let ok = true;
    if (!roots.some((r) => r.equals(p))) {
      if (parent < 0) {
        throw new VriftError(`encoding PSFS blob: ${show(p)}: parent is missing or not a directory (the domain must be complete)`);
      }
      ok = reachable.get(parent) === 1 && (rows.mode(parent) & 0o111) === 0o111;
    }
    reachable.set(k, ok ? 1 : 0);
    if ((rows.mode(k) & S_IFMT) === S_IFDIR) stack.push(k, p);
  }

  // String table: every path in entry order, then every symlink target in
  // entry order (emitBlob recomputes each offset as a running sum).
  let pathsSize = 0;
  const rootOffs = rootIdx.map(() => 0);
  let targetsSize = 0;
  for (let k = 0; k < n; k++) {
    const at = rootIdx.indexOf(k);
    if (at >= 0) rootOffs[at] = pathsSize;
    pathsSize += rows.path(k).length;
    targetsSize += rows.target(k)?.length ?? 0;
  }
  const stringsSize = pathsSize + targetsSize;
  if (stringsSize > 0xffffffff) throw new VriftError('encoding PSFS blob: string table exceeds 4 GiB');

  let bucketCount = 1;
  while (bucketCount < n * 2) bucketCount *= 2;

  // Identity tags: inodes.get(tag - 1) = row + 1.
  const inodes = new PagedArray(Uint32Array);
  let inodeCount = 0;
  if (flags & F.H_IDENTITY_TAG) {
    // Tags are dense (the builder numbers inodes 1, 2, ...): a sparse one
    // would make the table, 4 bytes per tag value, absurdly large.
    const limit = Math.max(1024, 4 * n);
    // roots[0]'s entry may carry a tree digest above every tag instead
    // (psfs_format.h PSFS_H_IDENTITY_TAG): then it stays out of the table.
    const r0 = rootIdx[0];
    let others = 0;
    for (let k = 0; k < n; k++) if (k !== r0) others = Math.max(others, rows.mtimeNsec(k));
    const digestRoot = rows.mtimeNsec(r0) > others ? r0 : -1;
    let maxTag = 0;
    for (let k = 0; k < n; k++) {
      if (k === digestRoot) continue;
      const tag = rows.mtimeNsec(k);
      if (tag > limit) {
        throw new VriftError(`encoding PSFS blob: ${show(rows.path(k))}: identity tag ${tag} (mtime nanoseconds) exceeds ${limit}; number inodes densely from 1, or leave PSFS_H_IDENTITY_TAG unset`);
      }
      maxTag = Math.max(maxTag, tag);
    }
    inodeCount = maxTag;
    for (let k = 0; k < n; k++) {
      const tag = rows.mtimeNsec(k);
      if (tag === 0 || k === digestRoot) continue;
      const first = inodes.get(tag - 1);
      if (first !== 0 && rows.ino(first - 1) !== rows.ino(k)) {
        throw new VriftError(`encoding PSFS blob: ${show(rows.path(k))} and ${show(rows.path(first - 1))} share identity tag ${tag} but not st_ino`);
      }
      if (first === 0) inodes.set(tag - 1, k + 1);
    }
  }

  const rootsOff = F.HEADER_SIZE;
  const bucketsOff = align(rootsOff + roots.length * F.ROOT_SIZE);
  const entriesOff = align(bucketsOff + bucketCount * F.BUCKET_SIZE);
  const stringsOff = align(entriesOff + n * F.ENTRY_SIZE);
  const inodesOff = align(stringsOff + stringsSize);
  const fileSize = align(inodesOff + inodeCount * 4);
  return {
    flags, roots, rows, reachable, pathsSize, stringsSize, rootOffs, bucketCount, inodes, inodeCount,
    rootsOff, bucketsOff, entriesOff, stringsOff, inodesOff, fileSize,
  };
}

/** A bucket table and the seed chosen for it. */
interface SeededBuckets {
  table: BucketTable;
  seed: number;
  /** The header's max_probe: the longest probe chain for `seed`. */
  maxProbe: number;
}

/**
 * Pick the seed with the shortest worst-case probe chain among 0..7, the
 * first one found (deterministic), stopping at one of 8 probes or fewer;
 * the bound is recorded in the header. One table serves every seed; it is
 * filled again at emitBlob only when the winner was not the last seed
 * tried (a table per seed was garbage V8 freed late, up to 7 x 8 MiB at
 * 320k entries).
 *
 * @throws Error from the table's temp file (windowedBuckets)
 */
function chooseSeed(table: BucketTable): SeededBuckets {
  let seed = 0;
  let maxProbe = Infinity;
  for (let s = 0; s < 8; s++) {
    const probe = table.fill(s);
    if (probe < maxProbe) {
      seed = s;
      maxProbe = probe;
    }
    if (probe <= 8) break;
  }
  return { table, seed, maxProbe };
}

/** Bytes per chunk handed to emitBlob's sink. */
const CHUNK = 1 << 20;

/**
 * Write the blob `plan` describes through `sink` (chunk, file position):
 * the body in file order in chunks of at most 1 MiB, then the 128-byte
 * header at position 0 (its body_crc32 covers what came before). The
 * chunk buffer is reused: a sink must copy or write it before returning.
 */
function emitBlob(plan: BlobPlan, buckets: SeededBuckets, sink: (chunk: Buffer, position: number) => void): void {
  const { rows, roots, reachable } = plan;
  const n = rows.count;
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
  const room = (len: number): number => {
    if (used + len > CHUNK) flush();
    const at = used;
    used += len; // len <= CHUNK always: entries, buckets and strings are written piecewise
    return at;
  };
  const padTo = (offset: number): void => {
    const len = offset - (pos + used);
    if (len > 0) buf.fill(0, room(len), used);
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
  buckets.table.forEachPart(buckets.seed, (part) => {
    for (let i = 0; i < part.length; i += 2) {
      const o = room(F.BUCKET_SIZE);
      buf.writeUInt32LE(part[i], o + F.BUCKET.hash);
      buf.writeUInt32LE(part[i + 1], o + F.BUCKET.entry);
    }
  });
  padTo(plan.entriesOff);
  let pathOff = 0;
  let targetOff = plan.pathsSize;
  const E = F.ENTRY;
  for (let k = 0; k < n; k++) {
    const o = room(F.ENTRY_SIZE);
    const pathLen = rows.path(k).length;
    const target = rows.target(k);
    buf.fill(0, o, o + F.ENTRY_SIZE);
    buf.writeUInt32LE(pathOff, o + E.pathOff);
    buf.writeUInt32LE(pathLen, o + E.pathLen);
    buf.writeUInt32LE(target ? targetOff : 0, o + E.targetOff);
    buf.writeUInt32LE(target ? target.length : 0, o + E.targetLen);
    buf.writeUInt32LE(rows.mode(k) >>> 0, o + E.mode);
    buf.writeUInt32LE(rows.uid(k) >>> 0, o + E.uid);
    buf.writeUInt32LE(rows.gid(k) >>> 0, o + E.gid);
    buf.writeUInt32LE(rows.nlink(k) >>> 0, o + E.nlink);
    buf.writeBigUInt64LE(rows.size(k), o + E.size);
    buf.writeBigUInt64LE(rows.blocks(k), o + E.blocks);
    buf.writeBigUInt64LE(rows.ino(k), o + E.ino);
    buf.writeBigUInt64LE(rows.dev(k), o + E.dev);
    buf.writeBigUInt64LE(rows.rdev(k), o + E.rdev);
    buf.writeBigInt64LE(rows.atimeSec(k), o + E.atimeSec);
    buf.writeBigInt64LE(rows.mtimeSec(k), o + E.mtimeSec);
    buf.writeBigInt64LE(rows.ctimeSec(k), o + E.ctimeSec);
    buf.writeUInt32LE(rows.atimeNsec(k), o + E.atimeNsec);
    buf.writeUInt32LE(rows.mtimeNsec(k), o + E.mtimeNsec);
    buf.writeUInt32LE(rows.ctimeNsec(k), o + E.ctimeNsec);
    buf.writeUInt32LE(rows.blksize(k) >>> 0, o + E.blksize);
    buf.writeUInt32LE((reachable.get(k) === 1 ? F.E_REACHABLE : 0) | (rows.uncertain(k) ? F.E_UNCERTAIN : 0), o + E.flags);
    pathOff += pathLen;
    if (target) targetOff += target.length;
  }
  padTo(plan.stringsOff);
  for (let k = 0; k < n; k++) bytes(rows.path(k));
  for (let k = 0; k < n; k++) {
    const target = rows.target(k);
    if (target) bytes(target);
  }
  padTo(plan.inodesOff);
  for (let i = 0; i < plan.inodeCount; i++) buf.writeUInt32LE(plan.inodes.get(i), room(4));
  padTo(plan.fileSize);
  flush();

  const h = Buffer.alloc(F.HEADER_SIZE);
  const H = F.HEADER;
  F.MAGIC.copy(h, H.magic);
  h.writeUInt32LE(F.VERSION, H.version);
  h.writeUInt32LE(F.HEADER_SIZE, H.headerSize);
  h.writeUInt32LE(plan.flags, H.flags);
  h.writeBigUInt64LE(BigInt(plan.fileSize), H.fileSize);
  h.writeUInt32LE(n, H.entryCount);
  h.writeUInt32LE(F.ENTRY_SIZE, H.entrySize);
  h.writeBigUInt64LE(BigInt(plan.entriesOff), H.entriesOff);
  h.writeUInt32LE(plan.bucketCount, H.bucketCount);
  h.writeUInt32LE(buckets.maxProbe, H.maxProbe);
  h.writeBigUInt64LE(BigInt(plan.bucketsOff), H.bucketsOff);
  h.writeBigUInt64LE(BigInt(plan.stringsOff), H.stringsOff);
  h.writeBigUInt64LE(BigInt(plan.stringsSize), H.stringsSize);
  h.writeUInt32LE(buckets.seed, H.hashSeed);
  h.writeUInt32LE(roots.length, H.rootCount);
  h.writeBigUInt64LE(BigInt(plan.rootsOff), H.rootsOff);
  if (plan.inodeCount > 0) {
    h.writeBigUInt64LE(BigInt(plan.inodesOff), H.inodesOff);
    h.writeUInt32LE(plan.inodeCount, H.inodeCount);
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
  if (opts.entries.length > F.MAX_ENTRIES) throw new VriftError('encoding PSFS blob: too many entries');
  return writeBlobRows(file, blobRowsOf(opts.entries), opts.roots, opts.flags ?? 0);
}

/**
 * writeBlobFile over rows already in path-byte order (see encodeBlobRows
 * for the rows): what `vrift build` uses, so that the blob phase holds no
 * object per entry. Memory as encodeBlobRows without the output, except
 * the bucket table: past windowing.buckets buckets (2^18: trees of more
 * than 2^17 entries) it is built a window at a time (windowedBuckets in
 * src/blob/buckets.ts: about 4-6 MiB whatever the tree's size, plus 8
 * bytes per entry of temp file in the blob's directory, unlinked at once).
 *
 * @param file destination (written atomically, mode 0644)
 * @param rows the entries, strictly increasing by path bytes
 * @param roots domain roots; `flags` PSFS_H_* header flags
 * @returns blob size in bytes, entry count and its digest ("sha256:<hex>")
 * @throws VriftError from encodeBlobRows, or on I/O failure (the temp file is removed)
 */
export async function writeBlobRows(file: string, rows: BlobRows, roots: Buffer[], flags = 0): Promise<{ size: number; entryCount: number; digest: string }> {
  const plan = planBlob(rows, roots, flags);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Date.now()}`);
  const digest = createHash('sha256');
  try {
    const fd = fs.openSync(tmp, 'wx', 0o644);
    let table: BucketTable | undefined;
    try {
      // Past one window the table is built a window at a time through a
      // temp file beside the blob: memory independent of the tree's size.
      table = plan.bucketCount > windowing.buckets ? windowedBuckets(rows, plan.bucketCount, path.dirname(file)) : memoryBuckets(rows, plan.bucketCount);
      emitBlob(plan, chooseSeed(table), (chunk, position) => {
        for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done, chunk.length - done, position + done);
      });
      // World-readable whatever the umask: every process that preloads the
      // shim, whatever its uid, must be able to map the blob.
      fs.fchmodSync(fd, 0o644);
      fs.fsyncSync(fd);
    } finally {
      table?.close();
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
  return { size: plan.fileSize, entryCount: rows.count, digest: `sha256:${digest.digest('hex')}` };
}
