import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { VriftError } from '../../errors';

/** Package root: the directory holding package.json (dist/cli/commands -> ../../..). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/** Shim variants `make -C shim` builds: `<arch>-<libc>`, arch in OCI/GOARCH terms. */
export const SHIM_VARIANTS = ['amd64-glibc', 'arm64-glibc', 'amd64-musl', 'arm64-musl'] as const;
export type ShimVariant = (typeof SHIM_VARIANTS)[number];

/** The variant name for an OCI architecture and a libc, or undefined when none is built for it. */
export function variantFor(arch: string, libc: 'glibc' | 'musl'): ShimVariant | undefined {
  const v = `${arch}-${libc}`;
  return (SHIM_VARIANTS as readonly string[]).includes(v) ? (v as ShimVariant) : undefined;
}

/**
 * Absolute path of a built shim under the package root:
 * shim/build/<variant>/libvrift.so, or without `variant` shim/build/libvrift.so
 * (the host's variant, a copy of shim/build/amd64-glibc/libvrift.so on x86_64).
 *
 * @param variant one of SHIM_VARIANTS
 * @throws VriftError for an unknown variant, or when the file does not exist
 *   (run `npm run build`; arm64-musl also needs scripts/musl-arm64.sh first)
 */
export function shimPath(variant?: string): string {
  if (variant !== undefined && !(SHIM_VARIANTS as readonly string[]).includes(variant)) {
    throw new VriftError(`finding the shim: unknown variant ${JSON.stringify(variant)}; use one of ${SHIM_VARIANTS.join(', ')}`);
  }
  const p = variant ? path.join(PACKAGE_ROOT, 'shim', 'build', variant, 'libvrift.so') : path.join(PACKAGE_ROOT, 'shim', 'build', 'libvrift.so');
  if (!fs.existsSync(p)) {
    const hint = variant === 'arm64-musl' ? ' (after scripts/musl-arm64.sh, which unpacks the arm64 musl sysroot)' : '';
    throw new VriftError(`finding the shim: ${p} does not exist; run \`npm run build\`${hint} in ${PACKAGE_ROOT}`);
  }
  return p;
}

/** `vrift shim-path [--variant V]`: print the absolute path of a built libvrift.so. */
export const shimPathCommand: CommandModule<object, { variant?: string }> = {
  command: 'shim-path',
  describe: 'Print the path of the built shim (libvrift.so) for this machine, or of one variant',
  builder: (y: Argv) =>
    y
      .option('variant', { type: 'string', choices: [...SHIM_VARIANTS], describe: 'Shim variant <arch>-<libc> (default: this machine)' })
      .example('$0 shim-path', 'Print e.g. /opt/vrift/shim/build/libvrift.so')
      .example('$0 shim-path --variant arm64-musl', 'Print the shim for arm64 musl images (Alpine)')
      .example('LD_PRELOAD=$($0 shim-path) VRIFT_BLOB=tree.psfs stat tree/a', 'Run one command with the shim') as unknown as Argv<{ variant?: string }>,
  handler: async (argv) => {
    process.stdout.write(`${shimPath(argv.variant)}\n`);
  },
};
