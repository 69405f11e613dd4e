/* SPDX-License-Identifier: Apache-2.0 */
/*
 * malloccount.c - LD_PRELOAD interposer that counts malloc-family calls.
 *
 * Preload it AFTER libvrift.so (LD_PRELOAD=libvrift.so:malloccount.so) and
 * call malloccount_get() (found with dlsym) before and after a loop of hot
 * stats: the difference is the number of allocations made on the hot path.
 * It forwards to the next malloc; counting uses a relaxed atomic.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

static atomic_ulong count;

/* glibc's internal allocator entry points: no dlsym (which may allocate). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

__attribute__((visibility("default"))) unsigned long malloccount_get(void)
{
	return atomic_load(&count);
}

void *malloc(size_t n)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	return __libc_memalign(a, n);
}

void *memalign(size_t a, size_t n)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
	void *p = __libc_memalign(a, n);
	if (!p)
		return 12; /* ENOMEM */
	*out = p;
	return 0;
}
