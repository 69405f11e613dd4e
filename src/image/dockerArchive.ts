/**
 * docker-archive reader: the tar `docker save` writes.
 *
 * Two layouts are read (both are described by `manifest.json`, an array of
 * `{Config, RepoTags, Layers}` whose paths name members of the tar):
 * - legacy (Docker < 25): `<id>/layer.tar` (uncompressed) and `<hex>.json`;
 * - Docker >= 25: `blobs/sha256/<hex>` for config and layers (an OCI image
 *   layout in the same tar; legacy `<id>/layer.tar` members may be symlinks
 *   into `blobs/`).
 * Layers may be stored uncompressed or gzip-compressed (tools such as
 * go-containerregistry write `.tar.gz` members); compression is sniffed.
 * Spec source: moby image/spec/v1.2.md "Combined Image JSON + Filesystem
 * Changeset Format" and moby/moby image/tarexport.
 */
import { VriftError } from '../errors';
import { isSha256Digest } from './digest';
import { TarFileSource, type FileSource } from './files';
import { layerFromMember } from './layer';
import { imageFromParts } from './partial';
import { sameReference } from './reference';
import type { Image, ImageConfig } from './types';

/** One element of a docker-archive's manifest.json. */
export interface DockerArchiveManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  [key: string]: unknown;
}

/** A docker-archive image and the tags the archive records for it. */
export interface DockerArchiveImage {
  image: Image;
  repoTags: string[];
}

/**
 * Parse and check a config JSON buffer.
 * @throws VriftError when it is not an image config with rootfs.diff_ids
 */
export function parseImageConfig(raw: Buffer, where: string): ImageConfig {
  let config: ImageConfig;
  try {
    config = JSON.parse(raw.toString('utf8')) as ImageConfig;
  } catch (err) {
    throw new VriftError(`reading image config in ${where}: not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof config !== 'object' || config === null || !config.rootfs || !Array.isArray(config.rootfs.diff_ids)) {
    throw new VriftError(`reading image config in ${where}: rootfs.diff_ids is missing; this is not an image config`);
  }
  for (const d of config.rootfs.diff_ids) {
    if (!isSha256Digest(d)) throw new VriftError(`reading image config in ${where}: diffID ${JSON.stringify(d)} is not a sha256 digest`);
  }
  return config;
}

/**
 * Read one image from a docker-archive.
 *
 * @param files the archive's members (usually a TarFileSource)
 * @param ref pick the entry whose RepoTags contain this reference; without it
 *   the archive must hold exactly one image
 * @throws VriftError when manifest.json is missing or malformed, the image is
 *   not found or ambiguous, or layer counts disagree with the config
 */
export async function readDockerArchive(files: FileSource, ref?: string): Promise<DockerArchiveImage> {
  if (!(await files.has('manifest.json'))) {
    throw new VriftError(`reading ${files.where}: manifest.json is missing; this is not a docker-archive (make one with \`docker save -o file.tar <image>\`)`);
  }
  let entries: DockerArchiveManifestEntry[];
  try {
    entries = JSON.parse((await files.readFile('manifest.json')).toString('utf8')) as DockerArchiveManifestEntry[];
  } catch (err) {
    throw new VriftError(`reading ${files.where}: manifest.json is not JSON (${(err as Error).message})`, { cause: err });
  }
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new VriftError(`reading ${files.where}: manifest.json lists no image`);
  }
  let entry: DockerArchiveManifestEntry | undefined;
  if (ref !== undefined) {
    entry = entries.find((e) => (e.RepoTags ?? []).some((t) => sameReference(t, ref)));
    if (!entry && entries.length === 1) entry = entries[0];
    if (!entry) {
      const tags = entries.flatMap((e) => e.RepoTags ?? []);
      throw new VriftError(`reading ${files.where}: no image tagged ${ref}; the archive holds ${tags.join(', ') || 'only untagged images'}`);
    }
  } else {
    if (entries.length > 1) {
      const tags = entries.flatMap((e) => e.RepoTags ?? []);
      throw new VriftError(`reading ${files.where}: the archive holds ${entries.length} images; say which with docker-archive:<file>:<name:tag> (tags: ${tags.join(', ') || 'none'})`);
    }
    entry = entries[0];
  }
  if (typeof entry.Config !== 'string' || !Array.isArray(entry.Layers)) {
    throw new VriftError(`reading ${files.where}: manifest.json entry lacks Config or Layers`);
  }
  const rawConfig = await files.readFile(entry.Config);
  const config = parseImageConfig(rawConfig, files.where);
  const diffIDs = config.rootfs.diff_ids;
  if (diffIDs.length !== entry.Layers.length) {
    throw new VriftError(`reading ${files.where}: manifest.json lists ${entry.Layers.length} layers but the config has ${diffIDs.length} diff_ids; the archive is inconsistent`);
  }
  const layers = await Promise.all(
    entry.Layers.map(async (name, i) => {
      const m = /(?:^|\/)blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
      return layerFromMember(files, name, {
        what: `layer ${i + 1} (${name}) of ${files.where}`,
        diffID: diffIDs[i],
        digest: m ? `sha256:${m[1]}` : undefined,
        size: await files.size(name),
      });
    }),
  );
  return { image: imageFromParts(rawConfig, config, layers), repoTags: entry.RepoTags ?? [] };
}

/**
 * Open a docker-archive tar file.
 * @param file path of the tar
 * @param ref optional tag to pick among several images
 */
export async function readDockerArchiveFile(file: string, ref?: string): Promise<DockerArchiveImage> {
  const files = await TarFileSource.index(file, `docker-archive:${file}`);
  return readDockerArchive(files, ref);
}
