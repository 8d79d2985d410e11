/* dsi_settings_impl.h - shared by dsi_settings.c (values, environment, file) and
 * dsi_settings_args.c (the command line, --help, `dsinfer config`). */
#ifndef DSI_SETTINGS_IMPL_H
#define DSI_SETTINGS_IMPL_H

#include "dsi_settings.h"

/* Check `text` against the setting's type and range; 0 with out->v set, or -1 (nothing printed). */
int dsi_settings_check(dsi_setting_id_t id, const char *text, dsi_setting_value_t *out);
/* Check and store a value; on error print "<command>: <where>: '<text>' is not valid: expected
 * <what it accepts>" and return -1. */
int dsi_settings_assign(dsi_settings_t *s, dsi_setting_id_t id, const char *text,
                        dsi_setting_from_t from, const char *where);
/* What a setting accepts, in words. */
void dsi_settings_accepted(dsi_setting_id_t id, char *buf, size_t cap);
/* The DSINFER_<NAME> variables of the settings the program takes; 0 or -1 (printed). */
int dsi_settings_read_env(dsi_settings_t *s);
/* A config file; a missing one is an error only when `required`. 0 or -1 (printed). */
int dsi_settings_read_file(dsi_settings_t *s, const char *path, int required);
/*
 * The id of setting or alias `name` when the program takes it (an alias warns once), -1 when the
 * table has it for other programs only, -2 when the table has no such name. `any_program` makes
 * every table name count (config files serve every program; other programs' names give -1).
 */
int dsi_settings_lookup(const dsi_settings_t *s, const char *name, int any_program);

#endif
