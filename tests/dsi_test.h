/*
 * dsi_test.h - typed assertions and fixture lookup for dsinfer's test programs.
 *
 * A failed check prints both values with file and line, counts the failure and goes on; a test's
 * main returns dsi_test_finish(), which prints "N passed, N failed" and gives the exit code.
 * Exit 77 means skipped (ctest SKIP_RETURN_CODE).
 */
#ifndef DSI_TEST_H
#define DSI_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern int dsi_test_passed, dsi_test_failed;

#define DSI_CHECK(cond)                                                              \
    do {                                                                             \
        if (cond) {                                                                  \
            dsi_test_passed++;                                                       \
        } else {                                                                     \
            dsi_test_failed++;                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define DSI_CHECK_INT_EQ(a, b)                                                                    \
    do {                                                                                          \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                     \
        if (va_ == vb_) {                                                                         \
            dsi_test_passed++;                                                                    \
        } else {                                                                                  \
            dsi_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, \
                    va_, vb_);                                                                    \
        }                                                                                         \
    } while (0)

#define DSI_CHECK_NEAR(a, b, tol)                                                                  \
    do {                                                                                           \
        double va_ = (double)(a), vb_ = (double)(b);                                               \
        if (fabs(va_ - vb_) <= (tol)) {                                                            \
            dsi_test_passed++;                                                                     \
        } else {                                                                                   \
            dsi_test_failed++;                                                                     \
            fprintf(stderr, "%s:%d: |%s - %s| <= %g failed: %.9g vs %.9g (diff %.3g)\n", __FILE__, \
                    __LINE__, #a, #b, (double)(tol), va_, vb_, fabs(va_ - vb_));                   \
        }                                                                                          \
    } while (0)

#define DSI_CHECK_STR_EQ(a, b)                                                                    \
    do {                                                                                          \
        const char *sa_ = (a), *sb_ = (b);                                                        \
        if (sa_ != NULL && sb_ != NULL && strcmp(sa_, sb_) == 0) {                                \
            dsi_test_passed++;                                                                    \
        } else {                                                                                  \
            dsi_test_failed++;                                                                    \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, \
                    #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                              \
        }                                                                                         \
    } while (0)

/*
 * Largest |a[i] - b[i]| over n floats; checks it is <= tol and prints the worst index otherwise.
 * Returns the maximum difference.
 */
double dsi_check_floats_near(const char *what, const float *a, const float *b, int64_t n,
                             double tol);

/*
 * The fixture directory joined with `sub` ("tiny-v3"), in a static buffer. When it does not
 * exist: prints a loud SKIPPED message and exits 77, or under CI=true prints an error and exits 1.
 */
const char *dsi_test_fixture(const char *sub);
/* The build directory (DSINFER_BUILD) joined with `sub`, in a static buffer. */
const char *dsi_test_build_path(const char *sub);
/* The whole file, NUL-terminated (len without the NUL), or NULL when it cannot be read; free(). */
char *dsi_test_read_file(const char *path, size_t *len);
/* A fresh temporary directory (mkdtemp) in a static buffer; removed by dsi_test_rmtree(). */
const char *dsi_test_tmpdir(void);
void dsi_test_rmtree(const char *dir);

/* Deterministic xorshift random floats in [-1, 1). */
void dsi_test_seed(uint64_t seed);
float dsi_test_randf(void);
uint32_t dsi_test_randu(void);

/* Prints "N passed, N failed" and returns the exit code (0 if nothing failed). */
int dsi_test_finish(void);

#endif
