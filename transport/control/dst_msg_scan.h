/*
 * dst_msg_scan.h - bounds check of raw msgpack bytes before unpacking (see dst_msg_scan.c).
 */
#ifndef DST_MSG_SCAN_H
#define DST_MSG_SCAN_H

#include <stddef.h>

#include "dsi_status.h"

/* DSI_OK when buf[len] is exactly one well-formed msgpack object within the nesting limit and
 * with no container claiming more elements than bytes remain; else DSI_ERR_PROTOCOL and err. */
dsi_status_t dst_msg_scan(const char *buf, size_t len, char *err, size_t errlen);

#endif
