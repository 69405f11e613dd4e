import { createReadStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VriftError } from '../errors';
import { sha256File } from './hash';

/** File name of the cache inside the cache directory (the version is part of the name). */
export const CACHE_FILE = 'digests-v1.json';

/** Files modified less than this long before they are hashed are not cached (ns). */
export const RACY_NS = 2_000_000_000n;

/** What identifies an unchanged file: lstat fields, as bigints (mtime in ns). */
export interface FileKey {
  size: bigint;
  mtimeNs: bigint;
  /** st_ctim in ns: catches a rewrite whose mtime was set back (touch -r, cp -p over it). */
  ctimeNs: bigint;
  ino: bigint;
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
  /** Absolute host path bytes of file i (made on demand). */
  path(i: number): Buffer;
  /** lstat values of file i, taken before hashing. */
  key(i: number): FileKey;
}

/** Start of every cache file (what save writes; anything else counts as an empty cache). */
const PREFIX = '{"version":1,"files":{';
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

/** Batch file indexes by path hash: `find` gives every index whose path equals `p`. */
class PathIndex {
  private readonly hashes: Uint32Array;
  readonly order: Uint32Array;

  constructor(private readonly batch: FileBatch) {
    const h = new Uint32Array(batch.count);
    for (let i = 0; i < batch.count; i++) h[i] = fnv1a(batch.path(i));
    const order = new Uint32Array(batch.count);
    for (let i = 0; i < batch.count; i++) order[i] = i;
    order.sort((a, b) => h[a] - h[b] || a - b);
    this.hashes = new Uint32Array(batch.count);
    for (let k = 0; k < order.length; k++) this.hashes[k] = h[order[k]];
    this.order = order;
  }

  /** Indexes of the batch files whose path is `p` (usually none or one). */
  find(p: Buffer): number[] {
    const h = fnv1a(p);
    let lo = 0;
    let hi = this.hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let k = lo; k < this.hashes.length && this.hashes[k] === h; k++) if (this.batch.path(this.order[k]).equals(p)) out.push(this.order[k]);
    return out;
  }

  /** Whether the file at position k of `order` has the same path as an earlier one there (the same source added twice). */
  repeats(k: number): boolean {
    for (let j = k - 1; j >= 0 && this.hashes[j] === this.hashes[k]; j--) {
      if (this.batch.path(this.order[j]).equals(this.batch.path(this.order[k]))) return true;
    }
    return false;
  }
}

/** What became of a batch file: not known yet, found in the cache, hashed and to record, hashed but racy. */
const UNKNOWN = 0;
const FOUND = 1;
const RECORD_IT = 2;
const RACY = 3;

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
 * Local sha256 cache keyed by (absolute path bytes, st_size, st_mtim in ns,
 * st_ino, st_ctime), persisted as one JSON file `<cacheDir>/digests-v1.json`:
 * `{"version":1,"files":{"<base64 path>":{"size":..,"mtimeNs":..,"ctimeNs":..,"ino":..,"sha256":..},...}}`
 * (every value a string, no whitespace: the shape save writes and lookup
 * reads; a file of any other shape counts as empty).
 *
 * Used per build, for a FileBatch: `lookup` streams the file once and takes
 * the digest of every batch file whose record matches its key; `hash`
 * hashes the others; `save` writes the records of the batch and copies every
 * other record from the old file, streamed again. Nothing is held per
 * record, only ~10 bytes per batch file (an index by path hash and a state):
 * the cache holds every file of every tree ever built with it, and loading
 * it whole was the largest memory peak of a rebuild.
 *
 * A missing or corrupt cache file counts as empty (the cache is an
 * optimisation, never a source of truth for anything but the hash of an
 * unchanged file). Files modified less than 2 s before hashing are not
 * recorded (racy: a same-size rewrite within one timestamp tick would keep
 * the key). Saving writes a temp file in the same directory and renames it
 * over the old one, so readers never see a partial file.
 */
export class DigestCache {
  hits = 0;
  misses = 0;
  private index: PathIndex | undefined;
  private state = new Uint8Array(0);

  private constructor(readonly dir: string | undefined) {}

  /**
   * The cache in `dir` (false: none, nothing found or saved). Reads nothing yet.
   * @throws never
   */
  static async open(dir: string | false | undefined): Promise<DigestCache> {
    return new DigestCache(dir === false ? undefined : path.resolve(dir ?? defaultCacheDir()));
  }

  /**
   * Find the batch files whose record matches their key (path, size, mtime,
   * ctime, inode), in one streamed pass over the cache file; counts hits.
   *
   * @param found called with the file index and its sha256 (64 hex digits) for each hit
   */
  async lookup(batch: FileBatch, found: (i: number, hex: string) => void): Promise<void> {
    this.index = new PathIndex(batch);
    this.state = new Uint8Array(batch.count);
    if (!this.dir) return;
    for await (const r of readRecords(path.join(this.dir, CACHE_FILE))) {
      const at = this.index.find(Buffer.from(r.key, 'base64'));
      if (at.length === 0) continue;
      let rec: Partial<CacheRecord>;
      try {
        rec = JSON.parse(r.text) as Partial<CacheRecord>;
      } catch {
        continue;
      }
      if (typeof rec.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(rec.sha256)) continue;
      for (const i of at) {
        const k = batch.key(i);
        if (this.state[i] === UNKNOWN && rec.size === String(k.size) && rec.mtimeNs === String(k.mtimeNs) && rec.ctimeNs === String(k.ctimeNs) && rec.ino === String(k.ino)) {
          this.state[i] = FOUND;
          this.hits++;
          found(i, rec.sha256);
        }
      }
    }
  }

  /** Whether lookup found file i. */
  found(i: number): boolean {
    return this.state[i] === FOUND;
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
    const { hex, size } = await sha256File(absPath, key.size);
    if (size !== key.size) {
      throw new VriftError(`hashing file ${JSON.stringify(absPath.toString())}: it changed while being read (${key.size} bytes at lstat, ${size} read); build again once the source is stable`);
    }
    // "Racy" files (modified within RACY_NS of now) are not recorded: a rewrite
    // of the same size within the filesystem's timestamp granularity would
    // leave the key unchanged (the git index has the same problem and cure).
    this.state[i] = BigInt(Date.now()) * 1_000_000n - key.mtimeNs > RACY_NS ? RECORD_IT : RACY;
    return hex;
  }

  /**
   * Persist the cache atomically (temp file + rename) when a file was hashed
   * and is to be recorded: the records of the batch's found and recordable
   * files, and every record of the old file for another path (streamed).
   *
   * @param shaOf sha256 hex of batch file i (found or hashed)
   * @throws VriftError when the cache directory or file cannot be written
   */
  async save(batch: FileBatch, shaOf: (i: number) => string): Promise<void> {
    const index = this.index;
    if (!this.dir || !index || !this.state.includes(RECORD_IT)) return;
    const file = path.join(this.dir, CACHE_FILE);
    const tmp = path.join(this.dir, `.${CACHE_FILE}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        let chunk = PREFIX;
        let first = true;
        const put = async (k: string, text: string): Promise<void> => {
          chunk += `${first ? '' : ','}"${k}":${text}`;
          first = false;
          if (chunk.length >= 1 << 20) {
            await fh.writeFile(chunk, 'latin1');
            chunk = '';
          }
        };
        for await (const r of readRecords(file)) if (index.find(Buffer.from(r.key, 'base64')).length === 0) await put(r.key, r.text);
        for (let k = 0; k < index.order.length; k++) {
          const i = index.order[k];
          if ((this.state[i] !== FOUND && this.state[i] !== RECORD_IT) || index.repeats(k)) continue;
          const key = batch.key(i);
          const rec: CacheRecord = { size: String(key.size), mtimeNs: String(key.mtimeNs), ctimeNs: String(key.ctimeNs), ino: String(key.ino), sha256: shaOf(i) };
          await put(batch.path(i).toString('base64'), JSON.stringify(rec));
        }
        await fh.writeFile(chunk + '}}', 'latin1');
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw new VriftError(`writing digest cache ${file}: ${(err as Error).message}; fix permissions or pass another cache directory`, { cause: err });
    }
  }
}
