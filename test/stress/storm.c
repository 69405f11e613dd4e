/* SPDX-License-Identifier: Apache-2.0 */
/*
 * storm.c - concurrency stress for libvrift.so (issue 4, item 2).
 * Built as shim/build/stress-storm; driven by test/stress/stress.test.ts.
 *
 *   stress-storm storm  <threads> <passes> path...  threads stat every path
 *        <passes> times (and on until 100 forks were made) while one more
 *        thread forks (the child stats before and after exec) and execs
 *        "stress-storm child path..." in a loop
 *   stress-storm spawn  <threads> <passes> path...  every thread alternates
 *        posix_spawn and vfork+execve of the child with stat passes
 *   stress-storm signal <passes> path...            the main thread stats in
 *        a loop; a helper thread sends it SIGUSR1 as fast as it can and the
 *        handler stats too (counted "nested" when main was inside stat)
 *   stress-storm child  path...                     one checked pass, exit 0/1
 *
 * Expected answers come from the kernel through raw syscalls (inline asm:
 * the shim interposes libc's stat, statx and syscall()), taken before any
 * thread starts.  Every stat/lstat/statx answer (rc, errno, every field) is
 * compared with them.  With STRESS_CANARY=<path>, prints "canary_size=<n>":
 * st_size of that path through stat(), which the test's canary blob sets to
 * a value the kernel does not have (proves the shim answered in-process).
 *
 * Output: "mode=<m> ... mismatches=<n> child_failures=<n>"; exit status 0
 * only when both are 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long raw4(long n, long a, long b, long c, long d)
{
#if defined(__x86_64__)
	register long r10 __asm__("r10") = d;
	long ret;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return ret;
#elif defined(__aarch64__)
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
	return x0;
#else
#error "x86_64 or aarch64"
#endif
}

struct expect {
	const char *path;
	int rc[2], err[2];        /* [0] stat, [1] lstat */
	struct stat st[2];
};
static struct expect *E;
static int NP;
static atomic_long mismatches, calls, forks, child_failures, nested, handled;
static const char *self;

static void kernel_answers(char **paths, int n)
{
	E = calloc((size_t)n, sizeof *E);
	NP = n;
	for (int i = 0; i < n; i++) {
		E[i].path = paths[i];
		for (int k = 0; k < 2; k++) {
			long r = raw4(SYS_newfstatat, AT_FDCWD, (long)paths[i], (long)&E[i].st[k],
				      k ? AT_SYMLINK_NOFOLLOW : 0);
			E[i].rc[k] = r < 0 ? -1 : 0;
			E[i].err[k] = r < 0 ? (int)-r : 0;
		}
	}
}

static int same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_mode == b->st_mode &&
	       a->st_nlink == b->st_nlink && a->st_uid == b->st_uid && a->st_gid == b->st_gid &&
	       a->st_rdev == b->st_rdev && a->st_size == b->st_size && a->st_blksize == b->st_blksize &&
	       a->st_blocks == b->st_blocks && a->st_atim.tv_sec == b->st_atim.tv_sec &&
	       a->st_atim.tv_nsec == b->st_atim.tv_nsec && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int same_statx(const struct statx *x, const struct stat *s)
{
	return x->stx_ino == (unsigned long long)s->st_ino && x->stx_mode == (s->st_mode & 0xffff) &&
	       x->stx_nlink == s->st_nlink && x->stx_uid == s->st_uid && x->stx_gid == s->st_gid &&
	       x->stx_size == (unsigned long long)s->st_size && x->stx_blocks == (unsigned long long)s->st_blocks &&
	       x->stx_mtime.tv_sec == s->st_mtim.tv_sec && x->stx_mtime.tv_nsec == (unsigned)s->st_mtim.tv_nsec &&
	       x->stx_ctime.tv_sec == s->st_ctim.tv_sec && x->stx_ctime.tv_nsec == (unsigned)s->st_ctim.tv_nsec &&
	       makedev(x->stx_dev_major, x->stx_dev_minor) == s->st_dev;
}

/* One checked pass over every path: stat, lstat, statx.  Returns the number
 * of answers that differ from the kernel's.  Async-signal-safe as long as
 * the shim is (no stdio, no allocation). */
static int check_pass(void)
{
	int bad = 0;
	for (int i = 0; i < NP; i++) {
		const struct expect *x = &E[i];
		for (int k = 0; k < 2; k++) {
			struct stat st;
			errno = 0;
			int rc = k ? lstat(x->path, &st) : stat(x->path, &st);
			int err = errno;
			if (rc != x->rc[k] || (rc != 0 && err != x->err[k]) || (rc == 0 && !same_stat(&st, &x->st[k])))
				bad++;
		}
		struct statx sx;
		errno = 0;
		int rc = statx(AT_FDCWD, x->path, 0, STATX_BASIC_STATS, &sx);
		int err = errno;
		if (rc != x->rc[0] || (rc != 0 && err != x->err[0]) || (rc == 0 && !same_statx(&sx, &x->st[0])))
			bad++;
	}
	return bad;
}

static void count_pass(void)
{
	int bad = check_pass();
	atomic_fetch_add(&calls, 3L * NP);
	if (bad)
		atomic_fetch_add(&mismatches, bad);
}

static char **child_argv;     /* {self, "child", paths..., NULL} */

/* Reap `pid`; a child that did not exit 0 is a failure. */
static void reap(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	atomic_fetch_add(&forks, 1);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		atomic_fetch_add(&child_failures, 1);
}

/* ---- storm ---------------------------------------------------------------- */
static long passes;
static atomic_int running;

#define MIN_FORKS 100    /* the storm lasts until the fork thread made this many */

static void *stat_thread(void *arg)
{
	(void)arg;
	for (long i = 0; i < passes || atomic_load(&forks) < MIN_FORKS; i++)
		count_pass();
	atomic_fetch_sub(&running, 1);
	return NULL;
}

static void *fork_thread(void *arg)
{
	(void)arg;
	do {
		pid_t pid = fork();
		if (pid == 0) {
			/* In a child of a multithreaded process only async-signal-safe
			 * calls are allowed: the shim's stat must be one. */
			_exit(check_pass() ? 3 : (execve(self, child_argv, environ), 4));
		}
		if (pid < 0) {
			atomic_fetch_add(&child_failures, 1);
			continue;
		}
		reap(pid);
	} while (atomic_load(&running) > 0);
	return NULL;
}

/* ---- spawn ----------------------------------------------------------------- */
/* vfork + execve of the child; its own frame, so vfork clobbers nothing. */
static __attribute__((noinline)) pid_t vfork_exec(void)
{
	pid_t pid = vfork();
	if (pid == 0) {
		execve(self, child_argv, environ);
		_exit(5);
	}
	return pid;
}

static void *spawn_thread(void *arg)
{
	long id = (long)arg;
	for (long i = 0; i < passes; i++) {
		count_pass();
		pid_t pid;
		if ((i + id) % 2 == 0) {
			if (posix_spawn(&pid, self, NULL, NULL, child_argv, environ) != 0) {
				atomic_fetch_add(&child_failures, 1);
				continue;
			}
		} else {
			pid = vfork_exec();
			if (pid < 0) {
				atomic_fetch_add(&child_failures, 1);
				continue;
			}
		}
		reap(pid);
	}
	return NULL;
}

/* ---- signal ------------------------------------------------------------------ */
static volatile sig_atomic_t in_stat;
static pthread_t main_thread;
static atomic_int done;

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	if (in_stat)
		atomic_fetch_add(&nested, 1);
	int bad = check_pass();
	atomic_fetch_add(&handled, 1);
	atomic_fetch_add(&calls, 3L * NP);
	if (bad)
		atomic_fetch_add(&mismatches, bad);
	errno = saved;
}

static void *kicker(void *arg)
{
	(void)arg;
	while (!atomic_load(&done)) {
		pthread_kill(main_thread, SIGUSR1);
		struct timespec ts = {0, 20000};   /* 20 us: let main get back into stat */
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void run_signal(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	main_thread = pthread_self();
	pthread_t k;
	pthread_create(&k, NULL, kicker, NULL);
	for (long i = 0; i < passes; i++) {
		for (int j = 0; j < NP; j++) {
			const struct expect *x = &E[j];
			struct stat st;
			in_stat = 1;
			errno = 0;
			int rc = stat(x->path, &st);
			int err = errno;
			in_stat = 0;
			atomic_fetch_add(&calls, 1);
			if (rc != x->rc[0] || (rc != 0 && err != x->err[0]) || (rc == 0 && !same_stat(&st, &x->st[0])))
				atomic_fetch_add(&mismatches, 1);
		}
	}
	atomic_store(&done, 1);
	pthread_join(k, NULL);
}

static void canary(void)
{
	const char *c = getenv("STRESS_CANARY");
	if (!c)
		return;
	struct stat st;
	printf("canary_size=%lld ", stat(c, &st) == 0 ? (long long)st.st_size : -1LL);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: stress-storm storm|spawn <threads> <passes> path... | signal <passes> path... | child path...\n");
		return 2;
	}
	self = "/proc/self/exe";
	static char self_buf[4096];
	ssize_t n = readlink("/proc/self/exe", self_buf, sizeof self_buf - 1);
	if (n > 0) {
		self_buf[n] = 0;
		self = self_buf;
	}
	const char *mode = argv[1];
	if (strcmp(mode, "child") == 0) {
		kernel_answers(argv + 2, argc - 2);
		return check_pass() ? 1 : 0;
	}
	int threads = 0, first;
	if (strcmp(mode, "signal") == 0) {
		passes = atol(argv[2]);
		first = 3;
	} else {
		if (argc < 5)
			return 2;
		threads = atoi(argv[2]);
		passes = atol(argv[3]);
		first = 4;
	}
	kernel_answers(argv + first, argc - first);
	child_argv = calloc((size_t)(argc - first + 3), sizeof *child_argv);
	child_argv[0] = (char *)self;
	child_argv[1] = "child";
	for (int i = first; i < argc; i++)
		child_argv[i - first + 2] = argv[i];

	canary();
	if (strcmp(mode, "storm") == 0) {
		pthread_t *t = calloc((size_t)threads + 1, sizeof *t);
		atomic_store(&running, threads);
		for (int i = 0; i < threads; i++)
			pthread_create(&t[i], NULL, stat_thread, NULL);
		pthread_create(&t[threads], NULL, fork_thread, NULL);
		for (int i = 0; i <= threads; i++)
			pthread_join(t[i], NULL);
	} else if (strcmp(mode, "spawn") == 0) {
		pthread_t *t = calloc((size_t)threads, sizeof *t);
		for (long i = 0; i < threads; i++)
			pthread_create(&t[i], NULL, spawn_thread, (void *)i);
		for (int i = 0; i < threads; i++)
			pthread_join(t[i], NULL);
	} else if (strcmp(mode, "signal") == 0) {
		run_signal();
	} else {
		fprintf(stderr, "stress-storm: unknown mode %s\n", mode);
		return 2;
	}
	printf("mode=%s threads=%d paths=%d calls=%ld forks=%ld handled=%ld nested=%ld mismatches=%ld child_failures=%ld\n",
	       mode, threads, NP, atomic_load(&calls), atomic_load(&forks), atomic_load(&handled),
	       atomic_load(&nested), atomic_load(&mismatches), atomic_load(&child_failures));
	return atomic_load(&mismatches) || atomic_load(&child_failures) ? 1 : 0;
}
