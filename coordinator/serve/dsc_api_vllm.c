/*
 * dsc_api_vllm.c - vLLM's request extensions this server does not implement (its sampling
 * extensions that it does implement, top_k, min_p, repetition_penalty, min_tokens, ignore_eos,
 * stop_token_ids, chat_template_kwargs, add_generation_prompt, continue_final_message, guided_*,
 * are in dsc_api_params.c's table). Each is accepted at its
 * no-op value (vLLM's default, which is what this server does) and refused otherwise with 400
 * unsupported_parameter naming it; a few harmless ones (scheduling hints, ids) are accepted and
 * ignored. docs/API.md, "vLLM's extensions".
 */
#include <jansson.h>
#include <string.h>

#include "dsc_api_impl.h"

#define K_CHAT 1
#define K_CMPL 2
#define K_BOTH 3

typedef struct {
    const char *name;
    int kinds;
    const char *noop; /* JSON of the value that changes nothing; NULL: any value is ignored */
} vllm_field_t;

static const vllm_field_t vllm_fields[] = {
    {"use_beam_search", K_BOTH, "false"},
    {"length_penalty", K_BOTH, "1"},
    {"include_stop_str_in_output", K_BOTH, "false"},
    {"skip_special_tokens", K_BOTH, "true"},
    {"spaces_between_special_tokens", K_BOTH, "true"},
    {"truncate_prompt_tokens", K_BOTH, "null"},
    {"prompt_logprobs", K_BOTH, "null"},
    {"allowed_token_ids", K_BOTH, "null"},
    {"bad_words", K_BOTH, "[]"},
    {"logits_processors", K_BOTH, "null"},
    {"return_tokens_as_token_ids", K_BOTH, "false"},
    {"add_special_tokens", K_CHAT, "false"},
    {"add_special_tokens", K_CMPL, "true"},
    {"echo", K_CHAT, "false"},
    {"documents", K_CHAT, "null"},
    {"chat_template", K_CHAT, "null"},
    {"mm_processor_kwargs", K_CHAT, "null"},
    /* harmless: scheduling hints and ids change nothing in the answer */
    {"priority", K_BOTH, NULL},
    {"request_id", K_BOTH, NULL},
    {"cache_salt", K_BOTH, NULL},
};

static int kind_mask(dsc_api_kind_t kind)
{
    return kind == DSC_API_KIND_CHAT ? K_CHAT : K_CMPL;
}

int dsc_api_vllm_known(const char *name, dsc_api_kind_t kind)
{
    for (size_t i = 0; i < sizeof(vllm_fields) / sizeof(vllm_fields[0]); i++) {
        if ((vllm_fields[i].kinds & kind_mask(kind)) && strcmp(vllm_fields[i].name, name) == 0)
            return 1;
    }
    return 0;
}

int dsc_api_vllm_check(json_t *root, dsc_api_kind_t kind, dsc_api_error_t *err)
{
    for (size_t i = 0; i < sizeof(vllm_fields) / sizeof(vllm_fields[0]); i++) {
        const vllm_field_t *f = &vllm_fields[i];
        json_t *v = json_object_get(root, f->name);
        if (!(f->kinds & kind_mask(kind)) || v == NULL || json_is_null(v) || f->noop == NULL)
            continue;
        json_t *noop = json_loads(f->noop, JSON_DECODE_ANY, NULL);
        /* 1 and 1.0 are the same no-op number */
        int same = noop != NULL &&
                   (json_equal(v, noop) || (json_is_number(v) && json_is_number(noop) &&
                                            json_number_value(v) == json_number_value(noop)));
        json_decref(noop);
        if (!same)
            return dsc_api_error_set(err, 400, "invalid_request_error", "unsupported_parameter",
                                     f->name,
                                     "Unsupported parameter: '%s' (a vLLM extension) is "
                                     "supported only at %s, which is what this server does.",
                                     f->name, f->noop);
    }
    return 0;
}
