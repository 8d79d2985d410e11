/*
 * dsc_backend_spec.c - the /metrics of speculative decoding with the MTP layer: the nodes report
 * their steps, drafts and acceptances in HEARTBEAT.spec, the cluster sums them
 * (dsc_cluster_stats_t.spec), and these counters and gauges follow the sums.
 */
#include <stdio.h>

#include "dsc_backend_impl.h"

int dsc_backend_spec_register(dsc_backend_t *b, dsc_metrics_t *m)
{
    static const char *const position[] = {"position"};
    dsc_metric_family_t *steps = dsc_metrics_counter(
        m, "dsinfer_spec_steps_total",
        "Speculative decoding: verify steps of a sequence (its last token and drafts checked)",
        NULL, 0);
    dsc_metric_family_t *tokens =
        dsc_metrics_counter(m, "dsinfer_spec_tokens_total",
                            "Speculative decoding: tokens the verify steps emitted", NULL, 0);
    dsc_metric_family_t *draft_s = dsc_metrics_counter(
        m, "dsinfer_spec_draft_seconds_total",
        "Speculative decoding: wall time the nodes spent drafting with the MTP layer", NULL, 0);
    dsc_metric_family_t *verify_s = dsc_metrics_counter(
        m, "dsinfer_spec_verify_seconds_total",
        "Speculative decoding: wall time of verify steps, from their drafts to their tokens", NULL,
        0);
    dsc_metric_family_t *per_step = dsc_metrics_gauge(
        m, "dsinfer_spec_tokens_per_step",
        "Speculative decoding: mean tokens emitted per verify step (0: no step yet)", NULL, 0);
    b->spec_drafts = dsc_metrics_counter(
        m, "dsinfer_spec_drafts_total",
        "Speculative decoding: drafts verified at each draft position (0: the first)", position, 1);
    b->spec_accepted = dsc_metrics_counter(
        m, "dsinfer_spec_accepted_total",
        "Speculative decoding: drafts accepted at each draft position (0: the first)", position, 1);
    b->spec_acceptance = dsc_metrics_gauge(
        m, "dsinfer_spec_acceptance",
        "Speculative decoding: share of the drafts at each position that were accepted", position,
        1);
    if (steps == NULL || tokens == NULL || draft_s == NULL || verify_s == NULL ||
        per_step == NULL || b->spec_drafts == NULL || b->spec_accepted == NULL ||
        b->spec_acceptance == NULL)
        return 0;
    b->spec_steps = dsc_metric_series(steps, NULL);
    b->spec_tokens = dsc_metric_series(tokens, NULL);
    b->spec_draft_s = dsc_metric_series(draft_s, NULL);
    b->spec_verify_s = dsc_metric_series(verify_s, NULL);
    b->spec_per_step = dsc_metric_series(per_step, NULL);
    return b->spec_steps && b->spec_tokens && b->spec_draft_s && b->spec_verify_s &&
           b->spec_per_step;
}

/* A counter's series moved up by what the totals grew since the last refresh. */
static void grow_by(dsc_metric_series_t *s, uint64_t now, uint64_t seen, double scale)
{
    if (s != NULL && now > seen)
        dsc_metric_add(s, (double)(now - seen) * scale);
}

void dsc_backend_spec_refresh(dsc_backend_t *b, const dsc_spec_totals_t *t)
{
    dsc_spec_totals_t *was = &b->spec_seen;
    if (t->steps == was->steps || b->spec_steps == NULL)
        return; /* (no series appears before the first step) */
    grow_by(b->spec_steps, t->steps, was->steps, 1);
    grow_by(b->spec_tokens, t->emitted, was->emitted, 1);
    grow_by(b->spec_draft_s, t->draft_ns, was->draft_ns, 1e-9);
    grow_by(b->spec_verify_s, t->verify_ns, was->verify_ns, 1e-9);
    dsc_metric_set(b->spec_per_step, t->steps > 0 ? (double)t->emitted / (double)t->steps : 0);
    for (uint32_t i = 0; i < t->k && i < DST_MSG_SPEC_MAX_K; i++) {
        char pos[16];
        snprintf(pos, sizeof(pos), "%u", i);
        const char *labels[1] = {pos};
        dsc_metric_series_t *d = dsc_metric_series(b->spec_drafts, labels);
        dsc_metric_series_t *a = dsc_metric_series(b->spec_accepted, labels);
        dsc_metric_series_t *r = dsc_metric_series(b->spec_acceptance, labels);
        grow_by(d, t->drafted[i], was->drafted[i], 1);
        grow_by(a, t->accepted[i], was->accepted[i], 1);
        if (r != NULL && t->drafted[i] > 0)
            dsc_metric_set(r, (double)t->accepted[i] / (double)t->drafted[i]);
    }
    *was = *t;
}
