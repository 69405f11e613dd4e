import { isUtf8 } from 'node:buffer';
import { promises as fsp, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { VriftError } from '../errors';
import { DigestCache, type FileKey } from '../cas/cache';
import { showPath } from '../cas/hash';
import { casObjectPath, CAS_DIR } from '../cas/path';
import { PATH_MAX } from '../blob/format';
import {
  VRIFT_ROOT,
  type CasObject, type DirEntry, type HardlinkEntry, type FileEntry, type LayerEntry,
  type PlanOptions, type SymlinkEntry, type Timespec, type TreeAdd, type TreePlan,
} from '../layer/types';

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

/**
 * One walked path, kept compact (tens of bytes plus the path, not a
 * BigIntStats of ~20 BigInts): the host path is not stored but rebuilt from
 * the destination (hostOf), the lstat values kept are only those the plan
 * uses (`sec` shared among paths with the same second, see Interned), and
 * the digest-cache key sits in FileKeys columns until the file is hashed.
 * Every field is set at creation, so items share one object shape.
 */
interface Item {
  /** Destination path bytes (in a PathArena); becomes the layer entry's path. */
  dest: Buffer;
  /** Index of the --add this path comes from. */
  add: number;
  kind: Kind;
  /** st_mode & 07777. */
  perm: number;
  /** mtime in whole seconds, floored and clamped (clampMtime). */
  sec: bigint;
  /** st_size (files; 0n otherwise). */
  size: bigint;
  /** readlink(2) bytes (symlinks; undefined otherwise). */
  target: Buffer | undefined;
  /** sha256 hex of the content (files, once hashed). */
  sha256: string | undefined;
  /** Row of the file's digest-cache key in FileKeys (files; -1 otherwise). */
  key: number;
}

/**
 * Destination path bytes, copied into shared 64 KiB slabs: one Buffer view
 * per path and no Node pool slab kept alive by the garbage (host paths,
 * readdir names) allocated next to it.
 */
class PathArena {
  private static readonly SLAB = 64 * 1024;
  private slab = Buffer.allocUnsafeSlow(PathArena.SLAB);
  private used = 0;

  /** The concatenation of `parts`, in the arena (a fresh Buffer when larger than a slab). */
  concat(parts: Buffer[]): Buffer {
    const len = parts.reduce((n, b) => n + b.length, 0);
    if (len > PathArena.SLAB / 4) return Buffer.concat(parts, len);
    if (this.used + len > PathArena.SLAB) {
      this.slab = Buffer.allocUnsafeSlow(PathArena.SLAB);
      this.used = 0;
    }
    const out = this.slab.subarray(this.used, this.used + len);
    let at = 0;
    for (const b of parts) at += b.copy(out, at);
    this.used = (this.used + len + 7) & ~7;
    return out;
  }
}

/** One bigint per distinct value (a tree's files share a few mtime seconds): 24 bytes each saved per path. */
class Interned {
  private readonly values = new Map<bigint, bigint>();
  get(v: bigint): bigint {
    const had = this.values.get(v);
    if (had !== undefined) return had;
    this.values.set(v, v);
    return v;
  }
}

/** Digest-cache keys of the walked files in columns (24 bytes a file instead of an object of bigints). */
class FileKeys {
  private mtimeNs = new BigInt64Array(1024);
  private ctimeNs = new BigInt64Array(1024);
  private ino = new BigUint64Array(1024);
  private n = 0;

  /** Store a file's key; returns its row. */
  add(st: BigIntStats): number {
    if (this.n === this.ino.length) {
      const grow = <T extends BigInt64Array | BigUint64Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a as never);
        return b;
      };
      this.mtimeNs = grow(this.mtimeNs, (n) => new BigInt64Array(n));
      this.ctimeNs = grow(this.ctimeNs, (n) => new BigInt64Array(n));
      this.ino = grow(this.ino, (n) => new BigUint64Array(n));
    }
    this.mtimeNs[this.n] = st.mtimeNs;
    this.ctimeNs[this.n] = st.ctimeNs;
    this.ino[this.n] = st.ino;
    return this.n++;
  }

  /** The FileKey of `row` for a file of `size` bytes. */
  get(row: number, size: bigint): FileKey {
    return { size, mtimeNs: this.mtimeNs[row], ctimeNs: this.ctimeNs[row], ino: this.ino[row] };
  }
}

type Kind = 'dir' | 'file' | 'symlink';

const SLASH_BUF = Buffer.from('/');
const join = (a: Buffer, name: Buffer): Buffer => Buffer.concat([a, SLASH_BUF, name]);
const key = (b: Buffer): string => b.toString('latin1');

function isUnder(p: Buffer, dir: Buffer): boolean {
  return p.length > dir.length && p[dir.length] === SLASH && p.subarray(0, dir.length).equals(dir);
}

/**
 * A host path to keep until the layer is written: a string when the bytes
 * are valid UTF-8 (what fs calls encode it back to; ~100 bytes less than a
 * Buffer view and its bytes), else the bytes in the arena.
 */
function hostPathToKeep(p: Buffer, arena: PathArena): Buffer | string {
  return isUtf8(p) ? p.toString('utf8') : arena.concat([p]);
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

async function mapLimit<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * Set `sha256` on every file item (through the digest cache, HASH_CONCURRENCY
 * at a time) and persist the cache. The cache (a record per file it has
 * ever seen) is saved and dropped here, before the entries are built, so
 * that it and its save do not add to the peak memory of the planning that
 * follows.
 */
async function hashFiles(files: Item[], keys: FileKeys, hostOf: (it: Item) => Buffer, opts: PlanOptions): Promise<{ hits: number; misses: number }> {
  const cache = await DigestCache.open(opts.cacheDir);
  const hashing = opts.progress?.phase('hashing', Number(files.reduce((s, f) => s + f.size, 0n)));
  await mapLimit(files, HASH_CONCURRENCY, async (it) => {
    it.sha256 = await cache.sha256(hostOf(it), keys.get(it.key, it.size));
    hashing?.add(Number(it.size)); // digest-cache hits count as done at once
  });
  hashing?.end();
  await cache.save();
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
  const srcRoots: Buffer[] = [];
  for (const a of adds) srcRoots.push(await checkSource(a));

  // Walk.
  const items: Item[] = [];
  const arena = new PathArena();
  const seconds = new Interned();
  const keys = new FileKeys();
  const hostOf = (it: Item): Buffer => Buffer.concat([srcRoots[it.add], it.dest.subarray(dests[it.add].length)]);
  const item = (dest: Buffer, add: number, kind: Kind, st: BigIntStats, target?: Buffer): Item => ({
    dest, add, kind, perm: Number(st.mode) & 0o7777, sec: seconds.get(clampMtime(st, epoch)), size: kind === 'file' ? st.size : 0n, target,
    sha256: undefined, key: kind === 'file' ? keys.add(st) : -1,
  });
  for (let i = 0; i < adds.length; i++) {
    const srcRoot = srcRoots[i];
    const rootSt = await fsp.lstat(srcRoot, { bigint: true });
    items.push(item(dests[i], i, 'dir', rootSt));
    const stack: { host: Buffer; dest: Buffer; rel: Buffer[] }[] = [{ host: srcRoot, dest: dests[i], rel: [] }];
    while (stack.length) {
      const dir = stack.pop()!;
      let names: Buffer[];
      try {
        names = await fsp.readdir(dir.host, { encoding: 'buffer' });
      } catch (err) {
        throw new VriftError(`reading directory ${showPath(dir.host)}: ${(err as Error).message}; make it readable or remove it from the source`, { cause: err });
      }
      // lstat LSTAT_BATCH names at a time: a directory of 20k files (npm has
      // them) statted all at once held 20k requests and BigIntStats (~200 MiB).
      let stats: BigIntStats[] = [];
      for (let k = 0; k < names.length; k++) {
        if (k % LSTAT_BATCH === 0) {
          stats = await Promise.all(names.slice(k, k + LSTAT_BATCH).map(async (n) => {
            const host = join(dir.host, n);
            try {
              return await fsp.lstat(host, { bigint: true });
            } catch (err) {
              throw new VriftError(`reading ${showPath(host)}: ${(err as Error).message}; make it readable or remove it from the source`, { cause: err });
            }
          }));
        }
        const n = names[k];
        const st = stats[k % LSTAT_BATCH];
        const dest = arena.concat([dir.dest, SLASH_BUF, n]);
        if (dest.length >= PATH_MAX) {
          throw new VriftError(`planning ${showPath(dest)} (from ${showPath(join(dir.host, n))}): the path is ${dest.length} bytes, longer than PATH_MAX; shorten it or choose a shorter destination`);
        }
        if (st.isDirectory()) {
          items.push(item(dest, i, 'dir', st));
          stack.push({ host: join(dir.host, n), dest, rel: [...dir.rel, n] });
        } else if (st.isFile()) {
          items.push(item(dest, i, 'file', st));
        } else if (st.isSymbolicLink()) {
          const host = join(dir.host, n);
          const target = await fsp.readlink(host, { encoding: 'buffer' });
          const esc = await symlinkEscapes(srcRoot, dir.rel, target);
          if (esc) {
            const how = esc === 'absolute' ? 'an absolute target (it would resolve against the image root, not the source)' : 'a target that leaves the source through ".."';
            throw new VriftError(
              `checking symlink ${showPath(host)} -> ${showPath(target)}: it has ${how}; make it a relative link to a path inside ${showPath(srcRoot)}, or replace it with what it points to`,
            );
          }
          items.push(item(dest, i, 'symlink', st, target));
        } else {
          throw new VriftError(
            `checking ${showPath(join(dir.host, n))}: it is ${typeName(st)}; a vrift tree holds only regular files, directories and symlinks: remove it from the source (or add a directory without it)`,
          );
        }
      }
    }
  }

  // Hash (through the digest cache).
  const files = items.filter((it) => it.kind === 'file');
  const { hits: hashHits, misses: hashMisses } = await hashFiles(files, keys, hostOf, opts);

  let newest: bigint | undefined;
  for (const it of items) if (newest === undefined || it.sec > newest) newest = it.sec;
  // Planned mtimes have nsec 0; entries with the same second share one
  // Timespec (buildVriftLayer replaces them, never mutates them).
  const times = new Map<bigint, Timespec>();
  const timeOf = (sec: bigint): Timespec => times.get(sec) ?? times.set(sec, { sec, nsec: 0 }).get(sec)!;
  const treeTime = timeOf(newest ?? BigInt(epoch ?? 0));
  const fileCount = files.length;
  const bytes = files.reduce((s, f) => s + f.size, 0n);
  // uid and gid are written out in every entry literal: a spread `...owner` makes V8 build a
  // larger object (~32 bytes more per entry, measured).
  // Entries: no path-keyed map of every entry (a second copy of each path);
  // only the created directories are deduplicated, and a path planned twice
  // is caught after sorting.
  const entries: LayerEntry[] = [];
  const created = new Set<string>();
  const addDir = (p: Buffer, mode: number, mtime: Timespec): void => {
    if (created.has(key(p))) return;
    created.add(key(p));
    entries.push({ type: 'directory', path: p, mode: S_IFDIR | mode, uid, gid, mtime } satisfies DirEntry);
  };

  // /vrift and the directories created above each destination.
  addDir(root, 0o755, treeTime);
  for (const d of dests) {
    const comps = splitComponents(d.subarray(root.length));
    for (let c = 1; c < comps.length; c++) {
      addDir(Buffer.concat([root, ...comps.slice(0, c).flatMap((x) => [Buffer.from('/'), x])]), 0o755, treeTime);
    }
  }

  // CAS objects: group tree files (in path order) by (sha256, permission bits).
  files.sort((a, b) => Buffer.compare(a.dest, b.dest));
  type Obj = CasObject & { mtime: Timespec };
  // sha256 -> the object of the first permission bits seen with that content
  // (the primary one); "sha256 perm" -> the others (rare).
  const byHash = new Map<string, Obj>();
  const otherPerm = new Map<string, Obj>();
  const objectOf = (f: Item): Obj | undefined => {
    const o = byHash.get(f.sha256!);
    return o === undefined || o.perm === f.perm ? o : otherPerm.get(`${f.sha256} ${f.perm}`);
  };
  const objList: Obj[] = [];
  for (const f of files) {
    let obj = objectOf(f);
    if (!obj) {
      const primary = !byHash.has(f.sha256!);
      const objPath = arena.concat([casObjectPath(root, f.sha256!, primary ? undefined : f.perm)]);
      obj = { path: objPath, sha256: f.sha256!, size: f.size, perm: f.perm, srcPath: hostPathToKeep(hostOf(f), arena), links: 0, mtime: timeOf(f.sec) };
      if (primary) byHash.set(f.sha256!, obj);
      else otherPerm.set(`${f.sha256} ${f.perm}`, obj);
      objList.push(obj);
    }
    obj.links++;
  }
  files.length = 0;
  objList.sort((a, b) => Buffer.compare(a.path, b.path));
  if (objList.length) {
    addDir(Buffer.concat([root, Buffer.from(`/${CAS_DIR}`)]), 0o755, treeTime);
    for (const o of objList) addDir(o.path.subarray(0, root.length + CAS_DIR.length + 4), 0o755, treeTime);
    for (const o of objList) {
      entries.push({
        type: 'file', path: o.path, mode: S_IFREG | o.perm, uid, gid, mtime: o.mtime,
        size: o.size, source: { file: o.srcPath }, sha256: o.sha256, nlink: o.links + 1,
      } satisfies FileEntry);
    }
  }

  // Each item is let go once its entry exists (entries are sorted below), so
  // walked items and planned entries are not all held at once.
  for (let it = items.pop(); it !== undefined; it = items.pop()) {
    if (it.kind === 'dir') {
      entries.push({ type: 'directory', path: it.dest, mode: S_IFDIR | it.perm, uid, gid, mtime: timeOf(it.sec) } satisfies DirEntry);
    } else if (it.kind === 'symlink') {
      entries.push({ type: 'symlink', path: it.dest, mode: S_IFLNK | 0o777, uid, gid, mtime: timeOf(it.sec), target: it.target! } satisfies SymlinkEntry);
    } else {
      const obj = objectOf(it)!;
      entries.push({
        type: 'hardlink', path: it.dest, linkTo: obj.path, mode: S_IFREG | obj.perm, uid, gid, mtime: obj.mtime,
        size: obj.size, sha256: obj.sha256, nlink: obj.links + 1,
      } satisfies HardlinkEntry);
    }
  }

  const casDir = Buffer.concat([root, Buffer.from(`/${CAS_DIR}`)]);
  const rank = (p: Buffer): number => (p.equals(root) ? 0 : p.equals(casDir) || isUnder(p, casDir) ? 1 : 2);
  const ordered = entries.sort((a, b) => rank(a.path) - rank(b.path) || Buffer.compare(a.path, b.path));
  for (let i = 1; i < ordered.length; i++) {
    // Only a destination's own directory could collide with a created parent: impossible, dests are disjoint.
    if (ordered[i].path.equals(ordered[i - 1].path)) throw new VriftError(`planning ${showPath(ordered[i].path)}: path planned twice (internal error)`);
  }

  const objBytes = objList.reduce((s, o) => s + o.size, 0n);
  return {
    root,
    entries: ordered,
    objects: objList, // (each also carries the mtime its entries use)
    stats: {
      files: fileCount,
      dirs: ordered.filter((e) => e.type === 'directory').length,
      symlinks: ordered.filter((e) => e.type === 'symlink').length,
      bytes,
      casObjects: objList.length,
      dedupRatio: objBytes === 0n ? 1 : Number(bytes) / Number(objBytes),
      hashHits,
      hashMisses,
    },
  };
}
