import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { createGzip, constants as zc } from 'node:zlib';
import * as tar from 'tar-stream';
import { VriftError } from '../errors';
import { showPath } from '../cas/hash';
import { MEDIA_TYPE_LAYER_GZIP, type LayerEntry, type LayerFile, type FileEntry } from './types';

/** gzip level used for every layer (fixed: the compressed bytes, hence the digest, depend on it). */
export const GZIP_LEVEL = 6;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** Largest value of a 12-byte octal ustar size field (11 digits). */
const USTAR_MAX_SIZE = 0o77777777777;
/** Largest value of an 8-byte octal ustar uid/gid field (7 digits). */
const USTAR_MAX_ID = 0o7777777;
/** tar-stream encodes mtime with `| 0`: anything outside int32 (or negative) must go through PAX. */
const TARSTREAM_MAX_MTIME = 0x7fffffff;

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
 * Emit a PAX extended header (typeflag 'x') whose records apply to the next
 * entry. tar-stream cannot do this for us: its headers take JS strings,
 * encoded as UTF-8, so a name that is not valid UTF-8 cannot pass through it,
 * and its own PAX entries cannot carry a body we choose. We push the 512-byte
 * ustar header, the records and the padding straight into the pack stream
 * (a streamx Readable) between two entries, when no entry is open. The
 * header's fields are fixed (name "PaxHeader", mode 0644, root, mtime 0).
 */
function pushPaxHeader(pack: tar.Pack, records: Buffer): void {
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
  pack.push(Buffer.concat([h, records, Buffer.alloc(pad)]));
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

type Hdr = Parameters<tar.Pack['entry']>[0];

const typeName = { directory: 'directory', file: 'file', hardlink: 'link', symlink: 'symlink' } as const;
const typeBits = { directory: S_IFDIR, file: S_IFREG, hardlink: S_IFREG, symlink: S_IFLNK } as const;

/**
 * Write `entries` to one tar-stream pack, in the given order, with every
 * header field explicit (mode, uid, gid, uname, gname, mtime; tar-stream's
 * defaults, e.g. mtime = now, never apply). PAX records are added by us when
 * a name or link name does not fit ustar or is not printable ASCII (plus
 * `hdrcharset=BINARY` when it is not valid UTF-8), when the size exceeds the
 * octal field, when uid/gid/mtime do not fit, or when mtime has nanoseconds.
 */
async function packEntries(pack: tar.Pack, entries: LayerEntry[], aborted: Promise<never>): Promise<void> {
  const written = new Set<string>();
  for (const e of entries) {
    if ((e.mode & S_IFMT) !== typeBits[e.type]) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: st_mode 0${e.mode.toString(8)} does not match type ${e.type}`);
    }
    const isDir = e.type === 'directory';
    const name = memberName(e.path, isDir);
    const link = e.type === 'hardlink' ? memberName(e.linkTo, false) : e.type === 'symlink' ? e.target : undefined;
    if (e.type === 'hardlink' && !written.has(e.linkTo.toString('latin1'))) {
      throw new VriftError(`writing layer: hardlink ${showPath(e.path)} precedes its target ${showPath(e.linkTo)}`);
    }
    written.add(e.path.toString('latin1'));
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
    const mtimeFits = sec >= 0 && sec <= TARSTREAM_MAX_MTIME;
    if (!Number.isInteger(e.mtime.nsec) || e.mtime.nsec < 0 || e.mtime.nsec > 999_999_999) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: mtime nsec ${e.mtime.nsec} is not in 0..999999999`);
    }
    if (!mtimeFits || e.mtime.nsec !== 0) {
      // POSIX pax: decimal seconds with an optional fraction (Go's archive/tar and GNU tar read 9 digits).
      const frac = e.mtime.nsec !== 0 ? '.' + String(e.mtime.nsec).padStart(9, '0') : '';
      pax.push(paxRecord('mtime', Buffer.from(String(e.mtime.sec) + frac)));
    }

    const uname = e.uid === 0 ? 'root' : '';
    const gname = e.gid === 0 ? 'root' : '';
    if (pax.length) pushPaxHeader(pack, Buffer.concat(pax));
    const header: Hdr = {
      name: hdrName,
      type: typeName[e.type],
      // Full st_mode: never 0, so tar-stream never substitutes its default (it masks to 07777).
      mode: e.mode,
      uid: e.uid > USTAR_MAX_ID ? 0 : e.uid,
      gid: e.gid > USTAR_MAX_ID ? 0 : e.gid,
      uname,
      gname,
      mtime: new Date((mtimeFits ? sec : 0) * 1000),
      size: Number(size),
      devmajor: 0,
      devminor: 0,
    };
    if (hdrLink !== undefined) header.linkname = hdrLink;
    if (e.type === 'file') await addFile(pack, header, e, aborted);
    else await addEntry(pack, header);
  }
}

function addEntry(pack: tar.Pack, header: Hdr, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (body) pack.entry(header, body, cb);
    else pack.entry(header, cb);
  });
}

async function addFile(pack: tar.Pack, header: Hdr, e: FileEntry, aborted: Promise<never>): Promise<void> {
  if ('content' in e.source) {
    if (BigInt(e.source.content.length) !== e.size) {
      throw new VriftError(`writing layer: entry ${showPath(e.path)}: content is ${e.source.content.length} bytes, entry says ${e.size}`);
    }
    return addEntry(pack, header, e.source.content);
  }
  const src = e.source.file;
  const h = createHash('sha256');
  let n = 0n;
  let sink!: ReturnType<tar.Pack['entry']>;
  const done = new Promise<void>((res, rej) => {
    sink = pack.entry(header, (err) => (err ? rej(err) : res()));
  });
  // On failure we destroy the sink and throw our own error; its echoes are expected.
  done.catch(() => undefined);
  sink.on('error', () => undefined);
  try {
    // Read buffers sized to the file (at most 1 MiB): a 1 MiB buffer per small file is garbage the GC must chase.
    const hwm = Math.max(1, Math.min(1 << 20, Number(e.size) + 1));
    for await (const chunk of createReadStream(src, { highWaterMark: hwm })) {
      const b = chunk as Buffer;
      n += BigInt(b.length);
      if (n > e.size) break;
      h.update(b);
      if (!sink.write(b)) await Promise.race([once(sink, 'drain'), aborted]);
    }
  } catch (err) {
    sink.destroy(err as Error);
    throw new VriftError(`reading file ${showPath(src)} for the layer: ${(err as Error).message}`, { cause: err });
  }
  if (n !== e.size || (e.sha256 !== undefined && h.digest('hex') !== e.sha256)) {
    const err = new VriftError(`reading file ${showPath(src)} for the layer: it changed since it was hashed; build again once the source is stable`);
    sink.destroy(err);
    throw err;
  }
  sink.end(undefined);
  await Promise.race([done, aborted]);
}

/**
 * Write a deterministic gzip-compressed tar layer.
 *
 * Entries are written in the order given (planTree's order: directories
 * before their contents, hardlink targets before hardlinks); member names are
 * the paths without the leading "/". diffID (sha256 of the tar) and digest
 * (sha256 of the gzip stream) are computed in the same streaming pass that
 * writes the file. gzip: node:zlib level {@link GZIP_LEVEL}, header without
 * file name and with mtime 0. The output goes to a temp file next to
 * `outFile` and is renamed at the end; on any error the temp file is removed
 * and `outFile` is untouched.
 *
 * @param entries layer entries; file contents are read from disk when written
 * @param outFile destination path of the .tar.gz
 * @param opts.onTarBytes called with the number of uncompressed tar bytes as they are compressed (progress)
 * @returns the LayerFile (path = absolute outFile)
 * @throws VriftError on a malformed entry (relative path, ".." component, mode
 *   not matching the type, hardlink before its target), on a source that
 *   changed since it was hashed, or on I/O failure
 */
export async function writeLayer(entries: LayerEntry[], outFile: string, opts: { onTarBytes?: (n: number) => void } = {}): Promise<LayerFile> {
  const out = path.resolve(outFile);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const pack = tar.pack();
  const tarTap = new HashTap();
  tarTap.onChunk = opts.onTarBytes;
  const gzTap = new HashTap();
  const gzip = createGzip({ level: GZIP_LEVEL, strategy: zc.Z_DEFAULT_STRATEGY });
  const sink = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
  let piped: Promise<void> = Promise.resolve();
  try {
    // tar-stream's pack is a streamx Readable: pipe it into node's pipeline by hand.
    pack.on('error', (err: Error) => tarTap.destroy(err));
    pack.pipe(tarTap);
    piped = pipeline(tarTap, gzip, gzTap, sink);
    // Feed entries while the pipeline drains; if the pipeline fails first, stop feeding.
    // When the output side fails, stop feeding (a pending 'drain' would never come).
    const aborted = piped.then(() => new Promise<never>(() => undefined));
    aborted.catch(() => undefined);
    const feeding = packEntries(pack, entries, aborted).then(() => pack.finalize());
    feeding.catch((err: Error) => pack.destroy(err));
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
    mediaType: MEDIA_TYPE_LAYER_GZIP,
    digest: `sha256:${gzTap.hash.digest('hex')}`,
    diffID: `sha256:${tarTap.hash.digest('hex')}`,
    size: gzTap.bytes,
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
