/* SPDX-License-Identifier: Apache-2.0 */
/*
 * glue.c - wasm32 exports around the freestanding PSFS reader
 * (shim/psfs_core.c) for the jest conformance tests:
 *
 *   - a bump allocator over the linear memory after __heap_base (grows the
 *     memory on demand; JS must refresh its views after alloc), never
 *     returning 0 so that 0 can stand for NULL;
 *   - thin wrappers around psfs_view_init / psfs_lookup / psfs_resolve /
 *     psfs_crc32 / psfs_hash operating on one static struct psfs_view;
 *   - sizeof/offsetof of every field of every struct psfs_* in
 *     psfs_format.h ("off_<struct>_<field>", "size_<struct>_<field>",
 *     "sizeof_<struct>") and the value of every #define / enum constant
 *     ("c_<NAME>"), so test/blob/formatDrift.test.ts can compare
 *     src/blob/format.ts against what the C compiler sees.
 *
 * Built by test/wasm/build-wasm.mjs; no libc.
 */
#include <stdint.h>
#include "psfs_core.h"

#define EXPORT(name) __attribute__((export_name(#name))) name

/* ---- allocator ---------------------------------------------------------- */

extern unsigned char __heap_base;
static uintptr_t heap_top;

uint32_t EXPORT(arena_alloc)(uint32_t n)
{
	if (!heap_top)
		heap_top = ((uintptr_t)&__heap_base + 15u) & ~(uintptr_t)15u;
	uintptr_t p = heap_top;
	uintptr_t end = (p + n + 15u) & ~(uintptr_t)15u;
	uintptr_t have = (uintptr_t)__builtin_wasm_memory_size(0) * 65536u;
	if (end > have) {
		uintptr_t pages = (end - have + 65535u) / 65536u;
		if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1)
			return 0;
	}
	heap_top = end;
	return (uint32_t)p;
}

/* Free everything allocated so far. */
void EXPORT(arena_reset)(void)
{
	heap_top = 0;
}

/* ---- reader wrappers ---------------------------------------------------- */

static struct psfs_view view;
static char scratch[PSFS_PATH_MAX];
static const struct psfs_entry *resolved;

int EXPORT(w_view_init)(uint32_t base, uint32_t size)
{
	return psfs_view_init(&view, (const void *)(uintptr_t)base, size);
}

/* Fields psfs_view_init filled in. */
uint32_t EXPORT(w_view_entry_count)(void) { return view.entry_count; }
uint32_t EXPORT(w_view_bucket_mask)(void) { return view.bucket_mask; }
uint32_t EXPORT(w_view_max_probe)(void) { return view.max_probe; }
uint32_t EXPORT(w_view_seed)(void) { return view.seed; }
uint32_t EXPORT(w_view_root_count)(void) { return view.root_count; }
uint32_t EXPORT(w_view_flags)(void) { return view.flags; }

/* Index of the entry *e in the view's entry array, or -1 for NULL. */
static int32_t index_of(const struct psfs_entry *e)
{
	return e ? (int32_t)(e - view.entries) : -1;
}

/* Address of entry i (for reading its fields from JS at the C offsets). */
uint32_t EXPORT(w_entry_addr)(uint32_t i)
{
	return (uint32_t)(uintptr_t)(view.entries + i);
}

int32_t EXPORT(w_lookup)(uint32_t path, uint32_t len)
{
	return index_of(psfs_lookup(&view, (const uint8_t *)(uintptr_t)path, len));
}

/* psfs_resolve on a NUL-terminated path (0 = NULL); the found entry's index
 * is then available from w_resolved_index (-1 when *out was left NULL). */
int EXPORT(w_resolve)(uint32_t path, uint32_t flags)
{
	resolved = 0;
	return (int)psfs_resolve(&view, (const char *)(uintptr_t)path, flags, scratch, &resolved);
}

int32_t EXPORT(w_resolved_index)(void) { return index_of(resolved); }

/* psfs_tagged: index of the entry a kernel answer with these fields is, or -1. */
int32_t EXPORT(w_tagged)(uint32_t mode, uint32_t uid, uint32_t gid, uint32_t nlink,
			 uint64_t size, int64_t mtime_sec, uint32_t mtime_nsec)
{
	return index_of(psfs_tagged(&view, mode, uid, gid, nlink, size, mtime_sec, mtime_nsec));
}

uint32_t EXPORT(w_crc32)(uint32_t p, uint32_t n)
{
	return psfs_crc32((const uint8_t *)(uintptr_t)p, n);
}

uint32_t EXPORT(w_hash)(uint32_t seed, uint32_t p, uint32_t n)
{
	return psfs_hash(seed, (const uint8_t *)(uintptr_t)p, n);
}

/* ---- layout ------------------------------------------------------------- */

#define FIELD(s, f)                                                          \
	uint32_t EXPORT(off_##s##_##f)(void) { return __builtin_offsetof(struct psfs_##s, f); } \
	uint32_t EXPORT(size_##s##_##f)(void) { return sizeof(((struct psfs_##s *)0)->f); }
#define STRUCT(s) \
	uint32_t EXPORT(sizeof_##s)(void) { return sizeof(struct psfs_##s); }
#define CONST(n) \
	uint32_t EXPORT(c_##n)(void) { return (uint32_t)(n); }

STRUCT(header)
FIELD(header, magic)
FIELD(header, version)
FIELD(header, header_size)
FIELD(header, header_crc32)
FIELD(header, flags)
FIELD(header, file_size)
FIELD(header, entry_count)
FIELD(header, entry_size)
FIELD(header, entries_off)
FIELD(header, bucket_count)
FIELD(header, max_probe)
FIELD(header, buckets_off)
FIELD(header, strings_off)
FIELD(header, strings_size)
FIELD(header, hash_seed)
FIELD(header, root_count)
FIELD(header, roots_off)
FIELD(header, body_crc32)
FIELD(header, content_version)
FIELD(header, inodes_off)
FIELD(header, inode_count)
FIELD(header, reserved)

STRUCT(root)
FIELD(root, path_off)
FIELD(root, path_len)

STRUCT(bucket)
FIELD(bucket, hash)
FIELD(bucket, entry)

STRUCT(entry)
FIELD(entry, path_off)
FIELD(entry, path_len)
FIELD(entry, target_off)
FIELD(entry, target_len)
FIELD(entry, mode)
FIELD(entry, uid)
FIELD(entry, gid)
FIELD(entry, nlink)
FIELD(entry, size)
FIELD(entry, blocks)
FIELD(entry, ino)
FIELD(entry, dev)
FIELD(entry, rdev)
FIELD(entry, atime_sec)
FIELD(entry, mtime_sec)
FIELD(entry, ctime_sec)
FIELD(entry, atime_nsec)
FIELD(entry, mtime_nsec)
FIELD(entry, ctime_nsec)
FIELD(entry, blksize)
FIELD(entry, flags)
FIELD(entry, reserved)

/* psfs_format.h */
static const char magic[] = PSFS_MAGIC;
uint32_t EXPORT(c_PSFS_MAGIC)(void) { return (uint32_t)(uintptr_t)magic; }
uint32_t EXPORT(c_PSFS_MAGIC_sizeof)(void) { return sizeof(magic) - 1; }
CONST(PSFS_MAGIC_LEN)
CONST(PSFS_VERSION)
CONST(PSFS_CONTENT_VERSION_MAX)
CONST(PSFS_HEADER_SIZE)
CONST(PSFS_ENTRY_SIZE)
CONST(PSFS_BUCKET_SIZE)
CONST(PSFS_ROOT_SIZE)
CONST(PSFS_ALIGN)
CONST(PSFS_MAX_ROOTS)
CONST(PSFS_MAX_ENTRIES)
CONST(PSFS_PATH_MAX)
CONST(PSFS_NAME_MAX)
CONST(PSFS_H_DEV_RUNTIME)
CONST(PSFS_H_CHECK_ROOT_MTIME)
CONST(PSFS_H_IDENTITY_TAG)
CONST(PSFS_TAG_MAX)
CONST(PSFS_H_KNOWN_FLAGS)
CONST(PSFS_E_REACHABLE)
CONST(PSFS_E_UNCERTAIN)

/* psfs_core.h */
CONST(PSFS_EINVAL)
CONST(PSFS_ENOTSUP)
CONST(PSFS_PASS)
CONST(PSFS_HIT)
CONST(PSFS_ENOENT)
CONST(PSFS_ENOTDIR)
CONST(PSFS_FOLLOW)
