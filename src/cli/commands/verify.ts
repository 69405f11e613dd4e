import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { EXIT, VriftError } from '../../errors';
import { formatVerify, verifyTree } from '../../verify/verify';
import { checkSingleValues } from '../args';

/** Parsed arguments of `vrift verify`. */
export interface VerifyArgs {
  root: string;
  blob?: string;
  json: boolean;
}

/** Environment marker of the re-executed verifier (LD_PRELOAD emptied). */
const CHILD_MARK = 'VRIFT_VERIFY_NO_SHIM';

/** Whether libvrift.so is mapped into this process (then lstat would be answered from the blob). */
export function shimLoaded(): boolean {
  try {
    return /\/libvrift[^/\n]*\.so/.test(readFileSync('/proc/self/maps', 'utf8'));
  } catch {
    return false;
  }
}

/**
 * `vrift verify [--root <dir>] [--blob <file>]`: compare every blob entry with
 * the kernel's lstat (and stat through symlinks) and look for paths the blob
 * does not list. Exit 0 when everything matches, 3 (EXIT.mismatch) otherwise.
 *
 * The comparison must not go through the shim: when LD_PRELOAD is set or the
 * shim is mapped, the command re-executes itself with LD_PRELOAD emptied and
 * refuses to run if the shim is still loaded (e.g. from /etc/ld.so.preload).
 */
export const verifyCommand: CommandModule<object, VerifyArgs> = {
  command: 'verify',
  describe: 'Check the PSFS blob against the kernel inside an image (container or unpacked rootfs); exit 3 on mismatch or drift',
  builder: (y: Argv) =>
    y
      .option('root', { type: 'string', default: '/', requiresArg: true, describe: 'Unpacked image rootfs that prefixes every path (default: this container\'s /)' })
      .option('blob', { type: 'string', requiresArg: true, describe: 'Blob file to check (default <root>/usr/lib/vrift/psfs.blob)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the full report as JSON on stdout' })
      .example('docker run --rm -v $PWD:/opt/vrift:ro app:1 node /opt/vrift/bin/vrift.js verify', 'Inside a container of the image (the image needs a node binary)')
      .example('umoci unpack --image layout:app bundle && $0 verify --root bundle/rootfs', 'Against an unpacked rootfs')
      .example('$0 verify --root rootfs --json | jq .extra', 'Paths written into /vrift after the build (drift)')
      .epilogue('Exit codes: 0 every entry matches; 3 a field differs outside st_ino/st_dev/st_atime/st_ctime, an entry is missing, or a path on disk is not in the blob; 1 the blob cannot be read.') as unknown as Argv<VerifyArgs>,
  handler: async (a) => {
    checkSingleValues(a as unknown as Record<string, unknown>, ['root', 'blob']);
    let rootStat;
    try {
      rootStat = statSync(a.root);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new VriftError(`verifying ${path.resolve(a.root)}: ${code === 'ENOENT' ? 'no such directory' : (err as Error).message}; --root takes an unpacked image rootfs`, { cause: err });
    }
    if (!rootStat.isDirectory()) throw new VriftError(`verifying ${path.resolve(a.root)}: not a directory; --root takes an unpacked image rootfs`);
    if (process.env[CHILD_MARK] !== '1' && (process.env.LD_PRELOAD || shimLoaded())) {
      const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        stdio: 'inherit',
        env: { ...process.env, LD_PRELOAD: '', [CHILD_MARK]: '1' },
      });
      if (r.error) throw new VriftError(`verifying: re-running without the shim: ${r.error.message}`, { cause: r.error });
      process.exitCode = r.status ?? EXIT.failure;
      return;
    }
    if (shimLoaded()) {
      throw new VriftError('verifying: libvrift.so is loaded even with LD_PRELOAD emptied (listed in /etc/ld.so.preload?); the kernel cannot be asked directly here, run verify against the unpacked rootfs with --root');
    }
    const r = await verifyTree({ root: a.root, blobFile: a.blob });
    process.stdout.write(a.json ? `${JSON.stringify({ ...r, shimBypassed: process.env[CHILD_MARK] === '1' }, null, 2)}\n` : formatVerify(r));
    if (r.outcome !== 'ok') {
      const n = r.mismatches.length;
      throw new VriftError(
        `verifying ${r.domain.join(', ')}: ${n} field mismatches, ${r.missing.length} missing, ${r.extra.length} paths not in the blob${r.extra.length ? ` (first: ${r.extra[0]})` : ''}`,
        { exitCode: EXIT.mismatch },
      );
    }
  },
};
