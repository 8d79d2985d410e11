/* dst_msg_admin.c - the ADMIN request's HMAC proof (see dst_msg_admin.h). */
#include "dst_msg_admin.h"

#include <string.h>

#define ADMIN_LABEL "dsinfer-admin-v1"

void dst_msg_admin_auth(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                        uint32_t command, uint32_t arg, uint8_t auth[DST_MSG_AUTH_LEN])
{
    uint8_t data[sizeof(ADMIN_LABEL) + DST_MSG_NONCE_LEN + 8];
    size_t n = 0;
    memcpy(data, ADMIN_LABEL, sizeof(ADMIN_LABEL)); /* the label and its NUL separator */
    n += sizeof(ADMIN_LABEL);
    memcpy(data + n, nonce, DST_MSG_NONCE_LEN);
    n += DST_MSG_NONCE_LEN;
    for (int i = 3; i >= 0; i--)
        data[n++] = (uint8_t)(command >> (8 * i));
    for (int i = 3; i >= 0; i--)
        data[n++] = (uint8_t)(arg >> (8 * i));
    dst_hmac_sha256(secret->bytes, secret->len, data, n, auth);
}

int dst_msg_admin_verify(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                         const dst_msg_admin_t *m)
{
    uint8_t want[DST_MSG_AUTH_LEN];
    dst_msg_admin_auth(secret, nonce, m->command, m->arg, want);
    /* Constant time: the time taken must not tell how many leading bytes were right. */
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < DST_MSG_AUTH_LEN; i++)
        diff |= want[i] ^ m->auth[i];
    return diff == 0;
}

const char *dst_msg_admin_name(uint32_t command)
{
    switch (command) {
    case DST_ADMIN_STATUS:
        return "status";
    case DST_ADMIN_REBALANCE:
        return "rebalance";
    case DST_ADMIN_DRAIN:
        return "drain";
    case DST_ADMIN_CLIENT:
        return "client";
    default:
        return "unknown";
    }
}
