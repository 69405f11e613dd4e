import { isUtf8 } from 'node:buffer';
import { constants as fsConstants, opendirSync, promises as fsp, type BigIntStats, type Dir } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { VriftError } from '../errors';
import { DigestCache, type FileBatch, type FileKey } from '../cas/cache';
import { showPath } from '../cas/hash';
import { casSuffix, CAS_DIR, CAS_MAX_LINKS } from '../cas/path';
import { PATH_MAX } from '../blob/format';
import { PagedArray, RecordSorter } from '../paged';
import { EntryTable, KIND_DIR, KIND_FILE, KIND_HARDLINK, KIND_SYMLINK } from '../layer/table';
import { VRIFT_ROOT, type CasObject, type LayerEntry, type PlanOptions, type TreeAdd, type TreePlan } from '../layer/types';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const SLASH = 0x2f;
/** Files hashed concurrently (I/O overlaps hashing; 2 cores here). */
const HASH_CONCURRENCY = 4;
/** Names of one directory lstat'ed concurrently (bounded: memory per request and per BigIntStats). */
const LSTAT_BATCH = 64;
/** Linux SYMLOOP_MAX-like bound when resolving symlinks inside a source. */
const MAX_SYMLINK_HOPS = 40;

/**
 * Parse SOURCE_DATE_EPOCH strictly (reproducible-builds.org spec: a decimal
 * integer number of seconds since the epoch).
 *
 * @param value the environment value; undefined or "" means "not set"
 * @returns seconds, or undefined when not set
 * @throws VriftError when the value is not a non-negative decimal integer (no sign, spaces, exponent or fraction)
 */
export function parseSourceDateEpoch(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^[0-9]{1,15}$/.test(value)) {
    throw new VriftError(`reading SOURCE_DATE_EPOCH: ${JSON.stringify(value)} is not a decimal number of seconds since 1970-01-01; set it to e.g. $(git log -1 --format=%ct) or unset it`);
  }
  return Number(value);
}

/** Digest-cache keys (and st_dev) of the walked files in columns (32 bytes a file instead of an object of bigints). */
class FileKeys {
  // Paged (src/paged.ts): 32 bytes a file, out of memory past the pool.
  private mtimeNs = new PagedArray(BigInt64Array);
  private ctimeNs = new PagedArray(BigInt64Array);
  private ino = new PagedArray(BigUint64Array);
  private dev = new PagedArray(BigUint64Array);
  private n = 0;

  /** Store a file's key; returns its row. */
  add(st: BigIntStats): number {
    this.mtimeNs.set(this.n, st.mtimeNs);
    this.ctimeNs.set(this.n, st.ctimeNs);
    this.ino.set(this.n, st.ino);
    this.dev.set(this.n, st.dev);
    return this.n++;
  }

  /** Free the columns (the files are hashed). */
  close(): void {
    for (const c of [this.mtimeNs, this.ctimeNs, this.ino, this.dev]) c.close();
  }

  /** The FileKey of `row` for a file of `size` bytes. */
  get(row: number, size: bigint): FileKey {
    return { size, mtimeNs: this.mtimeNs.get(row), ctimeNs: this.ctimeNs.get(row), ino: this.ino.get(row), dev: this.dev.get(row) };
  }
}

/** A CAS grouping record: sha256 (32 bytes), then the row (uint32, big-endian). */
const SHA_ROW_BYTES = 36;
const SLASH_BUF = Buffer.from('/');
const EMPTY = Buffer.alloc(0);
const join = (a: Buffer, name: Buffer): Buffer => Buffer.concat([a, SLASH_BUF, name]);
const key = (b: Buffer): string => b.toString('latin1');

function isUnder(p: Buffer, dir: Buffer): boolean {
  return p.length > dir.length && p[dir.length] === SLASH && p.subarray(0, dir.length).equals(dir);
}

/** mtime as whole seconds (floor), clamped to `epoch` when given; the tar carries whole seconds. */
function clampMtime(st: BigIntStats, epoch: number | undefined): bigint {
  let sec = st.mtimeNs / 1_000_000_000n;
  if (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n) sec -= 1n;
  if (epoch !== undefined && sec > BigInt(epoch)) sec = BigInt(epoch);
  return sec;
}

function typeName(st: BigIntStats): string {
  if (st.isSocket()) return 'a socket';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'of an unsupported file type';
}

function splitComponents(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= b.length; i++) {
    if (i === b.length || b[i] === SLASH) {
      if (i > start) out.push(b.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}

/**
 * Whether a symlink's target, resolved the way the kernel would (through
 * other symlinks of the source, ".." popping a component), leaves the source
 * directory. A component that does not exist ends physical resolution; the
 * rest is applied lexically (a dangling link inside the source is allowed).
 */
async function symlinkEscapes(srcRoot: Buffer, linkDir: Buffer[], target: Buffer): Promise<'absolute' | 'dotdot' | false> {
  if (target.length > 0 && target[0] === SLASH) return 'absolute';
  const stack = [...linkDir];
  let queue = splitComponents(target);
  let hops = 0;
  let physical = true;
  while (queue.length) {
    const c = queue.shift()!;
    if (c.length === 1 && c[0] === 0x2e) continue;
    if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) {
      if (stack.length === 0) return 'dotdot';
      stack.pop();
      continue;
    }
    stack.push(c);
    if (!physical) continue;
    const p = Buffer.concat([srcRoot, ...stack.flatMap((s) => [Buffer.from('/'), s])]);
    let st: BigIntStats;
    try {
      st = await fsp.lstat(p, { bigint: true });
    } catch {
      physical = false;
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) return false; // a loop: ELOOP at run time, never an escape
      const t = await fsp.readlink(p, { encoding: 'buffer' });
      if (t.length > 0 && t[0] === SLASH) return 'absolute';
      stack.pop();
      queue = [...splitComponents(t), ...queue];
    }
  }
  return false;
}

/**
 * Whether a name starts with ".wh.": OCI image-spec layer.md ("Whiteouts")
 * reserves those names in layers: ".wh.<name>" deletes <name> of the
 * layers below and ".wh..wh..opq" hides a directory's lower contents, so a
 * file so named would be applied as a deletion, not added.
 */
function isWhiteoutName(name: Buffer): boolean {
  return name.length >= 4 && name[0] === 0x2e && name[1] === 0x77 && name[2] === 0x68 && name[3] === 0x2e;
}
const WHITEOUT_WHY = 'its name starts with ".wh.", which image layers reserve for whiteouts (OCI image-spec, layer.md): the engine would delete a path instead of adding this one';

/** A directory vrift creates (/vrift, or one above a destination): its children by name (latin1). */
interface VirtualDir {
  children: Map<string, { name: Buffer; dir: VirtualDir } | { name: Buffer; add: number }>;
}

/** A source directory being walked: which --add it belongs to and its components below the source root. */
interface SourceDir {
  add: number;
  rel: Buffer[];
}

/** What walkOrdered does with each path, in path-byte order. */
interface WalkVisitor {
  /** A created directory (its path is `parts` concatenated). */
  created(parts: Buffer[]): void;
  /** The directory of destination `add` (its source root) and its lstat. */
  source(parts: Buffer[], add: number, st: BigIntStats): Promise<void>;
  /** A path inside a source: `parts` = [its directory's path, "/", name], its lstat, its host path, where it is, the path that reaches it through its directory's descriptor. */
  entry(parts: Buffer[], st: BigIntStats, host: Buffer, dir: SourceDir, at: Buffer): Promise<void>;
}

/** One child of a directory, in walk order: the path itself, or (`sub`) what is under it. */
interface WalkItem {
  /** Sort key: the name, or for `sub` the name and "/". */
  key: Buffer;
  name: Buffer;
  sub: boolean;
  /** A created directory's own node, or the --add index of a destination; else a host name. */
  node?: VirtualDir;
  add?: number;
  isDir?: boolean;
  /** For `sub`: its directory's own item, which holds the (st_dev, st_ino) its lstat gave. */
  self?: WalkItem;
  dev?: bigint;
  ino?: bigint;
}

/** An open directory of walkOrdered: its items in order, the next one, the lstats of a batch ahead. */
interface OpenDir {
  path: Buffer;
  host?: Buffer;
  /** The host directory held open, and the path that reaches it through that descriptor (pinDir). */
  fd?: FileHandle;
  at?: Buffer;
  src?: SourceDir;
  items: WalkItem[] | HostListing;
  next: number;
  stats: (BigIntStats | undefined)[];
}

const byKey = (a: WalkItem, b: WalkItem): number => Buffer.compare(a.key, b.key);

/** The items of a directory: each name, and after it in byte order (name + "/") what is under it when it is a directory. */
function itemsOf(names: { name: Buffer; isDir: boolean; node?: VirtualDir; add?: number }[]): WalkItem[] {
  const items: WalkItem[] = [];
  for (const c of names) {
    const self: WalkItem = { key: c.name, name: c.name, sub: false, node: c.node, add: c.add, isDir: c.isDir };
    items.push(self);
    if (c.isDir) items.push({ key: Buffer.concat([c.name, SLASH_BUF]), name: c.name, sub: true, node: c.node, add: c.add, isDir: true, self });
  }
  return items.sort(byKey);
}

/** Whether /proc/self/fd reaches open directories (Linux with /proc mounted): pinDir's paths. */
let procFd: boolean | undefined;

/**
 * Open host directory `host` (reached as `at`: its parent's pinned path
 * and its name) and check it is the directory the walk lstat'ed: O_NOFOLLOW
 * and O_DIRECTORY, then (st_dev, st_ino). Its names are then read and
 * lstat'ed as /proc/self/fd/<fd>/<name>: through the descriptor, so a
 * directory of the source swapped for a symlink while it is walked cannot
 * lead the walk (and the files hashed) outside the source. Without
 * /proc/self/fd the host path is used as it is.
 */
async function pinDir(host: Buffer, at: Buffer, want: { dev?: bigint; ino?: bigint }): Promise<{ fd?: FileHandle; at: Buffer }> {
  procFd ??= await fsp.access('/proc/self/fd').then(() => true, () => false);
  if (!procFd) return { at: host };
  let fd: FileHandle;
  try {
    fd = await fsp.open(at, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    throw readError(host, err, 'readdir');
  }
  const st = await fd.stat({ bigint: true });
  if (st.dev !== want.dev || st.ino !== want.ino) {
    await fd.close();
    throw readError(host, Object.assign(new Error('another directory is at its path now'), { code: 'ENOENT' }), 'readdir');
  }
  return { fd, at: Buffer.from(`/proc/self/fd/${fd.fd}`) };
}

/**
 * Walk the created directories and every source below them, visiting each
 * path once in path-byte order (Buffer.compare of the whole paths), depth
 * first. Byte order is not plain depth-first order: "a.b" (0x2e) sorts
 * between "a" and "a/x" (0x2f), so a directory's own path and the paths
 * under it are two items of its parent, keyed by its name and by its name
 * and "/". Each directory is held open while it is walked (pinDir) and
 * listed with its file types (readdir d_type); its names are lstat'ed
 * LSTAT_BATCH at a time, in order. Memory is one listing and one
 * descriptor per open directory, not one row per path of the tree.
 *
 * @throws VriftError when a directory cannot be read, a name cannot be
 *   lstat'ed, or a name changes type or identity while it is walked (the
 *   source changed while building); and whatever `visit` throws
 */
async function walkOrdered(top: VirtualDir, root: Buffer, visit: WalkVisitor, srcRoots: Buffer[]): Promise<void> {
  const virtualItems = (d: VirtualDir): WalkItem[] =>
    itemsOf([...d.children.values()].map((c) => ('dir' in c ? { name: c.name, isDir: true, node: c.dir } : { name: c.name, isDir: true, add: c.add })));
  const stack: OpenDir[] = [{ path: root, items: virtualItems(top), next: 0, stats: [] }];
  try {
    while (stack.length) {
      const d = stack[stack.length - 1];
      if (d.next === d.items.length) {
        await stack.pop()!.fd?.close();
        continue;
      }
      const k = d.next++;
      const it = d.items.at(k)!;
      const parts = [d.path, SLASH_BUF, it.name];
      if (!d.host) {
        // A child of a created directory: a created directory or a destination.
        if (it.node) {
          if (!it.sub) visit.created(parts);
          else stack.push({ path: Buffer.concat(parts), items: virtualItems(it.node), next: 0, stats: [] });
          continue;
        }
        const srcRoot = srcRoots[it.add!];
        if (!it.sub) {
          const st = await fsp.lstat(srcRoot, { bigint: true });
          [it.dev, it.ino] = [st.dev, st.ino];
          await visit.source(parts, it.add!, st);
          continue;
        }
        // Pushed before it is listed: a listing that fails still finds its descriptor on the stack (closed below).
        const pin = await pinDir(srcRoot, srcRoot, it.self!);
        stack.push({ path: Buffer.concat(parts), host: srcRoot, ...pin, src: { add: it.add!, rel: [] }, items: [], next: 0, stats: [] });
        stack[stack.length - 1].items = listHost(srcRoot, pin.at);
        continue;
      }
      const host = join(d.host, it.name);
      const at = join(d.at!, it.name);
      if (it.sub) {
        const pin = await pinDir(host, at, it.self!);
        stack.push({ path: Buffer.concat(parts), host, ...pin, src: { add: d.src!.add, rel: [...d.src!.rel, it.name] }, items: [], next: 0, stats: [] });
        stack[stack.length - 1].items = listHost(host, pin.at);
        continue;
      }
      if (d.stats[k] === undefined) {
        // lstat the next LSTAT_BATCH names of this directory at once: a
        // directory of 20k files statted all at once held 20k requests and
        // BigIntStats (~200 MiB).
        d.stats = [];
        const batch: Promise<void>[] = [];
        for (let j = k, n = 0; j < d.items.length && n < LSTAT_BATCH; j++) {
          const next = d.items.at(j)!;
          if (next.sub) continue;
          n++;
          const name = next.name;
          batch.push(fsp.lstat(join(d.at!, name), { bigint: true }).then((st) => void (d.stats[j] = st), (err) => {
            throw readError(join(d.host!, name), err, 'lstat');
          }));
        }
        await Promise.all(batch);
      }
      const st = d.stats[k]!;
      d.stats[k] = undefined;
      if (st.isDirectory() !== it.isDir) {
        throw new VriftError(`reading ${showPath(host)}: it changed type while being read (a ${it.isDir ? 'directory' : 'non-directory'} when listed, now ${st.isDirectory() ? 'a directory' : 'not one'}); build again once the source is stable`);
      }
      [it.dev, it.ino] = [st.dev, st.ino];
      await visit.entry(parts, st, host, d.src!, at);
    }
  } finally {
    for (const d of stack) await d.fd?.close();
  }
}

/**
 * The error for a source path that cannot be read (lstat of a name, or
 * readdir of a directory), with the fix for its cause: a name gone or
 * replaced (the source changed while building), a directory without search
 * (x) or read (r) permission, a host path longer than the kernel takes.
 */
function readError(host: Buffer, err: unknown, call: 'lstat' | 'readdir'): VriftError {
  const e = err as NodeJS.ErrnoException;
  const what = call === 'readdir' ? `reading directory ${showPath(host)}` : `reading ${showPath(host)}`;
  let fix: string;
  switch (e.code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ELOOP':
    case 'EINVAL':
      fix = 'it was removed or replaced while vrift walked the source; build again once the source is stable';
      break;
    case 'EACCES':
    case 'EPERM':
      fix = call === 'readdir'
        ? 'the directory needs read and search permission (r-x) for the user running vrift; chmod it or remove it from the source'
        : 'its directory needs search permission (x) for the user running vrift; chmod it or remove it from the source';
      break;
    case 'ENAMETOOLONG':
      fix = `the host path is ${host.length} bytes, longer than the kernel takes (PATH_MAX ${PATH_MAX}); move the source to a shorter host path (the image path may be fine)`;
      break;
    default:
      fix = 'make it readable or remove it from the source';
  }
  return new VriftError(`${what}: ${e.message}; ${fix}`, { cause: err });
}

/** Bytes of names a HostListing's buffer starts with (it doubles). */
const LISTING_BYTES = 1 << 16;

/**
 * A host directory's walk items without an object per name: the names in
 * one Buffer (offsets, lengths, directory bits in typed arrays), the item
 * order (each name, and after it in byte order name + "/" for a directory)
 * as one Uint32Array of codes (name index * 2 + sub), the lstat identity
 * (st_dev, st_ino) of each name in columns. ~35 bytes a name plus its bytes:
 * one readdir into Dirents and two WalkItems a name took ~0.6 KiB (a
 * directory of 200k files peaked at ~260 MiB). `at(k)` makes item k.
 */
class HostListing {
  private buf = Buffer.allocUnsafe(LISTING_BYTES);
  private used = 0;
  private off = new Uint32Array(64);
  private len = new Uint16Array(64);
  private dir = new Uint8Array(64);
  private count = 0;
  private order = new Uint32Array(0);
  dev = new BigUint64Array(0);
  ino = new BigUint64Array(0);

  /** Add a name (any order). */
  add(name: Buffer, isDir: boolean): void {
    if (this.used + name.length > this.buf.length) {
      const b = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.used + name.length));
      this.buf.copy(b, 0, 0, this.used);
      this.buf = b;
    }
    if (this.count === this.off.length) {
      const grow = <T extends Uint32Array | Uint16Array | Uint8Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a as never);
        return b;
      };
      [this.off, this.len, this.dir] = [grow(this.off), grow(this.len), grow(this.dir)];
    }
    name.copy(this.buf, this.used);
    this.off[this.count] = this.used;
    this.len[this.count] = name.length;
    this.dir[this.count] = isDir ? 1 : 0;
    this.used += name.length;
    this.count++;
  }

  /** Sort the items (after the last add); the same order as itemsOf's. */
  seal(): this {
    let n = this.count;
    for (let i = 0; i < this.count; i++) n += this.dir[i];
    const codes = new Uint32Array(n);
    for (let i = 0, k = 0; i < this.count; i++) {
      codes[k++] = i * 2;
      if (this.dir[i]) codes[k++] = i * 2 + 1;
    }
    this.order = codes.sort((x, y) => this.compare(x, y));
    this.dev = new BigUint64Array(this.count);
    this.ino = new BigUint64Array(this.count);
    return this;
  }

  /** Items (names, plus one "name/" item a directory). */
  get length(): number {
    return this.order.length;
  }

  /** Name i's bytes (a view into the listing). */
  name(i: number): Buffer {
    return this.buf.subarray(this.off[i], this.off[i] + this.len[i]);
  }

  isDir(i: number): boolean {
    return this.dir[i] === 1;
  }

  /** Item k (a new object each call; its dev/ino live in the listing). */
  at(k: number): WalkItem | undefined {
    if (k < 0 || k >= this.order.length) return undefined;
    const c = this.order[k];
    return new HostItem(this, c >>> 1, (c & 1) === 1);
  }

  /** Compare the keys of item codes x and y: name, or name + "/" (Buffer.compare order). */
  private compare(x: number, y: number): number {
    const [a, b] = [x >>> 1, y >>> 1];
    const [la, lb] = [this.len[a], this.len[b]];
    const [sa, sb] = [this.off[a], this.off[b]];
    const m = Math.min(la, lb);
    const c = this.buf.compare(this.buf, sb, sb + m, sa, sa + m);
    if (c !== 0) return c;
    if (la === lb) return (x & 1) - (y & 1); // the name before name + "/"
    // One name is a prefix of the other: the shorter key ends there, or goes on with "/".
    if (la < lb) return x & 1 ? SLASH - this.buf[sb + la] : -1;
    return y & 1 ? this.buf[sa + lb] - SLASH : 1;
  }
}

/** A HostListing item: its name, and its lstat identity in the listing's columns. */
class HostItem implements WalkItem {
  readonly key = EMPTY;
  constructor(private readonly l: HostListing, private readonly i: number, readonly sub: boolean) {}
  get name(): Buffer {
    return this.l.name(this.i);
  }
  get isDir(): boolean {
    return this.l.isDir(this.i);
  }
  get self(): WalkItem | undefined {
    return this.sub ? new HostItem(this.l, this.i, false) : undefined;
  }
  get dev(): bigint {
    return this.l.dev[this.i];
  }
  set dev(v: bigint | undefined) {
    this.l.dev[this.i] = v ?? 0n;
  }
  get ino(): bigint {
    return this.l.ino[this.i];
  }
  set ino(v: bigint | undefined) {
    this.l.ino[this.i] = v ?? 0n;
  }
}

/**
 * The items of host directory `dir`, read as `at` (pinDir): opendir, a batch
 * of names at a time with their d_type (Node lstat's a name whose d_type is
 * DT_UNKNOWN), into a HostListing. Synchronous: a listing is a few
 * getdents64 calls, and the walk waits for it anyway; the asynchronous
 * opendir, read and close were three thread-pool round trips a directory
 * (warm build of 160k files in 22,659 directories: +7 s over one readdir a
 * directory).
 */
function listHost(dir: Buffer, at: Buffer): HostListing {
  const listing = new HostListing();
  let d: Dir | undefined;
  try {
    d = opendirSync(at as unknown as string, { encoding: 'buffer' as BufferEncoding, bufferSize: 256 });
    for (let e = d.readSync(); e !== null; e = d.readSync()) listing.add(e.name as unknown as Buffer, e.isDirectory());
  } catch (err) {
    throw readError(dir, err, 'readdir');
  } finally {
    d?.closeSync();
  }
  return listing.seal();
}

/**
 * Fill table.sha of every file row in `files` (through the digest cache:
 * one streamed pass finds the unchanged files, the others are hashed
 * HASH_CONCURRENCY at a time; a file row's `ref` is its key row in `keys`)
 * and persist the cache (streamed too: no record of it is held, see
 * src/cas/cache.ts).
 */
async function hashFiles(table: EntryTable, files: PagedArray, count: number, keys: FileKeys, opts: PlanOptions): Promise<{ hits: number; misses: number }> {
  const cache = await DigestCache.open(opts.cacheDir);
  const batch: FileBatch = {
    count,
    roots: table.sources.map((s) => s.src),
    path: (k) => table.hostPath(files.get(k)),
    key: (k) => keys.get(table.ref.get(files.get(k)), BigInt(table.size.get(files.get(k)))),
  };
  let total = 0;
  for (let k = 0; k < count; k++) total += table.size.get(files.get(k));
  const hashing = opts.progress?.phase('hashing', total);
  // Digest-cache hits count as done at once.
  await cache.lookup(batch, (k, hex) => {
    table.setShaHex(files.get(k), hex);
    hashing?.add(table.size.get(files.get(k)));
  });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const k = next++;
      if (cache.found(k)) continue;
      table.setShaHex(files.get(k), await cache.hash(batch, k));
      hashing?.add(table.size.get(files.get(k)));
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, count) }, worker));
  hashing?.end();
  await cache.save(batch, (k) => table.shaHex(files.get(k)));
  return { hits: cache.hits, misses: cache.misses };
}

/** Validate and normalize one destination; returns it as bytes. */
function checkDest(add: TreeAdd, root: string): Buffer {
  const dest = add.dest;
  const where = `--add ${add.src}:${dest}`;
  if (typeof dest !== 'string' || !dest.startsWith('/')) {
    throw new VriftError(`checking destination ${JSON.stringify(dest)} (${where}): it must be an absolute path under ${root}, e.g. ${root}/python`);
  }
  if (dest.split('/').some((c) => c === '..' || c === '.')) {
    throw new VriftError(`checking destination ${JSON.stringify(dest)} (${where}): "." and ".." components are not allowed (they could escape ${root}); write the path out, e.g. ${root}/python`);
  }
  const norm = path.posix.normalize(dest).replace(/\/+$/, '');
  if (!norm.startsWith(root + '/')) {
    throw new VriftError(`checking destination ${JSON.stringify(dest)} (${where}): it is not under ${root}; vrift trees live under ${root}, e.g. ${root}/python`);
  }
  const cas = `${root}/${CAS_DIR}`;
  if (norm === cas || norm.startsWith(cas + '/')) {
    throw new VriftError(`checking destination ${JSON.stringify(dest)} (${where}): ${cas} is reserved for content-addressed objects; choose another path under ${root}`);
  }
  if (Buffer.byteLength(norm) >= PATH_MAX) throw new VriftError(`checking destination ${JSON.stringify(dest)}: longer than PATH_MAX`);
  if (norm.split('/').some((c) => isWhiteoutName(Buffer.from(c)))) {
    throw new VriftError(`checking destination ${JSON.stringify(dest)} (${where}): a component ${WHITEOUT_WHY}; choose another path under ${root}`);
  }
  return Buffer.from(norm);
}

/** Resolve, check and open a source directory; returns its real path as bytes. */
async function checkSource(add: TreeAdd): Promise<Buffer> {
  const src = path.resolve(add.src);
  const where = `--add ${add.src}:${add.dest}`;
  let st;
  try {
    st = await fsp.stat(src);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const fix = e.code === 'EACCES' ? 'make it and its parent directories readable by the user running vrift' : 'check the source path of --add';
    const why = e.code === 'ENOENT' ? 'no such file or directory' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new VriftError(`reading source ${JSON.stringify(src)} (${where}): ${why}; ${fix}`, { cause: err });
  }
  if (!st.isDirectory()) {
    throw new VriftError(`reading source ${JSON.stringify(src)} (${where}): not a directory; --add takes a directory (put a single file in a directory)`);
  }
  try {
    // opendir, not access(2): access checks the real uid, the walk runs with the effective one.
    await (await fsp.opendir(src)).close();
  } catch (err) {
    throw new VriftError(`reading source ${JSON.stringify(src)} (${where}): ${(err as Error).message}; make it readable (r-x) for the user running vrift`, { cause: err });
  }
  return Buffer.from(await fsp.realpath(src));
}

/**
 * Plan a /vrift tree from host directories: walk every source (iteratively,
 * names as raw bytes, lstat), validate it, hash every regular file (streamed,
 * through the digest cache) and lay out the content-addressed tree.
 *
 * Output (see TreePlan): every path under /vrift with its final attributes:
 * - directories: st_mode from the source (kept as is, even without search
 *   bits); /vrift itself and directories created above a destination, and
 *   /vrift/.cas/**, are 0755; their mtime is the newest (clamped) mtime of
 *   the whole tree, or sourceDateEpoch ?? 0 when the tree is empty;
 * - symlinks: target bytes unchanged;
 * - regular files: a hardlink to a CAS object keyed by (sha256, permission
 *   bits) (scheme and mtime rule: src/cas/README.md);
 * - owner: chown ?? 0:0 on every entry; mtimes: whole seconds (floor, nsec
 *   0), clamped to sourceDateEpoch when given (buildVriftLayer then puts
 *   identity tags and a tree digest in the nanoseconds).
 *
 * @param adds sources and destinations (absolute, strictly under /vrift, not /vrift/.cas)
 * @param opts owner, SOURCE_DATE_EPOCH (seconds), digest cache directory
 * @throws VriftError naming the path and what to do when: a source is
 *   missing, not a directory or unreadable; a destination is not under
 *   /vrift, contains "." or "..", or is under /vrift/.cas; two destinations
 *   are equal or nested; a source holds a socket, FIFO or device; a symlink
 *   is absolute or resolves outside its source; a path exceeds PATH_MAX;
 *   a file cannot be read. Nothing is written except the digest cache.
 */
export async function planTree(adds: TreeAdd[], opts: PlanOptions = {}): Promise<TreePlan> {
  const rootStr = VRIFT_ROOT;
  const root = Buffer.from(rootStr);
  const uid = opts.chown?.uid ?? 0;
  const gid = opts.chown?.gid ?? 0;
  for (const [n, v] of [['uid', uid], ['gid', gid]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new VriftError(`checking --chown: ${n} ${v} is not an integer in 0..4294967294`);
  }
  const epoch = opts.sourceDateEpoch;
  if (epoch !== undefined && (!Number.isSafeInteger(epoch) || epoch < 0)) {
    throw new VriftError(`checking SOURCE_DATE_EPOCH: ${epoch} is not a non-negative integer number of seconds`);
  }
  if (adds.length === 0) throw new VriftError('planning /vrift tree: no --add given; pass at least one --add <host-dir>:/vrift/<path>');

  // Destinations: normalized, under /vrift, pairwise disjoint.
  const dests = adds.map((a) => checkDest(a, rootStr));
  for (let i = 0; i < dests.length; i++) {
    for (let j = i + 1; j < dests.length; j++) {
      const [a, b] = [dests[i], dests[j]];
      if (a.equals(b) || isUnder(a, b) || isUnder(b, a)) {
        const how = a.equals(b) ? 'the same destination' : 'nested destinations';
        throw new VriftError(
          `checking destinations: --add ${adds[i].src}:${adds[i].dest} and --add ${adds[j].src}:${adds[j].dest} have ${how}; give each --add its own, non-overlapping path under ${rootStr}`,
        );
      }
    }
  }
  if (opts.pathLimit) {
    // The paths under a destination are checked as they are walked; an empty source has none.
    dests.forEach((d, i) => {
      if (d.length > opts.pathLimit!.bytes) {
        throw new VriftError(`checking destination ${showPath(d)} (--add ${adds[i].src}:${adds[i].dest}): the path is ${d.length} bytes; ${opts.pathLimit!.why}; choose a shorter destination`);
      }
    });
  }
  const srcRoots: Buffer[] = [];
  for (const a of adds) srcRoots.push(await checkSource(a));

  // Walk: one table row per path (src/layer/table.ts), its final st_mode
  // already; a file's `ref` is its digest-cache key row until it is hashed.
  // Rows come out in path-byte order (walkOrdered): no sort of the paths,
  // and the layer writer and the blob read the rows in that order.
  const table = new EntryTable(uid, gid, dests.map((dest, i) => ({ dest, src: srcRoots[i] })));
  table.casRoot = root;
  // A build's own temp directory may not exist yet (buildVriftLayer makes it); TMPDIR is never created.
  if (opts.tmpDir !== undefined) await fsp.mkdir(opts.tmpDir, { recursive: true }).catch(() => undefined); // spillTo says what is wrong with it
  table.spillTo(path.resolve(opts.tmpDir ?? os.tmpdir()));
  try {
    return await planTable(table, adds, dests, srcRoots, root, epoch, opts);
  } catch (err) {
    table.close();
    throw err;
  }
}

/** planTree's walk, hashing and CAS layout into `table` (see there). */
async function planTable(table: EntryTable, adds: TreeAdd[], dests: Buffer[], srcRoots: Buffer[], root: Buffer, epoch: number | undefined, opts: PlanOptions): Promise<TreePlan> {
  const keys = new FileKeys();
  const row = (parts: Buffer[], kind: number, st: BigIntStats, target?: Buffer): number => {
    const perm = Number(st.mode) & 0o7777;
    const i = table.add(parts, kind, kind === KIND_DIR ? S_IFDIR | perm : kind === KIND_FILE ? S_IFREG | perm : S_IFLNK | 0o777);
    table.sec.set(i, Number(clampMtime(st, epoch)));
    if (kind === KIND_FILE) {
      table.size.set(i, Number(st.size));
      table.ref.set(i, keys.add(st));
    } else if (target) {
      table.size.set(i, target.length);
      table.ref.set(i, table.putBytes([target]));
    }
    return i;
  };
  // /vrift and the directories above each destination are created (0755,
  // the tree's newest mtime, set once the walk is done): a tree of them with
  // the destinations as leaves.
  const top: VirtualDir = { children: new Map() };
  dests.forEach((d, i) => {
    const comps = splitComponents(d.subarray(root.length));
    let at = top;
    comps.forEach((c, k) => {
      if (k === comps.length - 1) {
        at.children.set(key(c), { name: c, add: i });
        return;
      }
      let next = at.children.get(key(c));
      if (!next) at.children.set(key(c), (next = { name: c, dir: { children: new Map() } }));
      at = (next as { dir: VirtualDir }).dir;
    });
  });
  const created: number[] = [table.add([root], KIND_DIR, S_IFDIR | 0o755)];
  await walkOrdered(top, root, {
    created: (parts) => created.push(table.add(parts, KIND_DIR, S_IFDIR | 0o755)),
    source: async (parts, _i, st) => {
      row(parts, KIND_DIR, st);
    },
    entry: async (parts, st, host, dir, at) => {
      const dirDest = parts[0];
      const n = parts[2];
      if (isWhiteoutName(n)) {
        throw new VriftError(`checking ${showPath(host)}: ${WHITEOUT_WHY}; rename it or remove it from the source`);
      }
      if (dirDest.length + 1 + n.length >= PATH_MAX) {
        const dest = Buffer.concat(parts);
        throw new VriftError(`planning ${showPath(dest)} (from ${showPath(host)}): the path is ${dest.length} bytes, longer than PATH_MAX; shorten it or choose a shorter destination`);
      }
      if (opts.pathLimit && dirDest.length + 1 + n.length > opts.pathLimit.bytes) {
        const dest = Buffer.concat(parts);
        throw new VriftError(`planning ${showPath(dest)} (from ${showPath(host)}): the path is ${dest.length} bytes; ${opts.pathLimit.why}; shorten it or choose a shorter destination`);
      }
      if (st.isDirectory()) {
        row(parts, KIND_DIR, st);
      } else if (st.isFile()) {
        row(parts, KIND_FILE, st);
      } else if (st.isSymbolicLink()) {
        let target: Buffer;
        try {
          target = await fsp.readlink(at, { encoding: 'buffer' });
        } catch (err) {
          throw readError(host, err, 'lstat'); // EINVAL: not a symlink any more
        }
        const srcRoot = srcRoots[dir.add];
        const esc = await symlinkEscapes(srcRoot, dir.rel, target);
        if (esc) {
          const how = esc === 'absolute' ? 'an absolute target (it would resolve against the image root, not the source)' : 'a target that leaves the source through ".."';
          throw new VriftError(
            `checking symlink ${showPath(host)} -> ${showPath(target)}: it has ${how}; make it a relative link to a path inside ${showPath(srcRoot)}, or replace it with what it points to`,
          );
        }
        row(parts, KIND_SYMLINK, st, target);
      } else {
        throw new VriftError(
          `checking ${showPath(host)}: it is ${typeName(st)}; a vrift tree holds only regular files, directories and symlinks: remove it from the source (or add a directory without it)`,
        );
      }
    },
  }, srcRoots);

  // Hash (through the digest cache): table.sha of every file row.
  const walked = table.length;
  const files = new PagedArray(Uint32Array); // the file rows, in path order
  let fileCount = 0;
  for (let i = 0; i < walked; i++) if (table.kind.get(i) === KIND_FILE) files.set(fileCount++, i);
  const { hits: hashHits, misses: hashMisses } = await hashFiles(table, files, fileCount, keys, opts);
  keys.close();

  // Created directories take the newest (clamped) mtime of the walked paths.
  const isCreated = new Set(created); // a few rows: /vrift and the directories above destinations
  let newest = -Infinity;
  let bytes = 0n;
  for (let i = 0; i < walked; i++) if (!isCreated.has(i) && table.sec.get(i) > newest) newest = table.sec.get(i);
  for (let k = 0; k < fileCount; k++) bytes += BigInt(table.size.get(files.get(k)));
  for (const c of created) table.sec.set(c, newest);

  // CAS objects: tree files grouped by (sha256, permission bits, mtime), by
  // sorting the file rows by (sha256, row) - no map keyed by a digest; rows
  // are in path order, so a group's first file is its first path.
  // Hardlinks share one inode, so one st_mode and one st_mtime: files that
  // differ in either need their own object (a shared mtime would make a
  // .pyc compiled against its source's mtime stale). An object takes at most
  // CAS_MAX_LINKS tree paths (ext4 refuses a 65,001st link: docker load then
  // fails), then the next object of the same key starts. In a group of one
  // sha256 the first path names the primary object (src/cas/README.md).
  // Object rows are added in path order (their paths are derived from the
  // digest, not stored: EntryTable.addCasObject), each 2-hex directory
  // before its objects, all after /vrift/.cas.
  // Sorted in bounded memory (src/paged.ts RecordSorter): records of the
  // sha256 and the row, big-endian, so bytes order them by (sha256, row).
  const sorter = new RecordSorter(SHA_ROW_BYTES);
  for (let k = 0; k < fileCount; k++) {
    const f = files.get(k);
    const { buf, off } = sorter.push();
    table.shaBytes(f).copy(buf, off);
    buf.writeUInt32BE(f, off + 32);
  }
  files.close();
  const casDir = Buffer.concat([root, Buffer.from(`/${CAS_DIR}`)]);
  const casStart = table.length;
  const addDir = (parts: Buffer[]): void => table.sec.set(table.add(parts, KIND_DIR, S_IFDIR | 0o755), newest);
  if (fileCount) addDir([casDir]);
  let objBytes = 0n;
  let objects = 0;
  let prefix = -1;
  // One group's rows (a group may be most of the tree: a paged array too) and its sha256.
  const group = new PagedArray(Uint32Array);
  const groupSha = Buffer.alloc(32);
  const lay = (count: number): void => {
    const first = group.get(0);
    // The group's objects; each file's `ref` names its object here until the object rows exist.
    const made: { perm: number; sec: number; batch: number; file: number; links: number; suffix: string; row: number }[] = [];
    const open: number[] = []; // per (perm, sec): index in `made` of its object taking links
    for (let k = 0; k < count; k++) {
      const f = group.get(k);
      const perm = table.mode.get(f) & 0o7777;
      const sec = table.sec.get(f);
      let at = 0;
      while (at < open.length && (made[open[at]].perm !== perm || made[open[at]].sec !== sec)) at++;
      if (at === open.length || made[open[at]].links >= CAS_MAX_LINKS) {
        const batch = at === open.length ? 0 : made[open[at]].batch + 1;
        const isPrimary = perm === (table.mode.get(first) & 0o7777) && sec === table.sec.get(first) && batch === 0;
        open[at] = made.length;
        made.push({ perm, sec, batch, file: f, links: 0, suffix: isPrimary ? '' : casSuffix({ perm, mtime: sec, batch }), row: 0 });
      }
      made[open[at]].links++;
      table.ref.set(f, open[at]);
    }
    // Path order within the group: the primary ("<hex>") before "<hex>.<suffix>"s.
    const sorted = [...made].sort((a, b) => (a.suffix < b.suffix ? -1 : a.suffix > b.suffix ? 1 : 0));
    if (groupSha[0] !== prefix) {
      prefix = groupSha[0];
      addDir([casDir, Buffer.from(`/${prefix.toString(16).padStart(2, '0')}`)]);
    }
    for (const m of sorted) {
      const o = (m.row = table.addCasObject(m.suffix === '' ? 0 : m.batch + 1, S_IFREG | m.perm));
      table.sec.set(o, m.sec);
      table.size.set(o, table.size.get(m.file));
      table.ref.set(o, m.file);
      table.copySha(o, m.file);
      // st_nlink of an object and of its links: the links + the object's own name.
      table.nlink.set(o, m.links + 1);
      objBytes += BigInt(table.size.get(m.file));
      objects++;
    }
    for (let k = 0; k < count; k++) {
      const f = group.get(k);
      const o = made[table.ref.get(f)].row;
      table.kind.set(f, KIND_HARDLINK);
      table.ref.set(f, o);
      table.nlink.set(f, table.nlink.get(o));
    }
  };
  let count = 0;
  for (const { buf, off } of sorter.sorted()) {
    if (count > 0 && groupSha.compare(buf, off, off + 32) !== 0) {
      lay(count);
      count = 0;
    }
    if (count === 0) buf.copy(groupSha, 0, off, off + 32);
    group.set(count++, buf.readUInt32BE(off + 32));
  }
  if (count > 0) lay(count);
  group.close();

  // Layer order: /vrift, the /vrift/.cas subtree, then the rest by path
  // bytes: rows 0, casStart.., 1..casStart-1. The walk's order is checked
  // (a path planned twice, or a filesystem listing a name twice, fails here).
  const n = table.length;
  for (let i = 2; i < casStart; i++) {
    if (table.comparePaths(i - 1, i) >= 0) throw new VriftError(`planning ${showPath(table.path(i))}: path planned twice or out of order (internal error)`);
  }
  table.rotate(casStart);
  // Only /vrift and the .cas subtree (the objects) still need a sha256: 32 bytes a walked row less.
  table.keepShaOf(1 + n - casStart);

  let dirs = 0;
  let symlinks = 0;
  for (let i = 0; i < n; i++) {
    if (table.kind.get(i) === KIND_DIR) dirs++;
    else if (table.kind.get(i) === KIND_SYMLINK) symlinks++;
  }
  let entries: LayerEntry[] | undefined;
  let objectList: CasObject[] | undefined;
  return {
    root,
    table,
    get entries(): LayerEntry[] {
      return (entries ??= table.toArray());
    },
    get objects(): CasObject[] {
      if (objectList) return objectList;
      objectList = [];
      for (let i = 0; i < n; i++) {
        if (table.kind.get(i) !== KIND_FILE) continue;
        const host = table.hostPath(table.ref.get(i));
        objectList.push({
          path: table.path(i), sha256: table.shaHex(i), size: BigInt(table.size.get(i)), perm: table.mode.get(i) & 0o7777,
          srcPath: isUtf8(host) ? host.toString('utf8') : host, links: table.nlink.get(i) - 1,
        });
      }
      return objectList;
    },
    stats: {
      files: fileCount,
      dirs,
      symlinks,
      bytes,
      casObjects: objects,
      dedupRatio: objBytes === 0n ? 1 : Number(bytes) / Number(objBytes),
      hashHits,
      hashMisses,
    },
  };
}
