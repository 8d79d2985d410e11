/*
 * test_unit_sampler_controls.c - the sampling controls and logprobs of the last stage:
 * dsn_sampler_process (history kept in the sampler, only seen ids visited) equals the plain
 * reference dsn_sampler_process_ref bit for bit on random logits and histories for every
 * combination of penalties, logit_bias and min_tokens; min_p drops exactly the tokens below
 * min_p x the most likely; dsn_logprobs equals a double-precision log_softmax within 1e-5 with
 * the right top ids. And the wire: SUBMIT.sampling and TOKENS.logprobs round-trip, a SUBMIT or
 * TOKENS without them has the old number of fields, and out-of-range controls are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_sampler.h"
#include "dst_msg.h"

#define V 1000

static float frand(void)
{
    return (float)rand() / (float)RAND_MAX;
}

static void random_logits(float *l)
{
    for (int i = 0; i < V; i++)
        l[i] = (frand() - 0.5f) * 16.0f;
}

static void test_process_equals_reference(void)
{
    static float a[V], b[V];
    int32_t prompt[50], output[40], bias_ids[3] = {5, 17, 999}, stop_ids[2] = {3, 4};
    float bias_values[3] = {-100.0f, 2.5f, 7.0f};
    const float pens[][3] = {{0, 0, 0},  {0.7f, 0, 0},        {0, 1.3f, 0}, {0, 0, 1.5f},
                             {-2, 2, 0}, {1.1f, -0.5f, 0.7f}, {2, -2, 0.2f}};
    for (size_t pi = 0; pi < sizeof(pens) / sizeof(pens[0]); pi++) {
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            for (uint32_t min_tokens = 0; min_tokens <= 45; min_tokens += 45) {
                dsn_controls_t ctl = {pens[pi][0],
                                      pens[pi][1],
                                      pens[pi][2],
                                      0,
                                      min_tokens,
                                      1,
                                      with_bias ? bias_ids : NULL,
                                      with_bias ? bias_values : NULL,
                                      with_bias ? 3u : 0u,
                                      stop_ids,
                                      2};
                dsn_sampling_t sp = {1.0f, 1.0f, 0, 42};
                dsn_sampler_t s;
                DSI_CHECK_INT_EQ(dsn_sampler_init(&s, &sp, V), 0);
                DSI_CHECK_INT_EQ(dsn_sampler_controls(&s, &ctl), 0);
                for (int i = 0; i < 50; i++)
                    prompt[i] = rand() % 60; /* small ids: many repeats */
                /* The first 10 output tokens came from an earlier submission (re-plan). */
                for (int i = 0; i < 40; i++)
                    output[i] = rand() % 80;
                int32_t all[60];
                memcpy(all, prompt, sizeof(prompt));
                memcpy(all + 50, output, 10 * sizeof(int32_t));
                dsn_sampler_history(&s, all, 60, 10);
                for (uint32_t step = 10; step < 40; step++) {
                    random_logits(a);
                    memcpy(b, a, sizeof(a));
                    dsn_sampler_process(&s, a, step);
                    dsn_sampler_process_ref(&ctl, V, prompt, 50, output, step, b);
                    DSI_CHECK(memcmp(a, b, sizeof(a)) == 0);
                    dsn_sampler_accept(&s, output[step]);
                }
                dsn_sampler_cleanup(&s);
            }
        }
    }
    /* The reference itself, on one hand-checked case: HF's repetition penalty and OpenAI's. */
    float l[V] = {0};
    l[10] = 2.0f;
    l[11] = -2.0f;
    l[12] = 1.0f;
    int32_t p1[1] = {10}, o1[3] = {11, 11, 12};
    dsn_controls_t ctl = {0.5f, 0.25f, 2.0f, 0, 0, -1, NULL, NULL, 0, NULL, 0};
    dsn_sampler_process_ref(&ctl, V, p1, 1, o1, 3, l);
    DSI_CHECK_NEAR(l[10], 1.0, 0);                 /* 2 / 2, in the prompt only */
    DSI_CHECK_NEAR(l[11], -4.0 - 0.5 - 0.5, 1e-6); /* -2 * 2, twice, present */
    DSI_CHECK_NEAR(l[12], 0.5 - 0.25 - 0.5, 1e-6); /* 1 / 2, once, present */
    DSI_CHECK_NEAR(l[13], 0.0, 0);
}

static void test_min_p(void)
{
    static float l[V];
    random_logits(l);
    dsn_sampling_t sp = {0.8f, 1.0f, 0, 7};
    dsn_controls_t ctl = {0, 0, 0, 0.2f, 0, -1, NULL, NULL, 0, NULL, 0};
    dsn_sampler_t s;
    DSI_CHECK_INT_EQ(dsn_sampler_init(&s, &sp, V), 0);
    DSI_CHECK_INT_EQ(dsn_sampler_controls(&s, &ctl), 0);
    dsn_sampler_candidates(&s, l);
    float max = l[dsn_argmax(l, V)];
    int kept = 0;
    for (int i = 0; i < V; i++) {
        double p = exp(((double)l[i] - max) / 0.8);
        if (p < 0.2 * 0.999)
            DSI_CHECK(s.probs[i] == 0.0f);
        else if (p > 0.2 * 1.001)
            DSI_CHECK(s.probs[i] > 0.0f);
        kept += s.probs[i] > 0.0f;
    }
    DSI_CHECK(kept >= 1 && kept < V);
    for (int n = 0; n < 200; n++) { /* every draw is a kept token */
        int32_t t = dsn_sampler_next(&s, l);
        DSI_CHECK(exp(((double)l[t] - max) / 0.8) >= 0.2 * 0.999);
    }
    dsn_sampler_cleanup(&s);
}

static void test_logprobs(void)
{
    static float l[V];
    for (int round = 0; round < 20; round++) {
        random_logits(l);
        if (round == 1)
            l[3] = l[4] = 50.0f; /* a tie: the lower id first */
        double max = l[dsn_argmax(l, V)], sum = 0;
        for (int i = 0; i < V; i++)
            sum += exp((double)l[i] - max);
        int32_t tok = rand() % V, ids[20];
        float lp[20];
        float got = dsn_logprobs(l, V, tok, 20, ids, lp);
        DSI_CHECK_NEAR(got, (double)l[tok] - max - log(sum), 1e-5);
        for (int j = 0; j < 20; j++) {
            DSI_CHECK_NEAR(lp[j], (double)l[ids[j]] - max - log(sum), 1e-5);
            if (j > 0)
                DSI_CHECK(l[ids[j]] < l[ids[j - 1]] ||
                          (l[ids[j]] == l[ids[j - 1]] && ids[j] > ids[j - 1]));
        }
        /* nothing outside the top 20 beats the 20th */
        int beaten = 0;
        for (int i = 0; i < V; i++) {
            int in = 0;
            for (int j = 0; j < 20; j++)
                in |= ids[j] == i;
            beaten += !in && l[i] > l[ids[19]];
        }
        DSI_CHECK_INT_EQ(beaten, 0);
        if (round == 1) {
            DSI_CHECK_INT_EQ(ids[0], 3);
            DSI_CHECK_INT_EQ(ids[1], 4);
        }
    }
}

static dsi_status_t round_trip(const dst_msg_t *m, dst_msg_t *out, uint32_t *fields)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256];
    dsi_status_t st = dst_msg_encode(m, &sb, err, sizeof(err));
    if (st == DSI_OK) {
        /* a fixmap's size is in its first byte */
        *fields = (uint8_t)sb.data[0] & 0x0fu;
        st = dst_msg_decode(sb.data, sb.size, out, err, sizeof(err));
    }
    msgpack_sbuffer_destroy(&sb);
    return st;
}

static void test_wire(void)
{
    int32_t prompt[3] = {1, 2, 3}, bias_ids[2] = {9, 700}, stop_ids[1] = {5};
    float bias_values[2] = {-100.0f, 3.5f};
    uint32_t route[1] = {0};
    dst_msg_t m = {.type = DST_MSG_SUBMIT}, d;
    m.submit = (dst_msg_submit_t){.seq_id = 7,
                                  .n_tokens = 3,
                                  .tokens = prompt,
                                  .max_tokens = 4,
                                  .temperature = 0.5f,
                                  .top_p = 0.9f,
                                  .seed = 1,
                                  .n_route = 1,
                                  .route = route};
    uint32_t fields;
    /* Without controls: the body of before (2 + 9 fields), decoded as zeros. */
    DSI_CHECK_INT_EQ(round_trip(&m, &d, &fields), DSI_OK);
    DSI_CHECK_INT_EQ(fields, 11);
    DSI_CHECK_INT_EQ(dst_msg_sampling_any(&d.submit.sampling), 0);
    dst_msg_free(&d);
    dst_msg_sampling_t *x = &m.submit.sampling;
    *x = (dst_msg_sampling_t){0.5f, -1.0f, 1.2f,     0.05f,       3, 1,       1,
                              4,    2,     bias_ids, bias_values, 1, stop_ids};
    DSI_CHECK_INT_EQ(round_trip(&m, &d, &fields), DSI_OK);
    DSI_CHECK_INT_EQ(fields, 12);
    const dst_msg_sampling_t *y = &d.submit.sampling;
    DSI_CHECK_NEAR(y->presence_penalty, 0.5, 0);
    DSI_CHECK_NEAR(y->frequency_penalty, -1.0, 0);
    DSI_CHECK_NEAR(y->repetition_penalty, 1.2, 1e-7);
    DSI_CHECK_NEAR(y->min_p, 0.05, 1e-8);
    DSI_CHECK_INT_EQ(y->min_tokens, 3);
    DSI_CHECK_INT_EQ(y->ignore_eos, 1);
    DSI_CHECK_INT_EQ(y->logprobs, 1);
    DSI_CHECK_INT_EQ(y->top_logprobs, 4);
    DSI_CHECK_INT_EQ(y->n_bias, 2);
    DSI_CHECK_INT_EQ(y->bias_ids[1], 700);
    DSI_CHECK_NEAR(y->bias_values[0], -100, 0);
    DSI_CHECK_INT_EQ(y->n_stop_ids, 1);
    DSI_CHECK_INT_EQ(y->stop_ids[0], 5);
    dst_msg_free(&d);
    /* Out of range: refused by the check before sending. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256];
    bias_values[1] = 101.0f;
    DSI_CHECK_INT_EQ(dst_msg_encode(&m, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
    bias_values[1] = 1.0f;
    bias_ids[1] = 9; /* twice */
    DSI_CHECK_INT_EQ(dst_msg_encode(&m, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
    bias_ids[1] = 700;
    x->presence_penalty = 2.5f;
    DSI_CHECK_INT_EQ(dst_msg_encode(&m, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
    x->presence_penalty = 0;
    x->top_logprobs = 21;
    DSI_CHECK_INT_EQ(dst_msg_encode(&m, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
    msgpack_sbuffer_destroy(&sb);

    /* TOKENS: without logprobs the old 2 + 3 fields; with them one more, round-tripped. */
    int32_t tok[1] = {42}, top_ids[2] = {42, 7};
    float lp[1] = {-0.25f}, top_lp[2] = {-0.25f, -2.5f};
    dst_msg_t t = {.type = DST_MSG_TOKENS};
    t.tokens = (dst_msg_tokens_t){9, 1, tok, 0, NULL, 0, NULL, NULL, 0, 0, 0, {0}};
    DSI_CHECK_INT_EQ(round_trip(&t, &d, &fields), DSI_OK);
    DSI_CHECK_INT_EQ(fields, 5);
    DSI_CHECK(d.tokens.logprob == NULL);
    dst_msg_free(&d);
    t.tokens = (dst_msg_tokens_t){9, 1, tok, 0, lp, 2, top_ids, top_lp, 0, 0, 0, {0}};
    DSI_CHECK_INT_EQ(round_trip(&t, &d, &fields), DSI_OK);
    DSI_CHECK_INT_EQ(fields, 6);
    DSI_CHECK(d.tokens.logprob != NULL);
    DSI_CHECK_NEAR(d.tokens.logprob[0], -0.25, 0);
    DSI_CHECK_INT_EQ(d.tokens.n_top, 2);
    DSI_CHECK_INT_EQ(d.tokens.top_ids[1], 7);
    DSI_CHECK_NEAR(d.tokens.top_logprobs[1], -2.5, 0);
    dst_msg_free(&d);
}

int main(void)
{
    srand(5);
    test_process_equals_reference();
    test_min_p();
    test_logprobs();
    test_wire();
    return dsi_test_finish();
}
