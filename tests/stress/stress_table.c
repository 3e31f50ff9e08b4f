/* Stress test of the connector table's concurrency protocol: two shard
 * writers and two readers on a table four times too small, so inserts,
 * updates, state changes and evictions all race with lookups, snapshot
 * reads and iteration. A plain program (not Criterion) so that it runs
 * under ThreadSanitizer; exits non-zero on the first broken invariant.
 *
 * What is checked:
 *  - no torn read: every value a reader sees was written whole by one
 *    writer for that very key (payload and state word carry the key's
 *    fingerprint and the write's counter, and must agree);
 *  - no phantom key: ids never inserted are never found;
 *  - monotonic: a reader never sees a key's counter go backwards;
 *  - no lost update: after the writers stop, every present key holds the
 *    last value its writer stored, and keys missing are at most the
 *    evictions counted.
 *
 * Usage: stress_table [seconds]   (default 1.5)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "crp/clock.h"
#include "crp/table.h"

enum { CAP = 4096, IDS = 16384, SHARDS = 2, READERS = 2 };

static crp_table *table;
static crp_key keys[IDS];
/* Every 8th id is 100 bytes long, so the shards' long-id pools (56 cells
 * each) run out and inserts evict long-id holders for their cells while
 * readers copy ids out of those cells. */
static char ids[IDS][104];
static uint32_t last_written[IDS]; /* per id: written only by its shard's writer */
static atomic_bool stop;
static atomic_ulong failures;
static atomic_ulong n_writes, n_lookups, n_reads, n_iterated;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "stress_table: " __VA_ARGS__);                                             \
        fputc('\n', stderr);                                                                       \
        atomic_fetch_add_explicit(&failures, 1, memory_order_relaxed);                             \
    } while (0)

static uint64_t rng(uint64_t *s)
{
    /* xorshift64*: fixed seeds make runs comparable. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Payload = key fingerprint, counter, checksum. */
static void fill_payload(unsigned char *p, const crp_key *k, uint32_t counter)
{
    uint32_t w[9];
    w[0] = (uint32_t)k->lo;
    w[1] = (uint32_t)(k->lo >> 32);
    w[2] = (uint32_t)k->hi;
    w[3] = (uint32_t)(k->hi >> 32);
    w[4] = counter;
    w[5] = ~counter;
    w[6] = w[0] ^ w[4];
    w[7] = w[1] ^ w[4];
    w[8] = w[2] ^ w[3] ^ w[4];
    memcpy(p, w, sizeof w);
}

/* Returns the counter, or -1 when the payload is not one whole write for k.
 * A fresh insert (all zero) is counter 0. */
static int64_t check_payload(const unsigned char *p, const crp_key *k)
{
    uint32_t w[9];
    memcpy(w, p, sizeof w);
    bool zero = true;
    for (int i = 0; i < 9; i++)
        zero = zero && w[i] == 0;
    if (zero)
        return 0;
    if (w[0] != (uint32_t)k->lo || w[1] != (uint32_t)(k->lo >> 32) || w[2] != (uint32_t)k->hi ||
        w[3] != (uint32_t)(k->hi >> 32) || w[5] != ~w[4] || w[6] != (w[0] ^ w[4]) ||
        w[7] != (w[1] ^ w[4]) || w[8] != (w[2] ^ w[3] ^ w[4]))
        return -1;
    return w[4];
}

static uint64_t since_of(const crp_key *k, uint32_t counter)
{
    return (k->lo & 0xffffu) << 32 | counter;
}

static void *writer(void *arg)
{
    unsigned shard = (unsigned)(uintptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (shard + 1);
    uint32_t counter = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint32_t i = (uint32_t)(rng(&s) % IDS);
        if (crp_table_shard_of(table, &keys[i]) != shard)
            continue;
        crp_slot slot;
        bool created;
        crp_err err = crp_table_upsert_sw(table, &keys[i], ids[i], strlen(ids[i]), "tenant", 6,
                                          ++counter, &slot, &created);
        if (err == CRP_FULL || err == CRP_IDS_FULL)
            continue;
        if (err != CRP_OK) {
            FAIL("upsert: %s", crp_strerror(err));
            break;
        }
        crp_entry e;
        crp_table_load_sw(table, slot, &e);
        if (!created && check_payload(e.payload, &keys[i]) != last_written[i])
            FAIL("writer reads back a different value for %s", ids[i]);
        fill_payload(e.payload, &keys[i], counter);
        e.last_ms = counter;
        e.since_ms = since_of(&keys[i], counter);
        e.reasons = (uint8_t)(keys[i].hi & 0x1f);
        /* A few restricted entries at a time; clearing them again keeps the
         * table evictable. */
        e.state = counter % 16 == 0 ? CRP_STATE_RESTRICTED : CRP_STATE_ACTIVE;
        e.dirty = e.state != CRP_STATE_ACTIVE;
        crp_table_store_sw(table, slot, &e);
        last_written[i] = counter;
        atomic_fetch_add_explicit(&n_writes, 1, memory_order_relaxed);
    }
    return NULL;
}

static void check_record(const crp_record *r, const crp_key *expect)
{
    if (expect && (r->key.lo != expect->lo || r->key.hi != expect->hi)) {
        FAIL("read returned another key");
        return;
    }
    int64_t c = check_payload(r->entry.payload, &r->key);
    if (c < 0) {
        FAIL("torn payload in snapshot of %s", r->id);
        return;
    }
    if (c != 0 && r->entry.since_ms != since_of(&r->key, (uint32_t)c))
        FAIL("state word and payload from different writes for %s", r->id);
    crp_key k = crp_table_key(table, r->id, r->id_len);
    if (k.lo != r->key.lo || k.hi != r->key.hi)
        FAIL("id text '%s' does not belong to the key", r->id);
    if (strcmp(r->tenant, "tenant") != 0)
        FAIL("tenant '%s' torn", r->tenant);
}

static void *reader(void *arg)
{
    uint64_t s = 0x2545f4914f6cdd1dull * ((uintptr_t)arg + 7);
    static _Thread_local uint32_t seen[IDS];
    memset(seen, 0, sizeof seen);
    char ghost[32];
    unsigned long loops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        uint32_t i = (uint32_t)(rng(&s) % IDS);
        crp_verdict v;
        if (crp_table_lookup(table, &keys[i], &v)) {
            if (v.since_ms != 0) {
                if ((v.since_ms >> 32) != (keys[i].lo & 0xffffu) ||
                    v.reasons != (keys[i].hi & 0x1f))
                    FAIL("lookup of %s returned another key's word", ids[i]);
                uint32_t c = (uint32_t)v.since_ms;
                if (c < seen[i])
                    FAIL("counter of %s went back from %u to %u", ids[i], seen[i], c);
                seen[i] = c;
            }
        }
        atomic_fetch_add_explicit(&n_lookups, 1, memory_order_relaxed);

        snprintf(ghost, sizeof ghost, "ghost-%u", i);
        crp_key gk = crp_table_key(table, ghost, strlen(ghost));
        if (crp_table_lookup(table, &gk, &v))
            FAIL("phantom: %s found", ghost);

        crp_record r;
        crp_err err = crp_table_read(table, &keys[i], &r);
        if (err == CRP_OK)
            check_record(&r, &keys[i]);
        else if (err != CRP_NOTFOUND && err != CRP_BUSY)
            FAIL("read: %s", crp_strerror(err));
        atomic_fetch_add_explicit(&n_reads, 1, memory_order_relaxed);

        if (++loops % 20000 == 0) {
            uint64_t cursor = 0;
            while (crp_table_next(table, &cursor, &r)) {
                check_record(&r, NULL);
                atomic_fetch_add_explicit(&n_iterated, 1, memory_order_relaxed);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.5;
    crp_table_opts o = {.capacity = CAP, .shards = SHARDS, .seed = 42};
    if (crp_table_create(&table, &o) != CRP_OK) {
        fprintf(stderr, "stress_table: cannot create table\n");
        return 1;
    }
    for (uint32_t i = 0; i < IDS; i++) {
        if (i % 8 == 7)
            snprintf(ids[i], sizeof ids[i], "conn-%u-%0*u", i, 90, i);
        else
            snprintf(ids[i], sizeof ids[i], "conn-%u", i);
        keys[i] = crp_table_key(table, ids[i], strlen(ids[i]));
    }

    pthread_t w[SHARDS], r[READERS];
    for (uintptr_t i = 0; i < SHARDS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    for (uintptr_t i = 0; i < READERS; i++)
        pthread_create(&r[i], NULL, reader, (void *)i);
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL); /* the run's length, not synchronisation */
    atomic_store_explicit(&stop, true, memory_order_relaxed);
    for (int i = 0; i < SHARDS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i], NULL);

    /* No lost update: writers are joined, so their arrays are final. */
    unsigned long missing = 0, present = 0;
    for (uint32_t i = 0; i < IDS; i++) {
        if (last_written[i] == 0)
            continue;
        crp_record rec;
        crp_err err = crp_table_read(table, &keys[i], &rec);
        if (err == CRP_NOTFOUND) {
            missing++;
            continue;
        }
        if (err != CRP_OK) {
            FAIL("final read: %s", crp_strerror(err));
            continue;
        }
        present++;
        if (check_payload(rec.entry.payload, &keys[i]) != last_written[i])
            FAIL("lost update on %s", ids[i]);
    }
    crp_table_stats st;
    crp_table_stats_get(table, &st);
    if (missing > st.evictions)
        FAIL("%lu keys missing but only %lu evictions", missing, (unsigned long)st.evictions);
    if (st.live != present)
        FAIL("live count %lu != present %lu", (unsigned long)st.live, present);
    if (st.evictions == 0)
        FAIL("the run never evicted: the test did not exercise reuse");

    printf("stress_table: %lu writes, %lu lookups, %lu reads, %lu iterated, %lu evictions, "
           "%lu live: %s\n",
           atomic_load(&n_writes), atomic_load(&n_lookups), atomic_load(&n_reads),
           atomic_load(&n_iterated), (unsigned long)st.evictions, (unsigned long)st.live,
           atomic_load(&failures) ? "FAILED" : "ok");
    crp_table_destroy(&table);
    return atomic_load(&failures) ? 1 : 0;
}
