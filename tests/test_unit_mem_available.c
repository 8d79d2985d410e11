/*
 * test_unit_mem_available.c - dsi_mem_available, the memory a node offers by default: the
 * machine's MemAvailable, and with a NUMA node that node's free memory plus its reclaimable page
 * cache and slab. With 1 GiB (and 1% of the memory) of a file freshly written (so in the page
 * cache, not free), NUMA node 0 of a one-node machine must offer what MemAvailable says, within the
 * kernel's watermarks (not MemFree, which a checkpoint just copied to the machine leaves near 0); a
 * node that does not exist is an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsi_settings.h"
#include "dsi_test.h"

static uint64_t meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, strlen(key)) == 0 && sscanf(line + strlen(key), "%llu", &kb) == 1)
            break;
    }
    if (f != NULL)
        fclose(f);
    return (uint64_t)kb << 10;
}

/* Writes `bytes` to a file under dir (left in the page cache) and removes its name. */
static int fill_page_cache(const char *dir, uint64_t bytes)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/dsinfer-mem-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    static char buf[1 << 20];
    memset(buf, 0x5a, sizeof(buf));
    for (uint64_t done = 0; done < bytes; done += sizeof(buf)) {
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
            close(fd);
            return -1;
        }
    }
    return fd; /* kept open: the pages stay cached while the test reads the counters */
}

int main(void)
{
    uint64_t avail = 0;
    DSI_CHECK_INT_EQ(dsi_mem_available(-1, &avail), 0);
    DSI_CHECK(avail > 0);
    uint64_t none = 7;
    DSI_CHECK_INT_EQ(dsi_mem_available(1023, &none), -1);
    DSI_CHECK_INT_EQ(none, 7);

    if (access("/sys/devices/system/node/node0/meminfo", R_OK) != 0 ||
        access("/sys/devices/system/node/node1", F_OK) == 0) {
        printf(
            "SKIPPED (part): NUMA node 0 compared with MemAvailable only on one-node machines\n");
        return dsi_test_finish();
    }
    /* MemAvailable subtracts the low watermarks and reserves: a few hundred MiB at most. The
     * cached file is well above that tolerance, so counting MemFree alone fails. */
    uint64_t total = meminfo("MemTotal:");
    double tol = (double)(512u << 20) + 0.005 * (double)total;
    uint64_t cache = (1ull << 30) + total / 100;
    const char *dir = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    int fd = fill_page_cache(dir, cache);
    if (fd < 0) {
        printf("SKIPPED (part): cannot write %.1f GiB under %s\n", (double)cache / (1 << 30), dir);
        return dsi_test_finish();
    }
    uint64_t node = 0;
    DSI_CHECK_INT_EQ(dsi_mem_available(0, &node), 0);
    uint64_t machine = meminfo("MemAvailable:");
    printf("NUMA node 0 offers %.2f GiB, MemAvailable %.2f GiB, MemFree %.2f GiB\n",
           (double)node / (1 << 30), (double)machine / (1 << 30),
           (double)meminfo("MemFree:") / (1 << 30));
    DSI_CHECK_NEAR((double)node, (double)machine, tol);
    close(fd);
    return dsi_test_finish();
}
