import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParentStack, writeBlobRows, type BlobEntry, type BlobRows, type Timespec } from '../blob/writer';
import { H_CHECK_ROOT_MTIME, H_DEV_RUNTIME, H_IDENTITY_TAG, TAG_MAX } from '../blob/format';
import { VriftError } from '../errors';
import { collectGarbage } from '../gc';
import { writeLayer, writeFileLayer } from '../layer/tar';
import { PagedArray } from '../paged';
import { concatEntries, EntryTable, KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_SYMLINK } from '../layer/table';
import {
  BLOB_IMAGE_PATH, SHIM_IMAGE_PATH,
  type BuildVriftLayerOptions, type BuildVriftLayerResult, type LayerEntry, type LayerFile, type TreePlan,
} from '../layer/types';
import { planTree } from './plan';
import { checkMergeConflicts, mergeBlobRows } from './merge';

/**
 * Filesystem model used for the fields tar does not carry (st_size of
 * directories, st_blocks, st_blksize, st_nlink of directories).
 *
 * Measured on this machine with `docker run` of an image whose layer was
 * extracted by the engine (overlay2 on ext4, 4 KiB blocks, dir_index) and
 * with GNU `tar -x` onto the same ext4 (identical results): see
 * src/tree/README.md for the table. Rules:
 * - st_blksize = 4096 for every type;
 * - regular file: st_blocks = ceil(size / 4096) * 8 (0 for an empty file),
 *   plus 8 per extent-tree leaf block when the file needs more than the 4
 *   extents an inode holds (> 512 MiB: one extent maps at most 128 MiB);
 * - symlink: st_size = target length; st_blocks = 0 when the target is
 *   shorter than 60 bytes (a "fast" symlink stored in the inode), else 8;
 * - directory: st_nlink = 2 + number of subdirectories; st_size = 4096 and
 *   st_blocks = 8 while its entries fit one 4 KiB block
 *   (24 + sum(align4(8 + name length)) <= 4096); then 12288 (htree root + 2
 *   leaves) for up to 1024 more bytes of entries; beyond that the block count
 *   depends on the per-filesystem hash seed and cannot be known at build
 *   time: the value recorded is an estimate (see `uncertain`).
 */
export const FS_MODEL = {
  blksize: 4096,
  dirBlock: 4096,
  fastSymlinkMax: 59,
  maxExtentBlocks: 32768,
  inodeExtents: 4,
  extentsPerLeaf: 340,
  /** Bytes of entries beyond one block that certainly fit the two leaves of the first htree split. */
  htreeSafeMargin: 1024,
  /** Mean fill of htree leaf blocks measured here (used only for the estimate). */
  htreeLeafFill: 0.69,
} as const;

/** First synthetic st_ino ("VR" in the top 16 bits). Inode n (1-based, layer order) gets BASE + n. */
export const SYNTHETIC_INO_BASE = 0x5652_0000_0000_0000n;

const SLASH = 0x2f;
const align4 = (n: number): number => (n + 3) & ~3;

function isUnder(p: Buffer, dir: Buffer): boolean {
  return p.length > dir.length && p[dir.length] === SLASH && p.subarray(0, dir.length).equals(dir);
}

/**
 * ext4 st_size of a directory holding entries with these name lengths; exact only when `exact`.
 *
 * One block while 24 + sum(align4(8 + len)) <= 4096. The insert that
 * overflows it converts the directory to an htree: a root block plus two
 * leaves, 12288 bytes. ext4's do_split divides a full leaf by size (each half
 * at most about half a block plus one entry, <= 264 bytes), so the fuller
 * leaf has >= ~1650 bytes free after the first split: until 1024 more bytes
 * of entries (a conservative margin) no second split can happen, whatever
 * the hash seed. Beyond that the block count depends on how the
 * filesystem's secret hash seed spreads the names: estimate only.
 */
export function ext4DirSize(nameLengths: number[]): { size: bigint; exact: boolean } {
  return dirSizeForNeed(24 + nameLengths.reduce((s, n) => s + align4(8 + n), 0));
}

/** ext4DirSize from `need` = 24 + sum(align4(8 + name length)) bytes of entries. */
function dirSizeForNeed(need: number): { size: bigint; exact: boolean } {
  const B = FS_MODEL.dirBlock;
  if (need <= B) return { size: BigInt(B), exact: true };
  if (need <= B + FS_MODEL.htreeSafeMargin) return { size: BigInt(3 * B), exact: true };
  const leaves = Math.max(2, Math.ceil(need / (B * FS_MODEL.htreeLeafFill)));
  return { size: BigInt(B * (1 + leaves)), exact: false };
}

/** ext4 st_blocks (512-byte units) of a regular file of `size` bytes written contiguously. */
export function ext4FileBlocks(size: bigint): bigint {
  const data = (size + 4095n) / 4096n;
  const extents = (data + BigInt(FS_MODEL.maxExtentBlocks) - 1n) / BigInt(FS_MODEL.maxExtentBlocks);
  const leaves = extents > BigInt(FS_MODEL.inodeExtents) ? (extents + BigInt(FS_MODEL.extentsPerLeaf) - 1n) / BigInt(FS_MODEL.extentsPerLeaf) : 0n;
  return (data + leaves) * 8n;
}

/** Output of blobEntriesFromPlan. */
export interface PlanBlobEntries {
  /**
   * One entry per path, in layer order. Each is a read-only view over its
   * layer entry (see PlanBlobEntry): read its fields, or copy it with
   * plainBlobEntry; an object spread of it copies nothing.
   */
  entries: BlobEntry[];
  /** Paths whose st_size/st_blocks are estimates (large directories, files > 512 MiB). */
  uncertain: Buffer[];
}

/**
 * What blobEntriesFromPlan computes per entry, in columns indexed like its
 * entries (a few bytes per entry instead of an object of bigints each).
 */
interface PlanColumns {
  /** Inode number n (st_ino = SYNTHETIC_INO_BASE + n), 1-based; hardlinks share their object's. */
  inode: Uint32Array;
  /** st_nlink. */
  nlink: Uint32Array;
  /** st_size of directories in bytes (other types take theirs from the layer entry). */
  dirSize: Float64Array;
  /** 1 where st_size/st_blocks are estimates (PSFS_E_UNCERTAIN). */
  uncertain: Uint8Array;
}

/**
 * The blob entry of one planned layer entry, read on demand: path, st_mode,
 * owner, mtime and the symlink target are the layer entry's own (atime and
 * ctime are the same Timespec object as mtime: never mutate it), st_ino,
 * st_nlink and a directory's st_size come from the columns, st_blocks is
 * computed from st_size (FS_MODEL). About 40 bytes per path, where a plain
 * BlobEntry with its bigints and three Timespecs takes ~350.
 */
class PlanBlobEntry implements BlobEntry {
  constructor(
    private readonly layerEntry: LayerEntry,
    private readonly columns: PlanColumns,
    private readonly index: number,
  ) {}

  get path(): Buffer { return this.layerEntry.path; }
  get mode(): number { return this.layerEntry.mode; }
  get uid(): number { return this.layerEntry.uid; }
  get gid(): number { return this.layerEntry.gid; }
  get nlink(): number { return this.columns.nlink[this.index]; }
  get size(): bigint {
    const e = this.layerEntry;
    return e.type === 'directory' ? BigInt(this.columns.dirSize[this.index]) : e.type === 'symlink' ? BigInt(e.target.length) : e.size;
  }
  get blocks(): bigint {
    const e = this.layerEntry;
    if (e.type === 'directory') return BigInt(this.columns.dirSize[this.index] / 512);
    if (e.type === 'symlink') return e.target.length > FS_MODEL.fastSymlinkMax ? 8n : 0n;
    return ext4FileBlocks(e.size);
  }
  get blksize(): number { return FS_MODEL.blksize; }
  get ino(): bigint { return SYNTHETIC_INO_BASE + BigInt(this.columns.inode[this.index]); }
  get dev(): bigint { return 0n; }
  get rdev(): bigint { return 0n; }
  get atime(): Timespec { return this.layerEntry.mtime; }
  get mtime(): Timespec { return this.layerEntry.mtime; }
  get ctime(): Timespec { return this.layerEntry.mtime; }
  get target(): Buffer | undefined { return this.layerEntry.type === 'symlink' ? this.layerEntry.target : undefined; }
  get uncertain(): boolean | undefined { return this.columns.uncertain[this.index] === 1 ? true : undefined; }
}

/**
 * A plain BlobEntry with the same field values as `e` (own properties, own
 * Timespec objects): for spreading, mutating or comparing with toEqual.
 *
 * @param e any BlobEntry, e.g. one of blobEntriesFromPlan's views
 * @returns a new object; `target` and `uncertain` present only when set
 */
export function plainBlobEntry(e: BlobEntry): BlobEntry {
  const t = (x: Timespec): Timespec => ({ sec: x.sec, nsec: x.nsec });
  return {
    path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, nlink: e.nlink, size: e.size, blocks: e.blocks, blksize: e.blksize,
    ino: e.ino, dev: e.dev, rdev: e.rdev, atime: t(e.atime), mtime: t(e.mtime), ctime: t(e.ctime),
    ...(e.target !== undefined ? { target: e.target } : {}), ...(e.uncertain ? { uncertain: true } : {}),
  };
}

/**
 * The regular-file entry a hardlink names, by identity first (planned
 * hardlinks share their object's path Buffer, so no string per path is
 * made), else by path bytes (a map of the file entries' paths, built on
 * first need).
 */
function fileIndexLookup(): { add(e: LayerEntry, i: number): void; get(p: Buffer): number | undefined } {
  const byBuffer = new Map<Buffer, number>();
  let byBytes: Map<string, number> | undefined;
  return {
    add(e, i) {
      if (e.type !== 'file') return;
      byBuffer.set(e.path, i);
      byBytes?.set(e.path.toString('latin1'), i);
    },
    get(p) {
      const i = byBuffer.get(p);
      if (i !== undefined) return i;
      if (!byBytes) {
        byBytes = new Map();
        for (const [b, j] of byBuffer) byBytes.set(b.toString('latin1'), j);
      }
      return byBytes.get(p.toString('latin1'));
    },
  };
}

/**
 * PSFS blob entries for the domain `root`, generated from the very entries
 * written into the layer: same st_mode, uid, gid, st_size, mtime; st_nlink
 * from hardlink counts (files) and subdirectory counts (directories).
 *
 * Identity (BRIEF "Identity policy"): st_ino is synthetic,
 * SYNTHETIC_INO_BASE + n with n counting inodes in layer order from 1
 * (hardlinks share their object's number); st_dev = 0 (the shim takes it at
 * run time, PSFS_H_DEV_RUNTIME); st_rdev = 0; atime = ctime = mtime.
 * st_blocks, st_blksize and directory st_size follow FS_MODEL.
 *
 * Memory: the entries are views over the layer entries (PlanBlobEntry) plus
 * 17 bytes of columns per path, and the only map is keyed by directory
 * path (to add a child's name length to its parent): no object of bigints
 * and no string per path.
 *
 * @param plan a TreePlan, or its entries (other paths than root's tree are ignored)
 * @param root domain root, default the plan's root or "/vrift"
 * @returns entries (order = layer order; read-only views, see PlanBlobEntries) and the paths whose sizes are estimates
 * @throws VriftError when a hardlink's target is missing from the entries, or the
 *   domain holds more than 2^32 - 1 inodes
 */
export function blobEntriesFromPlan(plan: TreePlan | LayerEntry[], root?: Buffer): PlanBlobEntries {
  const all = Array.isArray(plan) ? plan : plan.entries;
  const r = root ?? (Array.isArray(plan) ? Buffer.from('/vrift') : plan.root);
  const entries = all.filter((e) => e.path.equals(r) || isUnder(e.path, r));
  const n = entries.length;
  const columns: PlanColumns = { inode: new Uint32Array(n), nlink: new Uint32Array(n), dirSize: new Float64Array(n), uncertain: new Uint8Array(n) };

  // Directories: bytes of ext4 entries (24 + sum(align4(8 + name length))) and subdirectory counts.
  const dirIndex = new Map<string, number>();
  entries.forEach((e, i) => {
    if (e.type === 'directory') dirIndex.set(e.path.toString('latin1'), i);
  });
  const need = new Float64Array(n).fill(24);
  const subdirs = new Uint32Array(n);
  for (const e of entries) {
    if (e.path.equals(r)) continue;
    const slash = e.path.lastIndexOf(SLASH);
    const parent = dirIndex.get(e.path.toString('latin1', 0, slash));
    if (parent === undefined) continue; // encodeBlob refuses the incomplete domain
    need[parent] += align4(8 + e.path.length - slash - 1);
    if (e.type === 'directory') subdirs[parent]++;
  }
  dirIndex.clear();

  const files = fileIndexLookup();
  let inodes = 0;
  const uncertain: Buffer[] = [];
  const out: BlobEntry[] = new Array<BlobEntry>(n);
  for (let i = 0; i < n; i++) {
    const e = entries[i];
    if (e.type === 'hardlink') {
      const t = files.get(e.linkTo);
      if (t === undefined) throw new VriftError(`generating blob entries: hardlink ${e.path.toString()} precedes its target ${e.linkTo.toString()}`);
      columns.inode[i] = columns.inode[t];
    } else {
      if (inodes === 0xffffffff) throw new VriftError(`generating blob entries: more than ${0xffffffff} inodes under ${r.toString()}; split the tree into several images`);
      columns.inode[i] = ++inodes;
    }
    files.add(e, i);
    let estimated = false;
    switch (e.type) {
      case 'directory': {
        const ds = dirSizeForNeed(need[i]);
        columns.dirSize[i] = Number(ds.size);
        columns.nlink[i] = 2 + subdirs[i];
        estimated = !ds.exact;
        break;
      }
      case 'symlink':
        columns.nlink[i] = 1;
        break;
      case 'file':
      case 'hardlink':
        columns.nlink[i] = e.nlink;
        estimated = e.size > BigInt(FS_MODEL.inodeExtents * FS_MODEL.maxExtentBlocks * 4096);
        break;
    }
    if (estimated) {
      columns.uncertain[i] = 1;
      uncertain.push(e.path);
    }
    out[i] = new PlanBlobEntry(e, columns, i);
  }
  return { entries: out, uncertain };
}

/**
 * Row indices of `table` in path-byte order (Buffer.compare order): a
 * planned table is /vrift, its .cas subtree sorted by path bytes, then every
 * other path sorted, i.e. at most two sorted runs, merged here in one pass
 * (n comparisons). The .cas run is not contiguous in byte order in general
 * (a destination "/vrift/.cas-x" sorts between "/vrift/.cas" and
 * "/vrift/.cas/..."), hence a merge, not a concatenation. Any other order
 * is sorted (n log n comparisons). 4 bytes per row.
 *
 * @returns order.get(k) = the row of the k-th path (a paged array, src/paged.ts); equal paths stay adjacent (the encoder refuses them)
 */
export function tablePathOrder(table: EntryTable): PagedArray {
  const n = table.length;
  const order = new PagedArray(Uint32Array);
  let runs = 1;
  let cut = n;
  for (let i = 1; i < n; i++) {
    if (table.comparePaths(i - 1, i) > 0) {
      runs++;
      cut = i;
    }
  }
  if (runs > 2) {
    // Not a planned table (tests, hand-made tables): sorted in memory.
    const all = new Uint32Array(n);
    for (let i = 0; i < n; i++) all[i] = i;
    all.sort((x, y) => table.comparePaths(x, y));
    all.forEach((r, k) => order.set(k, r));
    return order;
  }
  // Two-cursor merge of rows [0, cut) and [cut, n) (one run: cut = n).
  let a = 0;
  let b = cut;
  for (let k = 0; k < n; k++) order.set(k, b >= n || (a < cut && table.comparePaths(a, b) <= 0) ? a++ : b++);
  return order;
}

/** Output of blobRowsFromTable. */
export interface TableBlobRows {
  /** The domain's blob entries in path-byte order, read from the table and a few columns (live: a later change of the table's `nsec` shows). */
  rows: BlobRows;
  /** Paths whose st_size/st_blocks are estimates (large directories, files > 512 MiB), in table order; copies. */
  uncertain: Buffer[];
}

/**
 * blobEntriesFromPlan over a planned EntryTable (every row lies under the
 * domain root; hardlinks follow their file), as BlobRows: the same field
 * values, read from the table's columns plus 21 bytes per row (inode,
 * nlink, directory st_size, uncertain, path order), with no object and no
 * string per path: what `vrift build` holds through the blob phase.
 * Directory sizes and subdirectory counts come from a stack of directories
 * in path order (ParentStack), not from a map of directory paths.
 *
 * @param table planned rows (layer order; row 0 the root)
 * @param root the domain root
 * @returns rows in path-byte order and the paths whose sizes are estimates
 * @throws VriftError when a hardlink precedes its target or the domain holds more than 2^32 - 1 inodes
 */
export function blobRowsFromTable(table: EntryTable, root: Buffer): TableBlobRows {
  const n = table.length;
  const order = tablePathOrder(table);
  // Paged (src/paged.ts): memory bounded whatever the tree's size.
  const inode = new PagedArray(Uint32Array);
  const nlink = new PagedArray(Uint32Array);
  const dirSize = new PagedArray(Float64Array);
  const isUncertain = new PagedArray(Uint8Array);

  // Directories, in path order: bytes of ext4 entries (24 + sum(align4(8 +
  // name length))) gathered in dirSize, subdirectory counts in nlink; both
  // become st_size and st_nlink below. A child whose parent is missing is
  // skipped: the encoder refuses the incomplete domain.
  const stack = new ParentStack();
  for (let k = 0; k < n; k++) {
    const i = order.get(k);
    const p = table.path(i);
    const parent = stack.parent(p);
    const isDir = table.kind.get(i) === KIND_DIR;
    if (parent >= 0) {
      dirSize.set(parent, dirSize.get(parent) + align4(8 + p.length - p.lastIndexOf(SLASH) - 1));
      if (isDir) nlink.set(parent, nlink.get(parent) + 1);
    }
    if (isDir) {
      dirSize.set(i, dirSize.get(i) + 24);
      stack.push(i, p);
    }
  }

  // Inodes numbered in layer order (row order), as blobEntriesFromPlan.
  let inodes = 0;
  const uncertain: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const kind = table.kind.get(i);
    if (kind === KIND_HARDLINK) {
      const t = table.linkTarget(i);
      if (t < 0 || t >= i) throw new VriftError(`generating blob entries: hardlink ${table.path(i).toString()} precedes its target ${table.path(table.ref.get(i)).toString()}`);
      inode.set(i, inode.get(t));
    } else {
      if (inodes === 0xffffffff) throw new VriftError(`generating blob entries: more than ${0xffffffff} inodes under ${root.toString()}; split the tree into several images`);
      inode.set(i, ++inodes);
    }
    let estimated = false;
    if (kind === KIND_DIR) {
      const ds = dirSizeForNeed(dirSize.get(i));
      dirSize.set(i, Number(ds.size));
      nlink.set(i, 2 + nlink.get(i));
      estimated = !ds.exact;
    } else if (kind === KIND_SYMLINK) {
      nlink.set(i, 1);
    } else {
      nlink.set(i, table.nlink.get(i));
      estimated = table.size.get(i) > FS_MODEL.inodeExtents * FS_MODEL.maxExtentBlocks * 4096;
    }
    if (estimated) {
      isUncertain.set(i, 1);
      uncertain.push(Buffer.from(table.path(i)));
    }
  }

  // Field values as blobEntriesFromPlan's (identity policy: st_ino
  // synthetic, st_dev and st_rdev 0, atime = ctime = mtime; FS_MODEL sizes).
  const size = (i: number): number => (table.kind.get(i) === KIND_DIR ? dirSize.get(i) : table.size.get(i));
  const sec = (k: number): bigint => BigInt(table.sec.get(order.get(k)));
  const nsec = (k: number): number => table.nsec.get(order.get(k));
  const rows: BlobRows = {
    count: n,
    path: (k) => table.path(order.get(k)),
    mode: (k) => table.mode.get(order.get(k)),
    uid: () => table.uid,
    gid: () => table.gid,
    nlink: (k) => nlink.get(order.get(k)),
    size: (k) => BigInt(size(order.get(k))),
    blocks: (k) => {
      const i = order.get(k);
      const kind = table.kind.get(i);
      if (kind === KIND_DIR) return BigInt(dirSize.get(i) / 512);
      if (kind === KIND_SYMLINK) return table.size.get(i) > FS_MODEL.fastSymlinkMax ? 8n : 0n;
      return ext4FileBlocks(BigInt(table.size.get(i)));
    },
    blksize: () => FS_MODEL.blksize,
    ino: (k) => SYNTHETIC_INO_BASE + BigInt(inode.get(order.get(k))),
    dev: () => 0n,
    rdev: () => 0n,
    atimeSec: sec,
    atimeNsec: nsec,
    mtimeSec: sec,
    mtimeNsec: nsec,
    ctimeSec: sec,
    ctimeNsec: nsec,
    target: (k) => (table.kind.get(order.get(k)) === KIND_SYMLINK ? table.target(order.get(k)) : undefined),
    uncertain: (k) => isUncertain.get(order.get(k)) === 1,
  };
  return { rows, uncertain };
}

/**
 * Identity tags (PSFS_H_IDENTITY_TAG, docs/psfs-format.md) over a planned
 * EntryTable (every row under the domain root): every inode gets mtime
 * nanoseconds = its tag n + shift, where n counts inodes in row (layer)
 * order exactly as blobRowsFromTable numbers st_ino (so st_ino =
 * SYNTHETIC_INO_BASE + tag); a hardlink row takes its file's mtime. The
 * kernel then reports the tag too, and the shim can give a kernel answer
 * about a domain inode its blob identity. Mutates the table's `nsec` (and a
 * hardlink's `sec`).
 *
 * @param root domain root (for messages)
 * @param shift added to every tag: the base's highest tag when merging, else 0
 * @throws VriftError when a tag would exceed TAG_MAX (999999999) or a hardlink precedes its target
 */
export function assignTableTags(table: EntryTable, root: Buffer, shift = 0): void {
  let n = 0;
  for (let i = 0; i < table.length; i++) {
    if (table.kind.get(i) === KIND_HARDLINK) {
      const t = table.linkTarget(i);
      if (t < 0 || t >= i) throw new VriftError(`tagging inodes: hardlink ${table.path(i).toString()} precedes its target ${table.path(table.ref.get(i)).toString()}`);
      table.sec.set(i, table.sec.get(t));
      table.nsec.set(i, table.nsec.get(t));
    } else {
      const tag = shift + ++n;
      if (tag > TAG_MAX) throw new VriftError(`tagging inodes: more than ${TAG_MAX} inodes under ${root.toString()}; split the tree into several images`);
      table.nsec.set(i, tag);
    }
  }
}

/**
 * The root's mtime nanoseconds of an identity-tag build: a digest of the
 * tree, sha256 over the roots and every blob entry in path order - path,
 * type and mode, owner, nlink, size, blocks, blksize, st_ino, st_rdev,
 * times, symlink target, PSFS_E_UNCERTAIN - except the root's own
 * nanoseconds, mapped into (highest tag, TAG_MAX]. Above every tag, so the
 * inode table keeps its dense numbering and psfs_tagged still recognises a
 * kernel answer about the root (psfs_format.h PSFS_H_IDENTITY_TAG).
 * PSFS_H_CHECK_ROOT_MTIME then rejects a blob from another tree even when
 * both were built with the same SOURCE_DATE_EPOCH (same root seconds).
 * The byte stream hashed is part of the output (the root's mtime): keep it.
 *
 * @param rows blob entries in path-byte order (tags assigned), roots[0]'s among them
 * @throws VriftError when roots[0] has no entry or no nanosecond value is left above the tags
 */
function treeDigestNsec(rows: BlobRows, roots: Buffer[]): number {
  const root = roots[0];
  let maxTag = 0;
  let found = false;
  for (let k = 0; k < rows.count; k++) {
    if (rows.path(k).equals(root)) found = true;
    else maxTag = Math.max(maxTag, rows.mtimeNsec(k));
  }
  if (!found) throw new VriftError(`digesting ${root.toString()}: the root has no blob entry (internal error)`);
  if (maxTag >= TAG_MAX) throw new VriftError(`digesting ${root.toString()}: no mtime nanoseconds left above ${maxTag} identity tags; split the tree into several images`);
  const h = createHash('sha256');
  for (const r of roots) h.update(`root ${r.length}\0`).update(r);
  for (let k = 0; k < rows.count; k++) {
    const p = rows.path(k);
    const self = p.equals(root);
    const t = (sec: bigint, nsec: number): string => (self ? `${sec}` : `${sec}.${nsec}`);
    const target = rows.target(k);
    h.update(`\n${p.length}\0`).update(p);
    h.update(`\0${rows.mode(k)} ${rows.uid(k)} ${rows.gid(k)} ${rows.nlink(k)} ${rows.size(k)} ${rows.blocks(k)} ${rows.blksize(k)} ${rows.ino(k)} ${rows.rdev(k)} ${t(rows.atimeSec(k), rows.atimeNsec(k))} ${t(rows.mtimeSec(k), rows.mtimeNsec(k))} ${t(rows.ctimeSec(k), rows.ctimeNsec(k))} ${rows.uncertain(k) ? 1 : 0} ${target?.length ?? -1}\0`);
    if (target) h.update(target);
  }
  return maxTag + 1 + (h.digest().readUInt32BE(0) % (TAG_MAX - maxTag));
}

const usrDirs = (): LayerEntry[] =>
  ['/usr', '/usr/lib', '/usr/lib/vrift'].map((p) => ({
    type: 'directory' as const, path: Buffer.from(p), mode: 0o040755, uid: 0, gid: 0, mtime: { sec: 0n, nsec: 0 },
  }));

/** Output of treeBlobRows: writeBlobRows' arguments and the estimated paths. */
export interface TreeBlob {
  rows: BlobRows;
  roots: Buffer[];
  /** PSFS_H_DEV_RUNTIME | PSFS_H_CHECK_ROOT_MTIME | PSFS_H_IDENTITY_TAG. */
  flags: number;
  /** Paths whose st_size/st_blocks are estimates (blobRowsFromTable). */
  uncertain: Buffer[];
}

/**
 * The blob of a planned tree (tags assigned by assignTableTags), merged
 * with the base's when given. Sets the root's mtime nanoseconds in the table
 * (row 0, what the layer's tar carries and the rows read) to the tree
 * digest (treeDigestNsec).
 *
 * Without a merge the rows are blobRowsFromTable's; with one, the union
 * of the base's rows and those (mergeBlobRows). No object per entry either way.
 *
 * @param table planned rows, row 0 the root
 * @param root the domain root (roots[0] of the blob)
 * @throws VriftError from blobRowsFromTable, mergeBlobRows or treeDigestNsec, or when row 0 is not the root
 */
export function treeBlobRows(table: EntryTable, root: Buffer, merge?: BuildVriftLayerOptions['merge']): TreeBlob {
  const flags = H_DEV_RUNTIME | H_CHECK_ROOT_MTIME | H_IDENTITY_TAG;
  if (!table.pathEquals(0, root)) throw new VriftError(`digesting ${root.toString()}: the root is not the first planned entry (internal error)`);
  const fresh = blobRowsFromTable(table, root);
  const roots = merge ? [root, ...merge.blob.roots.filter((r) => !r.equals(root))] : [root];
  const rows = merge ? mergeBlobRows(merge, fresh.rows) : fresh.rows;
  // The rows read table.nsec (the root is a row of the table, merged or not): its digest shows through them once set.
  table.nsec.set(0, treeDigestNsec(rows, roots));
  return { rows, roots, flags, uncertain: fresh.uncertain };
}

async function renameToDigest(layer: LayerFile, dir: string, prefix: string): Promise<LayerFile> {
  const final = path.join(dir, `${prefix}-${layer.digest.slice('sha256:'.length)}.tar.${layer.mediaType.endsWith('+zstd') ? 'zst' : 'gz'}`);
  try {
    await fsp.rename(layer.path, final);
  } catch (err) {
    await fsp.rm(layer.path, { force: true });
    throw new VriftError(`writing layer ${final}: ${(err as Error).message}`, { cause: err });
  }
  return { ...layer, path: final };
}

/**
 * Build the /vrift layer: plan the tree (planTree), generate the PSFS blob
 * from the planned entries (roots ["/vrift"], flags PSFS_H_DEV_RUNTIME |
 * PSFS_H_CHECK_ROOT_MTIME), and write one layer holding usr/, usr/lib/,
 * usr/lib/vrift/ (0755, root, mtime 0), usr/lib/vrift/psfs.blob (0644, root,
 * mtime 0) and the /vrift tree.
 *
 * @returns the layer (file `<tmpDir>/vrift-layer-<digest hex>.tar.gz`), the blob (file
 *   `<tmpDir>/psfs-<digest hex>.blob`, its size and digest), and statistics
 * @throws VriftError from planTree, encodeBlob or writeLayer; no layer or blob file is left behind on error
 */
export async function buildVriftLayer(opts: BuildVriftLayerOptions): Promise<BuildVriftLayerResult> {
  if (opts.merge) checkMergeConflicts(opts.merge, opts.adds.map((a) => path.posix.normalize(a.dest).replace(/\/+$/, '')));
  // Only what the layer needs is kept: the table (not the plan's object views).
  const { root, table, stats } = await planTree(opts.adds, opts);
  try {
    return await layerOfTable(opts, root, table, stats);
  } finally {
    table.close(); // its spilled path bytes: the layer is written
  }
}

/** buildVriftLayer once the tree is planned: tags, the blob, the layer. */
async function layerOfTable(opts: BuildVriftLayerOptions, root: Buffer, table: EntryTable, stats: BuildVriftLayerResult['stats']): Promise<BuildVriftLayerResult> {
  // New tags continue after the base's (tag = st_ino - SYNTHETIC_INO_BASE).
  const shift = opts.merge?.shift ?? 0;
  // Tags replace the sub-second part of every mtime. The root's (checked by
  // PSFS_H_CHECK_ROOT_MTIME) then becomes a digest of everything the blob
  // says, above the tags: a blob validates only over the tree it describes,
  // not over another one built with the same SOURCE_DATE_EPOCH.
  assignTableTags(table, root, shift);
  const dir = path.resolve(opts.tmpDir ?? os.tmpdir());
  await fsp.mkdir(dir, { recursive: true });
  // The blob goes to a file, so that its bytes are not in memory while the layer is written.
  const blob = await writeTreeBlob(table, root, opts.merge, dir);
  // V8 runs no full collection on its own between the blob encoding and the
  // layer write (that garbage is mostly outside its heap), so without it the
  // encoder's arrays stayed through the whole write (measured, 80k files: +34 MiB).
  collectGarbage();
  try {
    const head: LayerEntry[] = [
      ...usrDirs(),
      {
        type: 'file', path: Buffer.from(BLOB_IMAGE_PATH), mode: 0o100644, uid: 0, gid: 0, mtime: { sec: 0n, nsec: 0 },
        size: BigInt(blob.size), source: { file: blob.file }, sha256: blob.digest.slice('sha256:'.length), nlink: 1,
      },
    ];
    // Expected tar bytes: a 512-byte header per entry plus file data padded
    // to 512; an entry whose mtime has nanoseconds (every tagged one) also
    // gets a PAX header and its records (1024 bytes; long names aside).
    let tarBytes = head.reduce((n, e) => n + 512 + (e.type === 'file' ? Math.ceil(Number(e.size) / 512) * 512 : 0), 1024);
    for (let i = 0; i < table.length; i++) {
      tarBytes += 512 + (table.nsec.get(i) !== 0 ? 1024 : 0) + (table.kind.get(i) === KIND_FILE ? Math.ceil(table.size.get(i) / 512) * 512 : 0);
    }
    const compressing = opts.progress?.phase('compressing', tarBytes);
    const layer = await writeLayer(concatEntries(head, table), path.join(dir, `vrift-layer-${process.pid}-${randomBytes(4).toString('hex')}.tar.gz`), { onTarBytes: compressing ? (n) => compressing.add(n) : undefined, compression: opts.compression });
    compressing?.end();
    return {
      layer: await renameToDigest(layer, dir, 'vrift-layer'),
      blobFile: blob.file,
      blobSize: blob.size,
      blobDigest: blob.digest,
      stats,
      uncertain: blob.uncertain,
    };
  } catch (err) {
    await fsp.rm(blob.file, { force: true });
    throw err;
  }
}

/**
 * The blob of treeBlobRows, written to `<dir>/psfs-<digest hex>.blob`
 * (temp file + rename); the bytes are never whole in memory.
 */
async function writeTreeBlob(table: EntryTable, root: Buffer, merge: BuildVriftLayerOptions['merge'], dir: string): Promise<{ file: string; size: number; digest: string; uncertain: Buffer[] }> {
  const { rows, roots, flags, uncertain } = treeBlobRows(table, root, merge);
  // Streamed to a file as it is encoded: the blob's bytes are never all in memory.
  const tmp = path.join(dir, `.psfs-${process.pid}-${randomBytes(4).toString('hex')}.blob`);
  let written;
  try {
    written = await writeBlobRows(tmp, rows, roots, flags);
  } catch (err) {
    // The directory is the build's own, under TMPDIR: say which knob moves it.
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
    throw new VriftError(`${(err as Error).message} (the build's temp directory, under TMPDIR=${os.tmpdir()}: set TMPDIR to a directory with more space)`, { cause: err });
  }
  const { size, digest } = written;
  const file = path.join(dir, `psfs-${digest.slice('sha256:'.length)}.blob`);
  try {
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw new VriftError(`writing PSFS blob ${file}: ${(err as Error).message}; check that ${dir} is writable and has space`, { cause: err });
  }
  return { file, size, digest, uncertain };
}

/**
 * Build the shim layer: usr/, usr/lib/, usr/lib/vrift/ (0755) and
 * usr/lib/vrift/libvrift.so (0755), all root:root with mtime 0, so the layer
 * is byte-identical for the same shim in every image (images share it).
 *
 * @param shimPath host path of the built libvrift.so
 * @param tmpDir output directory, default os.tmpdir(); file `vrift-shim-<digest hex>.tar.gz`
 * @throws VriftError when shimPath is not a readable regular file, or on I/O failure
 */
export async function buildShimLayer(shimPath: string, tmpDir?: string): Promise<LayerFile> {
  const dir = path.resolve(tmpDir ?? os.tmpdir());
  await fsp.mkdir(dir, { recursive: true });
  const layer = await writeFileLayer(
    [{ path: SHIM_IMAGE_PATH, mode: 0o755, srcPath: shimPath, mtime: 0 }],
    path.join(dir, `vrift-shim-${process.pid}-${randomBytes(4).toString('hex')}.tar.gz`),
  );
  return renameToDigest(layer, dir, 'vrift-shim');
}
