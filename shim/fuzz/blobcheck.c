/* SPDX-License-Identifier: Apache-2.0 */
/*
 * blobcheck.c - run psfs_core.c on one blob file, for the hostile-blob
 * tests under ASan + UBSan (shim/build/blobcheck-asan).
 *
 *   blobcheck <blob>  < paths      (one per line; "<NULL>", "<EMPTY>")
 *
 * Prints "reject <rc>" when psfs_view_init refuses the blob, else "accept"
 * and, per path, "<lstat outcome> <entry index|-> <stat outcome> <entry index|->".
 * The blob is read into an exact-size heap block (ASan bounds), and every
 * answer is checked against the fuzz_check.h invariants (abort on failure).
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fuzz_check.h"

static long idx(const struct psfs_view *v, const struct psfs_entry *e)
{
	return e ? (long)(e - v->entries) : -1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: blobcheck <blob> < paths\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(argv[1]);
		return 2;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size ? size : 1);
	for (size_t got = 0; got < size;) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r <= 0) {
			perror("read");
			return 2;
		}
		got += (size_t)r;
	}
	close(fd);
	struct psfs_view v;
	int rc = psfs_view_init(&v, buf, size);
	if (rc != 0) {
		printf("reject %d\n", rc);
		free(buf);
		while (getchar() != EOF)
			;   /* read the paths anyway: the caller's write must not hit EPIPE */
		return 0;
	}
	fc_check_view(&v, buf, size);
	fc_check_tagged(&v);
	printf("accept\n");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = 0;
		const char *p = line;
		if (strcmp(line, "<NULL>") == 0)
			p = NULL;
		else if (strcmp(line, "<EMPTY>") == 0)
			p = "";
		char *q = p ? (char *)fc_dup((const uint8_t *)p, strlen(p) + 1) : NULL;
		const struct psfs_entry *el, *ef;
		enum psfs_outcome ol = fc_resolve(&v, q, 0, &el);
		enum psfs_outcome of = fc_resolve(&v, q, PSFS_FOLLOW, &ef);
		fc_resolve_both(&v, q);
		printf("%d %ld %d %ld\n", ol, idx(&v, el), of, idx(&v, ef));
		free(q);
	}
	free(line);
	free(buf);
	return 0;
}
