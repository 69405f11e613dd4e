import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { VriftError } from '../errors';

/** Read size for hashing: large enough to keep syscalls few, small enough to bound memory. */
const CHUNK = 1 << 20;

/**
 * sha256 of a file's content, streamed in 1 MiB chunks (memory use is
 * constant: multi-GB files are fine).
 *
 * @param file host path (string or raw bytes, so non-UTF-8 names work)
 * @param sizeHint expected size in bytes: read buffers are sized to it (at most 1 MiB)
 * @returns the digest as 64 lowercase hex digits (no "sha256:" prefix) and the byte count read
 * @throws VriftError when the file cannot be opened or read
 */
export async function sha256File(file: string | Buffer, sizeHint?: bigint): Promise<{ hex: string; size: bigint }> {
  const h = createHash('sha256');
  let size = 0n;
  try {
    const hwm = sizeHint === undefined ? CHUNK : Math.max(1, Math.min(CHUNK, Number(sizeHint) + 1));
    for await (const chunk of createReadStream(file, { highWaterMark: hwm })) {
      h.update(chunk as Buffer);
      size += BigInt((chunk as Buffer).length);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
      throw new VriftError(`hashing file ${showPath(file)}: it was deleted or replaced after the source was walked (${code}); build again once the source is stable`, { cause: err });
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
