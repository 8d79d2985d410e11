#include "dsi_status.h"

const char *dsi_status_name(dsi_status_t status)
{
    switch (status) {
#define DSI_STATUS_CASE(name, value, text) \
    case name:                             \
        return #name;
        DSI_STATUS_MAP(DSI_STATUS_CASE)
#undef DSI_STATUS_CASE
    }
    return "DSI_ERR_UNKNOWN";
}

const char *dsi_status_message(dsi_status_t status)
{
    switch (status) {
#define DSI_STATUS_CASE(name, value, text) \
    case name:                             \
        return text;
        DSI_STATUS_MAP(DSI_STATUS_CASE)
#undef DSI_STATUS_CASE
    }
    return "unknown error";
}
