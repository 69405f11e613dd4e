import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { VriftError, EXIT } from '../../errors';
import * as F from '../../blob/format';
import { encodeBlob, type BlobEntry } from '../../blob/writer';
import type { HostTree } from '../../blob/hostTree';
import { BLOB_IMAGE_PATH, SHIM_IMAGE_PATH, type LayerEntry } from '../../layer/types';
import { blobEntriesFromPlan, planTree, SYNTHETIC_INO_BASE } from '../../tree';
import { checkCacheDir, parseAdds, parseChown, refuseInsideSources, sourceDateEpochFromEnv } from './build';
import { PACKAGE_ROOT, shimPath } from './shimPath';
import { checkSingleValues } from '../args';

// Owned by the integrations work (issue 6): `vrift layer` is what a `docker build`
// stage runs, because `vrift build` needs an engine and a base image, neither of
// which exists inside a build step.

/** Parsed arguments of `vrift layer`. */
export interface LayerArgs {
  add: string[];
  'out-dir': string;
  chown?: string;
  'cache-dir'?: string;
  variant?: string;
  json: boolean;
  quiet: boolean;
}

/** JSON summary `vrift layer --json` prints on stdout. */
export interface LayerSummary {
  outcome: 'written';
  /** Absolute output directory: holds tree/vrift/... and lib/{psfs.blob,libvrift.so,vrift-mkblob}. */
  outDir: string;
  /** Paths written under /vrift (root included; hardlinks counted per path). */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  casObjects: number;
  /** Logical bytes of tree files (before dedup). */
  bytes: string;
  blobDigest: string;
  blobSize: number;
  /** Paths whose st_size/st_blocks in the blob are estimates (src/tree/README.md). */
  uncertain: string[];
}

const outPath = (outDir: string, p: Buffer): Buffer => Buffer.concat([Buffer.from(outDir), p]);

/**
 * Write planned layer entries as real files under `outDir` (entry path
 * "/vrift/a" -> "<outDir>/vrift/a"): directories, file contents, hardlinks
 * (to the CAS objects, as in the layer), symlinks; then owner, permission
 * bits (after chown, which clears set-id bits) and mtime (whole seconds;
 * children before parents so creating a child does not move a parent's mtime).
 *
 * @throws VriftError naming the path on any I/O error (EPERM from lchown when not root)
 */
export async function materializeEntries(entries: LayerEntry[], outDir: string): Promise<void> {
  const done: LayerEntry[] = [];
  for (const e of entries) {
    const p = outPath(outDir, e.path);
    try {
      switch (e.type) {
        case 'directory':
          await fsp.mkdir(p, { mode: 0o700 });
          break;
        case 'file':
          if ('file' in e.source) await fsp.copyFile(e.source.file, p);
          else await fsp.writeFile(p, e.source.content);
          break;
        case 'hardlink':
          await fsp.link(outPath(outDir, e.linkTo), p);
          continue; // shares its object's inode: owner, mode and mtime are the object's
        case 'symlink':
          await fsp.symlink(e.target, p);
          break;
      }
      await fsp.lchown(p, e.uid, e.gid);
      if (e.type === 'file') await fsp.chmod(p, e.mode & 0o7777);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code === 'EPERM' ? '; run as root (a docker build RUN step is)' : '';
      throw new VriftError(`writing ${p.toString()}: ${(err as Error).message}${why}`, { cause: err });
    }
    done.push(e);
  }
  // Directories get their final bits only now: a planned 0555 directory must still
  // accept its children above.
  for (let i = done.length - 1; i >= 0; i--) {
    const e = done[i];
    const p = outPath(outDir, e.path);
    const t = Number(e.mtime.sec);
    try {
      if (e.type === 'directory') await fsp.chmod(p, e.mode & 0o7777);
      if (e.type === 'symlink') await fsp.lutimes(p, t, t);
      else await fsp.utimes(p, t, t);
    } catch (err) {
      throw new VriftError(`setting attributes of ${p.toString()}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * `vrift layer`: what `vrift build` puts into an image, written as a
 * directory instead of a layer: `<out>/tree/vrift/...` (content-addressed
 * tree, hardlinks into `/vrift/.cas`), `<out>/lib/psfs.blob` (generated from
 * the written entries, flags PSFS_H_DEV_RUNTIME | PSFS_H_CHECK_ROOT_MTIME) and
 * `<out>/lib/libvrift.so` (and `<out>/lib/vrift-mkblob`, the static blob
 * generator, when built). Meant for a `docker build` stage; later stages
 * `COPY --from=<stage> <out>/tree/ /` (the parent is copied, not /vrift itself:
 * `COPY <dir>/ /vrift/` gives /vrift a new mtime, measured) and
 * `COPY --from=<stage> <out>/lib/ /usr/lib/vrift/`.
 *
 * The output directory must not exist or be empty; it is written under a
 * temp name next to it and renamed, so a failure leaves nothing.
 *
 * @returns the summary printed with --json
 * @throws VriftError (bad --add, output exists and is not empty, I/O)
 */
export async function runLayer(a: LayerArgs, log: (line: string) => void): Promise<LayerSummary> {
  const sourceDateEpoch = sourceDateEpochFromEnv(process.env.SOURCE_DATE_EPOCH);
  const chown = parseChown(a.chown);
  const adds = await parseAdds(a.add);
  await refuseInsideSources(adds, [['--cache-dir', a['cache-dir']], ['TMPDIR', os.tmpdir()]]);
  await checkCacheDir(a['cache-dir']);
  const outDir = path.resolve(a['out-dir']);
  const existing = await fsp.readdir(outDir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : err));
  if (existing instanceof Error) throw new VriftError(`writing ${outDir}: ${existing.message}; choose another --out-dir`);
  if (existing && existing.length > 0) throw new VriftError(`writing ${outDir}: directory exists and is not empty; remove it or choose another --out-dir`);
  for (const add of adds) {
    if (outDir === add.src || outDir.startsWith(`${add.src}/`)) {
      throw new VriftError(`writing ${outDir}: it is inside the source ${add.src}; choose an --out-dir outside every --add source`, { exitCode: EXIT.usage });
    }
  }
  const shim = shimPath(a.variant);
  // The static blob generator (shim/mkblob.c), so the image's last build step can
  // regenerate the blob over the tree as COPY laid it down (needs no node, no libc).
  const mkblob = path.join(PACKAGE_ROOT, 'shim', 'build', a.variant?.startsWith('arm64') ? 'vrift-mkblob-arm64' : 'vrift-mkblob');
  const haveMkblob = await fsp.access(mkblob).then(() => true, () => false);

  const plan = await planTree(adds, { chown, sourceDateEpoch, cacheDir: a['cache-dir'] });
  // Planned mtimes are whole seconds (the root's too): Node's utimes(2)
  // wrapper takes float seconds and cannot write exact nanoseconds, and
  // `COPY` in `docker build` truncates every mtime to whole seconds anyway
  // (measured, docs/integrations/docker-build.md), so the directory written
  // and the blob agree exactly.
  const entries = plan.entries;
  plan.table.close(); // every entry is an object now: the table's spilled paths are not read again
  const { entries: blobEntries, uncertain } = blobEntriesFromPlan(entries, plan.root);
  const blob = encodeBlob({ roots: [plan.root], entries: blobEntries, flags: F.H_DEV_RUNTIME | F.H_CHECK_ROOT_MTIME });

  const tmp = `${outDir}.vrift-tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.mkdir(path.join(tmp, 'tree'), { recursive: true, mode: 0o755 });
    await fsp.mkdir(path.join(tmp, 'lib'), { mode: 0o755 });
    await fsp.writeFile(path.join(tmp, 'lib', path.basename(BLOB_IMAGE_PATH)), blob, { mode: 0o644 });
    await fsp.copyFile(shim, path.join(tmp, 'lib', path.basename(SHIM_IMAGE_PATH)));
    await fsp.chmod(path.join(tmp, 'lib', path.basename(SHIM_IMAGE_PATH)), 0o755);
    if (haveMkblob) await fsp.copyFile(mkblob, path.join(tmp, 'lib', 'vrift-mkblob'));
    if (haveMkblob) await fsp.chmod(path.join(tmp, 'lib', 'vrift-mkblob'), 0o755);
    for (const d of ['', 'tree', 'lib']) await fsp.chmod(path.join(tmp, d), 0o755);
    await materializeEntries(entries, path.join(tmp, 'tree'));
    if (existing) await fsp.rmdir(outDir);
    await fsp.rename(tmp, outDir);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    if (err instanceof VriftError) throw err;
    throw new VriftError(`writing ${outDir}: ${(err as Error).message}`, { cause: err });
  }
  const s = plan.stats;
  log(`layer: ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${s.bytes} bytes, ${s.casObjects} CAS objects -> ${outDir}`);
  return {
    outcome: 'written',
    outDir,
    entries: entries.length,
    files: s.files,
    dirs: s.dirs,
    symlinks: s.symlinks,
    casObjects: s.casObjects,
    bytes: s.bytes.toString(),
    blobDigest: `sha256:${createHash('sha256').update(blob).digest('hex')}`,
    blobSize: blob.length,
    uncertain: uncertain.map((u) => u.toString()),
  };
}

/**
 * Turn a host-tree scan (real lstat values) into the image identity policy
 * (BRIEF "Identity policy"), for a blob regenerated over a tree inside an
 * image build: st_ino synthetic (SYNTHETIC_INO_BASE + n in path order, paths
 * sharing a real inode share n, i.e. hardlinks), st_dev 0 with
 * PSFS_H_DEV_RUNTIME (the shim takes it from the real root), atime = ctime =
 * mtime, PSFS_H_CHECK_ROOT_MTIME. Mode, owner, size, blocks, blksize, nlink
 * and mtime stay as measured: they are what the image's layers carry, except
 * that directories past one block (st_size > 4096 or st_blocks > 8) are
 * flagged PSFS_E_UNCERTAIN: their block count can change when a layer
 * commit recreates them, so the shim passes their stat through.
 */
export function imageModeTree(tree: HostTree): HostTree {
  const ids = new Map<string, bigint>();
  let n = 0n;
  const entries: BlobEntry[] = [...tree.entries]
    .sort((x, y) => Buffer.compare(x.path, y.path))
    .map((e) => {
      const k = `${e.dev}:${e.ino}`;
      let ino = ids.get(k);
      if (ino === undefined) {
        ino = SYNTHETIC_INO_BASE + ++n;
        ids.set(k, ino);
      }
      // A directory past one block may take another block count once a layer
      // commit recreates it (shim/mkblob.c set_identity): the shim asks the kernel.
      const bigDir = (e.mode & 0o170000) === 0o040000 && (e.size > 4096n || e.blocks > 8n);
      return { ...e, ino, dev: 0n, atime: { ...e.mtime }, ctime: { ...e.mtime }, ...(bigDir ? { uncertain: true } : {}) };
    });
  return { ...tree, entries, flags: (tree.flags ?? 0) | F.H_DEV_RUNTIME | F.H_CHECK_ROOT_MTIME };
}

export const layerCommand: CommandModule<object, LayerArgs> = {
  command: 'layer',
  describe: 'Write the /vrift tree, its PSFS blob and the shim into a directory (for a docker build stage)',
  builder: (y: Argv) =>
    y
      .options({
        add: { type: 'string', array: true, demandOption: true, requiresArg: true, description: 'Add <dir>:<path under /vrift> (repeatable)' },
        'out-dir': { type: 'string', demandOption: true, requiresArg: true, description: 'Directory to write (must not exist or be empty): tree/vrift/... and lib/{psfs.blob,libvrift.so,vrift-mkblob}' },
        chown: { type: 'string', requiresArg: true, description: 'Owner uid:gid of every /vrift entry (default 0:0)' },
        'cache-dir': { type: 'string', requiresArg: true, description: 'Digest cache directory (default $XDG_CACHE_HOME/vrift or ~/.cache/vrift)' },
        variant: { type: 'string', requiresArg: true, description: 'Shim variant for the target image, <arch>-<libc> (amd64-glibc, amd64-musl, arm64-glibc, arm64-musl); default the host\'s' },
        json: { type: 'boolean', default: false, description: 'Print a JSON summary on stdout' },
        quiet: { type: 'boolean', default: false, description: 'No progress lines on stderr' },
      })
      .example('$0 layer --add /deps/site-packages:/vrift/python --out-dir /out', 'In a docker build stage; then COPY --from=<stage> /out/tree/ / and COPY --from=<stage> /out/lib/ /usr/lib/vrift/')
      .epilogue('Environment: SOURCE_DATE_EPOCH clamps file mtimes. See docs/integrations/docker-build.md.') as unknown as Argv<LayerArgs>,
  handler: async (a) => {
    checkSingleValues(a as unknown as Record<string, unknown>, ['out-dir', 'chown', 'cache-dir', 'variant']);
    const log = a.quiet ? () => undefined : (line: string) => process.stderr.write(`vrift: ${line}\n`);
    const s = await runLayer(a, log);
    process.stdout.write(a.json ? `${JSON.stringify(s, null, 2)}\n` : `${s.outDir} ${s.blobDigest}\n`);
  },
};
