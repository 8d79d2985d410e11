/*
 * dsinfer tokenize / detokenize: text <-> token ids with a model directory's tokenizer
 * (coordinator/text/dsc_tokenizer.h) and chat template (coordinator/text/dsc_chat.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dsc_chat.h"
#include "dsc_tokenizer.h"
#include "dsc_utf8.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"

/* All of stdin; *buf malloc'ed and NUL-terminated. */
static int read_stdin(char **buf, size_t *len)
{
    size_t cap = 1 << 16, n = 0, got;
    char *p = malloc(cap);
    while (p != NULL && (got = fread(p + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *q = realloc(p, cap *= 2);
            if (q == NULL)
                free(p);
            p = q;
        }
    }
    if (p == NULL || ferror(stdin)) {
        fprintf(stderr, "dsinfer: cannot read stdin: %s\n", p ? strerror(errno) : "out of memory");
        free(p);
        return -1;
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
}

static void tokenize_usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer tokenize --model DIR [options] < text\n\n"
            "Encodes UTF-8 text (stdin, or --text) with DIR's tokenizer.json and prints the ids,\n"
            "space-separated on one line (no special tokens are added unless asked).\n\n"
            "  --model DIR        model directory (or a tokenizer.json file)\n"
            "  --text TEXT        encode TEXT instead of stdin\n"
            "  --json             print {\"ids\": [...], \"count\": N}\n"
            "  --bos              prepend the BOS token\n"
            "  --split-special    encode special tokens in the text as plain text\n"
            "  --chat             the text is one user message: apply the chat template first\n"
            "  --messages         stdin is a JSON array of chat messages (OpenAI format)\n"
            "  --chat-template T  chat template: auto (from tokenizer_config.json, default), v3,\n"
            "                     r1 or v3.1 (--template is the same)\n"
            "  --thinking         V3.1 thinking mode (the template variable `thinking`)\n"
            "  --no-generation-prompt  do not end the chat with the assistant's opening\n"
            "  --render           with --chat/--messages: print the rendered prompt, not ids\n");
}

typedef struct {
    const char *model, *text, *template_name;
    int json, bos, split_special, chat, messages, no_gen, render, thinking;
} tok_opts_t;

static int parse_tokenize(int argc, char **argv, tok_opts_t *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"text", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"bos", no_argument, NULL, 'b'},
        {"split-special", no_argument, NULL, 's'},
        {"chat", no_argument, NULL, 'c'},
        {"messages", no_argument, NULL, 'M'},
        {"template", required_argument, NULL, 'T'},
        {"chat-template", required_argument, NULL, 'T'},
        {"thinking", no_argument, NULL, 'k'},
        {"no-generation-prompt", no_argument, NULL, 'n'},
        {"render", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    memset(o, 0, sizeof(*o));
    o->template_name = "auto";
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 't':
            o->text = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'b':
            o->bos = 1;
            break;
        case 's':
            o->split_special = 1;
            break;
        case 'c':
            o->chat = 1;
            break;
        case 'M':
            o->messages = 1;
            break;
        case 'T':
            o->template_name = optarg;
            break;
        case 'k':
            o->thinking = 1;
            break;
        case 'n':
            o->no_gen = 1;
            break;
        case 'r':
            o->render = 1;
            break;
        case 'h':
            tokenize_usage(stdout);
            return 0;
        default:
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (o->model == NULL || optind != argc || (o->chat && o->messages) ||
        (o->render && !o->chat && !o->messages)) {
        fprintf(stderr, "dsinfer tokenize: %s\n\n",
                o->model == NULL ? "--model is required"
                : optind != argc ? "unexpected argument"
                : o->render      ? "--render needs --chat or --messages"
                                 : "--chat and --messages exclude each other");
        tokenize_usage(stderr);
        return 2;
    }
    return -1;
}

/* Apply the chat template to the input (one user message, or a JSON conversation). */
static int render_chat(const tok_opts_t *o, const char *in, size_t len, char **out, size_t *out_len)
{
    dsc_chat_style_t style;
    dsc_chat_template_t *tpl;
    if (dsc_chat_style_parse(o->template_name, &style) != DSI_OK) {
        fprintf(stderr, "dsinfer tokenize: --template: '%s' is not auto, v3, r1 or v3.1\n",
                o->template_name);
        return 2;
    }
    if (dsc_chat_template_load(o->model, style, &tpl) != DSI_OK) {
        fprintf(stderr, "dsinfer tokenize: no usable chat template in %s (see above)\n", o->model);
        return 1;
    }
    dsi_status_t st;
    dsc_chat_opts_t opts = {.thinking = o->thinking};
    if (o->messages) {
        st = dsc_chat_render_json_opts(tpl, in, len, !o->no_gen, &opts, out, out_len);
    } else {
        dsc_chat_message_t m = {DSC_CHAT_ROLE_USER, in, len, NULL, 0};
        st = dsc_chat_render_opts(tpl, &m, 1, !o->no_gen, &opts, out, out_len);
    }
    dsc_chat_template_destroy(tpl);
    if (st != DSI_OK) {
        fprintf(stderr, "dsinfer tokenize: cannot render the chat: %s\n", dsi_status_message(st));
        return 1;
    }
    return 0;
}

static void print_ids(const int32_t *ids, size_t n, int json)
{
    fputs(json ? "{\"ids\": [" : "", stdout);
    for (size_t i = 0; i < n; i++)
        printf(json ? "%s%d" : "%s%d", i ? (json ? ", " : " ") : "", ids[i]);
    if (json)
        printf("], \"count\": %zu}\n", n);
    else
        putchar('\n');
}

int dsinfer_cmd_tokenize(int argc, char **argv)
{
    tok_opts_t o;
    int rc = parse_tokenize(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char *in = NULL, *text = NULL;
    size_t len, text_len, bad;
    dsc_tokenizer_t *tok = NULL;
    if (o.text != NULL) {
        in = strdup(o.text);
        len = strlen(o.text);
    } else if (read_stdin(&in, &len) != 0) {
        return 1;
    }
    rc = 1;
    if (in == NULL)
        goto out;
    if (!dsc_utf8_validate(in, len, &bad)) {
        fprintf(stderr, "dsinfer tokenize: input is not valid UTF-8 at byte offset %zu\n", bad);
        goto out;
    }
    if (o.chat || o.messages) {
        if ((rc = render_chat(&o, in, len, &text, &text_len)) != 0)
            goto out;
        rc = 1;
    }
    if (o.render) {
        fwrite(text, 1, text_len, stdout);
        rc = 0;
        goto out;
    }
    if (dsc_tokenizer_load(o.model, &tok) != DSI_OK) {
        fprintf(stderr, "dsinfer tokenize: cannot load the tokenizer of %s (see above)\n", o.model);
        goto out;
    }
    int32_t *ids;
    size_t n;
    unsigned flags =
        (o.bos ? DSC_ENCODE_ADD_BOS : 0) | (o.split_special ? DSC_ENCODE_SPLIT_SPECIAL : 0);
    dsi_status_t st = text ? dsc_tokenizer_encode(tok, text, text_len, flags, &ids, &n)
                           : dsc_tokenizer_encode(tok, in, len, flags, &ids, &n);
    if (st != DSI_OK) {
        fprintf(stderr, "dsinfer tokenize: %s\n", dsi_status_message(st));
        goto out;
    }
    print_ids(ids, n, o.json);
    free(ids);
    rc = 0;
out:
    dsc_tokenizer_destroy(tok);
    free(text);
    free(in);
    return rc;
}

static void detokenize_usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer detokenize --model DIR [--skip-special] [ID ...]\n\n"
            "Decodes token ids (arguments, or stdin: whitespace/comma separated, a JSON array,\n"
            "or the {\"ids\": [...]} of tokenize --json) and prints the text. Ids the\n"
            "tokenizer does not know are skipped, as the reference decoder does.\n\n"
            "  --model DIR       model directory (or a tokenizer.json file)\n"
            "  --skip-special    leave out special tokens (BOS, EOS, ...)\n");
}

/* Parse ids from text: integers separated by anything made of spaces, commas, brackets or the
 * {"ids": ...} wrapper. Returns -1 (message printed) on anything else. */
static int parse_ids(char *s, int32_t **ids, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof(**ids));
    char *p = s;
    while (*ids != NULL && *p != '\0') {
        if (strchr(" \t\r\n,[]{}:", *p) != NULL) {
            p++;
            continue;
        }
        if (strncmp(p, "\"ids\"", 5) == 0) {
            p += 5;
            continue;
        }
        if (strncmp(p, "\"count\"", 7) == 0) { /* tokenize --json's count: skip its value */
            p += 7;
            while (*p == ' ' || *p == ':')
                p++;
            strtol(p, &p, 10);
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "dsinfer detokenize: '%.20s' is not a token id\n", p);
            free(*ids);
            *ids = NULL;
            return -1;
        }
        if (*n == cap) {
            int32_t *q = realloc(*ids, (cap *= 2) * sizeof(*q));
            if (q == NULL)
                free(*ids);
            *ids = q;
            if (q == NULL)
                break;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
    if (*ids == NULL) {
        fprintf(stderr, "dsinfer detokenize: out of memory\n");
        return -1;
    }
    return 0;
}

int dsinfer_cmd_detokenize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"skip-special", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL;
    unsigned flags = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 's':
            flags |= DSC_DECODE_SKIP_SPECIAL;
            break;
        case 'h':
            detokenize_usage(stdout);
            return 0;
        default:
            detokenize_usage(stderr);
            return 2;
        }
    }
    if (model == NULL) {
        fprintf(stderr, "dsinfer detokenize: --model is required\n\n");
        detokenize_usage(stderr);
        return 2;
    }
    char *in = NULL;
    size_t len = 0;
    if (optind < argc) {
        for (int i = optind; i < argc; i++)
            len += strlen(argv[i]) + 1;
        in = calloc(len + 1, 1);
        for (int i = optind; in != NULL && i < argc; i++) {
            strcat(in, argv[i]);
            strcat(in, " ");
        }
    } else if (read_stdin(&in, &len) != 0) {
        return 1;
    }
    int32_t *ids = NULL;
    size_t n;
    dsc_tokenizer_t *tok = NULL;
    int rc = 1;
    if (in == NULL || parse_ids(in, &ids, &n) != 0) {
        rc = 2;
        goto out;
    }
    if (dsc_tokenizer_load(model, &tok) != DSI_OK) {
        fprintf(stderr, "dsinfer detokenize: cannot load the tokenizer of %s (see above)\n", model);
        goto out;
    }
    char *text;
    size_t text_len;
    if (dsc_tokenizer_decode(tok, ids, n, flags, &text, &text_len) != DSI_OK)
        goto out;
    fwrite(text, 1, text_len, stdout);
    free(text);
    rc = 0;
out:
    dsc_tokenizer_destroy(tok);
    free(ids);
    free(in);
    return rc;
}
