#include "dsn_numa.h"

#include <errno.h>
#include <numa.h>
#include <string.h>

#include "dsi_log.h"
#include "dsi_pool.h"

dsi_status_t dsn_numa_bind(int node)
{
    if (node < 0)
        return DSI_OK;
    if (numa_available() < 0) {
        DSI_ERROR("--numa-node %d: this machine (or kernel) has no NUMA support", node);
        return DSI_ERR_INVALID_ARG;
    }
    int max = numa_max_node();
    if (node > max || !numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)node)) {
        DSI_ERROR("--numa-node %d: no such NUMA node (this machine has nodes 0..%d)", node, max);
        return DSI_ERR_INVALID_ARG;
    }
    if (numa_run_on_node(node) != 0) {
        DSI_ERROR("--numa-node %d: cannot run on its CPUs: %s", node, strerror(errno));
        return DSI_ERR_INTERNAL;
    }
    struct bitmask *mem = numa_allocate_nodemask();
    if (mem == NULL)
        return DSI_ERR_NOMEM;
    numa_bitmask_setbit(mem, (unsigned)node);
    numa_set_membind(mem);
    numa_free_nodemask(mem);
    long long free_b = 0, size = numa_node_size64(node, &free_b);
    DSI_INFO("bound to NUMA node %d: %d CPUs, %.1f GiB of memory (%.1f GiB free)", node,
             dsi_cpus_available(), (double)size / (1 << 30), (double)free_b / (1 << 30));
    return DSI_OK;
}
