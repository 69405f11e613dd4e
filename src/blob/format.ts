/**
 * PSFS v2 on-disk constants and layout, mirrored from shim/psfs_format.h (the
 * single source of truth). test/blob/formatDrift.test.ts compiles that header
 * to WebAssembly and fails when any value here disagrees with it.
 *
 * All integers are little-endian; all sections are 8-byte aligned.
 */

/** 8 magic bytes at offset 0 ("PSFS\0\r\n\x1a"). */
export const MAGIC = Buffer.from([0x50, 0x53, 0x46, 0x53, 0x00, 0x0d, 0x0a, 0x1a]);
/** Length of MAGIC in bytes (PSFS_MAGIC_LEN). */
export const MAGIC_LEN = 8;
/** Container version; readers reject any other (1 = FNV-1a key hash, retired; 2 = word-at-a-time hash). */
export const VERSION = 2;
/** Highest content version this code writes and reads. */
export const CONTENT_VERSION_MAX = 1;

export const HEADER_SIZE = 128;
export const ENTRY_SIZE = 128;
export const BUCKET_SIZE = 8;
export const ROOT_SIZE = 8;
export const ALIGN = 8;

export const MAX_ROOTS = 16;
export const MAX_ENTRIES = 0x7fffffff;
/** Linux PATH_MAX (bytes, including the terminating NUL). */
export const PATH_MAX = 4096;
/** Linux NAME_MAX (bytes per path component). */
export const NAME_MAX = 255;

/** Header flags (psfs_header.flags). */
export const H_DEV_RUNTIME = 1 << 0;
export const H_CHECK_ROOT_MTIME = 1 << 1;
/** Identity tags: mtime nsec of every domain inode = its tag; inode table maps tag -> entry. */
export const H_IDENTITY_TAG = 1 << 2;
export const H_KNOWN_FLAGS = H_DEV_RUNTIME | H_CHECK_ROOT_MTIME | H_IDENTITY_TAG;
/** Largest identity tag (a tv_nsec value). */
export const TAG_MAX = 999999999;

/** Entry flags (psfs_entry.flags). */
export const E_REACHABLE = 1 << 0;
/** st_size/st_blocks are estimates: the shim passes such paths through. */
export const E_UNCERTAIN = 1 << 1;

/** Byte offsets of struct psfs_header fields. */
export const HEADER = {
  magic: 0,
  version: 8,
  headerSize: 12,
  headerCrc32: 16,
  flags: 20,
  fileSize: 24,
  entryCount: 32,
  entrySize: 36,
  entriesOff: 40,
  bucketCount: 48,
  maxProbe: 52,
  bucketsOff: 56,
  stringsOff: 64,
  stringsSize: 72,
  hashSeed: 80,
  rootCount: 84,
  rootsOff: 88,
  bodyCrc32: 96,
  contentVersion: 100,
  inodesOff: 104,
  inodeCount: 112,
  reserved: 116,
} as const;

/** Byte offsets of struct psfs_root fields. */
export const ROOT = { pathOff: 0, pathLen: 4 } as const;

/** Byte offsets of struct psfs_bucket fields. */
export const BUCKET = { hash: 0, entry: 4 } as const;

/** Byte offsets of struct psfs_entry fields. */
export const ENTRY = {
  pathOff: 0,
  pathLen: 4,
  targetOff: 8,
  targetLen: 12,
  mode: 16,
  uid: 20,
  gid: 24,
  nlink: 28,
  size: 32,
  blocks: 40,
  ino: 48,
  dev: 56,
  rdev: 64,
  atimeSec: 72,
  mtimeSec: 80,
  ctimeSec: 88,
  atimeNsec: 96,
  mtimeNsec: 100,
  ctimeNsec: 104,
  blksize: 108,
  flags: 112,
  reserved: 116,
} as const;

// psfs_hash lane multipliers and initial lane values (literals in psfs_hash(),
// shim/psfs_format.h; formatDrift.test.ts compares hash() with it on 5000 keys).
const HASH_K1 = 0x9e3779b1;
const HASH_K2 = 0x85ebca77;
const HASH_A0 = 0x243f6a88;
const HASH_B0 = 0x85a308d3;

const rotl32 = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;

/**
 * psfs_hash (container version 2): the key as little-endian 64-bit words, the
 * last one zero-padded (empty when the length is a multiple of 8); two 32-bit
 * lanes take one word per step, a = (rotl(a, 13) ^ lo) * K1 and
 * b = (rotl(b, 17) ^ hi) * K2, from a = seed ^ A0, b = seed ^ B0; then murmur3's
 * fmix32 of a ^ rotl(b, 16) ^ length. Must equal psfs_hash() in shim/psfs_format.h
 * (test/blob/formatDrift.test.ts).
 *
 * @param seed header hash_seed (uint32)
 * @param key key bytes (a normalized absolute path)
 * @returns uint32 hash
 */
export function hash(seed: number, key: Uint8Array): number {
  let a = (seed ^ HASH_A0) >>> 0;
  let b = (seed ^ HASH_B0) >>> 0;
  const n = key.length;
  for (let i = 0; ; i += 8) {
    let lo = 0;
    let hi = 0;
    const k = Math.min(8, n - i);
    for (let j = 0; j < k; j++) {
      if (j < 4) lo |= key[i + j] << (8 * j);
      else hi |= key[i + j] << (8 * (j - 4));
    }
    a = Math.imul(rotl32(a, 13) ^ lo, HASH_K1) >>> 0;
    b = Math.imul(rotl32(b, 17) ^ hi, HASH_K2) >>> 0;
    if (k < 8) break; // the partial (possibly empty) last word is mixed too
  }
  let h = (a ^ rotl32(b, 16) ^ n) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}
