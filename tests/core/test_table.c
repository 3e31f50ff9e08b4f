/* Criterion suite for core/table.c: semantics of insert, lookup, update,
 * snapshot reads, iteration, eviction and shared memory. Concurrency is
 * exercised by tests/stress/stress_table.c (a plain program, for TSan). */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crp/table.h"

static crp_table *make(uint64_t cap, unsigned shards)
{
    crp_table *t = NULL;
    crp_table_opts o = {.capacity = cap, .shards = shards};
    cr_assert(eq(int, crp_table_create(&t, &o), CRP_OK));
    return t;
}

static crp_err put(crp_table *t, const char *id, const char *tenant, crp_slot *slot, bool *created)
{
    crp_key k = crp_table_key(t, id, strlen(id));
    crp_slot s;
    bool c;
    crp_err err = crp_table_upsert_sw(t, &k, id, strlen(id), tenant, strlen(tenant), 1000,
                                      slot ? slot : &s, created ? created : &c);
    return err;
}

static void set_state(crp_table *t, const char *id, uint8_t state, uint8_t reasons, uint64_t since,
                      bool dirty)
{
    crp_key k = crp_table_key(t, id, strlen(id));
    crp_slot s;
    cr_assert(eq(int, crp_table_find_sw(t, &k, &s), CRP_OK));
    crp_entry e;
    crp_table_load_sw(t, s, &e);
    e.state = state;
    e.reasons = reasons;
    e.since_ms = since;
    e.dirty = dirty;
    crp_table_store_sw(t, s, &e);
}

static crp_verdict look(const crp_table *t, const char *id)
{
    crp_key k = crp_table_key(t, id, strlen(id));
    crp_verdict v;
    crp_table_lookup(t, &k, &v);
    return v;
}

Test(table, rejects_bad_options)
{
    crp_table *t = NULL;
    crp_table_opts small = {.capacity = 10};
    crp_table_opts shards3 = {.capacity = 1024, .shards = 3};
    crp_table_opts badname = {.capacity = 1024, .shm_name = "no-slash"};
    cr_assert(eq(int, crp_table_create(&t, &small), CRP_INVAL));
    cr_assert(eq(int, crp_table_create(&t, &shards3), CRP_INVAL));
    cr_assert(eq(int, crp_table_create(&t, &badname), CRP_INVAL));
    cr_assert(eq(ptr, t, NULL));
    crp_table_destroy(&t); /* NULL-safe */
}

Test(table, insert_then_lookup)
{
    crp_table *t = make(1024, 2);
    crp_slot s1, s2;
    bool created;
    crp_verdict v = look(t, "conn-a");
    cr_assert(eq(int, v.state, CRP_STATE_UNKNOWN));

    cr_assert(eq(int, put(t, "conn-a", "contoso", &s1, &created), CRP_OK));
    cr_assert(created);
    cr_assert(eq(int, put(t, "conn-a", "other", &s2, &created), CRP_OK));
    cr_assert(not(created));
    cr_assert(eq(u32, s1, s2));

    v = look(t, "conn-a");
    cr_assert(eq(int, v.state, CRP_STATE_ACTIVE));
    cr_assert(eq(u64, v.since_ms, 0));
    cr_assert(eq(int, look(t, "conn-b").state, CRP_STATE_UNKNOWN));

    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.live, 1));
    crp_table_destroy(&t);
    cr_assert(eq(ptr, t, NULL));
}

Test(table, state_change_is_seen_by_next_lookup)
{
    crp_table *t = make(1024, 1);
    cr_assert(eq(int, put(t, "conn-a", "", NULL, NULL), CRP_OK));
    set_state(t, "conn-a", CRP_STATE_RESTRICTED, CRP_REASON_PHISH_RATIO | CRP_REASON_MALWARE,
              1764806400123ull, true);
    crp_verdict v = look(t, "conn-a");
    cr_assert(eq(int, v.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(int, v.reasons, CRP_REASON_PHISH_RATIO | CRP_REASON_MALWARE));
    cr_assert(eq(u64, v.since_ms, 1764806400123ull));
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.restricted, 1));

    set_state(t, "conn-a", CRP_STATE_PROBATION, 0, 5, false);
    v = look(t, "conn-a");
    cr_assert(eq(int, v.state, CRP_STATE_PROBATION));
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.restricted, 0));
    crp_table_destroy(&t);
}

Test(table, snapshot_read_copies_every_field)
{
    crp_table *t = make(1024, 2);
    char id40[41], id41[42], id255[256], tenant64[65];
    memset(id40, 'a', 40);
    id40[40] = 0;
    memset(id41, 'b', 41);
    id41[41] = 0;
    for (int i = 0; i < 255; i++)
        id255[i] = (char)('A' + i % 26);
    id255[255] = 0;
    memset(tenant64, 't', 64);
    tenant64[64] = 0;
    const char *ids[] = {"x", id40, id41, id255};
    for (size_t i = 0; i < 4; i++) {
        crp_slot s;
        cr_assert(eq(int, put(t, ids[i], i % 2 ? tenant64 : "fabrikam", &s, NULL), CRP_OK));
        crp_entry e;
        crp_table_load_sw(t, s, &e);
        memset(e.payload, (int)(0x10 + i), sizeof e.payload);
        e.last_ms = 4242 + i;
        crp_table_store_sw(t, s, &e);
    }
    for (size_t i = 0; i < 4; i++) {
        crp_key k = crp_table_key(t, ids[i], strlen(ids[i]));
        crp_record r;
        cr_assert(eq(int, crp_table_read(t, &k, &r), CRP_OK));
        cr_assert(eq(str, r.id, (char *)ids[i]));
        cr_assert(eq(u8, r.id_len, strlen(ids[i])));
        cr_assert(eq(str, r.tenant, i % 2 ? tenant64 : "fabrikam"));
        cr_assert(eq(u64, r.entry.last_ms, 4242 + i));
        for (size_t j = 0; j < CRP_PAYLOAD_SIZE; j++)
            cr_assert(eq(u8, r.entry.payload[j], 0x10 + i));
    }
    crp_key missing = crp_table_key(t, "nope", 4);
    crp_record r;
    cr_assert(eq(int, crp_table_read(t, &missing, &r), CRP_NOTFOUND));
    crp_table_destroy(&t);
}

Test(table, rejects_bad_ids)
{
    crp_table *t = make(1024, 1);
    char big[300];
    memset(big, 'x', sizeof big);
    crp_key k = crp_table_key(t, big, 256);
    crp_slot s;
    bool c;
    cr_assert(eq(int, crp_table_upsert_sw(t, &k, big, 256, "", 0, 1, &s, &c), CRP_INVAL));
    cr_assert(eq(int, crp_table_upsert_sw(t, &k, big, 0, "", 0, 1, &s, &c), CRP_INVAL));
    cr_assert(eq(int, crp_table_upsert_sw(t, &k, big, 10, big, 65, 1, &s, &c), CRP_INVAL));
    crp_table_destroy(&t);
}

Test(table, seed_decides_keys)
{
    crp_table *a = NULL, *b = NULL, *c = NULL;
    crp_table_opts o1 = {.capacity = 64, .seed = 7}, o0 = {.capacity = 64};
    cr_assert(eq(int, crp_table_create(&a, &o1), CRP_OK));
    cr_assert(eq(int, crp_table_create(&b, &o1), CRP_OK));
    cr_assert(eq(int, crp_table_create(&c, &o0), CRP_OK));
    crp_key ka = crp_table_key(a, "id", 2), kb = crp_table_key(b, "id", 2),
            kc = crp_table_key(c, "id", 2);
    cr_assert(eq(u64, ka.lo, kb.lo));
    cr_assert(eq(u64, ka.hi, kb.hi));
    cr_assert(ne(u64, ka.lo, kc.lo)); /* random seed: 2^-64 chance of a false failure */
    cr_assert(ne(u64, crp_table_generation(a), crp_table_generation(b)));
    crp_table_destroy(&a);
    crp_table_destroy(&b);
    crp_table_destroy(&c);
}

/* With several shards each holds its share: the fullest one starts
 * evicting early. Shard counts at time t deviate by sqrt(t * 3/16) (~111
 * keys here), so a shard reaches its share about 4 * z * 111 keys early;
 * CAP / 32 = 2048 keys is z = 4.6, a one-in-a-hundred-thousand event. */
Test(table, sharded_table_fills_to_near_capacity)
{
    enum { CAP = 1 << 16 };
    crp_table *t = make(CAP, 4);
    char id[40];
    uint64_t first_eviction = 0;
    for (int i = 0; i < CAP; i++) {
        snprintf(id, sizeof id, "%08x-0000-4000-8000-%012d", i, i);
        cr_assert(eq(int, put(t, id, "", NULL, NULL), CRP_OK));
        crp_table_stats st;
        crp_table_stats_get(t, &st);
        if (st.evictions && !first_eviction)
            first_eviction = (uint64_t)i;
        cr_assert(le(u64, st.live, CAP));
    }
    cr_assert(first_eviction == 0 || first_eviction >= CAP - CAP / 32, "first eviction at %lu",
              (unsigned long)first_eviction);
    crp_table_destroy(&t);
}

Test(table, iteration_sees_every_entry_once)
{
    crp_table *t = make(4096, 4);
    enum { N = 3000 };
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "conn-%d", i);
        cr_assert(eq(int, put(t, id, "", NULL, NULL), CRP_OK));
        if (i % 100 == 0)
            set_state(t, id, CRP_STATE_RESTRICTED, CRP_REASON_MANUAL, 1, true);
    }
    uint64_t cursor = 0;
    crp_record r;
    int count = 0, restricted = 0;
    while (crp_table_next(t, &cursor, &r)) {
        int n;
        cr_assert(eq(int, sscanf(r.id, "conn-%d", &n), 1));
        cr_assert(n >= 0 && n < N);
        cr_assert(eq(u8, seen[n], 0));
        seen[n] = 1;
        count++;
        restricted += r.entry.state == CRP_STATE_RESTRICTED;
    }
    cr_assert(eq(int, count, N));
    cr_assert(eq(int, restricted, N / 100));
    crp_table_destroy(&t);
}

/* Linear probing within a bounded window (256 slots) at load factor 0.8:
 * a rare cluster longer than the window makes an insert evict an idle clean
 * entry a little before the nominal capacity. Allow one in a thousand. */
Test(table, holds_its_capacity)
{
    enum { CAP = 1 << 16 };
    crp_table *t = make(CAP, 1);
    char id[40];
    for (int i = 0; i < CAP; i++) {
        snprintf(id, sizeof id, "%08x-0000-4000-8000-%012d", i, i);
        cr_assert(eq(int, put(t, id, "", NULL, NULL), CRP_OK));
    }
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(le(u64, st.evictions, CAP / 1000));
    cr_assert(eq(u64, st.live, CAP - st.evictions));
    cr_assert(eq(u64, st.insert_full, 0));
    uint64_t found = 0;
    for (int i = 0; i < CAP; i++) {
        snprintf(id, sizeof id, "%08x-0000-4000-8000-%012d", i, i);
        found += look(t, id).state == CRP_STATE_ACTIVE;
    }
    cr_assert(eq(u64, found, st.live));
    /* Once full, an insert evicts exactly one entry. */
    cr_assert(eq(int, put(t, "one-more", "", NULL, NULL), CRP_OK));
    crp_table_stats st2;
    crp_table_stats_get(t, &st2);
    cr_assert(eq(u64, st2.live, st.live < CAP ? st.live + 1 : st.live));
    cr_assert(eq(int, look(t, "one-more").state, CRP_STATE_ACTIVE));
    crp_table_destroy(&t);
}

/* A flood of unique ids at ten times the capacity must never push out a
 * restricted or dirty connector, and must keep the table within bounds. */
Test(table, flood_never_evicts_restricted)
{
    enum { CAP = 4096, KEEP = 200 };
    crp_table *t = make(CAP, 2);
    char id[48];
    for (int i = 0; i < KEEP; i++) {
        snprintf(id, sizeof id, "keep-%d", i);
        cr_assert(eq(int, put(t, id, "contoso", NULL, NULL), CRP_OK));
        if (i % 2)
            set_state(t, id, CRP_STATE_RESTRICTED, CRP_REASON_SPAM_RATIO, 99, true);
        else
            set_state(t, id, CRP_STATE_ACTIVE, 0, 0, true); /* dirty: has bad signal */
    }
    uint64_t refused = 0;
    for (int i = 0; i < 10 * CAP; i++) {
        snprintf(id, sizeof id, "flood-%d-%08x", i, (unsigned)i * 2654435761u);
        crp_err err = put(t, id, "evil", NULL, NULL);
        cr_assert(err == CRP_OK || err == CRP_FULL, "unexpected %s", crp_strerror(err));
        refused += err == CRP_FULL;
    }
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(le(u64, st.live, CAP));
    cr_assert(ge(u64, st.evictions, 9 * CAP - refused));
    cr_assert(eq(u64, st.insert_full, refused));
    cr_assert(eq(u64, st.restricted, KEEP / 2));
    for (int i = 0; i < KEEP; i++) {
        snprintf(id, sizeof id, "keep-%d", i);
        crp_verdict v = look(t, id);
        cr_assert(eq(int, v.state, i % 2 ? CRP_STATE_RESTRICTED : CRP_STATE_ACTIVE), "keep-%d lost",
                  i);
    }
    crp_table_destroy(&t);
}

/* When full, an insert evicts the entry idle longest (minute granularity)
 * among the candidates near the key. Half the entries are old and half
 * recent; with 32 candidates looked at, missing every old one has
 * probability 2^-32, so only old entries may go. */
Test(table, eviction_takes_the_longest_idle)
{
    enum { CAP = 1024, NEW = 50 };
    crp_table *t = make(CAP, 1);
    char id[32];
    for (int i = 0; i < CAP; i++) {
        snprintf(id, sizeof id, "idle-%d", i);
        crp_key k = crp_table_key(t, id, strlen(id));
        crp_slot s;
        bool c;
        uint64_t now = (i % 2 ? 100 : 0) * 60000u;
        cr_assert(eq(int, crp_table_upsert_sw(t, &k, id, strlen(id), "", 0, now, &s, &c), CRP_OK));
    }
    for (int i = 0; i < NEW; i++) {
        snprintf(id, sizeof id, "new-%d", i);
        crp_key k = crp_table_key(t, id, strlen(id));
        crp_slot s;
        bool c;
        cr_assert(eq(int, crp_table_upsert_sw(t, &k, id, strlen(id), "", 0, 200 * 60000u, &s, &c),
                     CRP_OK));
    }
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(ge(u64, st.evictions, NEW));
    int old_gone = 0;
    for (int i = 0; i < CAP; i++) {
        snprintf(id, sizeof id, "idle-%d", i);
        if (i % 2)
            cr_assert(eq(int, look(t, id).state, CRP_STATE_ACTIVE), "recent %s evicted", id);
        else
            old_gone += look(t, id).state == CRP_STATE_UNKNOWN;
    }
    cr_assert(eq(u64, (uint64_t)old_gone, st.evictions));
    crp_table_destroy(&t);
}

Test(table, full_of_restricted_refuses_inserts)
{
    crp_table *t = make(64, 1);
    char id[32];
    int stored = 0;
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof id, "r-%d", i);
        if (put(t, id, "", NULL, NULL) == CRP_OK) {
            set_state(t, id, CRP_STATE_RESTRICTED, CRP_REASON_MANUAL, 1, true);
            stored++;
        }
    }
    cr_assert(eq(int, stored, 64));
    cr_assert(eq(int, put(t, "newcomer", "", NULL, NULL), CRP_FULL));
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.insert_full, 1));
    cr_assert(eq(u64, st.live, 64));
    crp_table_destroy(&t);
}

Test(table, long_id_pool_is_bounded_and_recycled)
{
    crp_table *t = make(64, 1);
    char id[128];
    int ok = 0, full = 0;
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof id, "a-very-long-connector-name-that-does-not-fit-inline-%04d", i);
        crp_err err = put(t, id, "", NULL, NULL);
        if (err == CRP_OK) {
            set_state(t, id, CRP_STATE_ACTIVE, 0, 0, true); /* not evictable */
            ok++;
        } else {
            cr_assert(eq(int, err, CRP_IDS_FULL));
            full++;
        }
    }
    cr_assert(gt(int, full, 0));
    crp_table_stats st;
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.ids_full, (uint64_t)full));
    /* Short ids still fit. */
    cr_assert(eq(int, put(t, "short", "", NULL, NULL), CRP_OK));
    crp_table_destroy(&t);
}

/* A pool full of clean long ids makes room for a new one: a clean holder
 * is evicted for its cell, even when the table itself is far from full. */
Test(table, full_long_id_pool_evicts_a_clean_holder)
{
    crp_table *t = make(4096, 1);
    char id[128];
    crp_table_stats st;
    int i = 0;
    for (;; i++) {
        snprintf(id, sizeof id, "a-very-long-connector-name-that-does-not-fit-inline-%04d", i);
        cr_assert(eq(int, put(t, id, "", NULL, NULL), CRP_OK), "long id %d refused", i);
        crp_table_stats_get(t, &st);
        if (st.evictions > 0)
            break;
        cr_assert(lt(int, i, 4096), "the pool never filled");
    }
    /* The pool holds far fewer long ids than the table holds entries. */
    cr_assert(lt(u64, st.live, 4096 / 2));
    cr_assert(eq(u64, st.ids_full, 0));
    cr_assert(eq(u64, st.evictions, 1));
    cr_assert(eq(int, look(t, id).state, CRP_STATE_ACTIVE));
    uint64_t holders = st.live;
    /* Restrict every holder: now nothing may give up a cell. */
    for (int j = 0; j <= i; j++) {
        snprintf(id, sizeof id, "a-very-long-connector-name-that-does-not-fit-inline-%04d", j);
        if (look(t, id).state == CRP_STATE_ACTIVE)
            set_state(t, id, CRP_STATE_RESTRICTED, CRP_REASON_MALWARE, 1000, true);
    }
    cr_assert(
        eq(int, put(t, "another-very-long-connector-name-that-does-not-fit-inline", "", NULL, NULL),
           CRP_IDS_FULL));
    crp_table_stats_get(t, &st);
    cr_assert(eq(u64, st.ids_full, 1));
    cr_assert(eq(u64, st.live, holders));
    crp_table_destroy(&t);
}

/* More than 4096 distinct tenants: the connector is stored with the empty
 * tenant (and counted), not refused. */
Test(table, full_tenant_table_stores_the_connector_without_its_tenant)
{
    crp_table *t = make(16384, 2);
    char id[64], tenant[64];
    crp_table_stats st;
    for (int i = 0; i < 4200; i++) {
        snprintf(id, sizeof id, "c-%d", i);
        snprintf(tenant, sizeof tenant, "tenant-%d", i);
        cr_assert(eq(int, put(t, id, tenant, NULL, NULL), CRP_OK), "%s refused", id);
    }
    crp_table_stats_get(t, &st);
    /* The empty tenant takes one of the 4096 entries from the start. */
    cr_assert(eq(u64, st.tenants_full, 4200 - 4095));
    cr_assert(eq(u64, st.live, 4200));
    crp_record r;
    crp_key k = crp_table_key(t, "c-4199", 6);
    cr_assert(eq(int, crp_table_read(t, &k, &r), CRP_OK));
    cr_assert(eq(int, r.tenant_len, 0));
    k = crp_table_key(t, "c-7", 3);
    cr_assert(eq(int, crp_table_read(t, &k, &r), CRP_OK));
    cr_assert(eq(int, r.tenant_len, 8));
    cr_assert(eq(int, memcmp(r.tenant, "tenant-7", 8), 0));
    crp_table_destroy(&t);
}

Test(table, shared_memory_reader_in_another_process)
{
    char name[64];
    snprintf(name, sizeof name, "/crp-test-%d", (int)getpid());
    crp_table *t = NULL;
    crp_table_opts o = {.capacity = 1024, .shards = 2, .shm_name = name};
    cr_assert(eq(int, crp_table_create(&t, &o), CRP_OK));
    cr_assert(eq(int, put(t, "shm-conn", "contoso", NULL, NULL), CRP_OK));
    set_state(t, "shm-conn", CRP_STATE_RESTRICTED, CRP_REASON_HC_PHISH, 777, true);

    int to_parent[2], to_child[2];
    cr_assert(eq(int, pipe(to_parent), 0));
    cr_assert(eq(int, pipe(to_child), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        /* Child: attach read-only, check, then wait for the parent's second
         * change before checking again. Exit status reports the step that
         * failed. */
        crp_table *r = NULL;
        if (crp_table_attach(&r, name) != CRP_OK)
            _exit(10);
        crp_key k = crp_table_key(r, "shm-conn", 8);
        crp_verdict v;
        if (!crp_table_lookup(r, &k, &v) || v.state != CRP_STATE_RESTRICTED ||
            v.reasons != CRP_REASON_HC_PHISH || v.since_ms != 777)
            _exit(11);
        crp_record rec;
        if (crp_table_read(r, &k, &rec) != CRP_OK || strcmp(rec.id, "shm-conn") != 0 ||
            strcmp(rec.tenant, "contoso") != 0)
            _exit(12);
        if (crp_table_generation(r) == 0 || crp_table_retired(r))
            _exit(13);
        char c;
        if (write(to_parent[1], "a", 1) != 1 || read(to_child[0], &c, 1) != 1)
            _exit(14);
        if (!crp_table_lookup(r, &k, &v) || v.state != CRP_STATE_PROBATION)
            _exit(15);
        crp_table_destroy(&r);
        _exit(0);
    }
    char c;
    cr_assert(eq(int, (int)read(to_parent[0], &c, 1), 1));
    set_state(t, "shm-conn", CRP_STATE_PROBATION, 0, 888, true);
    cr_assert(eq(int, (int)write(to_child[1], "b", 1), 1));
    int status;
    cr_assert(eq(int, waitpid(pid, &status, 0), pid));
    bool exited = WIFEXITED(status);
    cr_assert(exited);
    cr_assert(eq(int, WEXITSTATUS(status), 0));

    /* A reader still mapping the object learns that it was retired. */
    crp_table *r = NULL;
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_OK));
    cr_assert(not(crp_table_retired(r)));
    crp_table_destroy(&t);
    cr_assert(crp_table_retired(r));
    crp_table_destroy(&r);
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_SYS)); /* unlinked */
    for (int i = 0; i < 2; i++) {
        close(to_parent[i]);
        close(to_child[i]);
    }
}

Test(table, replacing_a_shm_table_retires_the_old_one)
{
    char name[64];
    snprintf(name, sizeof name, "/crp-test-r-%d", (int)getpid());
    crp_table *a = NULL, *b = NULL, *r = NULL;
    crp_table_opts o = {.capacity = 256, .shm_name = name};
    cr_assert(eq(int, crp_table_create(&a, &o), CRP_OK));
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_OK));
    uint64_t g1 = crp_table_generation(r);
    cr_assert(eq(int, crp_table_create(&b, &o), CRP_OK)); /* e.g. after a crash */
    cr_assert(crp_table_retired(r));
    crp_table_destroy(&r);
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_OK));
    cr_assert(ne(u64, crp_table_generation(r), g1));
    crp_table_destroy(&r);
    crp_table_destroy(&a); /* already replaced: must not unlink b's object */
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_OK));
    crp_table_destroy(&r);
    crp_table_destroy(&b);
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_SYS));
}

Test(table, attach_rejects_foreign_objects)
{
    char name[64];
    snprintf(name, sizeof name, "/crp-test-f-%d", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(int, ftruncate(fd, 8192), 0));
    cr_assert(eq(int, (int)write(fd, "not a table", 11), 11));
    close(fd);
    crp_table *r = NULL;
    cr_assert(eq(int, crp_table_attach(&r, name), CRP_BADFILE));
    shm_unlink(name);
}
