/*
 * dsi_signal.h - process-wide signal settings the libraries need.
 */
#ifndef DSI_SIGNAL_H
#define DSI_SIGNAL_H

/*
 * A write to a socket whose peer has gone must fail with EPIPE (which the caller handles), not
 * kill the process with SIGPIPE: libuv writes with writev(2). Sets SIGPIPE to SIG_IGN, once per
 * process; every library that opens sockets (control connections, the HTTP server) calls it.
 */
void dsi_ignore_sigpipe(void);

#endif
