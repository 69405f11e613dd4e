import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { createGzip, constants as zc } from 'node:zlib';
import { VriftError } from '../errors';
import { showPath } from '../cas/hash';
import { MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, type LayerEntry, type LayerFile, type FileEntry } from './types';
import { createZstdCompressor } from './compress';
import type { LayerEntries } from './table';

/** gzip level used for every layer (fixed: the compressed bytes, hence the digest, depend on it). */
export const GZIP_LEVEL = 6;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** Largest value of a 12-byte octal ustar size field (11 digits). */
const USTAR_MAX_SIZE = 0o77777777777;
/** Largest uid/gid the 6 octal digits written into the 8-byte ustar field hold. */
const USTAR_MAX_ID = 0o777777;
/** mtimes outside 0..2^31-1 go through PAX (the header field's range as tar-stream wrote it). */
const USTAR_MAX_MTIME = 0x7fffffff;

/** Streams bytes through unchanged while hashing them. */
class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  bytes = 0;
  /** Called with each chunk's length (progress). */
  onChunk?: (n: number) => void;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onChunk?.(chunk.length);
    cb(null, chunk);
  }
}

function isAsciiPrintable(b: Buffer): boolean {
  for (const c of b) if (c < 0x20 || c > 0x7e) return false;
  return true;
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b);
}

/** Whether `name` fits ustar's name (100) + prefix (155) fields the way tar-stream splits it. */
function fitsUstar(name: Buffer): boolean {
  if (!isAsciiPrintable(name)) return false;
  if (name.length <= 100) return true;
  // tar-stream moves leading components into the prefix until the rest fits.
  const s = name.toString('latin1');
  let rest = s;
  let prefix = '';
  while (rest.length > 100) {
    const i = rest.indexOf('/');
    if (i === -1) return false;
    prefix += prefix ? '/' + rest.slice(0, i) : rest.slice(0, i);
    rest = rest.slice(i + 1);
  }
  return prefix.length <= 155;
}

/** One PAX extended header record: "<len> <key>=<value>\n", len counting itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Octal field of `width` bytes: digits, NUL-terminated. */
function octal(buf: Buffer, off: number, width: number, value: number): void {
  buf.write(value.toString(8).padStart(width - 1, '0') + '\0', off, width, 'latin1');
}

/**
 * Where tar bytes go: small pieces (headers, padding) are gathered into
 * writes of at least BATCH bytes, file data is written as read; every write
 * waits for 'drain' when the compressor is behind, so at most a few
 * high-water marks of tar bytes are ever in memory, whatever the entry count.
 */
/**
 * The output side's failure, to race waits against. Promise.race with one
 * long-lived promise leaves a reaction (promise, closure, context) on it per
 * call until it settles, that is one per file written: memory grew with the
 * tree (~150 bytes a file, measured). Here a wait registers while it lasts.
 */
class Abort {
  private error: Error | undefined;
  private readonly waiters = new Set<(err: Error) => void>();

  /** @param output the output pipeline: its rejection fails every pending and later race */
  constructor(output: Promise<unknown>) {
    output.catch((err: Error) => {
      this.error = err;
      for (const fail of this.waiters) fail(err);
      this.waiters.clear();
    });
  }

  /** `p`'s outcome, or the output's error as soon as the output fails. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.error) {
      p.catch(() => undefined); // its own failure is this one, already reported
      return Promise.reject(this.error);
    }
    return new Promise<T>((resolve, reject) => {
      this.waiters.add(reject);
      p.then(
        (v) => {
          this.waiters.delete(reject);
          resolve(v);
        },
        (err: unknown) => {
          this.waiters.delete(reject);
          reject(err as Error);
        },
      );
    });
  }
}

class TarOut {
  private parts: Buffer[] = [];
  private n = 0;
  private static readonly BATCH = 64 * 1024;

  constructor(private readonly dest: Writable, private readonly aborted: Abort) {}

  /** Queue small bytes (flushed once BATCH bytes are queued, or before data). */
  async put(b: Buffer): Promise<void> {
    this.parts.push(b);
    this.n += b.length;
    if (this.n >= TarOut.BATCH) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.n === 0) return;
    const b = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.n);
    this.parts = [];
    this.n = 0;
    await this.write(b);
  }

  /** Write bytes now (after what is queued), waiting for 'drain' when the stream is full. */
  async write(b: Buffer): Promise<void> {
    if (this.n) await this.flush();
    if (!this.dest.write(b)) await this.aborted.race(once(this.dest, 'drain'));
  }
}

/**
 * A PAX extended header (typeflag 'x') whose records apply to the next
 * entry: the 512-byte ustar header, the records and the padding. Its fields
 * are fixed (name "PaxHeader", mode 0644, root, mtime 0).
 */
function paxHeader(records: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write('PaxHeader', 0, 'latin1');
  octal(h, 100, 8, 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, records.length);
  octal(h, 136, 12, 0);
  h.write('x', 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  octal(h, 329, 8, 0);
  octal(h, 337, 8, 0);
  h.fill(0x20, 148, 156); // checksum computed with its own field as spaces
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  const pad = (512 - (records.length % 512)) % 512;
  return Buffer.concat([h, records, Buffer.alloc(pad)]);
}

/** A deterministic ASCII stand-in for the ustar name field when PAX carries the real one. */
function fallbackName(name: Buffer): string {
  let s = '';
  for (const c of name) s += c >= 0x20 && c <= 0x7e ? String.fromCharCode(c) : '_';
  // The tail, never starting with "/": a reader that ignores PAX must not see an absolute name.
  return (s.length > 99 ? s.slice(s.length - 99) : s).replace(/^\/+/, '');
}

/** Tar member name of an absolute image path: no leading "/", directories end with "/". */
function memberName(p: Buffer, isDir: boolean): Buffer {
  if (p.length < 2 || p[0] !== 0x2f) throw new VriftError(`writing layer: entry path ${showPath(p)} is not absolute`);
  const rel = p.subarray(1);
  for (const comp of rel.toString('latin1').split('/')) {
    if (comp === '' || comp === '.' || comp === '..') {
      throw new VriftError(`writing layer: entry path ${showPath(p)} has an empty, "." or ".." component`);
    }
  }
  return isDir ? Buffer.concat([rel, Buffer.from('/')]) : rel;
}

/** Fields of one ustar header; names are printable ASCII that fit (PAX carries anything else). */
interface UstarFields {
  name: string;
  typeflag: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname?: string;
  uname: string;
  gname: string;
}

/** `width - 1` octal digits and a space; all sevens when the value does not fit. */
function oct(value: number, digits: number): string {
  const s = value.toString(8);
  return s.length > digits ? '7'.repeat(digits) + ' ' : s.padStart(digits, '0') + ' ';
}

/**
 * A 512-byte ustar header, byte for byte as tar-stream 3 encoded it before
 * vrift wrote its own (layers keep their digests): the name split into
 * prefix/name at the first "/" that makes it fit, numeric fields as 6 or 11
 * octal digits plus a space (size in base-256 when it needs more than 11
 * digits), magic "ustar\0" version "00", checksum as 6 digits plus a space
 * followed by a NUL.
 */
function ustarHeader(f: UstarFields): Buffer {
  const buf = Buffer.alloc(512);
  let name = f.name;
  let prefix = '';
  while (name.length > 100) {
    const i = name.indexOf('/');
    prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
    name = name.slice(i + 1);
  }
  buf.write(name, 0, 'latin1');
  buf.write(oct(f.mode & 0o7777, 6), 100, 'latin1');
  buf.write(oct(f.uid, 6), 108, 'latin1');
  buf.write(oct(f.gid, 6), 116, 'latin1');
  if (f.size.toString(8).length > 11) {
    buf[124] = 0x80;
    let n = f.size;
    for (let i = 11; i > 0; i--) {
      buf[124 + i] = n & 0xff;
      n = Math.floor(n / 0x100);
    }
  } else {
    buf.write(oct(f.size, 11), 124, 'latin1');
  }
  buf.write(oct(f.mtime, 11), 136, 'latin1');
  buf[156] = 0x30 + f.typeflag;
  if (f.linkname) buf.write(f.linkname, 157, 'latin1');
  buf.write('ustar\x0000', 257, 'latin1');
  if (f.uname) buf.write(f.uname, 265, 'latin1');
  if (f.gname) buf.write(f.gname, 297, 'latin1');
  buf.write(oct(0, 6), 329, 'latin1');
  buf.write(oct(0, 6), 337, 'latin1');
  if (prefix) buf.write(prefix, 345, 'latin1');
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += buf[i];
  for (let i = 156; i < 512; i++) sum += buf[i];
  buf.write(oct(sum, 6), 148, 'latin1');
  return buf;
}

const typeFlag = { directory: 5, file: 0, hardlink: 1, symlink: 2 } as const;
const typeBits = { directory: S_IFDIR, file: S_IFREG, hardlink: S_IFREG, symlink: S_IFLNK } as const;
const ZERO_BLOCK = Buffer.alloc(512);

/**
 * Write `entries` as tar bytes to `out`, in the given order, with every
 * header field explicit (mode, uid, gid, uname, gname, mtime). PAX records
 * are added when a name or link name does not fit ustar or is not printable
 * ASCII (plus `hdrcharset=BINARY` when it is not valid UTF-8), when the size
 * exceeds the octal field, when uid/gid/mtime do not fit, or when mtime has
 * nanoseconds. Ends with the two zero blocks.
 */
async function packEntries(out: TarOut, entries: LayerEntry[] | LayerEntries, aborted: Abort): Promise<void> {
  // Hardlink targets are regular files written earlier. LayerEntries (an
  // EntryTable) name them by index; in an array, planned hardlinks share
  // their target's path Buffer, so an identity set answers without a string
  // per file; a target given as another Buffer with the same bytes falls
  // back to a set of the paths' bytes, built on first need.
  const list = Array.isArray(entries) ? undefined : entries;
  const same = new Set<Buffer>();
  let byBytes: Set<string> | undefined;
  const written = (p: Buffer, i: number): boolean => {
    if (list) {
      const t = list.linkTarget(i);
      return t >= 0 && t < i;
    }
    if (same.has(p)) return true;
    byBytes ??= new Set([...same].map((f) => f.toString('latin1')));
    return byBytes.has(p.toString('latin1'));
  };
  for (let i = 0; i < entries.length; i++) {
    const e = list ? list.entry(i) : (entries as LayerEntry[])[i];
    if ((e.mode & S_IFMT) !== typeBits[e.type]) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: st_mode 0${e.mode.toString(8)} does not match type ${e.type}`);
    }
    const isDir = e.type === 'directory';
    const name = memberName(e.path, isDir);
    const link = e.type === 'hardlink' ? memberName(e.linkTo, false) : e.type === 'symlink' ? e.target : undefined;
    if (e.type === 'hardlink' && !written(e.linkTo, i)) {
      throw new VriftError(`writing layer: hardlink ${showPath(e.path)} precedes its target ${showPath(e.linkTo)}`);
    }
    if (e.type === 'file' && !list) {
      same.add(e.path);
      byBytes?.add(e.path.toString('latin1'));
    }
    const size = e.type === 'file' ? e.size : 0n;
    const sec = Number(e.mtime.sec);

    const pax: Buffer[] = [];
    let hdrName = name.toString('latin1');
    let hdrLink = link?.toString('latin1');
    if (!fitsUstar(name)) {
      pax.push(paxRecord('path', name));
      hdrName = fallbackName(name);
    }
    if (link && (!isAsciiPrintable(link) || link.length > 100)) {
      pax.push(paxRecord('linkpath', link));
      hdrLink = fallbackName(link);
    }
    if ((!isUtf8(name) || (link && !isUtf8(link))) && pax.length) pax.unshift(paxRecord('hdrcharset', Buffer.from('BINARY')));
    if (size > BigInt(USTAR_MAX_SIZE)) pax.push(paxRecord('size', Buffer.from(String(size))));
    if (e.uid > USTAR_MAX_ID) pax.push(paxRecord('uid', Buffer.from(String(e.uid))));
    if (e.gid > USTAR_MAX_ID) pax.push(paxRecord('gid', Buffer.from(String(e.gid))));
    const mtimeFits = sec >= 0 && sec <= USTAR_MAX_MTIME;
    if (!Number.isInteger(e.mtime.nsec) || e.mtime.nsec < 0 || e.mtime.nsec > 999_999_999) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: mtime nsec ${e.mtime.nsec} is not in 0..999999999`);
    }
    if (!mtimeFits || e.mtime.nsec !== 0) {
      // POSIX pax: decimal seconds with an optional fraction (Go's archive/tar and GNU tar read 9 digits).
      const frac = e.mtime.nsec !== 0 ? '.' + String(e.mtime.nsec).padStart(9, '0') : '';
      pax.push(paxRecord('mtime', Buffer.from(String(e.mtime.sec) + frac)));
    }

    if (pax.length) await out.put(paxHeader(Buffer.concat(pax)));
    await out.put(ustarHeader({
      name: hdrName,
      typeflag: typeFlag[e.type],
      mode: e.mode,
      uid: e.uid > USTAR_MAX_ID ? 0 : e.uid,
      gid: e.gid > USTAR_MAX_ID ? 0 : e.gid,
      uname: e.uid === 0 ? 'root' : '',
      gname: e.gid === 0 ? 'root' : '',
      mtime: mtimeFits ? sec : 0,
      size: Number(size),
      linkname: hdrLink,
    }));
    if (e.type === 'file') {
      await addFileData(out, e, aborted);
      const pad = Number(e.size % 512n);
      if (pad) await out.put(ZERO_BLOCK.subarray(0, 512 - pad));
    }
  }
  await out.put(Buffer.alloc(1024));
  await out.flush();
}

/** The bytes of a file entry (exactly e.size of them, re-hashed against e.sha256 when given). */
async function addFileData(out: TarOut, e: FileEntry, aborted: Abort): Promise<void> {
  if ('content' in e.source) {
    if (BigInt(e.source.content.length) !== e.size) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: content is ${e.source.content.length} bytes, entry says ${e.size}`);
    }
    if (e.size > 0n) await out.write(e.source.content);
    return;
  }
  const src = e.source.file;
  const h = createHash('sha256');
  let n = 0n;
  try {
    // Read buffers sized to the file (at most 1 MiB): a 1 MiB buffer per small file is garbage the GC must chase.
    const hwm = Math.max(1, Math.min(1 << 20, Number(e.size) + 1));
    for await (const chunk of createReadStream(src, { highWaterMark: hwm })) {
      const b = chunk as Buffer;
      n += BigInt(b.length);
      if (n > e.size) break;
      h.update(b);
      await aborted.race(out.write(b));
    }
  } catch (err) {
    if (err instanceof VriftError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    // Deleted or replaced by a directory since it was planned: the source is being changed under the build.
    const cause = code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR'
      ? `it was deleted or replaced since it was hashed (${code}); build again once the source is stable`
      : code === 'EACCES' || code === 'EPERM'
        ? `permission denied (${code}); make it readable by this user, or remove it from the source`
        : (err as Error).message;
    throw new VriftError(`reading file ${showPath(src)} for the layer: ${cause}`, { cause: err });
  }
  if (n !== e.size || (e.sha256 !== undefined && h.digest('hex') !== e.sha256)) {
    throw new VriftError(`reading file ${showPath(src)} for the layer: it changed since it was hashed; build again once the source is stable`);
  }
}

/** Layer compression: gzip (node:zlib, default) or zstd (zstd-napi, when installed). */
export type LayerCompression = 'gzip' | 'zstd';

/**
 * Write a deterministic compressed tar layer.
 *
 * Entries are written in the order given (planTree's order: directories
 * before their contents, hardlink targets before hardlinks); member names are
 * the paths without the leading "/". diffID (sha256 of the tar) and digest
 * (sha256 of the compressed stream) are computed in the same streaming pass
 * that writes the file; tar bytes are produced only as fast as the
 * compressor takes them (memory stays bounded whatever the entry count).
 * gzip: node:zlib level {@link GZIP_LEVEL}, header without file name and
 * with mtime 0. zstd: see src/layer/compress.ts. The output goes to a temp
 * file next to `outFile` and is renamed at the end; on any error the temp
 * file is removed and `outFile` is untouched.
 *
 * @param entries layer entries, or LayerEntries made one at a time (an
 *   EntryTable, src/layer/table.ts); file contents are read from disk when written
 * @param outFile destination path of the layer file
 * @param opts.onTarBytes called with the number of uncompressed tar bytes as they are compressed (progress)
 * @param opts.compression 'gzip' (default) or 'zstd'
 * @returns the LayerFile (path = absolute outFile)
 * @throws VriftError on a malformed entry (relative path, ".." component, mode
 *   not matching the type, hardlink before its target), on a source that
 *   changed since it was hashed, when zstd is asked for but not installed,
 *   or on I/O failure
 */
export async function writeLayer(
  entries: LayerEntry[] | LayerEntries,
  outFile: string,
  opts: { onTarBytes?: (n: number) => void; compression?: LayerCompression } = {},
): Promise<LayerFile> {
  const out = path.resolve(outFile);
  const compression = opts.compression ?? 'gzip';
  const compressor = compression === 'zstd' ? createZstdCompressor() : createGzip({ level: GZIP_LEVEL, strategy: zc.Z_DEFAULT_STRATEGY });
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const tarTap = new HashTap();
  tarTap.onChunk = opts.onTarBytes;
  const zTap = new HashTap();
  const sink = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
  let piped: Promise<void> = Promise.resolve();
  try {
    piped = pipeline(tarTap, compressor, zTap, sink);
    // When the output side fails, stop feeding (a pending 'drain' would never come).
    const aborted = new Abort(piped);
    const feeding = packEntries(new TarOut(tarTap, aborted), entries, aborted).then(() => {
      tarTap.end();
    });
    feeding.catch((err: Error) => tarTap.destroy(err));
    await Promise.all([piped, feeding]);
    const fh = await fsp.open(tmp, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, out);
  } catch (err) {
    // A malformed entry rejects `feeding` before the write stream has even
    // opened the temp file: wait until the pipeline has torn down and the
    // file descriptor is closed, or the rm below races the open and a temp
    // file is left behind.
    sink.destroy();
    await Promise.allSettled([piped]);
    if (!sink.closed) await new Promise<void>((resolve) => sink.once('close', () => resolve()));
    await fsp.rm(tmp, { force: true });
    if (err instanceof VriftError) throw err;
    throw new VriftError(`writing layer ${out}: ${(err as Error).message}`, { cause: err });
  }
  return {
    path: out,
    mediaType: compression === 'zstd' ? MEDIA_TYPE_LAYER_ZSTD : MEDIA_TYPE_LAYER_GZIP,
    digest: `sha256:${zTap.hash.digest('hex')}`,
    diffID: `sha256:${tarTap.hash.digest('hex')}`,
    size: zTap.bytes,
  };
}

/** One file of a small layer for writeFileLayer. */
export interface SmallFile {
  /** Absolute path in the image, e.g. "/usr/lib/vrift/libvrift.so". */
  path: string;
  /** Permission bits (07777). */
  mode: number;
  /** Bytes in memory, or... */
  content?: Buffer;
  /** ...a host file to copy. Exactly one of content/srcPath. */
  srcPath?: string;
  /** mtime in seconds since the epoch. Default 0. */
  mtime?: number;
}

/**
 * Write a small layer of regular files, owned root:root, with every parent
 * directory as an explicit entry (mode 0755, root:root, mtime 0), sorted by
 * path bytes. Used for the shim layer, which must be byte-identical across
 * images so that they share it.
 *
 * @returns the LayerFile
 * @throws VriftError on a bad path, both/neither of content and srcPath, an unreadable srcPath, or I/O failure
 */
export async function writeFileLayer(files: SmallFile[], outFile: string): Promise<LayerFile> {
  const entries = new Map<string, LayerEntry>();
  const zero = { sec: 0n, nsec: 0 };
  for (const f of files) {
    const p = path.posix.normalize(f.path);
    if (!path.posix.isAbsolute(p) || p !== f.path || p === '/') throw new VriftError(`writing layer: file path ${JSON.stringify(f.path)} must be a normalized absolute path`);
    if ((f.content === undefined) === (f.srcPath === undefined)) throw new VriftError(`writing layer: file ${f.path}: give exactly one of content and srcPath`);
    const parts = p.split('/').slice(1);
    for (let i = 1; i < parts.length; i++) {
      const d = '/' + parts.slice(0, i).join('/');
      if (!entries.has(d)) entries.set(d, { type: 'directory', path: Buffer.from(d), mode: S_IFDIR | 0o755, uid: 0, gid: 0, mtime: zero });
    }
    let size: bigint;
    if (f.content !== undefined) size = BigInt(f.content.length);
    else {
      try {
        const st = await fsp.stat(f.srcPath!, { bigint: true });
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (err) {
        throw new VriftError(`reading file ${JSON.stringify(f.srcPath)}: ${(err as Error).message}; check the path`, { cause: err });
      }
    }
    if (entries.has(p)) throw new VriftError(`writing layer: file path ${p} given twice`);
    entries.set(p, {
      type: 'file', path: Buffer.from(p), mode: S_IFREG | (f.mode & 0o7777), uid: 0, gid: 0,
      mtime: { sec: BigInt(f.mtime ?? 0), nsec: 0 }, size, nlink: 1,
      source: f.content !== undefined ? { content: f.content } : { file: f.srcPath! },
    });
  }
  const sorted = [...entries.values()].sort((a, b) => Buffer.compare(a.path, b.path));
  return writeLayer(sorted, outFile);
}
