/*
 * dst_msg_admin.h - the proof an ADMIN request carries (docs/PROTOCOL.md, "ADMIN").
 *
 * Like REGISTER's proof (dst_secret.h), the secret never travels: on every connection the
 * coordinator sends HELLO{nonce}; an operator's client answers with
 *   ADMIN.auth = HMAC-SHA256(secret, "dsinfer-admin-v1" 0x00 || nonce || command (u32 BE) ||
 *                            arg (u32 BE)),
 * binding the proof to that connection and to the exact command, so a captured request can
 * neither be replayed on another connection nor turned into another command. A different label
 * from REGISTER's keeps a node's registration proof from ever passing as an admin proof.
 */
#ifndef DST_MSG_ADMIN_H
#define DST_MSG_ADMIN_H

#include <stdint.h>

#include "dst_msg.h"
#include "dst_secret.h"

/* The proof for (secret, nonce, command, arg). */
void dst_msg_admin_auth(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                        uint32_t command, uint32_t arg, uint8_t auth[DST_MSG_AUTH_LEN]);

/* 1 when m->auth is the proof of m's command and arg under (secret, nonce), compared in constant
 * time; else 0. */
int dst_msg_admin_verify(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                         const dst_msg_admin_t *m);

/* "status", "rebalance", "drain", or "unknown". */
const char *dst_msg_admin_name(uint32_t command);

#endif
