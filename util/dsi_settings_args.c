/*
 * dsi_settings_args.c - the command line of every program (getopt_long over the table), its
 * --help and the listing of `dsinfer config`.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_settings.h"
#include "dsi_settings_impl.h"

static const struct {
    const char *name;
    dsi_setting_id_t id;
    unsigned programs;
} aliases[] = {
#define DSI_ALIAS_ROW(name, id, progs) {name, DSI_S_##id, progs},
    DSI_SETTING_ALIASES(DSI_ALIAS_ROW)
#undef DSI_ALIAS_ROW
};
#define N_ALIASES ((int)(sizeof(aliases) / sizeof(aliases[0])))

#define OPT_SETTING 1000 /* getopt value of setting id 0 */
#define OPT_ALIAS   3000 /* of alias 0 */
#define OPT_HELP    'h'

static void warn_alias(const dsi_settings_t *s, int a)
{
    static unsigned long long warned; /* one bit per alias: once per process */
    if (warned & (1ULL << a))
        return;
    warned |= 1ULL << a;
    fprintf(stderr, "%s: --%s is deprecated, use --%s\n", s->command, aliases[a].name,
            dsi_settings_table[aliases[a].id].name);
}

int dsi_settings_lookup(const dsi_settings_t *s, const char *name, int any_program)
{
    int known = 0;
    for (int id = 0; id < DSI_S_COUNT; id++) {
        if (strcmp(name, dsi_settings_table[id].name) == 0) {
            if (dsi_settings_takes(s, id))
                return id;
            known = 1;
        }
    }
    for (int a = 0; a < N_ALIASES; a++) {
        if (strcmp(name, aliases[a].name) == 0) {
            if ((aliases[a].programs & s->program) && dsi_settings_takes(s, aliases[a].id)) {
                warn_alias(s, a);
                return aliases[a].id;
            }
            known = 1;
        }
    }
    (void)any_program; /* other programs' names are known either way */
    return known ? -1 : -2;
}

/* Defaults of every setting the program takes (the table's defaults are checked by a test). */
static void set_defaults(dsi_settings_t *s)
{
    for (int id = 0; id < DSI_S_COUNT; id++) {
        dsi_setting_value_t *v = &s->value[id];
        memset(v, 0, sizeof(*v));
        const char *def = dsi_settings_table[id].def;
        if (def != NULL && dsi_settings_check(id, def, v) == 0)
            v->text = def;
        v->from = DSI_FROM_DEFAULT;
    }
}

/* --config-file from argv (before anything else is parsed), else its variable, else default. */
static int read_config_file(dsi_settings_t *s, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config-file") == 0 && i + 1 < argc)
            path = argv[i + 1];
        else if (strncmp(argv[i], "--config-file=", 14) == 0)
            path = argv[i] + 14;
    }
    dsi_setting_from_t from = DSI_FROM_FLAG;
    if (path == NULL && (path = dsi_env("DSINFER_CONFIG_FILE")) != NULL)
        from = DSI_FROM_ENV;
    if (path == NULL) {
        /* The default file is read when it exists. */
        return dsi_settings_read_file(s, dsi_settings_table[DSI_S_CONFIG_FILE].def, 0);
    }
    s->value[DSI_S_CONFIG_FILE].text = path;
    s->value[DSI_S_CONFIG_FILE].from = from;
    if (path[0] == '\0') /* --config-file "": no file */
        return 0;
    return dsi_settings_read_file(s, path, 1);
}

static struct option *long_options(const dsi_settings_t *s)
{
    struct option *o = calloc(DSI_S_COUNT + N_ALIASES + 2, sizeof(*o));
    if (o == NULL)
        return NULL;
    int n = 0;
    for (int id = 0; id < DSI_S_COUNT; id++) {
        if (!dsi_settings_takes(s, id))
            continue;
        int bool_ = dsi_settings_table[id].type == DSI_SETTING_BOOL;
        o[n++] =
            (struct option){dsi_settings_table[id].name,
                            bool_ ? optional_argument : required_argument, NULL, OPT_SETTING + id};
    }
    for (int a = 0; a < N_ALIASES; a++) {
        if ((aliases[a].programs & s->program) && dsi_settings_takes(s, aliases[a].id))
            o[n++] = (struct option){aliases[a].name, required_argument, NULL, OPT_ALIAS + a};
    }
    o[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    return o;
}

static int parse_flags(dsi_settings_t *s, int argc, char **argv, void (*usage)(FILE *), int *first)
{
    struct option *longopts = long_options(s);
    if (longopts == NULL)
        return 2;
    int rc = 0, c;
    optind = 0; /* glibc: start over, as for a new argv */
    opterr = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        if (c == OPT_HELP) {
            if (usage != NULL)
                usage(stdout);
            dsi_settings_usage(stdout, s->program);
            rc = 1;
        } else if (c >= OPT_SETTING && c < OPT_SETTING + DSI_S_COUNT) {
            dsi_setting_id_t id = c - OPT_SETTING;
            char where[80];
            snprintf(where, sizeof(where), "--%s", dsi_settings_table[id].name);
            const char *text = optarg;
            if (dsi_settings_table[id].type == DSI_SETTING_BOOL && text == NULL)
                text = "true";
            if (dsi_settings_assign(s, id, text, DSI_FROM_FLAG, where) != 0)
                rc = 2;
        } else if (c >= OPT_ALIAS && c < OPT_ALIAS + N_ALIASES) {
            int a = c - OPT_ALIAS;
            warn_alias(s, a);
            char where[80];
            snprintf(where, sizeof(where), "--%s", aliases[a].name);
            if (dsi_settings_assign(s, aliases[a].id, optarg, DSI_FROM_FLAG, where) != 0)
                rc = 2;
        } else if (c == ':') {
            fprintf(stderr, "%s: %s needs a value\n", s->command, arg);
            rc = 2;
        } else {
            fprintf(stderr, "%s: unknown option '%s' (%s --help lists them)\n", s->command, arg,
                    s->command);
            rc = 2;
        }
    }
    if (first != NULL)
        *first = optind;
    else if (rc == 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", s->command, argv[optind]);
        rc = 2;
    }
    free(longopts);
    return rc;
}

int dsi_settings_parse(dsi_settings_t *s, unsigned program, int argc, char **argv,
                       void (*usage)(FILE *out))
{
    return dsi_settings_parse_args(s, program, argc, argv, usage, NULL);
}

int dsi_settings_parse_args(dsi_settings_t *s, unsigned program, int argc, char **argv,
                            void (*usage)(FILE *out), int *first)
{
    memset(s, 0, sizeof(*s));
    s->program = program;
    s->command = dsi_settings_command(program);
    set_defaults(s);
    if (read_config_file(s, argc, argv) != 0 || dsi_settings_read_env(s) != 0)
        return 2;
    return parse_flags(s, argc, argv, usage, first);
}

/* Words of `text` on lines of at most `width` columns, each indented by six spaces. */
static void wrap(FILE *out, const char *text, int width)
{
    int col = 0;
    while (*text != '\0') {
        while (*text == ' ')
            text++;
        int len = (int)strcspn(text, " ");
        if (len == 0)
            break;
        if (col > 0 && col + 1 + len > width) {
            fputc('\n', out);
            col = 0;
        }
        col += fprintf(out, col == 0 ? "      %.*s" : " %.*s", len, text);
        text += len;
    }
    fputc('\n', out);
}

void dsi_settings_usage(FILE *out, unsigned program)
{
    fprintf(out, "Options (each also the variable DSINFER_<NAME>, or a line `name = value` of the\n"
                 "config file; `dsinfer config` shows where each value comes from):\n");
    for (int id = 0; id < DSI_S_COUNT; id++) {
        const dsi_setting_t *d = &dsi_settings_table[id];
        if (!(d->programs & program))
            continue;
        if (d->type == DSI_SETTING_BOOL)
            fprintf(out, "  --%s\n", d->name);
        else
            fprintf(out, "  --%s %s\n", d->name, d->meta);
        char text[1024], env[64];
        int n = snprintf(text, sizeof(text), "%s (default: %s", d->help,
                         d->def != NULL ? d->def : "none");
        if (!(d->flags & DSI_SF_CLI) && n > 0 && (size_t)n < sizeof(text))
            n += snprintf(text + n, sizeof(text) - (size_t)n, "; %s",
                          dsi_settings_env_name(id, env, sizeof(env)));
        if (n > 0 && (size_t)n < sizeof(text))
            snprintf(text + n, sizeof(text) - (size_t)n, ")");
        wrap(out, text, 96);
    }
    for (int a = 0; a < N_ALIASES; a++) {
        if ((aliases[a].programs & program) &&
            (dsi_settings_table[aliases[a].id].programs & program))
            fprintf(out, "  --%s: deprecated name of --%s\n", aliases[a].name,
                    dsi_settings_table[aliases[a].id].name);
    }
}

void dsi_settings_print(FILE *out, const dsi_settings_t *s)
{
    if (s->file_path[0] != '\0')
        fprintf(out, "# config file: %s\n", s->file_path);
    else
        fprintf(out, "# config file: none (%s does not exist)\n", s->value[DSI_S_CONFIG_FILE].text);
    for (int id = 0; id < DSI_S_COUNT; id++) {
        if (!dsi_settings_takes(s, id) || id == DSI_S_PROGRAM)
            continue;
        const dsi_setting_value_t *v = &s->value[id];
        char line[1024], env[64];
        /* A key is not shown, only whether one is set. */
        const char *text = v->text == NULL       ? ""
                           : id == DSI_S_API_KEY ? "(set, not shown)"
                                                 : v->text;
        snprintf(line, sizeof(line), "%s = %s", dsi_settings_table[id].name, text);
        switch (v->from) {
        case DSI_FROM_DEFAULT:
            fprintf(out, "%-44s # default\n", line);
            break;
        case DSI_FROM_FILE:
            fprintf(out, "%-44s # file %s:%d\n", line, s->file_path, v->line);
            break;
        case DSI_FROM_ENV:
            fprintf(out, "%-44s # environment %s\n", line,
                    dsi_settings_env_name(id, env, sizeof(env)));
            break;
        case DSI_FROM_FLAG:
            fprintf(out, "%-44s # flag --%s\n", line, dsi_settings_table[id].name);
            break;
        }
    }
}

static const struct {
    const char *name, *help;
} env_only[] = {
#define DSI_ENV_ROW(name, help) {name, help},
    DSI_ENV_ONLY(DSI_ENV_ROW)
#undef DSI_ENV_ROW
};

/* Text in a Markdown table cell: '|' escaped. */
static void cell(FILE *out, const char *text)
{
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '|')
            fputc('\\', out);
        fputc(*c, out);
    }
}

void dsi_settings_markdown(FILE *out)
{
    static const char *const programs_of[DSI_PB_COUNT] = {
#define DSI_PROGRAM_NAME(id, name, command) [DSI_PB_##id] = name,
        DSI_PROGRAMS(DSI_PROGRAM_NAME)
#undef DSI_PROGRAM_NAME
    };
    fprintf(out, "| option | variable | default | programs | meaning |\n|---|---|---|---|---|\n");
    for (int id = 0; id < DSI_S_COUNT; id++) {
        const dsi_setting_t *d = &dsi_settings_table[id];
        if (d->programs == DSI_P_CONFIG)
            continue;
        char env[64], progs[160] = "";
        if (d->flags & DSI_SF_CLI)
            snprintf(env, sizeof(env), "-");
        else
            snprintf(env, sizeof(env), "`%s`", dsi_settings_env_name(id, env + 32, 32));
        if (d->programs == DSI_P_ALL) {
            snprintf(progs, sizeof(progs), "all");
        } else {
            for (int p = 0; p < DSI_PB_COUNT; p++) {
                if (d->programs & (1u << p)) {
                    size_t n = strlen(progs);
                    snprintf(progs + n, sizeof(progs) - n, "%s%s", n ? ", " : "", programs_of[p]);
                }
            }
        }
        fprintf(out, "| `--%s", d->name);
        if (d->type != DSI_SETTING_BOOL) {
            fputc(' ', out);
            cell(out, d->meta);
        }
        fprintf(out, "` | %s | %s%s%s | %s | ", env, d->def ? "`" : "", d->def ? d->def : "none",
                d->def ? "`" : "", progs);
        cell(out, d->help);
        fprintf(out, " |\n");
    }
    fprintf(out, "\nOld names, still accepted with a warning:\n\n");
    for (int a = 0; a < N_ALIASES; a++)
        fprintf(out, "- `--%s`: `--%s`\n", aliases[a].name, dsi_settings_table[aliases[a].id].name);
    fprintf(out, "\nVariables that are not options:\n\n");
    for (size_t i = 0; i < sizeof(env_only) / sizeof(env_only[0]); i++)
        fprintf(out, "- `%s`: %s\n", env_only[i].name, env_only[i].help);
}
