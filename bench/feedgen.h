/* The verdict generator behind `ingest`, the lookup scenario's fill and
 * `feed`: feed frames (docs/protocol.md section 1) built with the wire
 * builder (crp/wire.h), over a population of N connectors whose ids are
 * bench_guid(seed, 0..N-1) and whose tenants come from bench_tenant_of().
 *
 * A fraction --bad-ratio of the connectors is compromised (which ones is a
 * pure function of the seed). Traffic frames name connectors uniformly at
 * random; a clean connector's messages are almost all clean (2 % spam,
 * 0.5 % bulk: under every threshold), a compromised one's are mostly spam
 * and phish (35 % spam, 15 % high-confidence spam, 15 % phish, 10 %
 * high-confidence phish, 5 % malware, 20 % clean), so the engine's default
 * rules restrict it after a few dozen messages. Fill frames walk the
 * population in order: one clean message per connector, and three malware
 * messages more for a compromised one, which the default malware rule
 * (3) restricts at once.
 *
 * Not thread-safe: one generator per thread (each has its own PRNG).
 */
#ifndef BENCH_FEEDGEN_H
#define BENCH_FEEDGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"
#include "crp/wire.h"

#define BENCH_FEEDGEN_TENANTS_MAX 256u

typedef struct bench_feedgen_opts {
    uint64_t connectors; /* N, 1..2^32-1 */
    uint64_t seed;       /* ids, tenants, which are compromised, the PRNG */
    uint64_t tenants;    /* distinct tenants, 1..256 */
    double bad_ratio;    /* fraction of compromised connectors, 0..1 */
    uint32_t batch;      /* events per frame, 1..65535 */
    /* The frames will be replayed over and over (ingest's pool): clean
     * connectors then send only clean messages. A connector appears in a
     * pool a few times at most, so its one 2 % spam message, replayed,
     * would become a 100 % spam ratio and restrict a clean connector. */
    bool replayed;
} bench_feedgen_opts;

typedef struct bench_feedgen {
    bench_feedgen_opts o;
    /* N ids of BENCH_GUID_LEN bytes back to back, computed once; NULL when
     * N is too large to keep them (each event then computes its id). */
    char *ids;
    uint64_t bad_below; /* connector i is compromised iff its hash < this */
    uint64_t rng;
    char tenant[BENCH_FEEDGEN_TENANTS_MAX][CRP_WIRE_TENANT_MAX + 1];
    uint8_t tenant_len[BENCH_FEEDGEN_TENANTS_MAX];
    char scratch[BENCH_GUID_LEN]; /* the id of the last event, when ids is NULL */
} bench_feedgen;

/* Sets the generator up (and computes the ids: about 50 ms per million).
 * `stream` separates the PRNG streams of generators with the same seed.
 * Returns false when the options are out of range. */
bool bench_feedgen_init(bench_feedgen *g, const bench_feedgen_opts *o, uint64_t stream);
void bench_feedgen_fini(bench_feedgen *g);

/* Bytes a frame of `batch` events can take at most. */
size_t bench_feedgen_frame_cap(const bench_feedgen *g);

/* Connector i's id (BENCH_GUID_LEN bytes, not NUL-terminated). The pointer
 * is valid until the next call when the ids are not kept. */
const char *bench_feedgen_id(bench_feedgen *g, uint64_t i);

/* Whether connector i is compromised. */
bool bench_feedgen_is_bad(const bench_feedgen *g, uint64_t i);

/* How many of the N connectors are compromised (a pass over them). */
uint64_t bench_feedgen_bad_count(const bench_feedgen *g);

/* One frame of `count` (1..batch) traffic events (random connectors) into
 * buf, with the producer id, sequence and event timestamp given (ts_ms 0:
 * the time of receipt). Returns the frame's length, 0 when cap is too
 * small or count is out of range. */
size_t bench_feedgen_traffic(bench_feedgen *g, void *buf, size_t cap, uint64_t producer,
                             uint64_t seq, uint64_t ts_ms, uint32_t count);

/* The fill: one frame of at most `batch` events (at least 4) for the
 * connectors from *cursor on, advancing it; a compromised connector's four
 * events are never split between frames. Returns the frame's length and
 * its event count in *events, or 0 once *cursor reached N. */
size_t bench_feedgen_fill(bench_feedgen *g, uint64_t *cursor, void *buf, size_t cap,
                          uint64_t producer, uint64_t seq, uint32_t *events);

/* Events the whole fill sends: N + 3 per compromised connector. */
uint64_t bench_feedgen_fill_events(const bench_feedgen *g);

/* A producer id for this run: non-zero, different for every run (the
 * engine remembers the last sequence of each producer id, docs/protocol.md
 * choice C3, so a new run must not reuse an old id). */
uint64_t bench_feedgen_producer_id(void);

#endif
