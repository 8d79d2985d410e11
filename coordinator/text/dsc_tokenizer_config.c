/* dsc_tokenizer_config.c - bos/eos from tokenizer_config.json beside tokenizer.json. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dsc_tokenizer_impl.h"
#include "dsi_log.h"

/* A special-token field: a string, an AddedToken object {"content": ...}, or null. */
static dsi_status_t token_field(const dsc_tokenizer_t *tok, const json_t *cfg, const char *key,
                                const char *path, int32_t *id)
{
    const json_t *v = json_object_get(cfg, key);
    *id = -1;
    if (v == NULL || json_is_null(v))
        return DSI_OK;
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v)) {
        DSI_ERROR("%s: '%s' must be a string or an object with a string 'content'", path, key);
        return DSI_ERR_FORMAT;
    }
    *id = dsc_tokenizer_token_id(tok, json_string_value(v));
    if (*id < 0)
        DSI_WARN("%s: %s '%s' is not a token of the tokenizer", path, key, json_string_value(v));
    return DSI_OK;
}

dsi_status_t dsc_tokenizer_read_config(dsc_tokenizer_t *tok, const char *dir)
{
    char path[4096];
    struct stat sb;
    json_error_t err;
    if (snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir) >= (int)sizeof(path))
        return DSI_ERR_INVALID_ARG;
    if (stat(path, &sb) != 0)
        return DSI_OK; /* optional: bos/eos stay unknown */
    if (!S_ISREG(sb.st_mode)) { /* a FIFO would hang the read */
        DSI_ERROR("%s: not a regular file", path);
        return DSI_ERR_FORMAT;
    }
    json_t *cfg = json_load_file(path, 0, &err);
    if (cfg == NULL || !json_is_object(cfg)) {
        DSI_ERROR("%s: line %d: %s", path, err.line, cfg == NULL ? err.text : "not an object");
        json_decref(cfg);
        return DSI_ERR_FORMAT;
    }
    dsi_status_t st = token_field(tok, cfg, "bos_token", path, &tok->bos_id);
    if (st == DSI_OK)
        st = token_field(tok, cfg, "eos_token", path, &tok->eos_id);
    json_decref(cfg);
    return st;
}
