/*
 * dsi_test_coord.h - the in-process coordinator the cluster and fault tests drive: a libuv loop
 * in the test process with a coordinator on it, local dsinfer-node processes joining it, a timer
 * that polls the test's conditions until they hold or time runs out, and the teardown that
 * leaves no process behind.
 */
#ifndef DSI_TEST_COORD_H
#define DSI_TEST_COORD_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "dsc_cluster.h"

#define DSI_TEST_COORD_MAX_NODES 8

typedef struct dsi_test_coord dsi_test_coord_t;
/* Called on every tick of dsi_test_coord_run's timer until dsi_test_coord_stop. */
typedef void (*dsi_test_coord_tick_cb)(dsi_test_coord_t *c);

struct dsi_test_coord {
    uv_loop_t loop;
    uv_timer_t timer;
    dsc_cluster_t *cl;
    char addr[64]; /* "127.0.0.1:PORT", where the nodes join */
    pid_t pids[DSI_TEST_COORD_MAX_NODES];
    int n_pids;
    uint64_t started_ms; /* loop time when dsi_test_coord_run started */
    uint64_t timeout_ms;
    int timed_out;
    dsi_test_coord_tick_cb tick; /* NULL: none */
    void *user;                  /* the test's, untouched here */
};

/* Initialises c->loop and creates the coordinator with cfg and co on it (checked). */
void dsi_test_coord_start(dsi_test_coord_t *c, const dsn_config_t *cfg,
                          const dsc_cluster_opts_t *co);
/* Starts n more nodes of `model` joining c: with node_args (NULL-terminated flags and values)
 * or, when it is NULL, one thread each. Returns 0 when they started. */
int dsi_test_coord_spawn(dsi_test_coord_t *c, int n, const char *model,
                         const char *const *node_args);
/* Runs the loop until dsi_test_coord_stop, calling tick (if not NULL) every period_ms. After
 * timeout_ms it shuts the coordinator down ("test timeout") and returns 1; otherwise 0. */
int dsi_test_coord_run(dsi_test_coord_t *c, uint64_t period_ms, uint64_t timeout_ms,
                       dsi_test_coord_tick_cb tick);
/* Shuts the coordinator down (why goes to the nodes) and stops the loop. */
void dsi_test_coord_stop(dsi_test_coord_t *c, const char *why);
/* Runs the loop a little, so that the coordinator's SHUTDOWN reaches the nodes. */
void dsi_test_coord_settle(dsi_test_coord_t *c);
/* Waits for the nodes (killing what is left after 20 s), destroys the coordinator, closes the
 * loop and checks that no child process is left. Returns how many nodes did not exit cleanly. */
int dsi_test_coord_close(dsi_test_coord_t *c);
/* Checks that this process has no child left. */
void dsi_test_no_children(void);

#endif
