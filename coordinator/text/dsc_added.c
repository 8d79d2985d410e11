/* dsc_added.c - added-token matching with the reference's rules (see dsc_added.h). */
#include "dsc_added.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <oniguruma.h>

#include "dsc_pretokenize.h"
#include "dsc_utf8.h"
#include "dsi_log.h"

dsi_status_t dsc_added_set_init(dsc_added_set_t *set)
{
    memset(set, 0, sizeof(*set));
    set->cap_nodes = 64;
    set->nodes = malloc(set->cap_nodes * sizeof(*set->nodes));
    if (set->nodes == NULL)
        return DSI_ERR_NOMEM;
    set->nodes[0] = (dsc_trie_node_t){0, -1, -1, -1};
    set->n_nodes = 1;
    return DSI_OK;
}

void dsc_added_set_cleanup(dsc_added_set_t *set)
{
    free(set->nodes);
    free(set->info);
    memset(set, 0, sizeof(*set));
}

static int32_t child_of(const dsc_added_set_t *set, int32_t node, uint8_t byte)
{
    for (int32_t c = set->nodes[node].child; c >= 0; c = set->nodes[c].sibling) {
        if (set->nodes[c].byte == byte)
            return c;
    }
    return -1;
}

static int32_t add_child(dsc_added_set_t *set, int32_t node, uint8_t byte)
{
    if (set->n_nodes == set->cap_nodes) {
        size_t cap = set->cap_nodes * 2;
        dsc_trie_node_t *nodes = realloc(set->nodes, cap * sizeof(*nodes));
        if (nodes == NULL)
            return -1;
        set->nodes = nodes;
        set->cap_nodes = cap;
    }
    int32_t c = (int32_t)set->n_nodes++;
    set->nodes[c] = (dsc_trie_node_t){byte, -1, set->nodes[node].child, -1};
    set->nodes[node].child = c;
    return c;
}

dsi_status_t dsc_added_set_add(dsc_added_set_t *set, const char *content, size_t len, int32_t id,
                               unsigned flags)
{
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)content[i];
        int32_t c = child_of(set, node, b);
        if (c < 0 && (c = add_child(set, node, b)) < 0)
            return DSI_ERR_NOMEM;
        node = c;
    }
    if (set->nodes[node].term >= 0) {
        set->info[set->nodes[node].term].flags = flags;
        return DSI_OK;
    }
    if (set->n_info == set->cap_info) {
        size_t cap = set->cap_info ? set->cap_info * 2 : 16;
        dsc_added_info_t *info = realloc(set->info, cap * sizeof(*info));
        if (info == NULL)
            return DSI_ERR_NOMEM;
        set->info = info;
        set->cap_info = cap;
    }
    set->info[set->n_info] = (dsc_added_info_t){id, flags};
    set->nodes[node].term = (int32_t)set->n_info++;
    set->first[(uint8_t)content[0]] = 1;
    return DSI_OK;
}

/* The leftmost-longest match in s[from..len): 1 and [*ms, *me), *term; 0 when none. */
static int find_next(const dsc_added_set_t *set, const unsigned char *s, size_t len, size_t from,
                     size_t *ms, size_t *me, int32_t *term)
{
    for (size_t p = from; p < len; p++) {
        if (!set->first[s[p]])
            continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t q = p; q < len; q++) {
            node = child_of(set, node, s[q]);
            if (node < 0)
                break;
            if (set->nodes[node].term >= 0) {
                best = set->nodes[node].term;
                best_end = q + 1;
            }
        }
        if (best >= 0) {
            *ms = p;
            *me = best_end;
            *term = best;
            return 1;
        }
    }
    return 0;
}

/* The regex \w of the reference's single_word test, compiled once. */
static regex_t *word_re;
static pthread_once_t word_once = PTHREAD_ONCE_INIT;

static void word_re_init(void)
{
    OnigErrorInfo einfo;
    static const char pat[] = "\\w";
    dsc_onig_init();
    if (onig_new(&word_re, (const UChar *)pat, (const UChar *)pat + 2, ONIG_OPTION_NONE,
                 ONIG_ENCODING_UTF8, ONIG_SYNTAX_ONIGURUMA, &einfo) != ONIG_NORMAL)
        word_re = NULL;
}

static int is_word_at(const unsigned char *s, size_t len, size_t at)
{
    pthread_once(&word_once, word_re_init);
    if (word_re == NULL)
        return 0;
    return onig_match(word_re, s, s + len, s + at, NULL, ONIG_OPTION_NONE) > 0;
}

/* Start of the last character of s[0..end). */
static size_t prev_char(const unsigned char *s, size_t end)
{
    size_t p = end - 1;
    while (p > 0 && (s[p] & 0xC0) == 0x80)
        p--;
    return p;
}

static int single_word_ok(const unsigned char *s, size_t len, size_t ms, size_t me)
{
    if (ms > 0 && is_word_at(s, ms, prev_char(s, ms)))
        return 0;
    if (me < len && is_word_at(s, len, me))
        return 0;
    return 1;
}

/* Start of the run of whitespace that ends s[0..end). */
static size_t space_run_start(const unsigned char *s, size_t end)
{
    while (end > 0) {
        size_t p = prev_char(s, end);
        if (!dsc_utf8_is_space(dsc_utf8_decode(s + p, end - p)))
            break;
        end = p;
    }
    return end;
}

/* End of the run of whitespace that starts s[from..len). */
static size_t space_run_end(const unsigned char *s, size_t len, size_t from)
{
    while (from < len) {
        size_t n = dsc_utf8_char_len(s + from, len - from);
        if (n == 0 || !dsc_utf8_is_space(dsc_utf8_decode(s + from, n)))
            break;
        from += n;
    }
    return from;
}

dsi_status_t dsc_added_split(const dsc_added_set_t *set, const char *text, size_t len,
                             int skip_special, dsc_added_seg_cb cb, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t done = 0, search = 0, ms, me;
    int32_t term;
    dsi_status_t st;
    while (set->n_info > 0 && search < len && find_next(set, s, len, search, &ms, &me, &term)) {
        const dsc_added_info_t *info = &set->info[term];
        search = me;
        if (skip_special && (info->flags & DSC_ADDED_SPECIAL))
            continue;
        if ((info->flags & DSC_ADDED_SINGLE_WORD) && !single_word_ok(s, len, ms, me))
            continue;
        size_t start = ms, stop = me;
        if (info->flags & DSC_ADDED_LSTRIP) {
            start = space_run_start(s, ms);
            if (start < done)
                start = done; /* the previous token already took those spaces */
        }
        if (info->flags & DSC_ADDED_RSTRIP)
            stop = space_run_end(s, len, me);
        if (done < start && (st = cb(ctx, text + done, start - done, -1)) != DSI_OK)
            return st;
        if ((st = cb(ctx, text + start, stop - start, info->id)) != DSI_OK)
            return st;
        done = stop;
    }
    if (done < len)
        return cb(ctx, text + done, len - done, -1);
    return DSI_OK;
}
