/*
 * dst_msg_read.c - typed, range-checked field access on an unpacked msgpack map. Every getter
 * names the field in its error ("PLAN.nodes[3].stage: expected uint, got str").
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dst_msg_impl.h"

static const char *obj_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "?";
}

dsi_status_t dst_msg_rd_open(dst_msg_rd_t *rd, const msgpack_object *obj, uint32_t max_fields,
                             const char *where, dst_msg_t *msg, char *err, size_t errlen)
{
    if (obj->type != MSGPACK_OBJECT_MAP) {
        dst_msg_errf(err, errlen, "%s: expected map, got %s", where, obj_type_name(obj->type));
        return DSI_ERR_PROTOCOL;
    }
    if (obj->via.map.size > max_fields || max_fields > 32) {
        dst_msg_errf(err, errlen, "%s: %u fields, at most %u expected", where,
                     (unsigned)obj->via.map.size, (unsigned)max_fields);
        return DSI_ERR_PROTOCOL;
    }
    rd->kv = obj->via.map.ptr;
    rd->n = obj->via.map.size;
    rd->matched = 0;
    snprintf(rd->where, sizeof(rd->where), "%s", where);
    rd->msg = msg;
    rd->err = err;
    rd->errlen = errlen;
    return DSI_OK;
}

static int key_is(const msgpack_object *k, const char *key, size_t keylen)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == keylen &&
           memcmp(k->via.str.ptr, key, keylen) == 0;
}

dsi_status_t dst_msg_rd_end(dst_msg_rd_t *rd)
{
    for (uint32_t i = 0; i < rd->n; i++) {
        if (rd->matched & (1u << i))
            continue;
        const msgpack_object *k = &rd->kv[i].key;
        if (k->type != MSGPACK_OBJECT_STR) {
            dst_msg_errf(rd->err, rd->errlen, "%s: a key is a %s, keys must be str", rd->where,
                         obj_type_name(k->type));
            return DSI_ERR_PROTOCOL;
        }
        char q[40];
        dst_msg_text_quote(k->via.str.ptr, k->via.str.size, q, sizeof(q));
        for (uint32_t j = 0; j < i; j++) {
            if (key_is(&rd->kv[j].key, k->via.str.ptr, k->via.str.size)) {
                dst_msg_errf(rd->err, rd->errlen, "%s: duplicate field '%s'", rd->where, q);
                return DSI_ERR_PROTOCOL;
            }
        }
        dst_msg_errf(rd->err, rd->errlen, "%s: unknown field '%s'", rd->where, q);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

/* The value of `key` (first occurrence), marked consumed; NULL with an error when missing. */
static const msgpack_object *rd_get(dst_msg_rd_t *rd, const char *key)
{
    size_t keylen = strlen(key);
    for (uint32_t i = 0; i < rd->n; i++) {
        if (key_is(&rd->kv[i].key, key, keylen)) {
            rd->matched |= 1u << i;
            return &rd->kv[i].val;
        }
    }
    dst_msg_errf(rd->err, rd->errlen, "%s: missing field '%s'", rd->where, key);
    return NULL;
}

const msgpack_object *dst_msg_rd_opt(dst_msg_rd_t *rd, const char *key)
{
    size_t keylen = strlen(key);
    for (uint32_t i = 0; i < rd->n; i++) {
        if (key_is(&rd->kv[i].key, key, keylen)) {
            rd->matched |= 1u << i;
            return &rd->kv[i].val;
        }
    }
    return NULL;
}

static dsi_status_t type_error(dst_msg_rd_t *rd, const char *key, const char *want,
                               const msgpack_object *v)
{
    dst_msg_errf(rd->err, rd->errlen, "%s.%s: expected %s, got %s", rd->where, key, want,
                 obj_type_name(v->type));
    return DSI_ERR_PROTOCOL;
}

dsi_status_t dst_msg_rd_u64(dst_msg_rd_t *rd, const char *key, uint64_t max, uint64_t *out)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return type_error(rd, key, "uint", v);
    if (v->via.u64 > max) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: %llu out of range 0..%llu", rd->where, key,
                     (unsigned long long)v->via.u64, (unsigned long long)max);
        return DSI_ERR_PROTOCOL;
    }
    *out = v->via.u64;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_u64_opt(dst_msg_rd_t *rd, const char *key, uint64_t max, uint64_t dflt,
                               uint64_t *out)
{
    size_t keylen = strlen(key);
    for (uint32_t i = 0; i < rd->n; i++) {
        if (key_is(&rd->kv[i].key, key, keylen))
            return dst_msg_rd_u64(rd, key, max, out);
    }
    *out = dflt;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_u32(dst_msg_rd_t *rd, const char *key, uint32_t max, uint32_t *out)
{
    uint64_t v;
    dsi_status_t st = dst_msg_rd_u64(rd, key, max, &v);
    if (st == DSI_OK)
        *out = (uint32_t)v;
    return st;
}

dsi_status_t dst_msg_rd_i32(dst_msg_rd_t *rd, const char *key, int32_t *out)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    int64_t x;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        x = v->via.i64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX)
        x = (int64_t)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        x = INT64_MAX;
    else
        return type_error(rd, key, "int", v);
    if (x < INT32_MIN || x > INT32_MAX) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: out of the int32 range", rd->where, key);
        return DSI_ERR_PROTOCOL;
    }
    *out = (int32_t)x;
    return DSI_OK;
}

/* A msgpack number as a float32 of magnitude <= limit: 0, or -1 when not a number, -2 when not
 * finite or out of range. */
static int obj_f32(const msgpack_object *v, double limit, float *out)
{
    double x;
    /* Float32 and float64 both arrive in f64; an encoder may also write 1.0 as the integer 1. */
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        x = v->via.f64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        x = (double)v->via.u64;
    else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        x = (double)v->via.i64;
    else
        return -1;
    if (!isfinite(x) || fabs(x) > limit)
        return -2;
    *out = (float)x;
    return 0;
}

dsi_status_t dst_msg_rd_f32(dst_msg_rd_t *rd, const char *key, float *out)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    int rc = obj_f32(v, 3.0e38, out);
    if (rc == -1)
        return type_error(rd, key, "float", v);
    if (rc == -2) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: not a finite float32", rd->where, key);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

dsi_status_t dst_msg_rd_f32_array(dst_msg_rd_t *rd, const char *key, uint32_t max, float **out,
                                  uint32_t *n)
{
    const msgpack_object *items;
    uint32_t count;
    dsi_status_t st = dst_msg_rd_array(rd, key, max, &items, &count);
    if (st != DSI_OK)
        return st;
    float *vals = dst_msg_arena_alloc(rd->msg, (size_t)count * sizeof(float));
    if (vals == NULL && count > 0) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: out of memory", rd->where, key);
        return DSI_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        /* Every finite float32 (what the encoder's check accepts) round-trips. */
        int rc = obj_f32(&items[i], FLT_MAX, &vals[i]);
        if (rc != 0) {
            dst_msg_errf(rd->err, rd->errlen, "%s.%s[%u]: %s", rd->where, key, (unsigned)i,
                         rc == -1 ? "expected float" : "not a finite float32");
            return DSI_ERR_PROTOCOL;
        }
    }
    *out = vals;
    *n = count;
    return DSI_OK;
}

/* The string `key`: present, a str, shorter than cap (else `oversize`), without NUL bytes. */
static dsi_status_t rd_str_checked(dst_msg_rd_t *rd, const char *key, size_t cap,
                                   dsi_status_t oversize, const msgpack_object **out)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    if (v->type != MSGPACK_OBJECT_STR)
        return type_error(rd, key, "str", v);
    size_t n = v->via.str.size;
    if (n >= cap) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: %zu bytes, at most %zu allowed", rd->where, key,
                     n, cap - 1);
        return oversize;
    }
    if (n > 0 && memchr(v->via.str.ptr, 0, n) != NULL) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: contains a NUL byte", rd->where, key);
        return DSI_ERR_PROTOCOL;
    }
    *out = v;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_str(dst_msg_rd_t *rd, const char *key, char *dst, size_t cap)
{
    const msgpack_object *v;
    dsi_status_t st = rd_str_checked(rd, key, cap, DSI_ERR_PROTOCOL, &v);
    if (st != DSI_OK)
        return st;
    size_t n = v->via.str.size;
    if (n > 0)
        memcpy(dst, v->via.str.ptr, n);
    dst[n] = 0;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_str_alloc(dst_msg_rd_t *rd, const char *key, size_t cap, char **out)
{
    const msgpack_object *v;
    dsi_status_t st = rd_str_checked(rd, key, cap, DSI_ERR_TOO_LARGE, &v);
    if (st != DSI_OK)
        return st;
    size_t n = v->via.str.size;
    char *p = dst_msg_arena_alloc(rd->msg, n + 1);
    if (p == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: out of memory", rd->where, key);
        return DSI_ERR_NOMEM;
    }
    if (n > 0)
        memcpy(p, v->via.str.ptr, n);
    p[n] = 0;
    *out = p;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_bin(dst_msg_rd_t *rd, const char *key, size_t max, uint8_t **out,
                            size_t *len)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    if (v->type != MSGPACK_OBJECT_BIN)
        return type_error(rd, key, "bin", v);
    size_t n = v->via.bin.size;
    if (n == 0 || n > max) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: %zu bytes, 1..%zu allowed", rd->where, key, n,
                     max);
        return n == 0 ? DSI_ERR_PROTOCOL : DSI_ERR_TOO_LARGE;
    }
    uint8_t *p = dst_msg_arena_alloc(rd->msg, n);
    if (p == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: out of memory", rd->where, key);
        return DSI_ERR_NOMEM;
    }
    memcpy(p, v->via.bin.ptr, n);
    *out = p;
    *len = n;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_bin_fixed(dst_msg_rd_t *rd, const char *key, uint8_t *dst, size_t n)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    if (v->type != MSGPACK_OBJECT_BIN)
        return type_error(rd, key, "bin", v);
    if (v->via.bin.size != n) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: %u bytes, exactly %zu required", rd->where, key,
                     (unsigned)v->via.bin.size, n);
        return DSI_ERR_PROTOCOL;
    }
    memcpy(dst, v->via.bin.ptr, n);
    return DSI_OK;
}

dsi_status_t dst_msg_rd_array(dst_msg_rd_t *rd, const char *key, uint32_t max,
                              const msgpack_object **items, uint32_t *n)
{
    const msgpack_object *v = rd_get(rd, key);
    if (v == NULL)
        return DSI_ERR_PROTOCOL;
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return type_error(rd, key, "array", v);
    if (v->via.array.size > max) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: %u items, at most %u allowed", rd->where, key,
                     (unsigned)v->via.array.size, (unsigned)max);
        return DSI_ERR_TOO_LARGE;
    }
    *items = v->via.array.ptr;
    *n = v->via.array.size;
    return DSI_OK;
}

dsi_status_t dst_msg_rd_u32_array(dst_msg_rd_t *rd, const char *key, uint32_t max, uint32_t vmax,
                                  uint32_t **out, uint32_t *n)
{
    const msgpack_object *items;
    uint32_t count;
    dsi_status_t st = dst_msg_rd_array(rd, key, max, &items, &count);
    if (st != DSI_OK)
        return st;
    uint32_t *vals = dst_msg_arena_alloc(rd->msg, (size_t)count * sizeof(uint32_t));
    if (vals == NULL && count > 0) {
        dst_msg_errf(rd->err, rd->errlen, "%s.%s: out of memory", rd->where, key);
        return DSI_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (items[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            dst_msg_errf(rd->err, rd->errlen, "%s.%s[%u]: expected uint, got %s", rd->where, key,
                         (unsigned)i, obj_type_name(items[i].type));
            return DSI_ERR_PROTOCOL;
        }
        if (items[i].via.u64 > vmax) {
            dst_msg_errf(rd->err, rd->errlen, "%s.%s[%u]: %llu out of range 0..%u", rd->where, key,
                         (unsigned)i, (unsigned long long)items[i].via.u64, (unsigned)vmax);
            return DSI_ERR_PROTOCOL;
        }
        vals[i] = (uint32_t)items[i].via.u64;
    }
    *out = vals;
    *n = count;
    return DSI_OK;
}
