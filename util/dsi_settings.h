/*
 * dsi_settings.h - the settings of every dsinfer program: one table (dsi_settings_table.h), one
 * parser, one vocabulary.
 *
 * A program parses its command line with dsi_settings_parse(); each setting it takes gets its
 * value from, in order of precedence: the --flag, the environment variable DSINFER_<NAME>, the
 * config file (--config-file, DSINFER_CONFIG_FILE, else /etc/dsinfer/dsinfer.conf when it
 * exists), the table's default. Values are checked against the table's type and range; an error
 * names the option (or variable, or file:line) and what it accepts.
 *
 * dsi_env() is the one place that reads DSINFER_ variables from the environment.
 */
#ifndef DSI_SETTINGS_H
#define DSI_SETTINGS_H

#include <stdint.h>
#include <stdio.h>

/* The programs, as bits of a setting's `programs` mask. */
#define DSI_PROGRAMS(X)                            \
    X(RUN, "run", "dsinfer run")                   \
    X(SERVE, "serve", "dsinfer serve")             \
    X(PLAN, "plan", "dsinfer plan")                \
    X(INSPECT, "inspect", "dsinfer inspect")       \
    X(COORD, "coordinator", "dsinfer-coordinator") \
    X(NODE, "node", "dsinfer-node")                \
    X(CLUSTER, "cluster", "dsinfer-cluster")       \
    X(CONFIG, "config", "dsinfer config")          \
    X(ADMIN, "admin", "dsinfer cluster")

enum {
#define DSI_PROGRAM_BIT(id, name, command) DSI_PB_##id,
    DSI_PROGRAMS(DSI_PROGRAM_BIT)
#undef DSI_PROGRAM_BIT
        DSI_PB_COUNT
};
#define DSI_P_RUN     (1u << DSI_PB_RUN)
#define DSI_P_SERVE   (1u << DSI_PB_SERVE)
#define DSI_P_PLAN    (1u << DSI_PB_PLAN)
#define DSI_P_INSPECT (1u << DSI_PB_INSPECT)
#define DSI_P_COORD   (1u << DSI_PB_COORD)
#define DSI_P_NODE    (1u << DSI_PB_NODE)
#define DSI_P_CLUSTER (1u << DSI_PB_CLUSTER)
#define DSI_P_CONFIG  (1u << DSI_PB_CONFIG)
#define DSI_P_ADMIN   (1u << DSI_PB_ADMIN)
#define DSI_P_ALL     ((1u << DSI_PB_COUNT) - 1)

#define DSI_SF_AUTO 1u /* accepts "auto", the value 0 */
#define DSI_SF_CLI  2u /* a flag only: no environment variable, no config-file key */

#include "dsi_settings_table.h"

typedef enum {
#define DSI_SETTING_ID(id, name, type, def, min, max, meta, progs, flags, help) DSI_S_##id,
    DSI_SETTINGS(DSI_SETTING_ID)
#undef DSI_SETTING_ID
        DSI_S_COUNT
} dsi_setting_id_t;

typedef enum {
    DSI_SETTING_STR,
    DSI_SETTING_INT,
    DSI_SETTING_FLOAT,
    DSI_SETTING_SIZE,
    DSI_SETTING_BOOL,
    DSI_SETTING_ENUM,
    DSI_SETTING_ADDR,
} dsi_setting_type_t;

/* One row of the table. */
typedef struct {
    const char *name; /* the --flag without dashes */
    dsi_setting_type_t type;
    const char *def;   /* default as text, NULL: none */
    double min, max;   /* INT, FLOAT, SIZE */
    const char *meta;  /* the value's name in --help; ENUM: the choices, '|'-separated */
    unsigned programs; /* DSI_P_* */
    unsigned flags;    /* DSI_SF_* */
    const char *help;
} dsi_setting_t;

/* Where a value came from, in increasing precedence. */
typedef enum {
    DSI_FROM_DEFAULT,
    DSI_FROM_FILE,
    DSI_FROM_ENV,
    DSI_FROM_FLAG,
} dsi_setting_from_t;

typedef struct {
    const char *text; /* the value as given (NULL: none); points into argv, environ or file */
    dsi_setting_from_t from;
    int line; /* DSI_FROM_FILE: the line */
    union {
        long long i;   /* INT, BOOL (0/1), ENUM (index of the choice) */
        double f;      /* FLOAT */
        uint64_t size; /* SIZE */
    } v;
} dsi_setting_value_t;

/* The parsed settings of one program (caller-allocated; dsi_settings_cleanup frees the file). */
typedef struct {
    unsigned program;    /* one DSI_P_* bit */
    const char *command; /* "dsinfer serve": the prefix of error messages */
    char *file_text;     /* the config file's contents (values point into it) */
    char file_path[512]; /* the config file read, "" when none */
    dsi_setting_value_t value[DSI_S_COUNT];
} dsi_settings_t;

extern const dsi_setting_t dsi_settings_table[DSI_S_COUNT];

/* The DSI_P_* bit of a program name ("node", "coordinator", ...), 0 when unknown. */
unsigned dsi_settings_program(const char *name);
/* "dsinfer serve", "dsinfer-node", ... for one DSI_P_* bit. */
const char *dsi_settings_command(unsigned program);
/* DSINFER_<NAME> of a setting, in `buf`. */
const char *dsi_settings_env_name(dsi_setting_id_t id, char *buf, size_t cap);

/*
 * Parse argv (argv[0] is the program or command name) for `program` (one DSI_P_* bit): defaults,
 * then the config file, the environment and the flags. Returns 0 when the program should go on,
 * 1 after --help was printed to stdout (usage(stdout) is called; exit 0), 2 on a usage error
 * (printed, naming the option; exit 2). `usage` prints the program's synopsis (may be NULL).
 * Every option of the program is a long option; positional arguments are refused.
 */
int dsi_settings_parse(dsi_settings_t *s, unsigned program, int argc, char **argv,
                       void (*usage)(FILE *out));
/* The same for a program with positional arguments: getopt_long moves them to the end of argv,
 * from *first on. */
int dsi_settings_parse_args(dsi_settings_t *s, unsigned program, int argc, char **argv,
                            void (*usage)(FILE *out), int *first);
void dsi_settings_cleanup(dsi_settings_t *s);

/* Print the program's options from the table, with their defaults and variables. */
void dsi_settings_usage(FILE *out, unsigned program);

/* Values. str: NULL when unset; the others: 0 when unset. */
const char *dsi_settings_str(const dsi_settings_t *s, dsi_setting_id_t id);
long long dsi_settings_int(const dsi_settings_t *s, dsi_setting_id_t id);
double dsi_settings_float(const dsi_settings_t *s, dsi_setting_id_t id);
uint64_t dsi_settings_size(const dsi_settings_t *s, dsi_setting_id_t id);
/* 1 when the value came from a flag, the environment or the config file. */
int dsi_settings_given(const dsi_settings_t *s, dsi_setting_id_t id);
/* Whether the program takes the setting. */
int dsi_settings_takes(const dsi_settings_t *s, dsi_setting_id_t id);

/* The whole table as Markdown: settings, old names, variables (docs/SETTINGS.md). */
void dsi_settings_markdown(FILE *out);

/* Print every setting the program takes: `name = value  # where from`. */
void dsi_settings_print(FILE *out, const dsi_settings_t *s);

/*
 * The environment variable `name` (one of DSINFER_<NAME> of the table or DSI_ENV_ONLY), NULL when
 * unset or empty. The one getenv of dsinfer's own variables outside kernels/.
 */
const char *dsi_env(const char *name);

/*
 * Memory available to a node: MemAvailable of /proc/meminfo, or with numa_node >= 0 that NUMA
 * node's free memory plus its reclaimable page cache and slab (MemFree + Active(file) +
 * Inactive(file) + SReclaimable of /sys/devices/system/node/nodeN/meminfo, as MemAvailable counts
 * them). 0 and *out set, or -1.
 */
int dsi_mem_available(int numa_node, uint64_t *out);
/*
 * The default memory budget of a node (--mem auto): available minus headroom, where the headroom
 * is at most half the available memory, divided by `share` (local nodes on one machine).
 */
uint64_t dsi_mem_budget(uint64_t available, uint64_t headroom, int share);

#endif
