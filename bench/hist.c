#include "hist.h"

#include <string.h>

/* The bucket of v: exact below SUB; else the exponent picks a group of SUB
 * buckets and the SUB_BITS bits after the leading one pick the bucket. */
static unsigned bench_hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - BENCH_HIST_SUB_BITS)) & (BENCH_HIST_SUB - 1u);
    return BENCH_HIST_SUB + (e - BENCH_HIST_SUB_BITS) * BENCH_HIST_SUB + sub;
}

/* The smallest value of bucket i and the bucket's width. */
static void bench_hist_bounds(unsigned i, double *lo, double *width)
{
    if (i < BENCH_HIST_SUB) {
        *lo = (double)i;
        *width = 1.0;
        return;
    }
    unsigned g = (i - BENCH_HIST_SUB) / BENCH_HIST_SUB;
    unsigned sub = (i - BENCH_HIST_SUB) % BENCH_HIST_SUB;
    unsigned e = g + BENCH_HIST_SUB_BITS;
    double step = (double)(1ull << (e - BENCH_HIST_SUB_BITS));
    *lo = (double)(1ull << e) + (double)sub * step;
    *width = step;
}

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void bench_hist_record_n(bench_hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    h->buckets[bench_hist_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void bench_hist_record(bench_hist *h, uint64_t v)
{
    bench_hist_record_n(h, v, 1);
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

double bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0)
        return 0.0;
    if (q <= 0.0)
        return (double)h->min;
    /* The rank of the wanted value, 1-based; ceil so that p50 of {a, b} is a. */
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank == 0)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            double lo, width;
            bench_hist_bounds(i, &lo, &width);
            /* Exact buckets hold one value; wider ones report their middle. */
            double v = width > 1.0 ? lo + width / 2.0 : lo;
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

double bench_hist_mean(const bench_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

void bench_hist_summarize(const bench_hist *h, bench_hist_summary *out)
{
    out->count = h->count;
    out->p50 = bench_hist_quantile(h, 0.50);
    out->p90 = bench_hist_quantile(h, 0.90);
    out->p99 = bench_hist_quantile(h, 0.99);
    out->p999 = bench_hist_quantile(h, 0.999);
    out->max = h->count ? (double)h->max : 0.0;
    out->mean = bench_hist_mean(h);
}
