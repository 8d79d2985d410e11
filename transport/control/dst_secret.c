/*
 * dst_secret.c - loading the shared secret, nonces, and the HMAC-SHA256 REGISTER proof.
 * SHA-256 is written out here (FIPS 180-4) because no crypto library is among our dependencies.
 */
#include "dst_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsi_log.h"
#include "dsi_settings.h"

typedef struct {
    uint32_t h[8];
    uint64_t bytes;    /* total length so far */
    uint8_t block[64]; /* partial block */
    size_t used;
} sha256_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void sha256_block(sha256_t *s, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
    s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(sha256_t *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof(h0));
    s->bytes = 0;
    s->used = 0;
}

static void sha256_update(sha256_t *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->bytes += len;
    while (len > 0) {
        size_t take = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->block + s->used, p, take);
        s->used += take, p += take, len -= take;
        if (s->used == 64) {
            sha256_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha256_final(sha256_t *s, uint8_t digest[32])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(s, &pad, 1);
    while (s->used != 56)
        sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void dst_sha256(const void *data, size_t len, uint8_t digest[32])
{
    sha256_t s;
    sha256_init(&s);
    sha256_update(&s, data, len);
    sha256_final(&s, digest);
}

/* HMAC over the concatenation of n parts, so callers need not build one buffer. */
static void hmac_parts(const void *key, size_t keylen, const void *const *parts, const size_t *lens,
                       int n, uint8_t mac[32])
{
    uint8_t k[64] = {0}, pad[64], inner[32];
    if (keylen > 64)
        dst_sha256(key, keylen, k);
    else
        memcpy(k, key, keylen);
    sha256_t s;
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    sha256_init(&s);
    sha256_update(&s, pad, 64);
    for (int i = 0; i < n; i++)
        sha256_update(&s, parts[i], lens[i]);
    sha256_final(&s, inner);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    sha256_init(&s);
    sha256_update(&s, pad, 64);
    sha256_update(&s, inner, 32);
    sha256_final(&s, mac);
}

void dst_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t mac[32])
{
    const void *parts[1] = {data};
    hmac_parts(key, keylen, parts, &len, 1, mac);
}

void dst_secret_register_auth(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                              const char *name, uint8_t auth[DST_MSG_AUTH_LEN])
{
    static const char label[] = "dsinfer-register-v1"; /* sizeof includes the 0x00 separator */
    const void *parts[3] = {label, nonce, name};
    size_t lens[3] = {sizeof(label), DST_MSG_NONCE_LEN, strlen(name)};
    hmac_parts(secret->bytes, secret->len, parts, lens, 3, auth);
}

int dst_secret_register_verify(const dst_secret_t *secret, const uint8_t nonce[DST_MSG_NONCE_LEN],
                               const char *name, const uint8_t auth[DST_MSG_AUTH_LEN])
{
    uint8_t want[DST_MSG_AUTH_LEN];
    dst_secret_register_auth(secret, nonce, name, want);
    /* Constant time: the time taken must not tell how many leading bytes were right. */
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < DST_MSG_AUTH_LEN; i++)
        diff |= want[i] ^ auth[i];
    return diff == 0;
}

dsi_status_t dst_secret_nonce(uint8_t nonce[DST_MSG_NONCE_LEN])
{
    size_t got = 0;
    while (got < DST_MSG_NONCE_LEN) {
        ssize_t n = getrandom(nonce + got, DST_MSG_NONCE_LEN - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            DSI_ERROR("getrandom for a HELLO nonce failed: %m");
            return DSI_ERR_IO;
        }
        got += (size_t)n;
    }
    return DSI_OK;
}

static dsi_status_t secret_set(dst_secret_t *out, const uint8_t *b, size_t n, const char *src)
{
    if (n > 0 && b[n - 1] == '\n')
        n--;
    if (n < DST_SECRET_MIN || n > DST_SECRET_MAX) {
        DSI_ERROR("secret from %s: %zu bytes, %d..%d required", src, n, DST_SECRET_MIN,
                  DST_SECRET_MAX);
        return DSI_ERR_AUTH;
    }
    memcpy(out->bytes, b, n);
    out->len = n;
    return DSI_OK;
}

static dsi_status_t secret_from_file(const char *file, dst_secret_t *out)
{
    uint8_t buf[DST_SECRET_MAX + 2];
    dsi_status_t st = DSI_ERR_IO;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        DSI_ERROR("secret file %s: %m", file);
        return DSI_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        DSI_ERROR("secret file %s: fstat: %m", file);
        goto out_fd;
    }
    if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0) {
        DSI_ERROR("secret file %s: must be a regular file readable by its owner only (chmod 600)",
                  file);
        st = DSI_ERR_AUTH;
        goto out_fd;
    }
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            DSI_ERROR("secret file %s: read: %m", file);
            goto out_fd;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    st = secret_set(out, buf, n, file);
out_fd:
    memset(buf, 0, sizeof(buf));
    close(fd);
    return st;
}

dsi_status_t dst_secret_load(const char *file, dst_secret_t *out)
{
    if (file != NULL)
        return secret_from_file(file, out);
    const char *env = dsi_env(DST_SECRET_ENV);
    if (env == NULL || env[0] == 0) {
        DSI_ERROR("no shared secret: give a secret file or set %s", DST_SECRET_ENV);
        return DSI_ERR_NOT_FOUND;
    }
    return secret_set(out, (const uint8_t *)env, strlen(env), DST_SECRET_ENV);
}
