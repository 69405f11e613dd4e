import { createReadStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { VriftError } from '../errors';
import { sha256File } from './hash';
import { PagedArray, RecordSorter } from '../paged';

/**
 * Directory of the cache files inside the cache directory (the format
 * version is part of the name): one file per source root,
 * `<32 hex>.json`, the hex the first 128 bits of sha256 of the root's
 * realpath bytes (cacheFileFor).
 */
export const CACHE_SUBDIR = 'digests-v2';
/** The single cache file of earlier versions (every tree in one file, never pruned): deleted by the first save. */
export const OLD_CACHE_FILE = 'digests-v1.json';
/** A cache file not read or written for this long is deleted at the next save (ms: 30 days). */
export const PRUNE_AGE_MS = 30 * 24 * 3600 * 1000;
/** A temp file of a save older than this (not this process's) was left by a crashed run: deleted at save (ms: 10 min). */
export const STALE_TMP_MS = 10 * 60 * 1000;

/** Files modified less than this long before they are hashed are not cached (ns). */
export const RACY_NS = 2_000_000_000n;

/** What identifies an unchanged file: lstat fields, as bigints (mtime in ns). */
export interface FileKey {
  size: bigint;
  mtimeNs: bigint;
  /** st_ctim in ns: catches a rewrite whose mtime was set back (touch -r, cp -p over it). */
  ctimeNs: bigint;
  ino: bigint;
  /** st_dev: with `ino`, the walked file's identity (checked when it is hashed, not recorded). Optional for callers that only look up. */
  dev?: bigint;
}

/** One record of the cache file (every value a decimal or hex string). */
interface CacheRecord {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  sha256: string;
}

/** The files one build hashes, by index 0..count-1. */
export interface FileBatch {
  readonly count: number;
  /**
   * Realpath bytes of the source directories the files were walked from
   * (the --add sources): each root has its own cache file, holding the
   * records of the files under it (the longest root holding a path wins).
   */
  readonly roots: readonly Buffer[];
  /** Absolute host path bytes of file i (made on demand). */
  path(i: number): Buffer;
  /** lstat values of file i, taken before hashing. */
  key(i: number): FileKey;
}

/** Start of every cache file (what save writes; anything else counts as an empty cache). */
const PREFIX = '{"version":2,"files":{';
/** One record: `"<base64 path>":{...}` (a flat object of strings), after a "," except the first. */
const RECORD = /,?"([A-Za-z0-9+/=]*)":(\{[^{}]*\})/y;
/** A record is never longer than this (a PATH_MAX path in base64 plus the fields). */
const RECORD_MAX = 8192;

/**
 * The records of a cache file, streamed (1 MiB at a time, never the whole
 * file): `key` the base64 path, `text` the record's JSON object. Stops at
 * the first byte that is not a record (a corrupt file yields what precedes
 * it: each record is checked on its own against a file's key anyway); a
 * missing file or another prefix yields nothing.
 */
async function* readRecords(file: string): AsyncGenerator<{ key: string; text: string }> {
  let buf = '';
  let started = false;
  try {
    for await (const chunk of createReadStream(file, { encoding: 'latin1', highWaterMark: 1 << 20 })) {
      buf += chunk as string;
      if (!started) {
        if (buf.length < PREFIX.length) continue;
        if (!buf.startsWith(PREFIX)) return;
        started = true;
        buf = buf.slice(PREFIX.length);
      }
      let at = 0;
      for (;;) {
        RECORD.lastIndex = at;
        const m = RECORD.exec(buf);
        if (!m) break;
        at = RECORD.lastIndex;
        yield { key: m[1], text: m[2] };
      }
      buf = buf.slice(at);
      if (buf.length > RECORD_MAX) return; // not a record: corrupt
    }
  } catch {
    // Missing or unreadable cache: no records.
  }
}

/** FNV-1a of the bytes (an index over the batch's paths, checked by comparing the bytes). */
function fnv1a(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193) >>> 0;
  return h;
}

/**
 * Batch file indexes by path hash: `find` gives every index whose path
 * equals `p`. Paged and sorted in bounded memory (src/paged.ts): 8 bytes a
 * file, out of memory past the page pool.
 */
class PathIndex {
  private readonly hashes = new PagedArray(Uint32Array);
  private readonly order = new PagedArray(Uint32Array);
  readonly count: number;

  constructor(private readonly batch: FileBatch) {
    this.count = batch.count;
    // Records (hash, index), big-endian: by bytes, by hash then index.
    const sorter = new RecordSorter(8);
    for (let i = 0; i < batch.count; i++) {
      const { buf, off } = sorter.push();
      buf.writeUInt32BE(fnv1a(batch.path(i)), off);
      buf.writeUInt32BE(i, off + 4);
    }
    let k = 0;
    for (const { buf, off } of sorter.sorted()) {
      this.hashes.set(k, buf.readUInt32BE(off));
      this.order.set(k++, buf.readUInt32BE(off + 4));
    }
  }

  /** Indexes of the batch files whose path is `p` (usually none or one). */
  find(p: Buffer): number[] {
    const h = fnv1a(p);
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes.get(mid) < h) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let k = lo; k < this.count && this.hashes.get(k) === h; k++) if (this.batch.path(this.order.get(k)).equals(p)) out.push(this.order.get(k));
    return out;
  }

  /** Whether batch file i has the same path as a file before it in the batch (the same source added twice). */
  repeats(i: number): boolean {
    return this.find(this.batch.path(i))[0] !== i; // find lists equal paths by index, smallest first
  }

}

/** What became of a batch file: not known yet, found in the cache, hashed and to record, hashed but racy. */
const UNKNOWN = 0;
const FOUND = 1;
const RECORD_IT = 2;
const RACY = 3;
/** Group of a batch file under no root (never recorded). */
const NO_ROOT = 0xffffffff;
const SLASH = 0x2f;
/** Name of a save's temp file: `.<cache file name>.tmp-<pid>-<8 hex>` (this version's and digests-v1's). */
const TMP_NAME = /^\.(?:digests-v1|[0-9a-f]{32})\.json\.tmp-([0-9]+)-[0-9a-f]{8}$/;

/**
 * Default cache directory: `$XDG_CACHE_HOME/vrift`, else `~/.cache/vrift`.
 * An empty or relative XDG_CACHE_HOME is ignored (XDG Base Directory spec).
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'vrift');
  return path.join(os.homedir(), '.cache', 'vrift');
}

/**
 * The cache file of one source root in cache directory `dir`:
 * `<dir>/digests-v2/<first 32 hex digits of sha256(root)>.json`.
 *
 * @param root realpath bytes of the source directory
 */
export function cacheFileFor(dir: string, root: Buffer): string {
  return path.join(dir, CACHE_SUBDIR, `${createHash('sha256').update(root).digest('hex').slice(0, 32)}.json`);
}

/** Whether path `p` lies strictly below directory `root` (both absolute bytes). */
function isUnder(p: Buffer, root: Buffer): boolean {
  if (root.length === 1 && root[0] === SLASH) return p.length > 1 && p[0] === SLASH;
  return p.length > root.length && p[root.length] === SLASH && p.subarray(0, root.length).equals(root);
}

/** Why a write failed, in words, keeping the errno name. */
function writeCause(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (${code})`;
  if (code === 'EROFS') return 'read-only file system (EROFS)';
  if (code === 'ENOSPC') return 'no space left on device (ENOSPC)';
  if (code === 'EDQUOT') return 'disk quota exceeded (EDQUOT)';
  if (code === 'EEXIST') return 'a file of that name is in the way (EEXIST)';
  if (code === 'ENOTDIR') return 'a component of the path is not a directory (ENOTDIR)';
  return (err as Error).message;
}

/** Options of DigestCache.open. */
export interface DigestCacheOptions {
  /** Where a one-line warning goes (a cache that cannot be saved). Default: stderr, as `vrift: <line>`. */
  warn?: (line: string) => void;
}

/**
 * Local sha256 cache keyed by (absolute path bytes, st_size, st_mtim in ns,
 * st_ino, st_ctime), persisted as one JSON file per source root
 * (cacheFileFor: `<cacheDir>/digests-v2/<32 hex>.json`):
 * `{"version":2,"files":{"<base64 path>":{"size":..,"mtimeNs":..,"ctimeNs":..,"ino":..,"sha256":..},...}}`
 * (every value a string, no whitespace: the shape save writes and lookup
 * reads; a file of any other shape counts as empty).
 *
 * Used per build, for a FileBatch: `lookup` streams the files of the
 * batch's roots once (never another tree's records) and takes the digest of
 * every batch file whose record matches its key; `hash` hashes the others;
 * `save` rewrites a root's file with the records of the batch files under it
 * (a build walks the whole root, so a record of any other path is a file
 * that was deleted: dropped) when something was hashed or dropped, else
 * only touches its mtime (last use); then prunes the cache directory: files
 * unused for PRUNE_AGE_MS, temp files of crashed saves (STALE_TMP_MS), and
 * the single digests-v1.json of earlier versions. Nothing is held per
 * record, and what it keeps per batch file (an index by path hash, a root,
 * a state: 13 bytes) is paged (src/paged.ts): memory bounded whatever the
 * batch's size.
 *
 * A missing or corrupt cache file counts as empty (the cache is an
 * optimisation, never a source of truth for anything but the hash of an
 * unchanged file), and a cache that cannot be written is a warning, not an
 * error. Files modified less than 2 s before hashing are not recorded
 * (racy: a same-size rewrite within one timestamp tick would keep the key).
 * Saving writes a temp file in the same directory and renames it over the
 * old one, so readers never see a partial file.
 */
export class DigestCache {
  hits = 0;
  misses = 0;
  private index: PathIndex | undefined;
  private state = new PagedArray(Uint8Array);
  /** Per batch file: its root (index into roots) or NO_ROOT. */
  private group = new PagedArray(Uint32Array);
  private roots: Buffer[] = [];
  /** Per root: records its file held, and how many of them matched a batch file. */
  private read: number[] = [];
  private used: number[] = [];

  private constructor(
    readonly dir: string | undefined,
    private readonly warn: (line: string) => void,
  ) {}

  /**
   * The cache in `dir` (false: none, nothing found or saved). Reads nothing yet.
   * @throws never
   */
  static async open(dir: string | false | undefined, opts: DigestCacheOptions = {}): Promise<DigestCache> {
    const warn = opts.warn ?? ((line: string) => void process.stderr.write(`vrift: ${line}\n`));
    return new DigestCache(dir === false ? undefined : path.resolve(dir ?? defaultCacheDir()), warn);
  }

  /**
   * Find the batch files whose record matches their key (path, size, mtime,
   * ctime, inode), in one streamed pass over the cache file of each of the
   * batch's roots; counts hits.
   *
   * @param found called with the file index and its sha256 (64 hex digits) for each hit
   */
  async lookup(batch: FileBatch, found: (i: number, hex: string) => void): Promise<void> {
    this.index = new PathIndex(batch);
    this.state = new PagedArray(Uint8Array);
    this.roots = [];
    for (const r of batch.roots) if (!this.roots.some((x) => x.equals(r))) this.roots.push(r);
    this.read = this.roots.map(() => 0);
    this.used = this.roots.map(() => 0);
    this.group = new PagedArray(Uint32Array); // every file's is set below
    for (let i = 0; i < batch.count; i++) {
      const p = batch.path(i);
      let best = NO_ROOT;
      for (let g = 0; g < this.roots.length; g++) {
        if (isUnder(p, this.roots[g]) && (best === NO_ROOT || this.roots[g].length > this.roots[best].length)) best = g;
      }
      this.group.set(i, best);
    }
    if (!this.dir) return;
    for (let g = 0; g < this.roots.length; g++) {
      for await (const r of readRecords(cacheFileFor(this.dir, this.roots[g]))) {
        this.read[g]++;
        const at = this.index.find(Buffer.from(r.key, 'base64'));
        if (at.length === 0) continue;
        let rec: Partial<CacheRecord>;
        try {
          rec = JSON.parse(r.text) as Partial<CacheRecord>;
        } catch {
          continue;
        }
        if (typeof rec.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(rec.sha256)) continue;
        let hit = false;
        for (const i of at) {
          const k = batch.key(i);
          if (this.group.get(i) === g && this.state.get(i) === UNKNOWN && rec.size === String(k.size) && rec.mtimeNs === String(k.mtimeNs) && rec.ctimeNs === String(k.ctimeNs) && rec.ino === String(k.ino)) {
            this.state.set(i, FOUND);
            this.hits++;
            hit = true;
            found(i, rec.sha256);
          }
        }
        if (hit) this.used[g]++;
      }
    }
  }

  /** Whether lookup found file i. */
  found(i: number): boolean {
    return this.state.get(i) === FOUND;
  }

  /**
   * sha256 hex of batch file i, hashed (streamed; a miss), to be recorded
   * by save unless the file is racy.
   *
   * @throws VriftError when hashing fails, or when the byte count read differs from its key's size (file changed while building)
   */
  async hash(batch: FileBatch, i: number): Promise<string> {
    const absPath = batch.path(i);
    const key = batch.key(i);
    this.misses++;
    const { hex, size } = await sha256File(absPath, key.size, key.dev === undefined ? undefined : { dev: key.dev, ino: key.ino });
    if (size !== key.size) {
      throw new VriftError(`hashing file ${JSON.stringify(absPath.toString())}: it changed while being read (${key.size} bytes at lstat, ${size} read); build again once the source is stable`);
    }
    // "Racy" files (modified within RACY_NS of now) are not recorded: a rewrite
    // of the same size within the filesystem's timestamp granularity would
    // leave the key unchanged (the git index has the same problem and cure).
    this.state.set(i, BigInt(Date.now()) * 1_000_000n - key.mtimeNs > RACY_NS ? RECORD_IT : RACY);
    return hex;
  }

  /**
   * Persist the cache: each root's file is replaced atomically (temp file +
   * rename) by the records of the batch's found and recordable files under
   * it when a file was hashed or a record was stale, else its mtime is set
   * to now (in use); then the cache directory is pruned (see the class).
   * A cache that cannot be written is one warning line (opts.warn of open),
   * and the build goes on: the cache is an optimisation.
   *
   * @param shaOf sha256 hex of batch file i (found or hashed)
   * @throws never
   */
  async save(batch: FileBatch, shaOf: (i: number) => string): Promise<void> {
    const index = this.index;
    if (!this.dir || !index) return;
    const dirty = this.roots.map((_, g) => this.read[g] !== this.used[g]);
    for (let i = 0; i < batch.count; i++) if (this.state.get(i) === RECORD_IT && this.group.get(i) !== NO_ROOT) dirty[this.group.get(i)] = true;
    let file = path.join(this.dir, CACHE_SUBDIR);
    try {
      if (dirty.includes(true)) await fsp.mkdir(file, { recursive: true });
      for (let g = 0; g < this.roots.length; g++) {
        file = cacheFileFor(this.dir, this.roots[g]);
        if (dirty[g]) await this.write(batch, index, g, file, shaOf);
        else if (this.read[g] > 0) await fsp.utimes(file, new Date(), new Date()).catch(() => undefined);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const fix = code === 'ENOSPC' || code === 'EDQUOT' ? 'free space there' : 'fix the permissions';
      this.warn(`warning: writing digest cache ${file}: ${writeCause(err)}; the build goes on without saving it (${fix} or pass --cache-dir <a directory you can write>)`);
    }
    await this.prune();
  }

  /** Write root g's file: temp file in the same directory, renamed over it. */
  private async write(batch: FileBatch, index: PathIndex, g: number, file: string, shaOf: (i: number) => string): Promise<void> {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        let chunk = PREFIX;
        let first = true;
        // Batch order (path order): the next lookup meets the records in the
        // order of the batch's rows, so it reads the paged columns
        // (src/paged.ts) sequentially instead of at random.
        for (let i = 0; i < batch.count; i++) {
          if (this.group.get(i) !== g || (this.state.get(i) !== FOUND && this.state.get(i) !== RECORD_IT) || index.repeats(i)) continue;
          const key = batch.key(i);
          const rec: CacheRecord = { size: String(key.size), mtimeNs: String(key.mtimeNs), ctimeNs: String(key.ctimeNs), ino: String(key.ino), sha256: shaOf(i) };
          chunk += `${first ? '' : ','}"${batch.path(i).toString('base64')}":${JSON.stringify(rec)}`;
          first = false;
          if (chunk.length >= 1 << 20) {
            await fh.writeFile(chunk, 'latin1');
            chunk = '';
          }
        }
        await fh.writeFile(chunk + '}}', 'latin1');
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Delete, ignoring every error (a read-only cache stays as it is): cache
   * files not used for PRUNE_AGE_MS, temp files of another process older than
   * STALE_TMP_MS (a crashed save), and digests-v1.json (earlier versions' single
   * file; never read by this one). One readdir and one lstat per entry of the
   * cache directory and its digests-v2/.
   */
  private async prune(): Promise<void> {
    if (!this.dir) return;
    const now = Date.now();
    for (const d of [this.dir, path.join(this.dir, CACHE_SUBDIR)]) {
      const names = await fsp.readdir(d).catch(() => [] as string[]);
      for (const name of names) {
        const tmp = TMP_NAME.exec(name);
        const old = name === OLD_CACHE_FILE && d === this.dir;
        if (!old && !(tmp && Number(tmp[1]) !== process.pid) && !(name.endsWith('.json') && d !== this.dir)) continue;
        const p = path.join(d, name);
        const st = await fsp.lstat(p).catch(() => undefined);
        if (!st || !st.isFile()) continue;
        if (old || (tmp ? now - st.mtimeMs > STALE_TMP_MS : now - st.mtimeMs > PRUNE_AGE_MS)) await fsp.rm(p, { force: true }).catch(() => undefined);
      }
    }
  }
}
