#include "dsi_test.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dsi_test_passed, dsi_test_failed;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

double dsi_check_floats_near(const char *what, const float *a, const float *b, int64_t n,
                             double tol)
{
    double worst = 0;
    int64_t worst_i = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst || d != d) {
            worst = d != d ? INFINITY : d;
            worst_i = i;
        }
    }
    if (worst <= tol) {
        dsi_test_passed++;
    } else {
        dsi_test_failed++;
        fprintf(stderr, "%s: max |diff| %.3g > %g at index %lld (%.9g vs %.9g)\n", what, worst, tol,
                (long long)worst_i, (double)a[worst_i], (double)b[worst_i]);
    }
    return worst;
}

const char *dsi_test_fixture(const char *sub)
{
    static char path[4096];
    const char *root = getenv("DSINFER_FIXTURES");
    if (root == NULL)
        root = "../shared/fixtures";
    snprintf(path, sizeof(path), "%s/%s", root, sub);
    struct stat st;
    if (stat(path, &st) == 0)
        return path;
    const char *ci = getenv("CI");
    if (ci != NULL && strcmp(ci, "true") == 0) {
        fprintf(stderr, "ERROR: fixture %s is missing and CI=true: failing\n", path);
        exit(1);
    }
    fprintf(stderr, "\n*** SKIPPED: fixture %s is missing (set -DDSINFER_FIXTURES=DIR) ***\n\n",
            path);
    exit(77);
}

const char *dsi_test_build_path(const char *sub)
{
    static char path[4096];
    const char *root = getenv("DSINFER_BUILD");
    snprintf(path, sizeof(path), "%s/%s", root ? root : ".", sub);
    return path;
}

char *dsi_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

const char *dsi_test_tmpdir(void)
{
    static char path[256];
    snprintf(path, sizeof(path), "/tmp/dsinfer-test-XXXXXX");
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void dsi_test_rmtree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void dsi_test_seed(uint64_t seed)
{
    rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint32_t dsi_test_randu(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

float dsi_test_randf(void)
{
    return (float)((dsi_test_randu() >> 8) * (1.0 / 8388608.0) * 2.0 - 1.0);
}

int dsi_test_finish(void)
{
    printf("%d passed, %d failed\n", dsi_test_passed, dsi_test_failed);
    return dsi_test_failed == 0 ? 0 : 1;
}
