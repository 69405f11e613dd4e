/**
 * Layer and /vrift tree API: the contract between the tree/layer builder
 * (src/cas, src/tree, src/layer) and image assembly (src/image, the `build`
 * command).
 *
 * Terms follow the OCI image spec (image-spec/layer.md, descriptor.md):
 * a layer's `digest` is the sha256 of its compressed bytes (what a manifest
 * descriptor carries), its `diffID` the sha256 of the uncompressed tar (what
 * the config's `rootfs.diff_ids` carries).
 */
import type { BlobEntry, Timespec } from '../blob/writer';

export type { BlobEntry, Timespec };

/** OCI media type of a gzip-compressed tar layer. */
export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip' as const;
/** OCI media type of a zstd-compressed tar layer (image-spec layer.md, v1.1). */
export const MEDIA_TYPE_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd' as const;

/** A finished, compressed layer on disk. */
export interface LayerFile {
  /** Absolute path of the compressed file (the caller owns it: move or delete it). */
  path: string;
  mediaType: typeof MEDIA_TYPE_LAYER_GZIP | typeof MEDIA_TYPE_LAYER_ZSTD;
  /** "sha256:<64 hex>" of the compressed (gzip or zstd) bytes: the manifest descriptor digest. */
  digest: string;
  /** "sha256:<64 hex>" of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffID: string;
  /** Size of the compressed file in bytes: the manifest descriptor size. */
  size: number;
}

/** Default /vrift domain root. */
export const VRIFT_ROOT = '/vrift';
/** Where the shim and the blob live inside the image. */
export const SHIM_IMAGE_PATH = '/usr/lib/vrift/libvrift.so';
export const BLOB_IMAGE_PATH = '/usr/lib/vrift/psfs.blob';

/** Attributes every layer entry carries explicitly (never taken from tar-stream defaults). */
export interface EntryAttrs {
  /** Normalized absolute path bytes inside the image, e.g. "/vrift/python/a.py". Written to the tar without the leading "/". */
  path: Buffer;
  /** Full st_mode: file type bits (S_IFDIR/S_IFREG/S_IFLNK) | permission bits (07777). */
  mode: number;
  uid: number;
  gid: number;
  /**
   * mtime. Planned entries carry whole seconds (nsec 0); buildVriftLayer then
   * puts identity tags in the nanoseconds, and /vrift's become a digest of the
   * tree (src/tree/blobEntries.ts). A non-zero nsec is written as a PAX mtime
   * record.
   */
  mtime: Timespec;
}

export interface DirEntry extends EntryAttrs {
  type: 'directory';
}

export interface SymlinkEntry extends EntryAttrs {
  type: 'symlink';
  /** readlink(2) bytes, unchanged from the source (relative, never leaving its source). */
  target: Buffer;
}

/** A regular file with content in the layer (in a /vrift tree: a CAS object). */
export interface FileEntry extends EntryAttrs {
  type: 'file';
  /** st_size in bytes. */
  size: bigint;
  /** Where the bytes come from: a host file (read when the layer is written) or memory. */
  source: { file: Buffer | string } | { content: Buffer };
  /** sha256 hex of the content, when known (CAS objects). */
  sha256?: string;
  /** st_nlink after extraction: 1 + number of hardlink entries to this file. */
  nlink: number;
}

/**
 * A hardlink to an earlier FileEntry (tar type 'link'). Its attributes equal
 * the target's (a hardlink shares the inode; extractors such as moby's apply
 * a link entry's mode/owner/mtime to the shared inode, so they must agree).
 */
export interface HardlinkEntry extends EntryAttrs {
  type: 'hardlink';
  /** Path of the FileEntry it links to (absolute, e.g. "/vrift/.cas/ab/cdef..."). */
  linkTo: Buffer;
  size: bigint;
  sha256?: string;
  nlink: number;
}

export type LayerEntry = DirEntry | SymlinkEntry | FileEntry | HardlinkEntry;

/** One `--add <src>:<dest>`. */
export interface TreeAdd {
  /** Host directory (a file is not accepted). */
  src: string;
  /** Absolute destination strictly under /vrift, e.g. "/vrift/python". */
  dest: string;
}

export interface PlanOptions {
  /** Owner of every entry. Default { uid: 0, gid: 0 } (root:root). */
  chown?: { uid: number; gid: number };
  /** Clamp every mtime to this many seconds since the epoch (SOURCE_DATE_EPOCH, already parsed). Default: no clamp. */
  sourceDateEpoch?: number;
  /** Digest cache directory. Default $XDG_CACHE_HOME/vrift or ~/.cache/vrift. `false` disables the cache. */
  cacheDir?: string | false;
  /** Progress of hashing (planTree) and compressing (buildVriftLayer), in bytes (src/progress). Default: none. */
  progress?: import('../progress').Progress;
  /**
   * A limit on image path bytes below PATH_MAX - 1, found while planning:
   * `bytes` the longest path allowed, `why` the reason in words (e.g. the
   * engine's overlay2 directory, src/image/daemon.ts engineForLoad). Default: none.
   */
  pathLimit?: { bytes: number; why: string };
  /** Directory for temp files (the planned paths spill to an unlinked file there). Default os.tmpdir(). */
  tmpDir?: string;
}

export interface CasObject {
  /** "/vrift/.cas/<2 hex>/<62 hex>" or, for a second mode of the same content, "...<62 hex>.<4 octal mode>" (see src/cas/README.md). */
  path: Buffer;
  sha256: string;
  size: bigint;
  /** Permission bits (07777) shared by every tree path linked to it. */
  perm: number;
  /**
   * Host file the content is read from (the first tree path by sorted order):
   * a string when its bytes are valid UTF-8, else the bytes.
   */
  srcPath: Buffer | string;
  /** Number of tree paths hardlinked to it (its nlink is links + 1). */
  links: number;
}

/** Output of planTree. */
export interface TreePlan {
  /** "/vrift". */
  root: Buffer;
  /**
   * Every path under /vrift, /vrift included, in layer order: /vrift, then the
   * /vrift/.cas subtree (objects before any hardlink to them), then the rest
   * by path bytes. Directories always precede their contents. Columns
   * (src/layer/table.ts): what buildVriftLayer uses.
   */
  table: import('./table').EntryTable;
  /** The table's entries as objects, made on first access (tests, `vrift layer`; ~0.35 KiB each). */
  readonly entries: LayerEntry[];
  /** The CAS objects (the table's file entries) in path order, made on first access. */
  readonly objects: CasObject[];
  stats: TreeStats;
}

export interface TreeStats {
  /** Tree paths that are regular files (hardlinks to CAS objects), CAS objects not counted. */
  files: number;
  /** Directories, /vrift and /vrift/.cas/** included. */
  dirs: number;
  symlinks: number;
  /** Sum of st_size of tree files (logical bytes before dedup). */
  bytes: bigint;
  casObjects: number;
  /** bytes / sum of object sizes (1 when nothing deduplicated; 1 for an empty tree). */
  dedupRatio: number;
  /** Digest cache hits and misses (files hashed). */
  hashHits: number;
  hashMisses: number;
}

export interface BuildVriftLayerOptions extends PlanOptions {
  adds: TreeAdd[];
  /** Directory for temp and output layer files. Default os.tmpdir(). */
  tmpDir?: string;
  /**
   * The base image's vrift tree (its blob) when building on an image that
   * already has one: the new blob then covers the union (src/tree/merge.ts).
   */
  merge?: import('../tree/merge').MergeBase;
  /**
   * Compression of the tree layer: 'gzip' (default, node:zlib) or 'zstd'
   * (media type application/vnd.oci.image.layer.v1.tar+zstd; needs the
   * optional package zstd-napi, src/layer/compress.ts).
   */
  compression?: 'gzip' | 'zstd';
}

export interface BuildVriftLayerResult {
  layer: LayerFile;
  /**
   * A file (in tmpDir; the caller owns it) holding the PSFS blob bytes written
   * into the layer at /usr/lib/vrift/psfs.blob: not a Buffer, so that the
   * blob is not in memory while the layer is written.
   */
  blobFile: string;
  /** Size of the blob in bytes. */
  blobSize: number;
  /** "sha256:<hex>" of the blob bytes. */
  blobDigest: string;
  stats: TreeStats;
  /**
   * Paths whose st_size/st_blocks in the blob are estimates the builder cannot
   * know (directories with more than 5120 bytes of ext4 entries, files > 512 MiB): see
   * src/tree/README.md. Empty for most trees.
   */
  uncertain: Buffer[];
}

/* Function signatures (implemented in the modules named):
 *
 * src/tree/plan.ts
 *   parseSourceDateEpoch(value: string | undefined): number | undefined   (strict; for the CLI)
 *   planTree(adds: TreeAdd[], opts?: PlanOptions): Promise<TreePlan>
 *     throws VriftError (source missing/unreadable, dest outside /vrift,
 *     overlapping dests, socket/device/FIFO, symlink leaving its source).
 *
 * src/layer/tar.ts
 *   writeLayer(entries: LayerEntry[] | LayerEntries, outFile: string): Promise<LayerFile>
 *     entries written in the given order (callers pass planned order);
 *     temp file + rename; throws VriftError, leaving no file.
 *   writeFileLayer(files: { path: string; mode: number; content?: Buffer; srcPath?: string; mtime?: number }[],
 *                  outFile: string): Promise<LayerFile>
 *     adds all parent directories (0755, root, mtime 0), sorted.
 *
 * src/tree/blobEntries.ts
 *   blobEntriesFromPlan(plan: TreePlan | LayerEntry[], root?: Buffer): { entries: BlobEntry[]; uncertain: Buffer[] }
 *   buildVriftLayer(opts: BuildVriftLayerOptions): Promise<BuildVriftLayerResult>
 *     layer file written under opts.tmpDir as vrift-layer-<digest hex>.tar.gz (.tar.zst with compression 'zstd').
 *   buildShimLayer(shimPath: string, tmpDir?: string): Promise<LayerFile>
 *     usr/, usr/lib/, usr/lib/vrift/ (0755) and usr/lib/vrift/libvrift.so (0755), root:root, mtime 0.
 */
