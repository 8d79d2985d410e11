/*
 * dst_ctrl_addr.c - "host:port" and socket address strings.
 */
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
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

/* Whether a and b (same family) agree on the bits of mask. */
static int same_subnet(const struct sockaddr *a, const struct sockaddr *b, const struct sockaddr *m)
{
    const uint8_t *x, *y, *k;
    size_t n;
    if (a->sa_family == AF_INET) {
        x = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
        y = (const uint8_t *)&((const struct sockaddr_in *)b)->sin_addr;
        k = (const uint8_t *)&((const struct sockaddr_in *)m)->sin_addr;
        n = 4;
    } else {
        x = (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
        y = (const uint8_t *)&((const struct sockaddr_in6 *)b)->sin6_addr;
        k = (const uint8_t *)&((const struct sockaddr_in6 *)m)->sin6_addr;
        n = 16;
    }
    for (size_t i = 0; i < n; i++) {
        if ((x[i] & k[i]) != (y[i] & k[i]))
            return 0;
    }
    return 1;
}

static int is_loopback(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

dsi_status_t dst_ctrl_addr_netdev(const char *addr, char *ifname, size_t cap)
{
    char host[DST_MSG_ADDR_MAX];
    uint16_t port;
    if (dst_ctrl_addr_parse(addr, host, sizeof(host), &port) != DSI_OK)
        return DSI_ERR_INVALID_ARG;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
        return DSI_ERR_NOT_FOUND;
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0) {
        freeaddrinfo(res);
        return DSI_ERR_NOT_FOUND;
    }
    const struct sockaddr *target = res->ai_addr;
    dsi_status_t st = DSI_ERR_NOT_FOUND;
    for (struct ifaddrs *i = ifs; i != NULL && st != DSI_OK; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != target->sa_family ||
            !(i->ifa_flags & IFF_UP))
            continue;
        int match = is_loopback(target) ? (i->ifa_flags & IFF_LOOPBACK) != 0
                                        : i->ifa_netmask != NULL &&
                                              same_subnet(i->ifa_addr, target, i->ifa_netmask);
        if (match && strlen(i->ifa_name) < cap) {
            snprintf(ifname, cap, "%s", i->ifa_name);
            st = DSI_OK;
        }
    }
    freeifaddrs(ifs);
    freeaddrinfo(res);
    return st;
}
