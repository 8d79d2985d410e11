/*
 * dsg_schema.c - a JSON Schema as grammar text. Every (sub)schema becomes one rule
 * <prefix>s<N>; $ref targets are generated once (so recursive schemas are recursive rules).
 * Objects list their properties in schema order, each optional one may be left out, and (as in
 * OpenAI's strict mode) no other property is generated. Keywords outside the supported set are
 * an error naming them: the caller answers 400 rather than generate output that might not
 * validate.
 */
#include "dsg_schema_impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    char *ref;
    int rule;
} def_t;

typedef struct {
    dsg_sbuf_t out;
    const char *p;
    int next;
    json_t *root;
    def_t *defs;
    int n_defs, cap_defs;
    char *err;
    size_t errlen;
    dsi_status_t st;
    int depth;
} sc_t;

static int sc_fail(sc_t *c, dsi_status_t st, const char *path, const char *fmt, const char *what)
{
    if (c->st == DSI_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), fmt, what);
        dsg_err(c->err, c->errlen, "%s%s%s", msg, path[0] ? " at " : "", path);
        c->st = st;
    }
    return -1;
}

static const char *const annotations[] = {
    "title",      "description", "default",   "examples", "$schema",     "$id", "$comment",
    "deprecated", "readOnly",    "writeOnly", "$defs",    "definitions", NULL};
static const char *const handled[] = {"type",
                                      "properties",
                                      "required",
                                      "additionalProperties",
                                      "items",
                                      "minItems",
                                      "maxItems",
                                      "enum",
                                      "const",
                                      "anyOf",
                                      "oneOf",
                                      "allOf",
                                      "$ref",
                                      "minimum",
                                      "maximum",
                                      "exclusiveMinimum",
                                      "exclusiveMaximum",
                                      "minLength",
                                      "maxLength",
                                      "pattern",
                                      "format",
                                      "uniqueItems",
                                      NULL};

static int in(const char *k, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(k, *list) == 0)
            return 1;
    }
    return 0;
}

static void sub_path(char *dst, size_t cap, const char *path, const char *a, const char *b)
{
    snprintf(dst, cap, "%s%s%s%s%s", path, path[0] ? "." : "", a, b ? "." : "", b ? b : "");
}

static int gen(sc_t *c, json_t *s, const char *path);

static void json_literal(sc_t *c, dsg_sbuf_t *b, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_EMBED);
    if (text == NULL) {
        b->oom = 1;
        return;
    }
    if (json_is_object(v) || json_is_array(v)) {
        free(text);
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            b->oom = 1;
            return;
        }
    }
    dsg_sbuf_literal(b, text, strlen(text));
    free(text);
    (void)c;
}

static int rule_name(sc_t *c, char *dst, size_t cap, int id)
{
    return snprintf(dst, cap, "%ss%d", c->p, id);
}

/* An integer-valued bound, for numbers; *has = 0 when absent. */
static int bound(sc_t *c, json_t *s, const char *key, const char *path, int integer, int up,
                 int *has, int64_t *v, int *ex)
{
    json_t *x = json_object_get(s, key);
    *has = 0;
    if (x == NULL)
        return 0;
    if (!json_is_number(x))
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "'%s' is not a number", key);
    double d = json_number_value(x);
    if (!(fabs(d) <= 1e15))
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "'%s' beyond 1e15 is not supported", key);
    if (integer) {
        d = up ? floor(d) : ceil(d);
        if (*ex && d == json_number_value(x))
            d += up ? -1 : 1;
        *ex = 0;
    } else if (d != floor(d)) {
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path,
                       "'%s' that is not a whole number is not supported for type number", key);
    }
    *has = 1;
    *v = (int64_t)d;
    return 0;
}

/* min/max of a number or integer: minimum/maximum, exclusive* as numbers (draft 6+) or booleans
 * (draft 4). */
static int num_body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *path, int integer)
{
    int has_lo = 0, has_hi = 0, lo_ex = 0, hi_ex = 0;
    int64_t lo = 0, hi = 0;
    json_t *exmin = json_object_get(s, "exclusiveMinimum");
    json_t *exmax = json_object_get(s, "exclusiveMaximum");
    int h;
    int64_t v;
    int ex;
    ex = json_is_true(exmin);
    if (bound(c, s, "minimum", path, integer, 0, &h, &v, &ex))
        return -1;
    if (h)
        has_lo = 1, lo = v, lo_ex = ex;
    ex = json_is_true(exmax);
    if (bound(c, s, "maximum", path, integer, 1, &h, &v, &ex))
        return -1;
    if (h)
        has_hi = 1, hi = v, hi_ex = ex;
    if (exmin != NULL && !json_is_boolean(exmin)) {
        ex = 1;
        if (bound(c, s, "exclusiveMinimum", path, integer, 0, &h, &v, &ex))
            return -1;
        if (!has_lo || v > lo || (v == lo && ex))
            has_lo = 1, lo = v, lo_ex = ex;
    }
    if (exmax != NULL && !json_is_boolean(exmax)) {
        ex = 1;
        if (bound(c, s, "exclusiveMaximum", path, integer, 1, &h, &v, &ex))
            return -1;
        if (!has_hi || v < hi || (v == hi && ex))
            has_hi = 1, hi = v, hi_ex = ex;
    }
    if (!has_lo && !has_hi) {
        dsg_sbuf_printf(b, "%sj%s", c->p, integer ? "integer" : "number");
        return 0;
    }
    if (integer) {
        if (has_lo && has_hi && lo > hi)
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s: no integer is in the range",
                           "minimum/maximum");
        dsg_schema_int_range(b, has_lo, lo, has_hi, hi);
        return 0;
    }
    if (dsg_schema_number_range(b, has_lo, lo, lo_ex, has_hi, hi, hi_ex) == 0)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s: no number is in the range",
                       "minimum/maximum");
    return 0;
}

static int count(sc_t *c, json_t *s, const char *key, const char *path, long *out)
{
    json_t *x = json_object_get(s, key);
    if (x == NULL)
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < 0)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "'%s' is not a non-negative integer", key);
    if (json_integer_value(x) > DSG_MAX_REPEAT)
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "'%s' over 10000 is not supported", key);
    *out = (long)json_integer_value(x);
    return 0;
}

static int string_body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *path)
{
    long lo = 0, hi = -1;
    if (count(c, s, "minLength", path, &lo) || count(c, s, "maxLength", path, &hi))
        return -1;
    json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    if (hi >= 0 && hi < lo)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "maxLength is below minLength");
    if ((pat != NULL || fmt != NULL) && (lo > 0 || hi >= 0))
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s",
                       "minLength/maxLength together with pattern or format");
    if (pat != NULL && fmt != NULL)
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s", "pattern together with format");
    if (pat != NULL) {
        if (!json_is_string(pat))
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'pattern' is not a string");
        char msg[200];
        dsg_sbuf_puts(b, "\"\\\"\" ");
        dsi_status_t st =
            dsg_regex_body(b, json_string_value(pat), json_string_length(pat), 1, msg, sizeof(msg));
        if (st != DSI_OK)
            return sc_fail(c, st, path, "pattern: %s", msg);
        dsg_sbuf_puts(b, " \"\\\"\"");
        return 0;
    }
    if (fmt != NULL) {
        static const char *const date =
            "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [12] [0-9] | "
            "\"3\" [01] )";
        static const char *const time =
            "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" "
            "[0-9]{1,6} )? ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )";
        const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
        dsg_sbuf_puts(b, "\"\\\"\" ");
        if (strcmp(f, "date") == 0)
            dsg_sbuf_printf(b, "%s", date);
        else if (strcmp(f, "time") == 0)
            dsg_sbuf_printf(b, "%s", time);
        else if (strcmp(f, "date-time") == 0)
            dsg_sbuf_printf(b, "%s \"T\" %s", date, time);
        else if (strcmp(f, "uuid") == 0)
            dsg_sbuf_puts(b, "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} "
                             "\"-\" [0-9a-f]{12}");
        else if (strcmp(f, "email") == 0)
            dsg_sbuf_puts(b, "[a-zA-Z0-9._+-]{1,32} \"@\" [a-zA-Z0-9-]{1,32} ( \".\" "
                             "[a-zA-Z0-9-]{1,32} ){0,3} \".\" [a-zA-Z]{2,8}");
        else
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path,
                           "unsupported JSON Schema keyword 'format' (value '%s')", f);
        dsg_sbuf_puts(b, " \"\\\"\"");
        return 0;
    }
    if (lo == 0 && hi < 0) {
        dsg_sbuf_printf(b, "%sjstring", c->p);
        return 0;
    }
    if (hi < 0)
        dsg_sbuf_printf(b, "\"\\\"\" %sjchar{%ld,} \"\\\"\"", c->p, lo);
    else
        dsg_sbuf_printf(b, "\"\\\"\" %sjchar{%ld,%ld} \"\\\"\"", c->p, lo, hi);
    return 0;
}

static int array_body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *path)
{
    long lo = 0, hi = -1;
    if (count(c, s, "minItems", path, &lo) || count(c, s, "maxItems", path, &hi))
        return -1;
    if (hi >= 0 && hi < lo)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "maxItems is below minItems");
    json_t *u = json_object_get(s, "uniqueItems");
    if (u != NULL && !json_is_false(u))
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "unsupported JSON Schema keyword '%s'",
                       "uniqueItems");
    json_t *items = json_object_get(s, "items");
    char item[96];
    if (items == NULL) {
        snprintf(item, sizeof(item), "%sjvalue", c->p);
    } else {
        if (json_is_array(items))
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s",
                           "'items' as an array (tuple) is not supported");
        char sub[512];
        sub_path(sub, sizeof(sub), path, "items", NULL);
        int r = gen(c, items, sub);
        if (r < 0)
            return -1;
        rule_name(c, item, sizeof(item), r);
    }
    const char *ws = c->p;
    if (hi == 0) {
        dsg_sbuf_printf(b, "\"[\" %sjws \"]\"", ws);
        return 0;
    }
    long rlo = lo > 0 ? lo - 1 : 0;
    char rest[192];
    if (hi < 0)
        snprintf(rest, sizeof(rest), "( %sjws \",\" %sjws %s ){%ld,}", ws, ws, item, rlo);
    else
        snprintf(rest, sizeof(rest), "( %sjws \",\" %sjws %s ){%ld,%ld}", ws, ws, item, rlo,
                 hi - 1);
    if (lo == 0)
        dsg_sbuf_printf(b, "\"[\" %sjws ( %s %s %sjws )? \"]\"", ws, item, rest, ws);
    else
        dsg_sbuf_printf(b, "\"[\" %sjws %s %s %sjws \"]\"", ws, item, rest, ws);
    return 0;
}

static int object_body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *path)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props != NULL && !json_is_object(props))
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'properties' is not an object");
    if (req != NULL && !json_is_array(req))
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'required' is not an array");
    size_t n = props ? json_object_size(props) : 0;
    if (addl != NULL && !json_is_boolean(addl) && !json_is_object(addl))
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s",
                       "'additionalProperties' is not a boolean or a schema");
    if (n == 0) {
        if (req != NULL && json_array_size(req) > 0)
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s",
                           "'required' names properties that 'properties' does not define");
        if (json_is_false(addl)) {
            dsg_sbuf_printf(b, "\"{\" %sjws \"}\"", c->p);
        } else if (json_is_object(addl)) {
            char sub[512], v[96];
            sub_path(sub, sizeof(sub), path, "additionalProperties", NULL);
            int r = gen(c, addl, sub);
            if (r < 0)
                return -1;
            rule_name(c, v, sizeof(v), r);
            const char *p = c->p;
            dsg_sbuf_printf(b,
                            "\"{\" %1$sjws ( %1$sjstring %1$sjws \":\" %1$sjws %2$s ( %1$sjws "
                            "\",\" %1$sjws %1$sjstring %1$sjws \":\" %1$sjws %2$s )* %1$sjws )? "
                            "\"}\"",
                            p, v);
        } else {
            dsg_sbuf_printf(b, "%sjobject", c->p);
        }
        return 0;
    }
    if (addl != NULL && !json_is_false(addl))
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s",
                       "'additionalProperties' other than false together with 'properties'");
    for (size_t i = 0; req != NULL && i < json_array_size(req); i++) {
        json_t *name = json_array_get(req, i);
        if (!json_is_string(name))
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'required' holds a non-string");
        if (json_object_get(props, json_string_value(name)) == NULL)
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path,
                           "required property '%s' is not in 'properties'",
                           json_string_value(name));
    }
    /* Property i as text, and whether it is required. */
    dsg_sbuf_t *kv = calloc(n, sizeof(dsg_sbuf_t));
    int *required = calloc(n, sizeof(int));
    if (kv == NULL || required == NULL) {
        free(kv);
        free(required);
        c->st = DSI_ERR_NOMEM;
        return -1;
    }
    const char *key;
    json_t *val;
    size_t i = 0;
    int rc = 0;
    json_object_foreach(props, key, val)
    {
        for (size_t k = 0; req != NULL && k < json_array_size(req); k++) {
            if (json_is_string(json_array_get(req, k)) &&
                strcmp(json_string_value(json_array_get(req, k)), key) == 0)
                required[i] = 1;
        }
        char sub[512], v[96];
        sub_path(sub, sizeof(sub), path, "properties", key);
        int r = gen(c, val, sub);
        if (r < 0) {
            rc = -1;
            break;
        }
        rule_name(c, v, sizeof(v), r);
        json_t *k = json_string(key);
        json_literal(c, &kv[i], k);
        json_decref(k);
        dsg_sbuf_printf(&kv[i], " %sjws \":\" %sjws %s", c->p, c->p, v);
        i++;
    }
    if (rc == 0) {
        /* R_i: properties i.. each after a comma; F_i: the first of them without. */
        int base = c->next;
        c->next += 2 * ((int)n + 1);
        dsg_sbuf_t *o = &c->out;
        for (size_t j = 0; j <= n; j++) {
            int R = base + 2 * (int)j, F = R + 1;
            if (j == n) {
                dsg_sbuf_printf(o, "%ss%d ::= \"\"\n%ss%d ::= \"\"\n", c->p, R, c->p, F);
                continue;
            }
            dsg_sbuf_printf(o, "%ss%d ::= %sjws \",\" %sjws ", c->p, R, c->p, c->p);
            dsg_sbuf_add(o, kv[j].s, kv[j].n);
            dsg_sbuf_printf(o, " %ss%d%s", c->p, R + 2, required[j] ? "" : " | ");
            if (!required[j])
                dsg_sbuf_printf(o, "%ss%d", c->p, R + 2);
            dsg_sbuf_printf(o, "\n%ss%d ::= ", c->p, F);
            dsg_sbuf_add(o, kv[j].s, kv[j].n);
            dsg_sbuf_printf(o, " %ss%d", c->p, R + 2);
            if (!required[j])
                dsg_sbuf_printf(o, " | %ss%d", c->p, F + 2);
            dsg_sbuf_puts(o, "\n");
        }
        dsg_sbuf_printf(b, "\"{\" %sjws %ss%d %sjws \"}\"", c->p, c->p, base + 1, c->p);
    }
    for (size_t j = 0; j < n; j++)
        free(kv[j].s);
    free(kv);
    free(required);
    return rc;
}

static int type_body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *type, const char *path)
{
    if (strcmp(type, "null") == 0)
        dsg_sbuf_puts(b, "\"null\"");
    else if (strcmp(type, "boolean") == 0)
        dsg_sbuf_puts(b, "( \"true\" | \"false\" )");
    else if (strcmp(type, "integer") == 0)
        return num_body(c, b, s, path, 1);
    else if (strcmp(type, "number") == 0)
        return num_body(c, b, s, path, 0);
    else if (strcmp(type, "string") == 0)
        return string_body(c, b, s, path);
    else if (strcmp(type, "array") == 0)
        return array_body(c, b, s, path);
    else if (strcmp(type, "object") == 0)
        return object_body(c, b, s, path);
    else
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "unknown type '%s'", type);
    return 0;
}

static const char *implied_type(json_t *s)
{
    if (json_object_get(s, "properties") || json_object_get(s, "additionalProperties") ||
        json_object_get(s, "required"))
        return "object";
    if (json_object_get(s, "items") || json_object_get(s, "minItems") ||
        json_object_get(s, "maxItems"))
        return "array";
    if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") ||
        json_object_get(s, "pattern") || json_object_get(s, "format"))
        return "string";
    if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
        json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
        return "number";
    return NULL;
}

/* The rule of a $ref target, generated once. */
static int ref_rule(sc_t *c, const char *ref, const char *path)
{
    for (int i = 0; i < c->n_defs; i++) {
        if (strcmp(c->defs[i].ref, ref) == 0)
            return c->defs[i].rule;
    }
    const char *name = NULL;
    json_t *defs = NULL;
    if (strncmp(ref, "#/$defs/", 8) == 0)
        defs = json_object_get(c->root, "$defs"), name = ref + 8;
    else if (strncmp(ref, "#/definitions/", 14) == 0)
        defs = json_object_get(c->root, "definitions"), name = ref + 14;
    else if (strcmp(ref, "#") == 0)
        name = "";
    else
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path,
                       "'$ref' '%s' is not supported (only #, #/$defs/NAME, #/definitions/NAME)",
                       ref);
    json_t *target = name[0] == '\0' ? c->root : json_object_get(defs, name);
    if (target == NULL || strchr(name, '/') != NULL)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "'$ref' '%s' names no definition", ref);
    if (c->n_defs == c->cap_defs) {
        int cap = c->cap_defs ? c->cap_defs * 2 : 8;
        def_t *d = realloc(c->defs, (size_t)cap * sizeof(*d));
        if (d == NULL) {
            c->st = DSI_ERR_NOMEM;
            return -1;
        }
        c->defs = d;
        c->cap_defs = cap;
    }
    /* A forwarding rule, so that the target's rule can refer back to it. */
    int fwd = c->next++;
    c->defs[c->n_defs].ref = strdup(ref);
    c->defs[c->n_defs].rule = fwd;
    c->n_defs++;
    char sub[512];
    snprintf(sub, sizeof(sub), "%s", ref);
    int r = gen(c, target, sub);
    if (r < 0)
        return -1;
    dsg_sbuf_printf(&c->out, "%ss%d ::= %ss%d\n", c->p, fwd, c->p, r);
    return fwd;
}

static int alternatives(sc_t *c, dsg_sbuf_t *b, json_t *list, const char *kw, const char *path)
{
    if (!json_is_array(list) || json_array_size(list) == 0)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "'%s' is not a non-empty array", kw);
    dsg_sbuf_puts(b, "( ");
    for (size_t i = 0; i < json_array_size(list); i++) {
        char sub[512], idx[24];
        snprintf(idx, sizeof(idx), "%zu", i);
        sub_path(sub, sizeof(sub), path, kw, idx);
        int r = gen(c, json_array_get(list, i), sub);
        if (r < 0)
            return -1;
        dsg_sbuf_printf(b, "%s%ss%d", i ? " | " : "", c->p, r);
    }
    dsg_sbuf_puts(b, " )");
    return 0;
}

static int body(sc_t *c, dsg_sbuf_t *b, json_t *s, const char *path)
{
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        dsg_sbuf_printf(b, "%sjvalue", c->p);
        return 0;
    }
    if (!json_is_object(s))
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "a schema is not an object");
    const char *key;
    json_t *val;
    int n_kw = 0;
    json_object_foreach(s, key, val)
    {
        if (in(key, annotations))
            continue;
        if (!in(key, handled))
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "unsupported JSON Schema keyword '%s'",
                           key);
        n_kw++;
    }
    json_t *x;
    if ((x = json_object_get(s, "$ref")) != NULL) {
        if (!json_is_string(x))
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'$ref' is not a string");
        if (n_kw > 1)
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s",
                           "keywords beside '$ref' are not supported");
        int r = ref_rule(c, json_string_value(x), path);
        if (r < 0)
            return -1;
        dsg_sbuf_printf(b, "%ss%d", c->p, r);
        return 0;
    }
    if ((x = json_object_get(s, "const")) != NULL) {
        json_literal(c, b, x);
        return 0;
    }
    if ((x = json_object_get(s, "enum")) != NULL) {
        if (!json_is_array(x) || json_array_size(x) == 0)
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'enum' is not a non-empty array");
        dsg_sbuf_puts(b, "( ");
        for (size_t i = 0; i < json_array_size(x); i++) {
            if (i)
                dsg_sbuf_puts(b, " | ");
            json_literal(c, b, json_array_get(x, i));
        }
        dsg_sbuf_puts(b, " )");
        return 0;
    }
    const char *alt_kw = json_object_get(s, "anyOf")   ? "anyOf"
                         : json_object_get(s, "oneOf") ? "oneOf"
                         : json_object_get(s, "allOf") ? "allOf"
                                                       : NULL;
    if (alt_kw != NULL) {
        x = json_object_get(s, alt_kw);
        if (n_kw > 1)
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "keywords beside '%s' are not supported",
                           alt_kw);
        if (strcmp(alt_kw, "allOf") == 0 && (!json_is_array(x) || json_array_size(x) != 1))
            return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s",
                           "'allOf' of more than one schema is not supported");
        return alternatives(c, b, x, alt_kw, path);
    }
    x = json_object_get(s, "type");
    if (x == NULL) {
        const char *t = implied_type(s);
        if (t == NULL) {
            dsg_sbuf_printf(b, "%sjvalue", c->p);
            return 0;
        }
        return type_body(c, b, s, t, path);
    }
    if (json_is_string(x))
        return type_body(c, b, s, json_string_value(x), path);
    if (!json_is_array(x) || json_array_size(x) == 0)
        return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s",
                       "'type' is not a string or a non-empty array");
    dsg_sbuf_puts(b, "( ");
    for (size_t i = 0; i < json_array_size(x); i++) {
        if (!json_is_string(json_array_get(x, i)))
            return sc_fail(c, DSI_ERR_BAD_REQUEST, path, "%s", "'type' holds a non-string");
        if (i)
            dsg_sbuf_puts(b, " | ");
        if (type_body(c, b, s, json_string_value(json_array_get(x, i)), path))
            return -1;
    }
    dsg_sbuf_puts(b, " )");
    return 0;
}

static int gen(sc_t *c, json_t *s, const char *path)
{
    if (++c->depth > MAX_DEPTH)
        return sc_fail(c, DSI_ERR_UNSUPPORTED, path, "%s", "schemas nested more than 64 deep");
    int id = c->next++;
    dsg_sbuf_t b = {0};
    int rc = body(c, &b, s, path);
    c->depth--;
    if (rc == 0) {
        dsg_sbuf_printf(&c->out, "%ss%d ::= ", c->p, id);
        dsg_sbuf_add(&c->out, b.s ? b.s : "\"\"", b.s ? b.n : 2);
        dsg_sbuf_puts(&c->out, "\n");
        if (b.oom)
            c->out.oom = 1;
    }
    free(b.s);
    if (c->out.oom && c->st == DSI_OK)
        c->st = DSI_ERR_NOMEM;
    if (c->out.n > DSG_MAX_GRAMMAR_BYTES && c->st == DSI_OK) {
        dsg_err(c->err, c->errlen, "the schema makes a grammar over %u bytes",
                DSG_MAX_GRAMMAR_BYTES);
        c->st = DSI_ERR_TOO_LARGE;
    }
    return rc || c->st != DSI_OK ? -1 : id;
}

dsi_status_t dsg_from_json_schema(const char *schema_json, size_t len, const char *rule_prefix,
                                  char **gbnf_out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(schema_json, len, JSON_DECODE_ANY, &je);
    if (root == NULL) {
        dsg_err(err, errlen, "the schema is not valid JSON: %s (line %d)", je.text, je.line);
        return DSI_ERR_BAD_REQUEST;
    }
    sc_t c = {0};
    c.p = rule_prefix != NULL ? rule_prefix : "";
    c.root = root;
    c.err = err;
    c.errlen = errlen;
    if (strlen(c.p) > 64) {
        json_decref(root);
        dsg_err(err, errlen, "rule prefix over 64 bytes");
        return DSI_ERR_INVALID_ARG;
    }
    char jp[80];
    snprintf(jp, sizeof(jp), "%sj", c.p);
    int r = gen(&c, root, "");
    if (r >= 0) {
        dsg_sbuf_printf(&c.out, "%sroot ::= %ss%d\n", c.p, c.p, r);
        dsg_json_base_rules(&c.out, jp);
        if (c.out.oom)
            c.st = DSI_ERR_NOMEM;
    }
    for (int i = 0; i < c.n_defs; i++)
        free(c.defs[i].ref);
    free(c.defs);
    json_decref(root);
    if (c.st != DSI_OK || r < 0) {
        free(c.out.s);
        return c.st != DSI_OK ? c.st : DSI_ERR_BAD_REQUEST;
    }
    *gbnf_out = c.out.s;
    return DSI_OK;
}
