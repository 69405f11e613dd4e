/* SPDX-License-Identifier: Apache-2.0 */
/*
 * psfs_format.h - PSFS v3 (Provably-Side-Effect-Free Stat) metadata blob.
 *
 * The single source of truth for the on-disk layout.  src/blob/format.ts
 * mirrors every constant and offset here; test/blob/formatDrift.test.ts
 * compiles this header to WebAssembly and fails when the two disagree.
 * docs/psfs-format.md explains the format in prose.
 *
 * Layout of a blob file (all integers little-endian, all sections 8-aligned):
 *
 *   [0, 128)                      struct psfs_header
 *   [roots_off, +root_count*8)    struct psfs_root[root_count]
 *   [buckets_off, +bucket_count*8) struct psfs_bucket[bucket_count]
 *   [entries_off, +entry_count*128) struct psfs_entry[entry_count]
 *   [strings_off, +strings_size)  path and symlink-target bytes (no NULs needed)
 *   [inodes_off, +inode_count*4)  uint32 inode table (PSFS_H_IDENTITY_TAG only)
 *
 * Lookup: h = psfs_hash(seed, path bytes); slot = h & (bucket_count - 1);
 * linear probing for at most max_probe slots; a slot with entry == 0 ends the
 * chain; a hit needs bucket.hash == h AND the entry's key bytes equal to the
 * path.  Hash-only matches are never accepted.
 *
 * Only this header is needed to read a blob: it includes <stdint.h> only.
 */
#ifndef PSFS_FORMAT_H
#define PSFS_FORMAT_H

#include <stdint.h>

/* "PSFSv1\r\n"-style magic: the \r\n catches text-mode mangling. */
#define PSFS_MAGIC "PSFS\x00\r\n\x1a"
#define PSFS_MAGIC_LEN 8

/* Container version: readers reject any other value (ENOTSUP): a blob of
 * a retired version is rejected, rebuild it.
 *   1 - FNV-1a key hash (retired)
 *   2 - word-at-a-time hash, two 32-bit lanes (retired)
 *   3 - word-at-a-time psfs_hash, one 64-bit lane (below) */
#define PSFS_VERSION 3u
/*
 * Content version: what the writer put in the fields.  Readers accept any
 * content version <= PSFS_CONTENT_VERSION_MAX.
 * Version history:
 *   1 - initial: stat fields, symlink targets, REACHABLE and UNCERTAIN
 *       flags, IDENTITY_TAG inode table.
 */
#define PSFS_CONTENT_VERSION_MAX 1u

#define PSFS_HEADER_SIZE 128u
#define PSFS_ENTRY_SIZE 128u
#define PSFS_BUCKET_SIZE 8u
#define PSFS_ROOT_SIZE 8u
#define PSFS_ALIGN 8u

/* Limits a reader enforces when validating the header. */
#define PSFS_MAX_ROOTS 16u
#define PSFS_MAX_ENTRIES 0x7fffffffu  /* entry index + 1 must fit in uint32 */
#define PSFS_PATH_MAX 4096u           /* Linux PATH_MAX, including the NUL */
#define PSFS_NAME_MAX 255u            /* Linux NAME_MAX */

/* Header flags (psfs_header.flags).  Unknown bits: reader rejects the blob. */
enum {
	/* st_dev is not taken from the entry: the shim uses the st_dev of
	 * roots[0] as the kernel reports it at init (image builds cannot know
	 * the device the engine will mount the layer on). */
	PSFS_H_DEV_RUNTIME = 1u << 0,
	/* At init the shim compares roots[0]'s real mtime with its entry and
	 * rejects the blob on mismatch (cheap drift detection). */
	PSFS_H_CHECK_ROOT_MTIME = 1u << 1,
	/* Identity tags (image builds).  The builder wrote every inode of the
	 * domain with mtime nanoseconds = its tag n (1..inode_count), and
	 * inodes[n - 1] = index + 1 of an entry of that inode.  The kernel
	 * reports the same nanoseconds, so the shim can recognise a kernel
	 * answer about a domain inode (fstat, dirfd-relative fstatat, paths
	 * it passed through) and give it the blob's st_ino/atime/ctime: every
	 * entry point then agrees on identity (see docs/psfs-format.md).
	 * One exception: the entry of roots[0] may carry mtime nanoseconds
	 * above inode_count - the builder puts a digest of the tree there,
	 * so PSFS_H_CHECK_ROOT_MTIME accepts the blob only over its own tree
	 * - and is then not in the table: readers take an answer with
	 * nanoseconds > inode_count for roots[0]'s entry. */
	PSFS_H_IDENTITY_TAG = 1u << 2,
};
#define PSFS_H_KNOWN_FLAGS \
	(PSFS_H_DEV_RUNTIME | PSFS_H_CHECK_ROOT_MTIME | PSFS_H_IDENTITY_TAG)
/* Largest tag: a tag is a tv_nsec value. */
#define PSFS_TAG_MAX 999999999u

/* Entry flags (psfs_entry.flags).  Unknown bits are ignored by readers. */
enum {
	/* Every directory from the domain root down to this entry's parent
	 * has mode & 0111 == 0111, so any caller may resolve this path. Without
	 * it the shim passes the call through (it must never widen access). */
	PSFS_E_REACHABLE = 1u << 0,
	/* st_size/st_blocks are the builder's estimate (e.g. a large ext4
	 * directory, whose size depends on the filesystem's hash seed): the
	 * shim never answers this path from memory. */
	PSFS_E_UNCERTAIN = 1u << 1,
};

struct psfs_header {
	uint8_t magic[8];          /*   0: PSFS_MAGIC */
	uint32_t version;          /*   8: PSFS_VERSION */
	uint32_t header_size;      /*  12: PSFS_HEADER_SIZE */
	uint32_t header_crc32;     /*  16: CRC-32 (IEEE, zlib) of the 128 header
	                            *      bytes with this field set to 0 */
	uint32_t flags;            /*  20: PSFS_H_* */
	uint64_t file_size;        /*  24: total blob size in bytes */
	uint32_t entry_count;      /*  32 */
	uint32_t entry_size;       /*  36: PSFS_ENTRY_SIZE */
	uint64_t entries_off;      /*  40 */
	uint32_t bucket_count;     /*  48: power of two, >= entry_count */
	uint32_t max_probe;        /*  52: longest probe chain, 1..bucket_count */
	uint64_t buckets_off;      /*  56 */
	uint64_t strings_off;      /*  64 */
	uint64_t strings_size;     /*  72: bytes */
	uint32_t hash_seed;        /*  80: psfs_hash seed */
	uint32_t root_count;       /*  84: 1..PSFS_MAX_ROOTS */
	uint64_t roots_off;        /*  88 */
	uint32_t body_crc32;       /*  96: CRC-32 of bytes [header_size,
	                            *      file_size); checked by tools, not
	                            *      by the shim (O(n)) */
	uint32_t content_version;  /* 100: 1..PSFS_CONTENT_VERSION_MAX */
	uint64_t inodes_off;       /* 104: PSFS_H_IDENTITY_TAG: uint32 inode
	                            *      table; else 0 */
	uint32_t inode_count;      /* 112: entries of that table (largest tag,
	                            *      <= PSFS_TAG_MAX); else 0 */
	uint32_t reserved[3];      /* 116: zero; room to grow without a new version */
};

struct psfs_root {
	uint32_t path_off;         /* 0: into strings; normalized absolute path,
	                            *    not "/", no trailing slash */
	uint32_t path_len;         /* 4: bytes, no NUL */
};

struct psfs_bucket {
	uint32_t hash;             /* 0: full psfs_hash of the key */
	uint32_t entry;            /* 4: entry index + 1; 0 = empty slot */
};

struct psfs_entry {
	uint32_t path_off;         /*   0: key: normalized absolute path */
	uint32_t path_len;         /*   4 */
	uint32_t target_off;       /*   8: symlink target bytes as readlink(2) */
	uint32_t target_len;       /*  12: 0 unless S_ISLNK(mode) */
	uint32_t mode;             /*  16: st_mode (type and permission bits) */
	uint32_t uid;              /*  20: st_uid */
	uint32_t gid;              /*  24: st_gid */
	uint32_t nlink;            /*  28: st_nlink */
	uint64_t size;             /*  32: st_size, bytes */
	uint64_t blocks;           /*  40: st_blocks, 512-byte units */
	uint64_t ino;              /*  48: st_ino */
	uint64_t dev;              /*  56: st_dev (see PSFS_H_DEV_RUNTIME) */
	uint64_t rdev;             /*  64: st_rdev */
	int64_t atime_sec;         /*  72: st_atim.tv_sec */
	int64_t mtime_sec;         /*  80: st_mtim.tv_sec */
	int64_t ctime_sec;         /*  88: st_ctim.tv_sec */
	uint32_t atime_nsec;       /*  96: 0..999999999 */
	uint32_t mtime_nsec;       /* 100 */
	uint32_t ctime_nsec;       /* 104 */
	uint32_t blksize;          /* 108: st_blksize, bytes */
	uint32_t flags;            /* 112: PSFS_E_* */
	uint32_t reserved[3];      /* 116: zero */
};

_Static_assert(sizeof(struct psfs_header) == PSFS_HEADER_SIZE, "header size");
_Static_assert(sizeof(struct psfs_root) == PSFS_ROOT_SIZE, "root size");
_Static_assert(sizeof(struct psfs_bucket) == PSFS_BUCKET_SIZE, "bucket size");
_Static_assert(sizeof(struct psfs_entry) == PSFS_ENTRY_SIZE, "entry size");

/*
 * psfs_hash - word-at-a-time hash of the key bytes (PSFS_VERSION 3).
 *
 * The key is read as little-endian 64-bit words, the last one zero-padded
 * (an empty last word when n is a multiple of 8).  One 64-bit lane takes
 * one word per step, a multiply-rotate step:
 *     h = (rotl64(h, 29) ^ word) * 0x9e3779b97f4a7c15
 * starting from h = seed ^ 0x243f6a8885a308d3; then
 *     h ^= n;  h ^= h >> 33;  h *= 0xff51afd7ed558ccd;  h ^= h >> 33
 * (half of murmur3's fmix64) and the hash is the low 32 bits.
 * Four instructions per 8 bytes: the hot path executes every one of them
 * on every call, and at ~5 instructions per cycle their count, not the
 * multiply's latency, sets its cost (v2's two 32-bit lanes took ten; v1,
 * FNV-1a, a multiply per byte).  Collisions cost only probe length:
 * a hit always compares the key bytes.  Between words the state is
 * (h, partial word, length), so a reader hashing a path as it scans it can
 * finalize the hash of any prefix it passed (psfs_core.c).  The TS mirror
 * (hash() in src/blob/format.ts) computes the 64-bit product in 32-bit
 * halves.
 */
/* One word step. */
static inline void psfs_hash_word(uint64_t *h, uint64_t w)
{
	*h = ((*h << 29 | *h >> 35) ^ w) * 0x9e3779b97f4a7c15ull;
}

/* The last (partial, possibly empty) word, then the finalizer. */
static inline uint32_t psfs_hash_final(uint64_t h, uint64_t w, uint32_t n)
{
	psfs_hash_word(&h, w);
	h ^= n;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

/* Little-endian word of p[0..k), k <= 8, zero-padded; reads only p[0..k). */
static inline uint64_t psfs_hash_load(const uint8_t *p, uint32_t k)
{
	uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (k == 8) {
		__builtin_memcpy(&w, p, 8);   /* one load (a byte loop is ~4x slower) */
		return w;
	}
#endif
	for (uint32_t i = 0; i < k; i++)
		w |= (uint64_t)p[i] << (8u * i);
	return w;
}

static inline uint32_t psfs_hash(uint32_t seed, const uint8_t *p, uint32_t n)
{
	uint64_t h = seed ^ 0x243f6a8885a308d3ull;
	uint32_t i = 0;
	for (; n - i >= 8; i += 8)
		psfs_hash_word(&h, psfs_hash_load(p + i, 8));
	return psfs_hash_final(h, psfs_hash_load(p + i, n - i), n);
}

#endif /* PSFS_FORMAT_H */
