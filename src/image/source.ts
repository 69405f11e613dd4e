/**
 * Image sources named the way skopeo names transports:
 *   docker-archive:<file>[:<name:tag>]   a `docker save` tar
 *   oci:<dir-or-tar>[:<ref name>]        an OCI image layout
 *   docker-daemon:<ref>                  the local engine (dockerode)
 *   docker://<ref>                       a registry (OCI distribution API)
 *   <ref>                                a plain reference: a registry when its first
 *                                        component names a host (contains "." or ":"
 *                                        or is "localhost", e.g. 127.0.0.1:5000/app:1,
 *                                        ghcr.io/o/app), else the local engine
 *                                        (vrift-test/bookworm-python:latest)
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Docker from 'dockerode';
import { VriftError } from '../errors';
import { engineError, readDaemonImage } from './daemon';
import { readDockerArchiveFile } from './dockerArchive';
import { readOciLayoutPath } from './ociLayout';
import { parseReference } from './reference';
import type { Image } from './types';
// registry transport (H9)
import { RegistryPool, type RegistryOptions } from '../registry/client';
import { hasRegistryHost, parseRegistryRef, type RegistryRef } from '../registry/reference';
import { checkRemoteImage, readRemoteImage } from './remote';

/** A parsed `--base` value. */
export type SourceRef =
  | { transport: 'docker-archive'; path: string; ref?: string; raw: string }
  | { transport: 'oci'; path: string; ref?: string; raw: string }
  | { transport: 'docker-daemon'; ref: string; bare: boolean; raw: string }
  | { transport: 'docker'; ref: RegistryRef; raw: string };

/** How registry and multi-platform sources are read (registry transport, `--platform`). */
export interface SourceOptions {
  /** `os/arch[/variant]` to select from an image index (registry, oci). Default: the host's for registries, linux/amd64 for OCI layouts. */
  platform?: string;
  /** Registry clients; one is made from `registry` when missing. */
  pool?: RegistryPool;
  registry?: RegistryOptions;
}

const pools = new WeakMap<SourceOptions, RegistryPool>();
function poolOf(o: SourceOptions): RegistryPool {
  if (o.pool) return o.pool;
  let p = pools.get(o);
  if (!p) pools.set(o, (p = new RegistryPool(o.registry)));
  return p;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Split `path[:ref]`: the longest prefix that exists on disk is the path. */
async function splitPathRef(s: string): Promise<{ path: string; ref?: string }> {
  if (await exists(s)) return { path: s };
  for (let i = s.lastIndexOf(':'); i > 0; i = s.lastIndexOf(':', i - 1)) {
    if (await exists(s.slice(0, i))) return { path: s.slice(0, i), ref: s.slice(i + 1) || undefined };
  }
  return { path: s };
}

/**
 * Parse a `--base` value.
 * @throws VriftError for an unknown or unsupported transport or a bad reference
 */
export async function parseSourceRef(raw: string): Promise<SourceRef> {
  const m = /^([a-z][a-z0-9-]*):(.*)$/.exec(raw);
  const transport = m?.[1];
  if (transport === 'docker-archive' || transport === 'oci') {
    if (!m![2]) throw new VriftError(`parsing --base ${raw}: give a path after ${transport}:`);
    const { path, ref } = await splitPathRef(m![2]);
    return { transport, path, ref, raw };
  }
  if (transport === 'docker-daemon') {
    parseReference(m![2], '--base reference');
    return { transport, ref: m![2], bare: false, raw };
  }
  if (transport === 'docker' && m![2].startsWith('//')) {
    return { transport: 'docker', ref: parseRegistryRef(m![2].slice(2), [], '--base reference'), raw };
  }
  if (transport === 'oci-archive' || transport === 'containers-storage' || transport === 'dir') {
    throw new VriftError(`parsing --base ${raw}: the ${transport}: transport is not supported yet (registries come later); use docker-archive:<file>, oci:<dir> or docker-daemon:<ref>`);
  }
  // A bare reference ("name:tag" also matches the transport pattern, so parse it as a reference).
  parseReference(raw, '--base');
  if (hasRegistryHost(raw)) return { transport: 'docker', ref: parseRegistryRef(raw, [], '--base'), raw };
  return { transport: 'docker-daemon', ref: raw, bare: true, raw };
}

/**
 * Check cheaply that a source exists (engine inspect, file or directory
 * stat) so that a missing base is reported before any expensive work.
 * @throws VriftError naming the source and what to do
 */
export async function checkSource(src: SourceRef, docker: () => Docker, opts: SourceOptions = {}): Promise<void> {
  if (src.transport === 'docker') return checkRemoteImage(src.ref, poolOf(opts));
  if (src.transport === 'docker-daemon') {
    try {
      await docker().getImage(src.ref).inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) {
        const more = src.bare ? '. A plain --base reference without a registry host means the local engine; to pull, name the registry (host[:port]/repo:tag or docker://<ref>)' : '';
        throw new VriftError(`reading base image ${src.raw}: the local engine has no such image; build or \`docker load\` it first (\`docker images\` lists what is there)${more}`, { cause: err });
      }
      throw engineError(`reading base image ${src.raw}`, err);
    }
    return;
  }
  const st = await fsp.stat(src.path).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    const make = src.transport === 'oci' ? '`skopeo copy docker-daemon:<image> oci:<dir>`' : '`docker save -o <file> <image>`';
    throw new VriftError(`reading base image ${src.raw}: ${src.path}: ${st.code === 'ENOENT' ? 'no such file or directory' : st.message}; check the path (make one with ${make})`, { cause: st });
  }
  if (src.transport === 'docker-archive' && !st.isFile()) {
    throw new VriftError(`reading base image ${src.raw}: ${src.path} is not a file; docker-archive: needs a tar made by \`docker save\``);
  }
}

/** An opened source image and how to release what it holds. */
export interface OpenedSource {
  image: Image;
  /** Human-readable origin, e.g. `docker-daemon:debian:12`. */
  where: string;
  dispose(): Promise<void>;
}

/**
 * Open a source image.
 * @param docker engine client, used for docker-daemon sources
 * @param tmpRoot where the daemon source spools its archive
 * @throws VriftError when the source is missing or unreadable
 */
export async function openSource(src: SourceRef, docker: () => Docker, tmpRoot?: string, opts: SourceOptions = {}): Promise<OpenedSource> {
  const none = async () => undefined;
  switch (src.transport) {
    case 'docker-archive': {
      await checkSource(src, docker);
      const { image } = await readDockerArchiveFile(src.path, src.ref);
      return { image, where: src.raw, dispose: none };
    }
    case 'oci': {
      await checkSource(src, docker);
      const image = await readOciLayoutPath(src.path, { ref: src.ref, platform: opts.platform });
      return { image, where: src.raw, dispose: none };
    }
    case 'docker-daemon': {
      await checkSource(src, docker);
      const d = await readDaemonImage(docker(), src.ref, tmpRoot);
      return { image: d.image, where: `docker-daemon:${src.ref}`, dispose: d.dispose };
    }
    case 'docker': {
      const dir = await fsp.mkdtemp(path.join(tmpRoot ?? os.tmpdir(), 'vrift-pull-'));
      const dispose = () => fsp.rm(dir, { recursive: true, force: true });
      try {
        const r = await readRemoteImage(src.ref, { pool: poolOf(opts), tmpDir: dir, platform: opts.platform });
        const at = `${src.ref.registry}/${src.ref.repository}@${r.manifestDigest}${r.platform ? ` (${r.platform})` : ''}`;
        return { image: r.image, where: `docker://${at}`, dispose };
      } catch (err) {
        await dispose();
        throw err;
      }
    }
  }
}
