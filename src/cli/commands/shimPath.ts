import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { VriftError } from '../../errors';

/** Package root: the directory holding package.json (dist/cli/commands -> ../../..). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * Absolute path of the built shim for this machine: shim/build/libvrift.so
 * under the package root.
 *
 * @throws VriftError when the file does not exist (run `npm run build`)
 */
export function shimPath(): string {
  const p = path.join(PACKAGE_ROOT, 'shim', 'build', 'libvrift.so');
  if (!fs.existsSync(p)) {
    throw new VriftError(`finding the shim: ${p} does not exist; run \`npm run build\` in ${PACKAGE_ROOT}`);
  }
  return p;
}

/** `vrift shim-path`: print the absolute path of the built libvrift.so. */
export const shimPathCommand: CommandModule<object, object> = {
  command: 'shim-path',
  describe: 'Print the path of the built shim (libvrift.so) for this machine',
  builder: (y: Argv) =>
    y
      .example('$0 shim-path', 'Print e.g. /opt/vrift/shim/build/libvrift.so')
      .example('LD_PRELOAD=$($0 shim-path) VRIFT_BLOB=tree.psfs stat tree/a', 'Run one command with the shim'),
  handler: async () => {
    process.stdout.write(`${shimPath()}\n`);
  },
};
