/* A log-linear histogram of non-negative 64-bit values, for latency
 * percentiles without keeping (or sorting) every sample.
 *
 * Values below 2^BENCH_HIST_SUB_BITS are counted exactly; above, each power
 * of two is split into 2^BENCH_HIST_SUB_BITS equal buckets, so a reported
 * percentile is within 1/2^(BENCH_HIST_SUB_BITS+1) (under 1 %) of a value
 * that was really recorded. Recording is a few instructions and touches
 * one counter, so it can sit inside a timing loop.
 *
 * The unit is the caller's: the bench records picoseconds so that a batch
 * average of a few nanoseconds keeps its fractional part.
 *
 * Not thread-safe: one histogram per thread, merged afterwards.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 6u
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
/* Exact buckets for [0, SUB), then SUB buckets for each exponent SUB_BITS..63. */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB + (64u - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets[BENCH_HIST_BUCKETS];
} bench_hist;

/* Empties *h. */
void bench_hist_init(bench_hist *h);

/* Counts one value. */
void bench_hist_record(bench_hist *h, uint64_t v);

/* Counts `n` occurrences of one value (a batch average stands for each of
 * the batch's operations). */
void bench_hist_record_n(bench_hist *h, uint64_t v, uint64_t n);

/* Adds every count of *src into *dst. */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);

/* The value at quantile q (0 < q <= 1): the midpoint of the bucket holding
 * the ceil(q * count)-th smallest value, clamped to the exact min and max.
 * Returns 0 for an empty histogram. */
double bench_hist_quantile(const bench_hist *h, double q);

/* The exact mean of the recorded values; 0 when empty. */
double bench_hist_mean(const bench_hist *h);

/* The usual summary, all in the recorded unit. */
typedef struct bench_hist_summary {
    uint64_t count;
    double p50;
    double p90;
    double p99;
    double p999;
    double max;
    double mean;
} bench_hist_summary;

void bench_hist_summarize(const bench_hist *h, bench_hist_summary *out);

#endif
