/**
 * Layers backed by an opener (a function returning a fresh stream of the
 * stored bytes), after go-containerregistry's tarball.LayerFromOpener. Values
 * not supplied up front (digest, diffID, size, compression) are computed
 * lazily, once, by streaming; nothing is buffered whole.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import type { Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { createZstdDecompressor } from '../layer/compress';
import { hashStream } from './digest';
import type { FileSource } from './files';
import { MediaType, type Layer } from './types';

/** How a layer's stored bytes are compressed. */
export type Compression = 'none' | 'gzip' | 'zstd';

/** Compression implied by a layer media type, or undefined when unknown. */
export function compressionOfMediaType(mediaType: string): Compression | undefined {
  if (mediaType === MediaType.ociLayer || mediaType === MediaType.dockerLayer) return 'none';
  if (mediaType === MediaType.ociLayerGzip || mediaType === MediaType.dockerLayerGzip) return 'gzip';
  if (mediaType === MediaType.ociLayerZstd) return 'zstd';
  // Non-distributable variants carry the same suffixes.
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip')) return 'gzip';
  if (mediaType.endsWith('+zstd')) return 'zstd';
  if (mediaType.endsWith('.tar')) return 'none';
  return undefined;
}

/** The OCI layer media type for stored bytes with the given compression. */
export function ociLayerMediaType(c: Compression): string {
  return c === 'gzip' ? MediaType.ociLayerGzip : c === 'zstd' ? MediaType.ociLayerZstd : MediaType.ociLayer;
}

/** Compression recognized from the first bytes of a blob (gzip 1f 8b, zstd 28 b5 2f fd). */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

async function readHead(open: () => Promise<Readable>, n: number): Promise<Buffer> {
  const s = await open();
  const chunks: Buffer[] = [];
  let got = 0;
  try {
    for await (const c of s) {
      chunks.push(c as Buffer);
      got += (c as Buffer).length;
      if (got >= n) break;
    }
  } finally {
    s.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** What is known up front about an opener-backed layer. */
export interface OpenerLayerOptions {
  /** Returns a fresh stream of the stored bytes. */
  open: () => Promise<Readable>;
  /** Names the layer in errors, e.g. `layer 1 of docker-archive:base.tar`. */
  what: string;
  compression?: Compression;
  digest?: string;
  diffID?: string;
  /** Stored size in bytes. */
  size?: number;
  mediaType?: string;
}

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/**
 * A Layer over an opener. For an uncompressed layer, digest and diffID are
 * the same hash, so knowing one gives the other without reading any bytes.
 */
export function layerFromOpener(o: OpenerLayerOptions): Layer {
  const compression = once(async (): Promise<Compression> => {
    if (o.compression) return o.compression;
    if (o.mediaType) {
      const c = compressionOfMediaType(o.mediaType);
      if (c) return c;
    }
    return sniffCompression(await readHead(o.open, 4));
  });
  const stored = once(async () => {
    if (o.size !== undefined) {
      if (o.digest) return { digest: o.digest, size: o.size };
      if (o.diffID && (await compression()) === 'none') return { digest: o.diffID, size: o.size };
    }
    return hashStream(await o.open());
  });
  const openUncompressed = async (): Promise<Readable> => {
    const c = await compression();
    const src = await o.open();
    if (c === 'none') return src;
    let dec: Transform;
    try {
      dec = c === 'zstd' ? createZstdDecompressor(o.what) : createGunzip();
    } catch (err) {
      src.destroy();
      throw err;
    }
    src.on('error', (err) => dec.destroy(err));
    return src.pipe(dec);
  };
  const diffID = once(async () => {
    if (o.diffID) return o.diffID;
    if ((await compression()) === 'none') return (await stored()).digest;
    return (await hashStream(await openUncompressed())).digest;
  });
  return {
    digest: async () => (await stored()).digest,
    size: async () => (await stored()).size,
    diffID,
    mediaType: async () => o.mediaType ?? ociLayerMediaType(await compression()),
    open: o.open,
    openUncompressed,
  };
}

/**
 * A layer stored as member `name` of a FileSource (docker-archive or OCI
 * layout). Compression is taken from the media type when given, otherwise
 * sniffed from the first bytes.
 */
export function layerFromMember(files: FileSource, name: string, known: Omit<OpenerLayerOptions, 'open'>): Layer {
  return layerFromOpener({ ...known, open: () => files.open(name) });
}

/**
 * A layer stored as a local file with all of its values known, e.g. a layer
 * vrift just wrote (src/layer's LayerFile). Nothing is re-hashed here; the
 * archive writer verifies digest and size while copying.
 */
export function layerFromFile(file: { path: string; mediaType: string; digest: string; diffID: string; size: number }): Layer {
  return layerFromOpener({
    what: file.path,
    open: async () => {
      await fsp.access(file.path);
      return createReadStream(file.path);
    },
    mediaType: file.mediaType,
    digest: file.digest,
    diffID: file.diffID,
    size: file.size,
  });
}
