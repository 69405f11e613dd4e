/**
 * Helpers for the shim tests: build the shim, make a host tree with every
 * kind of path the shim must get right, write its PSFS blob, run the C
 * oracle with and without the shim, and compare.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { scanHostTree } from '../../src/blob/hostTree';
import { encodeBlob, type BlobEntry } from '../../src/blob/writer';
import * as F from '../../src/blob/format';

export const REPO = path.resolve(__dirname, '../..');
export const SHIM_DIR = path.join(REPO, 'shim');
export const BUILD = path.join(SHIM_DIR, 'build');
export const SHIM = path.join(BUILD, 'libvrift.so');
export const ORACLE = path.join(BUILD, 'oracle');
export const MALLOCCOUNT = path.join(BUILD, 'malloccount.so');
export const HOTLOOP = path.join(BUILD, 'hotloop');

/**
 * Build shim/build/* with make (a no-op when up to date). Serialized with
 * flock(1): jest runs the shim test files in parallel workers.
 */
export function buildShim(): void {
  fs.mkdirSync(BUILD, { recursive: true });
  execFileSync('flock', [path.join(BUILD, '.make.lock'), 'make', '-s', '-C', SHIM_DIR], { stdio: 'pipe' });
}

const b = (s: string | Buffer): Buffer => (Buffer.isBuffer(s) ? s : Buffer.from(s));
const join = (...parts: (string | Buffer)[]): Buffer => Buffer.concat(parts.map((p, i) => (i === 0 ? b(p) : Buffer.concat([b('/'), b(p)]))));

/** A host tree under a fresh temp dir; `root` is the domain root (realpath). */
export interface HostFixture {
  tmp: string;
  root: Buffer;
  /** A directory next to the root, outside the domain. */
  outside: Buffer;
  /** Every path in the tree (from the scan), root included, but hop1 (a chain of exactly 40 symlinks: see makeHostTree). */
  paths: Buffer[];
  entries: BlobEntry[];
}

/**
 * Create the differential test tree: regular files of several sizes and
 * modes (setuid, setgid, 0000), empty and deep directories, a 0700 and a
 * 0000 directory, symlinks (relative, absolute, to file, to dir, outside the
 * domain, dangling, loops, chains, trailing slash targets), hardlinks, a
 * fifo, a device node, 255-byte names, non-UTF-8 names and a path of
 * exactly PATH_MAX-1 bytes.
 */
export async function makeHostTree(): Promise<HostFixture> {
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-shim-')));
  fs.chmodSync(tmp, 0o755); // an unprivileged oracle run must reach the tree
  const root = b(path.join(tmp, 'dom'));
  const outside = b(path.join(tmp, 'outside'));
  fs.mkdirSync(outside);
  // Blob files go to their own directory: writing them must not change the
  // mtime of any directory the oracle stats (the tmp dir is "dom/..").
  fs.mkdirSync(path.join(tmp, 'blobs'));
  fs.writeFileSync(join(outside, 'file'), 'outside\n');
  fs.mkdirSync(root);
  const r = (...p: (string | Buffer)[]): Buffer => join(root, ...p);
  const file = (p: Buffer, size: number, mode: number): void => {
    fs.writeFileSync(p, Buffer.alloc(size, 0x61));
    fs.chmodSync(p, mode);
  };
  file(r('empty'), 0, 0o644);
  file(r('small'), 10, 0o644);
  file(r('page'), 4096, 0o600);
  file(r('big'), 100_000, 0o755);
  file(r('setuid'), 5, 0o4755);
  file(r('setgid'), 5, 0o2711);
  file(r('noperm'), 7, 0o000);
  fs.writeFileSync(r('sparse'), '');
  fs.truncateSync(r('sparse'), 10_000_000);
  fs.mkdirSync(r('emptydir'));
  fs.mkdirSync(r('deep/a/b/c/d/e/f/g/h'), { recursive: true });
  fs.writeFileSync(r('deep/a/b/c/d/e/f/g/h/leaf'), 'leaf');
  fs.mkdirSync(r('d'));
  fs.writeFileSync(r('d/f'), 'f in d');
  fs.mkdirSync(r('d/sub'));
  fs.mkdirSync(r('sticky'));
  fs.chmodSync(r('sticky'), 0o1777);
  fs.mkdirSync(r('private'));
  fs.writeFileSync(r('private/secret'), 's');
  fs.mkdirSync(r('private/inner'));
  fs.chmodSync(r('private'), 0o700);
  fs.mkdirSync(r('locked'));
  fs.writeFileSync(r('locked/x'), 'x');
  fs.chmodSync(r('locked'), 0o000);
  fs.mkdirSync(r('noexec'));
  fs.writeFileSync(r('noexec/y'), 'y');
  fs.chmodSync(r('noexec'), 0o766);
  // symlinks
  fs.symlinkSync('small', r('l-rel-file'));
  fs.symlinkSync(r('small'), r('l-abs-file'));
  fs.symlinkSync('d', r('l-rel-dir'));
  fs.symlinkSync(r('d'), r('l-abs-dir'));
  fs.symlinkSync('d/', r('l-dir-slash'));
  fs.symlinkSync('small/', r('l-file-slash'));
  fs.symlinkSync(join(outside, 'file'), r('l-outside'));
  fs.symlinkSync('../outside/file', r('l-outside-rel'));
  fs.symlinkSync('missing', r('l-dangling'));
  fs.symlinkSync(r('missing/deeper'), r('l-dangling-abs'));
  fs.symlinkSync('small/x', r('l-file-as-dir'));
  fs.symlinkSync('l-loop-b', r('l-loop-a'));
  fs.symlinkSync('l-loop-a', r('l-loop-b'));
  fs.symlinkSync('l-self', r('l-self'));
  fs.symlinkSync('l-chain-2', r('l-chain-1'));
  fs.symlinkSync('d/../l-chain-3', r('l-chain-2'));
  fs.symlinkSync('./deep/a/../a/b', r('l-chain-3'));
  fs.symlinkSync('../f', r('d/sub/l-up'));
  fs.symlinkSync('../../../../../../../../../..' + root.toString('latin1') + '/small', r('d/l-above-root'));
  fs.symlinkSync('.', r('l-dot'));
  fs.symlinkSync('..', r('d/l-dotdot'));
  fs.symlinkSync('l-rel-dir/f', r('l-through-link'));
  fs.symlinkSync('noexec/y', r('l-into-noexec'));
  fs.symlinkSync('private/secret', r('l-into-private'));
  // hop0: 41 hops, ELOOP for the kernel; hop2: 39 hops, fine. hop1 (exactly
  // 40, Linux's MAXSYMLINKS) is in the tree but left out of `paths`: there the
  // kernel's own answer varies (stat gave ELOOP ~0.05% of the time on Linux
  // 6.18), so two kernel runs can differ; the shim passes it through
  // (differential.test.ts checks that with a canary).
  for (let i = 0; i < 41; i++) fs.symlinkSync(i === 40 ? 'small' : `hop${i + 1}`, r(`hop${i}`));
  // hardlinks
  fs.linkSync(r('small'), r('hard-small'));
  fs.linkSync(r('setuid'), r('d/hard-setuid'));
  // special files
  execFileSync('mkfifo', [r('fifo').toString('latin1')]);
  try {
    execFileSync('mknod', [r('null-dev').toString('latin1'), 'c', '1', '3']);
  } catch {
    /* not permitted here: skip the device node */
  }
  // long and non-UTF-8 names
  fs.writeFileSync(r('n'.repeat(255)), 'long');
  fs.mkdirSync(r('L'.repeat(255)));
  fs.writeFileSync(r('L'.repeat(255), 'M'.repeat(255)), 'long2');
  fs.writeFileSync(r(Buffer.from([0xff, 0xfe, 0x41])), 'bytes');
  fs.mkdirSync(r(Buffer.from([0xe9, 0x74, 0xe9])));
  fs.writeFileSync(r(Buffer.from([0xe9, 0x74, 0xe9]), Buffer.from([0x80, 0x2e, 0x2e])), 'bytes2');
  fs.writeFileSync(r('sp ace'), '');
  fs.writeFileSync(r('...'), '');
  fs.writeFileSync(r('.hidden'), '');
  // A chain of 250-byte directories whose leaf file's path has exactly
  // PATH_MAX-1 bytes (the longest path the kernel accepts).
  let dir = r('max');
  fs.mkdirSync(dir);
  while (dir.length + 1 + 250 + 1 + 10 < F.PATH_MAX - 1) {
    dir = join(dir, 'x'.repeat(250));
    fs.mkdirSync(dir);
  }
  const leafLen = F.PATH_MAX - 1 - dir.length - 1;
  if (leafLen < 1 || leafLen > F.NAME_MAX) throw new Error(`fixture: leaf name length ${leafLen}`);
  fs.writeFileSync(join(dir, 'z'.repeat(leafLen)), 'max');

  // Scan twice: the first scan's readdir(3) updates directory atimes
  // (relatime), the second records the values the oracle will see.
  await scanHostTree(root.toString('latin1'));
  const tree = await scanHostTree(tmp + '/dom');
  if (!tree.roots[0].equals(root)) throw new Error('fixture: unexpected root');
  const hop40 = Buffer.concat([root, Buffer.from('/hop1')]);
  return { tmp, root, outside, paths: tree.entries.map((e) => e.path).filter((p) => !p.equals(hop40)), entries: tree.entries };
}

/** Encode the fixture's blob; `devZero` zeroes every entry's st_dev (for PSFS_H_DEV_RUNTIME). */
export function blobFor(fx: HostFixture, opts: { flags?: number; devZero?: boolean } = {}): Buffer {
  const entries = fx.entries.map((e) => ({ ...e, dev: opts.devZero ? 0n : e.dev }));
  return encodeBlob({ roots: [fx.root], entries, flags: opts.flags ?? 0 });
}

/** Write `bytes` as a blob file the shim accepts (root-owned, 0644). */
export function writeBlob(fx: HostFixture, name: string, bytes: Buffer, mode = 0o644): string {
  const file = path.join(fx.tmp, 'blobs', name);
  fs.writeFileSync(file, bytes);
  fs.chmodSync(file, mode);
  return file;
}

/** Recompute the header CRC-32 after a header edit (so only the edit is wrong). */
export function fixHeaderCrc(blob: Buffer): Buffer {
  blob.writeUInt32LE(0, F.HEADER.headerCrc32);
  blob.writeUInt32LE(crc32(blob.subarray(0, F.HEADER_SIZE)), F.HEADER.headerCrc32);
  return blob;
}

/** Byte offset of the entry whose key is `p`, or throws. */
export function entryOffset(blob: Buffer, p: Buffer): number {
  const n = blob.readUInt32LE(F.HEADER.entryCount);
  const eo = Number(blob.readBigUInt64LE(F.HEADER.entriesOff));
  const so = Number(blob.readBigUInt64LE(F.HEADER.stringsOff));
  for (let i = 0; i < n; i++) {
    const o = eo + i * F.ENTRY_SIZE;
    const off = blob.readUInt32LE(o + F.ENTRY.pathOff);
    const len = blob.readUInt32LE(o + F.ENTRY.pathLen);
    if (blob.subarray(so + off, so + off + len).equals(p)) return o;
  }
  throw new Error(`no entry for ${p.toString('latin1')}`);
}

/**
 * Oracle input: one path per line ("<NULL>"/"<EMPTY>" markers). Paths with a
 * newline byte cannot be expressed and are rejected.
 */
export function oracleInput(paths: (Buffer | null)[]): Buffer {
  return Buffer.concat(
    paths.map((p) => {
      if (p === null) return Buffer.from('<NULL>\n');
      if (p.length === 0) return Buffer.from('<EMPTY>\n');
      if (p.includes(0x0a) || p.includes(0)) throw new Error('oracle paths cannot hold NUL or newline');
      return Buffer.concat([p, Buffer.from('\n')]);
    }),
  );
}

let oracleCwd: string | undefined;

function makeOracleCwd(): string {
  const top = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vrift-oracle-cwd-')));
  fs.mkdirSync(path.join(top, 'sub'));
  fs.chmodSync(top, 0o755);
  return path.join(top, 'sub');
}

/**
 * Run the oracle; with `blob`, under LD_PRELOAD=libvrift.so VRIFT_BLOB=blob;
 * with `uid`, as that user (and group), to see permission-dependent answers.
 */
export function runOracle(input: Buffer, blob?: string, uid?: number): string[] {
  // Relative spellings ("..", "a/b") pass through; they resolve against a
  // private, never-written directory so both runs see the same kernel state.
  oracleCwd ??= makeOracleCwd();
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  if (blob) {
    env.LD_PRELOAD = SHIM;
    env.VRIFT_BLOB = blob;
  }
  const r = spawnSync(ORACLE, [], { input, env, cwd: oracleCwd, maxBuffer: 1 << 30, ...(uid !== undefined ? { uid, gid: uid } : {}) });
  if (r.status !== 0) throw new Error(`oracle exited ${r.status} signal ${r.signal}: ${r.stderr}`);
  return r.stdout.toString('latin1').split('\n');
}

const STATX_BTIME = 0x800;
const STATX_MNT_ID = 0x1000;

/**
 * The documented statx differences (shim/libvrift.c, fill_statx): the shim
 * never provides STATX_BTIME, and provides STATX_MNT_ID and
 * stx_attributes_mask only when it captured them at init
 * (PSFS_H_DEV_RUNTIME). Applied to both outputs; nothing else is masked.
 */
export function normalizeLine(line: string, shimHasMntId: boolean): string {
  if (!/^(statx|syscall\(statx\))/.test(line) || !line.includes(' mask=')) return line;
  return line
    .split(' ')
    .filter((t) => !t.startsWith('btime=') && (shimHasMntId || (!t.startsWith('mnt_id=') && !t.startsWith('attributes_mask='))))
    .map((t) => {
      if (!t.startsWith('mask=')) return t;
      let m = parseInt(t.slice(5), 16) & ~STATX_BTIME;
      if (!shimHasMntId) m &= ~STATX_MNT_ID;
      return `mask=0x${m.toString(16)}`;
    })
    .join(' ');
}

/** statx fields governed by a stx_mask bit (oracle output names). */
const STATX_FIELD_BITS: Record<string, number> = {
  mode: 0x3, nlink: 0x4, uid: 0x8, gid: 0x10, atime: 0x20, mtime: 0x40, ctime: 0x80, ino: 0x100, size: 0x200, blocks: 0x400,
};
const STATX_BASIC_STATS = 0x7ff;

/**
 * statx answers to a narrow mask: statx(2) lets the answer hold fields that
 * were not requested, and the shim always gives every basic stat, while
 * recent kernels leave unrequested timestamps out. For such a pair (after
 * normalizeLine), compare every field both masks provide, require the shim
 * to provide every basic field the kernel did, and show the masks as their
 * intersection. Lines whose kernel mask holds all basic stats are left as
 * they are (compared exactly).
 */
export function pairStatx(k: string, s: string): [string, string] {
  const mk = /(?:^| )mask=0x([0-9a-f]+)/.exec(k);
  const ms = /(?:^| )mask=0x([0-9a-f]+)/.exec(s);
  if (!mk || !ms) return [k, s];
  const km = parseInt(mk[1], 16);
  const sm = parseInt(ms[1], 16);
  if ((km & STATX_BASIC_STATS) === STATX_BASIC_STATS || (km & STATX_BASIC_STATS & ~sm) !== 0) return [k, s];
  const common = km & sm;
  const keep = (line: string): string =>
    line
      .split(' ')
      .filter((t) => {
        const bit = STATX_FIELD_BITS[t.slice(0, t.indexOf('='))];
        return bit === undefined || (bit & common) === bit;
      })
      .map((t) => (t.startsWith('mask=') ? `mask=0x${common.toString(16)}` : t))
      .join(' ');
  return [keep(k), keep(s)];
}

/** Differences between two oracle outputs, as "path: kernel | shim" lines (at most `max`). */
export function diffOutputs(paths: (Buffer | null)[], kernel: string[], shim: string[], shimHasMntId: boolean, max = 20): string[] {
  const out: string[] = [];
  let idx = -1;
  if (kernel.length !== shim.length) out.push(`line counts differ: ${kernel.length} vs ${shim.length}`);
  for (let i = 0; i < Math.min(kernel.length, shim.length) && out.length < max; i++) {
    if (kernel[i].startsWith('## ')) idx++;
    const [k, s] = pairStatx(normalizeLine(kernel[i], shimHasMntId), normalizeLine(shim[i], shimHasMntId));
    if (k !== s) out.push(`${JSON.stringify(paths[idx]?.toString('latin1') ?? null)}:\n  kernel: ${k}\n  shim:   ${s}`);
  }
  return out;
}

/** Count `## ` markers and call lines (for reporting). */
export function countCalls(lines: string[]): number {
  return lines.filter((l) => l.length > 0 && !l.startsWith('## ')).length;
}

/** >= 200 adversarial spellings of domain (and near-domain) paths. */
export function adversarial(fx: HostFixture): (Buffer | null)[] {
  const root = fx.root.toString('latin1');
  const parent = root.slice(0, root.lastIndexOf('/'));
  const base = root.slice(root.lastIndexOf('/') + 1);
  const out: string[] = [];
  const rels = [
    'small', 'empty', 'big', 'setuid', 'noperm', 'fifo', 'd', 'd/f', 'd/sub', 'emptydir', 'deep/a/b/c/d/e/f/g/h/leaf',
    'l-rel-file', 'l-abs-file', 'l-rel-dir', 'l-abs-dir', 'l-dir-slash', 'l-file-slash', 'l-outside', 'l-dangling',
    'l-loop-a', 'l-chain-1', 'd/sub/l-up', 'd/l-above-root', 'l-dot', 'd/l-dotdot', 'private', 'private/secret',
    'locked', 'locked/x', 'noexec', 'noexec/y', 'hop0', 'hop2', 'sticky', 'l-through-link', 'l-into-noexec',
  ];
  for (const rel of rels) {
    const p = `${root}/${rel}`;
    out.push(
      `${p}/`, `${p}//`, `${p}/.`, `${p}/./`, `${p}/..`, `${p}/../`, `${p}/x`, `${p}/x/y`, `${p}/./x`,
      `${root}//${rel}`, `${root}/./${rel}`, `/${p}`, `${root}/d/../${rel}`,
    );
  }
  out.push(
    root, `${root}/`, `${root}/.`, `${root}/..`, `${root}/../${base}`, `${root}/../${base}/small`,
    `${root}/../../../../../../../../..${root}/small`, `${parent}/./${base}/small`, `${parent}//${base}//small`,
    `${root}/missing`, `${root}/missing/`, `${root}/missing/x`, `${root}/d/missing`, `${root}/d/missing/..`,
    `${root}/deep/a/b/missing/c`, `${root}/deep/a/b/c/d/e/f/g/h/leaf/..`, `${root}/deep/a/b/c/../../b/c/d`,
    `${root}/deep/./a/./b/../b/c`, `${root}/d/sub/../../small`, `${root}/d/sub/../../../${base}/small`,
    `${root}/small/..`, `${root}/l-rel-dir/..`, `${root}/l-rel-dir/../small`, `${root}/l-rel-dir/f`,
    `${root}/l-abs-dir/sub`, `${root}/l-abs-dir/missing`, `${root}/private/missing`, `${root}/locked/missing`,
    `${root}/noexec/missing`, `${root}/noexec/../small`, `${root}/private/../small`,
    `${root}/${'a'.repeat(256)}`, `${root}/${'a'.repeat(255)}`, `${root}/${'n'.repeat(255)}`, `${root}/${'n'.repeat(256)}`,
    `${root}/${'a'.repeat(300)}/..`, `${root}/missing/${'a'.repeat(256)}`, `${root}/${'L'.repeat(255)}/${'M'.repeat(255)}`,
    `${root}/${'L'.repeat(255)}/${'M'.repeat(255)}/`, `${root}/${'L'.repeat(255)}/../small`,
    `${root}/${'a'.repeat(5000)}`, `${root}/${'./'.repeat(2100)}small`, `${root}${'/'.repeat(4100)}small`,
    `${root}/...`, `${root}/.hidden`, `${root}/sp ace`, `${root}/sp`, `${root}/.../`, `${root}/..../`,
    `${root}x`, `${root}x/small`, `${root.slice(0, -1)}`, `${parent}`, `${parent}/`, `/`, `//`, `/.`, `/..`,
    `${fx.outside.toString('latin1')}/file`, `${root}/../outside/file`, `.`, `..`, `dom/small`, `./small`, `small`,
    `/nonexistent/path`, `/etc/hostname`, `/dev/null`,
  );
  // PATH_MAX boundary: the longest accepted path, then one byte more.
  const longest = fx.paths.reduce((a, p) => (p.length > a.length ? p : a), Buffer.alloc(0)).toString('latin1');
  const dirOfLongest = longest.slice(0, longest.lastIndexOf('/'));
  out.push(longest, `${longest}/`, `${dirOfLongest}//${longest.slice(dirOfLongest.length + 1)}`, `${dirOfLongest}/./missing`);
  out.push(`${dirOfLongest}/${'q'.repeat(F.PATH_MAX - 1 - dirOfLongest.length - 1)}`);
  out.push(`${dirOfLongest}/${'q'.repeat(F.PATH_MAX - dirOfLongest.length - 1)}`);
  // A spelling of a short path with exactly PATH_MAX-1 bytes (accepted), then PATH_MAX and PATH_MAX+1.
  for (const n of [F.PATH_MAX - 1, F.PATH_MAX, F.PATH_MAX + 1]) out.push(`${root}/${'/'.repeat(n - root.length - 1 - 5)}small`);
  const res: (Buffer | null)[] = out.map((x) => Buffer.from(x, 'latin1'));
  // non-UTF-8 spellings
  res.push(Buffer.concat([fx.root, Buffer.from('/'), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from('/')]));
  res.push(Buffer.concat([fx.root, Buffer.from('/'), Buffer.from([0xe9, 0x74, 0xe9]), Buffer.from('/./'), Buffer.from([0x80, 0x2e, 0x2e])]));
  res.push(Buffer.concat([fx.root, Buffer.from('/'), Buffer.from([0xe9, 0x74, 0xe9]), Buffer.from('/'), Buffer.from([0x80, 0x2e, 0x2e]), Buffer.from('/..')]));
  res.push(Buffer.concat([fx.root, Buffer.from('/'), Buffer.from([0xff])]));
  res.push(null, Buffer.alloc(0));
  return res;
}

