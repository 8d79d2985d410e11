/*
 * dsi_status.h - the one status type of dsinfer.
 *
 * 0 is success, negative values are errors. Ranges group errors by what failed so that recovery
 * code can act on the range: request/input (-1..-99), file/checkpoint (-100..-199), peer/link
 * (-200..-299), node/resource (-300..-399).
 */
#ifndef DSI_STATUS_H
#define DSI_STATUS_H

#define DSI_STATUS_MAP(X)                                         \
    X(DSI_OK, 0, "ok")                                            \
    X(DSI_ERR_INVALID_ARG, -1, "invalid argument")                \
    X(DSI_ERR_BAD_REQUEST, -2, "bad request")                     \
    X(DSI_ERR_TOO_LARGE, -3, "too large")                         \
    X(DSI_ERR_NOT_FOUND, -4, "not found")                         \
    X(DSI_ERR_UNSUPPORTED, -5, "unsupported")                     \
    X(DSI_ERR_CANCELLED, -6, "cancelled")                         \
    X(DSI_ERR_BAD_UTF8, -7, "invalid UTF-8")                      \
    X(DSI_ERR_IO, -100, "I/O error")                              \
    X(DSI_ERR_FORMAT, -101, "malformed file")                     \
    X(DSI_ERR_CONFIG, -102, "invalid model configuration")        \
    X(DSI_ERR_MISSING_TENSOR, -103, "missing tensor")             \
    X(DSI_ERR_BAD_TENSOR, -104, "tensor of wrong shape or dtype") \
    X(DSI_ERR_PEER, -200, "peer error")                           \
    X(DSI_ERR_PROTOCOL, -201, "protocol error")                   \
    X(DSI_ERR_TIMEOUT, -202, "timed out")                         \
    X(DSI_ERR_CONNECTION, -203, "connection failed")              \
    X(DSI_ERR_AUTH, -204, "authentication failed")                \
    X(DSI_ERR_NOMEM, -300, "out of memory")                       \
    X(DSI_ERR_CAPACITY, -301, "over capacity")                    \
    X(DSI_ERR_INTERNAL, -302, "internal error")

typedef enum {
#define DSI_STATUS_ENUM(name, value, text) name = value,
    DSI_STATUS_MAP(DSI_STATUS_ENUM)
#undef DSI_STATUS_ENUM
} dsi_status_t;

/* Static string naming the status ("DSI_ERR_IO"); "DSI_ERR_UNKNOWN" for values outside the table.
 */
const char *dsi_status_name(dsi_status_t status);
/* Static human-readable message ("I/O error"). */
const char *dsi_status_message(dsi_status_t status);

#define DSI_IS_REQUEST_ERROR(s) ((s) < 0 && (s) > -100)
#define DSI_IS_FILE_ERROR(s)    ((s) <= -100 && (s) > -200)
#define DSI_IS_PEER_ERROR(s)    ((s) <= -200 && (s) > -300)
#define DSI_IS_NODE_ERROR(s)    ((s) <= -300 && (s) > -400)

#endif
