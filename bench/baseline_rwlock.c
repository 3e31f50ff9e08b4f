#include "baseline_rwlock.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One connector. Field order puts the next pointer and the key first, so a
 * chain walk reads one cache line per node it rejects. */
typedef struct bench_rwnode {
    struct bench_rwnode *next;
    crp_key key;
    crp_entry entry;
    uint16_t tenant; /* index into the map's interned tenants */
    uint8_t id_len;
    char id[]; /* id_len bytes, not NUL-terminated */
} bench_rwnode;

#define BENCH_RW_TENANTS_MAX 65535u

struct bench_rwmap {
    pthread_rwlock_t lock;
    bench_rwnode **buckets;
    uint64_t mask;
    uint64_t count;
    uint64_t node_bytes; /* sum of malloc_usable_size over the nodes */
    char **tenants;      /* interned, NUL-terminated */
    uint32_t ntenants;
    uint32_t tenants_cap;
};

crp_err bench_rwmap_create(bench_rwmap **out, uint64_t capacity)
{
    bench_rwmap *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CRP_NOMEM;
    uint64_t n = 16;
    while (n < capacity)
        n <<= 1;
    m->buckets = calloc(n, sizeof(*m->buckets));
    if (m->buckets == NULL) {
        free(m);
        return CRP_NOMEM;
    }
    m->mask = n - 1;
    pthread_rwlock_init(&m->lock, NULL);
    *out = m;
    return CRP_OK;
}

void bench_rwmap_destroy(bench_rwmap **mp)
{
    bench_rwmap *m = *mp;
    if (m == NULL)
        return;
    for (uint64_t b = 0; b <= m->mask; b++) {
        bench_rwnode *n = m->buckets[b];
        while (n != NULL) {
            bench_rwnode *next = n->next;
            free(n);
            n = next;
        }
    }
    for (uint32_t i = 0; i < m->ntenants; i++)
        free(m->tenants[i]);
    free(m->tenants);
    free(m->buckets);
    pthread_rwlock_destroy(&m->lock);
    free(m);
    *mp = NULL;
}

/* The low key bits choose the bucket: XXH3 output is uniform in every bit. */
static bench_rwnode **bench_rwmap_bucket(const bench_rwmap *m, const crp_key *k)
{
    return &m->buckets[k->lo & m->mask];
}

/* A linear search: the benchmark uses a handful of tenants, and interning
 * is outside every timed path. */
static crp_err bench_rwmap_tenant(bench_rwmap *m, const void *tenant, size_t len, uint16_t *out)
{
    for (uint32_t i = 0; i < m->ntenants; i++) {
        if (strlen(m->tenants[i]) == len && memcmp(m->tenants[i], tenant, len) == 0) {
            *out = (uint16_t)i;
            return CRP_OK;
        }
    }
    if (m->ntenants == BENCH_RW_TENANTS_MAX)
        return CRP_TENANTS_FULL;
    if (m->ntenants == m->tenants_cap) {
        uint32_t cap = m->tenants_cap ? 2 * m->tenants_cap : 16;
        char **t = realloc(m->tenants, cap * sizeof(*t));
        if (t == NULL)
            return CRP_NOMEM;
        m->tenants = t;
        m->tenants_cap = cap;
    }
    char *s = malloc(len + 1);
    if (s == NULL)
        return CRP_NOMEM;
    memcpy(s, tenant, len);
    s[len] = '\0';
    m->tenants[m->ntenants] = s;
    *out = (uint16_t)m->ntenants++;
    return CRP_OK;
}

crp_err bench_rwmap_insert(bench_rwmap *m, const crp_key *k, const void *id, size_t id_len,
                           const void *tenant, size_t tenant_len, uint64_t now_ms)
{
    if (id_len == 0 || id_len > CRP_ID_MAX || tenant_len > CRP_TENANT_MAX)
        return CRP_INVAL;
    crp_err err = CRP_OK;
    pthread_rwlock_wrlock(&m->lock);
    bench_rwnode **head = bench_rwmap_bucket(m, k);
    for (bench_rwnode *n = *head; n != NULL; n = n->next) {
        if (n->key.lo == k->lo && n->key.hi == k->hi)
            goto out_unlock;
    }
    uint16_t ti;
    err = bench_rwmap_tenant(m, tenant, tenant_len, &ti);
    if (err != CRP_OK)
        goto out_unlock;
    bench_rwnode *n = malloc(sizeof(*n) + id_len);
    if (n == NULL) {
        err = CRP_NOMEM;
        goto out_unlock;
    }
    memset(n, 0, sizeof(*n));
    n->key = *k;
    n->entry.state = CRP_STATE_ACTIVE;
    n->entry.last_ms = now_ms;
    n->tenant = ti;
    n->id_len = (uint8_t)id_len;
    memcpy(n->id, id, id_len);
    n->next = *head;
    *head = n;
    m->count++;
    m->node_bytes += malloc_usable_size(n);
out_unlock:
    pthread_rwlock_unlock(&m->lock);
    return err;
}

bool bench_rwmap_lookup(bench_rwmap *m, const crp_key *k, crp_verdict *out)
{
    bool found = false;
    out->state = CRP_STATE_UNKNOWN;
    out->reasons = 0;
    out->since_ms = 0;
    pthread_rwlock_rdlock(&m->lock);
    for (const bench_rwnode *n = *bench_rwmap_bucket(m, k); n != NULL; n = n->next) {
        if (n->key.lo == k->lo && n->key.hi == k->hi) {
            out->state = n->entry.state;
            out->reasons = n->entry.reasons;
            out->since_ms = n->entry.since_ms;
            found = true;
            break;
        }
    }
    pthread_rwlock_unlock(&m->lock);
    return found;
}

uint64_t bench_rwmap_bytes(const bench_rwmap *m)
{
    uint64_t b = sizeof(*m) + (m->mask + 1) * sizeof(*m->buckets) + m->node_bytes;
    for (uint32_t i = 0; i < m->ntenants; i++)
        b += strlen(m->tenants[i]) + 1;
    return b;
}

uint64_t bench_rwmap_count(const bench_rwmap *m)
{
    return m->count;
}
