/**
 * Derive the parts of an Image a source does not store (after
 * go-containerregistry's pkg/v1/partial): from config bytes and layers,
 * build the OCI manifest.
 */
import { sha256Digest } from './digest';
import { canonicalJsonBytes } from './json';
import { MediaType, type Descriptor, type Image, type ImageConfig, type Layer, type Manifest } from './types';

/** The descriptor of a layer, computing digest/size/media type as needed. */
export async function layerDescriptor(layer: Layer): Promise<Descriptor> {
  return { mediaType: await layer.mediaType(), digest: await layer.digest(), size: await layer.size() };
}

/**
 * An Image from exact config bytes and its layers (base first). The manifest
 * is an OCI image manifest serialized with canonicalJson.
 *
 * @param rawConfig config bytes, kept exactly (their sha256 is the config digest)
 * @param config the parsed config (must be what rawConfig parses to)
 * @param layers in `rootfs.diff_ids` order
 * @param rawManifest exact manifest bytes when the source stores them; built otherwise
 */
export function imageFromParts(rawConfig: Buffer, config: ImageConfig, layers: Layer[], rawManifest?: Buffer): Image {
  let manifestP: Promise<{ raw: Buffer; parsed: Manifest }> | undefined;
  const build = () =>
    (manifestP ??= (async () => {
      if (rawManifest) return { raw: rawManifest, parsed: JSON.parse(rawManifest.toString('utf8')) as Manifest };
      const parsed: Manifest = {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: { mediaType: MediaType.ociConfig, digest: sha256Digest(rawConfig), size: rawConfig.length },
        layers: await Promise.all(layers.map(layerDescriptor)),
      };
      return { raw: canonicalJsonBytes(parsed), parsed };
    })());
  return {
    manifest: async () => (await build()).parsed,
    rawManifest: async () => (await build()).raw,
    config: async () => config,
    rawConfig: async () => rawConfig,
    layers: async () => layers,
  };
}

/** `sha256:<hex>` of the image's config bytes: the classic engine's image ID. */
export async function configDigest(image: Image): Promise<string> {
  return sha256Digest(await image.rawConfig());
}
