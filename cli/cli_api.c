/* cli_api.c - the OpenAI API of `dsinfer serve`, `dsinfer-coordinator --listen` and
 * `dsinfer-cluster --listen`, from the settings (cli_settings.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_settings.h"
#include "dsi_log.h"

/* The first line of the key file, without its newline; malloc'ed. */
static char *read_key_file(const char *command, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: --api-key-file %s: %m\n", command, path);
        return NULL;
    }
    char line[4096];
    char *key = NULL;
    if (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0')
            key = strdup(line);
    }
    fclose(f);
    if (key == NULL)
        fprintf(stderr, "%s: --api-key-file %s: the first line holds no key\n", command, path);
    return key;
}

/* The HTTP server's own options, passed as text to dsc_api_server_config_option (which the table's
 * checks have made sure accepts them). */
static const dsi_setting_id_t http_options[] = {
    DSI_S_LISTEN,           DSI_S_MAX_BODY,           DSI_S_MAX_HEADER,
    DSI_S_REQUEST_TIMEOUT,  DSI_S_IDLE_TIMEOUT,       DSI_S_MAX_CONNECTIONS,
    DSI_S_MAX_TOKENS_LIMIT, DSI_S_DEFAULT_MAX_TOKENS, DSI_S_MAX_PROMPTS};

static int api_config(const dsi_settings_t *s, dsc_api_server_config_t *ac, char **key)
{
    for (size_t i = 0; i < sizeof(http_options) / sizeof(http_options[0]); i++) {
        dsi_setting_id_t id = http_options[i];
        const char *v = dsi_settings_str(s, id);
        /* "auto" limits stay the backend's (from the context). */
        if (v == NULL || strcmp(v, "auto") == 0)
            continue;
        if (dsc_api_server_config_option(ac, dsi_settings_table[id].name, v) != DSI_OK)
            return 2;
    }
    const char *file = dsi_settings_str(s, DSI_S_API_KEY_FILE);
    ac->api_key = dsi_settings_str(s, DSI_S_API_KEY);
    if (file != NULL && ac->api_key == NULL) {
        if ((*key = read_key_file(s->command, file)) == NULL)
            return 2;
        ac->api_key = *key;
    }
    if (ac->api_key == NULL)
        DSI_INFO(
            "the API takes requests without a key (--api-key or --api-key-file to require one)");
    return 0;
}

int cli_api_start(uv_loop_t *loop, const dsi_settings_t *s, const dsn_config_t *cfg,
                  long long max_context, dsc_cluster_t *cluster,
                  void (*on_state)(void *arg, dsi_status_t st), void *arg, cli_api_t *a)
{
    memset(a, 0, sizeof(*a));
    dsc_backend_config_t bc;
    dsc_backend_config_default(&bc);
    bc.model_dir = dsi_settings_str(s, DSI_S_MODEL);
    bc.model_id = dsi_settings_str(s, DSI_S_MODEL_NAME);
    bc.max_queue = (uint32_t)dsi_settings_int(s, DSI_S_MAX_QUEUE);
    bc.max_context = (uint32_t)max_context;
    bc.vocab_size = cfg->vocab_size;
    bc.on_state = on_state;
    bc.on_state_arg = arg;
    const char *tpl = dsi_settings_str(s, DSI_S_CHAT_TEMPLATE);
    if (tpl != NULL && dsc_chat_style_parse(tpl, &bc.chat_style) != DSI_OK) {
        fprintf(stderr, "%s: --chat-template: '%s' is not auto, v3, r1 or v3.1\n", s->command, tpl);
        return 2;
    }
    if (dsc_metrics_create(&a->metrics) != DSI_OK ||
        dsc_backend_create(loop, &bc, cluster, a->metrics, &a->backend) != DSI_OK)
        return 1;
    dsc_api_server_config_t ac;
    dsc_api_server_config_default(&ac);
    dsc_backend_api_limits(a->backend, &ac.limits);
    char *key = NULL;
    int rc = api_config(s, &ac, &key);
    if (rc == 0 && dsc_api_server_create(loop, &ac, dsc_backend_api(a->backend), a->metrics,
                                         &a->api) != DSI_OK)
        rc = 1;
    free(key); /* the server keeps a copy */
    if (rc != 0)
        return rc;
    int v6 = strchr(ac.http.host, ':') != NULL;
    snprintf(a->url, sizeof(a->url), v6 ? "http://[%s]:%d" : "http://%s:%d", ac.http.host,
             dsc_api_server_port(a->api));
    DSI_INFO("OpenAI API on %s port %d", ac.http.host, dsc_api_server_port(a->api));
    return 0;
}

void cli_api_free(cli_api_t *a)
{
    dsc_backend_destroy(a->backend);
    a->backend = NULL;
    dsc_metrics_destroy(a->metrics);
    a->metrics = NULL;
}
