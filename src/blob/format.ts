/**
 * PSFS v3 on-disk constants and layout, mirrored from shim/psfs_format.h (the
 * single source of truth). test/blob/formatDrift.test.ts compiles that header
 * to WebAssembly and fails when any value here disagrees with it.
 *
 * All integers are little-endian; all sections are 8-byte aligned.
 */

/** 8 magic bytes at offset 0 ("PSFS\0\r\n\x1a"). */
export const MAGIC = Buffer.from([0x50, 0x53, 0x46, 0x53, 0x00, 0x0d, 0x0a, 0x1a]);
/** Length of MAGIC in bytes (PSFS_MAGIC_LEN). */
export const MAGIC_LEN = 8;
/** Container version; readers reject any other (1 = FNV-1a key hash, 2 = two 32-bit lanes, both retired; 3 = one 64-bit lane). */
export const VERSION = 3;
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

// psfs_hash constants as 32-bit halves (literals in psfs_hash_word(),
// psfs_hash_final() and psfs_hash(), shim/psfs_format.h; formatDrift.test.ts
// compares hash() with it on 5000 keys).
const HASH_K_HI = 0x9e3779b9; // step multiplier 0x9e3779b97f4a7c15
const HASH_K_LO = 0x7f4a7c15;
const HASH_F_HI = 0xff51afd7; // finalizer multiplier 0xff51afd7ed558ccd
const HASH_F_LO = 0xed558ccd;
const HASH_H0_HI = 0x243f6a88; // initial lane seed ^ 0x243f6a8885a308d3
const HASH_H0_LO = 0x85a308d3;

/** High 32 bits of the 64-bit product of two uint32 (16-bit partial products stay exact in a double). */
function mulhi32(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (a0 * b0) / 0x10000 + (p01 & 0xffff) + (p10 & 0xffff); // < 2^18
  return (a1 * b1 + Math.floor(p01 / 0x10000) + Math.floor(p10 / 0x10000) + Math.floor(mid / 0x10000)) >>> 0;
}

/**
 * psfs_hash (container version 3): the key as little-endian 64-bit words, the
 * last one zero-padded (empty when the length is a multiple of 8); one 64-bit
 * lane takes one word per step, h = (rotl64(h, 29) ^ word) * K, from
 * h = seed ^ H0; then h ^= length, h ^= h >> 33, h *= F, h ^= h >> 33, and the
 * hash is the low 32 bits. Must equal psfs_hash() in shim/psfs_format.h
 * (test/blob/formatDrift.test.ts). The 64-bit lane is kept as two uint32
 * halves (hi, lo), so the writer needs no BigInt per word.
 *
 * @param seed header hash_seed (uint32)
 * @param key key bytes (a normalized absolute path)
 * @returns uint32 hash
 */
export function hash(seed: number, key: Uint8Array): number {
  let hi = HASH_H0_HI >>> 0;
  let lo = (seed ^ HASH_H0_LO) >>> 0;
  // (hi, lo) = (hi, lo) * (mhi, mlo) mod 2^64
  const mul = (mhi: number, mlo: number): void => {
    const nhi = (mulhi32(lo, mlo) + Math.imul(lo, mhi) + Math.imul(hi, mlo)) >>> 0;
    lo = Math.imul(lo, mlo) >>> 0;
    hi = nhi;
  };
  const n = key.length;
  for (let i = 0; ; i += 8) {
    let wlo = 0;
    let whi = 0;
    const k = Math.min(8, n - i);
    for (let j = 0; j < k; j++) {
      if (j < 4) wlo |= key[i + j] << (8 * j);
      else whi |= key[i + j] << (8 * (j - 4));
    }
    // rotl64 by 29 on the halves: hi' = hi << 29 | lo >>> 3, lo' = lo << 29 | hi >>> 3
    const rhi = ((hi << 29) | (lo >>> 3)) >>> 0;
    const rlo = ((lo << 29) | (hi >>> 3)) >>> 0;
    hi = (rhi ^ whi) >>> 0;
    lo = (rlo ^ wlo) >>> 0;
    mul(HASH_K_HI, HASH_K_LO);
    if (k < 8) break; // the partial (possibly empty) last word is mixed too
  }
  lo = (lo ^ n) >>> 0;
  // h ^= h >> 33: the low half takes hi >>> 1, the high half is unchanged
  lo = (lo ^ (hi >>> 1)) >>> 0;
  mul(HASH_F_HI, HASH_F_LO);
  lo = (lo ^ (hi >>> 1)) >>> 0;
  return lo;
}
