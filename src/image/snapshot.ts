import { sha256Digest } from './digest';
import { parseReference } from './reference';
import { MediaType, type Image, type ImageIndex, type Layer, type Manifest } from './types';

/** What a sink writes for one image: raw config and manifest bytes, their digests, the layers and an OCI index. */
export interface ImageSnapshot {
  rawConfig: Buffer;
  rawManifest: Buffer;
  manifest: Manifest;
  layers: Layer[];
  /** "sha256:<hex>" of rawConfig. */
  configDigest: string;
  /** "sha256:<hex>" of rawManifest. */
  manifestDigest: string;
  /**
   * OCI image index (image-spec image-index.md) naming the manifest once per
   * tag, with the containerd and OCI ref-name annotations; one unnamed entry
   * when there are no tags.
   */
  index: ImageIndex;
}

/**
 * Read an image's config, manifest and layers once and build the OCI index
 * that docker-archive (Docker >= 25 layout) and OCI layout sinks both write.
 *
 * @param tags references as `name[:tag]`
 * @throws VriftError for a tag that is not a valid reference, or from the image's accessors
 */
export async function snapshotImage(image: Image, tags: string[]): Promise<ImageSnapshot> {
  const refs = tags.map((t) => parseReference(t, 'tag'));
  const rawConfig = await image.rawConfig();
  const rawManifest = await image.rawManifest();
  const manifest = await image.manifest();
  const layers = await image.layers();
  const manifestDigest = sha256Digest(rawManifest);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: (refs.length ? refs : [undefined]).map((t) => ({
      mediaType: manifest.mediaType ?? MediaType.ociManifest,
      digest: manifestDigest,
      size: rawManifest.length,
      ...(t ? { annotations: { 'io.containerd.image.name': t.familiar, 'org.opencontainers.image.ref.name': t.tag ?? 'latest' } } : {}),
    })),
  };
  return { rawConfig, rawManifest, manifest, layers, configDigest: sha256Digest(rawConfig), manifestDigest, index };
}
