/* dsc_tokenizer_load.c - reading tokenizer.json: the top level and the simple sections. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsc_tokenizer_impl.h"
#include "dsi_log.h"

/* Largest tokenizer.json accepted (the DeepSeek one is 4.3 MB). */
#define MAX_FILE_BYTES (256u << 20)

/* Only normalizers that change nothing: null, or Sequences of nothing. */
static int normalizer_is_identity(const json_t *n)
{
    if (n == NULL || json_is_null(n))
        return 1;
    const char *type = json_string_value(json_object_get(n, "type"));
    const json_t *list = json_object_get(n, "normalizers"), *sub;
    size_t i;
    if (type == NULL || strcmp(type, "Sequence") != 0 || !json_is_array(list))
        return 0;
    json_array_foreach(list, i, sub)
    {
        if (!normalizer_is_identity(sub))
            return 0;
    }
    return 1;
}

/* ByteLevel, alone or as the only step of a Sequence. */
static int decoder_is_bytelevel(const json_t *d)
{
    const char *type = json_string_value(json_object_get(d, "type"));
    if (type == NULL)
        return 0;
    if (strcmp(type, "ByteLevel") == 0)
        return 1;
    const json_t *list = json_object_get(d, "decoders");
    return strcmp(type, "Sequence") == 0 && json_array_size(list) == 1 &&
           decoder_is_bytelevel(json_array_get(list, 0));
}

static dsi_status_t check_top(const json_t *root, const char *origin)
{
    const json_t *version = json_object_get(root, "version");
    const char *opts[] = {"truncation", "padding"};
    if (!json_is_object(root)) {
        DSI_ERROR("%s: not a JSON object", origin);
        return DSI_ERR_FORMAT;
    }
    if (version != NULL &&
        !(json_is_string(version) && strcmp(json_string_value(version), "1.0") == 0)) {
        DSI_ERROR("%s: version must be \"1.0\"", origin);
        return DSI_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(root, opts[i]);
        if (v != NULL && !json_is_null(v)) {
            DSI_ERROR("%s: '%s' is set; encoding with %s is not supported (must be null)", origin,
                      opts[i], opts[i]);
            return DSI_ERR_UNSUPPORTED;
        }
    }
    if (!normalizer_is_identity(json_object_get(root, "normalizer"))) {
        DSI_ERROR("%s: normalizer is not supported (only null or an empty Sequence)", origin);
        return DSI_ERR_UNSUPPORTED;
    }
    if (!decoder_is_bytelevel(json_object_get(root, "decoder"))) {
        DSI_ERROR("%s: decoder is not supported (only ByteLevel)", origin);
        return DSI_ERR_UNSUPPORTED;
    }
    const json_t *added = json_object_get(root, "added_tokens");
    if (added != NULL && !json_is_array(added) && !json_is_null(added)) {
        DSI_ERROR("%s: 'added_tokens' must be an array", origin);
        return DSI_ERR_FORMAT;
    }
    return DSI_OK;
}

dsi_status_t dsc_tokenizer_build(const json_t *root, const char *origin, dsc_tokenizer_t **out)
{
    dsc_tokenizer_t *tok;
    void *added_state = NULL;
    size_t n_added = 0;
    int32_t max_vocab, max_added;
    dsi_status_t st = check_top(root, origin);
    if (st != DSI_OK)
        return st;
    if ((tok = calloc(1, sizeof(*tok))) == NULL)
        return DSI_ERR_NOMEM;
    tok->bos_id = tok->eos_id = tok->unk_id = -1;
    const json_t *added = json_object_get(root, "added_tokens");
    if ((st = dsc_tokenizer_load_model(tok, json_object_get(root, "model"), origin, &max_vocab)) !=
            DSI_OK ||
        (st = dsc_tokenizer_load_added(tok, json_is_array(added) ? added : NULL, origin,
                                       tok->vocab.count, &max_added, &added_state, &n_added)) !=
            DSI_OK)
        goto fail;
    tok->n_ids = (max_vocab > max_added ? max_vocab : max_added) + 1;
    if ((st = dsc_tokenizer_fill_texts(tok, origin)) != DSI_OK ||
        (st = dsc_tokenizer_finish_added(tok, added_state, n_added)) != DSI_OK ||
        (st = dsc_pretok_parse(json_object_get(root, "pre_tokenizer"), origin, &tok->pretok)) !=
            DSI_OK ||
        (st = dsc_tokenizer_build_decode(tok)) != DSI_OK)
        goto fail;
    free(added_state);
    *out = tok;
    return DSI_OK;
fail:
    if (st == DSI_ERR_NOMEM)
        DSI_ERROR("%s: out of memory while loading the tokenizer", origin);
    free(added_state);
    dsc_tokenizer_destroy(tok);
    return st;
}

void dsc_tokenizer_destroy(dsc_tokenizer_t *tok)
{
    if (tok == NULL)
        return;
    dsc_strmap_cleanup(&tok->vocab);
    dsc_pairmap_cleanup(&tok->merges);
    dsc_strmap_cleanup(&tok->added);
    dsc_added_set_cleanup(&tok->added_raw);
    dsc_added_set_cleanup(&tok->added_norm);
    dsc_pretok_cleanup(&tok->pretok);
    free(tok->vocab_arena);
    free(tok->added_arena);
    free(tok->flags);
    free(tok->text);
    free(tok->dec_off);
    free(tok->dec);
    free(tok);
}

dsi_status_t dsc_tokenizer_load_json(const char *json, size_t len, const char *origin,
                                     dsc_tokenizer_t **out)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    if (root == NULL) {
        DSI_ERROR("%s: line %d column %d: %s", origin, err.line, err.column, err.text);
        return DSI_ERR_FORMAT;
    }
    dsi_status_t st = dsc_tokenizer_build(root, origin, out);
    json_decref(root);
    return st;
}

/* Read a whole file into memory; *buf is malloc'ed. */
static dsi_status_t read_file(const char *path, char **buf, size_t *len)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat below refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    struct stat sb;
    if (f == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        DSI_ERROR("%s: cannot open: %s", path, strerror(e));
        return e == ENOENT ? DSI_ERR_NOT_FOUND : DSI_ERR_IO;
    }
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (uint64_t)sb.st_size > MAX_FILE_BYTES) {
        DSI_ERROR("%s: not a regular file of at most %u MiB", path, MAX_FILE_BYTES >> 20);
        fclose(f);
        return DSI_ERR_IO;
    }
    *len = (size_t)sb.st_size;
    *buf = malloc(*len + 1);
    if (*buf == NULL || fread(*buf, 1, *len, f) != *len) {
        DSI_ERROR("%s: read failed", path);
        free(*buf);
        fclose(f);
        return *buf == NULL ? DSI_ERR_NOMEM : DSI_ERR_IO;
    }
    fclose(f);
    return DSI_OK;
}

dsi_status_t dsc_tokenizer_load(const char *path_or_dir, dsc_tokenizer_t **out)
{
    struct stat sb;
    char path[4096], dir[4096];
    char *buf = NULL;
    size_t len;
    if (path_or_dir == NULL || out == NULL)
        return DSI_ERR_INVALID_ARG;
    int is_dir = stat(path_or_dir, &sb) == 0 && S_ISDIR(sb.st_mode);
    int n = is_dir ? snprintf(path, sizeof(path), "%s/tokenizer.json", path_or_dir)
                   : snprintf(path, sizeof(path), "%s", path_or_dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        DSI_ERROR("%s: path too long", path_or_dir);
        return DSI_ERR_INVALID_ARG;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    dsi_status_t st = read_file(path, &buf, &len);
    if (st == DSI_OK)
        st = dsc_tokenizer_load_json(buf, len, path, out);
    free(buf);
    if (st == DSI_OK && (st = dsc_tokenizer_read_config(*out, dir)) != DSI_OK) {
        dsc_tokenizer_destroy(*out);
        *out = NULL;
    }
    return st;
}
