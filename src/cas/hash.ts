import { createHash } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { VriftError } from '../errors';

/** Read size for hashing: large enough to keep syscalls few, small enough to bound memory. */
const CHUNK = 1 << 20;

/**
 * sha256 of a file's content, streamed in 1 MiB chunks (memory use is
 * constant: multi-GB files are fine).
 *
 * @param file host path (string or raw bytes, so non-UTF-8 names work)
 * @param sizeHint expected size in bytes: read buffers are sized to it (at most 1 MiB)
 * @param identity the (st_dev, st_ino) the file had when walked: another file at the path is refused
 * @returns the digest as 64 lowercase hex digits (no "sha256:" prefix) and the byte count read
 * @throws VriftError when the file cannot be opened or read, is a symlink now
 *   (O_NOFOLLOW: ELOOP), or is not the walked file any more
 */
export async function sha256File(file: string | Buffer, sizeHint?: bigint, identity?: { dev: bigint; ino: bigint }): Promise<{ hex: string; size: bigint }> {
  const h = createHash('sha256');
  let size = 0n;
  const replaced = (why: string, err?: unknown): VriftError =>
    new VriftError(`hashing file ${showPath(file)}: it was deleted or replaced after the source was walked (${why}); build again once the source is stable`, { cause: err });
  try {
    const hwm = sizeHint === undefined ? CHUNK : Math.max(1, Math.min(CHUNK, Number(sizeHint) + 1));
    // O_NOFOLLOW and the walk's (st_dev, st_ino): the bytes hashed are the
    // file's that was walked, not another one reached through a symlink or a
    // directory swapped for one since (a tree others can write must not
    // pull files from elsewhere into the image).
    const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      if (identity) {
        const st = await fh.stat({ bigint: true });
        if (st.dev !== identity.dev || st.ino !== identity.ino) throw replaced('another file is at its path now');
      }
      for await (const chunk of fh.createReadStream({ highWaterMark: hwm, autoClose: false })) {
        h.update(chunk as Buffer);
        size += BigInt((chunk as Buffer).length);
      }
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof VriftError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ELOOP') throw replaced(code, err);
    if (code === 'ENAMETOOLONG') {
      throw new VriftError(`hashing file ${showPath(file)}: ENAMETOOLONG; the host path is ${Buffer.byteLength(file)} bytes, longer than the kernel takes (PATH_MAX 4096); move the source to a shorter host path (the image path may be fine)`, { cause: err });
    }
    throw new VriftError(
      `hashing file ${showPath(file)}: ${(err as Error).message}; make the file readable or remove it from the source`,
      { cause: err },
    );
  }
  return { hex: h.digest('hex'), size };
}

/** A host path for messages: UTF-8 where valid, invalid bytes shown as \xNN. */
export function showPath(p: string | Buffer): string {
  if (typeof p === 'string') return JSON.stringify(p);
  let out = '';
  const s = p.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(p)) return JSON.stringify(s);
  for (const b of p) out += b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x22 ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${out}"`;
}
