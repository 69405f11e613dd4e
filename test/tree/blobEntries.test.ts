/**
 * blobEntriesFromPlan / blobRowsFromTable / assignTableTags / plainBlobEntry
 * on hand-made layer entries: the paths a planned tree never takes (a
 * hardlink naming its target by another Buffer with the same bytes, a
 * directory past one ext4 block, names that sort between a directory and
 * its children), the views' contract (fields read through, copies are
 * plain), and the table's rows against the plan's entries (the oracle: a
 * map of directory paths, where the table path uses a stack in path order).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as F from '../../src/blob/format';
import { decodeBlob } from '../../src/blob/reader';
import { blobEntryAt, encodeBlob, encodeBlobRows, type BlobEntry } from '../../src/blob/writer';
import { EntryTable, KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_SYMLINK } from '../../src/layer/table';
import { blobEntriesFromPlan, ext4DirSize, plainBlobEntry, SYNTHETIC_INO_BASE } from '../../src/tree';
import { assignTableTags, blobRowsFromTable, tablePathOrder } from '../../src/tree/blobEntries';
import type { LayerEntry } from '../../src/layer/types';

const B = (s: string): Buffer => Buffer.from(s);
const T = { sec: 1000n, nsec: 0 };
const dir = (p: string): LayerEntry => ({ type: 'directory', path: B(p), mode: 0o040755, uid: 0, gid: 0, mtime: T });

function tree(): LayerEntry[] {
  const obj = B('/r/.cas/ab/cd');
  const names = Array.from({ length: 200 }, (_, i) => `file-with-a-long-name-${String(i).padStart(4, '0')}`);
  return [
    dir('/r'), dir('/r/.cas'), dir('/r/.cas/ab'),
    { type: 'file', path: obj, mode: 0o100644, uid: 0, gid: 0, mtime: T, size: 5000n, source: { content: Buffer.alloc(5000) }, nlink: 3 },
    dir('/r/a'), dir('/r/a/sub'),
    // linkTo: another Buffer with the target's bytes (planTree shares the Buffer itself).
    { type: 'hardlink', path: B('/r/a/one'), linkTo: B('/r/.cas/ab/cd'), mode: 0o100644, uid: 0, gid: 0, mtime: T, size: 5000n, nlink: 3 },
    { type: 'hardlink', path: B('/r/a/two'), linkTo: obj, mode: 0o100644, uid: 0, gid: 0, mtime: T, size: 5000n, nlink: 3 },
    { type: 'symlink', path: B('/r/a/l'), target: B('x'.repeat(70)), mode: 0o120777, uid: 0, gid: 0, mtime: T },
    dir('/r/big'),
    ...names.map((n): LayerEntry => dir(`/r/big/${n}`)),
  ];
}

/**
 * The entries as a planned EntryTable (rows in the given order; a
 * hardlink's ref is its linkTo's row, found by bytes; -1 if missing).
 */
function tableOf(es: LayerEntry[]): EntryTable {
  const kinds = { directory: KIND_DIR, file: KIND_FILE, hardlink: KIND_HARDLINK, symlink: KIND_SYMLINK } as const;
  const t = new EntryTable(0, 0);
  const rows = new Map<string, number>();
  for (const e of es) {
    const i = t.add([e.path], kinds[e.type], e.mode);
    rows.set(e.path.toString('latin1'), i);
    t.sec.set(i, Number(e.mtime.sec));
    t.nsec.set(i, e.mtime.nsec);
    if (e.type === 'file' || e.type === 'hardlink') {
      t.size.set(i, Number(e.size));
      t.nlink.set(i, e.nlink);
    }
    if (e.type === 'symlink') {
      t.size.set(i, e.target.length);
      t.ref.set(i, t.putBytes([e.target]));
    }
  }
  es.forEach((e, i) => {
    if (e.type === 'hardlink') t.ref.set(i, rows.get(e.linkTo.toString('latin1')) ?? 0xffffffff);
  });
  return t;
}

/** Every row of the table's blob as a plain BlobEntry, in path order. */
function tableEntries(t: EntryTable, root = B('/r')): BlobEntry[] {
  const { rows } = blobRowsFromTable(t, root);
  return Array.from({ length: rows.count }, (_, k) => blobEntryAt(rows, k));
}

/** The plan's entries as plain objects, in path order (the oracle). */
function planEntries(es: LayerEntry[], root = B('/r')): BlobEntry[] {
  return blobEntriesFromPlan(es, root).entries.map(plainBlobEntry).sort((a, b) => Buffer.compare(a.path, b.path));
}

test('hardlinks share their object\'s st_ino and tag whether linkTo is the same Buffer or a copy', () => {
  const { entries } = blobEntriesFromPlan(tree(), B('/r'));
  const blob = new Map(entries.map((e) => [e.path.toString(), e]));
  const ino = blob.get('/r/.cas/ab/cd')!.ino;
  expect(ino).toBe(SYNTHETIC_INO_BASE + 4n); // /r, /r/.cas, /r/.cas/ab, then the object
  expect(blob.get('/r/a/one')!.ino).toBe(ino);
  expect(blob.get('/r/a/two')!.ino).toBe(ino);
  expect(new Set(entries.map((e) => e.ino)).size).toBe(entries.length - 2);
  // The table: tags number inodes as st_ino does; hardlink rows take their file's mtime.
  const t = tableOf(tree());
  t.sec.set(3, 1234);
  assignTableTags(t, B('/r'));
  const row = (p: string): number => Array.from({ length: t.length }, (_, i) => t.path(i).toString()).indexOf(p);
  expect([t.sec.get(row('/r/a/one')), t.nsec.get(row('/r/a/one'))]).toEqual([1234, 4]);
  expect([t.sec.get(row('/r/a/two')), t.nsec.get(row('/r/a/two'))]).toEqual([1234, 4]);
  expect(t.nsec.get(row('/r/a/sub'))).toBe(6); // /r/a is 5; the two hardlinks take no tag
  const tagged = new Map(tableEntries(t).map((e) => [e.path.toString(), e]));
  expect(tagged.get('/r/a/one')!.ino).toBe(ino);
  for (const e of tagged.values()) expect(e.ino).toBe(SYNTHETIC_INO_BASE + BigInt(e.mtime.nsec)); // st_ino = base + tag
  // Tags continue after `shift` (a merge: the base's highest).
  const shifted = tableOf(tree());
  assignTableTags(shifted, B('/r'), 100);
  expect(shifted.nsec.get(0)).toBe(101);
});

test('table rows equal the plan\'s entries, field by field, and encode to the same blob', () => {
  const es = tree();
  expect(tableEntries(tableOf(es))).toEqual(planEntries(es));
  const rows = blobRowsFromTable(tableOf(es), B('/r'));
  expect(rows.uncertain.map((p) => p.toString())).toEqual(['/r/big']);
  expect(encodeBlobRows(rows.rows, [B('/r')], F.H_DEV_RUNTIME).equals(encodeBlob({ roots: [B('/r')], entries: planEntries(es), flags: F.H_DEV_RUNTIME }))).toBe(true);
});

test('names that sort between a directory and its children (".", "-", " ", 0x01 < "/"): path order, st_nlink and st_size as the plan\'s', () => {
  // A planned table's layout: the root, the .cas subtree sorted, then every
  // other path sorted; "/r/.cas-x" sorts inside the .cas run's range.
  const names = ['.cas-x', '.cas-x/f', 'a', 'a\x01', 'a b', 'a b/f', 'a-c', 'a-c/d', 'a.b', 'a.b/y', 'a.b/y/z', 'a/x', 'a/x.y', 'a/x.y/q', 'a/x/deep', 'a/x/deep/f', 'a0', 'b\xff', 'b\xff/f'];
  const isFile = (n: string): boolean => /\/(f|z|q)$/.test(n) || n === 'a\x01';
  const cas = [dir('/r/.cas'), dir('/r/.cas/ab'),
    { type: 'file', path: B('/r/.cas/ab/cd'), mode: 0o100644, uid: 0, gid: 0, mtime: T, size: 3n, source: { content: Buffer.alloc(3) }, nlink: 2 } as LayerEntry];
  const rest = names.map((n): LayerEntry => {
    const p = Buffer.from(`/r/${n}`, 'latin1');
    if (n === '.cas-x/f') return { type: 'hardlink', path: p, linkTo: B('/r/.cas/ab/cd'), mode: 0o100644, uid: 0, gid: 0, mtime: T, size: 3n, nlink: 2 };
    if (isFile(n)) return { type: 'symlink', path: p, target: B('t'), mode: 0o120777, uid: 0, gid: 0, mtime: T };
    return { ...dir(''), path: p };
  }).sort((a, b) => Buffer.compare(a.path, b.path));
  const es = [dir('/r'), ...cas, ...rest];
  const t = tableOf(es);
  const sorted = es.map((e, i) => [e.path, i] as const).sort((a, b) => Buffer.compare(a[0], b[0])).map(([, i]) => i);
  const order = tablePathOrder(t);
  expect(Array.from({ length: t.length }, (_, k) => order.get(k))).toEqual(sorted);
  expect(sorted).not.toEqual(es.map((_, i) => i)); // two runs, merged
  const entries = tableEntries(t);
  expect(entries).toEqual(planEntries(es));
  const by = new Map(entries.map((e) => [e.path.toString('latin1'), e]));
  expect(by.get('/r/a')!.nlink).toBe(2 + 2); // subdirectories x and x.y, found past "a b", "a-c", "a.b"
  expect(by.get('/r/a/x')!.nlink).toBe(2 + 1);
  expect(by.get('/r')!.nlink).toBe(2 + 8); // .cas, .cas-x, a, a b, a-c, a.b, a0, b\xff
  // Any other order is sorted too (more than two runs).
  const shuffled = tableOf([es[0], ...cas, ...[...rest].reverse()]);
  expect(tableEntries(shuffled).map((e) => e.path)).toEqual(entries.map((e) => e.path));
});

test('directory st_nlink and st_size from their children, symlink and file sizes, estimates flagged', () => {
  const { entries, uncertain } = blobEntriesFromPlan(tree(), B('/r'));
  const blob = new Map(entries.map((e) => [e.path.toString(), e]));
  expect(blob.get('/r')!.nlink).toBe(2 + 3); // .cas, a, big
  expect(blob.get('/r')!.size).toBe(4096n);
  expect(blob.get('/r/a')!.nlink).toBe(3);
  const big = ext4DirSize(Array.from({ length: 200 }, () => 'file-with-a-long-name-0000'.length));
  expect(big.exact).toBe(false);
  expect(blob.get('/r/big')!.size).toBe(big.size);
  expect(blob.get('/r/big')!.blocks).toBe(big.size / 512n);
  expect(blob.get('/r/big')!.nlink).toBe(202);
  expect(blob.get('/r/big')!.uncertain).toBe(true);
  expect(uncertain.map((p) => p.toString())).toEqual(['/r/big']);
  expect(blob.get('/r/a/l')).toMatchObject({ size: 70n, blocks: 8n, nlink: 1, target: B('x'.repeat(70)) });
  expect(blob.get('/r/a/one')).toMatchObject({ size: 5000n, blocks: 16n, nlink: 3, blksize: 4096, dev: 0n, rdev: 0n });
  expect(blob.get('/r/a/one')!.uncertain).toBeUndefined();
});

test('plainBlobEntry copies every field into a plain object that a spread keeps', () => {
  const { entries } = blobEntriesFromPlan(tree(), B('/r'));
  const view = entries.find((e) => e.path.toString() === '/r/a/l')!;
  const plain = { ...plainBlobEntry(view) };
  expect(plain).toEqual({
    path: B('/r/a/l'), mode: 0o120777, uid: 0, gid: 0, nlink: 1, size: 70n, blocks: 8n, blksize: 4096,
    ino: view.ino, dev: 0n, rdev: 0n, atime: T, mtime: T, ctime: T, target: B('x'.repeat(70)),
  });
  expect(plain.mtime).not.toBe(view.mtime); // own Timespecs: mutating the copy leaves the layer entry alone
  expect(Object.keys({ ...view })).not.toContain('mode'); // a view spreads to nothing useful
});

test('a hardlink before its target is refused', () => {
  const es = tree();
  const link = es.splice(6, 1)[0];
  es.splice(1, 0, link);
  expect(() => blobEntriesFromPlan(es, B('/r'))).toThrow(/hardlink \/r\/a\/one precedes its target/);
  expect(() => blobRowsFromTable(tableOf(es), B('/r'))).toThrow(/generating blob entries: hardlink \/r\/a\/one precedes its target/);
  expect(() => assignTableTags(tableOf(es), B('/r'))).toThrow(/tagging inodes: hardlink \/r\/a\/one precedes its target/);
});

test('a spilled table with one huge directory is read slab by slab in the blob phase, not a slab per few children', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-flat-'));
  try {
    const t = new EntryTable(0, 0);
    t.spillTo(tmp);
    t.add([B('/r')], KIND_DIR, 0o040755);
    t.add([B('/r/d')], KIND_DIR, 0o040755);
    // 20,000 children with ~210-byte paths: ~4.2 MiB, 4 spilled slabs after the one holding /r/d.
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const k = t.add([B(`/r/d/${'n'.repeat(200)}-${String(i).padStart(5, '0')}`)], KIND_FILE, 0o100644);
      t.nlink.set(k, 1);
    }
    expect(t.spilledSlabs).toBeGreaterThanOrEqual(4);
    const { rows } = blobRowsFromTable(t, B('/r'));
    const bytes = encodeBlobRows(rows, [B('/r')]);
    // Each pass over the rows reads each spilled slab once (16 passes of 4 slabs: 64 reads);
    // reading the parent's path back per child (its slab is not its children's) loaded a whole
    // slab every ~16 children (2,572 reads at 40,000 children, measured).
    expect(t.slabReads).toBeLessThan(n / 100);
    const d = decodeBlob(bytes).entries.find((e) => e.path.toString() === '/r/d')!;
    expect(d.size).toBe(ext4DirSize(Array.from({ length: n }, () => 206)).size); // every name is 206 bytes
    t.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
