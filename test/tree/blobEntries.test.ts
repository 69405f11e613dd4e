/**
 * blobEntriesFromPlan / assignIdentityTags / plainBlobEntry on hand-made
 * layer entries: the paths a planned tree never takes (a hardlink naming its
 * target by another Buffer with the same bytes, a directory past one ext4
 * block), and the views' contract (fields read through, copies are plain).
 */
import { blobEntriesFromPlan, ext4DirSize, plainBlobEntry, SYNTHETIC_INO_BASE } from '../../src/tree';
import { assignIdentityTags } from '../../src/tree/blobEntries';
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

test('hardlinks share their object\'s st_ino and tag whether linkTo is the same Buffer or a copy', () => {
  const es = tree();
  assignIdentityTags(es, B('/r'));
  const byPath = new Map(es.map((e) => [e.path.toString(), e]));
  expect(byPath.get('/r/a/one')!.mtime).toBe(byPath.get('/r/.cas/ab/cd')!.mtime);
  expect(byPath.get('/r/a/two')!.mtime).toBe(byPath.get('/r/.cas/ab/cd')!.mtime);
  const { entries } = blobEntriesFromPlan(es, B('/r'));
  const blob = new Map(entries.map((e) => [e.path.toString(), e]));
  const ino = blob.get('/r/.cas/ab/cd')!.ino;
  expect(ino).toBe(SYNTHETIC_INO_BASE + 4n); // /r, /r/.cas, /r/.cas/ab, then the object
  expect(blob.get('/r/a/one')!.ino).toBe(ino);
  expect(blob.get('/r/a/two')!.ino).toBe(ino);
  expect(blob.get('/r/a/one')!.mtime.nsec).toBe(4);
  expect(new Set(entries.map((e) => e.ino)).size).toBe(entries.length - 2);
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
  expect(() => assignIdentityTags(tree().filter((e) => e.type !== 'file'), B('/r'))).toThrow(/tagging inodes: hardlink .* precedes its target/);
});
