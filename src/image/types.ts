/**
 * Accessor interfaces for container images, after go-containerregistry's
 * pkg/v1 `Image` and `Layer` (read-only, every accessor async and able to fail).
 *
 * Terms (OCI image spec, image-layout.md / config.md):
 * - **digest** of a layer: `sha256:<hex>` of the bytes as stored in the image
 *   (the blob; gzip-compressed for `...tar+gzip` media types, a plain tar for
 *   `...tar`). Manifests list layers by digest.
 * - **diffID** of a layer: `sha256:<hex>` of the uncompressed tar. The config's
 *   `rootfs.diff_ids` lists layers by diffID. For an uncompressed layer the two
 *   are equal.
 * - Layer order is always base first (index 0 = bottom layer), as in
 *   `rootfs.diff_ids` and in a manifest's `layers`.
 *
 * Sources (docker-archive, OCI layout, daemon) implement `Image`; sinks
 * (docker-archive writer, engine load) consume it; `mutate` wraps one.
 */
import type { Readable } from 'node:stream';

/** OCI and Docker media types used by vrift. */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** An OCI content descriptor (descriptor.md). `size` is in bytes. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  [key: string]: unknown;
}

/** OCI platform object (image-index.md). */
export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  [key: string]: unknown;
}

/** OCI image manifest (manifest.md); Docker schema 2 has the same shape. */
export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** OCI image index (image-index.md); also a Docker manifest list. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** One `history` entry of an image config (config.md). `created` is RFC 3339. */
export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** The `config` member of an image config: defaults for a container. */
export interface ContainerConfig {
  Env?: string[] | null;
  Labels?: Record<string, string> | null;
  [key: string]: unknown;
}

/**
 * OCI image config (config.md). Unknown members are preserved through
 * mutation, so the index signature stays open.
 */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  author?: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [key: string]: unknown;
}

/**
 * One layer. Every opener returns a fresh stream positioned at byte 0, so a
 * layer can be read any number of times (hashing, copying, loading).
 */
export interface Layer {
  /** OCI digest: sha256 of the stored bytes (what `open()` yields). */
  digest(): Promise<string>;
  /** diffID: sha256 of the uncompressed tar (what `openUncompressed()` yields). */
  diffID(): Promise<string>;
  /** Size in bytes of the stored bytes. */
  size(): Promise<number>;
  /** Media type of the stored bytes (see MediaType). */
  mediaType(): Promise<string>;
  /** A fresh stream of the stored bytes (compressed when the media type says so). */
  open(): Promise<Readable>;
  /** A fresh stream of the uncompressed tar. */
  openUncompressed(): Promise<Readable>;
}

/** A single-platform image. */
export interface Image {
  /** The image manifest; its layers are listed base first. */
  manifest(): Promise<Manifest>;
  /** Exact manifest bytes; `sha256(rawManifest())` is the manifest digest. */
  rawManifest(): Promise<Buffer>;
  /** The parsed image config. Callers must not modify it. */
  config(): Promise<ImageConfig>;
  /** Exact config bytes; `sha256(rawConfig())` is the config digest (the engine's image ID). */
  rawConfig(): Promise<Buffer>;
  /** Layers, base first, in the order of `rootfs.diff_ids`. */
  layers(): Promise<Layer[]>;
}

/** Something that holds resources (temp files, fds) until disposed. */
export interface Disposable {
  dispose(): Promise<void>;
}
