/*
 * dsc_chat_tojson.c - JSON text as the templates' `tojson` filter writes it under transformers:
 * Python's json.dumps(x, ensure_ascii=False): ", " and ": " separators, keys in the given order,
 * non-ASCII characters as they are, control characters as \b \f \n \r \t or \u00xx (lowercase
 * hex), and floating-point numbers as Python's repr (the shortest text that reads back as the
 * same double: 0.1, 1e-05, 1e+16, 2.0). jansson's own writer differs in the last two (17
 * significant digits, uppercase hex), which would change the rendered prompt.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "dsc_chat_impl.h"

static void put_string(sbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    puts_(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc != NULL) {
            puts_(b, esc);
        } else if (c < 0x20) {
            char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], '\0'};
            puts_(b, u);
        } else {
            put(b, s + i, 1);
        }
    }
    puts_(b, "\"");
}

/* Python's repr of a finite double. */
static void put_real(sbuf_t *b, double x)
{
    char sci[40], out[64];
    for (int p = 1; p <= 17; p++) { /* the shortest round trip */
        snprintf(sci, sizeof(sci), "%.*e", p - 1, x);
        if (strtod(sci, NULL) == x)
            break;
    }
    /* sci is [-]D[.DDD]e[+-]XX: the digits and the decimal exponent */
    char digits[24];
    int nd = 0, neg = sci[0] == '-';
    const char *q = sci + neg;
    for (; *q != 'e'; q++)
        if (*q != '.')
            digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp = atoi(q + 1), o = 0;
    if (neg)
        out[o++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            o += snprintf(out + o, sizeof(out) - (size_t)o, "0.");
            for (int k = 0; k < -exp - 1; k++)
                out[o++] = '0';
            o += snprintf(out + o, sizeof(out) - (size_t)o, "%s", digits);
        } else {
            for (int k = 0; k <= exp; k++)
                out[o++] = k < nd ? digits[k] : '0';
            out[o++] = '.';
            if (nd > exp + 1)
                o += snprintf(out + o, sizeof(out) - (size_t)o, "%s", digits + exp + 1);
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1)
            o += snprintf(out + o, sizeof(out) - (size_t)o, ".%s", digits + 1);
        snprintf(out + o, sizeof(out) - (size_t)o, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
    puts_(b, out);
}

void dsc_chat_tojson(sbuf_t *b, const json_t *v)
{
    char num[32];
    const char *key;
    size_t i;
    json_t *item;
    int first = 1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        puts_(b, "{");
        json_object_foreach((json_t *)v, key, item)
        {
            puts_(b, first ? "" : ", ");
            put_string(b, key, strlen(key));
            puts_(b, ": ");
            dsc_chat_tojson(b, item);
            first = 0;
        }
        puts_(b, "}");
        break;
    case JSON_ARRAY:
        puts_(b, "[");
        json_array_foreach(v, i, item)
        {
            puts_(b, i ? ", " : "");
            dsc_chat_tojson(b, item);
        }
        puts_(b, "]");
        break;
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        puts_(b, num);
        break;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        puts_(b, "true");
        break;
    case JSON_FALSE:
        puts_(b, "false");
        break;
    default:
        puts_(b, "null");
        break;
    }
}
