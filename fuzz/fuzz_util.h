/*
 * fuzz_util.h - helpers shared by the libFuzzer harnesses of this folder.
 *
 * A harness aborts (FUZZ_CHECK) only when the code under test broke one of its own documented
 * contracts on an input it accepted; inputs it refuses are the normal case and return quietly.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The report goes where the sanitizers' reports go: fuzz/run.sh closes the harness's stderr
 * (-close_fd_mask=2) to drop the library's log lines, and libFuzzer then moves the reports to a
 * copy of it. */
void __sanitizer_report_error_summary(const char *error_summary);

#define FUZZ_STR2(x) #x
#define FUZZ_STR(x)  FUZZ_STR2(x)
#define FUZZ_CHECK(cond)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            __sanitizer_report_error_summary("FUZZ_CHECK failed at " __FILE__    \
                                             ":" FUZZ_STR(__LINE__) ": " #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* A line of context before a FUZZ_CHECK fails, on the same channel as the report. */
__attribute__((format(printf, 1, 2))) static inline void fuzz_note(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    __sanitizer_report_error_summary(line);
}

/* The fixtures directory: $DSINFER_FIXTURES, else the one the build was configured with. */
static inline const char *fuzz_fixtures(void)
{
    const char *env = getenv("DSINFER_FIXTURES");
    return env != NULL && env[0] != '\0' ? env : DSINFER_FIXTURES_DEFAULT;
}

/*
 * A fixture the harness needs is missing: skip (exit 77, which ctest reports as skipped), as the
 * test suite does, except under CI=true, where a missing fixture is a failure.
 */
static inline void fuzz_fixture_missing(const char *harness, const char *path)
{
    const char *ci = getenv("CI");
    int fail = ci != NULL && ci[0] != '\0' && ci[0] != '0';
    fprintf(stderr, "%s: cannot load %s (set DSINFER_FIXTURES): %s\n", harness, path,
            fail ? "failing (CI)" : "skipped");
    exit(fail ? 1 : 77);
}

/* Reads every byte of [p, p + n) so that ASan sees any read past a buffer the code handed out. */
static inline uint8_t fuzz_touch(const void *p, size_t n)
{
    const volatile uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= b[i];
    return x;
}

#endif
