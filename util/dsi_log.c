#include "dsi_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsi_settings.h"

/* -1 until read from the environment; atomic so that threads may log concurrently. */
static atomic_int log_level = -1;
static char log_tag[32] = "dsinfer";

static int level_from_env(void)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    const char *env = dsi_env("DSINFER_LOG");
    if (env != NULL) {
        for (int i = 0; i < 5; i++) {
            if (strcmp(env, names[i]) == 0)
                return i;
        }
    }
    return DSI_LOG_LEVEL_INFO;
}

dsi_log_level_t dsi_log_level(void)
{
    int level = atomic_load_explicit(&log_level, memory_order_relaxed);
    if (level < 0) {
        level = level_from_env();
        atomic_store(&log_level, level);
    }
    return (dsi_log_level_t)level;
}

void dsi_log_set_level(dsi_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

void dsi_log_set_tag(const char *tag)
{
    snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

void dsi_log_write(dsi_log_level_t level, const char *file, int line, const char *fmt, ...)
{
    static const char *labels[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    const char *base = strrchr(file, '/');
    /* One fprintf per line keeps lines of concurrent threads whole. */
    fprintf(stderr, "%02d:%02d:%02d.%03ld [%s] %-5s %s:%d %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, log_tag, labels[level], base ? base + 1 : file, line, msg);
}
