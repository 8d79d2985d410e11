/*
 * dsg_impl.h - the compiled grammar, the recognizer's stacks and the builder shared by the files
 * of grammar/ (and the tests that link dsg_internal).
 *
 * A compiled grammar is byte-level: every terminal is a set of bytes (256 bits) and UTF-8
 * classes were lowered to sequences of byte sets. Symbols live in one flat array `sym`: an
 * alternative is a run of symbols ended by DSG_END; a symbol >= 0 is a byte set's index, a symbol
 * <= -2 refers to rule (-sym - 2).
 *
 * A recognizer state is a set of stacks. A stack is a chain of frames (pos, parent) interned in
 * a table, so one int names a stack and equal stacks have equal ids: the top frame's `pos` is a
 * terminal, the other frames' `pos` are where to continue once the rule above them ends. Stack id
 * 0 is the empty stack: the root rule is complete.
 */
#ifndef DSG_IMPL_H
#define DSG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "dsg.h"

#define DSG_END        (-1)
#define DSG_REF(rule)  (-(int32_t)(rule)-2)
#define DSG_RULE_OF(s) (-(s)-2)
#define DSG_MAX_HEIGHT 4096   /* frames in one stack: deeper gives DSI_ERR_TOO_LARGE */
#define DSG_MAX_EXPAND 100000 /* frames visited by one closure */
#define DSG_MAX_REPEAT 10000  /* m and n of {m,n} */
#define DSG_MAX_STATES 4096   /* stacks in one state */

typedef struct {
    uint64_t w[4];
} dsg_bset_t;

static inline int dsg_bset_has(const dsg_bset_t *s, unsigned b)
{
    return (int)((s->w[b >> 6] >> (b & 63)) & 1u);
}
static inline void dsg_bset_add(dsg_bset_t *s, unsigned b)
{
    s->w[b >> 6] |= 1ull << (b & 63);
}

struct dsg_grammar {
    int32_t n_rules;
    int32_t *alt_first; /* (n_rules + 1): rule r's alternatives are alts[alt_first[r] ..] */
    int32_t *alts;      /* start position in sym of each alternative */
    int32_t *sym;       /* (n_sym) symbols */
    int32_t n_sym;
    dsg_bset_t *sets; /* (n_sets) byte sets */
    int32_t n_sets;
    int32_t root; /* the rule `root` */
    char **names; /* (n_rules) for messages */
};

/* ---- growable arrays and text (dsg_buf.c) ---- */
typedef struct {
    int32_t *v;
    int32_t n, cap;
} dsg_ivec_t;
int dsg_ivec_push(dsg_ivec_t *a, int32_t x); /* 0 or -1 (no memory) */
void dsg_ivec_free(dsg_ivec_t *a);

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} dsg_sbuf_t;
void dsg_sbuf_add(dsg_sbuf_t *b, const char *s, size_t n);
void dsg_sbuf_puts(dsg_sbuf_t *b, const char *s);
void dsg_sbuf_printf(dsg_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A GBNF literal of `n` bytes (quotes and escapes added). */
void dsg_sbuf_literal(dsg_sbuf_t *b, const char *s, size_t n);
/* One character as it goes inside [ ] of GBNF (escaped). */
void dsg_sbuf_class_char(dsg_sbuf_t *b, uint32_t cp);
/* The shared JSON rules (dsg_json.c) named <p>value, <p>object, <p>array, <p>string, <p>chars,
 * <p>char, <p>escape, <p>integer, <p>number, <p>ws. */
void dsg_json_base_rules(dsg_sbuf_t *b, const char *p);
/* A regular expression as the body of one rule (dsg_regex.c). `json_string`: the text is the
 * inside of a JSON string, so '"', '\\' and control characters never appear unescaped. */
dsi_status_t dsg_regex_body(dsg_sbuf_t *b, const char *re, size_t len, int json_string, char *err,
                            size_t errlen);
void dsg_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- the builder of a grammar (dsg_build.c): rules of alternatives of symbols ---- */
typedef struct {
    char *name;
    dsg_ivec_t *alts; /* (n_alts) each a run of symbols */
    int32_t n_alts, cap_alts;
    int defined;
} dsg_brule_t;

typedef struct {
    dsg_brule_t *rules;
    int32_t n_rules, cap_rules;
    dsg_bset_t *sets;
    int32_t n_sets, cap_sets;
    int oom;
} dsg_builder_t;

void dsg_builder_init(dsg_builder_t *b);
void dsg_builder_free(dsg_builder_t *b);
/* The rule named `name` (created undefined when new); -1 when out of memory. */
int32_t dsg_builder_rule(dsg_builder_t *b, const char *name, size_t len);
/* A new anonymous rule named after `base`. */
int32_t dsg_builder_anon(dsg_builder_t *b, const char *base);
/* Append an empty alternative to rule r, returning it (NULL when out of memory). */
dsg_ivec_t *dsg_builder_alt(dsg_builder_t *b, int32_t r);
/* The index of a byte set (deduplicated; the 256 single bytes are sets 0..255). */
int32_t dsg_builder_set(dsg_builder_t *b, const dsg_bset_t *s);
/* Append to `seq` a symbol matching one character of a code point set: `ranges` holds n pairs
 * [lo, hi] of code points; `negate` takes the complement (without surrogates). */
int dsg_builder_class(dsg_builder_t *b, dsg_ivec_t *seq, const uint32_t *ranges, int n, int negate,
                      const char *base);
/* Flatten into a grammar; checks every referenced rule is defined and `root` exists. */
dsi_status_t dsg_builder_finish(dsg_builder_t *b, dsg_grammar_t **out, char *err, size_t errlen);

/* ---- stacks (dsg_stack.c) ---- */
typedef struct {
    int32_t *pos;    /* (cap) frame position */
    int32_t *parent; /* (cap) parent frame id, 0 = none */
    int32_t *height; /* (cap) */
    uint32_t *stamp; /* (cap) visit marks */
    int32_t n, cap;
    int32_t *index; /* (index_cap) open addressing: frame id or 0 */
    uint32_t index_cap;
    uint32_t gen;
    const dsg_grammar_t *g;
    dsi_status_t error; /* sticky: a stack over DSG_MAX_HEIGHT, a closure over DSG_MAX_EXPAND */
} dsg_stacks_t;

dsi_status_t dsg_stacks_init(dsg_stacks_t *t, const dsg_grammar_t *g);
void dsg_stacks_cleanup(dsg_stacks_t *t);
/* The start state (stacks of the root's closure) into out; returns the count or -1 (t->error). */
int dsg_stacks_start(dsg_stacks_t *t, int32_t *out, int cap);
/* The same for rule r as if it were the root (compile checks every rule for left recursion). */
int dsg_stacks_rule(dsg_stacks_t *t, int32_t r, int32_t *out, int cap);
/* The state after byte `b` from state `in` (n_in stacks) into out (deduplicated, sorted); the
 * count (0: the byte is not allowed) or -1 (t->error). */
int dsg_stacks_advance(dsg_stacks_t *t, const int32_t *in, int n_in, uint8_t b, int32_t *out,
                       int cap);
/* Re-intern the stacks of `state` into a fresh table (drops the others); ids change in place. */
dsi_status_t dsg_stacks_compact(dsg_stacks_t *t, int32_t *state, int n);

/* ---- the plain reference recognizer (dsg_ref.c) ---- */
typedef struct dsg_ref dsg_ref_t;
dsg_ref_t *dsg_ref_create(const dsg_grammar_t *g); /* NULL when out of memory or left recursion */
void dsg_ref_free(dsg_ref_t *r);
dsg_ref_t *dsg_ref_clone(const dsg_ref_t *r);
int dsg_ref_feed(dsg_ref_t *r, const uint8_t *bytes, size_t len); /* 1 if still alive */
int dsg_ref_complete(const dsg_ref_t *r);

/* ---- vocabulary trie (dsg_vocab.c) ---- */
struct dsg_vocab {
    int32_t n_tokens;
    uint8_t *bytes;     /* all token bytes */
    uint64_t *offset;   /* (n_tokens + 1) */
    int32_t n_nodes;    /* trie nodes in preorder, the root excluded */
    uint8_t *byte;      /* (n_nodes) the byte into the node */
    uint16_t *depth;    /* (n_nodes) 1 for the root's children */
    int32_t *skip;      /* (n_nodes) the node after this one's subtree */
    int32_t *tok_first; /* (n_nodes + 1) tokens ending at node i: toks[tok_first[i] ..] */
    int32_t *toks;
    int32_t max_depth;
};

#endif
