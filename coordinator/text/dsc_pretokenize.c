/* dsc_pretokenize.c - Split / ByteLevel pre-tokenization on Oniguruma (see dsc_pretokenize.h). */
#include "dsc_pretokenize.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_utf8.h"
#include "dsi_log.h"
#include "dsi_settings.h"

/* A piece of the text being split: [start, end) relative to the piece split, and a flag (is a
 * regex match while matching; "remove" after the behavior is applied). */
struct dsc_span {
    size_t start, end;
    int flag;
};

/* The regex of ByteLevel's use_regex (GPT-2's). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;

static void onig_init_once(void)
{
    OnigEncoding encs[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encs, 1);
}

void dsc_onig_init(void)
{
    pthread_once(&onig_once, onig_init_once);
}

static dsi_status_t compile(const char *pat, size_t len, int literal, const char *origin, int step,
                            regex_t **out)
{
    OnigErrorInfo einfo;
    dsc_onig_init();
    int r =
        onig_new(out, (const UChar *)pat, (const UChar *)pat + len, ONIG_OPTION_NONE,
                 ONIG_ENCODING_UTF8, literal ? ONIG_SYNTAX_ASIS : ONIG_SYNTAX_ONIGURUMA, &einfo);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        DSI_ERROR("%s: pre_tokenizer step %d: pattern rejected by Oniguruma: %s", origin, step,
                  (const char *)msg);
        *out = NULL;
        return DSI_ERR_FORMAT;
    }
    return DSI_OK;
}

static const char *const behavior_names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                             "MergedWithNext", "Contiguous"};

static dsi_status_t parse_split(const json_t *j, const char *origin, int step, dsc_split_t *sp)
{
    const json_t *pattern = json_object_get(j, "pattern");
    const json_t *behavior = json_object_get(j, "behavior");
    const json_t *invert = json_object_get(j, "invert");
    const json_t *regex = json_object_get(pattern, "Regex");
    const json_t *string = json_object_get(pattern, "String");
    const json_t *pat = json_is_string(regex) ? regex : string;
    if (!json_is_object(pattern) || json_object_size(pattern) != 1 || !json_is_string(pat)) {
        DSI_ERROR("%s: pre_tokenizer step %d (Split): 'pattern' must be {\"Regex\": string} or "
                  "{\"String\": string}",
                  origin, step);
        return DSI_ERR_FORMAT;
    }
    if (invert != NULL && !json_is_boolean(invert)) {
        DSI_ERROR("%s: pre_tokenizer step %d (Split): 'invert' must be a boolean", origin, step);
        return DSI_ERR_FORMAT;
    }
    sp->invert = json_is_true(invert);
    int found = -1;
    for (int i = 0; i < 5 && json_is_string(behavior); i++) {
        if (strcmp(json_string_value(behavior), behavior_names[i]) == 0)
            found = i;
    }
    if (found < 0) {
        DSI_ERROR("%s: pre_tokenizer step %d (Split): 'behavior' must be one of Removed, "
                  "Isolated, MergedWithPrevious, MergedWithNext, Contiguous",
                  origin, step);
        return DSI_ERR_FORMAT;
    }
    sp->behavior = (dsc_split_behavior_t)found;
    /* DSINFER_TOKENIZER_REGEX=onig forces Oniguruma everywhere (to compare the two paths). */
    const char *force = dsi_env("DSINFER_TOKENIZER_REGEX");
    if (force == NULL || strcmp(force, "onig") != 0)
        sp->fast =
            dsc_pretok_fast_kind(json_string_value(pat), json_string_length(pat), pat == string);
    return compile(json_string_value(pat), json_string_length(pat), pat == string, origin, step,
                   &sp->re);
}

static dsi_status_t parse_bytelevel(const json_t *j, const char *origin, int step,
                                    dsc_pretok_t *out)
{
    const json_t *aps = json_object_get(j, "add_prefix_space");
    const json_t *ure = json_object_get(j, "use_regex");
    if ((aps != NULL && !json_is_boolean(aps)) || (ure != NULL && !json_is_boolean(ure))) {
        DSI_ERROR("%s: pre_tokenizer step %d (ByteLevel): add_prefix_space and use_regex must "
                  "be booleans",
                  origin, step);
        return DSI_ERR_FORMAT;
    }
    /* The reference's defaults when a field is absent: both true. */
    out->add_prefix_space = aps == NULL || json_is_true(aps);
    out->use_regex = ure == NULL || json_is_true(ure);
    if (!out->use_regex)
        return DSI_OK;
    out->splits[out->n_splits].behavior = DSC_SPLIT_ISOLATED;
    return compile(gpt2_pattern, strlen(gpt2_pattern), 0, origin, step,
                   &out->splits[out->n_splits].re);
}

/* Appends the steps of `j` (a step or a nested Sequence); *seen_bytelevel once ByteLevel came. */
static dsi_status_t parse_step(const json_t *j, const char *origin, int *step, int *seen_bl,
                               dsc_pretok_t *out)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || type == NULL) {
        DSI_ERROR("%s: pre_tokenizer step %d: not an object with a 'type'", origin, *step);
        return DSI_ERR_FORMAT;
    }
    if (*seen_bl) {
        DSI_ERROR("%s: pre_tokenizer step %d (%s): steps after ByteLevel are not supported", origin,
                  *step, type);
        return DSI_ERR_UNSUPPORTED;
    }
    if (strcmp(type, "Sequence") == 0) {
        const json_t *list = json_object_get(j, "pretokenizers");
        size_t i;
        const json_t *sub;
        if (!json_is_array(list)) {
            DSI_ERROR("%s: pre_tokenizer Sequence: 'pretokenizers' must be an array", origin);
            return DSI_ERR_FORMAT;
        }
        json_array_foreach(list, i, sub)
        {
            dsi_status_t st = parse_step(sub, origin, step, seen_bl, out);
            if (st != DSI_OK)
                return st;
        }
        return DSI_OK;
    }
    (*step)++;
    if (strcmp(type, "ByteLevel") == 0) {
        *seen_bl = 1;
        return parse_bytelevel(j, origin, *step - 1, out);
    }
    if (strcmp(type, "Split") == 0) {
        if (out->n_splits == DSC_PRETOK_MAX_SPLITS) {
            DSI_ERROR("%s: pre_tokenizer: more than %d Split steps", origin, DSC_PRETOK_MAX_SPLITS);
            return DSI_ERR_UNSUPPORTED;
        }
        dsi_status_t st = parse_split(j, origin, *step - 1, &out->splits[out->n_splits]);
        if (st == DSI_OK)
            out->n_splits++;
        return st;
    }
    DSI_ERROR("%s: pre_tokenizer step %d: type '%s' is not supported (only Split and ByteLevel)",
              origin, *step - 1, type);
    return DSI_ERR_UNSUPPORTED;
}

dsi_status_t dsc_pretok_parse(const json_t *pre, const char *origin, dsc_pretok_t *out)
{
    int step = 0, seen_bl = 0;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(pre)) {
        DSI_ERROR("%s: 'pre_tokenizer' must be an object (byte-level BPE needs ByteLevel)", origin);
        return json_is_null(pre) ? DSI_ERR_UNSUPPORTED : DSI_ERR_FORMAT;
    }
    dsi_status_t st = parse_step(pre, origin, &step, &seen_bl, out);
    if (st == DSI_OK && !seen_bl) {
        DSI_ERROR("%s: pre_tokenizer has no ByteLevel step: only byte-level BPE is supported",
                  origin);
        st = DSI_ERR_UNSUPPORTED;
    }
    if (st != DSI_OK)
        dsc_pretok_cleanup(out);
    return st;
}

void dsc_pretok_cleanup(dsc_pretok_t *p)
{
    for (int i = 0; i <= DSC_PRETOK_MAX_SPLITS; i++) {
        if (p->splits[i].re != NULL)
            onig_free(p->splits[i].re);
    }
    memset(p, 0, sizeof(*p));
}

dsi_status_t dsc_pretok_scratch_init(dsc_pretok_scratch_t *s)
{
    memset(s, 0, sizeof(*s));
    s->region = onig_region_new();
    return s->region != NULL ? DSI_OK : DSI_ERR_NOMEM;
}

void dsc_pretok_scratch_cleanup(dsc_pretok_scratch_t *s)
{
    if (s->region != NULL)
        onig_region_free(s->region, 1);
    for (int i = 0; i <= DSC_PRETOK_MAX_SPLITS; i++)
        free(s->levels[i]);
    free(s->prefix_buf);
    memset(s, 0, sizeof(*s));
}

/* Room for n + 2 more spans at level l. */
static dsi_status_t reserve(dsc_pretok_scratch_t *s, int l, size_t n)
{
    if (n + 2 <= s->level_cap[l])
        return DSI_OK;
    size_t cap = s->level_cap[l] ? s->level_cap[l] : 64;
    while (cap < n + 2)
        cap *= 2;
    struct dsc_span *v = realloc(s->levels[l], cap * sizeof(*v));
    if (v == NULL)
        return DSI_ERR_NOMEM;
    s->levels[l] = v;
    s->level_cap[l] = cap;
    return DSI_OK;
}

/*
 * The reference's find_matches over a onig find_iter: spans covering s[0..len), alternating
 * gaps (flag 0) and matches (flag 1). An empty match directly after a match is skipped, and after
 * an empty match the search moves on by one character.
 */
static dsi_status_t find_matches(const dsc_split_t *sp, dsc_pretok_scratch_t *s, int l,
                                 const unsigned char *p, size_t len, size_t *n_out)
{
    size_t n = 0, prev = 0, last_end = 0;
    int skip_next_empty = 0;
    dsi_status_t st;
    if (len == 0) {
        *n_out = 0; /* the reference yields one empty piece, which is then dropped */
        return DSI_OK;
    }
    while (last_end <= len) {
        size_t ms, me;
        if (sp->fast != DSC_FAST_NONE) {
            if (!dsc_pretok_fast_search(sp->fast, p, len, last_end, &ms, &me))
                break;
        } else {
            int r =
                onig_search(sp->re, p, p + len, p + last_end, p + len, s->region, ONIG_OPTION_NONE);
            if (r == ONIG_MISMATCH)
                break;
            if (r < 0) {
                UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
                onig_error_code_to_str(msg, r);
                DSI_ERROR("pre-tokenizer: regex search failed on a piece of %zu bytes: %s", len,
                          (const char *)msg);
                return DSI_ERR_INTERNAL;
            }
            ms = (size_t)s->region->beg[0];
            me = (size_t)s->region->end[0];
        }
        last_end = me;
        if (me == ms) {
            size_t step = last_end < len ? dsc_utf8_char_len(p + last_end, len - last_end) : 1;
            last_end += step ? step : 1;
            if (skip_next_empty) {
                skip_next_empty = 0;
                continue;
            }
        } else {
            skip_next_empty = 1;
        }
        if ((st = reserve(s, l, n + 2)) != DSI_OK)
            return st;
        if (prev != ms)
            s->levels[l][n++] = (struct dsc_span){prev, ms, 0};
        s->levels[l][n++] = (struct dsc_span){ms, me, 1};
        prev = me;
    }
    if ((st = reserve(s, l, n + 1)) != DSI_OK)
        return st;
    if (prev != len)
        s->levels[l][n++] = (struct dsc_span){prev, len, 0};
    *n_out = n;
    return DSI_OK;
}

/*
 * Turn matches into pieces per the behavior, in place (the reference's fold, step by step):
 * on return flag = 1 means "remove". Returns the index of the first piece; pieces run to n.
 */
static size_t apply_behavior(struct dsc_span *v, size_t *n_io, dsc_split_behavior_t behavior,
                             int invert)
{
    size_t n = *n_io, w = 0;
    int prev = 0;
    for (size_t i = 0; i < n && invert; i++)
        v[i].flag = !v[i].flag;
    switch (behavior) {
    case DSC_SPLIT_REMOVED:
        return 0;
    case DSC_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++)
            v[i].flag = 0;
        return 0;
    case DSC_SPLIT_CONTIGUOUS:
    case DSC_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            int m = v[i].flag;
            int join = behavior == DSC_SPLIT_CONTIGUOUS ? (m == prev) : (m && !prev);
            if (join && w > 0)
                v[w - 1].end = v[i].end;
            else
                v[w++] = (struct dsc_span){v[i].start, v[i].end, 0};
            prev = m;
        }
        *n_io = w;
        return 0;
    case DSC_SPLIT_MERGED_NEXT:
        w = n;
        for (size_t i = n; i-- > 0;) {
            int m = v[i].flag;
            if (m && !prev && w < n)
                v[w].start = v[i].start;
            else
                v[--w] = (struct dsc_span){v[i].start, v[i].end, 0};
            prev = m;
        }
        return w;
    }
    return 0;
}

static dsi_status_t emit_split(const dsc_pretok_t *p, dsc_pretok_scratch_t *s, int level,
                               const char *piece, size_t len, dsc_pretok_piece_cb cb, void *ctx);

/* ByteLevel: the optional prefix space, then the optional GPT-2 split. */
static dsi_status_t bytelevel_step(const dsc_pretok_t *p, dsc_pretok_scratch_t *s,
                                   const char *piece, size_t len, dsc_pretok_piece_cb cb, void *ctx)
{
    if (p->add_prefix_space && piece[0] != ' ') {
        if (len + 1 > s->prefix_cap) {
            char *b = realloc(s->prefix_buf, len + 1);
            if (b == NULL)
                return DSI_ERR_NOMEM;
            s->prefix_buf = b;
            s->prefix_cap = len + 1;
        }
        s->prefix_buf[0] = ' ';
        memcpy(s->prefix_buf + 1, piece, len);
        piece = s->prefix_buf;
        len++;
    }
    if (!p->use_regex)
        return cb(ctx, piece, len);
    return emit_split(p, s, p->n_splits, piece, len, cb, ctx);
}

static dsi_status_t run_level(const dsc_pretok_t *p, dsc_pretok_scratch_t *s, int level,
                              const char *piece, size_t len, dsc_pretok_piece_cb cb, void *ctx)
{
    if (level == p->n_splits)
        return bytelevel_step(p, s, piece, len, cb, ctx);
    return emit_split(p, s, level, piece, len, cb, ctx);
}

/* Split `piece` with step `level` and pass each non-empty result to the next step. */
static dsi_status_t emit_split(const dsc_pretok_t *p, dsc_pretok_scratch_t *s, int level,
                               const char *piece, size_t len, dsc_pretok_piece_cb cb, void *ctx)
{
    const dsc_split_t *sp = &p->splits[level];
    size_t n;
    dsi_status_t st = find_matches(sp, s, level, (const unsigned char *)piece, len, &n);
    if (st != DSI_OK)
        return st;
    size_t first = apply_behavior(s->levels[level], &n, sp->behavior, sp->invert);
    for (size_t i = first; i < n; i++) {
        /* Re-read through s->levels: a deeper step never touches this level's array. */
        struct dsc_span sp_i = s->levels[level][i];
        if (sp_i.flag || sp_i.end == sp_i.start)
            continue;
        if (level == p->n_splits)
            st = cb(ctx, piece + sp_i.start, sp_i.end - sp_i.start);
        else
            st = run_level(p, s, level + 1, piece + sp_i.start, sp_i.end - sp_i.start, cb, ctx);
        if (st != DSI_OK)
            return st;
    }
    return DSI_OK;
}

dsi_status_t dsc_pretok_run(const dsc_pretok_t *p, dsc_pretok_scratch_t *s, const char *text,
                            size_t len, dsc_pretok_piece_cb cb, void *ctx)
{
    if (len == 0)
        return DSI_OK;
    return run_level(p, s, 0, text, len, cb, ctx);
}
