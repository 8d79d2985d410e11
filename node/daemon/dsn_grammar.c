/*
 * dsn_grammar.c - structured output on the last stage (docs/STRUCTURED_OUTPUT.md): SUBMIT's
 * grammar is compiled when the sequence arrives, each sampling step masks the tokens that cannot
 * continue it (after the sampling controls, before the choice; logprobs stay of the raw row), and
 * each sampled token advances the matcher. The token bytes come from the model directory's
 * tokenizer, loaded once, at the first request that has a grammar.
 */
#include <math.h>
#include <stdlib.h>

#include "dsc_tokenizer.h"
#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsn_compute_impl.h"

static dsg_vocab_t *vocab(dsn_compute_t *c)
{
    if (c->grammar_vocab != NULL || c->grammar_vocab_failed)
        return c->grammar_vocab;
    uint64_t t0 = dsi_now_ns();
    dsc_tokenizer_t *tok = NULL;
    dsi_status_t st = dsc_tokenizer_load(c->opts->model_dir, &tok);
    if (st == DSI_OK) {
        st = dsc_tokenizer_grammar_vocab(tok, (int32_t)c->weights->cfg.vocab_size,
                                         &c->grammar_vocab);
        dsc_tokenizer_destroy(tok);
    }
    if (st != DSI_OK) {
        c->grammar_vocab_failed = 1;
        DSI_ERROR("structured output: no vocabulary from the tokenizer of %s (%s): requests with "
                  "a grammar fail",
                  c->opts->model_dir, dsi_status_message(st));
        return NULL;
    }
    DSI_INFO("structured output: token trie of %d tokens made in %.0f ms",
             (int)c->weights->cfg.vocab_size, (double)(dsi_now_ns() - t0) / 1e6);
    return c->grammar_vocab;
}

int dsn_grammar_start(dsn_compute_t *c, dsn_seq_t *s, const dst_msg_submit_t *m)
{
    if (m->grammar_len == 0 || !c->is_last)
        return 0;
    dsg_vocab_t *v = vocab(c);
    if (v == NULL)
        return -1;
    char err[256] = "";
    dsi_status_t st = dsg_compile(m->grammar, m->grammar_len, &s->grammar, err, sizeof(err));
    if (st != DSI_OK) {
        DSI_ERROR("sequence %llu: its grammar does not compile: %s", (unsigned long long)m->seq_id,
                  err);
        return -1;
    }
    int32_t ends[1 + DST_MSG_MAX_STOP_IDS];
    int n_ends = 0;
    ends[n_ends++] = (int32_t)c->weights->cfg.eos_token_id;
    for (uint32_t i = 0; i < m->sampling.n_stop_ids; i++)
        ends[n_ends++] = m->sampling.stop_ids[i];
    if ((st = dsg_matcher_create(s->grammar, v, ends, n_ends, &s->matcher)) != DSI_OK) {
        DSI_ERROR("sequence %llu: no matcher for its grammar: %s", (unsigned long long)m->seq_id,
                  dsi_status_message(st));
        return -1;
    }
    /* A re-submitted request: the output so far goes through the matcher again. */
    for (uint32_t i = m->n_tokens - m->n_generated; i < m->n_tokens; i++) {
        if ((st = dsg_matcher_accept(s->matcher, m->tokens[i])) != DSI_OK) {
            DSI_ERROR("sequence %llu: its earlier output does not match its grammar at token %u",
                      (unsigned long long)m->seq_id, i);
            return -1;
        }
    }
    return 0;
}

void dsn_grammar_mask(dsn_compute_t *c, dsn_seq_t *s, float *logits)
{
    if (s->matcher == NULL)
        return;
    dsi_status_t st = dsg_matcher_mask(s->matcher, logits, (int32_t)c->weights->cfg.vocab_size);
    if (st != DSI_OK) { /* nothing allowed: dsn_grammar_accept ends the sequence */
        DSI_ERROR("sequence %llu: the grammar's mask failed: %s", (unsigned long long)s->id,
                  dsi_status_message(st));
        for (int64_t t = 0; t < c->weights->cfg.vocab_size; t++)
            logits[t] = -INFINITY;
    }
}

uint8_t dsn_grammar_accept(dsn_seq_t *s, int32_t token, uint8_t finish, int *drop)
{
    *drop = 0;
    if (s->matcher == NULL)
        return finish;
    if (dsg_matcher_accept(s->matcher, token) != DSI_OK) {
        *drop = 1;
        if (dsg_matcher_complete(s->matcher))
            return DST_FINISH_STOP;
        DSI_ERROR("sequence %llu: token %d does not continue its grammar (nothing allowed was "
                  "drawn): the request ends with an error",
                  (unsigned long long)s->id, (int)token);
        return DST_FINISH_ERROR;
    }
    if (finish == DST_FINISH_NONE && dsg_matcher_only_end(s->matcher))
        return DST_FINISH_STOP;
    return finish;
}

void dsn_grammar_free(dsn_seq_t *s)
{
    dsg_matcher_free(s->matcher);
    dsg_grammar_free(s->grammar);
    s->matcher = NULL;
    s->grammar = NULL;
}

void dsn_grammar_cleanup(dsn_compute_t *c)
{
    dsg_vocab_free(c->grammar_vocab);
    c->grammar_vocab = NULL;
    c->grammar_vocab_failed = 0;
}
