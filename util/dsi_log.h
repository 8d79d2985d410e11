/*
 * dsi_log.h - level-checked logging with printf format checking.
 *
 * The level comes from DSINFER_LOG (error, warn, info, debug, trace; default info) the first time a
 * message is considered, or from dsi_log_set_level(). Messages go to stderr, one line each, with
 * the process tag set by dsi_log_set_tag() ("node 2", "coord"). kernels/ never logs.
 */
#ifndef DSI_LOG_H
#define DSI_LOG_H

typedef enum {
    DSI_LOG_LEVEL_ERROR = 0,
    DSI_LOG_LEVEL_WARN,
    DSI_LOG_LEVEL_INFO,
    DSI_LOG_LEVEL_DEBUG,
    DSI_LOG_LEVEL_TRACE,
} dsi_log_level_t;

dsi_log_level_t dsi_log_level(void);
void dsi_log_set_level(dsi_log_level_t level);
/* The tag is copied (at most 31 bytes). */
void dsi_log_set_tag(const char *tag);
void dsi_log_write(dsi_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define DSI_LOG(level, ...)                                          \
    do {                                                             \
        if ((level) <= dsi_log_level())                              \
            dsi_log_write((level), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define DSI_ERROR(...) DSI_LOG(DSI_LOG_LEVEL_ERROR, __VA_ARGS__)
#define DSI_WARN(...)  DSI_LOG(DSI_LOG_LEVEL_WARN, __VA_ARGS__)
#define DSI_INFO(...)  DSI_LOG(DSI_LOG_LEVEL_INFO, __VA_ARGS__)
#define DSI_DEBUG(...) DSI_LOG(DSI_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define DSI_TRACE(...) DSI_LOG(DSI_LOG_LEVEL_TRACE, __VA_ARGS__)

#endif
