import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { configurePaging, PAGE_BYTES, PagedArray, PagedBytes, pagingStats, RecordSorter } from '../src/paged';
import { prngU32 } from './prng';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-paged-'));
});
afterEach(() => configurePaging({ poolBytes: 16 << 20, dir: null }));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));


test('paged arrays agree with typed arrays under random reads and writes, spilling past a pool of 4 pages', () => {
  configurePaging({ poolBytes: 4 * PAGE_BYTES, dir });
  const n = 40_000; // 160 KiB of uint32 per array: 10 pages each, 3 arrays in a 4-page pool
  const arrays = [new PagedArray(Uint32Array), new PagedArray(Float64Array), new PagedArray(Uint8Array)];
  const oracles = [new Uint32Array(n), new Float64Array(n), new Uint8Array(n)];
  const next = prngU32(7);
  for (let step = 0; step < 200_000; step++) {
    const a = next() % 3;
    const i = next() % n;
    if (next() & 1) {
      const v = a === 1 ? (next() * 1.5) : next();
      arrays[a].set(i, v);
      oracles[a][i] = v;
    } else {
      expect(arrays[a].get(i)).toBe(oracles[a][i]);
    }
  }
  for (let a = 0; a < 3; a++) for (let i = 0; i < n; i++) if (arrays[a].get(i) !== oracles[a][i]) throw new Error(`array ${a} index ${i}`);
  expect(pagingStats().frames).toBe(4);
  expect(arrays[0].spilledPages).toBeGreaterThan(0);
  // The spill files are unlinked at once: nothing in the directory.
  expect(fs.readdirSync(dir)).toEqual([]);
  for (const a of arrays) a.close();
});

test('paged bytes: appended in pieces, read back across pages after spilling, range-checked, closed empty', () => {
  configurePaging({ poolBytes: 4 * PAGE_BYTES, dir });
  const next = prngU32(11);
  const oracle = Buffer.alloc(10 * PAGE_BYTES + 123);
  for (let i = 0; i < oracle.length; i++) oracle[i] = next() & 0xff;
  const p = new PagedBytes();
  const written = pagingStats().pagesWritten;
  for (let o = 0; o < oracle.length;) {
    const n = Math.min(oracle.length - o, 1 + (next() % 40_000));
    p.append(oracle.subarray(o, o + n));
    o += n;
  }
  expect(p.length).toBe(oracle.length);
  expect(pagingStats().pagesWritten).toBeGreaterThan(written); // 11 pages through a 4-page pool
  for (let step = 0; step < 2000; step++) {
    const off = next() % oracle.length;
    const len = next() % Math.min(3 * PAGE_BYTES, oracle.length - off + 1);
    expect(p.read(off, len).equals(oracle.subarray(off, off + len))).toBe(true);
  }
  expect(p.read(0, oracle.length).equals(oracle)).toBe(true);
  expect(() => p.read(oracle.length - 1, 2)).toThrow(RangeError);
  expect(() => p.read(-1, 1)).toThrow(RangeError);
  p.close();
  expect(p.length).toBe(0);
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('bigint pages, byte views, truncate and close', () => {
  configurePaging({ poolBytes: 4 * PAGE_BYTES, dir });
  const b = new PagedArray(BigInt64Array);
  const per = PAGE_BYTES / 8;
  for (let i = 0; i < 8 * per; i += 97) b.set(i, BigInt(i) * -3n);
  for (let i = 0; i < 8 * per; i += 97) expect(b.get(i)).toBe(BigInt(i) * -3n);
  expect(b.get(1)).toBe(0n);
  b.truncate(per); // keep page 0 only
  expect(b.get(97)).toBe(-291n);
  expect(b.get(per + 1)).toBe(0n);
  expect(b.get(2 * per + 97 * 3)).toBe(0n); // was set before the truncate
  const s = new PagedArray(Uint8Array);
  s.bytes(64, 32, true).write('ab'.repeat(32), 'hex');
  expect(s.bytes(64, 32).toString('hex')).toBe('ab'.repeat(32));
  expect(() => s.bytes(PAGE_BYTES - 16, 32)).toThrow(/straddle/);
  b.close();
  s.close();
  expect(b.get(97)).toBe(0n);
});

test('RecordSorter sorts by bytes in memory and through merged runs (several merge passes)', () => {
  configurePaging({ dir });
  for (const [n, runBytes] of [[1000, 1 << 20], [50_000, 12 * 100]] as const) {
    const sorter = new RecordSorter(12, runBytes); // 100 records a run: 500 runs, > 32 ways
    const next = prngU32(n);
    const want: string[] = [];
    for (let k = 0; k < n; k++) {
      const { buf, off } = sorter.push();
      buf.writeUInt32BE(next() % 5000, off); // many equal keys
      buf.writeUInt32BE(next(), off + 4);
      buf.writeUInt32BE(k, off + 8);
      want.push(buf.toString('hex', off, off + 12));
    }
    want.sort();
    const got: string[] = [];
    for (const { buf, off } of sorter.sorted()) got.push(buf.toString('hex', off, off + 12));
    expect(got.length).toBe(n);
    expect(got).toEqual(want);
  }
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('closed arrays give their frames back: the next arrays reuse them before the pool grows', () => {
  const start = pagingStats().frames;
  for (let round = 0; round < 5; round++) {
    const a = new PagedArray(Uint32Array);
    for (let i = 0; i < 10 * (PAGE_BYTES / 4); i += 1000) a.set(i, i);
    a.close();
  }
  expect(pagingStats().frames - start).toBeLessThanOrEqual(10);
});
