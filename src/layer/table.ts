/**
 * EntryTable: the layer entries of a planned /vrift tree in columns (paged
 * arrays, src/paged.ts, and byte slabs) instead of one object per entry:
 * what `vrift build` holds per path from the walk to the end of the layer
 * write, shared by the tar writer (src/layer/tar.ts, through LayerEntries)
 * and the blob entries (src/tree/blobEntries.ts). About 37 bytes of columns
 * per entry (plus 32 for a CAS object's sha256) and its path bytes, in
 * memory up to the page pool and in temp files past it; a LayerEntry object
 * with its Buffer view, Timespec, bigints and strings took ~0.35 KiB
 * (measured: src/tree/README.md "Memory").
 */
import * as fs from 'node:fs';
import { VriftError } from '../errors';
import { casObjectPath } from '../cas/path';
import type { LayerEntry } from './types';
import { closeTempFile, openTempFile, PagedArray } from '../paged';

/** Entry kinds (the LayerEntry `type`s). */
export const KIND_DIR = 0;
export const KIND_FILE = 1;
export const KIND_HARDLINK = 2;
export const KIND_SYMLINK = 3;

/**
 * Layer entries read one at a time (what writeLayer takes besides an array):
 * `entry(i)` makes entry i on demand (the caller does not keep it).
 */
export interface LayerEntries {
  readonly length: number;
  entry(i: number): LayerEntry;
  /** For a hardlink entry: the index of the regular-file entry it names, or -1 if there is none. */
  linkTarget(i: number): number;
}

/** `head` (a few entries as objects, e.g. the /usr/lib/vrift directories and the blob file) followed by `tail`. */
export function concatEntries(head: LayerEntry[], tail: LayerEntries): LayerEntries {
  const n = head.length;
  return {
    length: n + tail.length,
    entry: (i) => (i < n ? head[i] : tail.entry(i - n)),
    // Hardlinks of `head` are not resolved (it holds none where this is used): -1 makes writeLayer refuse one.
    linkTarget: (i) => {
      if (i < n) return -1;
      const t = tail.linkTarget(i - n);
      return t < 0 ? -1 : n + t;
    },
  };
}

/** Bytes of one slab of path/target bytes; a path never straddles two (PATH_MAX 4096 fits). */
const SLAB_BITS = 20;
const SLAB = 1 << SLAB_BITS;
const SLAB_MASK = SLAB - 1;
const SHA_BYTES = 32;
/** Forward reads in one spilled slab in a row after which the whole slab is read (a scan, not random lookups). */
const SCAN_AFTER = 8;

/**
 * Columns, indexed by entry number (PagedArray: `get(i)`, `set(i, v)`; every
 * row reads 0 until set):
 * - path: bytes in 1 MiB slabs (`pathAt` + `pathLen`, a global byte offset);
 * - kind (KIND_*), mode (full st_mode, 16 bits), mtime (`sec` exact up to
 *   2^53, `nsec`), size (st_size of files and hardlinks; the target length
 *   of symlinks), nlink (files and hardlinks);
 * - ref: a symlink's target bytes offset (length = size); a hardlink's
 *   target entry; a file's source entry (a tree path: its host path is the
 *   bytes read, see hostPath); during planning a walked file's digest-cache
 *   key row;
 * - sha: 32 bytes per entry (shaHex, setShaHex, shaBytes), the content
 *   sha256 of files (and of walked files before they become hardlinks);
 *   keepShaOf drops it past the rows that still need it.
 * uid and gid are the same for every entry of a table.
 *
 * With spillTo, every filled slab goes to an unlinked temp file and leaves
 * memory: a table then holds one slab of path bytes, not the paths of the
 * whole tree (and its columns only up to the page pool). Paths are read back by offset: a scan
 * (several forward reads in one slab) reads that slab whole, a lookup
 * reads just its bytes.
 */
export class EntryTable implements LayerEntries {
  length = 0;
  private slabs: (Buffer | undefined)[] = [Buffer.allocUnsafeSlow(SLAB)];
  private used = 0;
  private spillFd = -1;
  /** The directory of the spill file (for messages). */
  private spillDir = '';
  /** The spilled slab read whole last (a scan), and the run of reads in one spilled slab. */
  private readSlab = -1;
  private readBuf: Buffer | undefined;
  private runSlab = -1;
  private runAt = 0;
  private run = 0;
  /** Spilled slabs read back whole so far (scans; lookups read only their bytes). */
  slabReads = 0;
  pathAt = new PagedArray(Uint32Array);
  pathLen = new PagedArray(Uint16Array);
  kind = new PagedArray(Uint8Array);
  mode = new PagedArray(Uint16Array);
  sec = new PagedArray(Float64Array);
  nsec = new PagedArray(Uint32Array);
  size = new PagedArray(Float64Array);
  nlink = new PagedArray(Uint32Array);
  ref = new PagedArray(Uint32Array);
  /** 32 bytes a row (see keepShaOf); read and written through the sha* methods. */
  private sha = new PagedArray(Uint8Array);
  /** Rows whose sha256 is kept (keepShaOf). */
  private shaRows = Infinity;

  /**
   * The domain root CAS object paths are derived under (addCasObject):
   * `<casRoot>/.cas/<2 hex>/<62 hex>[<suffix>]` (src/cas/path.ts).
   */
  casRoot = Buffer.from('/vrift');

  /**
   * @param uid owner of every entry
   * @param gid group of every entry
   * @param sources host directories the tree paths come from: a path under
   *   `dest` is read from `src` + the rest of the path (hostPath)
   */
  constructor(readonly uid: number, readonly gid: number, readonly sources: { dest: Buffer; src: Buffer }[] = []) {}

  /**
   * Keep filled slabs in a temp file in `dir` from now on (see the class).
   * The file is unlinked at once: nothing is left behind, however the
   * process ends; close() (or garbage collection) releases it.
   *
   * @throws VriftError when `dir` cannot hold the file (what to do: a writable TMPDIR)
   */
  spillTo(dir: string): void {
    if (this.spillFd >= 0) return;
    this.spillFd = openTempFile(this, dir, 'paths');
    this.spillDir = dir;
  }


  /** Release the spill file of the path slabs. */
  private closeSlabs(): void {
    this.spillFd = closeTempFile(this, this.spillFd);
  }

  /** Slabs held in memory. */
  get residentSlabs(): number {
    return this.slabs.filter((b) => b !== undefined).length;
  }

  /** Slabs in the spill file, not in memory. */
  get spilledSlabs(): number {
    return this.slabs.length - this.residentSlabs;
  }

  /** Write full slab s to the spill file and drop it from memory. */
  private spill(s: number): void {
    const b = this.slabs[s]!;
    try {
      for (let o = 0; o < SLAB;) o += fs.writeSync(this.spillFd, b, o, SLAB - o, s * SLAB + o);
    } catch (err) {
      throw new VriftError(`planning: writing path bytes to a temp file in ${this.spillDir}: ${(err as Error).message}; set TMPDIR to a writable directory with space`, { cause: err });
    }
    this.slabs[s] = undefined;
  }

  /** Copy `parts` (concatenated) into the slabs; returns the global byte offset. */
  putBytes(parts: Buffer[]): number {
    const len = parts.reduce((n, b) => n + b.length, 0);
    if (len > SLAB) throw new VriftError(`planning: a path or symlink target of ${len} bytes is longer than ${SLAB} (internal limit)`);
    let s = this.used >>> SLAB_BITS;
    if (s < this.slabs.length && (this.used & SLAB_MASK) + len > SLAB) s++; // does not fit: the next slab
    if (s >= this.slabs.length) {
      // Offsets are uint32: 4096 slabs of 1 MiB.
      if (s >= 4096) throw new VriftError('planning: more than 4 GiB of path bytes; split the tree into several images');
      if (this.spillFd >= 0) this.spill(s - 1);
      this.slabs.push(Buffer.allocUnsafeSlow(SLAB));
      this.used = s * SLAB;
    }
    const at = this.used;
    const slab = this.slabs[at >>> SLAB_BITS]!;
    let o = at & SLAB_MASK;
    for (const b of parts) o += b.copy(slab, o);
    this.used += len;
    return at;
  }

  /** `len` bytes at global offset `at` (a view into a slab, or read from the spill file). */
  bytesAt(at: number, len: number): Buffer {
    const s = at >>> SLAB_BITS;
    const o = at & SLAB_MASK;
    const slab = this.slabs[s];
    if (slab) return slab.subarray(o, o + len);
    if (s === this.readSlab) return this.readBuf!.subarray(o, o + len);
    // A scan reads forward in one slab; lookups in a random order (the digest
    // cache's hash order) would load whole slabs for nothing.
    this.run = s === this.runSlab && at >= this.runAt ? this.run + 1 : 1;
    this.runSlab = s;
    this.runAt = at;
    const whole = this.run >= SCAN_AFTER;
    const buf = Buffer.allocUnsafe(whole ? SLAB : len);
    const from = whole ? s * SLAB : at;
    try {
      for (let n = 0; n < buf.length;) {
        const r = fs.readSync(this.spillFd, buf, n, buf.length - n, from + n);
        if (r === 0) throw new Error('unexpected end of file');
        n += r;
      }
    } catch (err) {
      throw new VriftError(`reading path bytes back from the temp file: ${(err as Error).message}`, { cause: err });
    }
    if (!whole) return buf;
    this.slabReads++;
    this.readSlab = s;
    this.readBuf = buf;
    return buf.subarray(o, o + len);
  }

  /**
   * Append an entry whose path is `parts` concatenated; returns its index.
   * Columns other than path, kind and mode start at 0.
   */
  add(parts: Buffer[], kind: number, mode: number): number {
    const i = this.length;
    const at = this.putBytes(parts);
    if (this.used === at) throw new VriftError('planning: an empty path (internal error)'); // pathLen 0 marks a derived CAS path
    this.pathAt.set(i, at);
    this.pathLen.set(i, this.used - at);
    this.kind.set(i, kind);
    this.mode.set(i, mode);
    this.length++;
    return i;
  }

  /**
   * Append a CAS object whose path is derived, not stored (it is ~90 bytes
   * a file otherwise, the largest part of a row): from casRoot, its sha
   * (set by the caller), and for a non-primary object (`variant` = batch +
   * 1, 0 for the primary) its permission bits and `sec` as well. Those
   * columns must not change afterwards. Returns its index.
   */
  addCasObject(variant: number, mode: number): number {
    const i = this.length;
    this.pathAt.set(i, variant);
    this.pathLen.set(i, 0); // no stored path: no path is empty
    this.kind.set(i, KIND_FILE);
    this.mode.set(i, mode);
    this.length++;
    return i;
  }

  /** The derived path of CAS object row i (see addCasObject). */
  private casPath(i: number): Buffer {
    const v = this.pathAt.get(i);
    return casObjectPath(this.casRoot, this.shaHex(i), v === 0 ? undefined : { perm: this.mode.get(i) & 0o7777, mtime: this.sec.get(i), batch: v - 1 });
  }

  /** Path bytes of entry i (a view: do not keep many). */
  path(i: number): Buffer {
    if (this.pathLen.get(i) === 0) return this.casPath(i);
    return this.bytesAt(this.pathAt.get(i), this.pathLen.get(i));
  }

  /** Compare the paths of entries i and j by bytes (Buffer.compare order), without a view. */
  comparePaths(i: number, j: number): number {
    if (this.pathLen.get(i) === 0 || this.pathLen.get(j) === 0) return Buffer.compare(this.path(i), this.path(j));
    const a = this.pathAt.get(i);
    const b = this.pathAt.get(j);
    const sa = this.slabs[a >>> SLAB_BITS];
    const sb = this.slabs[b >>> SLAB_BITS];
    if (!sa || !sb) return Buffer.compare(this.path(i), this.path(j)); // each read gets its own buffer
    const ao = a & SLAB_MASK;
    const bo = b & SLAB_MASK;
    return sa.compare(sb, bo, bo + this.pathLen.get(j), ao, ao + this.pathLen.get(i));
  }

  /** Whether entry i's path equals `p`. */
  pathEquals(i: number, p: Buffer): boolean {
    if (this.pathLen.get(i) === 0) return this.casPath(i).equals(p);
    if (this.pathLen.get(i) !== p.length) return false;
    return this.path(i).equals(p);
  }

  /** A symlink's target bytes. */
  target(i: number): Buffer {
    return this.bytesAt(this.ref.get(i), this.size.get(i));
  }

  /** sha256 of entry i's content as 64 hex digits (files and hardlinks). */
  shaHex(i: number): string {
    if (i >= this.shaRows && this.kind.get(i) === KIND_HARDLINK) i = this.ref.get(i); // keepShaOf dropped it: its file's
    return this.sha.bytes(i * SHA_BYTES, SHA_BYTES).toString('hex');
  }

  /** Set entry i's sha256 from 64 hex digits. */
  setShaHex(i: number, hex: string): void {
    this.sha.bytes(i * SHA_BYTES, SHA_BYTES, true).write(hex, 'hex');
  }

  /** Give entry `to` entry `from`'s sha256. */
  copySha(to: number, from: number): void {
    this.shaBytes(from).copy(this.sha.bytes(to * SHA_BYTES, SHA_BYTES, true));
  }

  /** Entry i's sha256 as 32 bytes (a copy). */
  shaBytes(i: number): Buffer {
    return Buffer.from(this.sha.bytes(i * SHA_BYTES, SHA_BYTES));
  }

  /**
   * Keep the sha256 of rows 0..rows-1 only: once planned, the rows after
   * them are directories, symlinks and hardlinks, which need none (a
   * hardlink's is its file's).
   */
  keepShaOf(rows: number): void {
    this.shaRows = rows;
    this.sha.truncate(rows * SHA_BYTES);
  }

  /** The host path tree entry i is read from: its source directory + the rest of its path. */
  hostPath(i: number): Buffer {
    const p = this.path(i);
    for (const s of this.sources) {
      if (p.length >= s.dest.length && p.subarray(0, s.dest.length).equals(s.dest) && (p.length === s.dest.length || p[s.dest.length] === 0x2f)) {
        return Buffer.concat([s.src, p.subarray(s.dest.length)]);
      }
    }
    throw new VriftError(`planning ${p.toString()}: no source directory holds it (internal error)`);
  }

  linkTarget(i: number): number {
    if (this.kind.get(i) !== KIND_HARDLINK) return -1;
    const t = this.ref.get(i);
    return this.kind.get(t) === KIND_FILE ? t : -1;
  }

  /** Entry i as a LayerEntry object (new objects each call; mtime { sec, nsec }). */
  entry(i: number): LayerEntry {
    const path = this.path(i);
    const mode = this.mode.get(i);
    const { uid, gid } = this;
    const mtime = { sec: BigInt(this.sec.get(i)), nsec: this.nsec.get(i) };
    switch (this.kind.get(i)) {
      case KIND_DIR:
        return { type: 'directory', path, mode, uid, gid, mtime };
      case KIND_SYMLINK:
        return { type: 'symlink', path, mode, uid, gid, mtime, target: this.target(i) };
      case KIND_FILE:
        return {
          type: 'file', path, mode, uid, gid, mtime, size: BigInt(this.size.get(i)), source: { file: this.hostPath(this.ref.get(i)) },
          sha256: this.shaHex(i), nlink: this.nlink.get(i),
        };
      default:
        return {
          type: 'hardlink', path, mode, uid, gid, mtime, linkTo: this.path(this.ref.get(i)), size: BigInt(this.size.get(i)),
          sha256: this.shaHex(i), nlink: this.nlink.get(i),
        };
    }
  }

  /** The entries as objects, one at a time. */
  *[Symbol.iterator](): IterableIterator<LayerEntry> {
    for (let i = 0; i < this.length; i++) yield this.entry(i);
  }

  /** Every entry as an object (tests, small trees; not for the builder's own use). */
  toArray(): LayerEntry[] {
    return Array.from({ length: this.length }, (_, i) => this.entry(i));
  }

  /**
   * Rows [1, from) and [from, length) trade places (row 0 stays): the
   * planner's layer order (/vrift, then the .cas subtree it added last,
   * then the walked rows). File and hardlink `ref`s follow. Three
   * reversals, each two cursors moving inwards: every column is read
   * sequentially, never at random, so a table larger than the page pool
   * (src/paged.ts) is not paged in and out row by row.
   */
  rotate(from: number): void {
    const n = this.length;
    if (from < 1 || from > n) throw new Error(`rotate(${from}) of ${n} rows (internal error)`);
    const cols = [this.pathAt, this.pathLen, this.kind, this.mode, this.sec, this.nsec, this.size, this.nlink, this.ref];
    const swap = (a: number, b: number): void => {
      for (const c of cols) {
        const t = c.get(a);
        c.set(a, c.get(b));
        c.set(b, t);
      }
      if (b < this.shaRows) {
        const t = this.shaBytes(a);
        this.copySha(a, b);
        t.copy(this.sha.bytes(b * SHA_BYTES, SHA_BYTES, true));
      }
    };
    const reverse = (a: number, b: number): void => {
      for (b--; a < b; a++, b--) swap(a, b);
    };
    reverse(1, from);
    reverse(from, n);
    reverse(1, n);
    const moved = (r: number): number => (r === 0 ? 0 : r >= from ? r - from + 1 : r + n - from);
    for (let k = 0; k < n; k++) {
      const kind = this.kind.get(k);
      if (kind === KIND_FILE || kind === KIND_HARDLINK) this.ref.set(k, moved(this.ref.get(k)));
    }
  }

  /** Free the columns' pages and the spill files: the table is empty afterwards. Idempotent. */
  close(): void {
    this.length = 0;
    this.closeSlabs();
    for (const c of [this.pathAt, this.pathLen, this.kind, this.mode, this.sec, this.nsec, this.size, this.nlink, this.ref, this.sha]) c.close();
  }
}
