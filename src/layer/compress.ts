/**
 * Layer compressors other than gzip. zstd comes from the optional package
 * zstd-napi (bindings to the reference libzstd, built from its bundled
 * source by node-gyp); vrift works without it and refuses `--compression
 * zstd` with what to install.
 *
 * Determinism: the zstd frame depends only on the input bytes and the fixed
 * parameters below (level, checksum flag, single thread; the content size is
 * not known up front, so the frame header omits it), so the same tar gives
 * the same digest with the same libzstd version.
 */
import type { Transform } from 'node:stream';
import { VriftError } from '../errors';

/** zstd level used for every zstd layer (fixed: the compressed bytes, hence the digest, depend on it). */
export const ZSTD_LEVEL = 3;

interface ZstdModule {
  CompressStream: new (p?: { compressionLevel?: number; checksumFlag?: boolean }) => Transform;
  DecompressStream: new () => Transform;
}

let loaded: ZstdModule | null | undefined;

/** The zstd-napi module, or null when it is not installed (or did not build). */
export function zstdModule(): ZstdModule | null {
  if (loaded === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      loaded = require('zstd-napi') as ZstdModule;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** Whether zstd layers can be written here. */
export function zstdAvailable(): boolean {
  return zstdModule() !== null;
}

function need(what: string): ZstdModule {
  const z = zstdModule();
  if (!z) throw new VriftError(`${what}: zstd needs the optional package zstd-napi, which is not installed here; run \`npm install zstd-napi\` (it builds libzstd with node-gyp) or use --compression gzip`);
  return z;
}

/**
 * A Transform that zstd-compresses what is written to it: level
 * {@link ZSTD_LEVEL}, content checksum on, one frame.
 * @throws VriftError when zstd-napi is not installed
 */
export function createZstdCompressor(): Transform {
  const z = need('compressing a layer with zstd');
  return new z.CompressStream({ compressionLevel: ZSTD_LEVEL, checksumFlag: true });
}

/**
 * A Transform that decompresses a zstd stream (any number of frames).
 * @param what names the stream in the error when zstd-napi is missing
 * @throws VriftError when zstd-napi is not installed
 */
export function createZstdDecompressor(what: string): Transform {
  return new (need(`reading ${what}`)).DecompressStream();
}
