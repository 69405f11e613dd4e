/**
 * CAS object path scheme (see src/cas/README.md):
 *
 *   /vrift/.cas/<first 2 hex of sha256>/<remaining 62 hex>                         primary object
 *   /vrift/.cas/<first 2 hex of sha256>/<remaining 62 hex>.<perm>.<mtime>.<batch>  any other object of that content
 *
 * `<perm>` is the permission bits as 4 octal digits (e.g. "0755"), `<mtime>`
 * the object's st_mtime in whole seconds (decimal), `<batch>` counts the
 * objects of one (content, perm, mtime) from 0, each holding at most
 * CAS_MAX_LINKS links.
 */
export const CAS_DIR = '.cas';

/**
 * Most tree paths hardlinked to one CAS object. ext4 refuses a link past
 * EXT4_LINK_MAX (65,000 links per inode; the object's own name is one), and
 * the engine unpacks layers onto the host's filesystem: beyond this the next
 * object of the same content starts.
 */
export const CAS_MAX_LINKS = 60_000;

/** What tells a non-primary object apart: see the path scheme above. */
export interface CasVariant {
  /** Permission bits (07777). */
  perm: number;
  /** st_mtime, whole seconds since the epoch. */
  mtime: number;
  /** 0, 1, ...: the batch of CAS_MAX_LINKS links. */
  batch: number;
}

/**
 * Path of a CAS object under `root`.
 *
 * @param root domain root bytes, e.g. "/vrift"
 * @param hex sha256 of the content, 64 lowercase hex digits
 * @param variant permission bits, mtime and batch when this is not the primary object of the digest
 * @returns absolute path bytes
 * @throws Error for a malformed digest
 */
export function casObjectPath(root: Buffer, hex: string, variant?: CasVariant): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`casObjectPath: not a sha256 hex digest: ${hex}`);
  const suffix = variant === undefined ? '' : casSuffix(variant);
  return Buffer.concat([root, Buffer.from(`/${CAS_DIR}/${hex.slice(0, 2)}/${hex.slice(2)}${suffix}`)]);
}

/** The ".<perm>.<mtime>.<batch>" a non-primary object's name ends with (see the scheme above). */
export function casSuffix(variant: CasVariant): string {
  return `.${variant.perm.toString(8).padStart(4, '0')}.${variant.mtime}.${variant.batch}`;
}
