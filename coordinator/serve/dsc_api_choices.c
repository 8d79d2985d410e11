/*
 * dsc_api_choices.c - the request fields that ask for several choices or reshape them: n and
 * best_of (completions; chat too, as vLLM's extension), echo (completions). docs/API.md,
 * "Several choices".
 */
#include <jansson.h>

#include "dsc_api_impl.h"

#define INVALID "invalid_request_error"

int dsc_api_choices_parse(json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r,
                          dsc_api_error_t *err)
{
    long long x;
    int present, rc, stream = 0;
    if ((rc = dsc_api_get_integer(root, "n", 1, DSC_API_MAX_N, &x, &present, err)))
        return rc;
    r->n = present ? (int)x : 1;
    r->best_of = r->n;
    r->echo = 0;
    if ((rc = dsc_api_get_bool(root, "stream", &stream, err)) ||
        (rc = dsc_api_get_integer(root, "best_of", 1, DSC_API_MAX_N, &x, &present, err)))
        return rc;
    if (present) {
        if (x < r->n)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", "best_of",
                                     "'best_of' (%lld) must be at least 'n' (%d).", x, r->n);
        if (x > r->n && stream)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", "best_of",
                                     "'best_of' above 'n' cannot be streamed: the best choices "
                                     "are known only at the end.");
        r->best_of = (int)x;
    }
    if (kind != DSC_API_KIND_COMPLETION)
        return 0; /* echo is a completions field (vLLM's chat echo: dsc_api_vllm.c) */
    if ((rc = dsc_api_get_bool(root, "echo", &r->echo, err)))
        return rc;
    if (r->echo && r->logprobs)
        return dsc_api_error_set(err, 400, INVALID, "unsupported_parameter", "echo",
                                 "Unsupported parameter: 'echo' with 'logprobs' (the prompt "
                                 "tokens' logprobs) is not supported; echo alone is.");
    return 0;
}
