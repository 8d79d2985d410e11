/* dst_msg_bounds.c - the bounds of SUBMIT's numeric request fields (dst_msg.h, dst_bounds). */
#include <float.h>
#include <math.h>

#include "dst_msg.h"

const dst_bound_t dst_bounds[DST_BOUND_END] = {
    [DST_BOUND_MAX_TOKENS] = {"max_tokens", 1, DST_MSG_MAX_TOKENS, 0, 0, DST_MSG_MAX_TOKENS},
    /* The CLI samples up to 100; the HTTP API keeps OpenAI's 2. */
    [DST_BOUND_TEMPERATURE] = {"temperature", 0, 100, 0, 1, 2},
    [DST_BOUND_TOP_P] = {"top_p", 0, 1, 1, 1, 1},
    [DST_BOUND_TOP_K] = {"top_k", 0, (double)DST_MSG_MAX_TOKEN_ID + 1, 0, 0,
                         (double)DST_MSG_MAX_TOKEN_ID + 1},
    [DST_BOUND_GRAMMAR] = {"grammar", 0, DST_MSG_MAX_GRAMMAR, 0, 0, DST_MSG_MAX_GRAMMAR},
};

int dst_bound_ok(dst_bound_id_t id, double x, int api)
{
    if ((unsigned)id >= DST_BOUND_END)
        return 0;
    const dst_bound_t *b = &dst_bounds[id];
    if (!isfinite(x))
        return 0;
    if (b->is_float) {
        /* Beyond FLT_MAX there is no float32 (and converting is undefined); below the smallest
         * subnormal, x becomes 0 (top_p 1e-300). */
        if (fabs(x) > FLT_MAX)
            return 0;
        x = (double)(float)x;
    }
    double hi = api ? b->api_hi : b->hi;
    return x <= hi && (b->lo_open ? x > b->lo : x >= b->lo);
}
