/**
 * OCI image layout writer (image-spec image-layout.md) for `vrift build
 * --output <dir> --format oci`: a directory holding
 *
 *   oci-layout          {"imageLayoutVersion":"1.0.0"}
 *   index.json          OCI image index naming the manifest (ref name = tag)
 *   blobs/sha256/<hex>  config, layers (stored bytes, unchanged), manifest
 *
 * with the same bytes `writeDockerArchive` puts in its tar (which is itself an
 * OCI layout tar, so `--format oci` with a `.tar` output writes that). Layer
 * bytes are checked against their digest and size while copied. The layout
 * appears only when complete: it is written into a temp directory next to
 * the destination and renamed.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { VriftError } from '../errors';
import { removeOnSignal } from './cleanup';
import { digestHex, verifyingPassThrough } from './digest';
import { canonicalJsonBytes } from './json';
import { snapshotImage } from './snapshot';
import type { Image } from './types';

/** What writeOciLayoutDir wrote. Digests are `sha256:<hex>`; size = sum of file sizes in bytes. */
export interface WrittenLayout {
  path: string;
  configDigest: string;
  manifestDigest: string;
  size: number;
}

/**
 * Write `image` as an OCI image layout directory `dir`.
 * @param tags recorded as `org.opencontainers.image.ref.name` (the tag part) and `io.containerd.image.name`
 * @throws VriftError when `dir` exists and is not empty, a layer does not match its digest, or on I/O failure; nothing is left behind then
 */
export async function writeOciLayoutDir(image: Image, dir: string, tags: string[] = []): Promise<WrittenLayout> {
  const dest = path.resolve(dir);
  const existing = await fsp.readdir(dest).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : err));
  if (existing instanceof Error) throw new VriftError(`writing OCI layout ${dir}: ${existing.message}; give a new directory path`);
  if (existing && existing.length > 0) throw new VriftError(`writing OCI layout ${dir}: the directory exists and is not empty; remove it or give a new path`);
  const { rawConfig, rawManifest, manifest, layers, configDigest, manifestDigest, index } = await snapshotImage(image, tags);

  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.vrift-tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const unregister = removeOnSignal(tmp);
  try {
    const blobs = path.join(tmp, 'blobs', 'sha256');
    await fsp.mkdir(blobs, { recursive: true });
    let size = 0;
    const put = async (name: string, data: Buffer): Promise<void> => {
      await fsp.writeFile(path.join(tmp, name), data, { mode: 0o644 });
      size += data.length;
    };
    await put(`blobs/sha256/${digestHex(configDigest)}`, rawConfig);
    const written = new Set<string>();
    for (let i = 0; i < layers.length; i++) {
      const d = manifest.layers[i];
      if (written.has(d.digest)) continue;
      written.add(d.digest);
      const src = await layers[i].open();
      const check = verifyingPassThrough(d.digest, d.size, `layer ${i + 1} (${d.digest})`);
      await pipeline(src, check, createWriteStream(path.join(blobs, digestHex(d.digest)), { flags: 'wx', mode: 0o644 }));
      size += d.size;
    }
    await put(`blobs/sha256/${digestHex(manifestDigest)}`, rawManifest);
    await put('index.json', canonicalJsonBytes(index));
    await put('oci-layout', canonicalJsonBytes({ imageLayoutVersion: '1.0.0' }));
    if (existing) await fsp.rmdir(dest); // an empty directory given as the destination
    await fsp.rename(tmp, dest);
    unregister();
    return { path: dest, configDigest, manifestDigest, size };
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true });
    unregister();
    if (err instanceof VriftError) throw err;
    throw new VriftError(`writing OCI layout ${dir}: ${(err as Error).message}`, { cause: err });
  }
}
