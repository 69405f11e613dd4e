import { promises as fsp, type BigIntStats } from 'node:fs';
import { VriftError } from '../errors';
import * as F from './format';
import type { BlobEntry, BlobOptions, Timespec } from './writer';

/** Options of scanHostTree. */
export interface HostTreeOptions {
  /** Record this st_uid on every entry instead of the real owner. */
  uid?: number;
  /** Record this st_gid on every entry instead of the real group. */
  gid?: number;
  /** How many lstat(2) calls run at once per directory. Default 32. */
  concurrency?: number;
}

/** Result of scanHostTree: ready to pass to encodeBlob / writeBlobFile. */
export interface HostTree extends BlobOptions {
  /** The single domain root: realpath(3) of the scanned directory, as bytes. */
  roots: [Buffer];
  /** Every path under the root (root included), sorted by path bytes. */
  entries: BlobEntry[];
  /**
   * Paths not recorded because their normalized form has PATH_MAX (4096)
   * bytes or more. The kernel answers ENAMETOOLONG for them and the shim
   * passes such paths through, so leaving them out keeps the blob exact.
   */
  skippedTooLong: number;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const NS_PER_S = 1_000_000_000n;
const SLASH = Buffer.from('/');

/** Split a nanosecond timestamp into a POSIX timespec (floor semantics for pre-1970 times). */
function timespec(ns: bigint): Timespec {
  let sec = ns / NS_PER_S;
  let nsec = ns % NS_PER_S;
  if (nsec < 0n) {
    nsec += NS_PER_S;
    sec -= 1n;
  }
  return { sec, nsec: Number(nsec) };
}

function show(p: Buffer): string {
  return JSON.stringify(p.toString('latin1'));
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string') {
    const why: Record<string, string> = {
      ENOENT: 'no such file or directory',
      EACCES: 'permission denied',
      EPERM: 'operation not permitted',
      ENOTDIR: 'not a directory',
      ELOOP: 'too many levels of symbolic links',
      ENAMETOOLONG: 'file name too long',
      EIO: 'input/output error',
    };
    return `${e.code} (${why[e.code] ?? e.message})`;
  }
  return e instanceof Error ? e.message : String(err);
}

function toEntry(p: Buffer, st: BigIntStats, opts: HostTreeOptions, target?: Buffer): BlobEntry {
  return {
    path: p,
    mode: Number(st.mode),
    uid: opts.uid ?? Number(st.uid),
    gid: opts.gid ?? Number(st.gid),
    nlink: Number(st.nlink),
    size: st.size,
    blocks: st.blocks,
    blksize: Number(st.blksize),
    ino: st.ino,
    dev: st.dev,
    rdev: st.rdev,
    atime: timespec(st.atimeNs),
    mtime: timespec(st.mtimeNs),
    ctime: timespec(st.ctimeNs),
    ...(target !== undefined ? { target } : {}),
  };
}

function changed(p: Buffer, err: unknown): VriftError {
  return new VriftError(`reading ${show(p)}: ${describe(err)}; the tree changed while it was scanned or is not readable, scan an immutable tree as its owner`, {
    cause: err,
  });
}

/** lstat(2) with bigint fields; when `type` is given the file must still have that S_IFMT type. */
async function lstatOrThrow(p: Buffer, type?: number): Promise<BigIntStats> {
  let st: BigIntStats;
  try {
    st = await fsp.lstat(p, { bigint: true });
  } catch (err) {
    throw changed(p, err);
  }
  if (type !== undefined && (Number(st.mode) & S_IFMT) !== type) throw changed(p, new Error('file type changed'));
  return st;
}

function checkId(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= 0xfffffffe)) {
    throw new VriftError(`scanning host tree: --${name} ${v} is not a valid ${name} (an integer 0..4294967294)`);
  }
}

/**
 * Walk an existing host directory tree and produce the PSFS blob input for it,
 * recording what lstat(2) reports for every path (real st_ino, st_dev,
 * st_atim, st_ctim, st_blocks, st_blksize, st_rdev; identity policy for host
 * trees in BRIEF.md / docs/psfs-format.md).
 *
 * The domain root is realpath(3) of `dir`; paths are the root plus the names
 * read with readdir(3) as raw bytes (non-UTF-8 names survive unchanged).
 * Symlink targets are the raw bytes of readlink(2). The walk is iterative
 * (an explicit stack, no recursion), so depth is limited only by PATH_MAX;
 * paths of PATH_MAX bytes or more are left out (see HostTree.skippedTooLong).
 * Mount points inside the tree are descended like any directory.
 * Directories and symlinks are lstat'ed after readdir/readlink, so the
 * st_atim the scan itself causes (relatime) is what gets recorded.
 *
 * @param dir a directory path (relative paths resolve against the cwd)
 * @param opts uid/gid override (recorded instead of the real owner), lstat concurrency
 * @returns roots (one), entries sorted by path bytes, flags 0
 * @throws VriftError when `dir` is missing or not a directory, a directory in
 *   the tree cannot be read (message names the path and what to do), or the
 *   tree changes while it is being scanned
 */
export async function scanHostTree(dir: string, opts: HostTreeOptions = {}): Promise<HostTree> {
  checkId('uid', opts.uid);
  checkId('gid', opts.gid);
  const concurrency = Math.max(1, opts.concurrency ?? 32);

  let root: Buffer;
  let rootStat: BigIntStats;
  try {
    root = await fsp.realpath(dir, { encoding: 'buffer' });
    rootStat = await fsp.lstat(root, { bigint: true });
  } catch (err) {
    throw new VriftError(`scanning host tree ${JSON.stringify(dir)}: ${describe(err)}; pass an existing directory`, { cause: err });
  }
  if ((Number(rootStat.mode) & S_IFMT) !== S_IFDIR) {
    throw new VriftError(`scanning host tree ${JSON.stringify(dir)}: not a directory; pass the directory that is the domain root`);
  }
  if (root.length === 1) {
    throw new VriftError('scanning host tree "/": the domain root cannot be "/"; pass a subdirectory');
  }
  if (root.length >= F.PATH_MAX) {
    throw new VriftError(`scanning host tree ${JSON.stringify(dir)}: its real path is ${root.length} bytes, the limit is ${F.PATH_MAX - 1}`);
  }

  const entries: BlobEntry[] = [toEntry(root, rootStat, opts)];
  let skippedTooLong = 0;
  const stack: { p: Buffer; index: number }[] = [{ p: root, index: 0 }];
  while (stack.length > 0) {
    const { p: d, index: dIndex } = stack.pop()!;
    let names: Buffer[];
    try {
      names = await fsp.readdir(d, { encoding: 'buffer' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const todo =
        code === 'EACCES' || code === 'EPERM'
          ? 'run as a user who can read it, or make it readable (chmod a+rx)'
          : code === 'ENOENT' || code === 'ENOTDIR'
            ? 'the tree changed while it was scanned; scan an immutable tree'
            : 'check the directory and retry';
      throw new VriftError(`reading directory ${show(d)}: ${describe(err)}; ${todo}`, { cause: err });
    }
    names.sort(Buffer.compare);
    // readdir(3) may have just updated the directory's st_atim (relatime does
    // so once after a change): record the state after the read, which later
    // reads leave alone, so the blob matches what lstat(2) reports afterwards.
    entries[dIndex] = toEntry(d, await lstatOrThrow(d, S_IFDIR), opts);
    const paths: Buffer[] = [];
    for (const n of names) {
      const p = Buffer.concat([d, SLASH, n]);
      if (p.length >= F.PATH_MAX) skippedTooLong++;
      else paths.push(p);
    }
    const subdirs: { p: Buffer; index: number }[] = [];
    for (let i = 0; i < paths.length; i += concurrency) {
      const batch = paths.slice(i, i + concurrency);
      const done = await Promise.all(
        batch.map(async (p) => {
          let st = await lstatOrThrow(p);
          const type = Number(st.mode) & S_IFMT;
          let target: Buffer | undefined;
          if (type === S_IFLNK) {
            try {
              target = await fsp.readlink(p, { encoding: 'buffer' });
            } catch (err) {
              throw changed(p, err);
            }
            // readlink(2) updates the link's st_atim: record the state after it.
            st = await lstatOrThrow(p, S_IFLNK);
          }
          return { p, st, type, target };
        }),
      );
      for (const { p, st, type, target } of done) {
        entries.push(toEntry(p, st, opts, target));
        if (type === S_IFDIR) subdirs.push({ p, index: entries.length - 1 });
      }
    }
    // Push in reverse so directories are visited in name order (keeps error
    // messages and memory use predictable; the final order comes from the sort).
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
  entries.sort((a, b) => Buffer.compare(a.path, b.path));
  return { roots: [root], entries, flags: 0, skippedTooLong };
}
