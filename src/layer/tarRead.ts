/**
 * A streaming tar header reader that keeps member names as raw bytes.
 *
 * Why not tar-stream's extractor: it decodes every name into a JS string,
 * PAX `path`/`linkpath` records always as UTF-8 (headers.js decodePax), so a
 * name that is not valid UTF-8 (which vrift's own layers carry with
 * `hdrcharset=BINARY`, src/layer/tar.ts) comes back with U+FFFD in place of
 * its bytes and no longer matches the blob entry it stands for. Here names
 * stay Buffers from the header to the caller.
 *
 * Formats read (POSIX.1-2001 pax, ustar, GNU; spec: POSIX `pax` "ustar
 * Interchange Format" and "pax Interchange Format", GNU tar manual "Basic
 * Tar Format"):
 * - ustar name (100 bytes) with the 155-byte prefix when the magic is
 *   "ustar\0" (the old GNU "ustar  \0" magic has other fields there);
 * - PAX extended headers: typeflag 'x' (next member) and 'g' (all later
 *   members), records `path`, `linkpath`, `size` (other keys ignored);
 * - GNU long names: typeflag 'L' (name) and 'K' (link name);
 * - sizes in octal or GNU base-256 (high bit of the first byte set).
 * Every header's checksum is verified (unsigned sum, and the signed sum
 * some old writers used); the archive ends at the first all-zero block or
 * at end of input on a header boundary.
 */
import { VriftError } from '../errors';

/** Member type, named as tar-stream names them (so callers can switch over). */
export type TarEntryType =
  | 'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo' | 'contiguous-file' | 'unknown';

/** One member's header, names as stored (bytes). */
export interface RawTarHeader {
  /** Member name bytes (PAX path, GNU long name, or ustar prefix + "/" + name), not normalized. */
  name: Buffer;
  /** Link target bytes for 'link' and 'symlink' (empty otherwise). */
  linkname: Buffer;
  type: TarEntryType;
  /** Body size in bytes. */
  size: number;
  /** Permission bits and any type bits the writer stored (octal field). */
  mode: number;
  /** Offset of the body in the uncompressed tar stream, in bytes. */
  offset: number;
}

/**
 * What onEntry returns: nothing to skip the body, a function that gets the
 * whole body (buffered; only for small members, e.g. a shim), or a sink that
 * gets the body in pieces as they arrive (`chunk` views are valid only during
 * the call: copy what you keep) and then `end()`, holding nothing itself.
 */
export type BodyConsumer = ((body: Buffer) => void) | BodySink | void;

/** A streamed body (BodyConsumer). */
export interface BodySink {
  chunk(bytes: Buffer): void;
  end(): void;
}

const BLOCK = 512;
const TYPES: Record<string, TarEntryType> = {
  '0': 'file', '\0': 'file', '1': 'link', '2': 'symlink', '3': 'character-device',
  '4': 'block-device', '5': 'directory', '6': 'fifo', '7': 'contiguous-file',
};
/** Largest body kept for a PAX or GNU long-name header (a name is at most a few KiB). */
const MAX_META = 1 << 20;

/** Bytes up to the first NUL of a fixed-width field. */
function field(h: Buffer, off: number, len: number): Buffer {
  const f = h.subarray(off, off + len);
  const z = f.indexOf(0);
  return z === -1 ? f : f.subarray(0, z);
}

/** A numeric field: octal digits (spaces/NULs around them), or GNU base-256. */
function numeric(h: Buffer, off: number, len: number): number {
  const f = h.subarray(off, off + len);
  if (f[0] & 0x80) {
    // base-256, big-endian, first byte's top bit is the marker (0x80 positive, 0xff negative)
    if (f[0] === 0xff) return -1;
    let v = f[0] & 0x7f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    return v;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = numeric(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += b;
    signed += b >= 0x80 ? b - 0x100 : b;
  }
  return stored === unsigned || stored === signed;
}

/** PAX records "<len> <key>=<value>\n"; values kept as bytes. */
function parsePax(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let p = 0;
  while (p < body.length) {
    const sp = body.indexOf(0x20, p);
    if (sp === -1) break;
    const len = Number(body.toString('latin1', p, sp));
    if (!Number.isInteger(len) || len <= 0 || p + len > body.length) break;
    const rec = body.subarray(sp + 1, p + len - 1); // without the trailing "\n"
    const eq = rec.indexOf(0x3d);
    if (eq !== -1) out.set(rec.toString('latin1', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    p += len;
  }
  return out;
}

/** A FIFO of chunks that hands out exact byte counts without copying more than needed. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length) {
      this.chunks.push(b);
      this.length += b.length;
    }
  }

  /** Remove and return the first n bytes (n <= length). */
  take(n: number): Buffer {
    this.length -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - got);
      c.copy(out, got, 0, k);
      got += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }

  /** Drop up to n bytes; returns how many were dropped. */
  drop(n: number): number {
    let left = Math.min(n, this.length);
    const dropped = left;
    while (left > 0) {
      const c = this.chunks[0];
      if (c.length <= left) {
        this.chunks.shift();
        left -= c.length;
      } else {
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    this.length -= dropped;
    return dropped;
  }
}

/** A BodySink that hands the whole body, as one Buffer, to `done`. */
function buffered(done: (body: Buffer) => void): BodySink {
  const parts: Buffer[] = [];
  return {
    chunk: (b) => void parts.push(Buffer.from(b)),
    end: () => done(parts.length === 1 ? parts[0] : Buffer.concat(parts)),
  };
}

/**
 * Read a tar stream's member headers in order, names as bytes.
 *
 * @param input the uncompressed tar (any async iterable of Buffers, e.g. a Readable)
 * @param onEntry called once per member (PAX and GNU long-name headers are
 *   applied, not reported); return a function to receive the member's whole
 *   body as one Buffer (keep that to small members), a BodySink to receive
 *   it in pieces, or nothing to skip it
 * @param what names the stream in errors, e.g. `layer 2 of docker-archive:a.tar`
 * @param maxBody largest body handed to a function consumer, bytes (default 1 GiB); larger ones are skipped (a BodySink gets any size)
 * @throws VriftError when a header's checksum or size field is bad, or the stream ends inside a member
 */
export async function readTarHeaders(
  input: AsyncIterable<Buffer | Uint8Array | string>,
  onEntry: (h: RawTarHeader) => BodyConsumer,
  what: string,
  maxBody = 1 << 30,
): Promise<void> {
  const q = new ByteQueue();
  let offset = 0; // stream offset of the queue's first byte
  let ended = false;
  // Body state: bytes still to consume (data + padding), and where they go.
  let skip = 0;
  // A body being consumed: its bytes go to `sink`, then `pad` bytes are skipped.
  let collect: { need: number; got: number; sink: BodySink; pad: number } | undefined;
  let global = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | undefined;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;

  const fail = (why: string, at = offset): never => {
    throw new VriftError(`reading ${what}: not a readable tar archive (${why} at byte ${at}); the layer is corrupt, re-export or re-pull the image`);
  };

  const step = (): boolean => {
    if (collect) {
      const k = Math.min(q.length, collect.need - collect.got);
      if (k > 0) {
        collect.sink.chunk(q.take(k));
        collect.got += k;
        offset += k;
      }
      if (collect.got < collect.need) return false;
      const c = collect;
      collect = undefined;
      skip = c.pad;
      c.sink.end();
      return true;
    }
    if (skip > 0) {
      const k = q.drop(skip);
      skip -= k;
      offset += k;
      return skip === 0;
    }
    if (q.length < BLOCK) return false;
    const hOffset = offset;
    const h = q.take(BLOCK);
    offset += BLOCK;
    if (h[0] === 0 && h[148] === 0 && h.every((b) => b === 0)) {
      ended = true;
      return false;
    }
    if (!checksumOk(h)) fail('bad header checksum', hOffset);
    const flag = String.fromCharCode(h[156]);
    let size = numeric(h, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) fail('bad size field', hOffset);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    // Extended headers: collect the body, apply it to what follows.
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > MAX_META) fail(`extended header of ${size} bytes`, hOffset);
      collect = {
        need: size, got: 0, pad,
        sink: buffered((b) => {
          if (flag === 'x') pax = parsePax(b);
          else if (flag === 'g') global = new Map([...global, ...parsePax(b)]);
          else if (flag === 'L') longName = field(b, 0, b.length);
          else longLink = field(b, 0, b.length);
        }),
      };
      return true;
    }
    const ustar = h.toString('latin1', 257, 263) === 'ustar\0';
    let name: Buffer = Buffer.from(field(h, 0, 100));
    if (ustar && h[345] !== 0) name = Buffer.concat([field(h, 345, 155), Buffer.from('/'), name]);
    let linkname: Buffer = Buffer.from(field(h, 157, 100));
    const ext = pax ? new Map([...global, ...pax]) : global;
    if (ext.has('path')) name = ext.get('path')!;
    else if (longName) name = longName;
    if (ext.has('linkpath')) linkname = ext.get('linkpath')!;
    else if (longLink) linkname = longLink;
    if (ext.has('size')) {
      size = Number(ext.get('size')!.toString('latin1'));
      if (!Number.isSafeInteger(size) || size < 0) fail('bad PAX size record', hOffset);
    }
    pax = undefined;
    longName = undefined;
    longLink = undefined;
    const type = TYPES[flag] ?? 'unknown';
    // Links, directories and devices have no body whatever the size field says (POSIX ustar).
    const bodySize = type === 'link' || type === 'symlink' || type === 'directory' || type === 'character-device' || type === 'block-device' || type === 'fifo' ? 0 : size;
    const bodyPad = (BLOCK - (bodySize % BLOCK)) % BLOCK;
    const consumer = onEntry({ name, linkname, type, size: bodySize, mode: numeric(h, 100, 8), offset: hOffset + BLOCK });
    if (consumer && typeof consumer === 'object') {
      // Streamed: no size limit, nothing buffered here.
      collect = { need: bodySize, got: 0, pad: bodyPad, sink: consumer };
    } else if (consumer && bodySize <= maxBody) {
      collect = { need: bodySize, got: 0, pad: bodyPad, sink: buffered(consumer) };
    } else {
      skip = bodySize + bodyPad;
    }
    return true;
  };

  for await (const chunk of input) {
    if (ended) continue; // drain what follows the end marker (more zero blocks, padding)
    q.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    while (!ended && step());
  }
  if (ended) return;
  if (collect || skip > 0 || q.length > 0) fail('unexpected end of data');
}
