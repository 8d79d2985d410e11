/*
 * run_text.h - text in and out for `dsinfer run --prompt / --chat`: the model directory's
 * tokenizer and chat template, and a streaming decoder for printing tokens as they come.
 */
#ifndef RUN_TEXT_H
#define RUN_TEXT_H

#include <stdint.h>
#include <stdio.h>

#include "dsc_chat.h"
#include "dsc_tokenizer.h"

typedef struct {
    dsc_tokenizer_t *tok;
    dsc_decoder_t *dec; /* skips special tokens */
} run_text_t;

/* Loads <model>/tokenizer.json. Prints the cause and returns -1 when it cannot. */
int run_text_open(const char *model, run_text_t *t);
void run_text_close(run_text_t *t);
/* A plain prompt: BOS + the text. *ids malloc'ed. */
int run_text_prompt(run_text_t *t, const char *text, int32_t **ids, int *n);
/*
 * A one-turn chat rendered with the model's template (style "auto", "v3", "r1" or "v3.1"; thinking:
 * V3.1's `thinking` variable), optional system prompt, and the generation prompt. *ids malloc'ed.
 */
int run_text_chat(run_text_t *t, const char *model, const char *style, int thinking,
                  const char *system, const char *user, int32_t **ids, int *n);
/* Decode one generated token and write the complete UTF-8 text so far to out. */
void run_text_stream(run_text_t *t, int32_t token, FILE *out);
/* Write what the decoder still holds. */
void run_text_flush(run_text_t *t, FILE *out);
/* The generated text of ids (special tokens skipped), malloc'ed; NULL on error. */
char *run_text_decode(run_text_t *t, const int32_t *ids, int n);

#endif
