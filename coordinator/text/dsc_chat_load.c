/* dsc_chat_load.c - choosing the chat template from a model directory's tokenizer_config.json. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "dsc_chat.h"
#include "dsi_log.h"

/* The template text: a string, or a list of {"name", "template"} where "default" is used. */
static const char *template_text(const json_t *cfg)
{
    const json_t *t = json_object_get(cfg, "chat_template"), *e;
    size_t i;
    if (json_is_string(t))
        return json_string_value(t);
    json_array_foreach(t, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name != NULL && strcmp(name, "default") == 0)
            return json_string_value(json_object_get(e, "template"));
    }
    return NULL;
}

/* V3.1 switches on a `thinking` variable between "<think>" and "</think>"; R1 opens the
 * generation prompt with <think>; all have the DeepSeek markers. */
static dsi_status_t detect_style(const char *text, const char *path, dsc_chat_style_t *style)
{
    if (text == NULL) {
        DSI_ERROR("%s: no chat_template (choose the template explicitly: v3, r1 or v3.1)", path);
        return DSI_ERR_UNSUPPORTED;
    }
    if (strstr(text, "<｜User｜>") == NULL || strstr(text, "<｜Assistant｜>") == NULL) {
        DSI_ERROR("%s: chat_template is not a DeepSeek V3/R1/V3.1 template (choose one explicitly)",
                  path);
        return DSI_ERR_UNSUPPORTED;
    }
    if (strstr(text, "thinking") != NULL && strstr(text, "</think>") != NULL)
        *style = DSC_CHAT_V31;
    else
        *style = strstr(text, "<think>") != NULL ? DSC_CHAT_R1 : DSC_CHAT_V3;
    return DSI_OK;
}

dsi_status_t dsc_chat_template_load(const char *dir, dsc_chat_style_t style,
                                    dsc_chat_template_t **out)
{
    char path[4096];
    struct stat sb;
    json_error_t err;
    if (dir == NULL || out == NULL)
        return DSI_ERR_INVALID_ARG;
    if (snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir) >= (int)sizeof(path))
        return DSI_ERR_INVALID_ARG;
    if (stat(path, &sb) != 0) {
        if (style != DSC_CHAT_AUTO)
            return dsc_chat_template_create(style, NULL, out);
        DSI_ERROR("%s: %s (needed to choose the chat template)", path, strerror(errno));
        return DSI_ERR_NOT_FOUND;
    }
    if (!S_ISREG(sb.st_mode)) { /* a FIFO would hang the read */
        DSI_ERROR("%s: not a regular file", path);
        return DSI_ERR_FORMAT;
    }
    json_t *cfg = json_load_file(path, 0, &err);
    if (!json_is_object(cfg)) {
        DSI_ERROR("%s: line %d: %s", path, err.line, cfg ? "not a JSON object" : err.text);
        json_decref(cfg);
        return DSI_ERR_FORMAT;
    }
    dsi_status_t st = DSI_OK;
    const json_t *bos = json_object_get(cfg, "bos_token");
    if (json_is_object(bos))
        bos = json_object_get(bos, "content");
    if (bos != NULL && !json_is_null(bos) && !json_is_string(bos)) {
        DSI_ERROR("%s: 'bos_token' must be a string or an object with a string 'content'", path);
        st = DSI_ERR_FORMAT;
    }
    if (st == DSI_OK && style == DSC_CHAT_AUTO)
        st = detect_style(template_text(cfg), path, &style);
    if (st == DSI_OK)
        st =
            dsc_chat_template_create(style, json_is_string(bos) ? json_string_value(bos) : "", out);
    json_decref(cfg);
    return st;
}
