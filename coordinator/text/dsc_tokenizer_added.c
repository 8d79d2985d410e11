/* dsc_tokenizer_added.c - the added_tokens section of tokenizer.json, numbered as upstream. */
#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer_impl.h"
#include "dsi_log.h"

/* One added token as read (contents live in tok->added_arena). */
typedef struct {
    const char *content;
    size_t len;
    int64_t file_id;
    unsigned flags; /* DSC_ADDED_* */
    int normalized;
} entry_t;

static int get_bool(const json_t *obj, const char *key, int dflt, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 1;
    }
    if (!json_is_boolean(v))
        return 0;
    *out = json_is_true(v);
    return 1;
}

static dsi_status_t parse_entry(const json_t *t, size_t i, const char *origin, char **arena,
                                entry_t *e)
{
    const json_t *content = json_object_get(t, "content"), *id = json_object_get(t, "id");
    int special, single, lstrip, rstrip, normalized;
    if (!json_is_object(t) || !json_is_string(content) || !json_is_integer(id) ||
        !get_bool(t, "special", 0, &special) || !get_bool(t, "single_word", 0, &single) ||
        !get_bool(t, "lstrip", 0, &lstrip) || !get_bool(t, "rstrip", 0, &rstrip) ||
        !get_bool(t, "normalized", !special, &normalized)) {
        DSI_ERROR("%s: added_tokens[%zu]: needs string 'content', integer 'id' and boolean "
                  "special / single_word / lstrip / rstrip / normalized",
                  origin, i);
        return DSI_ERR_FORMAT;
    }
    e->len = json_string_length(content);
    memcpy(*arena, json_string_value(content), e->len);
    (*arena)[e->len] = '\0';
    e->content = *arena;
    *arena += e->len + 1;
    e->file_id = json_integer_value(id);
    e->normalized = normalized;
    e->flags = (special ? DSC_ADDED_SPECIAL : 0) | (single ? DSC_ADDED_SINGLE_WORD : 0) |
               (lstrip ? DSC_ADDED_LSTRIP : 0) | (rstrip ? DSC_ADDED_RSTRIP : 0);
    return DSI_OK;
}

/*
 * The id upstream gives a token: its existing added id, else its vocabulary id, else the next
 * id after the vocabulary (vocab_count = the number of vocabulary entries, as upstream counts).
 */
static int64_t assign_id(const dsc_tokenizer_t *tok, const entry_t *e, int64_t added_max,
                         size_t vocab_count)
{
    int32_t id = dsc_strmap_get(&tok->added, e->content, e->len);
    if (id < 0)
        id = dsc_strmap_get(&tok->vocab, e->content, e->len);
    if (id >= 0)
        return id;
    if (added_max < 0)
        return (int64_t)vocab_count;
    if (added_max >= (int64_t)vocab_count || vocab_count == 0)
        return added_max + 1;
    return (int64_t)vocab_count;
}

/* Final state per distinct content: index into entries of its last version, and its id. */
static dsi_status_t build_sets(dsc_tokenizer_t *tok, const entry_t *entries, size_t n,
                               const uint8_t *special_seen)
{
    dsi_status_t st = DSI_OK;
    if ((st = dsc_added_set_init(&tok->added_raw)) != DSI_OK ||
        (st = dsc_added_set_init(&tok->added_norm)) != DSI_OK)
        return st;
    for (size_t i = 0; i < n && st == DSI_OK; i++) {
        const entry_t *e = &entries[i];
        if (e->len == 0 || e->content == NULL)
            continue;
        int32_t id = dsc_strmap_get(&tok->added, e->content, e->len);
        /* The special flag is by content: once special, always special (upstream's set). */
        unsigned flags = e->flags | (special_seen[i] ? DSC_ADDED_SPECIAL : 0);
        st = dsc_added_set_add(e->normalized ? &tok->added_norm : &tok->added_raw, e->content,
                               e->len, id, flags);
        if (flags & DSC_ADDED_SPECIAL)
            tok->flags[id] |= DSC_TOKF_SPECIAL;
        tok->flags[id] |= DSC_TOKF_ADDED;
    }
    return st;
}

/* Phase 1: read the entries and number them; returns the largest id in *max_id. */
dsi_status_t dsc_tokenizer_load_added(dsc_tokenizer_t *tok, const json_t *added, const char *origin,
                                      size_t vocab_count, int32_t *max_id, void **state,
                                      size_t *n_state)
{
    size_t n = json_array_size(added), total = 0, i;
    const json_t *t;
    *max_id = -1;
    json_array_foreach(added, i, t) total += json_string_length(json_object_get(t, "content")) + 1;
    entry_t *entries = calloc(n ? n : 1, sizeof(*entries));
    char *arena = tok->added_arena = malloc(total + 1);
    if (entries == NULL || arena == NULL || dsc_strmap_init(&tok->added, n) != DSI_OK) {
        free(entries);
        return DSI_ERR_NOMEM;
    }
    *state = entries;
    *n_state = n;
    int64_t added_max = -1;
    json_array_foreach(added, i, t)
    {
        entry_t *e = &entries[i];
        dsi_status_t st = parse_entry(t, i, origin, &arena, e);
        if (st != DSI_OK)
            return st;
        if (e->len == 0) { /* upstream ignores empty tokens */
            e->content = NULL;
            continue;
        }
        int64_t id = assign_id(tok, e, added_max, vocab_count);
        if (id >= DSC_TOK_MAX_ID) {
            DSI_ERROR("%s: added_tokens[%zu]: id %lld is too large", origin, i, (long long)id);
            return DSI_ERR_FORMAT;
        }
        if (id != e->file_id)
            DSI_WARN("%s: added token '%s' has id %lld in the file but %lld by the numbering "
                     "rules of the reference; using %lld",
                     origin, e->content, (long long)e->file_id, (long long)id, (long long)id);
        if (dsc_strmap_put(&tok->added, e->content, e->len, (int32_t)id, NULL) < 0)
            return DSI_ERR_NOMEM;
        if (id > added_max)
            added_max = id;
    }
    *max_id = (int32_t)added_max;
    return DSI_OK;
}

/* Phase 2, once the per-id tables exist: the matching sets and per-id flags. */
dsi_status_t dsc_tokenizer_finish_added(dsc_tokenizer_t *tok, void *state, size_t n)
{
    entry_t *entries = state;
    uint8_t *special = calloc(n ? n : 1, 1);
    dsc_strmap_t seen = {0};
    dsi_status_t st = DSI_ERR_NOMEM;
    if (special == NULL || dsc_strmap_init(&seen, n) != DSI_OK)
        goto out;
    /* A content is special if any of its entries is; only its last entry is kept. */
    for (size_t i = 0; i < n; i++) {
        const entry_t *e = &entries[i];
        int32_t prev;
        if (e->content == NULL)
            continue;
        int fresh = dsc_strmap_put(&seen, e->content, e->len, (int32_t)i, &prev);
        if (fresh < 0)
            goto out;
        special[i] = (e->flags & DSC_ADDED_SPECIAL) != 0;
        if (!fresh) {
            special[i] |= special[prev];
            entries[prev].content = NULL;
        }
    }
    st = build_sets(tok, entries, n, special);
out:
    dsc_strmap_cleanup(&seen);
    free(special);
    return st;
}
