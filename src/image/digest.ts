import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { VriftError } from '../errors';

/** `sha256:<hex>` of a buffer. */
export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Hex part of a `sha256:<hex>` digest. @throws VriftError when it is not one. */
export function digestHex(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new VriftError(`reading digest ${JSON.stringify(digest)}: not a sha256 digest (sha256:<64 hex>)`);
  return m[1];
}

/** Whether `s` is a well-formed `sha256:<64 lowercase hex>` digest. */
export function isSha256Digest(s: unknown): s is string {
  return typeof s === 'string' && /^sha256:[0-9a-f]{64}$/.test(s);
}

/**
 * Hash a stream to the end without keeping its bytes.
 * @returns the `sha256:<hex>` digest and the byte count
 */
export async function hashStream(stream: Readable): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/**
 * A pass-through that hashes what flows through it and, at the end, fails
 * the stream when the digest or byte count differs from what was expected.
 * Used when copying a layer so that a corrupt base is never written out.
 *
 * @param expected `sha256:<hex>` the bytes must hash to
 * @param expectedSize byte count the bytes must have
 * @param what names the content in the error, e.g. "layer 2 of docker-archive:base.tar"
 */
export function verifyingPassThrough(expected: string, expectedSize: number, what: string): Transform {
  const h = createHash('sha256');
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      h.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      const got = `sha256:${h.digest('hex')}`;
      if (got !== expected || size !== expectedSize) {
        cb(new VriftError(`copying ${what}: content is ${got} (${size} bytes) but ${expected} (${expectedSize} bytes) was expected; the source is corrupt, re-export it`));
      } else cb();
    },
  });
}
