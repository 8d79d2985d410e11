/*
 * dsc_api_options.c - the API server's command-line options (named in dsc_api.h; the programs'
 * settings table holds their flags and defaults) applied to a dsc_api_server_config_t.
 */
#include "dsc_api_impl.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

/* Digits with an optional K/M/G suffix (powers of 1024), within [min, max]. */
static int parse_number(const char *text, int allow_suffix, uint64_t min, uint64_t max,
                        uint64_t *out)
{
    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    int shift = 0;
    if (allow_suffix && *end != '\0' && end[1] == '\0') {
        const char *suffixes = "KMG";
        const char *s = strchr(suffixes, *end == 'k' ? 'K' : *end);
        if (s == NULL)
            return -1;
        shift = 10 * (int)(s - suffixes + 1);
        end++;
    }
    if (*end != '\0' || v > (max >> shift) || (v << shift) < min)
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static dsi_status_t bad_value(const char *name, const char *value, const char *why)
{
    DSI_ERROR("--%s %s: %s", name, value, why);
    return DSI_ERR_INVALID_ARG;
}

dsi_status_t dsc_api_server_config_option(dsc_api_server_config_t *cfg, const char *name,
                                          const char *value)
{
    uint64_t v;
    dsc_http_config_t *h = &cfg->http;
    if (strcmp(name, "listen") == 0) {
        if (dsc_http_config_set_listen(h, value) != DSI_OK)
            return bad_value(name, value, "expected HOST:PORT, [IPV6]:PORT or :PORT");
    } else if (strcmp(name, "api-key") == 0) {
        cfg->api_key = value;
    } else if (strcmp(name, "max-body") == 0 || strcmp(name, "max-header") == 0) {
        if (parse_number(value, 1, 1024, (uint64_t)1 << 32, &v) != 0)
            return bad_value(name, value, "expected a size from 1K to 4G (K/M/G suffixes)");
        *(strcmp(name, "max-body") == 0 ? &h->max_body_bytes : &h->max_header_bytes) = v;
    } else if (strcmp(name, "request-timeout") == 0 || strcmp(name, "idle-timeout") == 0) {
        if (parse_number(value, 0, 1, 86400000, &v) != 0)
            return bad_value(name, value, "expected milliseconds from 1 to 86400000");
        *(name[0] == 'r' ? &h->request_timeout_ms : &h->idle_timeout_ms) = (uint32_t)v;
    } else if (strcmp(name, "max-connections") == 0) {
        if (parse_number(value, 0, 1, 1000000, &v) != 0)
            return bad_value(name, value, "expected a count from 1 to 1000000");
        h->max_connections = (uint32_t)v;
    } else if (strcmp(name, "max-tokens-limit") == 0 || strcmp(name, "default-max-tokens") == 0) {
        if (parse_number(value, 0, 1, INT32_MAX, &v) != 0)
            return bad_value(name, value, "expected a token count from 1 to 2147483647");
        *(name[0] == 'm' ? &cfg->limits.max_tokens_limit : &cfg->limits.default_max_tokens) =
            (int32_t)v;
    } else if (strcmp(name, "max-prompts") == 0) {
        if (parse_number(value, 0, 1, 65536, &v) != 0)
            return bad_value(name, value, "expected a count from 1 to 65536");
        cfg->limits.max_prompts = (size_t)v;
    } else {
        return DSI_ERR_NOT_FOUND;
    }
    return DSI_OK;
}
