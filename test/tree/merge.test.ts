/**
 * A merge onto a base blob read in place: openBlob over paged bytes (pages
 * really spilled and read back), mergeBlobRows against an object oracle of
 * the union (src/tree/merge.ts module comment), the base's PSFS_E_UNCERTAIN
 * kept, conflicts refused; openBlob on a blob whose entries are not stored
 * in path order.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as F from '../../src/blob/format';
import { crc32 } from '../../src/blob/crc32';
import { decodeBlob, headerCrc32, openBlob } from '../../src/blob/reader';
import { blobEntryAt, blobRowsOf, encodeBlob, encodeBlobRows, type BlobEntry } from '../../src/blob/writer';
import { configurePaging, PAGE_BYTES, PagedBytes, pagingStats } from '../../src/paged';
import { SYNTHETIC_INO_BASE } from '../../src/tree';
import { checkMergeConflicts, mergeBase, mergeBlobRows } from '../../src/tree/merge';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
let ino = 0n;
const at = (sec: bigint, nsec: number) => ({ atime: { sec, nsec }, mtime: { sec, nsec }, ctime: { sec, nsec } });
const common = { uid: 0, gid: 0, blksize: 4096, dev: 0n, rdev: 0n };
const dir = (p: string, sec = 100n, extra: Partial<BlobEntry> = {}): BlobEntry =>
  ({ path: B(p), mode: 0o040755, nlink: 2, size: 4096n, blocks: 8n, ino: SYNTHETIC_INO_BASE + ++ino, ...common, ...at(sec, Number(ino)), ...extra });
const file = (p: string, size = 10n, sec = 100n): BlobEntry =>
  ({ path: B(p), mode: 0o100644, nlink: 1, size, blocks: 8n, ino: SYNTHETIC_INO_BASE + ++ino, ...common, ...at(sec, Number(ino)) });
const link = (p: string, target: string): BlobEntry =>
  ({ path: B(p), mode: 0o120777, nlink: 1, size: BigInt(target.length), blocks: 0n, ino: SYNTHETIC_INO_BASE + ++ino, ...common, ...at(100n, Number(ino)), target: B(target) });

/** The base: an estimated (uncertain) fan-out directory, a symlink with a non-UTF-8 target, 700 files with long names (several pages). */
function baseEntries(): BlobEntry[] {
  ino = 0n;
  return [
    dir('/vrift'), dir('/vrift/.cas'), dir('/vrift/.cas/ab', 100n, { size: 65536n, blocks: 128n, uncertain: true }), file('/vrift/.cas/ab/obj'),
    dir('/vrift/a'), link('/vrift/a/l\xe9', 'x\xff'), file('/vrift/a/x'),
    ...Array.from({ length: 700 }, (_, i) => file(`/vrift/a/${'n'.repeat(60)}-${String(i).padStart(4, '0')}`)),
  ];
}

/** The new layer's entries: inodes numbered from 1, identity tags (mtime nanoseconds) from shift + 1, as a merging build's. */
function freshEntries(shift: number): BlobEntry[] {
  ino = 0n;
  return [dir('/vrift', 200n), dir('/vrift/.cas', 200n), dir('/vrift/.cas/cd', 200n), file('/vrift/.cas/cd/obj2', 5n, 200n), dir('/vrift/b', 200n), file('/vrift/b/y', 5n, 200n)]
    .map((e) => ({ ...e, ...at(200n, shift + Number(e.ino - SYNTHETIC_INO_BASE)) }));
}

/** The union as objects (the pre-streaming algorithm, with the base's flag kept): the oracle. */
function oracle(base: BlobEntry[], fresh: BlobEntry[], shift: bigint): BlobEntry[] {
  const out = new Map(base.map((e) => [e.path.toString('latin1'), e]));
  for (const e of fresh) {
    const k = e.path.toString('latin1');
    const b = out.get(k);
    const merged = b !== undefined && (b.mode & 0o170000) === 0o040000 && (e.mode & 0o170000) === 0o040000;
    out.set(k, { ...e, ino: e.ino + shift, ...(merged ? { nlink: 1, uncertain: true } : {}) });
  }
  return [...out.values()].sort((a, b) => Buffer.compare(a.path, b.path));
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-merge-'));
});
afterEach(() => {
  configurePaging({ poolBytes: 16 << 20, dir: null });
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The blob's bytes in paged bytes through a 4-page pool, appended in odd-sized pieces. */
function paged(blob: Buffer): PagedBytes {
  const p = new PagedBytes();
  for (let o = 0; o < blob.length; o += 3001) p.append(blob.subarray(o, Math.min(blob.length, o + 3001)));
  return p;
}

test('the union of a paged base blob and new rows equals the object oracle; the base keeps PSFS_E_UNCERTAIN', () => {
  configurePaging({ poolBytes: 4 * PAGE_BYTES, dir: tmp });
  const base = baseEntries();
  const blob = encodeBlob({ roots: [B('/vrift')], entries: base, flags: F.H_DEV_RUNTIME | F.H_IDENTITY_TAG });
  expect(blob.length).toBeGreaterThan(8 * PAGE_BYTES); // more than the pool: pages go to the temp file
  const written = pagingStats().pagesWritten;
  const bytes = paged(blob);
  const view = openBlob(bytes);
  const mb = mergeBase(view, 'sha256:x', [], 'test base', () => bytes.close());
  expect(mb.shift).toBe(base.length); // highest base st_ino - SYNTHETIC_INO_BASE
  const fresh = freshEntries(mb.shift);
  const rows = mergeBlobRows(mb, blobRowsOf(fresh));
  const got = Array.from({ length: rows.count }, (_, k) => blobEntryAt(rows, k));
  expect(got).toEqual(oracle(base, fresh, BigInt(mb.shift)).map((e) => blobEntryAt(blobRowsOf([e]), 0)));
  expect(pagingStats().pagesWritten).toBeGreaterThan(written);

  const byPath = new Map(got.map((e) => [e.path.toString('latin1'), e]));
  expect(byPath.get('/vrift/.cas/ab')!.uncertain).toBe(true); // base only: its flag stays
  expect(byPath.get('/vrift')).toMatchObject({ nlink: 1, uncertain: true, mtime: { sec: 200n } }); // merged: the new layer's attributes
  expect(byPath.get('/vrift/.cas/cd')!.uncertain).toBeUndefined();
  expect(byPath.get('/vrift/.cas/cd')!.ino).toBe(SYNTHETIC_INO_BASE + BigInt(base.length) + 3n);
  expect(byPath.get('/vrift/a/l\xe9')!.target).toEqual(B('x\xff'));
  // What the writer makes of it decodes to the same entries and flags.
  const out = decodeBlob(encodeBlobRows(rows, [B('/vrift')], F.H_DEV_RUNTIME | F.H_IDENTITY_TAG));
  expect(out.entries.filter((e) => e.flags & F.E_UNCERTAIN).map((e) => e.path.toString('latin1')).sort())
    .toEqual(['/vrift', '/vrift/.cas', '/vrift/.cas/ab']);
  mb.close();
  expect(bytes.length).toBe(0);
});

test('a new directory where the base has a file is refused; so are destinations that exist or overlap', () => {
  const base = baseEntries();
  const view = openBlob(encodeBlob({ roots: [B('/vrift')], entries: base }));
  const mb = mergeBase(view, 'sha256:x', ['/vrift/a'], 'docker-archive:b.tar');
  ino = 0n;
  expect(() => mergeBlobRows(mb, blobRowsOf([dir('/vrift'), dir('/vrift/a'), dir('/vrift/a/x'), file('/vrift/a/x/z')])))
    .toThrow('merging onto docker-archive:b.tar: the new tree needs directory /vrift/a/x but the base has a non-directory there; choose another destination');
  expect(() => checkMergeConflicts(mb, ['/vrift/a/x'])).toThrow(/destination \/vrift\/a\/x already exists in the base image's \/vrift tree/);
  expect(() => checkMergeConflicts(mb, ['/vrift/a/new'])).toThrow(/destination \/vrift\/a\/new overlaps \/vrift\/a, added by an earlier vrift build/);
  expect(() => checkMergeConflicts(mb, ['/vrift'])).toThrow(/already exists/);
  expect(() => checkMergeConflicts(mb, ['/vrift/b', '/vrift/a0'])).not.toThrow();
});

/** `blob` with entry records i and j exchanged (keys stay valid, order does not) and both CRCs fixed; buckets are left stale. */
function withEntries(blob: Buffer, edit: (entries: Buffer) => void): Buffer {
  const b = Buffer.from(blob);
  const off = Number(b.readBigUInt64LE(F.HEADER.entriesOff));
  edit(b.subarray(off, off + b.readUInt32LE(F.HEADER.entryCount) * F.ENTRY_SIZE));
  b.writeUInt32LE(crc32(b.subarray(F.HEADER_SIZE)), F.HEADER.bodyCrc32);
  b.writeUInt32LE(headerCrc32(b), F.HEADER.headerCrc32);
  return b;
}

test('openBlob reads entries stored out of path order in path order, and finds a key stored twice', () => {
  const base = baseEntries().slice(0, 7);
  const blob = encodeBlob({ roots: [B('/vrift')], entries: base });
  const R = F.ENTRY_SIZE;
  const swapped = withEntries(blob, (e) => {
    const first = Buffer.from(e.subarray(0, R));
    e.copy(e, 0, 5 * R, 6 * R);
    first.copy(e, 5 * R);
  });
  const view = openBlob(swapped);
  const paths = Array.from({ length: view.rows.count }, (_, k) => view.rows.path(k).toString('latin1'));
  expect(paths).toEqual([...paths].sort());
  expect(paths).toEqual(base.map((e) => e.path.toString('latin1')).sort());
  expect(view.rows.stored(0)).toBe(5);
  expect(view.entry(5).path).toEqual(view.rows.path(0));
  expect(view.find(B('/vrift/a/x'))).toBe(paths.indexOf('/vrift/a/x'));
  expect(view.find(B('/vrift/a/y'))).toBe(-1);
  // Entry 4 copied over entry 6: stored twice, reported at its second place.
  const twice = withEntries(blob, (e) => e.copy(e, 6 * R, 4 * R, 5 * R));
  expect(() => openBlob(twice)).toThrow(/^decoding PSFS blob: entry 6 key "\/vrift\/a" appears twice;/);
});
