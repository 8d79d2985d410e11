#include "run_text.h"

#include <stdlib.h>
#include <string.h>

static int fail(const char *what, dsi_status_t st)
{
    fprintf(stderr, "dsinfer run: %s: %s\n", what, dsi_status_message(st));
    return -1;
}

int run_text_open(const char *model, run_text_t *t)
{
    memset(t, 0, sizeof(*t));
    dsi_status_t st = dsc_tokenizer_load(model, &t->tok);
    if (st != DSI_OK) {
        fprintf(stderr,
                "dsinfer run: --prompt/--chat need a tokenizer.json in %s (%s); use "
                "--prompt-ids otherwise\n",
                model, dsi_status_message(st));
        return -1;
    }
    st = dsc_decoder_create(t->tok, DSC_DECODE_SKIP_SPECIAL, &t->dec);
    if (st != DSI_OK) {
        run_text_close(t);
        return fail("decoder", st);
    }
    return 0;
}

void run_text_close(run_text_t *t)
{
    dsc_decoder_destroy(t->dec);
    dsc_tokenizer_destroy(t->tok);
    memset(t, 0, sizeof(*t));
}

static int to_int_ids(int32_t *ids, size_t n, int32_t **out, int *n_out)
{
    if (n == 0 || n > (size_t)INT32_MAX) {
        free(ids);
        fprintf(stderr, "dsinfer run: the prompt has no tokens\n");
        return -1;
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

int run_text_prompt(run_text_t *t, const char *text, int32_t **ids, int *n)
{
    int32_t *v;
    size_t k;
    dsi_status_t st = dsc_tokenizer_encode(t->tok, text, strlen(text), DSC_ENCODE_ADD_BOS, &v, &k);
    if (st != DSI_OK)
        return fail("--prompt", st);
    return to_int_ids(v, k, ids, n);
}

int run_text_chat(run_text_t *t, const char *model, const char *style, int thinking,
                  const char *system, const char *user, int32_t **ids, int *n)
{
    dsc_chat_style_t s = DSC_CHAT_AUTO;
    if (style != NULL && strcmp(style, "auto") != 0 && dsc_chat_style_parse(style, &s) != DSI_OK) {
        fprintf(stderr, "dsinfer run: --chat-template: '%s' is not auto, v3, r1 or v3.1\n", style);
        return -1;
    }
    dsc_chat_template_t *tpl;
    dsi_status_t st = dsc_chat_template_load(model, s, &tpl);
    if (st != DSI_OK)
        return fail("chat template", st);
    dsc_chat_message_t msgs[2];
    size_t m = 0;
    memset(msgs, 0, sizeof(msgs));
    if (system != NULL)
        msgs[m++] = (dsc_chat_message_t){
            .role = DSC_CHAT_ROLE_SYSTEM, .content = system, .content_len = strlen(system)};
    msgs[m++] = (dsc_chat_message_t){
        .role = DSC_CHAT_ROLE_USER, .content = user, .content_len = strlen(user)};
    char *text;
    size_t len;
    dsc_chat_opts_t opts = {.thinking = thinking};
    st = dsc_chat_render_opts(tpl, msgs, m, 1, &opts, &text, &len);
    dsc_chat_template_destroy(tpl);
    if (st != DSI_OK)
        return fail("chat template", st);
    int32_t *v;
    size_t k;
    /* The template writes BOS and the role markers itself: they match as special tokens. */
    st = dsc_tokenizer_encode(t->tok, text, len, 0, &v, &k);
    free(text);
    if (st != DSI_OK)
        return fail("--chat", st);
    return to_int_ids(v, k, ids, n);
}

void run_text_stream(run_text_t *t, int32_t token, FILE *out)
{
    const char *s;
    size_t len;
    dsc_decoder_push(t->dec, token, &s, &len);
    if (len > 0) {
        fwrite(s, 1, len, out);
        fflush(out);
    }
}

void run_text_flush(run_text_t *t, FILE *out)
{
    const char *s;
    size_t len;
    dsc_decoder_flush(t->dec, &s, &len);
    if (len > 0)
        fwrite(s, 1, len, out);
}

char *run_text_decode(run_text_t *t, const int32_t *ids, int n)
{
    char *text;
    size_t len;
    if (dsc_tokenizer_decode(t->tok, ids, (size_t)n, DSC_DECODE_SKIP_SPECIAL, &text, &len) !=
        DSI_OK)
        return NULL;
    return text;
}
