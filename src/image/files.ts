/**
 * Read-only access to the named files of an image container format: a tar
 * file (docker-archive, OCI layout tar) indexed in one pass, or a directory
 * (OCI image layout). Readers of both formats go through this so that the
 * same code handles a layout as a directory or inside a tar.
 *
 * Tar members are never extracted: the index records each regular file's data
 * offset and size, and `open()` returns a read stream over that byte range,
 * so layers of any size are read without buffering them in memory.
 */
import { createReadStream, createWriteStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { VriftError } from '../errors';

/** Named files of an archive or directory. Names are relative POSIX paths. */
export interface FileSource {
  /** Human-readable origin used in error messages, e.g. `docker-archive:/tmp/base.tar`. */
  readonly where: string;
  /** Whether a regular file `name` exists. */
  has(name: string): Promise<boolean>;
  /** Size in bytes of `name`. @throws VriftError when missing */
  size(name: string): Promise<number>;
  /**
   * The whole content of `name` (for small metadata files).
   * @param maxBytes refuse larger files (default 64 MiB) instead of reading them
   * @throws VriftError when missing or larger than maxBytes
   */
  readFile(name: string, maxBytes?: number): Promise<Buffer>;
  /** A fresh stream of `name`'s bytes. @throws VriftError when missing */
  open(name: string): Promise<Readable>;
}

const DEFAULT_MAX = 64 * 1024 * 1024;

/**
 * Normalize a member name: strip "./" and leading "/", resolve "." and "..".
 * @returns the normalized name, or null when it escapes the root
 */
export function normalizeMemberName(name: string): string | null {
  const n = path.posix.normalize(name.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (n === '..' || n.startsWith('../') || n === '' || n === '.') return null;
  return n;
}

interface TarMember {
  offset: number;
  size: number;
  linkTarget?: string;
}

/** A tar-stream extractor that records members instead of extracting them. */
function indexer(): { extract: tar.Extract; done: Promise<{ members: Map<string, TarMember>; count: number }> } {
  const members = new Map<string, TarMember>();
  const extract = tar.extract();
  let count = 0;
  const done = new Promise<{ members: Map<string, TarMember>; count: number }>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      count++;
      const name = normalizeMemberName(header.name);
      const byteOffset = (header as unknown as { byteOffset?: number }).byteOffset;
      if (name !== null) {
        if (header.type === 'file' || header.type === 'contiguous-file') {
          if (typeof byteOffset !== 'number') {
            reject(new Error('tar-stream did not report byteOffset (tar-stream >= 3.1 is required)'));
            return;
          }
          members.set(name, { offset: byteOffset, size: header.size });
        } else if (header.type === 'symlink' || header.type === 'link') {
          // symlink targets are relative to the link's directory, hardlink targets to the root
          const target = header.type === 'symlink' ? path.posix.join(path.posix.dirname(name), header.linkname) : header.linkname;
          const t = normalizeMemberName(target);
          if (t !== null) members.set(name, { offset: 0, size: 0, linkTarget: t });
        }
      }
      stream.on('end', () => next());
      stream.resume();
    });
    extract.on('finish', () => resolve({ members, count }));
    extract.on('error', reject);
  });
  return { extract, done };
}

async function finishIndex(done: Promise<{ members: Map<string, TarMember>; count: number }>, where: string): Promise<Map<string, TarMember>> {
  let r;
  try {
    r = await done;
  } catch (err) {
    throw new VriftError(`reading ${where}: not a readable tar archive (${(err as Error).message}); give an image saved with \`docker save -o <file> <image>\` or an OCI layout tar`, { cause: err });
  }
  if (r.count === 0) throw new VriftError(`reading ${where}: the tar archive is empty`);
  return r.members;
}

/** A tar file indexed once; members are read in place by byte range. */
export class TarFileSource implements FileSource {
  private constructor(
    readonly where: string,
    private readonly file: string,
    private readonly members: Map<string, TarMember>,
  ) {}

  /**
   * Index the regular files and symlinks of tar file `file`.
   * @param where origin for error messages
   * @throws VriftError when the file cannot be read or is not a tar
   */
  static async index(file: string, where: string): Promise<TarFileSource> {
    const input = createReadStream(file);
    const { extract, done } = indexer();
    input.on('error', (err) => extract.destroy(err));
    input.pipe(extract as unknown as NodeJS.WritableStream);
    return new TarFileSource(where, file, await finishIndex(done, where));
  }

  /**
   * Write `input` (a tar stream, e.g. an engine export) to `file` and index
   * it in the same pass, so the bytes are read once.
   * @throws VriftError when the stream fails or is not a tar; `file` may remain (the caller owns its directory)
   */
  static async spool(input: NodeJS.ReadableStream, file: string, where: string): Promise<TarFileSource> {
    const { extract, done } = indexer();
    const tee = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (extract.write(chunk)) cb(null, chunk);
        else extract.once('drain', () => cb(null, chunk));
      },
      flush(cb) {
        (extract as unknown as NodeJS.WritableStream).end();
        cb();
      },
    });
    const written = pipeline(input, tee, createWriteStream(file));
    written.catch((err: Error) => extract.destroy(err));
    const members = await finishIndex(done, where);
    try {
      await written;
    } catch (err) {
      throw new VriftError(`reading ${where}: ${(err as Error).message}`, { cause: err });
    }
    return new TarFileSource(where, file, members);
  }

  private resolve(name: string): TarMember | undefined {
    let n: string | null = normalizeMemberName(name);
    for (let hops = 0; n !== null && hops < 16; hops++) {
      const m = this.members.get(n);
      if (!m || m.linkTarget === undefined) return m;
      n = m.linkTarget;
    }
    return undefined;
  }

  private need(name: string): TarMember {
    const m = this.resolve(name);
    if (!m) throw new VriftError(`reading ${this.where}: member ${JSON.stringify(name)} is missing; the archive is incomplete, re-export it`);
    return m;
  }

  async has(name: string): Promise<boolean> {
    return this.resolve(name) !== undefined;
  }

  async size(name: string): Promise<number> {
    return this.need(name).size;
  }

  async readFile(name: string, maxBytes = DEFAULT_MAX): Promise<Buffer> {
    const m = this.need(name);
    if (m.size > maxBytes) throw new VriftError(`reading ${this.where}: member ${JSON.stringify(name)} is ${m.size} bytes, more than the ${maxBytes} allowed for metadata`);
    if (m.size === 0) return Buffer.alloc(0);
    const fh = await fsp.open(this.file, 'r');
    try {
      const buf = Buffer.alloc(m.size);
      let got = 0;
      while (got < m.size) {
        const { bytesRead } = await fh.read(buf, got, m.size - got, m.offset + got);
        if (bytesRead === 0) throw new VriftError(`reading ${this.where}: member ${JSON.stringify(name)} is truncated`);
        got += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  async open(name: string): Promise<Readable> {
    const m = this.need(name);
    if (m.size === 0) return Readable.from([]);
    return createReadStream(this.file, { start: m.offset, end: m.offset + m.size - 1 });
  }
}

/** A directory; names must stay inside it. */
export class DirFileSource implements FileSource {
  constructor(readonly where: string, private readonly dir: string) {}

  private full(name: string): string {
    const n = normalizeMemberName(name);
    if (n === null) throw new VriftError(`reading ${this.where}: file name ${JSON.stringify(name)} points outside the directory`);
    return path.join(this.dir, n);
  }

  async has(name: string): Promise<boolean> {
    try {
      return (await fsp.stat(this.full(name))).isFile();
    } catch {
      return false;
    }
  }

  async size(name: string): Promise<number> {
    try {
      return (await fsp.stat(this.full(name))).size;
    } catch (err) {
      throw new VriftError(`reading ${this.where}: ${JSON.stringify(name)}: ${(err as Error).message}`, { cause: err });
    }
  }

  async readFile(name: string, maxBytes = DEFAULT_MAX): Promise<Buffer> {
    const size = await this.size(name);
    if (size > maxBytes) throw new VriftError(`reading ${this.where}: ${JSON.stringify(name)} is ${size} bytes, more than the ${maxBytes} allowed for metadata`);
    return fsp.readFile(this.full(name));
  }

  async open(name: string): Promise<Readable> {
    const full = this.full(name);
    await this.size(name);
    return createReadStream(full);
  }
}
