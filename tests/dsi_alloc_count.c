/*
 * dsi_alloc_count.c - an LD_PRELOAD library for tests/test_cluster_alloc.c: counts the heap
 * allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) of a process by
 * the name of the thread that makes them: the node daemon's compute thread ("dsn-compute"), its
 * thread pool's workers ("dsi-pool") and every other thread. At exit it writes
 *   compute N\npool N\nother N\n
 * to $DSINFER_ALLOC_COUNT_DIR/<pid>. The allocations themselves are glibc's (__libc_*).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void *__libc_memalign(size_t align, size_t n);

static atomic_ulong counts[3]; /* compute, pool, other */

static void count(void)
{
    char name[17] = {0};
    int k = 2;
    if (prctl(PR_GET_NAME, name) == 0) {
        if (strncmp(name, "dsn-compute", 11) == 0)
            k = 0;
        else if (strncmp(name, "dsi-pool", 8) == 0)
            k = 1;
    }
    atomic_fetch_add(&counts[k], 1);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

__attribute__((destructor)) static void write_counts(void)
{
    const char *dir = getenv("DSINFER_ALLOC_COUNT_DIR");
    if (dir == NULL)
        return;
    char path[4096], text[128];
    snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
    int len = snprintf(text, sizeof(text), "compute %lu\npool %lu\nother %lu\n",
                       atomic_load(&counts[0]), atomic_load(&counts[1]), atomic_load(&counts[2]));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, text, (size_t)len) != len)
            perror("dsi_alloc_count");
        close(fd);
    }
}
