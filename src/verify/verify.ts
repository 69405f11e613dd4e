/**
 * `vrift verify`: compare a PSFS blob with the filesystem it describes, using
 * the kernel as the oracle.
 *
 * Run inside the image (a container) or against an unpacked rootfs (`root`
 * prefixes every path). Every blob entry is compared with lstat(2) of its
 * path; stat(2) through each symlink is compared wherever the shim would
 * answer it from the blob (an entry, ENOENT or ENOTDIR: shimStat mirrors
 * psfs_resolve); where the shim passes a call through, the kernel answers it
 * and there is nothing to compare. Entries this caller may not lstat (EACCES)
 * and the shim passes through (not PSFS_E_REACHABLE) are listed as passed
 * through, not as mismatches. Paths on disk under a domain root that the blob
 * does not list (drift: e.g. a later `RUN` step that wrote into /vrift) are
 * reported too.
 *
 * Not compared (docs/psfs-format.md "Identity policy"): st_ino, st_dev,
 * st_atime, st_ctime when the blob has PSFS_H_DEV_RUNTIME (image builds);
 * only st_atime otherwise (host blobs record real values; reading the tree
 * updates atimes). Not compared either, as src/tree/README.md documents:
 * st_size/st_blocks of directories whose size the builder only estimates
 * (ext4DirSize not exact) and st_blocks of files > 512 MiB. A directory the
 * blob records with st_nlink 1 is an overlayfs merged directory (present in
 * more than one layer): the kernel may report 1 (overlayfs) or 2 + subdirs
 * (a flat rootfs), and in the latter case its st_size/st_blocks are those
 * of the union, not of the top layer, so they are not compared there; its
 * st_blocks is never compared (overlayfs xattrs the engine may add, see below).
 *
 * The caller must make sure the shim is not loaded in this process (the
 * CLI re-executes itself with LD_PRELOAD emptied): otherwise lstat would be
 * answered from the blob itself.
 */
import { promises as fsp, readFileSync, lstatSync, statSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import * as F from '../blob/format';
import { decodeBlob, type DecodedEntry } from '../blob/reader';
import { VriftError } from '../errors';
import { sha256Digest } from '../image/digest';
import { BLOB_IMAGE_PATH } from '../layer/types';
import { ext4DirSize, FS_MODEL } from '../tree/blobEntries';

/** Options of verifyTree. */
export interface VerifyOptions {
  /** Directory every blob path is prefixed with (an unpacked rootfs); default "/". */
  root?: string;
  /** Blob file (host path, not prefixed); default `<root>/usr/lib/vrift/psfs.blob`. */
  blobFile?: string;
}

/** One field that differs between the blob and the kernel. Values are decimal strings (times: `sec.nsec`). */
export interface Mismatch {
  path: string;
  /** lstat: the entry itself; stat: through a symlink to `via`. */
  call: 'lstat' | 'stat';
  field: string;
  blob: string;
  kernel: string;
}

/** Result of verifyTree. Paths are image paths (without the root prefix). */
export interface VerifyReport {
  outcome: 'ok' | 'mismatch';
  root: string;
  blobFile: string;
  blobDigest: string;
  domain: string[];
  entries: number;
  /** lstat comparisons made (one per entry the kernel let this caller lstat) and stat comparisons through symlinks (wherever the shim answers from the blob, negative answers included). */
  checked: { lstat: number; stat: number };
  /** Fields left out of every comparison (identity policy). */
  identityFields: string[];
  /** Paths whose st_size/st_blocks were not compared (estimates, merged directories on a flat rootfs). */
  uncertain: string[];
  /** Entries this caller may not lstat (EACCES) that the shim passes through (no PSFS_E_REACHABLE): not compared. */
  passedThrough: string[];
  mismatches: Mismatch[];
  /** Blob entries with no path on disk. */
  missing: string[];
  /** Paths on disk under a domain root that the blob does not list (drift). */
  extra: string[];
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const SLASH = 0x2f;

function show(p: Buffer): string {
  const s = p.toString('utf8');
  return Buffer.from(s, 'utf8').equals(p) ? s : p.toString('latin1');
}

const key = (p: Buffer): string => p.toString('latin1');

function parentOf(p: Buffer): Buffer {
  const i = p.lastIndexOf(SLASH);
  return i <= 0 ? Buffer.from('/') : p.subarray(0, i);
}

const SEARCH_ALL = 0o111;
const PATH_MAX = 4096;
const NAME_MAX = 255;
const MAX_HOPS = 39;

/** What the shim answers for a path: an entry, an errno, or the kernel's own answer. */
type ShimAnswer = { hit: DecodedEntry } | { errno: 'ENOENT' | 'ENOTDIR' } | 'pass';

const isType = (e: DecodedEntry, t: number): boolean => (e.mode & S_IFMT) === t;
const searchable = (e: DecodedEntry | undefined): boolean =>
  !!e && (e.flags & F.E_REACHABLE) !== 0 && isType(e, S_IFDIR) && (e.mode & SEARCH_ALL) === SEARCH_ALL;

/**
 * What the shim answers for stat(2) of the symlink entry `link`: a TS mirror of
 * psfs_resolve with PSFS_FOLLOW (shim/psfs_core.c; docs/psfs-format.md "Resolving
 * a path"). Paths are latin1 keys of `byKey`; `roots` likewise. A relative target
 * is taken against the link's directory; `..` pops only a directory entry every
 * caller may search (a symlink or file before `..` is the kernel's business, as
 * is a missing name, a name over NAME_MAX bytes, the 40th hop, or an absolute
 * target outside the roots, or any absolute target when `absoluteOk` is false:
 * an unpacked rootfs, where the kernel would resolve it on the host).
 * Returns { hit } for an entry the shim answers from, { errno } for a negative
 * answer, 'pass' where the shim passes the call through. Never throws.
 */
function shimStat(link: DecodedEntry, byKey: Map<string, DecodedEntry>, roots: string[], absoluteOk: boolean): ShimAnswer {
  let p = key(link.path);
  let root = roots.find((r) => p === r || p.startsWith(`${r}/`))?.length ?? 0;
  let e: DecodedEntry | undefined = link;
  let mustDir = false; // set, never cleared, as the C walk: a trailing "/", "." or ".."
  let dotLast = false;
  for (let hops = 0; ; hops++) {
    if (!e) return missingAnswer(p, root, byKey);
    if ((e.flags & F.E_REACHABLE) === 0) return 'pass'; // the caller may get EACCES
    if (!isType(e, S_IFLNK)) break;
    const t = e.target!.toString('latin1');
    if (hops >= MAX_HOPS || t === '' || t.includes('\0')) return 'pass';
    let rest = t;
    if (t[0] === '/') {
      const r = roots.find((x) => t === x || t.startsWith(`${x}/`));
      if (!r || !absoluteOk) return 'pass';
      [p, root, rest] = [r, r.length, t.slice(r.length)];
    } else {
      if (p.length <= root) return 'pass';
      p = p.slice(0, p.lastIndexOf('/'));
    }
    const comps = rest.split('/');
    for (const c of comps) {
      if (c === '') continue;
      if (c.length > NAME_MAX || p.length + 1 + c.length >= PATH_MAX) return 'pass';
      if (c === '..') {
        if (p.length <= root || !searchable(byKey.get(p))) return 'pass';
        p = p.slice(0, p.lastIndexOf('/'));
      } else if (c !== '.') p = `${p}/${c}`;
    }
    const last = comps.filter((c) => c !== '').at(-1);
    if (rest.endsWith('/') || last === '.' || last === '..') mustDir = true;
    if (last === '.') dotLast = true;
    e = byKey.get(p);
  }
  if (mustDir && !isType(e, S_IFDIR)) return { errno: 'ENOTDIR' };
  if (dotLast && (e.mode & SEARCH_ALL) !== SEARCH_ALL) return 'pass'; // "dir/.": EACCES for some callers
  if (e.flags & F.E_UNCERTAIN) return 'pass';
  return { hit: e };
}

/**
 * The shim's answer for a path `p` absent from the blob (psfs_core.c missing()):
 * its nearest present ancestor, walking down from the root, decides.
 */
function missingAnswer(p: string, root: number, byKey: Map<string, DecodedEntry>): ShimAnswer {
  let a: DecodedEntry | undefined;
  for (let i = p.indexOf('/', root); i >= 0; i = p.indexOf('/', i + 1)) {
    const e = byKey.get(p.slice(0, i));
    if (!e) break;
    a = e;
    if (!isType(a, S_IFDIR)) break;
  }
  if (!a || (a.flags & F.E_REACHABLE) === 0 || isType(a, S_IFLNK)) return 'pass';
  if (isType(a, S_IFDIR)) return searchable(a) ? { errno: 'ENOENT' } : 'pass';
  return { errno: 'ENOTDIR' };
}

const ts = (sec: bigint, nsec: number | bigint): string => `${sec}.${String(nsec).padStart(9, '0')}`;
/** A kernel time in ns as POSIX timespec (tv_nsec in 0..999999999, also before 1970). */
const tsNs = (ns: bigint): string => {
  const G = 1_000_000_000n;
  const nsec = ((ns % G) + G) % G;
  return ts((ns - nsec) / G, nsec);
};

/**
 * Verify the blob against the kernel.
 * @throws VriftError when the blob cannot be read or does not decode, or the root is not a directory
 */
export async function verifyTree(o: VerifyOptions = {}): Promise<VerifyReport> {
  const root = path.resolve(o.root ?? '/');
  const rootSt = await fsp.stat(root).catch(() => undefined);
  if (!rootSt?.isDirectory()) throw new VriftError(`verifying ${root}: not a directory; --root takes an unpacked image rootfs`);
  const blobFile = o.blobFile ?? path.join(root, BLOB_IMAGE_PATH);
  let buf: Buffer;
  try {
    buf = readFileSync(blobFile);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new VriftError(`verifying ${root}: reading the blob ${blobFile}: ${e.code === 'ENOENT' ? 'no such file' : e.message}; is this a vrift image (give --root <rootfs> or --blob <file>)?`, { cause: err });
  }
  const blob = decodeBlob(buf);
  const imageBuild = (blob.header.flags & F.H_DEV_RUNTIME) !== 0;
  const identity = imageBuild ? ['st_ino', 'st_dev', 'st_atime', 'st_ctime'] : ['st_atime'];
  const prefix = Buffer.from(root === '/' ? '' : root);
  const host = (p: Buffer): Buffer => Buffer.concat([prefix, p]);

  const byKey = new Map<string, DecodedEntry>();
  const childNames = new Map<string, number[]>();
  const subdirs = new Map<string, number>();
  const isRoot = (p: Buffer): boolean => blob.roots.some((r) => r.equals(p));
  for (const e of blob.entries) {
    byKey.set(key(e.path), e);
    if (isRoot(e.path)) continue;
    const pk = key(parentOf(e.path));
    (childNames.get(pk) ?? childNames.set(pk, []).get(pk)!).push(e.path.length - e.path.lastIndexOf(SLASH) - 1);
    if ((e.mode & S_IFMT) === S_IFDIR) subdirs.set(pk, (subdirs.get(pk) ?? 0) + 1);
  }

  const mismatches: Mismatch[] = [];
  const missing: string[] = [];
  const uncertain: string[] = [];
  const passedThrough: string[] = [];
  const checked = { lstat: 0, stat: 0 };

  const compare = (e: DecodedEntry, st: BigIntStats, call: 'lstat' | 'stat', shownPath: string): void => {
    const diff = (field: string, b: string, k: string): void => {
      if (b !== k) mismatches.push({ path: shownPath, call, field, blob: b, kernel: k });
    };
    const type = e.mode & S_IFMT;
    diff('st_mode', `0${e.mode.toString(8)}`, `0${Number(st.mode).toString(8)}`);
    diff('st_uid', String(e.uid), String(st.uid));
    diff('st_gid', String(e.gid), String(st.gid));
    diff('st_mtime', ts(e.mtime.sec, e.mtime.nsec), tsNs(st.mtimeNs));
    diff('st_blksize', String(e.blksize), String(st.blksize));
    if (!imageBuild) {
      diff('st_ino', String(e.ino), String(st.ino));
      diff('st_dev', String(e.dev), String(st.dev));
      diff('st_ctime', ts(e.ctime.sec, e.ctime.nsec), tsNs(st.ctimeNs));
    }
    diff('st_rdev', String(e.rdev), String(st.rdev));
    // PSFS_E_UNCERTAIN: the writer knew these are estimates (the shim passes such paths through).
    let sizeKnown = (e.flags & F.E_UNCERTAIN) === 0;
    let blocksKnown = sizeKnown;
    if (type === S_IFDIR) {
      const k = key(e.path);
      if (!ext4DirSize(childNames.get(k) ?? []).exact) sizeKnown = blocksKnown = false;
      if (e.nlink === 1) {
        // Merged directory (in more than one layer): overlayfs says 1, a flat rootfs the real count.
        // Its st_blocks depends on the engine: exporting the image (docker save) mounts the layer
        // as an overlayfs upper dir, and the kernel then stores trusted.overlay.origin/impure
        // xattrs on it, which can take an extra ext4 block (measured: 8 -> 16). Not compared.
        blocksKnown = false;
        const flat = 2 + (subdirs.get(k) ?? 0);
        if (st.nlink !== 1n) {
          diff('st_nlink', `1 or ${flat}`, st.nlink === BigInt(flat) ? `1 or ${flat}` : String(st.nlink));
          sizeKnown = blocksKnown = false;
        }
      } else {
        diff('st_nlink', String(e.nlink), String(st.nlink));
      }
    } else {
      diff('st_nlink', String(e.nlink), String(st.nlink));
      if (type === S_IFREG && e.size > BigInt(FS_MODEL.inodeExtents * FS_MODEL.maxExtentBlocks * 4096)) blocksKnown = false;
    }
    if (sizeKnown) diff('st_size', String(e.size), String(st.size));
    if (blocksKnown) diff('st_blocks', String(e.blocks), String(st.blocks));
    if ((!sizeKnown || !blocksKnown) && call === 'lstat') uncertain.push(shownPath);
  };

  const roots = blob.roots.map(key);
  /** The kernel's errno for `call` of `p`, or its stat. */
  const kernel = (call: typeof lstatSync, p: Buffer): BigIntStats | string => {
    try {
      return call(p, { bigint: true, throwIfNoEntry: false }) ?? 'ENOENT';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  };
  for (const e of blob.entries) {
    const p = host(e.path);
    const shown = show(e.path);
    const st = kernel(lstatSync, p);
    if (st === 'ENOENT') {
      missing.push(shown);
      continue;
    }
    if (typeof st === 'string') {
      // EACCES for this caller (a directory above it not searchable by everyone):
      // the shim passes such paths through (no PSFS_E_REACHABLE), so it is no mismatch.
      if (st === 'EACCES' && (e.flags & F.E_REACHABLE) === 0) passedThrough.push(shown);
      else mismatches.push({ path: shown, call: 'lstat', field: 'errno', blob: '0', kernel: st });
      continue;
    }
    checked.lstat++;
    compare(e, st, 'lstat', shown);
    if (isType(e, S_IFLNK) && st.isSymbolicLink()) {
      const t = readlinkSync(p, { encoding: 'buffer' });
      if (!t.equals(e.target!)) mismatches.push({ path: shown, call: 'lstat', field: 'target', blob: show(e.target!), kernel: show(t) });
      // stat through the link, wherever the shim would answer it from the blob.
      const answer = shimStat(e, byKey, roots, prefix.length === 0);
      if (answer === 'pass') continue;
      checked.stat++;
      const st2 = kernel(statSync, p);
      if ('errno' in answer) {
        if (st2 !== answer.errno) mismatches.push({ path: shown, call: 'stat', field: 'errno', blob: answer.errno, kernel: typeof st2 === 'string' ? st2 : '0' });
      } else if (typeof st2 === 'string') {
        mismatches.push({ path: shown, call: 'stat', field: 'errno', blob: `0 (${show(answer.hit.path)})`, kernel: st2 });
      } else {
        compare(answer.hit, st2, 'stat', `${shown} -> ${show(answer.hit.path)}`);
      }
    }
  }

  // Drift: what is on disk under each root but not in the blob.
  const extra: string[] = [];
  for (const r of blob.roots) {
    const stack: Buffer[] = [r];
    while (stack.length) {
      const dir = stack.pop()!;
      let names: Buffer[];
      try {
        names = readdirSync(host(dir), { encoding: 'buffer' });
      } catch {
        continue; // missing or not a directory: reported above
      }
      for (const n of names) {
        const p = Buffer.concat([dir, Buffer.from('/'), n]);
        const e = byKey.get(key(p));
        if (!e) extra.push(show(p));
        let st: BigIntStats | undefined;
        try {
          st = lstatSync(host(p), { bigint: true, throwIfNoEntry: false });
        } catch {
          st = undefined;
        }
        if (st?.isDirectory()) stack.push(p);
      }
    }
  }
  extra.sort();

  return {
    outcome: mismatches.length || missing.length || extra.length ? 'mismatch' : 'ok',
    root,
    blobFile,
    blobDigest: sha256Digest(buf),
    domain: blob.roots.map(show),
    entries: blob.entries.length,
    checked,
    identityFields: identity,
    uncertain,
    passedThrough,
    mismatches,
    missing,
    extra,
  };
}

/** Human-readable report (what `vrift verify` prints without --json); at most `limit` lines per list. */
export function formatVerify(r: VerifyReport, limit = 50): string {
  const out: string[] = [];
  out.push(`verify: blob ${r.blobFile} (${r.blobDigest}), domain ${r.domain.join(', ')}${r.root !== '/' ? `, root ${r.root}` : ''}`);
  out.push(`verify: ${r.entries} entries; compared with the kernel: ${r.checked.lstat} lstat, ${r.checked.stat} stat through symlinks; not compared: ${r.identityFields.join(', ')} (identity policy)${r.uncertain.length ? `, size/blocks of ${r.uncertain.length} paths (estimates or merged directories)` : ''}`);
  const list = <T>(title: string, items: T[], fmt: (t: T) => string): void => {
    if (!items.length) return;
    out.push(`verify: ${items.length} ${title}:`);
    for (const t of items.slice(0, limit)) out.push(`  ${fmt(t)}`);
    if (items.length > limit) out.push(`  ... and ${items.length - limit} more (--json lists all)`);
  };
  list('entries not compared: EACCES for this caller, the shim passes them through', r.passedThrough, (p) => p);
  list('mismatches', r.mismatches, (m) => `${m.path}: ${m.call} ${m.field}: blob ${m.blob}, kernel ${m.kernel}`);
  list('blob entries missing on disk', r.missing, (p) => p);
  list('paths on disk not in the blob (drift: written after the blob was made)', r.extra, (p) => p);
  out.push(r.outcome === 'ok' ? 'verify: OK: every entry matches the kernel' : 'verify: MISMATCH: the blob does not describe this tree; the shim may answer wrongly here (rebuild the image with vrift build, or keep writes out of the domain)');
  return `${out.join('\n')}\n`;
}
