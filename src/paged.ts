/**
 * Memory bounded by a constant, whatever the tree's size: what `vrift build`
 * holds per path lives in paged arrays (typed-array columns whose pages share
 * one process-wide pool of at most `poolBytes`) and is sorted by a
 * RecordSorter (sorted runs in a temp file, merged). A page pushed out of the
 * pool goes to its array's own temp file, created on the first such page in
 * the spill directory and unlinked at once: a build that fits the pool
 * touches no disk, and nothing is left behind however the process ends.
 *
 * The pool is a clock (second chance) over fixed 16 KiB frames: sequential
 * passes over many columns keep one page each resident; random lookups cost
 * a pread(2) of one page when they miss. Views returned by `bytes` point into
 * a frame: use them before the next access to any paged array (another
 * array's fault may reuse the frame).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VriftError } from './errors';

/** Bytes of a page (a frame of the pool). */
export const PAGE_BYTES = 1 << 14;
/** Default pool size in bytes (1024 frames). */
export const DEFAULT_POOL_BYTES = 16 << 20;

type View<V> = { [i: number]: V };
type ViewCtor<V> = (new (buf: ArrayBuffer) => View<V>) & { BYTES_PER_ELEMENT: number };

interface Frame {
  buf: ArrayBuffer;
  /**
   * The array whose page this frame holds (undefined: free). Weak: an array
   * nobody closed is collected like any object, and its frames become free.
   */
  owner: WeakRef<PagedArray<number | bigint>> | undefined;
  page: number;
  view: View<number | bigint> | undefined;
  dirty: boolean;
  /** Clock's second-chance bit: set when an array turns to this page. */
  used: boolean;
}

/**
 * Closes the temp file of an owner nobody closed (a paged array, a sorter,
 * a table's path slabs): the file is already unlinked, only the descriptor
 * is left. openTempFile registers an owner, closeTempFile unregisters it.
 */
const tempFileCloser = new FinalizationRegistry<number>((fd) => {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
});

/**
 * Create a temp file in `dir` for `what` and unlink it at once; returns its descriptor.
 *
 * @throws VriftError naming the directory and TMPDIR when it cannot be created
 */
export function unlinkedTempFile(dir: string, what: string): number {
  const file = path.join(dir, `.vrift-${what}-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd = -1;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.unlinkSync(file);
    return fd;
  } catch (err) {
    if (fd >= 0) fs.closeSync(fd);
    throw new VriftError(`creating a temp file in ${dir}: ${(err as Error).message}; set TMPDIR to a writable directory with space`, { cause: err });
  }
}

/**
 * unlinkedTempFile for `owner`, closed by the garbage collector if the owner
 * is dropped without closeTempFile. Returns the descriptor.
 *
 * @throws VriftError as unlinkedTempFile
 */
export function openTempFile(owner: object, dir: string, what: string): number {
  const fd = unlinkedTempFile(dir, what);
  tempFileCloser.register(owner, fd, owner);
  return fd;
}

/** Close `owner`'s temp file `fd` (openTempFile); a negative fd is none. Returns -1, the closed descriptor's new value. */
export function closeTempFile(owner: object, fd: number): number {
  if (fd >= 0) {
    tempFileCloser.unregister(owner);
    fs.closeSync(fd);
  }
  return -1;
}

/** pwrite(2) all of `buf` at `position`. @throws VriftError (ENOSPC and others: says to set TMPDIR) */
export function writeAllAt(fd: number, buf: Uint8Array, position: number): void {
  try {
    for (let o = 0; o < buf.length;) o += fs.writeSync(fd, buf, o, buf.length - o, position + o);
  } catch (err) {
    throw new VriftError(`writing to a temp file under ${spillDir()}: ${(err as Error).message}; set TMPDIR to a writable directory with space`, { cause: err });
  }
}

/** pread(2) into `buf` at `position`; past the end of the file reads as zeros. @throws VriftError */
export function readAllAt(fd: number, buf: Uint8Array, position: number): void {
  let n = 0;
  try {
    while (n < buf.length) {
      const r = fs.readSync(fd, buf, n, buf.length - n, position + n);
      if (r === 0) break;
      n += r;
    }
  } catch (err) {
    throw new VriftError(`reading back a temp file under ${spillDir()}: ${(err as Error).message}`, { cause: err });
  }
  buf.fill(0, n);
}

const pool = {
  frames: [] as Frame[],
  /** Frames released by truncate/close, reused before any other. */
  free: [] as Frame[],
  hand: 0,
  limit: DEFAULT_POOL_BYTES / PAGE_BYTES,
  /** Where temp files go; undefined: os.tmpdir() when one is made (TMPDIR then). */
  dir: undefined as string | undefined,
  /** Bytes of records a RecordSorter sorts in memory before it writes a run. */
  runBytes: 4 << 20,
  /** Pages written to spill files and sorted runs written, since the process started. */
  pagesWritten: 0,
  runsWritten: 0,
  /** A frame to hold a new page: a released one, a new one up to the limit, else the clock's victim (written out if dirty). */
  take(): Frame {
    const free = this.free.pop();
    if (free) return free;
    if (this.frames.length < this.limit) {
      const f: Frame = { buf: new ArrayBuffer(PAGE_BYTES), owner: undefined, page: -1, view: undefined, dirty: false, used: false };
      this.frames.push(f);
      return f;
    }
    for (;;) {
      const f = this.frames[this.hand];
      this.hand = (this.hand + 1) % this.frames.length;
      const owner = f.owner?.deref();
      if (owner === undefined) return f;
      if (f.used) {
        f.used = false;
        continue;
      }
      owner.evict(f);
      return f;
    }
  },
};

/** The directory temp files are made in now. */
const spillDir = (): string => pool.dir ?? os.tmpdir();

/**
 * Where spilled pages and sorted runs go, the pool size and the sorters'
 * run size. Tests shrink `poolBytes` and `runBytes` to make every array and
 * sort spill.
 *
 * @param opts.dir an existing writable directory (default, or null: os.tmpdir() at the time a file is made)
 * @param opts.poolBytes bytes of frames the pool may hold (>= 4 pages; default DEFAULT_POOL_BYTES)
 * @param opts.runBytes bytes of records a RecordSorter made afterwards sorts in memory (default 4 MiB)
 */
export function configurePaging(opts: { dir?: string | null; poolBytes?: number; runBytes?: number }): void {
  if (opts.dir !== undefined) pool.dir = opts.dir ?? undefined;
  if (opts.runBytes !== undefined) pool.runBytes = opts.runBytes;
  if (opts.poolBytes !== undefined) {
    pool.limit = Math.max(4, Math.floor(opts.poolBytes / PAGE_BYTES));
    // Shrinking: drop frames past the limit (their pages go to their files first).
    while (pool.frames.length > pool.limit) {
      const f = pool.frames.pop()!;
      f.owner?.deref()?.evict(f);
    }
    pool.free = pool.free.filter((f) => pool.frames.includes(f));
    pool.hand = 0;
  }
}

/** The pool's state: frames allocated (each PAGE_BYTES), the limit, pages and sorted runs written so far. */
export function pagingStats(): { frames: number; limit: number; pagesWritten: number; runsWritten: number } {
  return { frames: pool.frames.length, limit: pool.limit, pagesWritten: pool.pagesWritten, runsWritten: pool.runsWritten };
}

/**
 * A typed array of unbounded length in pages of the shared pool: every
 * index reads 0 until set. `get`/`set` cost a compare on the page in hand,
 * else a pool lookup (and, past the pool, a pread of one page).
 *
 * @typeParam V number (Uint8/16/32Array, Float64Array pages) or bigint (BigInt64/BigUint64Array pages)
 */
export class PagedArray<V extends number | bigint = number> {
  private readonly shift: number;
  private readonly mask: number;
  private frames: (Frame | undefined)[] = [];
  /** Pages written to the file (a page not in it reads as zeros). */
  private spilled: boolean[] = [];
  private hotPage = -1;
  private hot: View<V> | undefined;
  private hotFrame: Frame | undefined;
  private fd = -1;
  private readonly self = new WeakRef(this as unknown as PagedArray<number | bigint>);

  /** @param Ctor the element type, e.g. Uint32Array */
  constructor(private readonly Ctor: ViewCtor<V>) {
    const per = PAGE_BYTES / Ctor.BYTES_PER_ELEMENT;
    this.shift = Math.log2(per);
    this.mask = per - 1;
  }

  /** Element i (0 if never set). */
  get(i: number): V {
    const p = i >>> this.shift;
    const v = p === this.hotPage ? this.hot! : this.fault(p);
    return v[i & this.mask];
  }

  /** Set element i to `v`. */
  set(i: number, v: V): void {
    const p = i >>> this.shift;
    const view = p === this.hotPage ? this.hot! : this.fault(p);
    view[i & this.mask] = v;
    this.hotFrame!.dirty = true;
  }

  /**
   * A Buffer over elements [i, i + n) of a Uint8Array-paged array, which must
   * lie in one page (e.g. 32-byte records at multiples of 32). Use it before
   * the next access to any paged array; `write` marks the page modified.
   */
  bytes(i: number, n: number, write = false): Buffer {
    const p = i >>> this.shift;
    if ((i + n - 1) >>> this.shift !== p) throw new Error(`paged bytes [${i}, ${i + n}) straddle a page (internal error)`);
    if (p !== this.hotPage) this.fault(p);
    if (write) this.hotFrame!.dirty = true;
    return Buffer.from(this.hotFrame!.buf, (i & this.mask) * this.Ctor.BYTES_PER_ELEMENT, n * this.Ctor.BYTES_PER_ELEMENT);
  }

  /** Forget elements from `n` on (whole pages past it are freed and read as zeros again). */
  truncate(n: number): void {
    const keep = Math.ceil(n / (this.mask + 1));
    for (let p = keep; p < this.frames.length; p++) {
      const f = this.frames[p];
      if (!f) continue;
      this.release(f);
      pool.free.push(f); // the clock never meets it while `free` holds any: take pops those first
    }
    this.frames.length = Math.min(this.frames.length, keep);
    this.spilled.length = Math.min(this.spilled.length, keep);
    if (this.hotPage >= keep) this.hotPage = -1;
    if (this.fd >= 0) fs.ftruncateSync(this.fd, keep * PAGE_BYTES);
  }

  /** Free every page and the file: the array is empty (all zeros) afterwards. Idempotent. */
  close(): void {
    this.truncate(0);
    this.fd = closeTempFile(this, this.fd);
  }

  /** Pages written to the file at least once. */
  get spilledPages(): number {
    return this.spilled.filter(Boolean).length;
  }

  private fault(p: number): View<V> {
    let f = this.frames[p];
    if (!f) {
      f = pool.take();
      f.owner = this.self;
      f.page = p;
      f.dirty = false;
      const bytes = new Uint8Array(f.buf);
      if (this.spilled[p]) readAllAt(this.fd, bytes, p * PAGE_BYTES);
      else bytes.fill(0);
      f.view = new this.Ctor(f.buf) as View<number | bigint>;
      this.frames[p] = f;
    }
    f.used = true;
    this.hotPage = p;
    this.hotFrame = f;
    this.hot = f.view as View<V>;
    return this.hot;
  }

  /** Called by the pool: give frame `f` (one of ours) up, writing it out if modified. */
  evict(f: Frame): void {
    if (f.dirty) {
      if (this.fd < 0) this.fd = openTempFile(this, spillDir(), 'pages');
      writeAllAt(this.fd, new Uint8Array(f.buf), f.page * PAGE_BYTES);
      this.spilled[f.page] = true;
      pool.pagesWritten++;
    }
    this.release(f);
  }

  private release(f: Frame): void {
    if (this.frames[f.page] === f) this.frames[f.page] = undefined;
    if (this.hotPage === f.page) this.hotPage = -1;
    f.owner = undefined;
    f.view = undefined;
    f.dirty = false;
    f.used = false;
  }
}

/**
 * Bytes of unbounded length in pages of the shared pool (a Uint8Array
 * PagedArray): appended in pieces, read back by range as copies. Holds a file
 * that is read whole but need not be in memory whole (a base image's PSFS
 * blob: src/verify/imageScan.ts).
 */
export class PagedBytes {
  private readonly pages = new PagedArray(Uint8Array);
  /** Bytes appended so far. */
  length = 0;

  /** Append a copy of `src`. @throws VriftError when a page cannot be spilled (ENOSPC under TMPDIR) */
  append(src: Uint8Array): void {
    for (let o = 0; o < src.length;) {
      const n = Math.min(src.length - o, PAGE_BYTES - (this.length % PAGE_BYTES));
      this.pages.bytes(this.length, n, true).set(src.subarray(o, o + n));
      o += n;
      this.length += n;
    }
  }

  /**
   * A copy of bytes [off, off + len) (the caller may keep it).
   * @throws RangeError when the range is not inside the bytes
   */
  read(off: number, len: number): Buffer {
    if (!(off >= 0 && len >= 0 && off + len <= this.length)) throw new RangeError(`paged bytes [${off}, +${len}) outside [0, ${this.length})`);
    const out = Buffer.allocUnsafe(len);
    for (let o = 0; o < len;) {
      const at = off + o;
      const n = Math.min(len - o, PAGE_BYTES - (at % PAGE_BYTES));
      this.pages.bytes(at, n).copy(out, o);
      o += n;
    }
    return out;
  }

  /** Free the pages and the temp file; empty afterwards. Idempotent. */
  close(): void {
    this.pages.close();
    this.length = 0;
  }
}

/** Runs merged at once (each with a 64 KiB read buffer). */
const MERGE_WAYS = 32;
const READ_BYTES = 1 << 16;

/**
 * Sort fixed-width records by their bytes (Buffer.compare order: put the key
 * first, big-endian) in bounded memory: up to `runBytes` (4 MiB) of records
 * are sorted in memory; beyond that, sorted runs go to an unlinked temp file and are
 * merged MERGE_WAYS at a time. Equal records keep no particular order (make
 * them distinct, e.g. with a row number after the key).
 */
export class RecordSorter {
  private chunk: Buffer;
  private count = 0;
  private fd = -1;
  /** Runs in the file: [byte offset, record count]. */
  private runs: [number, number][] = [];
  private fileEnd = 0;
  private readonly cap: number;

  /** @param width bytes per record; @param runBytes bytes of records sorted in memory (default: configurePaging's) */
  constructor(readonly width: number, runBytes = pool.runBytes) {
    this.cap = Math.max(2, Math.floor(runBytes / width));
    this.chunk = Buffer.allocUnsafe(this.cap * width);
  }

  /** A `width`-byte slot for the next record: fill it before the next call. */
  push(): { buf: Buffer; off: number } {
    if (this.count === this.cap) this.spillRun();
    const off = this.count++ * this.width;
    return { buf: this.chunk, off };
  }

  /** The records in order, as (buffer, offset) views valid until the next step. Once. */
  *sorted(): Generator<{ buf: Buffer; off: number }> {
    if (this.runs.length === 0) {
      for (const k of this.sortChunk()) yield { buf: this.chunk, off: k * this.width };
      this.chunk = Buffer.alloc(0);
      return;
    }
    if (this.count > 0) this.spillRun();
    this.chunk = Buffer.alloc(0);
    // Merge passes until MERGE_WAYS runs or fewer remain; then the last merge is yielded.
    while (this.runs.length > MERGE_WAYS) {
      const next: [number, number][] = [];
      for (let r = 0; r < this.runs.length; r += MERGE_WAYS) {
        const group = this.runs.slice(r, r + MERGE_WAYS);
        const start = this.fileEnd;
        const out = Buffer.allocUnsafe(READ_BYTES - (READ_BYTES % this.width));
        let used = 0;
        let total = 0;
        for (const rec of this.merge(group)) {
          rec.buf.copy(out, used, rec.off, rec.off + this.width);
          used += this.width;
          total++;
          if (used === out.length) {
            writeAllAt(this.fd, out, this.fileEnd);
            this.fileEnd += used;
            used = 0;
          }
        }
        writeAllAt(this.fd, out.subarray(0, used), this.fileEnd);
        this.fileEnd += used;
        next.push([start, total]);
      }
      this.runs = next;
    }
    yield* this.merge(this.runs);
    this.close();
  }

  /** Release the temp file. Idempotent. */
  close(): void {
    this.fd = closeTempFile(this, this.fd);
  }

  /** Indices of the in-memory records in sorted order. */
  private sortChunk(): Uint32Array {
    const w = this.width;
    const c = this.chunk;
    const idx = new Uint32Array(this.count);
    for (let k = 0; k < idx.length; k++) idx[k] = k;
    return idx.sort((a, b) => c.compare(c, b * w, b * w + w, a * w, a * w + w));
  }

  private spillRun(): void {
    if (this.fd < 0) this.fd = openTempFile(this, spillDir(), 'sort');
    const w = this.width;
    const out = Buffer.allocUnsafe(this.count * w);
    const idx = this.sortChunk();
    for (let k = 0; k < idx.length; k++) this.chunk.copy(out, k * w, idx[k] * w, idx[k] * w + w);
    writeAllAt(this.fd, out, this.fileEnd);
    this.runs.push([this.fileEnd, this.count]);
    pool.runsWritten++;
    this.fileEnd += out.length;
    this.count = 0;
  }

  /** k-way merge of runs (a binary heap of their heads). */
  private *merge(runs: [number, number][]): Generator<{ buf: Buffer; off: number }> {
    const w = this.width;
    const per = Math.max(1, Math.floor(READ_BYTES / w));
    const cur = runs.map(([at, n]) => ({ at, left: n, buf: Buffer.allocUnsafe(per * w), off: 0, end: 0 }));
    const fill = (r: (typeof cur)[number]): boolean => {
      if (r.off < r.end) return true;
      if (r.left === 0) return false;
      const n = Math.min(per, r.left);
      readAllAt(this.fd, r.buf.subarray(0, n * w), r.at);
      r.at += n * w;
      r.left -= n;
      r.off = 0;
      r.end = n * w;
      return true;
    };
    const less = (a: number, b: number): boolean => {
      const x = cur[a];
      const y = cur[b];
      return x.buf.compare(y.buf, y.off, y.off + w, x.off, x.off + w) < 0;
    };
    const heap: number[] = [];
    const down = (i: number): void => {
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l], heap[m])) m = l;
        if (r < heap.length && less(heap[r], heap[m])) m = r;
        if (m === i) return;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    };
    cur.forEach((r, i) => {
      if (fill(r)) heap.push(i);
    });
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) down(i);
    while (heap.length > 0) {
      const r = cur[heap[0]];
      yield { buf: r.buf, off: r.off };
      r.off += w;
      if (!fill(r)) {
        heap[0] = heap[heap.length - 1];
        heap.pop();
      }
      down(0);
    }
  }
}
