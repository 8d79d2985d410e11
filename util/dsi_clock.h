/*
 * dsi_clock.h - the monotonic clock every module times with, and the thread CPU clock of the
 * benchmarks.
 */
#ifndef DSI_CLOCK_H
#define DSI_CLOCK_H

#include <stdint.h>

/* Nanoseconds of CLOCK_MONOTONIC: for intervals and deadlines, never for wall-clock dates. */
int64_t dsi_now_ns(void);
/* The same clock in seconds, for timings printed or averaged as doubles. */
double dsi_now_s(void);
/*
 * Seconds of CPU time the calling thread has run (CLOCK_THREAD_CPUTIME_ID): benchmarks on a shared
 * machine time with it, so that time slices given to other processes do not count.
 */
double dsi_thread_cpu_s(void);

#endif
