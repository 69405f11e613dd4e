/**
 * CAS object path scheme (see src/cas/README.md):
 *
 *   /vrift/.cas/<first 2 hex of sha256>/<remaining 62 hex>            primary object
 *   /vrift/.cas/<first 2 hex of sha256>/<remaining 62 hex>.<perm>     same content, other mode
 *
 * `<perm>` is the permission bits as 4 octal digits (e.g. "0755").
 */
export const CAS_DIR = '.cas';

/**
 * Path of a CAS object under `root`.
 *
 * @param root domain root bytes, e.g. "/vrift"
 * @param hex sha256 of the content, 64 lowercase hex digits
 * @param perm permission bits (07777) when this is not the primary object of the digest
 * @returns absolute path bytes
 */
export function casObjectPath(root: Buffer, hex: string, perm?: number): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`casObjectPath: not a sha256 hex digest: ${hex}`);
  const suffix = perm === undefined ? '' : `.${perm.toString(8).padStart(4, '0')}`;
  return Buffer.concat([root, Buffer.from(`/${CAS_DIR}/${hex.slice(0, 2)}/${hex.slice(2)}${suffix}`)]);
}
