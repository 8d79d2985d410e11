/*
 * dsi_settings.c - the settings table, value checking, the environment and the config file. The
 * command line is dsi_settings_args.c.
 */
#include "dsi_settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_settings_impl.h"

const dsi_setting_t dsi_settings_table[DSI_S_COUNT] = {
#define DSI_SETTING_ROW(id, name, type, def, min, max, meta, progs, flags, help) \
    [DSI_S_##id] = {name, DSI_SETTING_##type, def, min, max, meta, progs, flags, help},
    DSI_SETTINGS(DSI_SETTING_ROW)
#undef DSI_SETTING_ROW
};

static const struct {
    const char *name, *command;
} programs[DSI_PB_COUNT] = {
#define DSI_PROGRAM_ROW(id, name, command) [DSI_PB_##id] = {name, command},
    DSI_PROGRAMS(DSI_PROGRAM_ROW)
#undef DSI_PROGRAM_ROW
};

unsigned dsi_settings_program(const char *name)
{
    for (int i = 0; i < DSI_PB_COUNT; i++) {
        if (strcmp(name, programs[i].name) == 0)
            return 1u << i;
    }
    return 0;
}

const char *dsi_settings_command(unsigned program)
{
    for (int i = 0; i < DSI_PB_COUNT; i++) {
        if (program == 1u << i)
            return programs[i].command;
    }
    return "dsinfer config";
}

const char *dsi_settings_env_name(dsi_setting_id_t id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "DSINFER_");
    for (const char *p = dsi_settings_table[id].name; *p != '\0' && (size_t)n + 1 < cap; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
    return buf;
}

const char *dsi_env(const char *name)
{
    /* Only our own variables: UCX's and MPI's (UCX_TLS, OMPI_COMM_WORLD_SIZE) are read by the
     * transport where they are used. */
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* "auto or 0 to 16384", "1K to 4G", "one of a, b, c": what a setting accepts. */
void dsi_settings_accepted(dsi_setting_id_t id, char *buf, size_t cap)
{
    const dsi_setting_t *d = &dsi_settings_table[id];
    const char *pre = (d->flags & DSI_SF_AUTO) ? "auto or " : "";
    switch (d->type) {
    case DSI_SETTING_INT:
        snprintf(buf, cap, "%san integer from %.0f to %.0f", pre, d->min, d->max);
        break;
    case DSI_SETTING_FLOAT:
        snprintf(buf, cap, "%sa number from %g to %g", pre, d->min, d->max);
        break;
    case DSI_SETTING_SIZE:
        snprintf(buf, cap, "%sa size with an optional K/M/G/T suffix (e.g. 512M, 64G)%s", pre,
                 d->min > 0 ? ", at least 1K" : "");
        break;
    case DSI_SETTING_BOOL:
        snprintf(buf, cap, "true or false");
        break;
    case DSI_SETTING_ENUM: {
        int n = snprintf(buf, cap, "one of ");
        for (const char *p = d->meta; *p != '\0' && (size_t)n + 3 < cap; p++) {
            if (*p == '|') {
                buf[n++] = ',';
                buf[n++] = ' ';
            } else {
                buf[n++] = *p;
            }
        }
        buf[n] = '\0';
        break;
    }
    case DSI_SETTING_ADDR:
        snprintf(buf, cap, "HOST:PORT, [IPV6]:PORT or :PORT");
        break;
    case DSI_SETTING_STR:
        snprintf(buf, cap, "a string");
        break;
    }
}

static int parse_size(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || !(v >= 0) || !isdigit((unsigned char)text[0]))
        return -1;
    static const char units[] = "KMGT";
    const char *u = *end != '\0' ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u != NULL) {
        v *= (double)(1ULL << (10 * (u - units + 1)));
        end++;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    else if (*end == 'B')
        end++;
    if (*end != '\0')
        return -1;
    *out = floor(v);
    return 0;
}

static int parse_addr(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon[1] == '\0')
        return -1;
    if (text[0] == '[' && (colon == text || colon[-1] != ']'))
        return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && port >= 0 && port <= 65535 &&
                   isdigit((unsigned char)colon[1])
               ? 0
               : -1;
}

static int parse_enum(const char *choices, const char *text, long long *out)
{
    size_t len = strlen(text);
    long long i = 0;
    for (const char *p = choices; *p != '\0'; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar != NULL ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, text, n) == 0) {
            *out = i;
            return 0;
        }
        p += n + (bar != NULL);
    }
    return -1;
}

int dsi_settings_check(dsi_setting_id_t id, const char *text, dsi_setting_value_t *out)
{
    const dsi_setting_t *d = &dsi_settings_table[id];
    if ((d->flags & DSI_SF_AUTO) && strcmp(text, "auto") == 0) {
        memset(&out->v, 0, sizeof(out->v));
        return 0;
    }
    char *end;
    double x;
    switch (d->type) {
    case DSI_SETTING_STR:
        return 0;
    case DSI_SETTING_ADDR:
        return parse_addr(text);
    case DSI_SETTING_ENUM:
        return parse_enum(d->meta, text, &out->v.i);
    case DSI_SETTING_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "yes") == 0 || strcmp(text, "1") == 0)
            out->v.i = 1;
        else if (strcmp(text, "false") == 0 || strcmp(text, "no") == 0 || strcmp(text, "0") == 0)
            out->v.i = 0;
        else
            return -1;
        return 0;
    case DSI_SETTING_INT: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || (double)v < d->min || (double)v > d->max)
            return -1;
        out->v.i = v;
        return 0;
    }
    case DSI_SETTING_FLOAT:
        errno = 0;
        x = strtod(text, &end);
        if (errno != 0 || end == text || *end != '\0' || !isfinite(x) || x < d->min || x > d->max)
            return -1;
        out->v.f = x;
        return 0;
    case DSI_SETTING_SIZE:
        if (parse_size(text, &x) != 0 || x < d->min || x > d->max)
            return -1;
        out->v.size = (uint64_t)x;
        return 0;
    }
    return -1;
}

int dsi_settings_assign(dsi_settings_t *s, dsi_setting_id_t id, const char *text,
                        dsi_setting_from_t from, const char *where)
{
    dsi_setting_value_t v = {.text = text, .from = from};
    if (dsi_settings_check(id, text, &v) != 0) {
        char acc[160];
        dsi_settings_accepted(id, acc, sizeof(acc));
        if (dsi_settings_table[id].type == DSI_SETTING_ENUM)
            fprintf(stderr, "%s: %s: '%s' is not %s\n", s->command, where, text, acc);
        else
            fprintf(stderr, "%s: %s: '%s' is not valid: expected %s\n", s->command, where, text,
                    acc);
        return -1;
    }
    s->value[id] = v;
    return 0;
}

int dsi_settings_takes(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return (dsi_settings_table[id].programs & s->program) != 0;
}

const char *dsi_settings_str(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return s->value[id].text;
}

long long dsi_settings_int(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return s->value[id].text != NULL ? s->value[id].v.i : 0;
}

double dsi_settings_float(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return s->value[id].text != NULL ? s->value[id].v.f : 0;
}

uint64_t dsi_settings_size(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return s->value[id].text != NULL ? s->value[id].v.size : 0;
}

int dsi_settings_given(const dsi_settings_t *s, dsi_setting_id_t id)
{
    return s->value[id].from != DSI_FROM_DEFAULT;
}

void dsi_settings_cleanup(dsi_settings_t *s)
{
    free(s->file_text);
    s->file_text = NULL;
}

/* ---- the environment and the config file ---- */

int dsi_settings_read_env(dsi_settings_t *s)
{
    for (int id = 0; id < DSI_S_COUNT; id++) {
        if (!dsi_settings_takes(s, id) || (dsi_settings_table[id].flags & DSI_SF_CLI))
            continue;
        char name[64];
        const char *v = dsi_env(dsi_settings_env_name(id, name, sizeof(name)));
        if (v != NULL && dsi_settings_assign(s, id, v, DSI_FROM_ENV, name) != 0)
            return -1;
    }
    return 0;
}

static char *trim(char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    char *e = p + strlen(p);
    while (e > p && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return p;
}

/* Read `path`; a missing file is an error only when `required`. */
int dsi_settings_read_file(dsi_settings_t *s, const char *path, int required)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (!required && errno == ENOENT)
            return 0;
        fprintf(stderr, "%s: --config-file %s: %s\n", s->command, path, strerror(errno));
        return -1;
    }
    snprintf(s->file_path, sizeof(s->file_path), "%s", path);
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    for (size_t n; text != NULL && (n = fread(text + len, 1, cap - len - 1, f)) > 0;) {
        len += n;
        if (len + 1 == cap) {
            char *bigger = cap < (1u << 20) ? realloc(text, cap * 2) : NULL;
            if (bigger == NULL) {
                fprintf(stderr, "%s: %s: too large for a config file\n", s->command, path);
                free(text);
                text = NULL;
            }
            text = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (text == NULL)
        return -1;
    text[len] = '\0';
    s->file_text = text;
    int line = 0;
    for (char *save = NULL, *raw = text; raw != NULL; raw = save) {
        char *nl = strchr(raw, '\n');
        save = nl != NULL ? nl + 1 : NULL;
        if (nl != NULL)
            *nl = '\0';
        line++;
        char *p = trim(raw);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            fprintf(stderr, "%s: %s:%d: expected `name = value`, got '%s'\n", s->command, path,
                    line, p);
            return -1;
        }
        *eq = '\0';
        char *name = trim(p), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        int id = dsi_settings_lookup(s, name, 1);
        if (id == -2) {
            fprintf(stderr, "%s: %s:%d: unknown setting '%s' (`dsinfer config` lists them)\n",
                    s->command, path, line, name);
            return -1;
        }
        if (id < 0)
            continue; /* another program's setting */
        if (dsi_settings_table[id].flags & DSI_SF_CLI) {
            fprintf(stderr, "%s: %s:%d: '%s' is a command-line option only\n", s->command, path,
                    line, name);
            return -1;
        }
        char where[600];
        snprintf(where, sizeof(where), "%s:%d: %s", path, line, name);
        if (dsi_settings_assign(s, id, value, DSI_FROM_FILE, where) != 0)
            return -1;
        s->value[id].line = line;
    }
    return 0;
}

/* ---- memory of the machine ---- */

/* The value in kB of the line of `path` whose label ends with `key` ("MemAvailable:"). */
static int meminfo_kb(const char *path, const char *key, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    int rc = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *k = strstr(line, key);
        if (k != NULL) {
            unsigned long long kb;
            if (sscanf(k + strlen(key), "%llu", &kb) == 1) {
                *out = (uint64_t)kb << 10;
                rc = 0;
            }
            break;
        }
    }
    fclose(f);
    return rc;
}

int dsi_mem_available(int numa_node, uint64_t *out)
{
    if (numa_node < 0)
        return meminfo_kb("/proc/meminfo", "MemAvailable:", out);
    char path[96];
    snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", numa_node);
    /* As the kernel's MemAvailable counts (less its low watermarks): free pages, the page cache
     * on the file LRU lists and reclaimable slab. MemFree alone is near 0 on a machine that just
     * read a checkpoint, whose pages stay cached until something needs them. */
    static const char *const keys[] = {
        "MemFree:", "Active(file):", "Inactive(file):", "SReclaimable:"};
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        uint64_t v;
        if (meminfo_kb(path, keys[i], &v) != 0)
            return -1;
        sum += v;
    }
    *out = sum;
    return 0;
}

uint64_t dsi_mem_budget(uint64_t available, uint64_t headroom, int share)
{
    if (headroom > available / 2)
        headroom = available / 2;
    return (available - headroom) / (uint64_t)(share > 0 ? share : 1);
}
