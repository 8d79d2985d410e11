/*
 * dst_msg.c - message type names, the decode arena, freeing, and ERROR construction.
 */
#include "dst_msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst_msg_impl.h"

/* One malloc per array of a decoded message; a message has a handful, so a list is enough. */
struct dst_msg_arena {
    struct dst_msg_arena *next;
    max_align_t data[];
};

const char *dst_msg_type_name(uint32_t type)
{
    switch (type) {
#define DST_MSG_TYPE_CASE(name, value) \
    case value:                        \
        return #name;
        DST_MSG_TYPE_MAP(DST_MSG_TYPE_CASE)
#undef DST_MSG_TYPE_CASE
    default:
        return "UNKNOWN";
    }
}

void *dst_msg_arena_alloc(dst_msg_t *msg, size_t size)
{
    if (size == 0)
        return NULL;
    if (size > SIZE_MAX - sizeof(dst_msg_arena_t))
        return NULL;
    dst_msg_arena_t *block = calloc(1, sizeof(*block) + size);
    if (block == NULL)
        return NULL;
    block->next = msg->arena;
    msg->arena = block;
    return block->data;
}

void dst_msg_free(dst_msg_t *msg)
{
    if (msg == NULL)
        return;
    dst_msg_arena_t *block = msg->arena;
    while (block != NULL) {
        dst_msg_arena_t *next = block->next;
        free(block);
        block = next;
    }
    memset(msg, 0, sizeof(*msg));
}

void dst_msg_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void dst_msg_error_init(dst_msg_t *msg, dsi_status_t code, uint32_t ref_type, const char *fmt, ...)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = DST_MSG_ERROR;
    /* ERROR.code must be negative: a caller passing DSI_OK still produces a valid message. */
    msg->error.code = code < 0 ? (int32_t)code : (int32_t)DSI_ERR_INTERNAL;
    msg->error.ref_type = ref_type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg->error.text, sizeof(msg->error.text), fmt, ap);
    va_end(ap);
    dst_msg_text_sanitize(msg->error.text);
}

uint32_t dst_msg_nfields(uint32_t type)
{
    switch (type) {
    case DST_MSG_HELLO:
        return 1;
    case DST_MSG_REGISTER:
        return 8;
    case DST_MSG_WELCOME:
        return 2;
    case DST_MSG_PLAN:
        return 11; /* mtp_offsets and mtp_holders optional */
    case DST_MSG_PEERS:
        return 2;
    case DST_MSG_READY:
        return 2;
    case DST_MSG_HEARTBEAT:
        return 10; /* the KV pool's six and "spec" optional */
    case DST_MSG_LOAD_STATS:
        return 7;
    case DST_MSG_DRAIN:
        return 2;
    case DST_MSG_SUBMIT:
        return 15; /* "sampling", "fork_of" and "fork_len", "kv_move", "no_prefix", "grammar"
                      optional */
    case DST_MSG_TOKENS:
        return 5; /* "logprobs" and "spec" optional */
    case DST_MSG_CANCEL:
        return 1;
    case DST_MSG_SHUTDOWN:
        return 1;
    case DST_MSG_ERROR:
        return 3;
    case DST_MSG_BIAS:
        return 3;
    case DST_MSG_ADMIN:
        return 3;
    case DST_MSG_ADMIN_REPLY:
        return 2;
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        return 2;
    case DST_MSG_KV_MOVE:
        return 7; /* "first_layer" and "end_layer" optional */
    case DST_MSG_KV_DONE:
        return 5;
    default:
        return 0;
    }
}

int dst_msg_sampling_any(const dst_msg_sampling_t *s)
{
    return s->presence_penalty != 0.0f || s->frequency_penalty != 0.0f ||
           s->repetition_penalty != 0.0f || s->min_p != 0.0f || s->min_tokens != 0 ||
           s->ignore_eos || s->logprobs || s->top_logprobs || s->n_bias || s->n_stop_ids;
}
