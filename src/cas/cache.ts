import { promises as fsp } from 'node:fs';
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

interface Record {
  size: string;
  mtimeNs: string;
  ctimeNs?: string;
  ino: string;
  sha256: string;
}

/**
 * One record in memory: the key fields and the digest, space-separated
 * (digest last, 64 hex digits). Array join gives one flat string; a template
 * or `+` gives a tree of cons strings (~3x the bytes per record).
 */
function packRecord(size: string, mtimeNs: string, ctimeNs: string, ino: string, sha256: string): string {
  return [size, mtimeNs, ctimeNs, ino, sha256].join(' ');
}

function unpackRecord(v: string): Record {
  const [size, mtimeNs, ctimeNs, ino, sha256] = v.split(' ');
  return { size, mtimeNs, ...(ctimeNs ? { ctimeNs } : {}), ino, sha256 };
}

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
 * `{ "version": 1, "files": { "<base64 path>": { size, mtimeNs, ctimeNs, ino, sha256 } } }`.
 * A file whose key differs is re-hashed and its record replaced. A missing
 * or corrupt cache file counts as empty (the cache is an optimisation, never
 * a source of truth for anything but the hash of an unchanged file).
 * Files modified less than 2 s before hashing are not recorded (racy: a
 * same-size rewrite within one timestamp tick would keep the key).
 * Saving writes a temp file in the same directory and renames it over the
 * old one, so readers never see a partial file.
 */
export class DigestCache {
  hits = 0;
  misses = 0;
  private dirty = false;

  /**
   * base64 path -> "size mtimeNs ctimeNs ino sha256" (one string per file,
   * not a record object of five strings: the cache holds every file of every
   * tree built with it, and its size adds to the builder's peak memory).
   */
  private constructor(
    readonly dir: string | undefined,
    private readonly files: Map<string, string>,
  ) {}

  /**
   * Open the cache in `dir` (false: an in-memory cache that never persists).
   * @throws never for a missing/corrupt file; VriftError only from save().
   */
  static async open(dir: string | false | undefined): Promise<DigestCache> {
    if (dir === false) return new DigestCache(undefined, new Map());
    const d = path.resolve(dir ?? defaultCacheDir());
    const files = new Map<string, string>();
    try {
      const parsed = JSON.parse(await fsp.readFile(path.join(d, CACHE_FILE), 'utf8')) as { version?: number; files?: { [k: string]: Record } };
      if (parsed && parsed.version === 1 && parsed.files && typeof parsed.files === 'object') {
        for (const [k, v] of Object.entries(parsed.files)) {
          if (v && typeof v.sha256 === 'string' && /^[0-9a-f]{64}$/.test(v.sha256)) files.set(k, packRecord(v.size, v.mtimeNs, v.ctimeNs ?? '', v.ino, v.sha256));
        }
      }
    } catch {
      // Missing or unreadable cache: start empty.
    }
    return new DigestCache(d, files);
  }

  /**
   * sha256 hex of the file at `absPath`, from the cache when `key` matches,
   * else hashed (streamed) and recorded. Counts hits and misses.
   *
   * @param absPath absolute host path bytes
   * @param key lstat values of the file taken before hashing
   * @throws VriftError when hashing fails, or when the byte count read differs from key.size (file changed while building)
   */
  async sha256(absPath: Buffer, key: FileKey): Promise<string> {
    const k = absPath.toString('base64');
    const rec = this.files.get(k);
    const want = packRecord(String(key.size), String(key.mtimeNs), String(key.ctimeNs), String(key.ino), '');
    if (rec !== undefined && rec.length === want.length + 64 && rec.startsWith(want)) {
      this.hits++;
      return rec.slice(want.length);
    }
    this.misses++;
    const { hex, size } = await sha256File(absPath, key.size);
    if (size !== key.size) {
      throw new VriftError(`hashing file ${JSON.stringify(absPath.toString())}: it changed while being read (${key.size} bytes at lstat, ${size} read); build again once the source is stable`);
    }
    // "Racy" files (modified within RACY_NS of now) are not recorded: a rewrite
    // of the same size within the filesystem's timestamp granularity would
    // leave the key unchanged (the git index has the same problem and cure).
    if (BigInt(Date.now()) * 1_000_000n - key.mtimeNs > RACY_NS) {
      this.files.set(k, packRecord(String(key.size), String(key.mtimeNs), String(key.ctimeNs), String(key.ino), hex));
      this.dirty = true;
    }
    return hex;
  }

  /** Number of records held. */
  get size(): number {
    return this.files.size;
  }

  /**
   * Persist the cache atomically (temp file + rename) when it changed.
   * @throws VriftError when the cache directory or file cannot be written
   */
  async save(): Promise<void> {
    if (!this.dir || !this.dirty) return;
    const file = path.join(this.dir, CACHE_FILE);
    const tmp = path.join(this.dir, `.${CACHE_FILE}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await fsp.mkdir(this.dir, { recursive: true });
      // Streamed in chunks, the bytes JSON.stringify of the whole object would
      // give (keys sorted): one object and one string of every record at once
      // was the builder's largest memory peak (~1 KiB per cached file).
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        let chunk = '{"version":1,"files":{';
        let first = true;
        for (const k of [...this.files.keys()].sort()) {
          chunk += `${first ? '' : ','}${JSON.stringify(k)}:${JSON.stringify(unpackRecord(this.files.get(k)!))}`;
          first = false;
          if (chunk.length >= 1 << 20) {
            await fh.writeFile(chunk);
            chunk = '';
          }
        }
        await fh.writeFile(chunk + '}}');
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
      this.dirty = false;
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw new VriftError(`writing digest cache ${file}: ${(err as Error).message}; fix permissions or pass another cache directory`, { cause: err });
    }
  }
}
