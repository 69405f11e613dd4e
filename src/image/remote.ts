/**
 * A registry as an image source (after go-containerregistry's remote.Image):
 * the manifest is resolved by tag or digest, an image index is narrowed to
 * one platform (default: the host's, linux/amd64 on x86-64), the config is
 * fetched and verified, and each layer is downloaded on first use, streamed
 * to a file in `tmpDir` with its digest and size verified, then read from
 * there. A layer that is never opened (e.g. pushed to the same registry by a
 * cross-repository mount) is never downloaded.
 *
 * `layerOrigin` records where each layer came from, so that a push to the
 * same registry can mount it instead of uploading it.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VriftError } from '../errors';
import type { Registry, RegistryPool } from '../registry/client';
import { RegistryError } from '../registry/errors';
import { formatRegistryRef, type RegistryRef } from '../registry/reference';
import { digestHex, sha256Digest } from './digest';
import { parseImageConfig } from './dockerArchive';
import { layerFromOpener } from './layer';
import { parsePlatform } from './ociLayout';
import { imageFromParts } from './partial';
import { MediaType, type Descriptor, type Image, type ImageIndex, type Layer, type Manifest, type Platform } from './types';

/** Where a layer read from a registry lives: a repository of a registry. */
export interface LayerOrigin {
  registry: string;
  repository: string;
}

/** Layers read from a registry, by object identity (kept through mutate.appendLayers). */
export const layerOrigin = new WeakMap<Layer, LayerOrigin>();

/** `os/arch[/variant]` of this host in OCI terms (Node's `x64` is `amd64`). */
export function hostPlatform(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
  return `linux/${arch}`;
}

/** `os/arch[/variant]` of a platform object. */
export function formatPlatform(p: Platform | undefined): string {
  return p ? `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}` : 'unspecified';
}

function isIndex(mediaType: string | undefined): boolean {
  return mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList;
}

/** Options of readRemoteImage. */
export interface RemoteImageOptions {
  /** Registry clients (shared ping, tokens, retry settings). */
  pool: RegistryPool;
  /** Directory for downloaded layers (the caller removes it). */
  tmpDir: string;
  /** Platform to select from an image index, `os/arch[/variant]`. Default hostPlatform(). */
  platform?: string;
}

/** A registry image and what was resolved to read it. */
export interface RemoteImage {
  image: Image;
  /** Digest of the image manifest read. */
  manifestDigest: string;
  /** Digest of the index the manifest was selected from, when the reference named an index. */
  indexDigest?: string;
  /** Platform of the selected manifest as the index lists it. */
  platform?: string;
}

/** Pick one manifest of an index for `want`; attestation entries (unknown/unknown) are skipped. */
export function selectPlatform(index: ImageIndex, want: string, where: string): Descriptor {
  const p = parsePlatform(want);
  const images = (index.manifests ?? []).filter((d) => !(d.platform?.os === 'unknown' && d.platform?.architecture === 'unknown'));
  const matches = images.filter(
    (d) => d.platform && d.platform.os === p.os && d.platform.architecture === p.architecture && (p.variant === undefined || d.platform.variant === p.variant),
  );
  if (matches.length === 0) {
    throw new VriftError(`reading base image ${where}: the image index has no manifest for platform ${want}; it has ${images.map((d) => formatPlatform(d.platform)).join(', ') || 'none'} (choose one with --platform)`);
  }
  return matches[0];
}

async function readSmallBlob(reg: Registry, repository: string, d: Descriptor, what: string): Promise<Buffer> {
  if (typeof d.size !== 'number' || d.size > 64 * 1024 * 1024) throw new VriftError(`reading ${what}: size ${d.size} is not plausible for a config`);
  const s = await reg.openBlob(repository, d.digest);
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of s) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n > d.size) break;
  }
  s.destroy();
  const buf = Buffer.concat(chunks);
  if (buf.length !== d.size || sha256Digest(buf) !== d.digest) {
    throw new VriftError(`reading ${what}: the registry sent ${sha256Digest(buf)} (${buf.length} bytes), expected ${d.digest} (${d.size} bytes); refusing it`);
  }
  return buf;
}

/**
 * Read one image from a registry.
 * @throws RegistryError (unknown manifest, auth, network) or VriftError (no
 *   manifest for the platform, malformed manifest or config, digest mismatch)
 */
export async function readRemoteImage(ref: RegistryRef, opts: RemoteImageOptions): Promise<RemoteImage> {
  const reg = opts.pool.get(ref.registry);
  const where = ref.raw;
  const want = opts.platform ?? hostPlatform();
  let fetched = await reg.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest');
  let indexDigest: string | undefined;
  let platform: string | undefined;
  if (isIndex(fetched.mediaType)) {
    const index = JSON.parse(fetched.raw.toString('utf8')) as ImageIndex;
    indexDigest = fetched.digest;
    const chosen = selectPlatform(index, want, where);
    platform = formatPlatform(chosen.platform);
    if (isIndex(chosen.mediaType)) throw new VriftError(`reading base image ${where}: nested image indexes are not supported for registry images`);
    fetched = await reg.getManifest(ref.repository, chosen.digest);
    if (isIndex(fetched.mediaType)) throw new VriftError(`reading base image ${where}: nested image indexes are not supported for registry images`);
  }
  if (fetched.mediaType !== MediaType.ociManifest && fetched.mediaType !== MediaType.dockerManifest) {
    throw new VriftError(`reading base image ${where}: manifest media type ${JSON.stringify(fetched.mediaType)} is not supported (OCI image manifest, Docker schema 2 and their indexes are); re-push the image with a current client`);
  }
  const manifest = JSON.parse(fetched.raw.toString('utf8')) as Manifest;
  if (!manifest.config || !Array.isArray(manifest.layers)) throw new VriftError(`reading base image ${where}: manifest ${fetched.digest} has no config or layers`);
  const rawConfig = await readSmallBlob(reg, ref.repository, manifest.config, `the config of ${where}`);
  const config = parseImageConfig(rawConfig, where);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new VriftError(`reading base image ${where}: manifest lists ${manifest.layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff_ids`);
  }
  const origin: LayerOrigin = { registry: ref.registry, repository: ref.repository };
  const layers = manifest.layers.map((d, i) => {
    const file = path.join(opts.tmpDir, `layer-${digestHex(d.digest)}`);
    let downloaded: Promise<void> | undefined;
    const layer = layerFromOpener({
      what: `layer ${i + 1} (${d.digest}) of ${where}`,
      digest: d.digest,
      size: d.size,
      diffID: config.rootfs.diff_ids[i],
      mediaType: d.mediaType,
      open: async () => {
        downloaded ??= reg.downloadBlob(ref.repository, d.digest, d.size, file);
        downloaded.catch(() => {
          downloaded = undefined;
        });
        await downloaded;
        return createReadStream(file);
      },
    });
    layerOrigin.set(layer, origin);
    return layer;
  });
  return { image: imageFromParts(rawConfig, config, layers, fetched.raw), manifestDigest: fetched.digest, indexDigest, platform };
}

/**
 * Check cheaply (HEAD) that the reference names a manifest.
 * @throws VriftError naming the reference when the registry has no such manifest
 */
export async function checkRemoteImage(ref: RegistryRef, pool: RegistryPool): Promise<void> {
  const tagOrDigest = ref.digest ?? ref.tag ?? 'latest';
  let found;
  try {
    found = await pool.get(ref.registry).headManifest(ref.repository, tagOrDigest);
  } catch (err) {
    if (err instanceof RegistryError) throw new RegistryError(`reading base image ${ref.raw}: ${err.message}`, { status: err.status, errors: err.errors, method: err.method, url: err.url, cause: err });
    throw err;
  }
  if (!found) {
    throw new VriftError(`reading base image ${ref.raw}: the registry ${ref.registry} has no manifest ${formatRegistryRef(ref, tagOrDigest)}; check the name and tag (\`skopeo list-tags docker://${ref.registry}/${ref.repository}\`)`);
  }
}

/** Remove a download directory (helper for callers owning tmpDir). */
export async function removeDownloads(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}
