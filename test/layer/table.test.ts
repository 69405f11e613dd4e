/**
 * EntryTable (src/layer/table.ts): columns in, the same entries out; a layer
 * written from a table equals the layer written from its entries as objects
 * (GNU tar reads it back); the slab and rotation edges.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { concatEntries, EntryTable, KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_SYMLINK } from '../../src/layer/table';
import { writeLayer } from '../../src/layer/tar';
import type { LayerEntry } from '../../src/layer/types';

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-table-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const B = (s: string): Buffer => Buffer.from(s);

/** /t, then /t/d, /t/d/l -> x, /t/d/x (hardlink to the object), then the .cas subtree /t/.cas/aa/obj (file from host src/d/x), rotated into layer order. */
async function smallTable(): Promise<EntryTable> {
  await fsp.mkdir(path.join(dir, 'src', 'd'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'src', 'd', 'x'), 'hello\n');
  const t = new EntryTable(1000, 1001, [{ dest: B('/t'), src: B(path.join(dir, 'src')) }]);
  const root = t.add([B('/t')], KIND_DIR, 0o040755);
  t.add([B('/t/d')], KIND_DIR, 0o040750);
  const l = t.add([B('/t/d/l')], KIND_SYMLINK, 0o120777);
  t.ref.set(l, t.putBytes([B('x')]));
  t.size.set(l, 1);
  const x = t.add([B('/t/d'), B('/'), B('x')], KIND_HARDLINK, 0o100640);
  const cas = t.add([B('/t/.cas')], KIND_DIR, 0o040755);
  t.add([B('/t/.cas/aa')], KIND_DIR, 0o040755);
  const o = t.add([B('/t/.cas/aa/obj')], KIND_FILE, 0o100640);
  t.setShaHex(o, '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03'); // sha256("hello\n")
  t.ref.set(o, x); // read from x's host path
  t.ref.set(x, o);
  for (const i of [o, x]) {
    t.size.set(i, 6);
    t.nlink.set(i, 2);
  }
  for (let i = 0; i < t.length; i++) t.sec.set(i, 1_600_000_000 + i);
  t.nsec.set(root, 7);
  t.rotate(cas);
  return t;
}

test('entries come back as written, refs follow a rotation, paths compare as Buffer.compare does', async () => {
  const t = await smallTable();
  const es = t.toArray();
  expect(es.map((e) => `${e.type} ${e.path.toString()}`)).toEqual([
    'directory /t', 'directory /t/.cas', 'directory /t/.cas/aa', 'file /t/.cas/aa/obj', 'directory /t/d', 'symlink /t/d/l', 'hardlink /t/d/x',
  ]);
  expect(es[0]).toEqual({ type: 'directory', path: B('/t'), mode: 0o040755, uid: 1000, gid: 1001, mtime: { sec: 1_600_000_000n, nsec: 7 } });
  expect(es[3]).toMatchObject({ size: 6n, nlink: 2, sha256: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03', source: { file: B(path.join(dir, 'src', 'd', 'x')) } });
  expect(es[5]).toMatchObject({ target: B('x') });
  expect(es[6]).toMatchObject({ linkTo: B('/t/.cas/aa/obj'), size: 6n, nlink: 2, mode: 0o100640 });
  expect([t.linkTarget(6), t.linkTarget(3), t.linkTarget(5)]).toEqual([3, -1, -1]);
  for (let i = 0; i < t.length; i++) {
    for (let j = 0; j < t.length; j++) expect(Math.sign(t.comparePaths(i, j))).toBe(Math.sign(Buffer.compare(t.path(i), t.path(j))));
  }
  expect([t.pathEquals(0, B('/t')), t.pathEquals(0, B('/u')), t.pathEquals(1, B('/t'))]).toEqual([true, false, false]);
});

test('writeLayer of a table (after a head of objects) gives the bytes of its entries as objects; GNU tar lists it', async () => {
  const t = await smallTable();
  const head: LayerEntry[] = [{ type: 'directory', path: B('/usr'), mode: 0o040755, uid: 0, gid: 0, mtime: { sec: 0n, nsec: 0 } }];
  const a = await writeLayer(concatEntries(head, t), path.join(dir, 'a.tar.gz'));
  const b = await writeLayer([...head, ...t.toArray()], path.join(dir, 'b.tar.gz'));
  expect(a.diffID).toBe(b.diffID);
  expect(a.digest).toBe(b.digest);
  const names = execFileSync('tar', ['-tvzf', a.path]).toString().trimEnd().split('\n').map((l) => l.replace(/^.* \d\d:\d\d /, ''));
  expect(names).toEqual(['usr/', 't/', 't/.cas/', 't/.cas/aa/', 't/.cas/aa/obj', 't/d/', 't/d/l -> x', 't/d/x link to t/.cas/aa/obj']);
});

test('writeLayer refuses a table hardlink whose file comes later', async () => {
  const t = await smallTable();
  // Rotated back: the hardlink /t/d/x now precedes its object.
  t.rotate(4);
  await expect(writeLayer(concatEntries([], t), path.join(dir, 'c.tar.gz'))).rejects.toThrow(/hardlink "\/t\/d\/x" precedes its target/);
  expect(await fsp.readdir(dir)).toEqual(['src']);
});

test('paths fill 1 MiB slabs without straddling one; columns grow past their first 1024 rows', () => {
  const t = new EntryTable(0, 0);
  const name = 'n'.repeat(4000);
  const paths: string[] = [];
  for (let i = 0; i < 600; i++) {
    paths.push(`/${name}${String(i).padStart(4, '0')}`.slice(0, 4095));
    t.add([B(paths[i])], KIND_DIR, 0o040755);
  }
  for (let i = 0; i < 600; i++) expect(t.path(i).toString()).toBe(paths[i]);
  for (let i = 0; i < 1500; i++) t.add([B(`/x${i}`)], KIND_DIR, 0o040755);
  expect(t.length).toBe(2100);
  expect(t.path(2099).toString()).toBe('/x1499');
  expect(t.path(599).toString()).toBe(paths[599]);
});

test('spillTo: filled slabs leave memory for an unlinked temp file and read back exactly, by lookups and by scans; close releases it', () => {
  const t = new EntryTable(0, 0);
  t.spillTo(dir);
  // ~3.8 MiB of paths and targets: the filled slabs spilled, the last one resident.
  const paths: string[] = [];
  for (let i = 0; i < 60_000; i++) {
    paths.push(`/vrift/p-${String(i % 97).padStart(2, '0')}/${'m'.repeat(i % 80)}/f-${i}`);
    t.add([B(paths[i])], i % 3 ? KIND_DIR : KIND_SYMLINK, 0o040755);
    if (i % 3 === 0) {
      t.ref.set(i, t.putBytes([B(`target-${i}`)]));
      t.size.set(i, `target-${i}`.length);
    }
  }
  expect(t.residentSlabs).toBe(1);
  expect(t.spilledSlabs).toBeGreaterThanOrEqual(3);
  expect(readdirSync(dir)).toEqual([]); // unlinked at once: nothing is left behind
  // Lookups in a scattered order (each reads only its bytes), then a scan (slab by slab).
  for (let k = 0; k < 60_000; k += 1) {
    const i = (k * 7919) % 60_000;
    expect(t.path(i).toString()).toBe(paths[i]);
  }
  expect(t.slabReads).toBe(0); // lookups never load a whole 1 MiB slab
  for (let i = 0; i < 60_000; i++) {
    expect(t.path(i).toString()).toBe(paths[i]);
    if (i % 3 === 0) expect(t.target(i).toString()).toBe(`target-${i}`);
  }
  expect(t.slabReads).toBe(t.spilledSlabs); // the scan: each spilled slab once
  for (let i = 1; i < 60_000; i += 997) {
    expect(Math.sign(t.comparePaths(i - 1, i))).toBe(Math.sign(Buffer.compare(B(paths[i - 1]), B(paths[i]))));
    expect(t.pathEquals(i, B(paths[i]))).toBe(true);
    expect(t.pathEquals(i, B(paths[i - 1]))).toBe(false);
  }
  t.close();
  t.close(); // idempotent
  expect(t.length).toBe(0); // closed: empty
});

test('spillTo a directory that cannot hold the file: one error saying what to do', () => {
  const t = new EntryTable(0, 0);
  expect(() => t.spillTo(path.join(dir, 'missing'))).toThrow(/^creating a temp file in .*missing: ENOENT.*; set TMPDIR to a writable directory with space$/);
});

test('keepShaOf: the sha256 column shrinks to the rows kept; a hardlink past them reports its file\'s sha256', () => {
  const t = new EntryTable(0, 0);
  const f = t.add([B('/t/.cas/aa/obj')], KIND_FILE, 0o100644);
  t.setShaHex(f, '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
  t.add([B('/t/d')], KIND_DIR, 0o040755);
  const l = t.add([B('/t/d/x')], KIND_HARDLINK, 0o100644);
  t.ref.set(l, f);
  t.keepShaOf(1);
  expect(t.shaHex(l)).toBe('5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
  expect(t.entry(l)).toMatchObject({ type: 'hardlink', sha256: '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03' });
});
