/**
 * Merging a new /vrift tree layer onto a base image that already carries a
 * vrift tree and blob (issue 5, "layering that caches").
 *
 * The new layer holds only the new trees (and the directories above them,
 * and their CAS objects); the base's /vrift stays in its own layers. The new
 * blob, written into the new layer at the same path (/usr/lib/vrift/psfs.blob,
 * so it replaces the base's), describes the union as overlayfs shows it:
 *
 * - paths only in the base: the base blob's entries, unchanged;
 * - paths in the new layer: the new entries (a CAS object the base also has
 *   is written again and shadows the base's copy; the base's tree paths keep
 *   pointing at the lower inode, whose entries stay as they were);
 * - a directory in both (/vrift, /vrift/.cas, its fan-out directories, the
 *   parents of new destinations): overlayfs takes its attributes from the
 *   topmost layer (mode, owner, mtime, st_size of the new layer's directory,
 *   which lists only the new names) but reports st_nlink 1 for a directory
 *   merged from several layers (measured: src/tree/README.md), so nlink = 1;
 * - synthetic st_ino of new inodes continue after the base's highest one, so
 *   identities stay unique;
 * - identity tags (mtime nanoseconds, PSFS_H_IDENTITY_TAG) of new inodes
 *   also continue after the base's highest tag; /vrift itself gets a new
 *   tag, so the base's blob no longer validates over the union
 *   (PSFS_H_CHECK_ROOT_MTIME) and the new blob only over it.
 *
 * Known engine-dependent value: st_blocks of a merged directory. Exporting
 * the image (`docker save`, which `vrift build` and `vrift inspect` use for
 * docker-daemon images) mounts its layers as overlayfs upper directories and
 * the kernel stores `trusted.overlay.origin`/`impure` xattrs on merged
 * directories, which can take an extra ext4 block: st_blocks 8 -> 16 from
 * then on (measured). The blob records the value before that (8); `vrift
 * verify` does not compare it.
 *
 * Known difference on a flattened rootfs (umoci unpack, docker export): a
 * CAS object the new layer writes again replaces the base's file there, so a
 * base tree path hardlinked to it reports st_nlink one lower than in the
 * blob (overlayfs keeps the lower inode and its link count; the blob follows
 * overlayfs, what containers see). `vrift verify --root` reports it.
 *
 * Conflicts (refused): a new destination that exists in the base, or that
 * contains or lies inside a destination of an earlier vrift build, or a
 * directory the new tree needs where the base has a file or symlink.
 *
 * Memory: the base blob is read in place (openBlob over paged bytes), and
 * the union is a merge of two sorted streams (the base's rows and the new
 * tree's, both in path-byte order) into 5 bytes a row: no object and no
 * string per base entry, whatever the base's size.
 */
import { VriftError } from '../errors';
import type { BlobRows } from '../blob/writer';
import type { BlobView } from '../blob/reader';
import { PagedArray } from '../paged';
import { SYNTHETIC_INO_BASE } from './blobEntries';

/** The base side of a merge: its visible blob, read in place. */
export interface MergeBase {
  /** The base blob, validated (openBlob): every /vrift path of the base, in path-byte order. */
  blob: BlobView;
  /** `sha256:<hex>` of the base blob. */
  blobDigest: string;
  /** Destinations of earlier `vrift build --add` steps (from the config history); may be empty. */
  dests: string[];
  /** Where the base comes from, for messages (e.g. `docker-daemon:app:1`). */
  where: string;
  /** Highest synthetic st_ino of the base minus SYNTHETIC_INO_BASE (its highest identity tag), >= 0: new inodes and tags continue after it. */
  shift: number;
  /** Release the blob's bytes (paged). Idempotent. */
  close(): void;
}

/**
 * A MergeBase over a validated base blob: reads every entry once for the
 * highest synthetic st_ino.
 * @param close releases the blob's bytes
 */
export function mergeBase(blob: BlobView, blobDigest: string, dests: string[], where: string, close: () => void = () => undefined): MergeBase {
  let maxIno = SYNTHETIC_INO_BASE;
  for (let k = 0; k < blob.rows.count; k++) {
    const ino = blob.rows.ino(k);
    if (ino > maxIno) maxIno = ino;
  }
  return { blob, blobDigest, dests, where, shift: Number(maxIno - SYNTHETIC_INO_BASE), close };
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

const isUnder = (p: string, dir: string): boolean => p.startsWith(`${dir}/`);
const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;

/**
 * Refuse conflicting destinations before anything is planned or written
 * (a directory where the base has a non-directory is refused by
 * mergeBlobRows, before the blob is written).
 * @param dests normalized new destinations (e.g. "/vrift/node")
 * @throws VriftError naming the destination and what to do
 */
export function checkMergeConflicts(base: MergeBase, dests: string[]): void {
  for (const d of dests) {
    if (base.blob.find(Buffer.from(d)) >= 0) {
      throw new VriftError(`merging onto ${base.where}: destination ${d} already exists in the base image's /vrift tree; choose another destination, or build from the base's own base with every --add at once`);
    }
    for (const b of base.dests) {
      if (isUnder(d, b) || isUnder(b, d)) {
        throw new VriftError(`merging onto ${base.where}: destination ${d} overlaps ${b}, added by an earlier vrift build of the base; use a destination that neither contains nor lies inside ${b}`);
      }
    }
  }
}

/**
 * The blob rows of the union (see the module comment), in path-byte order:
 * a two-cursor merge of the base's rows and the new layer's. A path in both
 * takes the new row; if both are directories, it is a merged directory
 * (st_nlink 1, PSFS_E_UNCERTAIN). New synthetic st_ino values are shifted
 * past the base's (base.shift). Base rows keep every field and their
 * PSFS_E_UNCERTAIN flag. The rows read `fresh` live (a later change of the
 * root's nanoseconds shows).
 *
 * @param fresh the new layer's rows in path-byte order (blobRowsFromTable: every row is in the layer)
 * @returns the union's rows; 5 bytes a row in paged arrays
 * @throws VriftError when the new tree needs a directory where the base has a non-directory
 */
export function mergeBlobRows(base: MergeBase, fresh: BlobRows): BlobRows {
  const b = base.blob.rows;
  // Where row k comes from: j >= 0 the new row j, ~i (< 0) the base row i.
  const from = new PagedArray(Int32Array);
  const merged = new PagedArray(Uint8Array);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < b.count || j < fresh.count) {
    const c = i >= b.count ? 1 : j >= fresh.count ? -1 : Buffer.compare(b.path(i), fresh.path(j));
    if (c < 0) from.set(k++, ~i++);
    else if (c > 0) from.set(k++, j++);
    else {
      const dir = isDir(fresh.mode(j));
      if (dir && !isDir(b.mode(i))) {
        throw new VriftError(`merging onto ${base.where}: the new tree needs directory ${fresh.path(j).toString()} but the base has a non-directory there; choose another destination`);
      }
      // A merged directory (in a base layer and in this one): overlayfs reports st_nlink 1, and
      // its st_blocks depends on the engine (xattrs the kernel may add when it mounts the layer
      // as an upper dir: 8 -> 16 measured), so the shim passes it through (PSFS_E_UNCERTAIN).
      if (dir) merged.set(k, 1);
      from.set(k++, j++);
      i++;
    }
  }
  const shift = BigInt(base.shift);
  const pick = <T>(ofBase: (i: number) => T, ofFresh: (j: number) => T) => (r: number): T => {
    const s = from.get(r);
    return s < 0 ? ofBase(~s) : ofFresh(s);
  };
  return {
    count: k,
    path: pick(b.path, fresh.path),
    mode: pick(b.mode, fresh.mode),
    uid: pick(b.uid, fresh.uid),
    gid: pick(b.gid, fresh.gid),
    nlink: (r) => (merged.get(r) === 1 ? 1 : pick(b.nlink, fresh.nlink)(r)),
    size: pick(b.size, fresh.size),
    blocks: pick(b.blocks, fresh.blocks),
    blksize: pick(b.blksize, fresh.blksize),
    ino: pick(b.ino, (s) => {
      const ino = fresh.ino(s);
      return ino >= SYNTHETIC_INO_BASE ? ino + shift : ino;
    }),
    dev: pick(b.dev, fresh.dev),
    rdev: pick(b.rdev, fresh.rdev),
    atimeSec: pick(b.atimeSec, fresh.atimeSec),
    atimeNsec: pick(b.atimeNsec, fresh.atimeNsec),
    mtimeSec: pick(b.mtimeSec, fresh.mtimeSec),
    mtimeNsec: pick(b.mtimeNsec, fresh.mtimeNsec),
    ctimeSec: pick(b.ctimeSec, fresh.ctimeSec),
    ctimeNsec: pick(b.ctimeNsec, fresh.ctimeNsec),
    target: pick(b.target, fresh.target),
    uncertain: (r) => merged.get(r) === 1 || pick(b.uncertain, fresh.uncertain)(r),
  };
}
