/*
 * dsi_clock.h - the monotonic clock every module times with.
 */
#ifndef DSI_CLOCK_H
#define DSI_CLOCK_H

#include <stdint.h>

/* Nanoseconds of CLOCK_MONOTONIC: for intervals and deadlines, never for wall-clock dates. */
int64_t dsi_now_ns(void);
/* The same clock in seconds, for timings printed or averaged as doubles. */
double dsi_now_s(void);

#endif
