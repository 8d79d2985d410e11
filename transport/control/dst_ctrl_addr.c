/*
 * dst_ctrl_addr.c - "host:port" and socket address strings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dst_ctrl_impl.h"

dsi_status_t dst_ctrl_addr_parse(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (colon == NULL || colon == addr)
        goto bad;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (addr[0] == '[') {
        /* "[v6]:port": the host is between the brackets */
        if (n < 3 || colon[-1] != ']')
            goto bad;
        h = addr + 1;
        n -= 2;
    } else if (memchr(addr, ':', n) != NULL) {
        goto bad; /* a bare IPv6 literal is ambiguous: brackets required */
    }
    if (n == 0 || n >= hostlen)
        goto bad;
    const char *p = colon + 1;
    if (*p == 0 || strlen(p) > 5)
        goto bad;
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        goto bad;
    memcpy(host, h, n);
    host[n] = 0;
    *port = (uint16_t)v;
    return DSI_OK;
bad:
    DSI_ERROR("bad address \"%s\": expected host:port or [ipv6]:port", addr ? addr : "(null)");
    return DSI_ERR_INVALID_ARG;
}

void dst_ctrl_sockaddr_str(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "(unknown address family %d)", sa->sa_family);
    }
}
