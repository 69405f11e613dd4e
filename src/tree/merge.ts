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
 */
import { VriftError } from '../errors';
import type { BlobEntry } from '../blob/writer';
import type { LayerEntry } from '../layer/types';
import { plainBlobEntry, SYNTHETIC_INO_BASE } from './blobEntries';

/** The base side of a merge: its visible blob, decoded. */
export interface MergeBase {
  /** Entries of the base blob (every /vrift path of the base). */
  entries: BlobEntry[];
  roots: Buffer[];
  /** `sha256:<hex>` of the base blob. */
  blobDigest: string;
  /** Destinations of earlier `vrift build --add` steps (from the config history); may be empty. */
  dests: string[];
  /** Where the base comes from, for messages (e.g. `docker-daemon:app:1`). */
  where: string;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

const key = (p: Buffer): string => p.toString('latin1');
const isUnder = (p: string, dir: string): boolean => p.startsWith(`${dir}/`);

/**
 * Refuse conflicting destinations and type clashes before anything is written.
 * @param dests normalized new destinations (e.g. "/vrift/node")
 * @param planEntries the new layer's planned entries, to refuse a directory where the base has a non-directory
 * @throws VriftError naming the destination and what to do
 */
export function checkMergeConflicts(base: MergeBase, dests: string[], planEntries?: Iterable<LayerEntry>): void {
  const byKey = new Map(base.entries.map((e) => [key(e.path), e]));
  for (const d of dests) {
    if (byKey.has(key(Buffer.from(d)))) {
      throw new VriftError(`merging onto ${base.where}: destination ${d} already exists in the base image's /vrift tree; choose another destination, or build from the base's own base with every --add at once`);
    }
    for (const b of base.dests) {
      if (isUnder(d, b) || isUnder(b, d)) {
        throw new VriftError(`merging onto ${base.where}: destination ${d} overlaps ${b}, added by an earlier vrift build of the base; use a destination that neither contains nor lies inside ${b}`);
      }
    }
  }
  if (planEntries) {
    for (const e of planEntries) {
      const b = byKey.get(key(e.path));
      if (b && e.type === 'directory' && (b.mode & S_IFMT) !== S_IFDIR) {
        throw new VriftError(`merging onto ${base.where}: the new tree needs directory ${e.path.toString()} but the base has a non-directory there; choose another destination`);
      }
    }
  }
}

/**
 * The blob entries of the union (see the module comment).
 * @param base the base blob's entries
 * @param fresh entries of the new layer (blobEntriesFromPlan; copied with plainBlobEntry, views are not spread)
 * @param planEntries the new layer's entries (to tell directories the layer holds)
 * @returns union entries, in no particular order (encodeBlob sorts)
 */
export function mergeBlobEntries(base: MergeBase, fresh: BlobEntry[], planEntries: Iterable<LayerEntry>): BlobEntry[] {
  let maxIno = SYNTHETIC_INO_BASE;
  for (const e of base.entries) if (e.ino > maxIno) maxIno = e.ino;
  const shift = maxIno - SYNTHETIC_INO_BASE;
  const baseByKey = new Map(base.entries.map((e) => [key(e.path), e]));
  const inLayer = new Set(Array.from(planEntries, (e) => key(e.path)));
  const out = new Map<string, BlobEntry>();
  for (const e of base.entries) out.set(key(e.path), e);
  for (const e of fresh) {
    const k = key(e.path);
    const b = baseByKey.get(k);
    const merged = b !== undefined && (b.mode & S_IFMT) === S_IFDIR && (e.mode & S_IFMT) === S_IFDIR && inLayer.has(k);
    // A merged directory (in a base layer and in this one): overlayfs reports st_nlink 1, and
    // its st_blocks depends on the engine (xattrs the kernel may add when it mounts the layer
    // as an upper dir: 8 -> 16 measured), so the shim passes it through (PSFS_E_UNCERTAIN).
    out.set(k, { ...plainBlobEntry(e), ino: e.ino >= SYNTHETIC_INO_BASE ? e.ino + shift : e.ino, ...(merged ? { nlink: 1, uncertain: true } : {}) });
  }
  return [...out.values()];
}
