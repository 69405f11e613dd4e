/**
 * `vrift verify`: compare a PSFS blob with the filesystem it describes, using
 * the kernel as the oracle.
 *
 * Run inside the image (a container) or against an unpacked rootfs (`root`
 * prefixes every path). Every blob entry is compared with lstat(2) of its
 * path; a symlink whose target resolves to another blob entry is also
 * compared through stat(2). Paths on disk under a domain root that the blob
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
  /** lstat comparisons made (one per present entry) and stat comparisons through symlinks. */
  checked: { lstat: number; stat: number };
  /** Fields left out of every comparison (identity policy). */
  identityFields: string[];
  /** Paths whose st_size/st_blocks were not compared (estimates, merged directories on a flat rootfs). */
  uncertain: string[];
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

/**
 * Resolve a symlink entry's target inside the blob (relative targets against
 * the link's directory, at most 40 hops as Linux), returning the final
 * non-symlink entry, or undefined when resolution leaves the blob (outside
 * every root, a missing name, a component that is not a directory).
 */
function resolveInBlob(link: DecodedEntry, byKey: Map<string, DecodedEntry>): DecodedEntry | undefined {
  let cur: DecodedEntry = link;
  for (let hops = 0; hops < 40; hops++) {
    const t = cur.target!;
    const start = t.length > 0 && t[0] === SLASH ? [] : parentOf(cur.path).toString('latin1').split('/').filter(Boolean);
    const comps = [...start];
    for (const c of t.toString('latin1').split('/')) {
      if (c === '' || c === '.') continue;
      if (c === '..') {
        comps.pop();
        continue;
      }
      comps.push(c);
      // A symlink in the middle of a target is not followed: the final lookup below
      // then misses (paths through a symlink are not blob keys) and stat is skipped.
    }
    const next = byKey.get(`/${comps.join('/')}`);
    if (!next) return undefined;
    if ((next.mode & S_IFMT) !== S_IFLNK) return next;
    cur = next;
  }
  return undefined;
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

  for (const e of blob.entries) {
    const p = host(e.path);
    const shown = show(e.path);
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      mismatches.push({ path: shown, call: 'lstat', field: 'errno', blob: '0', kernel: (err as NodeJS.ErrnoException).code ?? String(err) });
      continue;
    }
    if (!st) {
      missing.push(shown);
      continue;
    }
    checked.lstat++;
    compare(e, st, 'lstat', shown);
    if ((e.mode & S_IFMT) === S_IFLNK && (st.mode & BigInt(S_IFMT)) === BigInt(S_IFLNK)) {
      const t = readlinkSync(p, { encoding: 'buffer' });
      if (!t.equals(e.target!)) mismatches.push({ path: shown, call: 'lstat', field: 'target', blob: show(e.target!), kernel: show(t) });
      // stat through the link, when its target resolves inside the blob (and the prefix
      // does not change what an absolute target means).
      const final = resolveInBlob(e, byKey);
      if (final && (prefix.length === 0 || e.target![0] !== SLASH)) {
        let st2: BigIntStats | undefined;
        try {
          st2 = statSync(p, { bigint: true, throwIfNoEntry: false });
        } catch {
          st2 = undefined;
        }
        if (!st2) mismatches.push({ path: shown, call: 'stat', field: 'errno', blob: `0 (${show(final.path)})`, kernel: 'ENOENT' });
        else {
          checked.stat++;
          compare(final, st2, 'stat', `${shown} -> ${show(final.path)}`);
        }
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
  list('mismatches', r.mismatches, (m) => `${m.path}: ${m.call} ${m.field}: blob ${m.blob}, kernel ${m.kernel}`);
  list('blob entries missing on disk', r.missing, (p) => p);
  list('paths on disk not in the blob (drift: written after the blob was made)', r.extra, (p) => p);
  out.push(r.outcome === 'ok' ? 'verify: OK: every entry matches the kernel' : 'verify: MISMATCH: the blob does not describe this tree; the shim may answer wrongly here (rebuild the image with vrift build, or keep writes out of the domain)');
  return `${out.join('\n')}\n`;
}
