#include "probe.h"

#include "bench.h"

/* Words per 64-byte line. */
#define BENCH_LINE_WORDS 8u

/* A bijection of [0, 2^bits): multiplying by an odd number, adding, and
 * xor-shifting right are each invertible modulo 2^bits, and three rounds of
 * them scramble consecutive inputs far apart, so walking f(0), f(1), ...
 * jumps around the buffer in an order no prefetcher can follow. Computing
 * the order instead of shuffling an index array keeps the build to one
 * pass of independent stores (fast) and needs no extra memory. */
static uint64_t bench_probe_perm(uint64_t x, unsigned bits, uint64_t mask, const uint64_t k[6])
{
    unsigned s = bits / 2 + 1;
    for (int r = 0; r < 3; r++) {
        x = (x * k[2 * r] + k[2 * r + 1]) & mask;
        x ^= x >> s;
    }
    return x;
}

bool bench_probe_build(bench_probe *p, size_t min_bytes, bool hugepages, uint64_t seed)
{
    size_t bytes = 4096;
    while (bytes < min_bytes)
        bytes <<= 1;
    p->buf = bench_map(bytes, hugepages);
    if (p->buf == NULL)
        return false;
    p->bytes = bytes;
    p->lines = bytes / (BENCH_LINE_WORDS * sizeof(uint64_t));
    p->hugepages = hugepages;

    unsigned bits = 0;
    while ((1ull << bits) < p->lines)
        bits++;
    uint64_t mask = p->lines - 1;
    uint64_t k[6];
    uint64_t rng = seed ^ 0x70726f6265ull; /* "probe": its own stream */
    for (int i = 0; i < 6; i++)
        k[i] = bench_rand(&rng) | (i % 2 == 0 ? 1u : 0u); /* multipliers odd */

    /* Line f(i) points to line f(i+1), and the last back to the first: one
     * cycle through every line, since f is a bijection. */
    uint64_t first = bench_probe_perm(0, bits, mask, k);
    uint64_t cur = first;
    for (uint64_t i = 1; i < p->lines; i++) {
        uint64_t next = bench_probe_perm(i, bits, mask, k);
        p->buf[cur * BENCH_LINE_WORDS] = next;
        cur = next;
    }
    p->buf[cur * BENCH_LINE_WORDS] = first;
    return true;
}

void bench_probe_free(bench_probe *p)
{
    bench_unmap(p->buf, p->bytes);
    p->buf = NULL;
    p->bytes = 0;
    p->lines = 0;
}

/* Steps per timing block: long enough that reading the clock once per
 * block costs nothing measurable, short enough to check the deadline often. */
#define BENCH_PROBE_BLOCK 1024u

uint64_t bench_probe_run(const bench_probe *p, double seconds, double overhead_ns,
                         bench_hist *single, bench_hist *batched)
{
    const volatile uint64_t *buf = p->buf;
    uint64_t overhead_ps = (uint64_t)(overhead_ns * 1000.0);
    uint64_t idx = buf[0];
    uint64_t steps = 0;
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);
    for (;;) {
        /* Each step timed alone: every load waits for the previous one
         * (its address is the previous value), and the clock's ordering
         * fence waits for the load, so the difference is one miss plus the
         * clock's own overhead, which is subtracted. */
        for (unsigned i = 0; i < BENCH_PROBE_BLOCK; i++) {
            uint64_t t0 = bench_now_ns();
            idx = buf[idx * BENCH_LINE_WORDS];
            uint64_t t1 = bench_now_ns();
            uint64_t ps = (t1 - t0) * 1000u;
            bench_hist_record(single, ps > overhead_ps ? ps - overhead_ps : 0);
        }
        /* The same chain timed as a block: no per-step clock at all. */
        uint64_t t0 = bench_now_ns();
        for (unsigned i = 0; i < BENCH_PROBE_BLOCK; i++)
            idx = buf[idx * BENCH_LINE_WORDS];
        uint64_t t1 = bench_now_ns();
        bench_hist_record(batched, (t1 - t0) * 1000u / BENCH_PROBE_BLOCK);
        steps += 2 * BENCH_PROBE_BLOCK;
        if (t1 >= end)
            break;
    }
    /* Keep the chain's result alive so the loads cannot be dropped. */
    if (idx == UINT64_MAX)
        bench_progress("probe: impossible index");
    return steps;
}
