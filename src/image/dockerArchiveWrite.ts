/**
 * docker-archive writer. The output is what Docker >= 25 `docker save`
 * writes, and is readable by `docker load` (any version), `skopeo`
 * (`docker-archive:` and `oci-archive:`) and umoci after a copy:
 *
 *   blobs/sha256/<hex>  config, layers (stored bytes, unchanged), OCI manifest
 *   index.json          OCI image index naming the manifest (ref name = tag)
 *   oci-layout          {"imageLayoutVersion":"1.0.0"}
 *   manifest.json       [{"Config","RepoTags","Layers"}] for docker load
 *
 * Members are written in a fixed order with fixed metadata (mode 0644/0755,
 * uid/gid 0, empty uname/gname, one mtime), so equal images give equal bytes.
 * Layer bytes are copied as stored and checked against their digest and size
 * on the way. The file appears only when complete: it is written to a temp
 * path next to the destination and renamed.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';

type HeaderArg = Partial<tar.Header> & Pick<tar.Header, 'name'>;
import { VriftError } from '../errors';
import { digestHex, verifyingPassThrough } from './digest';
import { removeOnSignal } from './cleanup';
import { canonicalJsonBytes } from './json';
import { parseReference } from './reference';
import { snapshotImage } from './snapshot';
import type { Image } from './types';

/** Options of writeDockerArchive. */
export interface WriteDockerArchiveOptions {
  /** Tags recorded in manifest.json `RepoTags` and index.json. Default: none (docker load leaves the image untagged). */
  tags?: string[];
  /** mtime of every member, seconds since the epoch. Default 0. */
  mtime?: number;
  /**
   * Layer digests to leave out of the tar while still listing them in the
   * manifests: a "thin" archive, only for loading into an engine that already
   * holds those layers (moby skips a layer whose chain it has). Not a valid
   * archive for anything else. Default: none.
   */
  omitLayers?: ReadonlySet<string>;
}

/** What writeDockerArchive wrote. Digests are `sha256:<hex>`; size in bytes. */
export interface WrittenArchive {
  path: string;
  configDigest: string;
  manifestDigest: string;
  size: number;
}

function addEntry(pack: tar.Pack, header: HeaderArg, body: Buffer | Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (Buffer.isBuffer(body)) {
      pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      return;
    }
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    sink.on('error', reject);
    body.on('error', (err) => {
      sink.destroy(err);
      reject(err);
    });
    body.pipe(sink as unknown as NodeJS.WritableStream);
  });
}

/**
 * Write `image` as a docker-archive at `file`.
 *
 * @throws VriftError when a layer cannot be read or does not match its digest,
 *   or the file cannot be written; no file (temp or final) is left behind then
 */
export async function writeDockerArchive(image: Image, file: string, opts: WriteDockerArchiveOptions = {}): Promise<WrittenArchive> {
  const mtime = new Date((opts.mtime ?? 0) * 1000);
  const tags = (opts.tags ?? []).map((t) => parseReference(t, 'tag'));
  const { rawConfig, rawManifest, manifest, layers, configDigest, manifestDigest, index } = await snapshotImage(image, opts.tags ?? []);
  const dockerManifest = [
    {
      Config: `blobs/sha256/${digestHex(configDigest)}`,
      RepoTags: tags.map((t) => `${t.name}:${t.tag ?? 'latest'}`),
      Layers: manifest.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
    },
  ];

  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.vrift-tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const unregister = removeOnSignal(tmp);
  const ws = createWriteStream(tmp, { flags: 'wx' });
  try {
    // Opened before anything can fail, so the cleanup below never races the open.
    await once(ws, 'open');
  } catch (err) {
    unregister();
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS' ? `cannot create files in ${dir} (${e.code}); choose a writable location` : e.message;
    throw new VriftError(`writing docker-archive ${file}: ${why}`, { cause: err });
  }
  const pack = tar.pack();
  const out = pipeline(pack as unknown as Readable, ws);
  out.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
  const fileHeader = (name: string, size: number): HeaderArg => ({
    name, size, mode: 0o644, mtime, uid: 0, gid: 0, uname: '', gname: '', type: 'file',
  });
  const dirHeader = (name: string): HeaderArg => ({
    name, mode: 0o755, mtime, uid: 0, gid: 0, uname: '', gname: '', type: 'directory',
  });
  try {
    await addEntry(pack, dirHeader('blobs/'), Buffer.alloc(0));
    await addEntry(pack, dirHeader('blobs/sha256/'), Buffer.alloc(0));
    await addEntry(pack, fileHeader(`blobs/sha256/${digestHex(configDigest)}`, rawConfig.length), rawConfig);
    const written = new Set<string>();
    for (let i = 0; i < layers.length; i++) {
      const d = manifest.layers[i];
      if (written.has(d.digest) || opts.omitLayers?.has(d.digest)) continue; // the same blob twice is stored once
      written.add(d.digest);
      const what = `layer ${i + 1} (${d.digest})`;
      const src = await layers[i].open();
      const check = verifyingPassThrough(d.digest, d.size, what);
      src.on('error', (err) => check.destroy(err));
      await addEntry(pack, fileHeader(`blobs/sha256/${digestHex(d.digest)}`, d.size), src.pipe(check));
    }
    await addEntry(pack, fileHeader(`blobs/sha256/${digestHex(manifestDigest)}`, rawManifest.length), rawManifest);
    const indexBytes = canonicalJsonBytes(index);
    await addEntry(pack, fileHeader('index.json', indexBytes.length), indexBytes);
    const dmBytes = canonicalJsonBytes(dockerManifest);
    await addEntry(pack, fileHeader('manifest.json', dmBytes.length), dmBytes);
    const layoutBytes = canonicalJsonBytes({ imageLayoutVersion: '1.0.0' });
    await addEntry(pack, fileHeader('oci-layout', layoutBytes.length), layoutBytes);
    pack.finalize();
    await out;
    const size = (await fsp.stat(tmp)).size;
    await fsp.rename(tmp, file);
    unregister();
    return { path: file, configDigest, manifestDigest, size };
  } catch (err) {
    pack.destroy();
    await out.catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    unregister();
    if (err instanceof VriftError) throw err;
    throw new VriftError(`writing docker-archive ${file}: ${(err as Error).message}`, { cause: err });
  }
}
