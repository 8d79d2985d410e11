/*
 * dsn_synth_tok.c - a small byte-level BPE tokenizer for synthetic checkpoints.
 *
 * Same pre-tokenizer, post-processor and decoder sections as DeepSeek-V3's tokenizer.json, so the
 * project's tokenizer runs the same code path on it; the model is 256 byte tokens plus merges
 * learnt by plain BPE on a short built-in English text (deterministic: most frequent pair first,
 * ties to the lowest token ids), and the chat markers of V3 as added tokens.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_synth.h"

#define N_SPECIAL     3   /* bos, eos, pad at ids 0-2 */
#define N_BYTES       256 /* byte tokens at ids 3-258 */
#define MAX_MERGES    500
#define MAX_TOKEN_LEN 64

static const char *const specials[N_SPECIAL] = {
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<\uff5c\u2581pad\u2581\uff5c>",
};

/* The chat and tool markers, in the order of V3's added tokens; only <|EOT|> is special. */
static const char *const markers[] = {
    "<\uff5cfim\u2581hole\uff5c>",
    "<\uff5cfim\u2581begin\uff5c>",
    "<\uff5cfim\u2581end\uff5c>",
    "<\uff5cUser\uff5c>",
    "<\uff5cAssistant\uff5c>",
    "<|EOT|>",
    "<\uff5ctool\u2581calls\u2581begin\uff5c>",
    "<\uff5ctool\u2581calls\u2581end\uff5c>",
    "<\uff5ctool\u2581call\u2581begin\uff5c>",
    "<\uff5ctool\u2581call\u2581end\uff5c>",
    "<\uff5ctool\u2581outputs\u2581begin\uff5c>",
    "<\uff5ctool\u2581outputs\u2581end\uff5c>",
    "<\uff5ctool\u2581output\u2581begin\uff5c>",
    "<\uff5ctool\u2581output\u2581end\uff5c>",
    "<\uff5ctool\u2581sep\uff5c>",
};
#define N_MARKERS ((int)(sizeof(markers) / sizeof(markers[0])))

/* V3's pre-tokenizer regexes (digits in 1-3, CJK runs, then words/punctuation/space). */
static const char *const split_regexes[] = {
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

static const char corpus[] =
    "The quick brown fox jumps over the lazy dog. In the beginning there was the word, and the "
    "word was with the people who wrote it down. This is a small model that runs on many "
    "machines at the same time: the coordinator sends the tokens to the nodes, and the nodes "
    "send their results back. Every layer of the model has attention and a mixture of experts. "
    "The experts are spread over the servers, so that each one holds only a part of the weights. "
    "When you ask a question, the answer comes one token at a time, and the server streams the "
    "text to the client as soon as it is ready. We test the engine with random weights, because "
    "the numbers must be exact even when the text means nothing. Hello, world! How are you "
    "today? I am fine, thank you. What would you like to know about the weather, the news, the "
    "history of science or the best way to cook rice? There are three things to remember: "
    "measure first, change one thing at a time, and write down what you found. Please write a "
    "short story about a robot that learns to paint, and then explain why the sky is blue and "
    "the sea is green in the evening. The information in this document is provided for testing "
    "only; it should not be used for anything else. Thank you for reading, and have a nice day.";

/* GPT-2 ByteLevel: byte b -> a printable code point (printable Latin-1 bytes map to
 * themselves, the others to 256 + n in byte order). */
static void byte_level_map(unsigned cp[256])
{
    unsigned n = 0;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        cp[b] = printable ? b : 256 + n++;
    }
}

static int utf8_put(unsigned cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* ByteLevel code points are all < 0x800 */
}

typedef struct {
    char (*str)[MAX_TOKEN_LEN]; /* [n_tokens] model vocab strings (ids from 0) */
    int n_tokens, cap;
    char (*merges)[2 * MAX_TOKEN_LEN + 1];
    int n_merges;
} bpe_t;

typedef struct {
    int *sym;
    int len, count;
} word_t;

static int find_token(const bpe_t *b, const char *s)
{
    for (int i = N_SPECIAL; i < b->n_tokens; i++) {
        if (strcmp(b->str[i], s) == 0)
            return i;
    }
    return -1;
}

/* Split the corpus into words: an optional leading space and a run of letters, or one byte. */
static int split_words(const int byte_id[256], word_t *words, int max_words)
{
    int n = 0;
    const unsigned char *p = (const unsigned char *)corpus;
    while (*p && n < max_words) {
        const unsigned char *start = p;
        if (*p == ' ' && ((p[1] | 32) >= 'a' && (p[1] | 32) <= 'z'))
            p++;
        while ((*p | 32) >= 'a' && (*p | 32) <= 'z')
            p++;
        if (p == start)
            p++;
        int len = (int)(p - start);
        int found = -1;
        for (int w = 0; w < n && found < 0; w++) {
            if (words[w].len != len)
                continue;
            int same = 1;
            for (int k = 0; k < len && same; k++)
                same = words[w].sym[k] == byte_id[start[k]];
            if (same)
                found = w;
        }
        if (found >= 0) {
            words[found].count++;
            continue;
        }
        words[n].sym = malloc((size_t)len * sizeof(int));
        if (words[n].sym == NULL)
            return -1;
        for (int k = 0; k < len; k++)
            words[n].sym[k] = byte_id[start[k]];
        words[n].len = len;
        words[n].count = 1;
        n++;
    }
    return n;
}

typedef struct {
    int a, b, count;
} pair_t;

static int cmp_pair(const void *x, const void *y)
{
    const pair_t *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/*
 * The most frequent adjacent pair over all words (ties: lowest ids), from a sorted list of all
 * pair occurrences in `scratch` (room for every symbol). Returns its count, 0 when none is left.
 */
static int best_pair(const word_t *words, int n_words, pair_t *scratch, int *a_out, int *b_out)
{
    int n = 0;
    for (int w = 0; w < n_words; w++) {
        for (int k = 0; k + 1 < words[w].len; k++)
            scratch[n++] = (pair_t){words[w].sym[k], words[w].sym[k + 1], words[w].count};
    }
    qsort(scratch, (size_t)n, sizeof(*scratch), cmp_pair);
    int best = 0;
    for (int i = 0; i < n;) {
        int j = i, count = 0;
        while (j < n && scratch[j].a == scratch[i].a && scratch[j].b == scratch[i].b)
            count += scratch[j++].count;
        if (count > best) { /* sorted by ids, so the first maximum has the lowest ids */
            best = count;
            *a_out = scratch[i].a;
            *b_out = scratch[i].b;
        }
        i = j;
    }
    return best;
}

static void apply_merge(word_t *words, int n_words, int a, int b, int id)
{
    for (int w = 0; w < n_words; w++) {
        int out = 0;
        for (int k = 0; k < words[w].len; k++) {
            if (k + 1 < words[w].len && words[w].sym[k] == a && words[w].sym[k + 1] == b) {
                words[w].sym[out++] = id;
                k++;
            } else {
                words[w].sym[out++] = words[w].sym[k];
            }
        }
        words[w].len = out;
    }
}

static dsi_status_t bpe_train(bpe_t *b, int max_merges)
{
    unsigned cp[256];
    byte_level_map(cp);
    int byte_id[256];
    /* Byte tokens in code-point order, as V3's vocabulary has them. */
    for (unsigned next = 0, want = 0; next < 256; want++) {
        for (unsigned x = 0; x < 256; x++) {
            if (cp[x] == want) {
                byte_id[x] = N_SPECIAL + (int)next++;
                b->str[byte_id[x]][utf8_put(cp[x], b->str[byte_id[x]])] = '\0';
            }
        }
    }
    b->n_tokens = N_SPECIAL + N_BYTES;
    enum { MAX_WORDS = 512 };
    word_t words[MAX_WORDS];
    int n_words = split_words(byte_id, words, MAX_WORDS);
    if (n_words < 0)
        return DSI_ERR_NOMEM;
    pair_t *scratch = malloc(sizeof(corpus) * sizeof(pair_t));
    if (scratch == NULL)
        n_words = -n_words; /* fall through to the cleanup below */
    while (scratch != NULL && b->n_merges < max_merges) {
        int x = 0, y = 0;
        if (best_pair(words, n_words, scratch, &x, &y) == 0)
            break;
        char merged[MAX_TOKEN_LEN];
        if (strlen(b->str[x]) + strlen(b->str[y]) >= MAX_TOKEN_LEN)
            break;
        size_t lx = strlen(b->str[x]);
        memcpy(merged, b->str[x], lx);
        memcpy(merged + lx, b->str[y], strlen(b->str[y]) + 1);
        int id = find_token(b, merged);
        if (id < 0) {
            id = b->n_tokens++;
            memcpy(b->str[id], merged, sizeof(merged));
        }
        snprintf(b->merges[b->n_merges++], sizeof(b->merges[0]), "%s %s", b->str[x], b->str[y]);
        apply_merge(words, n_words, x, y, id);
    }
    dsi_status_t st = DSI_OK;
    if (scratch == NULL) {
        n_words = -n_words;
        st = DSI_ERR_NOMEM;
    }
    free(scratch);
    for (int w = 0; w < n_words; w++)
        free(words[w].sym);
    return st;
}

static json_t *added_token(int id, const char *content, int normalized, int special)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", normalized,
                     "special", special);
}

static json_t *tokenizer_json(const bpe_t *b)
{
    json_t *added = json_array();
    for (int i = 0; i < N_SPECIAL; i++)
        json_array_append_new(added, added_token(i, specials[i], 0, 1));
    for (int i = 0; i < N_MARKERS; i++)
        json_array_append_new(
            added, added_token(b->n_tokens + i, markers[i], 1, strcmp(markers[i], "<|EOT|>") == 0));
    json_t *pre = json_array();
    for (size_t i = 0; i < sizeof(split_regexes) / sizeof(split_regexes[0]); i++)
        json_array_append_new(pre, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern",
                                             "Regex", split_regexes[i], "behavior", "Isolated",
                                             "invert", 0));
    json_array_append_new(pre, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel",
                                         "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0));
    json_t *vocab = json_object();
    for (int i = 0; i < b->n_tokens; i++)
        json_object_set_new(vocab, i < N_SPECIAL ? specials[i] : b->str[i], json_integer(i));
    json_t *merges = json_array();
    for (int i = 0; i < b->n_merges; i++)
        json_array_append_new(merges, json_string(b->merges[i]));
    return json_pack(
        "{s:s, s:n, s:n, s:o, s:{s:s, s:[]}, s:{s:s, s:o}, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:b, s:b, s:b}, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "type",
        "Sequence", "normalizers", "pre_tokenizer", "type", "Sequence", "pretokenizers", pre,
        "post_processor", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
        "use_regex", 1, "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
        "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix",
        "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "vocab", vocab, "merges", merges);
}

static const char chat_template[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% set ns = namespace(system_prompt='') %}{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{% set ns.system_prompt = ns.system_prompt + "
    "message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{'<\uff5cUser\uff5c>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' %}{{'<\uff5cAssistant\uff5c>' + message['content'] + "
    "'<\uff5cend\u2581of\u2581sentence\uff5c>'}}{%- endif %}{%- endfor %}"
    "{% if add_generation_prompt %}{{'<\uff5cAssistant\uff5c>'}}{% endif %}";

static json_t *config_token(const char *content)
{
    return json_pack("{s:s, s:s, s:b, s:b, s:b, s:b}", "__type", "AddedToken", "content", content,
                     "lstrip", 0, "normalized", 1, "rstrip", 0, "single_word", 0);
}

static json_t *tokenizer_config_json(void)
{
    return json_pack("{s:b, s:b, s:o, s:b, s:o, s:b, s:i, s:o, s:{}, s:n, s:s, s:s}",
                     "add_bos_token", 1, "add_eos_token", 0, "bos_token", config_token(specials[0]),
                     "clean_up_tokenization_spaces", 0, "eos_token", config_token(specials[1]),
                     "legacy", 1, "model_max_length", 131072, "pad_token",
                     config_token(specials[1]), "sp_model_kwargs", "unk_token", "tokenizer_class",
                     "LlamaTokenizerFast", "chat_template", chat_template);
}

static dsi_status_t dump_to(const char *dir, const char *name, json_t *root)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (root == NULL) {
        DSI_ERROR("%s: out of memory building the JSON", path);
        return DSI_ERR_NOMEM;
    }
    int rc = json_dump_file(root, path, JSON_INDENT(1));
    json_decref(root);
    if (rc != 0) {
        DSI_ERROR("%s: cannot write: %m", path);
        return DSI_ERR_IO;
    }
    return DSI_OK;
}

dsi_status_t dsn_synth_tokenizer_write(const char *dir, int vocab, int *n_tokens)
{
    int room = vocab - N_SPECIAL - N_BYTES - N_MARKERS;
    if (room < 0) {
        DSI_ERROR("synth: a vocab of %d is below the %d ids the tokenizer needs", vocab,
                  N_SPECIAL + N_BYTES + N_MARKERS);
        return DSI_ERR_INVALID_ARG;
    }
    int max_merges = room < MAX_MERGES ? room : MAX_MERGES;
    bpe_t b = {0};
    b.cap = N_SPECIAL + N_BYTES + max_merges;
    b.str = calloc((size_t)b.cap, sizeof(*b.str));
    b.merges = calloc((size_t)(max_merges ? max_merges : 1), sizeof(*b.merges));
    dsi_status_t st = DSI_ERR_NOMEM;
    if (b.str == NULL || b.merges == NULL) {
        DSI_ERROR("synth: out of memory for the tokenizer");
        goto out;
    }
    st = bpe_train(&b, max_merges);
    if (st == DSI_OK)
        st = dump_to(dir, "tokenizer.json", tokenizer_json(&b));
    if (st == DSI_OK)
        st = dump_to(dir, "tokenizer_config.json", tokenizer_config_json());
    if (st == DSI_OK && n_tokens != NULL)
        *n_tokens = b.n_tokens + N_MARKERS;
out:
    free(b.str);
    free(b.merges);
    return st;
}
