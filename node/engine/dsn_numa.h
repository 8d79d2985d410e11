/*
 * dsn_numa.h - binding a node daemon to one NUMA node (`dsinfer-node --numa-node N`).
 *
 * On a server with several NUMA nodes, run one dsinfer-node per NUMA node, each bound to it: its
 * threads then run on that node's CPUs and every page it allocates (KV cache, re-quantized
 * weights, the checkpoint pages it faults into the page cache) comes from that node's memory, so
 * the weights a core streams are local (docs/DEPLOY.md, "NUMA"). Uses libnuma.
 */
#ifndef DSN_NUMA_H
#define DSN_NUMA_H

#include "dsi_status.h"

/*
 * Binds the calling thread (and the threads it creates afterwards: call it first) and the
 * process's memory to NUMA node `node`; < 0 does nothing. DSI_ERR_INVALID_ARG (logged) when the
 * machine has no such node or no NUMA support, DSI_ERR_INTERNAL when the kernel refuses.
 */
dsi_status_t dsn_numa_bind(int node);

#endif
