/* The baseline the connector table must beat: the obvious design — a
 * chained hash table behind one pthread_rwlock, one malloc'd node per
 * connector — keyed by the same XXH3-128 keys and holding the same state
 * (key, the whole crp_entry, the id text, the tenant).
 *
 * Lookups take the read lock, so any number of threads may look up at
 * once; inserts take the write lock. Nodes come from the process allocator
 * (jemalloc in the normal build), as a straightforward implementation's
 * would.
 */
#ifndef BENCH_BASELINE_RWLOCK_H
#define BENCH_BASELINE_RWLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crp/table.h"

typedef struct bench_rwmap bench_rwmap;

/* A map with a power-of-two bucket array of at least `capacity` heads (load
 * factor at most 1). CRP_OK or CRP_NOMEM. */
crp_err bench_rwmap_create(bench_rwmap **out, uint64_t capacity);

/* Frees every node. NULL-safe; sets *mp = NULL. */
void bench_rwmap_destroy(bench_rwmap **mp);

/* Inserts a new ACTIVE connector (or leaves a present one alone) under the
 * write lock. CRP_OK, CRP_NOMEM, CRP_INVAL (id or tenant too long) or
 * CRP_TENANTS_FULL (more than 65535 distinct tenants). */
crp_err bench_rwmap_insert(bench_rwmap *m, const crp_key *k, const void *id, size_t id_len,
                           const void *tenant, size_t tenant_len, uint64_t now_ms);

/* Under the read lock: true and *out filled when present, else false and
 * out->state = UNKNOWN — the same answer as crp_table_lookup. */
bool bench_rwmap_lookup(bench_rwmap *m, const crp_key *k, crp_verdict *out);

/* Bytes held: the bucket array plus every node's allocation as the
 * allocator sized it (malloc_usable_size), plus the tenant strings. */
uint64_t bench_rwmap_bytes(const bench_rwmap *m);

uint64_t bench_rwmap_count(const bench_rwmap *m);

#endif
