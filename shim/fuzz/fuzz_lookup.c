/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_lookup.c - libFuzzer target: psfs_lookup and psfs_resolve over
 * arbitrary body bytes (buckets, entries, strings) behind a header the
 * harness makes valid and re-signs.  This is what a corrupt blob that
 * passes the O(1) init looks like to the hot path.
 *
 * Input:  16 parameter bytes, then the body.
 *   p[0] & 7       log2(bucket_count)         (1..128 buckets)
 *   p[1..3)        entry_count % (bucket_count + 1)
 *   p[3..5)        max_probe % bucket_count + 1
 *   p[5..9)        hash_seed
 *   p[9..11)       roots[0].path_off
 *   p[11]          roots[0].path_len
 *   p[12] & 3      header flags (PSFS_H_* bits, the reader ignores them)
 *   p[13]          first entry whose key is probed (8 are, in a row)
 *   body           buckets, then entries, then strings (the rest);
 *                  zero-padded when shorter than buckets + entries.
 * Layout: header 128, roots[1] at 128, buckets at 136, entries, strings.
 * The seed corpus (test/hostile: lookupSeed) is valid blobs in this form.
 *
 * For 8 consecutive entries (from p[13]), its own key is looked up and (when
 * at most 512 bytes) resolved
 * (as lstat and stat), as is the key with one of "/", "/.", "/..", "/x",
 * "/../x/" appended (rotating); so are a few fixed paths under the root.
 * Invariants: fuzz_check.h.  The blob is an exact-size heap block.
 */
#include "fuzz_check.h"

#define PARAMS 16u

static uint32_t rd32(const uint8_t *p) { uint32_t x; memcpy(&x, p, 4); return x; }
static uint16_t rd16(const uint8_t *p) { uint16_t x; memcpy(&x, p, 2); return x; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < PARAMS || size > (1u << 20))
		return 0;
	const uint8_t *p = data;
	uint32_t nb = 1u << (p[0] & 7);
	uint32_t ec = rd16(p + 1) % (nb + 1);
	uint32_t mp = rd16(p + 3) % nb + 1;
	uint64_t roots_off = PSFS_HEADER_SIZE, buckets_off = roots_off + 8;
	uint64_t entries_off = buckets_off + (uint64_t)nb * PSFS_BUCKET_SIZE;
	uint64_t strings_off = entries_off + (uint64_t)ec * PSFS_ENTRY_SIZE;
	size_t blen = size - PARAMS;
	uint64_t strings_size = blen > strings_off - buckets_off ? blen - (strings_off - buckets_off) : 0;
	uint64_t total = strings_off + strings_size;

	uint8_t *b = calloc(1, total);
	memcpy(b + buckets_off, data + PARAMS, blen < total - buckets_off ? blen : total - buckets_off);
	struct psfs_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, PSFS_MAGIC, PSFS_MAGIC_LEN);
	h.version = PSFS_VERSION;
	h.header_size = PSFS_HEADER_SIZE;
	h.flags = p[12] & PSFS_H_KNOWN_FLAGS;
	h.file_size = total;
	h.entry_count = ec;
	h.entry_size = PSFS_ENTRY_SIZE;
	h.entries_off = entries_off;
	h.bucket_count = nb;
	h.max_probe = mp;
	h.buckets_off = buckets_off;
	h.strings_off = strings_off;
	h.strings_size = strings_size;
	h.hash_seed = rd32(p + 5);
	h.root_count = 1;
	h.roots_off = roots_off;
	h.content_version = 1;
	struct psfs_root root = {.path_off = rd16(p + 9), .path_len = p[11]};
	memcpy(b + roots_off, &root, sizeof root);
	memcpy(b, &h, sizeof h);
	uint32_t c = psfs_crc32(b, PSFS_HEADER_SIZE);
	memcpy(b + 16, &c, 4);

	struct psfs_view v;
	if (psfs_view_init(&v, b, total) != 0) {
		free(b);                 /* root not normalized / out of bounds */
		return 0;
	}
	fc_check_view(&v, b, total);

	static const char *const tails[] = {"", "/", "/.", "/..", "/x", "/../x/"};
	char path[PSFS_PATH_MAX + 16];
	uint32_t first = v.entry_count ? p[13] % v.entry_count : 0;
	for (uint32_t k = 0; k < v.entry_count && k < 8; k++) {
		uint32_t i = (first + k) % v.entry_count;
		const struct psfs_entry *e = &v.entries[i];
		if ((uint64_t)e->path_off + e->path_len > v.strings_size || e->path_len >= PSFS_PATH_MAX)
			continue;
		const struct psfs_entry *f = psfs_lookup(&v, v.strings + e->path_off, e->path_len);
		if (f) {
			fc_check_entry(&v, f);
			CHECK(f->path_len == e->path_len &&
			      memcmp(v.strings + f->path_off, v.strings + e->path_off, e->path_len) == 0);
		}
		/* Resolve only short keys: psfs_resolve's missing-path walk is
		 * O(depth x length), long keys made of '/' would cap this target
		 * at ~2k execs/s; fuzz_resolve covers long paths. */
		if (e->path_len > 512)
			continue;
		/* the key itself, and one of the tails (rotating: speed) */
		size_t t = i % (sizeof tails / sizeof *tails);
		memcpy(path, v.strings + e->path_off, e->path_len);
		path[e->path_len] = 0;
		fc_resolve_both(&v, path);
		memcpy(path + e->path_len, tails[t], strlen(tails[t]) + 1);
		fc_resolve_both(&v, path);
	}
	uint32_t rl = v.roots[0].path_len;
	memcpy(path, v.strings + v.roots[0].path_off, rl);
	static const char *const extra[] = {"", "/", "/a", "/a/b/c", "/./a/../a/", "/..", "//x//y/"};
	for (size_t t = 0; t < sizeof extra / sizeof *extra; t++) {
		memcpy(path + rl, extra[t], strlen(extra[t]) + 1);
		fc_resolve_both(&v, path);
	}
	fc_resolve_both(&v, "/");
	free(b);
	return 0;
}
