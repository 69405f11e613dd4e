/**
 * The hot path's scan of an already-normalized path (path_clean and
 * hash_path in shim/psfs_core.c, run as wasm32) against the reader's slow
 * path as oracle.
 *
 * path_clean checks the bytes after the root 16 at a time (two overlapping
 * vector loads, the last window re-aligned to the path's end); hash_path
 * hashes 8-byte words from the root's lanes hashed at init. Their edge
 * cases are positions relative to those windows and words: roots of every
 * length mod 16, components ending on every byte of a window, a '/' as the
 * last byte of a window followed by '.' or '/' in the next one, paths
 * shorter than one window, names starting with '.' (".bin" is a normal
 * name, "." and ".." are not), and components around NAME_MAX in tails
 * longer than NAME_MAX.
 *
 * Oracle: the same path with "/." inserted right after the root is the same
 * file for the kernel (the root is a searchable directory) but is not in
 * normalized form, so psfs_resolve takes its slow path (normalize into
 * scratch, psfs_lookup, missing() walking down from the root), which shares
 * no code with path_clean. Both must give the same outcome and entry; every
 * entry must also be a HIT on itself.
 */
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import { decodeBlob } from '../../src/blob/reader';
import { PsfsWasm } from '../wasm/psfsWasm';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const B = (s: string): Buffer => Buffer.from(s, 'latin1');

let w: PsfsWasm;
beforeAll(() => {
  w = new PsfsWasm();
});

function entry(p: string, mode: number): BlobEntry {
  return {
    path: B(p),
    mode,
    uid: 0,
    gid: 0,
    nlink: 1,
    size: 0n,
    blocks: 0n,
    ino: 1n,
    dev: 1n,
    rdev: 0n,
    atime: { sec: 0n, nsec: 0 },
    mtime: { sec: 0n, nsec: 0 },
    ctime: { sec: 0n, nsec: 0 },
    blksize: 4096,
  };
}

/** Names that end on every byte of a word (and, with the roots' lengths, of a 16-byte window), and the dot-names that are normal components. */
const NAMES = ['a', 'bb', 'ccc', 'dddd', 'eeeee', 'ffffff', 'ggggggg', 'hhhhhhhh', 'iiiiiiiii', 'k'.repeat(13), 'q'.repeat(16), 's'.repeat(17), '.bin', '..x', '...', '.', '.a', 'x.', 'a.b'];

function tree(root: string): { blob: Buffer; paths: string[] } {
  const dirs = [root];
  const files: string[] = [];
  for (const n of NAMES) {
    if (n === '.') continue; // not a name
    dirs.push(`${root}/${n}`);
    for (const m of NAMES) if (m !== '.') files.push(`${root}/${n}/${m}`);
  }
  const long = `${root}/${'L'.repeat(250)}`;
  dirs.push(long);
  files.push(`${long}/${'n'.repeat(255)}`, `${long}/${'m'.repeat(7)}`);
  const entries = [...dirs.map((d) => entry(d, S_IFDIR | 0o755)), ...files.map((f) => entry(f, S_IFREG | 0o644))];
  return { blob: encodeBlob({ roots: [B(root)], entries }), paths: [...dirs, ...files] };
}

/** Spellings to probe under root: present, missing, file-as-dir, dot and slash forms at word edges. */
function probes(root: string, paths: string[]): string[] {
  const out = new Set<string>([root, `${root}/`, `${root}//`, `${root}/.`, `${root}/..`, `${root}/.x`, `${root}/zz`]);
  for (const p of paths) {
    out.add(p);
    out.add(`${p}/`);
    out.add(`${p}/missing`);
    out.add(`${p}/.missing`);
    out.add(`${p}/..`);
    out.add(`${p}/.`);
    out.add(`${p}//x`);
    out.add(`${p}/./x`);
    out.add(`${p}/../x`);
    if (p !== root) out.add(`${p}x`); // root + "x" is outside the domain
    out.add(`${p}/a/b`);
  }
  out.add(`${root}/${'L'.repeat(250)}/${'n'.repeat(256)}`); // NAME_MAX + 1
  out.add(`${root}/${'L'.repeat(256)}/x`);
  return [...out];
}

// Root lengths 2..34: every length mod 16, short ones (path < 16 bytes) included.
const ROOTS = Array.from({ length: 33 }, (_, i) => '/' + 'r'.repeat(i + 1));

describe.each(ROOTS.map((r) => [r.length, r] as const))('root of %d bytes', (_len, root) => {
  test('every entry is a HIT on itself; every spelling agrees with the slow path', () => {
    const { blob, paths } = tree(root);
    const d = decodeBlob(blob);
    expect(w.loadBlob(blob)).toBe(0);
    const index = new Map(d.entries.map((e, i) => [e.path.toString('latin1'), i]));
    for (const p of paths) {
      for (const follow of [false, true]) expect({ p, ...w.resolve(p, follow) }).toEqual({ p, outcome: 'HIT', index: index.get(p) });
    }
    let compared = 0;
    for (const p of probes(root, paths)) {
      // root + "/." + rest: same file for the kernel, never in normalized form.
      const slow = `${root}/.${p.slice(root.length)}`;
      for (const follow of [false, true]) {
        const a = w.resolve(p, follow);
        const b = w.resolve(slow, follow);
        // "root/./" adds must-be-a-directory only where p already ends in '/', so outcomes agree.
        expect({ p, follow, ...a }).toEqual({ p, follow, ...b });
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(1000);
  });
});

test('the hot path finds the parent of a missing name at every word offset (ENOENT / ENOTDIR from memory)', () => {
  for (const root of ROOTS) {
    const { blob } = tree(root);
    expect(w.loadBlob(blob)).toBe(0);
    for (const n of NAMES.filter((x) => x !== '.')) {
      expect(w.resolve(`${root}/${n}/nope`, false).outcome).toBe('ENOENT');
      expect(w.resolve(`${root}/${n}/a/nope`, false).outcome).toBe('ENOTDIR');
    }
  }
});
