import { promises as fsp, constants as fsc, readFileSync, type Stats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { VriftError, EXIT } from '../../errors';
import { buildImage, type BuildResult } from '../../image/build';
import { dockerClient } from '../../image/daemon';
import { parseSourceRef } from '../../image/source';
import { VRIFT_ROOT, type TreeAdd } from '../../layer/types';
import { defaultCacheDir } from '../../cas/cache';
import { buildShimLayer, buildVriftLayer, parseSourceDateEpoch } from '../../tree';
import { PACKAGE_ROOT, SHIM_VARIANTS, shimPath, variantFor } from './shimPath';
import { makeProgress, progressMode, type Progress } from '../../progress';
import type { RegistryOptions } from '../../registry/client';
import { checkSingleValues, hasReplacementChar } from '../args';

// Owned by the image builder work (issue 3).

/** Options of `vrift build` that take exactly one value (checked by checkSingleValues). */
const SINGLE_VALUED = ['base', 'tag', 'output', 'format', 'chown', 'cache-dir', 'platform', 'compression'] as const;

/** Options of `vrift build` (kebab-case on the command line). */
export function buildOptions(y: Argv) {
  return y
    .options({
      base: { type: 'string', demandOption: true, requiresArg: true, description: 'Base image: docker-archive:<file>[:<name:tag>], oci:<dir-or-tar>[:<ref>], docker-daemon:<ref>, docker://<ref> (registry), or a plain <ref>: a registry when its first component is a host (has "." or ":" or is localhost, e.g. 127.0.0.1:5000/app:1), else the local engine (e.g. vrift-test/bookworm-python:latest)' },
      add: { type: 'string', array: true, demandOption: true, requiresArg: true, description: 'Add <host-dir>:<path under /vrift> (repeatable); files are stored content-addressed under /vrift/.cas' },
      tag: { type: 'string', demandOption: true, requiresArg: true, description: 'Name of the built image, name[:tag] (tag defaults to latest)' },
      load: { type: 'boolean', default: false, description: 'Load the image into the local Docker engine' },
      output: { type: 'string', requiresArg: true, description: 'Write the image as a docker-archive tar to this file (or an OCI layout with --format oci)' },
      format: { requiresArg: true, choices: ['docker-archive', 'oci'] as const, default: 'docker-archive' as const, description: 'Format of --output: docker-archive tar, or oci: an OCI image layout directory (a path ending in .tar: an OCI layout tar)' },
      chown: { type: 'string', requiresArg: true, description: 'Owner uid:gid of every /vrift entry (default 0:0)' },
      'cache-dir': { type: 'string', requiresArg: true, description: 'Digest cache directory (default $XDG_CACHE_HOME/vrift or ~/.cache/vrift)' },
      json: { type: 'boolean', default: false, description: 'Print a JSON summary on stdout' },
      quiet: { type: 'boolean', default: false, description: 'No progress lines on stderr' },
      // registry (H9)
      push: { type: 'boolean', default: false, description: 'Push the image to the registry named by --tag (host[:port]/repo:tag) as an OCI manifest (layers as stored: gzip, the tree layer zstd with --compression zstd)' },
      platform: { type: 'string', requiresArg: true, description: 'Platform to take from a multi-platform base, os/arch[/variant] (default: the host\'s, linux/amd64 here)' },
      compression: { requiresArg: true, choices: ['gzip', 'zstd'] as const, default: 'gzip' as const, description: 'Compression of the /vrift tree layer: gzip, or zstd (OCI media type ...tar+zstd; needs the optional package zstd-napi; --load needs an engine that reads zstd layers, Docker >= 23)' },
      'insecure-registry': { type: 'string', array: true, requiresArg: true, description: 'Registry host[:port] to reach over plain HTTP (repeatable; loopback registries always are; also VRIFT_INSECURE_REGISTRIES)' },
    })
    .check((a) => {
      checkSingleValues(a, SINGLE_VALUED);
      if ((a.add as unknown[]).length === 0) throw new VriftError('parsing --add: no value given; use --add <host-dir>:/vrift/<path>', { exitCode: EXIT.usage });
      if (!a.load && a.output === undefined && !a.push) throw new VriftError('Say where the image goes: --load, --output <file.tar>, --push, or several.', { exitCode: EXIT.usage });
      return true;
    })
    .example('$0 build --base vrift-test/bookworm-python:latest --add ./site-packages:/vrift/python --tag app:1 --load', 'Add a Python tree to a local image and load the result')
    .example('SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) $0 build --base docker-archive:base.tar --add deps:/vrift/deps --tag app:1 --output app.tar', 'Reproducible build to a docker-archive file')
    .example('$0 build --base 127.0.0.1:5000/base/python:3 --add ./site-packages:/vrift/python --tag 127.0.0.1:5000/app:1 --push', 'Pull the base from a registry, push the result (base layers are mounted, not re-uploaded)')
    .example('$0 build --base docker-daemon:app:1 --add ./more:/vrift/more --tag app:2 --output app2-layout --format oci', 'Build on a vrift image (the blobs merge) and write an OCI image layout directory')
    .epilogue(
      'Environment: SOURCE_DATE_EPOCH (whole seconds) clamps file mtimes and sets the image and history times; unset means 1970-01-01T00:00:00Z. ' +
        'Registries: credentials from $DOCKER_CONFIG/config.json (default ~/.docker/config.json: auths entries, credHelpers/credsStore); ' +
        'VRIFT_INSECURE_REGISTRIES (comma-separated host[:port]) for plain HTTP; VRIFT_REGISTRY_CHUNK_THRESHOLD (bytes, default 67108864) from which blobs upload in chunks; VRIFT_REGISTRY_RETRIES (default 3).',
    );
}

type BuildArgs = Awaited<ReturnType<ReturnType<typeof buildOptions>['parseAsync']>>;

/**
 * SOURCE_DATE_EPOCH, parsed strictly by src/tree's parser (unset or empty ->
 * undefined), and limited to times an RFC 3339 `created` can carry (<= year 9999).
 * @throws VriftError naming the variable when malformed or out of range
 */
export function sourceDateEpochFromEnv(v: string | undefined): number | undefined {
  const sec = parseSourceDateEpoch(v);
  if (sec !== undefined && sec > 253402300799) {
    throw new VriftError(`reading SOURCE_DATE_EPOCH: ${v} is after 9999-12-31T23:59:59Z; set it to e.g. $(git log -1 --format=%ct) or unset it`);
  }
  return sec;
}

/** Parse `--chown uid:gid`. @throws VriftError when malformed */
export function parseChown(v: string | undefined): { uid: number; gid: number } | undefined {
  if (v === undefined) return undefined;
  const m = /^([0-9]{1,10}):([0-9]{1,10})$/.exec(v);
  if (!m || Number(m[1]) > 0xfffffffe || Number(m[2]) > 0xfffffffe) throw new VriftError(`parsing --chown ${v}: use numeric uid:gid, e.g. --chown 1000:1000`, { exitCode: EXIT.usage });
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

/**
 * Parse and check the `--add` values: `<host-dir>:<dest>`, dest a normalized
 * path strictly under /vrift (not /vrift/.cas), no two onto the same or
 * nested destinations, each source an existing readable directory.
 * @throws VriftError naming the offending value and what to do
 */
export async function parseAdds(values: string[]): Promise<TreeAdd[]> {
  const adds: TreeAdd[] = [];
  for (const v of values) {
    const i = v.lastIndexOf(':/');
    if (i <= 0) throw new VriftError(`parsing --add ${v}: use <host-dir>:${VRIFT_ROOT}/<path>, e.g. --add ./site-packages:${VRIFT_ROOT}/python`, { exitCode: EXIT.usage });
    const src = v.slice(0, i);
    const rawDest = v.slice(i + 1);
    if (hasReplacementChar(rawDest)) {
      throw new VriftError(`parsing --add ${v}: the destination holds bytes that are not UTF-8 (shown as \uFFFD), which a command line read by Node cannot pass intact; give a UTF-8 destination`, { exitCode: EXIT.usage });
    }
    const dest = path.posix.normalize(rawDest).replace(/\/+$/, '');
    if (dest === VRIFT_ROOT) {
      throw new VriftError(`adding ${src}: destination ${VRIFT_ROOT} is the domain root itself; add under it, e.g. ${VRIFT_ROOT}/${path.basename(path.resolve(src))}`);
    }
    if (!dest.startsWith(`${VRIFT_ROOT}/`)) {
      throw new VriftError(`adding ${src}: destination ${rawDest} is outside ${VRIFT_ROOT}; use a path under ${VRIFT_ROOT}/, e.g. ${VRIFT_ROOT}/python`);
    }
    if (rawDest.split('/').includes('..')) {
      throw new VriftError(`adding ${src}: destination ${rawDest} contains "..", which vrift does not resolve; write the path without it, e.g. ${dest}`);
    }
    const long = dest.split('/').find((c) => Buffer.byteLength(c) > NAME_MAX);
    if (long !== undefined) {
      throw new VriftError(`adding ${src}: destination ${dest} has a ${Buffer.byteLength(long)}-byte component, longer than NAME_MAX (${NAME_MAX} bytes); shorten it`);
    }
    if (dest === `${VRIFT_ROOT}/.cas` || dest.startsWith(`${VRIFT_ROOT}/.cas/`)) {
      throw new VriftError(`adding ${src}: destination ${dest} is inside ${VRIFT_ROOT}/.cas, which vrift reserves for content objects; choose another path under ${VRIFT_ROOT}/`);
    }
    for (const a of adds) {
      if (a.dest === dest) throw new VriftError(`adding ${src}: destination ${dest} is already used by --add ${a.src}:${a.dest}; give each --add its own destination`);
      if (dest.startsWith(`${a.dest}/`) || a.dest.startsWith(`${dest}/`)) {
        throw new VriftError(`adding ${src}: destination ${dest} overlaps ${a.dest} (from --add ${a.src}); use destinations that do not contain each other`);
      }
    }
    let st: Stats;
    try {
      st = await fsp.stat(src);
    } catch (e) {
      // (not `instanceof Error`: errors from node:fs come from another realm under jest)
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT' && hasReplacementChar(src)) {
        throw new VriftError(`adding ${src}: no such directory, and the name holds bytes that are not UTF-8 (shown as \uFFFD), which a command line read by Node cannot pass intact; add it through a symlink with a UTF-8 name (ln -s <dir> /tmp/src && --add /tmp/src:${rawDest})`);
      }
      throw new VriftError(`adding ${src}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}; check the path before :${rawDest}`);
    }
    if (!st.isDirectory()) throw new VriftError(`adding ${src}: not a directory; --add takes a directory (put a single file in one)`);
    try {
      await fsp.access(src, fsc.R_OK | fsc.X_OK);
    } catch {
      throw new VriftError(`adding ${src}: directory is not readable by this user; fix its permissions or run as its owner`);
    }
    adds.push({ src: path.resolve(src), dest });
  }
  return adds;
}

/**
 * Refuse an --output, --cache-dir or TMPDIR that lies inside an --add
 * source: the next build would put the previous image (or the digest cache,
 * written while this build plans, or this build's temp files) into the
 * tree, and no two builds would give the same image.
 * Paths are compared after realpath of their nearest existing ancestor.
 * @throws VriftError (exit 2) naming the flag and the source
 */
export async function refuseInsideSources(adds: TreeAdd[], paths: [flag: string, value: string | undefined][]): Promise<void> {
  const real = async (p: string): Promise<string> => {
    const abs = path.resolve(p);
    for (let dir = abs, rest = ''; ; rest = path.join(path.basename(dir), rest), dir = path.dirname(dir)) {
      const r = await fsp.realpath(dir).catch(() => undefined);
      if (r !== undefined) return path.join(r, rest);
      if (dir === path.dirname(dir)) return abs;
    }
  };
  for (const [flag, value] of paths) {
    if (value === undefined) continue;
    const p = await real(value);
    for (const add of adds) {
      const src = await real(add.src);
      if (p === src || p.startsWith(`${src}/`)) {
        throw new VriftError(`writing ${value}: it is inside the source ${add.src} of --add ${add.src}:${add.dest}, so the next build would take it into the tree; give a ${flag} outside every --add source`, { exitCode: EXIT.usage });
      }
    }
  }
}

/**
 * The build spools layers and the base under os.tmpdir() ($TMPDIR, default
 * /tmp): a missing or unwritable one is said up front, in one line, instead
 * of a raw "ENOENT: ..., mkdtemp" after the tree was hashed.
 * @throws VriftError naming the directory and TMPDIR
 */
export async function checkTmpDir(dir: string = os.tmpdir()): Promise<void> {
  const st = await fsp.stat(dir).catch((err: NodeJS.ErrnoException) => err.code ?? 'EIO');
  let cause: string | undefined;
  if (typeof st === 'string') cause = st === 'ENOENT' ? 'no such directory' : st;
  else if (!st.isDirectory()) cause = 'not a directory';
  else if (!(await fsp.access(dir, fsc.W_OK | fsc.X_OK).then(() => true, () => false))) cause = 'not writable by this user';
  if (cause !== undefined) {
    throw new VriftError(`creating the build's temp directory in ${dir}: ${cause}; set TMPDIR to a writable directory (it holds the layers while they are written)`);
  }
}

/**
 * The digest cache is saved after hashing, into --cache-dir or the default
 * ($XDG_CACHE_HOME/vrift, ~/.cache/vrift): a directory this user cannot
 * create or write (HOME kept by `sudo -u`, a read-only home, a file given as
 * --cache-dir) failed the build only then, some with a raw "EACCES: ...,
 * lstat '<dir>/.digests-v1.json.tmp-...'". Checked here, before any work:
 * the directory must be reachable and a directory, or, when it is not there
 * yet, its nearest existing ancestor writable (a wrong path is a mistake to
 * fix, said before any work). An existing directory that is not writable
 * passes: a build that hashes nothing new (all cached) never writes it, and
 * one that does warns in one line when saving and goes on (src/cas/cache.ts:
 * the cache is an optimisation; so are a full disk and other write errors).
 * @throws VriftError naming the directory and --cache-dir
 */
export async function checkCacheDir(flag: string | undefined): Promise<void> {
  const dir = path.resolve(flag ?? defaultCacheDir());
  for (let d = dir; ; d = path.dirname(d)) {
    const st = await fsp.stat(d).catch((err: NodeJS.ErrnoException) => err.code ?? 'EIO');
    let cause: string | undefined;
    if (st === 'ENOENT' && d !== path.dirname(d)) continue;
    if (typeof st === 'string') {
      cause = st === 'EACCES' ? `${d} cannot be reached by this user (EACCES)` : st === 'ENOTDIR' ? `a component of ${d} is not a directory` : `${d}: ${st}`;
    } else if (!st.isDirectory()) cause = `${d} is not a directory`;
    else if (d !== dir && !(await fsp.access(d, fsc.W_OK | fsc.X_OK).then(() => true, () => false))) cause = `${d} is not writable by this user, so ${dir} cannot be created`;
    if (cause === undefined) return;
    throw new VriftError(`opening the digest cache ${dir}: ${cause}; pass --cache-dir <a directory you can write>${flag === undefined ? ' (or set XDG_CACHE_HOME)' : ''}`);
  }
}

/** Longest file name component Linux file systems take (NAME_MAX, bytes). */
const NAME_MAX = 255;

function vriftVersion(): string {
  return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}


/** Run `vrift build` with parsed arguments; returns the summary. */
export async function runBuild(a: BuildArgs, log: (line: string) => void, progress?: Progress): Promise<BuildResult> {
  const sourceDateEpoch = sourceDateEpochFromEnv(process.env.SOURCE_DATE_EPOCH);
  const chown = parseChown(a.chown);
  const adds = await parseAdds(a.add as string[]);
  await refuseInsideSources(adds, [
    ['--output', a.output],
    ['--cache-dir', a['cache-dir']],
    ['TMPDIR', os.tmpdir()],
  ]);
  await checkTmpDir();
  await checkCacheDir(a['cache-dir']);
  const base = await parseSourceRef(a.base);
  let shim: string;
  try {
    shim = shimPath();
  } catch (err) {
    throw new VriftError(`${(err as Error).message} (it builds the shim with \`make -C shim\`)`, { cause: err });
  }
  return buildImage({
    base,
    adds,
    tag: a.tag,
    load: a.load,
    output: a.output,
    format: a.format,
    chown,
    cacheDir: a['cache-dir'],
    sourceDateEpoch,
    shimPath: shim,
    pickShim: (arch, libc) => {
      const v = variantFor(arch, libc);
      if (!v) throw new VriftError(`picking the shim for a linux/${arch} ${libc} base: no such variant (built: ${SHIM_VARIANTS.join(', ')}); use a base of one of those`);
      return shimPath(v);
    },
    vriftVersion: vriftVersion(),
    builders: { buildVriftLayer, buildShimLayer },
    docker: dockerClient,
    log,
    progress,
    push: a.push,
    platform: a.platform,
    registry: registryOptionsFromEnv(a['insecure-registry'] as string[] | undefined),
    compression: a.compression,
  });
}

/**
 * Registry settings from `--insecure-registry` and the environment
 * (VRIFT_REGISTRY_CHUNK_THRESHOLD, VRIFT_REGISTRY_RETRIES: whole numbers).
 * @throws VriftError naming a malformed variable
 */
export function registryOptionsFromEnv(insecure: string[] | undefined, env: NodeJS.ProcessEnv = process.env): RegistryOptions {
  const num = (name: string, min: number): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (!/^[0-9]{1,15}$/.test(v) || Number(v) < min) throw new VriftError(`reading ${name}: ${JSON.stringify(v)} is not a whole number >= ${min}; fix or unset it`);
    return Number(v);
  };
  const chunkThreshold = num('VRIFT_REGISTRY_CHUNK_THRESHOLD', 1);
  return {
    insecure: insecure ?? [],
    retries: num('VRIFT_REGISTRY_RETRIES', 0),
    chunkThreshold,
    // chunks no larger than the threshold, so that a low threshold really splits blobs
    chunkSize: chunkThreshold !== undefined ? Math.min(chunkThreshold, 16 * 1024 * 1024) : undefined,
  };
}

export const buildCommand: CommandModule<object, BuildArgs> = {
  command: 'build',
  describe: 'Build an image whose /vrift tree, shim and PSFS blob are layered onto a base image',
  builder: (y) => buildOptions(y) as unknown as Argv<BuildArgs>,
  handler: async (a) => {
    const log = a.quiet ? () => undefined : (line: string) => process.stderr.write(`vrift: ${line}\n`);
    try {
      const result = await runBuild(a, log, makeProgress(progressMode({ quiet: a.quiet, json: a.json })));
      process.stdout.write(a.json ? `${JSON.stringify(result, null, 2)}\n` : `${result.tag} ${result.imageId}\n`);
    } catch (err) {
      if (a.json) process.stdout.write(`${JSON.stringify({ outcome: 'error', message: err instanceof Error ? err.message : String(err) })}\n`);
      throw err;
    }
  },
};
