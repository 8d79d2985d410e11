/*
 * gguf-greedy.c - greedy generation from token ids with llama.cpp, for the greedy check of
 * scripts/bench-vs-llamacpp.sh (which compiles it against the llama.cpp checkout given; it is
 * not part of dsinfer's build).
 *
 * usage: gguf-greedy MODEL.gguf ID,ID,... N THREADS
 * Prints the N greedy tokens, comma-separated, as `dsinfer run --prompt-ids` does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: gguf-greedy MODEL.gguf ID,ID,... N THREADS\n");
        return 2;
    }
    llama_token prompt[512];
    int n_prompt = 0;
    for (char *p = argv[2]; *p != '\0' && n_prompt < 512;) {
        char *end;
        prompt[n_prompt++] = (llama_token)strtol(p, &end, 10);
        if (end == p) {
            fprintf(stderr, "gguf-greedy: bad token id list '%s'\n", argv[2]);
            return 2;
        }
        p = *end == ',' ? end + 1 : end;
    }
    const int n_gen = atoi(argv[3]), threads = atoi(argv[4]);
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (model == NULL) {
        fprintf(stderr, "gguf-greedy: cannot load %s\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen + 8);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == NULL) {
        fprintf(stderr, "gguf-greedy: cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_token tok[512];
    memcpy(tok, prompt, sizeof(llama_token) * (size_t)n_prompt);
    struct llama_batch batch = llama_batch_get_one(tok, n_prompt);
    for (int g = 0; g < n_gen; g++) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "gguf-greedy: llama_decode failed\n");
            return 1;
        }
        const float *logits = llama_get_logits_ith(ctx, -1);
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            best = logits[v] > logits[best] ? v : best;
        tok[0] = best;
        printf(g ? ",%d" : "%d", best);
        batch = llama_batch_get_one(tok, 1);
    }
    printf("\n");
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
