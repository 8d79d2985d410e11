/*
 * dst_ctrl_frame.c - the 8-byte frame header: "DSC", version, big-endian body length.
 */
#include <stdio.h>
#include <string.h>

#include "dst_ctrl_impl.h"

void dst_ctrl_frame_header(uint8_t hdr[DST_CTRL_HEADER_LEN], uint32_t len)
{
    memcpy(hdr, DST_CTRL_MAGIC, 3);
    hdr[3] = DST_CTRL_FRAME_VERSION;
    hdr[4] = (uint8_t)(len >> 24);
    hdr[5] = (uint8_t)(len >> 16);
    hdr[6] = (uint8_t)(len >> 8);
    hdr[7] = (uint8_t)len;
}

dsi_status_t dst_ctrl_frame_parse(const uint8_t hdr[DST_CTRL_HEADER_LEN], size_t max_frame,
                                  uint32_t *len, char *err, size_t errlen)
{
    if (memcmp(hdr, DST_CTRL_MAGIC, 3) != 0) {
        snprintf(err, errlen, "bad magic %02x %02x %02x (not a dsinfer control connection)", hdr[0],
                 hdr[1], hdr[2]);
        return DSI_ERR_PROTOCOL;
    }
    if (hdr[3] != DST_CTRL_FRAME_VERSION) {
        snprintf(err, errlen, "frame version %u, this build speaks %d", hdr[3],
                 DST_CTRL_FRAME_VERSION);
        return DSI_ERR_UNSUPPORTED;
    }
    uint32_t n = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 | hdr[7];
    if (n > max_frame) {
        snprintf(err, errlen, "frame of %u bytes over the limit of %zu", (unsigned)n, max_frame);
        return DSI_ERR_TOO_LARGE;
    }
    *len = n;
    return DSI_OK;
}
