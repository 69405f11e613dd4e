/**
 * The `vrift build` pipeline: base image + shim layer + /vrift tree layer
 * (with its PSFS blob) -> a docker-archive and/or an image in the engine.
 *
 * Layer order on top of the base: the shim layer (/usr/lib/vrift/libvrift.so,
 * identical for every image built with the same shim, so images share it),
 * then the tree layer (/vrift/** and /usr/lib/vrift/psfs.blob).
 *
 * Nothing partial is left behind: the archive is written to a temp path and
 * renamed; the engine load is the last step, and a loaded image is removed
 * again if anything after it fails.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type Docker from 'dockerode';
import { showPath } from '../cas/hash';
import { collectGarbage } from '../gc';
import { VriftError } from '../errors';
import type { BuildVriftLayerOptions, BuildVriftLayerResult, LayerFile, TreeAdd, TreeStats } from '../layer/types';
import { SHIM_IMAGE_PATH } from '../layer/types';
import { ENGINE_ZSTD_MIN_MAJOR, engineForLoad, engineReadsZstd, loadIntoDaemon, removeFromDaemon } from './daemon';
import { zstdAvailable } from '../layer/compress';
import { writeDockerArchive, type WrittenArchive } from './dockerArchiveWrite';
import { writeOciLayoutDir } from './ociLayoutWrite';
import type { Progress } from '../progress';
import { sha256Digest } from './digest';
import { configDigest as configDigestOf } from './partial';
import { layerFromFile } from './layer';
import { appendLayers, rfc3339, withLdPreload } from './mutate';
import { removeOnSignal } from './cleanup';
import { checkSource, openSource, type SourceRef } from './source';
import { inspectShim, type ShimInfo } from './shimInfo';
import { baseLibc } from './baseLibc';
import { parseReference } from './reference';
import { mergedVriftPaths, readVriftBase, scanImage, type VriftBase } from '../verify/imageScan';
// registry push and pull (H9)
import { RegistryPool, type RegistryOptions } from '../registry/client';
import { hasRegistryHost, parseRegistryRef } from '../registry/reference';
import { pushImage, type PushResult } from './remoteWrite';

/** Label keys vrift sets on every image it builds. */
export const LABEL_VERSION = 'dev.vrift.version';
export const LABEL_BLOB_DIGEST = 'dev.vrift.blob.digest';

/** The layer builders (src/tree, src/layer), injected so tests and callers can wire them. */
export interface LayerBuilders {
  buildVriftLayer(opts: BuildVriftLayerOptions): Promise<BuildVriftLayerResult>;
  buildShimLayer(shimPath: string, tmpDir?: string): Promise<LayerFile>;
}

/** Inputs of buildImage. Paths are host paths. */
export interface BuildImageOptions {
  base: SourceRef;
  adds: TreeAdd[];
  /** Tag for the image (`name[:tag]`). */
  tag: string;
  load: boolean;
  /** docker-archive to write (or an OCI layout, see `format`). */
  output?: string;
  /**
   * Format of `output`: `docker-archive` (default), or `oci`: an OCI image
   * layout directory, or, for a path ending in `.tar`, an OCI layout tar (the
   * docker-archive bytes, which are also one).
   */
  format?: 'docker-archive' | 'oci';
  chown?: { uid: number; gid: number };
  cacheDir?: string | false;
  /** Parsed SOURCE_DATE_EPOCH (seconds), or undefined when unset. */
  sourceDateEpoch?: number;
  shimPath: string;
  /**
   * Pick the shim variant from the base (issue 7): called with the base
   * config's `architecture` (OCI name; the shim's when unset) and its libc
   * (musl when a base layer holds /lib/ld-musl-*); returns the shim's host
   * path, or throws VriftError when that variant is not built. Without it,
   * `shimPath` is used whatever the base.
   */
  pickShim?: (arch: string, libc: 'glibc' | 'musl') => string;
  vriftVersion: string;
  builders: LayerBuilders;
  docker: () => Docker;
  /**
   * With --load and a docker-daemon base, send the engine only the new layers
   * (falling back to the full archive if it refuses). Default true.
   */
  thinLoad?: boolean;
  /** Progress lines (stderr in the CLI). */
  log: (line: string) => void;
  /** Progress of hashing, compressing (and uploading) in bytes (src/progress). Default: none. */
  progress?: Progress;
  // --- registry (H9) ---
  /** Push the image to the registry named by `tag` (which must name a registry host). */
  push?: boolean;
  /** `os/arch[/variant]` to select from a multi-platform base. Default: the host's (registries), linux/amd64 (OCI layouts). */
  platform?: string;
  /** Registry client settings (insecure hosts, retries, chunked-upload threshold, credentials). */
  registry?: RegistryOptions;
  /**
   * Compression of the /vrift tree layer: 'gzip' (default) or 'zstd' (OCI
   * media type application/vnd.oci.image.layer.v1.tar+zstd, needs zstd-napi).
   * The shim layer stays gzip so that every image shares it.
   */
  compression?: 'gzip' | 'zstd';
}

/** One layer of the result, base first. Sizes in bytes. */
export interface BuiltLayer {
  role: 'base' | 'shim' | 'vrift';
  digest: string;
  diffID: string;
  size: number;
  mediaType: string;
}

/** The JSON summary `vrift build --json` prints. */
export interface BuildResult {
  outcome: 'success';
  tag: string;
  /** Config digest: the image ID in the engine's classic image store. */
  imageId: string;
  configDigest: string;
  manifestDigest: string;
  output?: string;
  loaded: boolean;
  /** With --push: the pushed reference, manifest digest and how each layer got there. */
  pushed?: PushResult;
  blobDigest: string;
  shim: { path: string; variant: string };
  created: string;
  layers: BuiltLayer[];
  stats: Omit<TreeStats, 'bytes'> & { bytes: number; blobBytes: number; seconds: number };
  /** Wall-clock seconds per phase: tree (plan, hash, tree+shim layers), base (read/export), output (archive), load (engine). */
  timings: { tree: number; base: number; output: number; load: number };
}

/**
 * The history `created_by` of the tree layer, e.g.
 * `vrift build --add /vrift/app --add "/vrift/a b" --chown 1:2`. Host source
 * paths are left out on purpose: building the same tree from another checkout
 * must give the same config digest (issue 5, reproducible builds). A later
 * `vrift build` on this image reads the destinations back
 * (src/verify/imageScan.ts destsFromHistory), so each is written as one token:
 * as is when it has no whitespace, control character, `"` or `\`
 * (what every earlier version wrote, so those config digests stay the same),
 * else as a JSON string (quoteDest).
 */
export function treeCreatedBy(adds: TreeAdd[], chown?: { uid: number; gid: number }): string {
  const parts = ['vrift build', ...adds.map((a) => `--add ${quoteDest(a.dest)}`)];
  if (chown) parts.push(`--chown ${chown.uid}:${chown.gid}`);
  return parts.join(' ');
}

/**
 * A destination as one `created_by` token: unchanged when it holds no
 * whitespace (JS \s), C0/DEL control character, `"` or `\` (and is not
 * empty), else JSON.stringify of it (readable in `docker history`,
 * parsed back exactly by JSON.parse).
 */
export function quoteDest(dest: string): string {
  const plain = dest !== '' && !/[\s"\\]/.test(dest) && ![...dest].some((c) => c < ' ' || c === '\x7f');
  return plain ? dest : JSON.stringify(dest);
}

/**
 * Run the build.
 * @throws VriftError for bad input (base, sources, tag, output) and failures;
 *   no output file or engine image is left behind then
 */
export async function buildImage(o: BuildImageOptions): Promise<BuildResult> {
  const t0 = process.hrtime.bigint();
  const timings = { tree: 0, base: 0, output: 0, load: 0 };
  let mark = process.hrtime.bigint();
  const lap = (phase: keyof typeof timings): void => {
    const now = process.hrtime.bigint();
    timings[phase] += Number(now - mark) / 1e9;
    mark = now;
  };
  const tag = parseReference(o.tag, '--tag');
  if (tag.digest) throw new VriftError(`parsing --tag ${o.tag}: a tag cannot carry a digest; use name:tag`);
  const tagName = `${tag.name}:${tag.tag ?? 'latest'}`;
  if (o.push && !hasRegistryHost(o.tag)) {
    throw new VriftError(`parsing --tag ${o.tag}: --push needs a tag that names a registry host, e.g. 127.0.0.1:5000/${tag.name}:${tag.tag ?? 'latest'} or registry.example.com/${tag.name}`);
  }
  const pushRef = o.push ? parseRegistryRef(tagName, o.registry?.insecure, '--tag') : undefined;
  const pool = new RegistryPool({ log: o.log, ...o.registry });
  const sourceOpts = { pool, platform: o.platform };
  const ociDir = o.format === 'oci' && o.output !== undefined && !o.output.endsWith('.tar');
  if (o.output !== undefined) {
    const dir = path.dirname(path.resolve(o.output));
    const st = await fsp.stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) throw new VriftError(`writing ${o.output}: directory ${dir} does not exist; create it first`);
    try {
      await fsp.access(dir, fsc.W_OK | fsc.X_OK);
    } catch {
      throw new VriftError(`writing ${o.output}: directory ${dir} is not writable by this user; choose a writable location`);
    }
    const out = await fsp.stat(o.output).catch(() => undefined);
    if (out?.isDirectory() && !ociDir) throw new VriftError(`writing ${o.output}: it is a directory; give a file name such as ${path.join(o.output, 'image.tar')}`);
  }
  let shim: ShimInfo = await inspectShim(o.shimPath);
  if (!o.pickShim) o.log(`shim: ${shim.path} (${shim.variant})`);

  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'vrift-build-'));
  const unregisterWork = removeOnSignal(work);
  let source: Awaited<ReturnType<typeof openSource>> | undefined;
  let wroteOutput = false;
  let loaded = false;
  try {
    // Cheap checks first, the tree next (bad sources fail fast), the base export last.
    await checkSource(o.base, o.docker, sourceOpts);
    // A base in a local file is read (and validated) now: a bad one fails before the tree is hashed.
    if (o.base.transport === 'docker-archive' || o.base.transport === 'oci') source = await openSource(o.base, o.docker, work, sourceOpts);
    // Where the image goes is reachable before the tree is hashed (M2): the engine for --load
    // (its overlay2 directory also bounds the image paths it can unpack, B7), the registry's /v2/ for --push.
    const engine = o.load ? await engineForLoad(o.docker()) : undefined;
    if (pushRef) await pool.get(pushRef.registry).ping();
    if (o.compression === 'zstd') {
      if (!zstdAvailable()) {
        throw new VriftError('building with --compression zstd: the optional package zstd-napi is not installed (or did not build) here; run `npm install zstd-napi` in vrift\'s directory, or use --compression gzip');
      }
      if (o.load) {
        const z = await engineReadsZstd(o.docker());
        if (!z.ok) {
          throw new VriftError(`loading into the engine with --compression zstd: Docker ${z.version} cannot read zstd-compressed layers (docker load reads them from Docker ${ENGINE_ZSTD_MIN_MAJOR}.0); use --compression gzip with --load, or write the zstd image with --output or --push only`);
        }
      }
      if (o.output !== undefined && !ociDir) o.log(`note: ${o.output} has a zstd layer: docker load reads it from Docker ${ENGINE_ZSTD_MIN_MAJOR}.0, skopeo reads it as an OCI layout tar`);
    }
    o.log(`building /vrift tree layer from ${o.adds.map((a) => `${a.src} -> ${a.dest}`).join(', ')}`);
    const buildTree = (merge?: VriftBase['merge']) => o.builders.buildVriftLayer({
      adds: o.adds,
      chown: o.chown,
      sourceDateEpoch: o.sourceDateEpoch,
      cacheDir: o.cacheDir,
      tmpDir: work,
      merge,
      progress: o.progress,
      compression: o.compression,
      pathLimit: engine?.pathLimit,
    });
    let tree = await buildTree();
    const s = tree.stats;
    o.log(`tree: ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${s.bytes} bytes, ${s.casObjects} CAS objects (dedup ${s.dedupRatio.toFixed(3)}x), hashed ${s.hashMisses}, cached ${s.hashHits}`);
    o.log(`blob: ${tree.blobSize} bytes, ${tree.blobDigest}`);
    lap('tree');
    // The planned entries are garbage once the tree layer is written, but V8 runs no full
    // collection while the base phase allocates mostly outside its heap (measured, 80k files: 276 -> 247 MiB).
    collectGarbage();

    o.log(`reading base ${o.base.raw}`);
    source ??= await openSource(o.base, o.docker, work, sourceOpts);
    const baseConfig = await source.image.config();
    const previous = baseConfig.config?.Labels?.[LABEL_BLOB_DIGEST];
    let vriftBase: VriftBase | undefined;
    if (previous) {
      // Its /vrift stays in its layers; the new blob must cover the union (src/tree/merge.ts).
      // The tree layer is written again with the merged blob (hashes come from the digest cache).
      o.log(`base carries a vrift tree (blob ${previous}): merging`);
      vriftBase = await readVriftBase(source.image, o.base.raw);
      await fsp.rm(tree.layer.path, { force: true });
      await fsp.rm(tree.blobFile, { force: true });
      try {
        tree = await buildTree(vriftBase.merge);
      } finally {
        vriftBase.merge.close();
      }
      o.log(`blob: merged with the base's ${vriftBase.merge.blob.rows.count} entries: ${tree.blobSize} bytes, ${tree.blobDigest}`);
    } else {
      // Without a vrift blob the base must hold nothing under /vrift: the new blob would not
      // describe those files, and the shim would answer ENOENT for them (the domain is complete).
      const onDisk = [...mergedVriftPaths((await scanImage(source.image, o.base.raw)).layers).keys()].filter((p) => p !== '/vrift').sort();
      if (onDisk.length) {
        throw new VriftError(`building on ${o.base.raw}: the base already has ${onDisk.length} paths under /vrift (first: ${showPath(Buffer.from(onDisk[0], 'latin1')).slice(1, -1)}) but no vrift blob; the shim would hide them, so use a base without /vrift or move those files elsewhere`);
      }
    }
    const baseArch = baseConfig.architecture;
    if (o.platform) {
      // An index was already narrowed to --platform; a single-platform base must match it.
      const [os, arch, variant] = o.platform.split('/');
      if (!os || !arch || (baseConfig.os && baseConfig.os !== os) || (baseArch && baseArch !== arch) ||
          (variant && baseConfig.variant && baseConfig.variant !== variant)) {
        const has = [baseConfig.os ?? 'linux', baseArch, baseConfig.variant].filter(Boolean).join('/');
        throw new VriftError(`building on ${o.base.raw}: --platform ${o.platform} does not match the base image, which is ${has}; give os/arch[/variant] of the base, or a multi-platform base that has ${o.platform}`);
      }
    }
    if (o.pickShim) {
      const { libc, evidence } = await baseLibc(source.image);
      const arch = baseArch || shim.arch;
      shim = await inspectShim(o.pickShim(arch, libc));
      o.log(`shim: picked ${arch}-${libc} for base ${baseConfig.os ?? 'linux'}/${arch} (${evidence}): ${shim.path} (${shim.variant})`);
    }
    if (baseArch && baseArch !== shim.arch) {
      throw new VriftError(`building on ${o.base.raw}: the base image is ${baseConfig.os ?? 'linux'}/${baseArch} but the shim is built for ${shim.arch}; use a ${shim.arch} base or build the shim for ${baseArch}`);
    }

    const shimLayerFile = await o.builders.buildShimLayer(shim.path, work);
    lap('base');
    const created = rfc3339(o.sourceDateEpoch ?? 0);
    const shimLayer = layerFromFile(shimLayerFile);
    const treeLayer = layerFromFile(tree.layer);
    // A base that already has this very shim layer (an earlier vrift build) does not get it twice.
    const addShim = vriftBase?.shimDiffID !== shimLayerFile.diffID;
    if (!addShim) o.log('shim: the base already has this shim layer; not adding it again');
    const image = appendLayers(
      source.image,
      [
        ...(addShim ? [{ layer: shimLayer, history: { created_by: `vrift build: shim ${SHIM_IMAGE_PATH}`, comment: `libvrift ${shim.arch} ${shim.libc}` } }] : []),
        { layer: treeLayer, history: { created_by: treeCreatedBy(o.adds, o.chown), comment: `vrift tree, PSFS blob ${tree.blobDigest}` } },
      ],
      {
        created,
        env: (env) => withLdPreload(env, SHIM_IMAGE_PATH),
        labels: { [LABEL_VERSION]: o.vriftVersion, [LABEL_BLOB_DIGEST]: tree.blobDigest },
      },
    );

    const archiveOpts = { tags: [tagName], mtime: o.sourceDateEpoch ?? 0 };
    let written: WrittenArchive | undefined;
    if (o.output !== undefined && ociDir) {
      o.log(`writing OCI image layout ${o.output}`);
      await writeOciLayoutDir(image, o.output, [tagName]);
      wroteOutput = true;
      lap('output');
    } else if (o.output !== undefined) {
      o.log(`writing ${o.format === 'oci' ? 'OCI layout tar (also a docker-archive)' : 'docker-archive'} ${o.output}`);
      written = await writeDockerArchive(image, o.output, archiveOpts);
      wroteOutput = true;
      lap('output');
    }
    if (o.load) {
      const full = async (): Promise<WrittenArchive> => written ?? writeDockerArchive(image, path.join(work, 'image.tar'), archiveOpts);
      const baseDigests = new Set((await source.image.manifest()).layers.map((l) => l.digest));
      // A base read from this engine has its layers there: send only the new ones
      // (moby skips layers whose chain it has). Any failure falls back to the full archive.
      if (o.base.transport === 'docker-daemon' && o.thinLoad !== false && baseDigests.size > 0) {
        const thin = await writeDockerArchive(image, path.join(work, 'thin.tar'), { ...archiveOpts, omitLayers: baseDigests });
        o.log(`loading ${tagName} into the engine (new layers only, ${thin.size} bytes)`);
        try {
          await loadIntoDaemon(o.docker(), thin.path, tagName, [thin.configDigest, thin.manifestDigest]);
          loaded = true;
        } catch (err) {
          o.log(`loading new layers only failed (${(err as Error).message}); loading the full image`);
        }
      }
      if (!loaded) {
        const f = await full();
        o.log(`loading ${tagName} into the engine (${f.size} bytes)`);
        await loadIntoDaemon(o.docker(), f.path, tagName, [f.configDigest, f.manifestDigest]);
        loaded = true;
      }
      lap('load');
    }
    let pushed: PushResult | undefined;
    if (pushRef) {
      o.log(`pushing ${tagName} to ${pushRef.scheme}://${pushRef.registry}`);
      pushed = await pushImage(image, pushRef, { pool, tmpDir: work, log: o.log, progress: o.progress });
      o.log(`pushed ${pushed.reference}@${pushed.manifestDigest}`);
    }
    const configDigest = await configDigestOf(image);
    const manifestDigest = sha256Digest(await image.rawManifest());

    const manifest = await image.manifest();
    const layers = await image.layers();
    const baseCount = layers.length - (addShim ? 2 : 1);
    const built: BuiltLayer[] = [];
    for (let i = 0; i < layers.length; i++) {
      built.push({
        role: i < baseCount ? 'base' : addShim && i === baseCount ? 'shim' : 'vrift',
        digest: manifest.layers[i].digest,
        diffID: await layers[i].diffID(),
        size: manifest.layers[i].size,
        mediaType: manifest.layers[i].mediaType,
      });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    o.log(`built ${tagName} ${configDigest} in ${seconds.toFixed(2)} s (tree ${timings.tree.toFixed(2)} s, base ${timings.base.toFixed(2)} s, output ${timings.output.toFixed(2)} s, load ${timings.load.toFixed(2)} s)`);
    return {
      outcome: 'success',
      tag: tagName,
      imageId: configDigest,
      configDigest: configDigest,
      manifestDigest: manifestDigest,
      output: o.output,
      loaded,
      ...(pushed ? { pushed } : {}),
      blobDigest: tree.blobDigest,
      shim: { path: shim.path, variant: shim.variant },
      created,
      layers: built,
      stats: { ...s, bytes: Number(s.bytes), blobBytes: tree.blobSize, seconds },
      timings: Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Number(v.toFixed(3))])) as BuildResult['timings'],
    };
  } catch (err) {
    if (loaded) await removeFromDaemon(o.docker(), tagName).catch(() => undefined);
    if (wroteOutput && o.output) await fsp.rm(o.output, { force: true, recursive: ociDir });
    throw err;
  } finally {
    await source?.dispose().catch(() => undefined);
    await fsp.rm(work, { recursive: true, force: true });
    unregisterWork();
  }
}
