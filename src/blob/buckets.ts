/**
 * The PSFS bucket table (shim/psfs_format.h): open addressing with linear
 * probing, rows inserted in row order k = 0..n-1, each at the first empty
 * bucket from `hash & (bucketCount - 1)` on (wrapping at the end). Two ways
 * to build the same table: whole in memory (memoryBuckets), or a window at a
 * time with the rows spilled to a temp file (windowedBuckets), so that its
 * memory does not grow with the tree.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as F from './format';
import type { BlobRows } from './writer';

/** What a bucket table reads of the rows: the count and each path (the hash key). */
export type KeyRows = Pick<BlobRows, 'count' | 'path'>;

/** A bucket table being searched for a seed, then written out. */
export interface BucketTable {
  /**
   * Build the table for `seed` (uint32).
   * @returns its longest probe chain: buckets looked at by the worst lookup (>= 1)
   * @throws Error from the temp file's I/O (windowedBuckets)
   */
  fill(seed: number): number;
  /**
   * The table for `seed`, in bucket order, as consecutive parts: 2 uint32
   * per bucket (hash, row + 1; 0 0 is empty). A part is valid only during
   * its callback. Fills again first unless the last fill was for `seed`.
   * @throws Error as fill
   */
  forEachPart(seed: number, part: (buckets: Uint32Array) => void): void;
  /** Release the memory and temp file (idempotent). */
  close(): void;
}

/**
 * Fill `table` (2 uint32 per bucket: hash, row + 1; zeroed here) with
 * `rows` for `seed`: open addressing, linear probing (psfs_format.h).
 * @returns the longest probe chain (>= 1)
 */
export function fillBuckets(table: Uint32Array, rows: KeyRows, seed: number): number {
  table.fill(0);
  const mask = table.length / 2 - 1;
  let maxProbe = 1;
  for (let k = 0; k < rows.count; k++) {
    const h = F.hash(seed, rows.path(k));
    let slot = h & mask;
    let probe = 1;
    while (table[slot * 2 + 1] !== 0) {
      slot = (slot + 1) & mask;
      probe++;
    }
    table[slot * 2] = h;
    table[slot * 2 + 1] = k + 1;
    if (probe > maxProbe) maxProbe = probe;
  }
  return maxProbe;
}

/**
 * The whole table in memory: bucketCount x 8 bytes, one Uint32Array reused
 * by every seed.
 * @param bucketCount a power of two > rows.count (the writer's: >= 2 x rows.count)
 */
export function memoryBuckets(rows: KeyRows, bucketCount: number): BucketTable {
  const table = new Uint32Array(bucketCount * 2);
  let filled = -1;
  const fill = (seed: number): number => {
    filled = seed;
    return fillBuckets(table, rows, seed);
  };
  return {
    fill,
    forEachPart(seed, part) {
      if (filled !== seed) fill(seed);
      part(table);
    },
    close() {},
  };
}

/**
 * Sizes of windowedBuckets' memory. Internal: tests shrink them to run
 * windows, chunks and the wrap-around with a few hundred rows.
 */
export const windowing = {
  /** Buckets per window (a power of two): the in-memory table is 8 bytes a bucket, 2 MiB. */
  buckets: 1 << 18,
  /** Bytes of partition write buffers, shared by all windows (each at least 16 records). */
  partitionBytes: 1 << 21,
};

/** Records (row, hash: 8 bytes) a partition buffer holds at least. */
const MIN_CHUNK_RECORDS = 16;

/**
 * The bucket table built one window of W = windowing.buckets buckets at a
 * time (P = bucketCount / W windows), byte-identical to memoryBuckets'.
 *
 * Why it is exact: in linear probing, where row k lands in a window depends
 * only on the rows that reached that window before it (k' < k). A row
 * reaches a window from its home bucket there, or by probing past the end
 * of the window before (it enters at the first bucket, its probe count so
 * far carried along). So inserting, window by window, the window's own rows
 * merged in row order with the rows carried in from the window before gives
 * each window its global state. The last window carries into window 0,
 * whose carry-in is unknown when it runs first: the windows run on around
 * the circle until a window's carry-out equals what the next one last ran
 * with. That ends at the global table: carry lists only grow from the
 * empty start (an extra row in a window only pushes later rows further) and
 * never past the global ones, and a consistent set of carry lists is the
 * global one (by induction over k, every row follows its global probe
 * sequence). It ends within the second lap, usually after a window or two:
 * the change spreads from window 0 only up to the first empty bucket (no
 * row probes past one), and a table at most half full has one.
 *
 * How: per seed, one pass over the rows appends a (row, hash) record to the
 * partition of its home window: a buffer per partition, written as a chunk
 * to one temp file when full. Then every window reads its records back
 * into a W-bucket table. The temp file sits in `dir` and is unlinked at
 * once after it is opened (nothing is left behind, whatever happens).
 *
 * Memory in bytes, with W = windowing.buckets, B = windowing.partitionBytes
 * and P = bucketCount / W: 8W of table (2 MiB); max(B, 128P) of partition
 * buffers (2 MiB) and one chunk of them to read back (B / P); 8 per chunk
 * written (n / (B / 8P) chunks a seed: 128 at 2M rows, 8k at 16M); 24 per
 * row carried across a window boundary (fewer than the longest probe chain,
 * tens: c rows carried over a boundary sit in c buckets past it, so one of
 * them probed c + 1 buckets or more). So about 4-6 MiB up to tens of millions
 * of rows. Disk: 8 bytes per row, rewritten for each seed (page cache, not
 * RSS).
 *
 * @param rows the keys, in row order
 * @param bucketCount a power of two >= 2 x rows.count (the writer's; at
 *   least one empty bucket is what the laps need to end)
 * @param dir directory for the temp file (the blob's own)
 * @throws Error (errno code set) when the temp file cannot be opened or written
 */
export function windowedBuckets(rows: KeyRows, bucketCount: number, dir: string): BucketTable {
  const W = Math.min(windowing.buckets, bucketCount);
  const P = bucketCount / W;
  const shift = 31 - Math.clz32(W);
  const mask = bucketCount - 1;
  const cap = Math.max(MIN_CHUNK_RECORDS, Math.floor(windowing.partitionBytes / 8 / P)); // records per chunk
  const n = rows.count;

  const tmp = path.join(dir, `.psfs-buckets-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd = fs.openSync(tmp, 'wx+', 0o600);
  fs.unlinkSync(tmp);

  const table = new Uint32Array(W * 2);
  const buffers = new Uint32Array(P * cap * 2); // partition j: records j*cap .. j*cap + used[j]
  const used = new Uint32Array(P);
  let chunks: number[][] = []; // file offsets of each partition's full chunks, in order
  let fileEnd = 0;
  const readBuf = new Uint32Array(cap * 2);
  const readBytes = Buffer.from(readBuf.buffer);
  // carried[j]: rows entering window j at its first bucket, (row, hash, probe) triples in row order.
  let carried: number[][] = [];
  const longest = new Uint32Array(P); // longest probe chain ending in window j
  let filled = -1;

  const partition = (seed: number): void => {
    used.fill(0);
    chunks = Array.from({ length: P }, () => []);
    fileEnd = 0;
    for (let k = 0; k < n; k++) {
      const h = F.hash(seed, rows.path(k));
      const w = (h & mask) >>> shift;
      const at = (w * cap + used[w]) * 2;
      buffers[at] = k;
      buffers[at + 1] = h;
      if (++used[w] === cap) {
        const bytes = Buffer.from(buffers.buffer, w * cap * 8, cap * 8);
        for (let done = 0; done < bytes.length;) done += fs.writeSync(fd, bytes, done, bytes.length - done, fileEnd + done);
        chunks[w].push(fileEnd);
        fileEnd += cap * 8;
        used[w] = 0;
      }
    }
  };

  /** Window j's own records, in row order: its chunks from the file, then its buffer. */
  const ownRecords = (j: number, visit: (k: number, h: number) => void): void => {
    for (const off of chunks[j]) {
      for (let done = 0; done < cap * 8;) {
        const got = fs.readSync(fd, readBytes, done, cap * 8 - done, off + done);
        if (got === 0) throw new Error(`reading bucket spill file: short read at ${off + done}`);
        done += got;
      }
      for (let i = 0; i < cap * 2; i += 2) visit(readBuf[i], readBuf[i + 1]);
    }
    for (let i = j * cap * 2, end = (j * cap + used[j]) * 2; i < end; i += 2) visit(buffers[i], buffers[i + 1]);
  };

  /** Fill `table` with window j (own rows merged with carried[j] by row); returns the rows it carries out. */
  const runWindow = (j: number): number[] => {
    table.fill(0);
    const out: number[] = [];
    let maxProbe = 0;
    const put = (k: number, h: number, slot: number, probe: number): void => {
      while (table[slot * 2 + 1] !== 0) {
        slot++;
        probe++;
        if (slot === W) {
          out.push(k, h, probe);
          return;
        }
      }
      table[slot * 2] = h;
      table[slot * 2 + 1] = k + 1;
      if (probe > maxProbe) maxProbe = probe;
    };
    const inc = carried[j];
    let c = 0;
    ownRecords(j, (k, h) => {
      for (; c < inc.length && inc[c] < k; c += 3) put(inc[c], inc[c + 1], 0, inc[c + 2]);
      put(k, h, h & (W - 1), 1);
    });
    for (; c < inc.length; c += 3) put(inc[c], inc[c + 1], 0, inc[c + 2]);
    longest[j] = maxProbe;
    return out;
  };

  const fill = (seed: number): number => {
    filled = -1;
    partition(seed);
    carried = Array.from({ length: P }, () => []);
    // Every window once, then on around the circle while a carry-out changes.
    for (let j = 0, runs = 1; ; j = (j + 1) % P, runs++) {
      const out = runWindow(j);
      const next = (j + 1) % P;
      const same = out.length === carried[next].length && out.every((v, i) => v === carried[next][i]);
      carried[next] = out;
      if (same && runs >= P) break;
    }
    filled = seed;
    return longest.reduce((a, b) => Math.max(a, b), 1);
  };

  return {
    fill,
    forEachPart(seed, part) {
      if (filled !== seed) fill(seed);
      for (let j = 0; j < P; j++) {
        runWindow(j);
        part(table);
      }
    },
    close() {
      if (fd >= 0) fs.closeSync(fd);
      fd = -1;
    },
  };
}
