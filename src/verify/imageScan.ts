/**
 * Reading what vrift put into an image: which layers carry the shim and the
 * /vrift tree, the PSFS blob that is visible in the final filesystem, the
 * shim bytes, and every /vrift path each layer's tar headers name.
 *
 * Used by `vrift inspect` (report) and by `vrift build` on a base that
 * already carries a vrift tree (merge, src/image/build.ts). Layer bodies are
 * streamed once through readTarHeaders (names kept as bytes: a /vrift name
 * need not be UTF-8); blobs go to paged bytes (src/paged.ts: they grow with
 * the tree, ~200 bytes an entry, so they are not held in memory whole), the
 * shim (small) to memory. Path keys are latin1 strings (one char per byte) of
 * the absolute path.
 */
import { createHash } from 'node:crypto';
import { VriftError } from '../errors';
import { showPath } from '../cas/hash';
import { normalizeMemberName } from '../image/files';
import type { Image, Layer } from '../image/types';
import { BLOB_IMAGE_PATH, SHIM_IMAGE_PATH, VRIFT_ROOT } from '../layer/types';
import { checkBlob, type BlobView } from '../blob/reader';
import { readTarHeaders } from '../layer/tarRead';
import { mergeBase, type MergeBase } from '../tree/merge';
import { PagedArray, PagedBytes } from '../paged';

/** Label keys (mirrors src/image/build.ts, kept here to avoid an import cycle). */
export const LABEL_BLOB_DIGEST = 'dev.vrift.blob.digest';
export const LABEL_VERSION = 'dev.vrift.version';

/** Most bytes kept for the blob (paged) or the shim (in memory): a larger blob is refused, a larger shim skipped. */
const MAX_KEPT = 1 << 30;

/** Tar type letters kept per path: d(irectory), f(ile), l(symlink), h(ardlink), w(hiteout), o(ther). */
export type PathKind = 'd' | 'f' | 'l' | 'h' | 'w' | 'o';

/** What one layer holds that matters to vrift. Sizes in bytes. */
export interface LayerScan {
  /** 0-based, base first. */
  index: number;
  digest: string;
  diffID: string;
  size: number;
  mediaType: string;
  /** `shim`: has usr/lib/vrift/libvrift.so; `tree`: has /vrift paths or the blob; `base`: neither. */
  role: 'base' | 'shim' | 'tree';
  /** Absolute paths under /vrift (the root included) named by this layer's tar headers; latin1 strings of the raw bytes (empty when the scan did not keep paths). */
  vriftPaths: Map<string, PathKind>;
  /** Tar members under /vrift (the root included, whiteouts included), kept or not. */
  vriftMembers: number;
  /** Of those, whiteouts and opaque markers (`.wh.*`). */
  vriftWhiteouts: number;
  /** The blob bytes when this layer has /usr/lib/vrift/psfs.blob (paged: read them with `read`, or openBlob). */
  blob?: PagedBytes;
  /** `sha256:<hex>` of `blob`. */
  blobDigest?: string;
  /** The shim bytes when this layer has /usr/lib/vrift/libvrift.so. */
  shim?: Buffer;
  /**
   * Member names (normalized, no leading "/") by which this layer hides the
   * blob, the shim or /vrift of lower layers (hidingEntry): a whiteout, an
   * opaque marker, or a non-directory at the path or at a parent directory.
   */
  hides: { blob?: string; shim?: string; vrift?: string };
}

/** An image read for vrift's purposes. */
export interface VriftImageScan {
  layers: LayerScan[];
  /** The blob visible in the final filesystem (topmost layer that has one, unless a layer above it hides it), if any. */
  blob?: PagedBytes;
  blobDigest?: string;
  /** Index of the layer the visible blob comes from. */
  blobLayer?: number;
  /** The shim visible in the final filesystem, if any. */
  shim?: Buffer;
  shimLayer?: number;
  /**
   * When the topmost blob (shim) is hidden by a later layer: the index of the
   * layer holding it, the index of the layer hiding it and the member doing so
   * (e.g. `usr/lib/vrift/.wh.psfs.blob`). `blob` (`shim`) is then undefined.
   */
  blobRemoved?: Removal;
  shimRemoved?: Removal;
  /** Config label dev.vrift.blob.digest, if set. */
  labelBlobDigest?: string;
  labelVersion?: string;
  /** Destinations recorded by `vrift build` in the config history (`--add <dest>`). */
  historyDests: string[];
}

/** A file of a lower layer hidden by a later one (VriftImageScan.blobRemoved). 0-based layer indexes. */
export interface Removal {
  /** The topmost layer that holds the file. */
  layer: number;
  /** The layer above it that hides it. */
  by: number;
  /** The member of layer `by` that hides it, normalized, without leading "/". */
  entry: string;
}

const BLOB_NAME = BLOB_IMAGE_PATH.slice(1);
const SHIM_NAME = SHIM_IMAGE_PATH.slice(1);
const ROOT_NAME = VRIFT_ROOT.slice(1);

function kindOf(type: string | null | undefined, base: string): PathKind {
  if (base.startsWith('.wh.')) return 'w';
  switch (type) {
    case 'directory':
      return 'd';
    case 'file':
    case 'contiguous-file':
      return 'f';
    case 'symlink':
      return 'l';
    case 'link':
      return 'h';
    default:
      return 'o';
  }
}

const OPAQUE = '.wh..wh..opq';

/**
 * Whether the layer member `name` (normalized, no leading "/") of tar type
 * `type` hides `target` (same form) as found in the layers below it, per the
 * OCI image spec, layer.md "Whiteouts"
 * (https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts)
 * and "Changeset over existing files":
 * - `.wh.<n>` in directory D deletes D/<n> of lower layers, and everything under it;
 * - `.wh..wh..opq` in D makes D opaque: no lower-layer child of D stays;
 * - any other member replaces a lower non-directory at its path (a
 *   directory member too), and a member that is not a directory replaces a
 *   lower directory at its path with everything under it (a directory
 *   replaced by a file or symlink).
 * Whiteouts apply to lower layers only (the same layer may whiteout a
 * directory and add a file in it): the caller decides visibility per layer.
 * A hard link at `target` counts as replacing it (the scan keeps only regular
 * file bodies).
 */
export function hidingEntry(name: string, type: string | null | undefined, target: string): boolean {
  const slash = name.lastIndexOf('/');
  const dir = slash < 0 ? '' : name.slice(0, slash);
  const base = name.slice(slash + 1);
  const under = (p: string): boolean => target === p || target.startsWith(`${p}/`);
  if (base === OPAQUE) return dir === '' || target.startsWith(`${dir}/`);
  if (base.startsWith('.wh.')) {
    const victim = base.slice(4);
    // `.wh.`, `.wh..` name the directory itself or its parent: not a valid whiteout, ignored.
    if (victim === '' || victim === '.' || victim === '..') return false;
    return under(dir === '' ? victim : `${dir}/${victim}`);
  }
  // A member at the path itself replaces the file; a directory there too (it removes a non-directory).
  if (name === target) return type !== 'file' && type !== 'contiguous-file';
  return type !== 'directory' && target.startsWith(`${name}/`);
}

/**
 * readTarHeaders over `layer`'s uncompressed tar (bodies up to MAX_KEPT).
 * @throws VriftError naming `what` when the layer cannot be read or is not a tar
 */
async function readLayerHeaders(layer: Layer, what: string, onEntry: Parameters<typeof readTarHeaders>[1]): Promise<void> {
  const input = await layer.openUncompressed();
  try {
    await readTarHeaders(input, onEntry, what, MAX_KEPT);
  } catch (err) {
    input.destroy();
    if (err instanceof VriftError) throw err;
    throw new VriftError(`reading ${what}: ${(err as Error).message}; the image is corrupt or not readable`, { cause: err });
  }
}

/**
 * Stream one layer's uncompressed tar and collect its /vrift paths, blob and shim.
 * @throws VriftError when the layer cannot be read or is not a tar
 */
export async function scanLayer(layer: Layer, index: number, what: string, keepPaths = true): Promise<LayerScan> {
  const vriftPaths = new Map<string, PathKind>();
  let vriftMembers = 0;
  let vriftWhiteouts = 0;
  let blob: PagedBytes | undefined;
  let blobDigest: string | undefined;
  let shim: Buffer | undefined;
  const hides: LayerScan['hides'] = {};
  try {
    // Names stay bytes (readTarHeaders): keys are latin1 strings, one char per byte.
    await readLayerHeaders(layer, what, (h) => {
      const name = normalizeMemberName(h.name.toString('latin1'));
      if (name !== null) {
        // First hiding member wins (any one is enough; the first names it in messages).
        if (hides.blob === undefined && hidingEntry(name, h.type, BLOB_NAME)) hides.blob = name;
        if (hides.shim === undefined && hidingEntry(name, h.type, SHIM_NAME)) hides.shim = name;
        if (hides.vrift === undefined && name !== ROOT_NAME && hidingEntry(name, h.type, ROOT_NAME)) hides.vrift = name;
      }
      if (name !== null && (name === ROOT_NAME || name.startsWith(`${ROOT_NAME}/`))) {
        const kind = kindOf(h.type, name.slice(name.lastIndexOf('/') + 1));
        vriftMembers++;
        if (kind === 'w') vriftWhiteouts++;
        if (keepPaths) vriftPaths.set(`/${name}`, kind);
      }
      if (name === BLOB_NAME && (h.type === 'file' || h.type === 'contiguous-file')) {
        // Streamed into pages: a blob grows with its tree. A later member of the same name wins.
        if (h.size > MAX_KEPT) throw new VriftError(`reading ${what}: /${BLOB_NAME} is ${h.size} bytes, more than the ${MAX_KEPT} a PSFS blob may have here; the image was not built by vrift, or is corrupt`);
        blob?.close();
        const bytes = new PagedBytes();
        const hash = createHash('sha256');
        blob = bytes;
        return {
          chunk: (b) => {
            bytes.append(b);
            hash.update(b);
          },
          end: () => {
            blobDigest = `sha256:${hash.digest('hex')}`;
          },
        };
      }
      if (name === SHIM_NAME && (h.type === 'file' || h.type === 'contiguous-file')) {
        return (body) => {
          shim = body;
        };
      }
    });
  } catch (err) {
    blob?.close();
    throw err;
  }
  const role = shim ? 'shim' : blob || vriftMembers > 0 ? 'tree' : 'base';
  return {
    index,
    digest: await layer.digest(),
    diffID: await layer.diffID(),
    size: await layer.size(),
    mediaType: await layer.mediaType(),
    role,
    vriftPaths,
    vriftMembers,
    vriftWhiteouts,
    blob,
    blobDigest,
    shim,
    hides,
  };
}

/**
 * Destinations named by `vrift build --add <dest>` history entries
 * (src/image/build.ts treeCreatedBy), read left to right. A token starting
 * with `"` is a JSON string (written for destinations with whitespace,
 * control characters, `"` or `\`: quoteDest) and parsed exactly; any other
 * token runs to the next whitespace, as every version wrote it (images built
 * before quoting was added read as they did then: an unquoted destination
 * with a space in it comes back cut at the space).
 * @param createdBy the config's history `created_by` values, any order
 * @returns the destinations, e.g. ["/vrift/app", "/vrift/a b"]
 */
export function destsFromHistory(createdBy: (string | undefined)[]): string[] {
  const out: string[] = [];
  for (const c of createdBy) {
    if (!c || !c.startsWith('vrift build')) continue;
    for (const m of c.matchAll(/--add ("(?:[^"\\]|\\.)*"|\S+)/g)) {
      const tok = m[1];
      if (tok.startsWith('"')) {
        try {
          const v: unknown = JSON.parse(tok);
          if (typeof v === 'string') {
            out.push(v);
            continue;
          }
        } catch {
          // not a JSON string: an old unquoted token, read as before
        }
        out.push(/^\S+/.exec(tok)![0]);
      } else out.push(tok);
    }
  }
  return out;
}

/**
 * Which layer's `what` a container sees: the topmost layer holding one,
 * unless a layer above it hides it (whiteouts act on lower layers only, so a
 * layer's own file wins over its own whiteout); then `removed` names the
 * lowest hiding layer above it.
 */
function visibleIn(scans: LayerScan[], what: 'blob' | 'shim'): { layer?: number; removed?: Removal } {
  let hiddenBy: number | undefined;
  for (let i = scans.length - 1; i >= 0; i--) {
    if (scans[i][what]) return hiddenBy === undefined ? { layer: i } : { removed: { layer: i, by: hiddenBy, entry: scans[hiddenBy].hides[what]! } };
    if (scans[i].hides[what] !== undefined) hiddenBy = i;
  }
  return {};
}

/**
 * Scan every layer of `image` (base first). The visible blob and shim are
 * what a container of the image sees: the topmost layer's copy, unless a
 * layer above it hides it (hidingEntry: whiteout, opaque directory, or a
 * non-directory at a parent path; OCI image spec layer.md "Whiteouts"), in
 * which case `blobRemoved` / `shimRemoved` say which layer did.
 * @param where names the image in errors, e.g. `docker-archive:app.tar`
 * @param onLayer called before each layer is read (progress)
 * @param keepPaths keep each layer's /vrift paths (LayerScan.vriftPaths; ~0.2 KiB a path); false: counts only
 * @throws VriftError when a layer cannot be read
 */
export async function scanImage(image: Image, where: string, onLayer?: (i: number, n: number) => void, keepPaths = true): Promise<VriftImageScan> {
  const config = await image.config();
  const layers = await image.layers();
  const scans: LayerScan[] = [];
  for (let i = 0; i < layers.length; i++) {
    onLayer?.(i, layers.length);
    scans.push(await scanLayer(layers[i], i, `layer ${i + 1} of ${where}`, keepPaths));
  }
  const r: VriftImageScan = {
    layers: scans,
    labelBlobDigest: config.config?.Labels?.[LABEL_BLOB_DIGEST],
    labelVersion: config.config?.Labels?.[LABEL_VERSION],
    historyDests: destsFromHistory((config.history ?? []).map((h) => h.created_by)),
  };
  const blob = visibleIn(scans, 'blob');
  if (blob.layer !== undefined) [r.blob, r.blobDigest, r.blobLayer] = [scans[blob.layer].blob, scans[blob.layer].blobDigest, blob.layer];
  if (blob.removed) r.blobRemoved = blob.removed;
  const shim = visibleIn(scans, 'shim');
  if (shim.layer !== undefined) [r.shim, r.shimLayer] = [scans[shim.layer].shim, shim.layer];
  if (shim.removed) r.shimRemoved = shim.removed;
  // Only the visible blob is read later: the pages of the others go back to the pool.
  for (const l of scans) if (l.blob !== r.blob) l.blob?.close();
  return r;
}

/**
 * The /vrift paths of the final filesystem, from the layers' tar headers
 * (whiteouts applied, opaque directories honoured, /vrift itself whited out
 * included: OCI image spec layer.md "Whiteouts"), each with the kind of the
 * topmost member at it.
 */
export function mergedVriftPaths(layers: LayerScan[]): Map<string, PathKind> {
  const out = new Map<string, PathKind>();
  const removeUnder = (dir: string, keepSelf: boolean): void => {
    for (const k of [...out.keys()]) if (k.startsWith(`${dir}/`) || (!keepSelf && k === dir)) out.delete(k);
  };
  for (const l of layers) {
    // `/.wh.vrift` (or an opaque root): nothing of the lower layers' /vrift stays.
    if (l.hides.vrift !== undefined) out.clear();
    // Whiteouts first (they apply to lower layers only), all in one pass over the paths: a
    // whiteout's victim goes with everything under it, an opaque directory's contents go.
    const gone = new Set<string>();
    const emptied = new Set<string>();
    for (const [p, kind] of l.vriftPaths) {
      if (kind !== 'w') continue;
      const dir = p.slice(0, p.lastIndexOf('/'));
      const base = p.slice(p.lastIndexOf('/') + 1);
      if (base === '.wh..wh..opq') emptied.add(dir);
      else gone.add(`${dir}/${base.slice(4)}`);
    }
    if (gone.size > 0 || emptied.size > 0) {
      for (const k of [...out.keys()]) {
        let hidden = gone.has(k);
        for (let i = k.lastIndexOf('/'); !hidden && i > 0; i = k.lastIndexOf('/', i - 1)) {
          const a = k.slice(0, i);
          hidden = gone.has(a) || emptied.has(a);
        }
        if (hidden) out.delete(k);
      }
    }
    for (const [p, kind] of l.vriftPaths) {
      if (kind === 'w') continue;
      // A non-directory over a lower directory replaces it with everything under it.
      if (kind !== 'd' && out.get(p) === 'd') removeUnder(p, true);
      out.set(p, kind);
    }
  }
  return out;
}

/** /vrift paths a container sees but the blob lacks (`extra`) and blob keys it does not see (`missing`): counts and the lowest of each. */
interface PathDiff {
  extra: { n: number; first: string };
  missing: { n: number; first: string };
}
const NO_DIFF: PathDiff = { extra: { n: 0, first: '' }, missing: { n: 0, first: '' } };

/**
 * Whether the layers' /vrift paths are exactly the blob's keys, from a
 * second read of the layers that have /vrift members, holding no path: each
 * member is looked up in the blob (the next row first: a vrift layer lists
 * its paths in blob order, else a binary search) and marks its row, 1 byte a
 * row in a paged array; no row may stay unmarked. Only a plain union of the
 * layers is decided here: false (undecided) as soon as a member has no row,
 * or a layer has a whiteout or opaque marker under /vrift, hides /vrift
 * itself, or puts a non-directory where a lower layer has a directory (OCI
 * image spec layer.md "Whiteouts", "Changeset over existing files");
 * exactPathDiff then decides, and counts what differs.
 * @throws VriftError when a layer cannot be read
 */
async function pathsMatchBlob(image: Image, scan: VriftImageScan, blob: BlobView, where: string): Promise<boolean> {
  if (scan.layers.some((l) => l.hides.vrift !== undefined || l.vriftWhiteouts > 0)) return false;
  const layers = await image.layers();
  const rows = blob.rows;
  const DIR = 1;
  const OTHER = 2;
  const seen = new PagedArray(Uint8Array);
  let next = 0;
  try {
    for (const l of scan.layers) {
      if (l.vriftMembers === 0) continue;
      let undecided = false;
      await readLayerHeaders(layers[l.index], `layer ${l.index + 1} of ${where}`, (h) => {
        const name = normalizeMemberName(h.name.toString('latin1'));
        if (undecided || name === null || (name !== ROOT_NAME && !name.startsWith(`${ROOT_NAME}/`))) return;
        const p = Buffer.from(`/${name}`, 'latin1');
        const k = next < rows.count && rows.path(next).equals(p) ? next : blob.find(p);
        const was = k < 0 ? 0 : seen.get(k);
        // No row, or a non-directory over a lower directory (which removes what was under it).
        if (k < 0 || (h.type !== 'directory' && (was & DIR) !== 0)) {
          undecided = true;
          return;
        }
        next = k + 1;
        seen.set(k, was | (h.type === 'directory' ? DIR : OTHER));
      });
      if (undecided) return false;
    }
    for (let k = 0; k < rows.count; k++) if (seen.get(k) === 0) return false;
    return true;
  } finally {
    seen.close();
  }
}

/**
 * PathDiff from every layer's /vrift paths (mergedVriftPaths: whiteouts,
 * opaque directories and replaced directories applied), held in memory
 * (~0.3 KiB a path): for the layers pathsMatchBlob does not decide.
 * @throws VriftError when a layer cannot be read
 */
async function exactPathDiff(image: Image, blob: BlobView, where: string): Promise<PathDiff> {
  const scan = await scanImage(image, where);
  scan.blob?.close();
  // Both sides in byte order (a latin1 string sorts as its bytes).
  const onDisk = [...mergedVriftPaths(scan.layers).keys()].sort();
  const rows = blob.rows;
  const extra = { n: 0, first: '' };
  const missing = { n: 0, first: '' };
  for (let d = 0, k = 0; d < onDisk.length || k < rows.count;) {
    const p = k < rows.count ? rows.path(k).toString('latin1') : undefined;
    if (p === undefined || (d < onDisk.length && onDisk[d] < p)) {
      if (extra.n++ === 0) extra.first = onDisk[d];
      d++;
    } else if (d >= onDisk.length || p < onDisk[d]) {
      if (missing.n++ === 0) missing.first = p;
      k++;
    } else {
      d++;
      k++;
    }
  }
  return { extra, missing };
}

/** What `vrift build` needs from a base that already carries a vrift tree. */
export interface VriftBase {
  merge: MergeBase;
  /** diffID of the layer that holds the visible shim, when the base has one. */
  shimDiffID?: string;
}

/**
 * Read a base image's vrift tree for a merge: its visible blob (which must
 * match the dev.vrift.blob.digest label) and, from its layers' tar headers,
 * the /vrift paths the engine will show, which must be exactly the blob's
 * keys, and no layer above the blob's may write under /vrift (a later layer
 * that wrote into /vrift, even without adding or removing a path, would make
 * the merged blob lie).
 * @param where names the base in messages
 * @throws VriftError when the blob is missing or hidden by a later layer (whiteout), does not match the label or does not decode, /vrift drifted from it, or a layer above the blob's writes under /vrift
 */
export async function readVriftBase(image: Image, where: string, onLayer?: (i: number, n: number) => void): Promise<VriftBase> {
  // Paths are not kept: they are checked against the blob in a second read (pathsMatchBlob).
  const scan = await scanImage(image, where, onLayer, false);
  if (scan.blobRemoved) {
    // The tree is still in the layers but no blob describes it for the shim: merging the old blob would resurrect it.
    const { layer, by, entry } = scan.blobRemoved;
    throw new VriftError(`merging onto ${where}: layer ${by + 1} removes ${BLOB_IMAGE_PATH} (${entry}) that layer ${layer + 1} holds, so the base's /vrift has no PSFS blob; build from the base's original base (before the layer that removed it) with every --add at once`);
  }
  if (!scan.blob || !scan.blobDigest) {
    throw new VriftError(`merging onto ${where}: the config has the ${LABEL_BLOB_DIGEST} label but no layer holds ${BLOB_IMAGE_PATH}; the base is not a complete vrift image, build from its original base`);
  }
  if (scan.labelBlobDigest !== undefined && scan.labelBlobDigest !== scan.blobDigest) {
    throw new VriftError(`merging onto ${where}: ${BLOB_IMAGE_PATH} is ${scan.blobDigest} but the ${LABEL_BLOB_DIGEST} label says ${scan.labelBlobDigest}; a later layer replaced the blob, build from the original base`);
  }
  const bytes = scan.blob;
  try {
    let blob;
    try {
      // Validated whole, as `vrift inspect` does (checkBlob: the lookup structures too), read in place.
      blob = checkBlob(bytes);
    } catch (err) {
      // Only what the blob says; a temp file that cannot be written (ENOSPC under TMPDIR) is not the base's fault.
      if (!(err instanceof VriftError) || !err.message.startsWith('decoding PSFS blob:')) throw err;
      throw new VriftError(`merging onto ${where}: the base's PSFS blob does not decode (${err.message})`, { cause: err });
    }
    const { extra, missing } = (await pathsMatchBlob(image, scan, blob, where)) ? NO_DIFF : await exactPathDiff(image, blob, where);
    if (extra.n || missing.n) {
      const show = (p: string): string => showPath(Buffer.from(p, 'latin1')).slice(1, -1); // unquoted, non-UTF-8 bytes as \xNN
      const first = extra.n ? `${extra.n} paths not in its blob (first: ${show(extra.first)})` : `${missing.n} blob paths missing (first: ${show(missing.first)})`;
      throw new VriftError(`merging onto ${where}: the base's /vrift differs from its blob: ${first}; a later layer changed /vrift (check with \`vrift verify\`), build from the original base`);
    }
    // The same paths, but a layer above the blob's wrote some of them again (content, mode, times):
    // the blob was written with /vrift as it was then, and would describe files that changed.
    const later = scan.layers.find((l) => l.index > scan.blobLayer! && l.vriftMembers > 0);
    if (later) {
      throw new VriftError(`merging onto ${where}: layer ${later.index + 1} writes ${later.vriftMembers} /vrift paths after the blob in layer ${scan.blobLayer! + 1} was written, so the blob may not describe them (check with \`vrift verify\`); build from the original base`);
    }
    return {
      merge: mergeBase(blob, scan.blobDigest, scan.historyDests, where, () => bytes.close()),
      shimDiffID: scan.shimLayer !== undefined ? scan.layers[scan.shimLayer].diffID : undefined,
    };
  } catch (err) {
    bytes.close();
    throw err;
  }
}
