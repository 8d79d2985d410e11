/*
 * dsc_api_logprobs.c - the "logprobs" object of a choice, accumulated token by token: chat's
 * {"content": [{token, logprob, bytes, top_logprobs}]} and completions' {tokens, token_logprobs,
 * top_logprobs, text_offset}. Entries are written as JSON text as they come, so a stream's chunk
 * takes the pending ones and the buffers are reused.
 */
#include "dsc_api_impl.h"

#include <string.h>

/* A token's bytes as a JSON string: bytes that are not valid UTF-8 become U+FFFD. */
static void put_token_string(dsc_api_jbuf_t *b, const char *s, size_t n)
{
    size_t bad;
    if (dsc_api_utf8_valid(s, n, &bad)) {
        dsc_api_jbuf_string(b, s, n);
        return;
    }
    char tmp[1024];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < sizeof(tmp);) {
        size_t len = 0;
        for (size_t l = 1; l <= 4 && i + l <= n; l++) {
            if (dsc_api_utf8_valid(s + i, l, &bad)) {
                len = l;
                break;
            }
        }
        if (len == 0) {
            memcpy(tmp + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(tmp + o, s + i, len);
            o += len;
            i += len;
        }
    }
    dsc_api_jbuf_string(b, tmp, o);
}

static void put_bytes(dsc_api_jbuf_t *b, const char *s, size_t n)
{
    dsc_api_jbuf_puts(b, "[");
    for (size_t i = 0; i < n; i++)
        dsc_api_jbuf_printf(b, "%s%u", i ? "," : "", (unsigned)(unsigned char)s[i]);
    dsc_api_jbuf_puts(b, "]");
}

/* {"token": ..., "logprob": ..., "bytes": [...]} without the closing brace. */
static void put_chat_token(dsc_api_jbuf_t *b, const dsc_api_token_lp_t *t)
{
    dsc_api_jbuf_puts(b, "{\"token\":");
    put_token_string(b, t->bytes, t->len);
    dsc_api_jbuf_printf(b, ",\"logprob\":%.9g,\"bytes\":", (double)t->logprob);
    put_bytes(b, t->bytes, t->len);
}

/* Code points of a token's string as `tokens` shows it (U+FFFD for each byte that is not part of
 * a valid character): text_offset is the sum over the tokens before, as vLLM counts it. */
static int64_t text_chars(const char *s, size_t n)
{
    int64_t c = 0;
    size_t bad;
    for (size_t i = 0; i < n; c++) {
        size_t len = 1;
        for (size_t l = 1; l <= 4 && i + l <= n; l++) {
            if (dsc_api_utf8_valid(s + i, l, &bad)) {
                len = l;
                break;
            }
        }
        i += len;
    }
    return c;
}

void dsc_api_lp_add(dsc_api_lp_t *lp, dsc_api_kind_t kind, const dsc_api_logprob_t *e)
{
    const char *sep = lp->n > 0 ? "," : "";
    if (kind == DSC_API_KIND_CHAT) {
        dsc_api_jbuf_puts(&lp->a, sep);
        put_chat_token(&lp->a, &e->token);
        dsc_api_jbuf_puts(&lp->a, ",\"top_logprobs\":[");
        for (int i = 0; i < e->n_top; i++) {
            dsc_api_jbuf_puts(&lp->a, i ? "," : "");
            put_chat_token(&lp->a, &e->top[i]);
            dsc_api_jbuf_puts(&lp->a, "}");
        }
        dsc_api_jbuf_puts(&lp->a, "]}");
    } else {
        dsc_api_jbuf_puts(&lp->a, sep);
        put_token_string(&lp->a, e->token.bytes, e->token.len);
        dsc_api_jbuf_printf(&lp->b, "%s%.9g", sep, (double)e->token.logprob);
        dsc_api_jbuf_printf(&lp->c, "%s{", sep);
        for (int i = 0; i < e->n_top; i++) {
            dsc_api_jbuf_puts(&lp->c, i ? "," : "");
            put_token_string(&lp->c, e->top[i].bytes, e->top[i].len);
            dsc_api_jbuf_printf(&lp->c, ":%.9g", (double)e->top[i].logprob);
        }
        dsc_api_jbuf_puts(&lp->c, "}");
        dsc_api_jbuf_printf(&lp->d, "%s%lld", sep, (long long)lp->offset);
        lp->offset += text_chars(e->token.bytes, e->token.len);
    }
    lp->n++;
}

static const char *text_of(const dsc_api_jbuf_t *b)
{
    return b->data != NULL ? b->data : "";
}

void dsc_api_lp_write(dsc_api_jbuf_t *out, dsc_api_kind_t kind, const dsc_api_lp_t *lp)
{
    if (kind == DSC_API_KIND_CHAT) {
        dsc_api_jbuf_puts(out, "{\"content\":[");
        dsc_api_jbuf_puts(out, text_of(&lp->a));
        dsc_api_jbuf_puts(out, "]}");
        return;
    }
    dsc_api_jbuf_puts(out, "{\"tokens\":[");
    dsc_api_jbuf_puts(out, text_of(&lp->a));
    dsc_api_jbuf_puts(out, "],\"token_logprobs\":[");
    dsc_api_jbuf_puts(out, text_of(&lp->b));
    dsc_api_jbuf_puts(out, "],\"top_logprobs\":[");
    dsc_api_jbuf_puts(out, text_of(&lp->c));
    dsc_api_jbuf_puts(out, "],\"text_offset\":[");
    dsc_api_jbuf_puts(out, text_of(&lp->d));
    dsc_api_jbuf_puts(out, "]}");
}

int dsc_api_lp_failed(const dsc_api_lp_t *lp)
{
    return lp->a.failed || lp->b.failed || lp->c.failed || lp->d.failed;
}

void dsc_api_lp_clear(dsc_api_lp_t *lp)
{
    dsc_api_jbuf_reset(&lp->a);
    dsc_api_jbuf_reset(&lp->b);
    dsc_api_jbuf_reset(&lp->c);
    dsc_api_jbuf_reset(&lp->d);
    lp->n = 0;
}

void dsc_api_lp_free(dsc_api_lp_t *lp)
{
    dsc_api_jbuf_free(&lp->a);
    dsc_api_jbuf_free(&lp->b);
    dsc_api_jbuf_free(&lp->c);
    dsc_api_jbuf_free(&lp->d);
    lp->n = 0;
}
