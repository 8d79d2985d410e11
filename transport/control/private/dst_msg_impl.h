/*
 * dst_msg_impl.h - helpers shared by the dst_msg_*.c files; not part of the public API.
 */
#ifndef DST_MSG_IMPL_H
#define DST_MSG_IMPL_H

#include <stdarg.h>
#include <stddef.h>

#include <msgpack.h>

#include "dst_msg.h"

/* Zeroed memory of `size` bytes owned by msg's arena (freed by dst_msg_free); NULL on OOM.
 * size 0 gives NULL without error: callers treat empty arrays as NULL. */
void *dst_msg_arena_alloc(dst_msg_t *msg, size_t size);

/* printf into err[errlen] (no-op when err is NULL or errlen is 0). */
void dst_msg_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when s is valid UTF-8 without control characters (C0, DEL); else 0. */
int dst_msg_text_ok(const char *s);
/* Rewrites s in place so that dst_msg_text_ok(s) holds: invalid bytes and controls become '?'. */
void dst_msg_text_sanitize(char *s);
/* Copies at most n bytes of untrusted p into dst[cap] as printable ASCII, for error messages. */
void dst_msg_text_quote(const char *p, size_t n, char *dst, size_t cap);

/*
 * A reader over one msgpack map: every field is looked up by name, type- and range-checked, and
 * counted, so that dst_msg_rd_end can refuse unknown or duplicate keys.
 */
typedef struct {
    const msgpack_object_kv *kv; /* [n] */
    uint32_t n;
    uint32_t matched; /* bit i: kv[i] was consumed (maps have at most 32 entries here) */
    char where[96];   /* "PLAN.nodes[3]" for messages */
    dst_msg_t *msg;   /* arena owner */
    char *err;
    size_t errlen;
} dst_msg_rd_t;

/* Opens obj as a map of at most max_fields (<= 32) entries; where is copied. */
dsi_status_t dst_msg_rd_open(dst_msg_rd_t *rd, const msgpack_object *obj, uint32_t max_fields,
                             const char *where, dst_msg_t *msg, char *err, size_t errlen);
/* The value of an optional field (marked consumed), or NULL when absent. */
const msgpack_object *dst_msg_rd_opt(dst_msg_rd_t *rd, const char *key);
/* Fails on the first entry no getter consumed (unknown or duplicate key). */
dsi_status_t dst_msg_rd_end(dst_msg_rd_t *rd);

dsi_status_t dst_msg_rd_u64(dst_msg_rd_t *rd, const char *key, uint64_t max, uint64_t *out);
/* An optional field: *out = dflt when the message lacks it (added fields stay compatible). */
dsi_status_t dst_msg_rd_u64_opt(dst_msg_rd_t *rd, const char *key, uint64_t max, uint64_t dflt,
                               uint64_t *out);
dsi_status_t dst_msg_rd_u32(dst_msg_rd_t *rd, const char *key, uint32_t max, uint32_t *out);
dsi_status_t dst_msg_rd_i32(dst_msg_rd_t *rd, const char *key, int32_t *out);
dsi_status_t dst_msg_rd_f32(dst_msg_rd_t *rd, const char *key, float *out);
/* A str that fits cap with its NUL and has no NUL inside. */
dsi_status_t dst_msg_rd_str(dst_msg_rd_t *rd, const char *key, char *dst, size_t cap);
/* A str of fewer than cap bytes without NUL, copied NUL-terminated into the arena. */
dsi_status_t dst_msg_rd_str_alloc(dst_msg_rd_t *rd, const char *key, size_t cap, char **out);
/* A bin of 1..max bytes, copied into the arena. */
dsi_status_t dst_msg_rd_bin(dst_msg_rd_t *rd, const char *key, size_t max, uint8_t **out,
                            size_t *len);
/* A bin of exactly n bytes, copied into dst. */
dsi_status_t dst_msg_rd_bin_fixed(dst_msg_rd_t *rd, const char *key, uint8_t *dst, size_t n);
/* An array of at most max items; items points into the unpacked object (not copied). */
dsi_status_t dst_msg_rd_array(dst_msg_rd_t *rd, const char *key, uint32_t max,
                              const msgpack_object **items, uint32_t *n);
/* An array of at most max unsigned integers <= vmax, copied into the arena (NULL when empty). */
dsi_status_t dst_msg_rd_u32_array(dst_msg_rd_t *rd, const char *key, uint32_t max, uint32_t vmax,
                                  uint32_t **out, uint32_t *n);

/* An array of at most max finite float32 values (float or integer items), copied into the arena
 * (NULL when empty). */
dsi_status_t dst_msg_rd_f32_array(dst_msg_rd_t *rd, const char *key, uint32_t max, float **out,
                                  uint32_t *n);

/* Number of fields (besides "type" and "v") of a message type; 0 for unknown types. */
uint32_t dst_msg_nfields(uint32_t type);

/* Plan codec (dst_msg_plan.c). */
int dst_msg_plan_pack(msgpack_packer *pk, const dst_plan_t *plan);
dsi_status_t dst_msg_plan_read(dst_msg_rd_t *rd, dst_plan_t *plan);

/* "host:port" / "[v6]:port" syntax with a port 1..65535, or "" (dst_msg_check.c). */
int dst_msg_addr_ok(const char *addr);

#endif
