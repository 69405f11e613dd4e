/**
 * PSFS_H_IDENTITY_TAG (docs/psfs-format.md "Identity policy"): the writer's
 * inode table, the TS reader's checks, and psfs_tagged() of the C reader
 * (wasm) recognising kernel answers about domain inodes - and only those.
 */
import * as F from '../../src/blob/format';
import { crc32 } from '../../src/blob/crc32';
import { blobEntryAt, encodeBlob, encodeBlobRows, type BlobEntry } from '../../src/blob/writer';
import { checkHeader, decodeBlob, readHeader } from '../../src/blob/reader';
import { VriftError } from '../../src/errors';
import { EntryTable, KIND_DIR, KIND_FILE, KIND_HARDLINK } from '../../src/layer/table';
import { assignTableTags, treeBlobRows } from '../../src/tree/blobEntries';
import { PsfsWasm } from '../wasm/psfsWasm';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const BASE = 0x5652_0000_0000_0000n;

function ent(p: string, mode: number, tag: number, extra: Partial<BlobEntry> = {}): BlobEntry {
  const t = { sec: 1_700_000_000n, nsec: tag };
  return {
    path: Buffer.from(p), mode, uid: 0, gid: 0, nlink: (mode & S_IFDIR) === S_IFDIR ? 2 : 2, size: 5n, blocks: 8n, blksize: 4096,
    ino: BASE + BigInt(tag), dev: 0n, rdev: 0n, atime: t, mtime: { ...t }, ctime: { ...t }, ...extra,
  };
}

// /r (tag 1), /r/a and /r/b hardlinks of one inode (tag 3), /r/d (tag 2)
const entries = (): BlobEntry[] => [
  ent('/r', S_IFDIR | 0o755, 1),
  ent('/r/d', S_IFDIR | 0o755, 2),
  ent('/r/a', S_IFREG | 0o644, 3),
  ent('/r/b', S_IFREG | 0o644, 3),
];
const FLAGS = F.H_DEV_RUNTIME | F.H_CHECK_ROOT_MTIME | F.H_IDENTITY_TAG;

describe('identity tags', () => {
  let w: PsfsWasm;
  beforeAll(() => {
    w = new PsfsWasm();
  });

  test('writer emits the inode table only with the flag; the reader checks it', () => {
    const tagged = encodeBlob({ roots: [Buffer.from('/r')], entries: entries(), flags: FLAGS });
    const h = readHeader(tagged);
    expect(h.inodeCount).toBe(3);
    expect(h.inodesOff).toBeGreaterThan(0n);
    expect(checkHeader(tagged).code).toBe(0);
    const d = decodeBlob(tagged);
    for (let t = 1; t <= 3; t++) {
      const v = tagged.readUInt32LE(Number(h.inodesOff) + (t - 1) * 4);
      expect(d.entries[v - 1].mtime.nsec).toBe(t);
    }
    const plain = encodeBlob({ roots: [Buffer.from('/r')], entries: entries(), flags: F.H_DEV_RUNTIME });
    expect(readHeader(plain).inodeCount).toBe(0);
    expect(readHeader(plain).inodesOff).toBe(0n);
  });

  test('entries sharing a tag must share st_ino', () => {
    const bad = entries();
    bad[3] = { ...bad[3], ino: BASE + 99n };
    expect(() => encodeBlob({ roots: [Buffer.from('/r')], entries: bad, flags: FLAGS })).toThrow(VriftError);
    expect(() => encodeBlob({ roots: [Buffer.from('/r')], entries: bad, flags: FLAGS })).toThrow(/share identity tag 3 but not st_ino/);
  });

  test('an inode table without the flag, or past the file, is rejected by both readers', () => {
    const good = encodeBlob({ roots: [Buffer.from('/r')], entries: entries(), flags: FLAGS });
    const resign = (b: Buffer): Buffer => {
      b.writeUInt32LE(0, F.HEADER.headerCrc32);
      b.writeUInt32LE(crc32(b.subarray(0, F.HEADER_SIZE)), F.HEADER.headerCrc32);
      return b;
    };
    const noFlag = resign(Buffer.from(good));
    noFlag.writeUInt32LE(F.H_DEV_RUNTIME | F.H_CHECK_ROOT_MTIME, F.HEADER.flags);
    const past = resign(Buffer.from(good));
    past.writeUInt32LE(1_000_000, F.HEADER.inodeCount);
    const tooMany = resign(Buffer.from(good));
    tooMany.writeUInt32LE(F.TAG_MAX + 1, F.HEADER.inodeCount);
    for (const b of [noFlag, past, tooMany]) {
      expect(checkHeader(b).code).toBe(-22);
      expect(w.loadBlob(b)).toBe(-22);
    }
    expect(w.loadBlob(good)).toBe(0);
  });

  test('psfs_tagged maps a kernel answer to its entry, and rejects near misses', () => {
    const blob = encodeBlob({ roots: [Buffer.from('/r')], entries: entries(), flags: FLAGS });
    expect(w.loadBlob(blob)).toBe(0);
    const d = decodeBlob(blob);
    const file = { mode: S_IFREG | 0o644, uid: 0, gid: 0, nlink: 2, size: 5n, mtimeSec: 1_700_000_000n, mtimeNsec: 3 };
    const i = w.tagged(file);
    expect(i).toBeGreaterThanOrEqual(0);
    expect(d.entries[i].ino).toBe(BASE + 3n);
    // Directories match without size and nlink (overlayfs merges them).
    const dir = { mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 1, size: 12288n, mtimeSec: 1_700_000_000n, mtimeNsec: 2 };
    expect(d.entries[w.tagged(dir)].path.toString()).toBe('/r/d');
    // A copy (nlink 1), another size, owner, mode, second or tag: not a domain inode.
    for (const miss of [
      { ...file, nlink: 1 }, { ...file, size: 6n }, { ...file, uid: 1000 }, { ...file, mode: S_IFREG | 0o600 },
      { ...file, mtimeSec: 1_700_000_001n }, { ...file, mtimeNsec: 0 }, { ...file, mtimeNsec: 4 }, { ...file, mtimeNsec: 999_999_999 },
      { ...dir, mode: S_IFREG | 0o755 },
    ]) {
      expect(w.tagged(miss)).toBe(-1);
    }
    // Without the flag nothing is recognised.
    expect(w.loadBlob(encodeBlob({ roots: [Buffer.from('/r')], entries: entries(), flags: F.H_DEV_RUNTIME }))).toBe(0);
    expect(w.tagged(file)).toBe(-1);
  });

  test('PSFS_E_UNCERTAIN entries are never answered from memory, but still anchor ENOENT', () => {
    const e = entries();
    e[1] = { ...e[1], uncertain: true };
    const blob = encodeBlob({ roots: [Buffer.from('/r')], entries: e, flags: FLAGS });
    expect(w.loadBlob(blob)).toBe(0);
    expect(w.resolve('/r/d', false).outcome).toBe('PASS');
    expect(w.resolve('/r/d/', true).outcome).toBe('PASS');
    expect(w.resolve('/r/d/missing', false).outcome).toBe('ENOENT');
    expect(w.resolve('/r/a', false).outcome).toBe('HIT');
    expect(decodeBlob(blob).entries.find((x) => x.path.toString() === '/r/d')!.flags & F.E_UNCERTAIN).toBe(F.E_UNCERTAIN);
  });
});

test('a sparse identity tag is refused with what to do', () => {
  const e = entries();
  e[2] = { ...e[2], mtime: { sec: 1n, nsec: 500_000_000 } };
  expect(() => encodeBlob({ roots: [Buffer.from('/r')], entries: e, flags: FLAGS })).toThrow(/identity tag 500000000 .* exceeds 1024; number inodes densely/);
});

describe("roots[0]'s tree digest above the tags (foreign-blob check)", () => {
  let w: PsfsWasm;
  beforeAll(() => {
    w = new PsfsWasm();
  });
  // The builder's layout: the root consumed tag 1 (its st_ino), then its
  // nanoseconds became a digest above every tag (treeBlobRows).
  const withDigest = (nsec: number): BlobEntry[] => {
    const e = entries();
    e[0] = ent('/r', S_IFDIR | 0o755, 1, { mtime: { sec: 1_700_000_000n, nsec } });
    return e;
  };

  test('the root stays out of the inode table; psfs_tagged recognises it by its digest', () => {
    const blob = encodeBlob({ roots: [Buffer.from('/r')], entries: withDigest(123_456_789), flags: FLAGS });
    const h = readHeader(blob);
    expect(h.inodeCount).toBe(3);
    expect(blob.readUInt32LE(Number(h.inodesOff))).toBe(0); // tag 1: no inode reports it any more
    expect(decodeBlob(blob).entries[0].mtime.nsec).toBe(123_456_789);
    expect(w.loadBlob(blob)).toBe(0);
    const root = { mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 1, size: 4096n, mtimeSec: 1_700_000_000n, mtimeNsec: 123_456_789 };
    expect(decodeBlob(blob).entries[w.tagged(root)].path.toString()).toBe('/r');
    // Near misses: another digest, the old tag 1, another second or mode.
    for (const miss of [{ ...root, mtimeNsec: 123_456_788 }, { ...root, mtimeNsec: 1 }, { ...root, mtimeSec: 1_700_000_001n }, { ...root, mode: S_IFREG | 0o755 }]) {
      expect(w.tagged(miss)).toBe(-1);
    }
    // The other inodes keep their tags.
    expect(decodeBlob(blob).entries[w.tagged({ mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 1, size: 4096n, mtimeSec: 1_700_000_000n, mtimeNsec: 2 })].path.toString()).toBe('/r/d');
  });

  /**
   * A planned table (root first, then path order; the hardlink after its
   * file): /r, /r/a (file, 2 links), /r/b (hardlink of /r/a), /r/d; tagged.
   */
  const planned = (change: { d?: string; size?: number; dMode?: number; rootNsec?: number } = {}): EntryTable => {
    const t = new EntryTable(0, 0);
    const add = (p: string, kind: number, mode: number): number => {
      const i = t.add([Buffer.from(p)], kind, mode);
      t.sec.set(i, 1_700_000_000);
      return i;
    };
    add('/r', KIND_DIR, S_IFDIR | 0o755);
    for (const p of ['/r/a', '/r/b']) {
      const i = add(p, p === '/r/a' ? KIND_FILE : KIND_HARDLINK, S_IFREG | 0o644);
      t.size.set(i, change.size ?? 5);
      t.nlink.set(i, 2);
      t.ref.set(i, 1);
    }
    add(change.d ?? '/r/d', KIND_DIR, S_IFDIR | (change.dMode ?? 0o755));
    assignTableTags(t, Buffer.from('/r'));
    if (change.rootNsec !== undefined) t.nsec.set(0, change.rootNsec);
    return t;
  };

  test('treeBlobRows: the root\'s nanoseconds above the tags, the same for the same tree, different for another tree with the same seconds', () => {
    const nsecOf = (t: EntryTable): number => {
      const { rows } = treeBlobRows(t, Buffer.from('/r'));
      const r = blobEntryAt(rows, 0);
      expect(r.path.toString()).toBe('/r');
      expect(r.mtime).toEqual({ sec: 1_700_000_000n, nsec: t.nsec.get(0) }); // the rows read what the layer's tar carries
      expect(r.atime).toEqual(r.mtime); // identity policy: atime = ctime = mtime
      expect(r.ctime).toEqual(r.mtime);
      return t.nsec.get(0);
    };
    const a = nsecOf(planned());
    expect(a).toBeGreaterThan(3);
    expect(a).toBeLessThanOrEqual(F.TAG_MAX);
    expect(nsecOf(planned())).toBe(a);
    // The root's own nanoseconds do not count (they are what is being set).
    expect(nsecOf(planned({ rootNsec: 77 }))).toBe(a);
    // Any other difference does: a byte of a name, a size, a mode.
    for (const other of [planned({ d: '/r/e' }), planned({ size: 6 }), planned({ dMode: 0o700 })]) expect(nsecOf(other)).not.toBe(a);
    // And the writer keeps the root out of the table.
    const tree = treeBlobRows(planned(), Buffer.from('/r'));
    const blob = encodeBlobRows(tree.rows, tree.roots, tree.flags);
    expect(tree.flags).toBe(FLAGS);
    const h = readHeader(blob);
    expect(h.inodeCount).toBe(3);
    expect(blob.readUInt32LE(Number(h.inodesOff))).toBe(0); // tag 1 was the root's
    expect(decodeBlob(blob).entries[0].mtime.nsec).toBe(a);
  });
});
