/**
 * What a built shim is: read from its ELF header and dynamic strings, so the
 * build can log the variant and refuse a shim built for another architecture
 * than the base image.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { VriftError } from '../errors';

/** Facts about a shim file. `arch` uses OCI/GOARCH names. */
export interface ShimInfo {
  path: string;
  size: number;
  sha256: string;
  /** e.g. amd64, arm64, 386, arm; `unknown(<e_machine>)` otherwise. */
  arch: string;
  /** C library the shim links against: glibc, musl, or none (no libc dependency). */
  libc: 'glibc' | 'musl' | 'none';
  /** One-line description, e.g. "linux/amd64 glibc, 18432 bytes, sha256:...". */
  variant: string;
}

const MACHINES: Record<number, string> = { 3: '386', 40: 'arm', 62: 'amd64', 183: 'arm64', 243: 'riscv64', 21: 'ppc64le', 22: 's390x' };

/**
 * Inspect the shim at `p`.
 * @throws VriftError when it is unreadable or not an ELF shared object
 */
export async function inspectShim(p: string): Promise<ShimInfo> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(p);
  } catch (err) {
    throw new VriftError(`reading the shim ${p}: ${(err as Error).message}; run \`npm run build\``, { cause: err });
  }
  return describeShim(buf, p);
}

/**
 * Facts about shim bytes already in memory (e.g. read from an image layer).
 * @param p names the shim in the result and in errors
 * @throws VriftError when the bytes are not an ELF shared object
 */
export function describeShim(buf: Buffer, p: string): ShimInfo {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new VriftError(`reading the shim ${p}: not an ELF file; run \`npm run build\``);
  const little = buf[5] === 1;
  const type = little ? buf.readUInt16LE(16) : buf.readUInt16BE(16);
  if (type !== 3) throw new VriftError(`reading the shim ${p}: not a shared object (ELF type ${type}); run \`npm run build\``);
  const machine = little ? buf.readUInt16LE(18) : buf.readUInt16BE(18);
  const arch = MACHINES[machine] ?? `unknown(${machine})`;
  // DT_NEEDED names live in .dynstr; looking for the sonames is enough here.
  // musl: Alpine's gcc records libc.musl-<arch>.so.1, musl-gcc (Debian) the bare soname libc.so.
  const libc = buf.includes('libc.musl-') || buf.includes('ld-musl-') || buf.includes('\0libc.so\0') ? 'musl' : buf.includes('libc.so.6') ? 'glibc' : 'none';
  const sha256 = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
  return { path: p, size: buf.length, sha256, arch, libc, variant: `linux/${arch} ${libc}, ${buf.length} bytes, ${sha256}` };
}
