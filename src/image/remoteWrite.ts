/**
 * A registry as an image sink (after go-containerregistry's remote.Write):
 * every layer and the config are pushed as blobs (skipped when present,
 * mounted from the repository a registry layer came from when it is on the
 * same registry, uploaded otherwise), then the manifest is `PUT` under the
 * tag as an OCI image manifest.
 *
 * Layers stored uncompressed (e.g. a base exported by the engine) are
 * gzip-compressed for the push, as `docker push` does, so the pushed
 * manifest lists `application/vnd.oci.image.layer.v1.tar+gzip` layers and may
 * differ from the manifest of a docker-archive written from the same image;
 * the config (and so the image ID) is the same. Docker gzip media types are
 * rewritten to their OCI names (same bytes).
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { VriftError } from '../errors';
import type { BlobPushOutcome, BlobToPush, RegistryPool } from '../registry/client';
import { formatRegistryRef, type RegistryRef } from '../registry/reference';
import { sha256Digest } from './digest';
import { canonicalJsonBytes } from './json';
import { compressionOfMediaType } from './layer';
import { layerOrigin } from './remote';
import { NO_PROGRESS } from '../progress';
import type { Phase, Progress } from '../progress';
import { MediaType, type Descriptor, type Image, type ImageIndex, type Layer, type Manifest, type Platform } from './types';

/** Options of pushImage. */
export interface PushOptions {
  pool: RegistryPool;
  /** Directory for gzip copies of uncompressed layers (the caller removes it). */
  tmpDir: string;
  /** Layers pushed at once. [2] */
  concurrency?: number;
  log?: (line: string) => void;
  /** Upload progress: one "uploading" phase over all layer bytes (skipped and mounted blobs count as done). */
  progress?: Progress;
}

/** A stream opener that reports the bytes read through it. */
function counted(open: () => Promise<Readable>, phase: Phase): () => Promise<Readable> {
  return async () => {
    const src = await open();
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        phase.add(chunk.length);
        cb(null, chunk);
      },
    });
    src.on('error', (err) => tap.destroy(err));
    return src.pipe(tap);
  };
}

/** One pushed blob. Size in bytes. */
export interface PushedBlob {
  digest: string;
  size: number;
  mediaType: string;
  outcome: BlobPushOutcome;
}

/** What pushImage did. */
export interface PushResult {
  /** `host[:port]/repo:tag` pushed. */
  reference: string;
  /** Digest of the pushed manifest: `host[:port]/repo@<manifestDigest>` names it. */
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  layers: PushedBlob[];
}

async function gzipToFile(layer: Layer, file: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  await pipeline(await layer.open(), createGzip(), tap, createWriteStream(file));
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** OCI name of a layer media type with the same bytes. */
function ociLayerType(mediaType: string): string {
  if (mediaType === MediaType.dockerLayerGzip) return MediaType.ociLayerGzip;
  if (mediaType === MediaType.dockerLayer) return MediaType.ociLayer;
  return mediaType;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Push the image's layers and config to `ref`'s repository, without a manifest.
 * @returns the OCI manifest to put (exact bytes) and per-layer outcomes
 */
async function pushBlobs(image: Image, ref: RegistryRef, opts: PushOptions): Promise<{ raw: Buffer; manifest: Manifest; layers: PushedBlob[]; configDigest: string }> {
  const reg = opts.pool.get(ref.registry);
  const log = opts.log ?? (() => undefined);
  const layers = await image.layers();
  const src = await image.manifest();
  if (src.layers.length !== layers.length) throw new VriftError(`pushing ${ref.raw}: the manifest lists ${src.layers.length} layers but the image has ${layers.length}`);
  // total unknown (0) when a layer is gzipped for the push: its pushed size is known only then
  const total = src.layers.some((l) => compressionOfMediaType(l.mediaType) === 'none') ? 0 : src.layers.reduce((n, l) => n + l.size, 0);
  const phase = (opts.progress ?? NO_PROGRESS).phase('uploading', total);
  const pushed = await mapLimit(layers, opts.concurrency ?? 2, async (layer, i): Promise<PushedBlob> => {
    const d = src.layers[i];
    let blob: BlobToPush;
    let mediaType = ociLayerType(d.mediaType);
    if (compressionOfMediaType(d.mediaType) === 'none') {
      const file = path.join(opts.tmpDir, `push-gzip-${i}`);
      log(`compressing layer ${i + 1} (${d.digest}, ${d.size} bytes) with gzip for the push`);
      const gz = await gzipToFile(layer, file);
      mediaType = MediaType.ociLayerGzip;
      blob = { digest: gz.digest, size: gz.size, open: async () => createReadStream(file), what: `layer ${i + 1}` };
    } else {
      const origin = layerOrigin.get(layer);
      blob = {
        digest: d.digest,
        size: d.size,
        open: () => layer.open(),
        what: `layer ${i + 1}`,
        mountFrom: origin && origin.registry === ref.registry ? origin.repository : undefined,
      };
    }
    const outcome = await reg.pushBlob(ref.repository, { ...blob, open: counted(blob.open, phase) });
    if (outcome === 'existed' || outcome === 'mounted') phase.add(blob.size);
    log(`layer ${i + 1}/${layers.length} ${blob.digest} (${blob.size} bytes): ${outcome}${outcome === 'mounted' ? ` from ${blob.mountFrom}` : ''}`);
    return { digest: blob.digest, size: blob.size, mediaType, outcome };
  });
  phase.end();
  const rawConfig = await image.rawConfig();
  const configDigest = sha256Digest(rawConfig);
  await reg.pushBlob(ref.repository, { digest: configDigest, size: rawConfig.length, open: async () => Readable.from([rawConfig]), what: 'config' });
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configDigest, size: rawConfig.length },
    layers: pushed.map((p): Descriptor => ({ mediaType: p.mediaType, digest: p.digest, size: p.size })),
  };
  return { raw: canonicalJsonBytes(manifest), manifest, layers: pushed, configDigest };
}

/**
 * Push `image` to `ref` (`host[:port]/repo[:tag]`, tag default `latest`).
 * @throws RegistryError when the registry refuses a request (codes kept), VriftError
 *   when a layer cannot be read or a digest does not match after the push
 */
export async function pushImage(image: Image, ref: RegistryRef, opts: PushOptions): Promise<PushResult> {
  if (ref.digest) throw new VriftError(`pushing ${ref.raw}: push to a tag, not a digest (the digest is the result)`);
  const tag = ref.tag ?? 'latest';
  const { raw, layers, configDigest } = await pushBlobs(image, ref, opts);
  const reg = opts.pool.get(ref.registry);
  const manifestDigest = await reg.putManifest(ref.repository, tag, raw, MediaType.ociManifest);
  return { reference: formatRegistryRef(ref, tag), manifestDigest, manifestSize: raw.length, configDigest, layers };
}

/**
 * Push several single-platform images and an OCI image index naming them to
 * `ref` (a multi-platform image). Each image is pushed by digest; the index
 * carries `platform` from the given value.
 * @returns the index digest and the per-platform results
 */
export async function pushIndex(images: { image: Image; platform: Platform }[], ref: RegistryRef, opts: PushOptions): Promise<{ reference: string; indexDigest: string; manifests: (PushResult & { platform: Platform })[] }> {
  const reg = opts.pool.get(ref.registry);
  const manifests: (PushResult & { platform: Platform })[] = [];
  for (const { image, platform } of images) {
    const { raw, layers, configDigest } = await pushBlobs(image, ref, opts);
    const digest = await reg.putManifest(ref.repository, sha256Digest(raw), raw, MediaType.ociManifest);
    manifests.push({ reference: formatRegistryRef(ref, digest), manifestDigest: digest, manifestSize: raw.length, configDigest, layers, platform });
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: manifests.map((m) => ({ mediaType: MediaType.ociManifest, digest: m.manifestDigest, size: m.manifestSize, platform: m.platform })),
  };
  const tag = ref.tag ?? 'latest';
  const indexDigest = await reg.putManifest(ref.repository, tag, canonicalJsonBytes(index), MediaType.ociIndex);
  return { reference: formatRegistryRef(ref, tag), indexDigest, manifests };
}

/** Remove a directory of push temp files. */
export async function removePushFiles(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}
