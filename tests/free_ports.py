#!/usr/bin/env python3
# free_ports.py [N] - prints N (default 1) TCP ports of 127.0.0.1 that are free now and below the
# kernel's ephemeral range (net.ipv4.ip_local_port_range), for a test that must name a port before
# its server starts. A port taken from the ephemeral range (bind to 0, then close) can be handed
# by the kernel to any socket bound to port 0 meanwhile (a node's own listener, UCX), and the
# test's coordinator then finds its port taken and its nodes talking to the wrong process.
import random
import socket
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
ports = []
for _ in range(10000):
    if len(ports) == n:
        break
    port = random.randrange(10000, max(low, 10001))
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    if port not in ports:
        ports.append(port)
if len(ports) < n:
    sys.exit("free_ports.py: no %d free ports of 127.0.0.1 below %d" % (n, low))
print(*ports)
