/* Wall-clock and monotonic time in the units the engine uses. */
#ifndef CRP_CLOCK_H
#define CRP_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). Any thread. */
uint64_t crp_clock_ms(void);
/* Nanoseconds on CLOCK_MONOTONIC, for durations. Any thread. */
uint64_t crp_clock_mono_ns(void);

#endif
