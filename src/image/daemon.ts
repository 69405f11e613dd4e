/**
 * The local Docker engine as an image source and sink, through dockerode.
 *
 * Source: `GET /images/{name}/get` streams a docker-archive; it is spooled to
 * a temp file (never held in memory) and read with the docker-archive reader,
 * so base layers are copied byte for byte.
 * Sink: `POST /images/load` with a docker-archive, then the tag is inspected
 * to confirm the engine has it.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Docker from 'dockerode';
import { VriftError } from '../errors';
import { readDockerArchive } from './dockerArchive';
import { TarFileSource } from './files';
import type { Disposable, Image } from './types';

/** A dockerode client for DOCKER_HOST or the default socket. */
export function dockerClient(): Docker {
  return new Docker();
}

/** First Docker Engine release whose image load reads zstd-compressed layers (moby pkg/archive, 23.0). */
export const ENGINE_ZSTD_MIN_MAJOR = 23;

/**
 * Whether the engine's `docker load` can read zstd-compressed layers.
 * Measured here: Docker 20.10.24 refuses a docker-archive with a zstd layer
 * ("archive/tar: invalid tar header"); moby decompresses zstd from 23.0.
 * @returns ok and the engine's version string (e.g. "20.10.24+dfsg1")
 * @throws VriftError when the engine cannot be reached
 */
export async function engineReadsZstd(docker: Docker): Promise<{ ok: boolean; version: string }> {
  let v: { Version?: string };
  try {
    v = await docker.version();
  } catch (err) {
    throw engineError('asking the Docker engine for its version', err);
  }
  const version = v.Version ?? 'unknown';
  const major = Number(/^(\d+)\./.exec(version)?.[1] ?? NaN);
  return { ok: Number.isFinite(major) && major >= ENGINE_ZSTD_MIN_MAJOR, version };
}

/** Linux PATH_MAX: a path the kernel takes is at most this many bytes minus the NUL. */
const PATH_MAX = 4096;

/** What `--load` needs to know of the engine before the tree is hashed. */
export interface EngineForLoad {
  /** Storage driver (`docker info` Driver), e.g. "overlay2". */
  driver: string;
  /** `docker info` DockerRootDir, e.g. "/var/lib/docker". */
  rootDir: string;
  /**
   * With overlay2: the longest image path the engine can unpack (bytes) and
   * why; it extracts a layer under `<DockerRootDir>/overlay2/<64 hex>/diff`,
   * and the whole host path must stay under PATH_MAX (4001 with
   * /var/lib/docker, measured: 4002 fails `docker load` with "file name too
   * long"). Undefined for other drivers.
   */
  pathLimit?: { bytes: number; why: string };
}

/**
 * Ask the engine that `--load` will load into for its storage driver and
 * root directory (`GET /info`): reaching it before any work is also the
 * check that it is there.
 * @throws VriftError when the engine cannot be reached (one line, what to do)
 */
export async function engineForLoad(docker: Docker): Promise<EngineForLoad> {
  let info: { Driver?: string; DockerRootDir?: string };
  try {
    info = (await docker.info()) as { Driver?: string; DockerRootDir?: string };
  } catch (err) {
    throw engineError('reaching the Docker engine for --load', err);
  }
  const driver = info.Driver ?? 'unknown';
  const rootDir = info.DockerRootDir ?? '';
  if (driver !== 'overlay2' || !rootDir.startsWith('/')) return { driver, rootDir };
  const diff = `${rootDir.replace(/\/+$/, '')}/overlay2/${'0'.repeat(64)}/diff`;
  const bytes = PATH_MAX - 1 - Buffer.byteLength(diff);
  const why = `the engine (overlay2 in ${rootDir}) unpacks layers under ${rootDir.replace(/\/+$/, '')}/overlay2/<64 hex>/diff, so with --load an image path holds at most ${bytes} bytes`;
  return { driver, rootDir, pathLimit: { bytes, why } };
}

/** Turn a dockerode failure into a VriftError with what to do. */
export function engineError(doing: string, err: unknown): VriftError {
  const e = err as { statusCode?: number; code?: string; json?: { message?: string }; message?: string };
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new VriftError(`${doing}: no permission to use the Docker engine socket (${e.code}); run as root or as a member of the docker group`, { cause: err });
  }
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
    return new VriftError(`${doing}: cannot reach the Docker engine (${e.code}); start dockerd or set DOCKER_HOST`, { cause: err });
  }
  const msg = e.json?.message ?? e.message ?? String(err);
  return new VriftError(`${doing}: ${msg.trim()}`, { cause: err });
}

/** An image read from the engine, backed by a temp file until disposed. */
export interface DaemonImage extends Disposable {
  image: Image;
  /** The engine's image ID (`sha256:...`). */
  imageId: string;
}

/**
 * Read image `ref` from the local engine.
 *
 * @param tmpRoot directory for the spooled archive (default os.tmpdir())
 * @throws VriftError when the engine is unreachable or has no such image
 */
export async function readDaemonImage(docker: Docker, ref: string, tmpRoot = os.tmpdir()): Promise<DaemonImage> {
  const where = `docker-daemon:${ref}`;
  let imageId: string;
  try {
    imageId = (await docker.getImage(ref).inspect()).Id;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) {
      throw new VriftError(`reading base image ${where}: the local engine has no such image; build or \`docker load\` it first (\`docker images\` lists what is there)`, { cause: err });
    }
    throw engineError(`reading base image ${where}`, err);
  }
  const dir = await fsp.mkdtemp(path.join(tmpRoot, 'vrift-base-'));
  const dispose = () => fsp.rm(dir, { recursive: true, force: true });
  try {
    const file = path.join(dir, 'base.tar');
    let stream: NodeJS.ReadableStream;
    try {
      stream = await docker.getImage(ref).get();
    } catch (err) {
      throw engineError(`exporting base image ${where}`, err);
    }
    const files = await TarFileSource.spool(stream, file, where);
    const { image } = await readDockerArchive(files, ref.startsWith('sha256:') ? undefined : ref);
    return { image, imageId, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * Load a docker-archive into the engine and confirm `tag` now names the image.
 *
 * @param archive path of a docker-archive whose manifest.json tags the image `tag`
 * @param expectedIds IDs the engine may report for the tag: the config digest
 *   (classic image store) or the manifest digest (containerd image store)
 * @returns the engine's image ID for `tag`
 * @throws VriftError when the load fails or the tag is missing or names another image
 */
export async function loadIntoDaemon(docker: Docker, archive: string, tag: string, expectedIds: string[]): Promise<string> {
  let res: NodeJS.ReadableStream;
  try {
    res = await docker.loadImage(createReadStream(archive), { quiet: true });
  } catch (err) {
    throw engineError(`loading image ${tag} into the engine`, err);
  }
  let text = '';
  for await (const chunk of res) text += chunk.toString();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let msg: { error?: string; errorDetail?: { message?: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    if (msg.error || msg.errorDetail) {
      throw new VriftError(`loading image ${tag} into the engine: ${msg.errorDetail?.message ?? msg.error}`);
    }
  }
  let id: string;
  try {
    id = (await docker.getImage(tag).inspect()).Id;
  } catch (err) {
    throw engineError(`checking loaded image ${tag}`, err);
  }
  if (!expectedIds.includes(id)) {
    throw new VriftError(`checking loaded image ${tag}: the engine reports ${id}, expected ${expectedIds.join(' or ')}; another load may have raced this one`);
  }
  return id;
}

/**
 * Remove image `tag` from the engine, ignoring "no such image".
 * Used to leave nothing behind when a build fails after loading.
 */
export async function removeFromDaemon(docker: Docker, tag: string): Promise<void> {
  try {
    await docker.getImage(tag).remove({ noprune: false });
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw engineError(`removing image ${tag}`, err);
  }
}
