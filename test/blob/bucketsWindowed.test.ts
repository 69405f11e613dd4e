/**
 * windowedBuckets (src/blob/buckets.ts) against the in-memory table
 * (fillBuckets, what the writer always did): the same longest probe chain
 * and the same bytes for every seed, with windows forced tiny so that a few
 * hundred rows cross many window boundaries, wrap from the last window into
 * window 0 and cascade on, and spill chunks to the temp file. Then whole
 * blobs: writeBlobFile through windows is byte-identical to encodeBlob, and
 * a full disk under the temp file is a VriftError with nothing left behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as F from '../../src/blob/format';
import { memoryBuckets, windowedBuckets, windowing, type BucketTable, type KeyRows } from '../../src/blob/buckets';
import { encodeBlob, writeBlobFile, type BlobEntry, type BlobOptions } from '../../src/blob/writer';
import { VriftError } from '../../src/errors';
import { prngU32 } from '../prng';

const saved = { ...windowing };
let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-buckets-'));
});
afterEach(() => {
  Object.assign(windowing, saved);
  fs.rmSync(tmp, { recursive: true, force: true });
});


/** Distinct names under /r, each one's home bucket for `seed` (hash & mask) accepted by `want`. */
function names(rand: () => number, count: number, seed: number, mask: number, want: (home: number) => boolean, taken: Set<string>): string[] {
  const out: string[] = [];
  while (out.length < count) {
    const p = `/r/${rand().toString(36)}${rand().toString(36)}`;
    if (!taken.has(p) && want(F.hash(seed, Buffer.from(p)) & mask)) {
      taken.add(p);
      out.push(p);
    }
  }
  return out;
}

/** KeyRows over paths, sorted by bytes as the writer's rows are. */
function keyRows(paths: string[]): KeyRows {
  const bufs = paths.map((p) => Buffer.from(p)).sort(Buffer.compare);
  return { count: bufs.length, path: (k) => bufs[k] };
}

/** The table for `seed` as bytes, from its parts. */
function bytesOf(t: BucketTable, seed: number): Buffer {
  const parts: Buffer[] = [];
  t.forEachPart(seed, (part) => parts.push(Buffer.from(part.buffer.slice(part.byteOffset, part.byteOffset + part.byteLength))));
  return Buffer.concat(parts);
}

const bucketsFor = (n: number): number => {
  let b = 1;
  while (b < n * 2) b *= 2;
  return b;
};

/** Every seed through windows of `window` buckets equals the in-memory table (probe bound and bytes). */
function expectSameTables(paths: string[], window: number): void {
  const rows = keyRows(paths);
  const bucketCount = bucketsFor(rows.count);
  windowing.buckets = window;
  windowing.partitionBytes = 0; // chunks of 16 records: most records go through the temp file
  const mem = memoryBuckets(rows, bucketCount);
  const win = windowedBuckets(rows, bucketCount, tmp);
  try {
    for (let seed = 0; seed < 8; seed++) {
      expect([seed, win.fill(seed)]).toEqual([seed, mem.fill(seed)]);
      expect(bytesOf(win, seed).equals(bytesOf(mem, seed))).toBe(true);
    }
    // forEachPart of a seed other than the last filled fills it again (the writer's winner).
    expect(bytesOf(win, 3).equals(bytesOf(mem, 3))).toBe(true);
  } finally {
    win.close();
  }
  expect(fs.readdirSync(tmp)).toEqual([]); // the temp file was unlinked at once
}

describe('windowed bucket table = in-memory table', () => {
  test.each([1, 2, 8, 32, 128, 512])('random rows, windows of %i buckets', (window) => {
    const rand = prngU32(window);
    for (const n of [1, 3, 100, 256]) {
      expectSameTables(names(rand, n, 0, 0, () => true, new Set()), window);
    }
  });

  test('a cluster at the end of the last window wraps into window 0, whose own rows interleave with it by row', () => {
    // 256 rows, 512 buckets, windows of 16: 80 rows homed in the last window
    // (64 carried over the end), 60 in windows 0 and 1 (displaced by the
    // carried rows in row order, so windows 1.. see their carry change), the
    // rest anywhere.
    const rand = prngU32(7);
    const taken = new Set<string>();
    const mask = 511;
    const paths = [
      ...names(rand, 80, 0, mask, (h) => h >= 496, taken),
      ...names(rand, 60, 0, mask, (h) => h < 32, taken),
      ...names(rand, 116, 0, mask, () => true, taken),
    ];
    for (const window of [16, 4, 1]) expectSameTables(paths, window);
  });

  test('every row on the last bucket: one chain around the whole table through every window', () => {
    const rand = prngU32(8);
    const taken = new Set<string>();
    const paths = [...names(rand, 120, 0, 255, (h) => h === 255, taken), ...names(rand, 8, 0, 255, (h) => h === 2, taken)];
    for (const window of [256, 64, 8, 1]) expectSameTables(paths, window); // 256: one window that carries into itself
  });

  test('clusters at the end of every window: carries cross every boundary, the wrap cascades through window 0 and on', () => {
    const rand = prngU32(9);
    const taken = new Set<string>();
    const mask = 511;
    // Windows of 32: for each window, 7 rows homed in its last 2 buckets.
    const paths = names(rand, 112, 0, mask, (h) => h % 32 >= 30, taken);
    paths.push(...names(rand, 60, 0, mask, (h) => h < 8, taken), ...names(rand, 84, 0, mask, () => true, taken));
    for (const window of [32, 16, 128]) expectSameTables(paths, window);
  });
});

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
function entry(p: string, mode: number, k: number): BlobEntry {
  const t = { sec: 1_700_000_000n + BigInt(k), nsec: k % 1000 };
  return {
    path: Buffer.from(p), mode, uid: 0, gid: 0, nlink: 1, size: BigInt(k), blocks: 8n, blksize: 4096,
    ino: BigInt(100 + k), dev: 0x803n, rdev: 0n, atime: t, mtime: t, ctime: t,
  };
}

/** /r and files under it: `perSeed` rows homed in the last 8 buckets for each of the 8 seeds (whichever seed wins, its table wraps), then `rest` anywhere. */
function wrappingTree(perSeed: number, rest: number): BlobOptions {
  const rand = prngU32(10);
  const taken = new Set<string>();
  const n = 1 + perSeed * 8 + rest;
  const mask = bucketsFor(n) - 1;
  const paths: string[] = [];
  for (let seed = 0; seed < 8; seed++) paths.push(...names(rand, perSeed, seed, mask, (h) => h > mask - 8, taken));
  paths.push(...names(rand, rest, 0, mask, () => true, taken));
  return { roots: [Buffer.from('/r')], entries: [entry('/r', S_IFDIR | 0o755, 0), ...paths.map((p, i) => entry(p, S_IFREG | 0o644, i + 1))] };
}

describe('writeBlobFile through windows', () => {
  test('is byte-identical to encodeBlob, through the temp file beside the blob, nothing left behind', async () => {
    const opts = wrappingTree(25, 150); // 351 entries, 1024 buckets
    const want = encodeBlob(opts);
    // The core module itself (the namespace import here is a copy of getters).
    const opened = jest.spyOn(jest.requireActual<typeof fs>('node:fs'), 'openSync');
    try {
      for (const window of [8, 1]) {
        windowing.buckets = window;
        windowing.partitionBytes = 0;
        opened.mockClear();
        const file = path.join(tmp, `w${window}.blob`);
        const res = await writeBlobFile(file, opts);
        expect(fs.readFileSync(file).equals(want)).toBe(true);
        expect(res.size).toBe(want.length);
        // The windowed table ran: its temp file was opened in the blob's directory.
        expect(opened.mock.calls.filter(([p]) => path.dirname(String(p)) === tmp && path.basename(String(p)).startsWith('.psfs-buckets-'))).toHaveLength(1);
      }
    } finally {
      opened.mockRestore();
    }
    expect(fs.readdirSync(tmp).sort()).toEqual(['w1.blob', 'w8.blob']);
    // The header's seed and bound are the in-memory search's.
    expect(want.readUInt32LE(F.HEADER.maxProbe)).toBeGreaterThan(8); // every seed wraps: the search tried all 8
  });

  const root = process.getuid?.() === 0;
  (root ? test : test.skip)('a full disk under the temp file: VriftError naming the directory, nothing left behind, the space freed', async () => {
    const mnt = path.join(tmp, 'small');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'none', mnt]);
    try {
      const before = fs.statfsSync(mnt).bfree;
      // 20001 entries: 160 KB of records per seed, past 64 KiB before a byte of the blob is written.
      const opts = { roots: [Buffer.from('/r')], entries: [entry('/r', S_IFDIR | 0o755, 0), ...Array.from({ length: 20000 }, (_, i) => entry(`/r/f${i}`, S_IFREG | 0o644, i + 1))] };
      windowing.buckets = 1024;
      windowing.partitionBytes = 0;
      const err = await writeBlobFile(path.join(mnt, 'psfs.blob'), opts).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VriftError);
      expect((err as Error).message).toBe(`writing PSFS blob ${path.join(mnt, 'psfs.blob')}: ENOSPC in ${mnt}; check that the directory exists, is writable and has space`);
      expect(fs.readdirSync(mnt)).toEqual([]);
      expect(fs.statfsSync(mnt).bfree).toBe(before);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
