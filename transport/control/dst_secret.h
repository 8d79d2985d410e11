/*
 * dst_secret.h - the cluster's shared secret and the REGISTER proof built from it.
 *
 * The secret never travels: the coordinator sends a fresh random nonce in HELLO, the node answers
 * REGISTER.auth = HMAC-SHA256(secret, "dsinfer-register-v1" 0x00 nonce name), and the coordinator
 * recomputes it and compares in constant time. Binding the node name stops a captured proof from
 * being replayed under another name; the per-connection nonce stops it from being replayed at all.
 */
#ifndef DST_SECRET_H
#define DST_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"
#include "dst_msg.h"

#define DST_SECRET_MIN 16   /* bytes; shorter secrets are refused */
#define DST_SECRET_MAX 1024 /* bytes */
#define DST_SECRET_ENV "DSINFER_SECRET"

typedef struct {
    uint8_t bytes[DST_SECRET_MAX];
    size_t len; /* DST_SECRET_MIN..DST_SECRET_MAX */
} dst_secret_t;

/*
 * Loads the secret from `file` when non-NULL (whole file, one trailing newline dropped; a file
 * readable by group or others is refused), else from the environment variable DSINFER_SECRET.
 * DSI_ERR_NOT_FOUND when neither is given, DSI_ERR_IO, DSI_ERR_AUTH (too short / too long /
 * unsafe permissions). Logs the cause.
 */
dsi_status_t dst_secret_load(const char *file, dst_secret_t *out);

/* Fills `nonce` with DST_MSG_NONCE_LEN bytes from the kernel's CSPRNG. */
dsi_status_t dst_secret_nonce(uint8_t nonce[DST_MSG_NONCE_LEN]);

/* The REGISTER proof for `name` (NUL-terminated) answering `nonce`. */
void dst_secret_register_auth(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                              const char *name, uint8_t auth[DST_MSG_AUTH_LEN]);

/* 1 when `auth` is the proof for (secret, nonce, name), compared in constant time; else 0. */
int dst_secret_register_verify(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                               const char *name, const uint8_t auth[DST_MSG_AUTH_LEN]);

/* SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), exposed for tests. */
void dst_sha256(const void *data, size_t len, uint8_t digest[32]);
void dst_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t mac[32]);

#endif
