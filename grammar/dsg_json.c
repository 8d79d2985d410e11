/*
 * dsg_json.c - the grammar of any JSON value / object (response_format json_object, and the
 * parts of a schema that say nothing more), and dsg_from_choice.
 *
 * Whitespace between tokens is at most one space, numbers have at most 16 integer digits, 16
 * fraction digits and 2 exponent digits: a model cannot loop on blanks or digits forever.
 */
#include "dsg_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shared JSON rules: <p>value, <p>object, <p>array, <p>string, <p>chars, <p>char, <p>number,
 * <p>integer, <p>ws. */
void dsg_json_base_rules(dsg_sbuf_t *b, const char *p)
{
    dsg_sbuf_printf(b,
                    "%1$svalue ::= %1$sobject | %1$sarray | %1$sstring | %1$snumber | \"true\" | "
                    "\"false\" | \"null\"\n"
                    "%1$sobject ::= \"{\" %1$sws ( %1$sstring %1$sws \":\" %1$sws %1$svalue ( "
                    "%1$sws \",\" %1$sws %1$sstring %1$sws \":\" %1$sws %1$svalue )* %1$sws )? "
                    "\"}\"\n"
                    "%1$sarray ::= \"[\" %1$sws ( %1$svalue ( %1$sws \",\" %1$sws %1$svalue )* "
                    "%1$sws )? \"]\"\n"
                    "%1$sstring ::= \"\\\"\" %1$schars \"\\\"\"\n"
                    "%1$schars ::= [^\"\\\\\\x00-\\x1F] %1$schars | \"\\\\\" %1$sescape %1$schars "
                    "| \n"
                    "%1$schar ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" %1$sescape\n"
                    "%1$sescape ::= [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}\n"
                    "%1$sinteger ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} )\n"
                    "%1$snumber ::= %1$sinteger ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?\n"
                    "%1$sws ::= \" \"?\n",
                    p);
}

dsi_status_t dsg_json_object_gbnf(const char *rule_prefix, char **gbnf_out)
{
    const char *p = rule_prefix != NULL ? rule_prefix : "";
    dsg_sbuf_t b = {0};
    dsg_sbuf_printf(&b, "%sroot ::= %sjobject\n", p, p);
    char jp[128];
    snprintf(jp, sizeof(jp), "%.100sj", p);
    dsg_json_base_rules(&b, jp);
    if (b.oom) {
        free(b.s);
        return DSI_ERR_NOMEM;
    }
    *gbnf_out = b.s;
    return DSI_OK;
}

dsi_status_t dsg_from_choice(const char *const *choices, size_t n, const char *rule_prefix,
                             char **gbnf_out, char *err, size_t errlen)
{
    const char *p = rule_prefix != NULL ? rule_prefix : "";
    if (n == 0) {
        dsg_err(err, errlen, "the list of choices is empty");
        return DSI_ERR_BAD_REQUEST;
    }
    dsg_sbuf_t b = {0};
    dsg_sbuf_printf(&b, "%sroot ::= ", p);
    for (size_t i = 0; i < n; i++) {
        if (choices[i] == NULL) {
            free(b.s);
            dsg_err(err, errlen, "choice %zu is not a string", i);
            return DSI_ERR_BAD_REQUEST;
        }
        if (i > 0)
            dsg_sbuf_puts(&b, " | ");
        dsg_sbuf_literal(&b, choices[i], strlen(choices[i]));
    }
    dsg_sbuf_puts(&b, "\n");
    if (b.oom) {
        free(b.s);
        return DSI_ERR_NOMEM;
    }
    if (b.n > DSG_MAX_GRAMMAR_BYTES) {
        free(b.s);
        dsg_err(err, errlen, "the choices make a grammar over %u bytes", DSG_MAX_GRAMMAR_BYTES);
        return DSI_ERR_TOO_LARGE;
    }
    *gbnf_out = b.s;
    return DSI_OK;
}
