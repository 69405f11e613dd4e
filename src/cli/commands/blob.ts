import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { VriftError, EXIT } from '../../errors';
import * as F from '../../blob/format';
import { scanHostTree } from '../../blob/hostTree';
import { writeBlobFile } from '../../blob/writer';
import { imageModeTree } from './layer';
import { checkSingleValues } from '../args';

/** Parsed arguments of `vrift blob`. */
export interface BlobArgs {
  dir: string;
  output: string;
  uid?: number;
  gid?: number;
  'dev-runtime': boolean;
  'check-root-mtime': boolean;
  'image-mode': boolean;
}

/** JSON document `vrift blob` prints on stdout on success. */
export interface BlobSummary {
  outcome: 'written';
  /** Absolute path of the blob file. */
  file: string;
  /** Number of entries (paths) in the blob, root included. */
  entries: number;
  /** Blob size in bytes. */
  size: number;
  /** "sha256:<hex>" of the blob bytes. */
  digest: string;
  /** The domain root recorded in the header (realpath of <dir>, latin1-decoded if not UTF-8). */
  root: string;
  /** Header flags set (PSFS_H_* names). */
  flags: string[];
}

/**
 * `vrift blob <dir> -o <file>`: write the PSFS blob of an existing host tree
 * whose domain root is realpath(<dir>), recording real lstat(2) values.
 * Nothing is written when scanning or encoding fails (temp file + rename).
 */
export const blobCommand: CommandModule<object, BlobArgs> = {
  command: 'blob <dir>',
  describe: 'Write the PSFS blob for an existing host tree whose domain root is <dir>',
  builder: (y: Argv) =>
    y
      .positional('dir', { type: 'string', demandOption: true, describe: 'Directory that is the domain root (resolved with realpath)' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, requiresArg: true, describe: 'Blob file to write (atomically)' })
      .option('uid', { type: 'number', requiresArg: true, describe: 'Record this st_uid on every entry instead of the real owner' })
      .option('gid', { type: 'number', requiresArg: true, describe: 'Record this st_gid on every entry instead of the real group' })
      .option('dev-runtime', {
        type: 'boolean',
        default: false,
        describe: 'Set PSFS_H_DEV_RUNTIME: the shim takes st_dev from the real root at init',
      })
      .option('check-root-mtime', {
        type: 'boolean',
        default: false,
        describe: "Set PSFS_H_CHECK_ROOT_MTIME: the shim rejects the blob when the root's real mtime differs",
      })
      .option('image-mode', {
        type: 'boolean',
        default: false,
        describe: 'Image identity policy for a tree inside an image build: synthetic st_ino (hardlinks share it), atime = ctime = mtime; implies --dev-runtime --check-root-mtime',
      })
      .example('$0 blob ./tree -o tree.psfs', 'Blob for ./tree with the real lstat values')
      .example('$0 blob /vrift -o /usr/lib/vrift/psfs.blob --uid 0 --gid 0', 'Record every path as owned by root')
      .example('$0 blob /vrift -o psfs.blob --dev-runtime --check-root-mtime', 'Let the shim take st_dev from the real root and detect drift') as unknown as Argv<BlobArgs>,
  handler: async (argv) => {
    checkSingleValues(argv as unknown as Record<string, unknown>, ['dir', 'output', 'uid', 'gid']);
    for (const k of ['uid', 'gid'] as const) {
      const v = argv[k];
      // POSIX uid_t/gid_t: (uid_t)-1 means "no change" in chown(2), so 0..2^32-2.
      if (v !== undefined && (Number.isNaN(v) || !Number.isInteger(v) || v < 0 || v > 0xfffffffe)) {
        throw new VriftError(`writing PSFS blob: --${k} must be an integer 0..4294967294, got ${Number.isNaN(v) ? 'something that is not a number' : String(v)}`, { exitCode: EXIT.usage });
      }
    }
    // The output's directory must exist and the output must not be a directory: found now,
    // before the scan, not as a temp-file error after it.
    const out = path.resolve(argv.output);
    const outStat = await fsp.stat(out).catch(() => undefined);
    if (outStat?.isDirectory()) {
      throw new VriftError(`writing PSFS blob ${out}: it is a directory; name a file, e.g. ${path.join(out, 'psfs.blob')}`, { exitCode: EXIT.usage });
    }
    const outParent = await fsp.stat(path.dirname(out)).catch(() => undefined);
    if (!outParent?.isDirectory()) {
      throw new VriftError(`writing PSFS blob ${out}: directory ${path.dirname(out)} does not exist; create it first`, { exitCode: EXIT.usage });
    }
    const scanned = await scanHostTree(argv.dir, { uid: argv.uid, gid: argv.gid });
    const tree = argv['image-mode'] ? imageModeTree(scanned) : scanned; // src/cli/commands/layer.ts
    const flags = (tree.flags ?? 0) | (argv['dev-runtime'] ? F.H_DEV_RUNTIME : 0) | (argv['check-root-mtime'] ? F.H_CHECK_ROOT_MTIME : 0);
    const file = out;
    // Writing the blob into the tree it describes would change that tree
    // (a new name, the directory's mtime and size) and make the blob stale.
    const outDir = await fsp.realpath(path.dirname(file), { encoding: 'buffer' }).catch(() => undefined);
    const root = tree.roots[0];
    if (outDir && (outDir.equals(root) || (outDir.length > root.length && outDir[root.length] === 0x2f && outDir.subarray(0, root.length).equals(root)))) {
      throw new VriftError(`writing PSFS blob ${file}: the file would be inside the tree it describes (${argv.dir}); write it outside that directory`, {
        exitCode: EXIT.usage,
      });
    }
    const r = await writeBlobFile(file, { ...tree, flags });
    const summary: BlobSummary = {
      outcome: 'written',
      file,
      entries: r.entryCount,
      size: r.size,
      digest: r.digest,
      root: tree.roots[0].toString(isUtf8(tree.roots[0]) ? 'utf8' : 'latin1'),
      flags: [...(flags & F.H_DEV_RUNTIME ? ['PSFS_H_DEV_RUNTIME'] : []), ...(flags & F.H_CHECK_ROOT_MTIME ? ['PSFS_H_CHECK_ROOT_MTIME'] : [])],
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  },
};

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
}
