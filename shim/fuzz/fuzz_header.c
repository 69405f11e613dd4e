/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_header.c - libFuzzer target: psfs_view_init on arbitrary bytes.
 *
 * Each input is tried twice: as is (mostly exercises the magic, version and
 * checksum checks) and with header_crc32 re-signed (so mutations of sizes,
 * counts, offsets and roots reach the checks behind the checksum).  When a
 * view is accepted, every pointer in it must lie inside the input, and
 * resolving each root and a few paths must keep the fuzz_check.h
 * invariants.  The input sits in an exact-size heap block: ASan reports any
 * read past it.
 */
#include "fuzz_check.h"

static void try_view(const uint8_t *buf, size_t size)
{
	struct psfs_view v;
	if (psfs_view_init(&v, buf, size) != 0)
		return;
	fc_check_view(&v, buf, size);
	fc_check_tagged(&v);
	char path[PSFS_PATH_MAX + 16];
	for (uint32_t i = 0; i < v.root_count; i++) {
		uint32_t n = v.roots[i].path_len;
		memcpy(path, v.strings + v.roots[i].path_off, n);
		static const char *const tails[] = {"", "/", "/x", "/x/..", "/./a/../b/", "/.."};
		for (size_t t = 0; t < sizeof tails / sizeof *tails; t++) {
			size_t tl = strlen(tails[t]);
			memcpy(path + n, tails[t], tl + 1);
			fc_resolve_both(&v, path);
		}
	}
	/* Every key: a lookup of its own bytes finds an in-bounds entry. */
	for (uint32_t i = 0; i < v.entry_count && i < 64; i++) {
		const struct psfs_entry *e = &v.entries[i];
		if ((uint64_t)e->path_off + e->path_len > v.strings_size || e->path_len >= PSFS_PATH_MAX)
			continue;
		const struct psfs_entry *f = psfs_lookup(&v, v.strings + e->path_off, e->path_len);
		if (f)
			fc_check_entry(&v, f);
	}
	fc_resolve_both(&v, "/");
	fc_resolve_both(&v, "relative");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = fc_dup(data, size);
	try_view(buf, size);
	if (size >= PSFS_HEADER_SIZE) {
		/* re-sign: header_crc32 over the 128 bytes with the field as 0 */
		memset(buf + 16, 0, 4);
		uint32_t c = psfs_crc32(buf, PSFS_HEADER_SIZE);
		memcpy(buf + 16, &c, 4);
		try_view(buf, size);
	}
	free(buf);
	return 0;
}
