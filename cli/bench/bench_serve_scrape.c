/*
 * bench_serve_scrape.c - what the monitor of `dsinfer bench serve` reads: the families it keeps
 * from the Prometheus text of /metrics, and the JSON of `dsinfer cluster status`, run as a child
 * process of this same executable (it signs the request with the cluster's secret).
 */
#include "bench_serve.h"
#include "dsi_clock.h"

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int bs_metrics_parse(const char *text, bs_sample_t *s)
{
    static const struct {
        const char *name, *labels;
        size_t off;
    } wanted[] = {
        {"dsinfer_queue_depth", "", offsetof(bs_sample_t, queue_depth)},
        {"dsinfer_running_sequences", "", offsetof(bs_sample_t, running)},
        {"dsinfer_http_active_generations", "", offsetof(bs_sample_t, active_generations)},
        {"dsinfer_cluster_sequences", "", offsetof(bs_sample_t, cluster_sequences)},
        {"dsinfer_cluster_nodes", "{state=\"joined\"}", offsetof(bs_sample_t, nodes_joined)},
        {"dsinfer_cluster_nodes", "{state=\"ready\"}", offsetof(bs_sample_t, nodes_ready)},
        {"dsinfer_cluster_nodes", "{state=\"dead\"}", offsetof(bs_sample_t, nodes_dead)},
        {"dsinfer_cluster_ready", "", offsetof(bs_sample_t, cluster_ready)},
        {"dsinfer_cluster_replans", "", offsetof(bs_sample_t, replans)},
        {"dsinfer_cluster_rebalances", "", offsetof(bs_sample_t, rebalances)},
        {"dsinfer_cluster_live_switches", "", offsetof(bs_sample_t, live_switches)},
        {"dsinfer_expert_load_imbalance", "", offsetof(bs_sample_t, imbalance)},
        {"dsinfer_spec_steps_total", "", offsetof(bs_sample_t, spec_steps)},
        {"dsinfer_spec_tokens_total", "", offsetof(bs_sample_t, spec_tokens)},
    };
    size_t n_wanted = sizeof(wanted) / sizeof(wanted[0]);
    for (size_t i = 0; i < n_wanted; i++)
        *(double *)((char *)s + wanted[i].off) = -1;
    int found = 0;
    for (const char *line = text; line != NULL && *line;
         line = strchr(line, '\n'), line += !!line) {
        if (*line == '#' || *line == '\n')
            continue;
        size_t name_len = strcspn(line, "{ \n");
        const char *rest = line + name_len;
        size_t labels_len = *rest == '{' ? strcspn(rest, "}") + 1 : 0;
        for (size_t i = 0; i < n_wanted; i++) {
            if (strlen(wanted[i].name) != name_len || strncmp(line, wanted[i].name, name_len) ||
                strlen(wanted[i].labels) != labels_len ||
                strncmp(rest, wanted[i].labels, labels_len))
                continue;
            char *end;
            double v = strtod(rest + labels_len, &end);
            if (end != rest + labels_len && isfinite(v)) {
                *(double *)((char *)s + wanted[i].off) = v;
                found++;
            }
        }
    }
    return found;
}

char *bs_cluster_status(const char *self, const char *coordinator)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return NULL;
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execl(self, self, "cluster", "status", "--coordinator", coordinator, "--json",
              "--timeout-ms", "2000", (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0, cap = 16384;
    char *out = malloc(cap);
    double deadline = dsi_now_s() + 5;
    while (out != NULL) {
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        int left_ms = (int)((deadline - dsi_now_s()) * 1000);
        if (left_ms <= 0 || poll(&p, 1, left_ms) <= 0)
            break;
        if (len + 4096 + 1 > cap) {
            char *g = realloc(out, cap *= 2);
            if (g == NULL)
                break;
            out = g;
        }
        ssize_t k = read(pipefd[0], out + len, cap - len - 1);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(pipefd[0]);
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == 0) { /* still running after 5 s: it hangs */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (out == NULL || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(out);
        return NULL;
    }
    out[len] = '\0';
    return out;
}
