/* The connector table.
 *
 * LAYOUT. One mapping: a 4 KiB header, then per-shard statistics, then four
 * arrays indexed by slot number, then the long-id pool and the tenant table.
 * Only offsets are stored, so the bytes mean the same wherever they are mapped.
 *
 *   hot[slot]   32 bytes, two per cache line: key (16), state word (8),
 *               generation (4), meta (id length, tenant index, coarse
 *               age) (4).
 *               A lookup reads nothing else.
 *   cold[slot]  48 bytes: sequence counter, 36-byte payload, last_ms.
 *   ids[slot]   40 bytes: the id text when it fits, else a pool cell index.
 *   pool        256-byte cells for ids longer than 40 bytes, per shard.
 *   tenants     interned tenant names; entries refer to them by index.
 *
 * Shard s owns slots [s * shard_slots, (s + 1) * shard_slots) and probes
 * linearly inside them, wrapping at the shard's end. A key's home slot is
 * chosen from key.lo with a multiply-shift (no power-of-two needed); its
 * shard from the top bits of key.hi.
 *
 * INVARIANTS.
 *  1. Slot status lives in the low two bits of the state word:
 *       EMPTY (0) -> LIVE                 insert (writer)
 *       TOMBSTONE -> LIVE                 insert reusing a dead slot (writer)
 *       LIVE      -> TOMBSTONE            eviction (writer)
 *       TOMBSTONE -> EMPTY                clean-up, only when the next slot
 *                                         is EMPTY (writer)
 *     Only the shard's writer changes any slot of its shard.
 *  2. A key is present at most once and lies within PROBE_MAX slots of its
 *     home, with no EMPTY slot between home and its position. So a reader
 *     may stop at the first EMPTY slot or after PROBE_MAX slots.
 *  3. key, id length, tenant and the id cell of a LIVE slot are immutable
 *     (the coarse age bits of meta are the writer's eviction hint). They change
 *     only when the slot is reused, and reuse is bracketed by the slot's
 *     generation: odd while the writer rewrites the slot, even otherwise.
 *     A reader that sees the same even generation before and after reading
 *     read one occupant's fields.
 *  4. The state word (status, state, reasons, flags, since) is one atomic
 *     64-bit value, so state changes need no bracketing: a lookup sees the
 *     old or the new word, never a mix.
 *  5. cold[] and the id cell are additionally bracketed by the per-slot
 *     sequence counter (odd while written), for consistent multi-field
 *     snapshot reads. Evicting a slot bumps it too, because its pool cell
 *     may be reused by another slot at once.
 *  6. Every field that is read concurrently is an atomic accessed with an
 *     explicit order; plain memory is touched only by the writer, so the
 *     code has no data races in the C11 sense (TSan checks this).
 *
 * Readers never wait: a lookup visits at most PROBE_MAX slots once each,
 * and a slot being rewritten (odd generation, or a generation that changed
 * under it) is treated as "not this key", which linearises the lookup
 * before the concurrent insert. Snapshot reads (admin only) do retry, a
 * bounded number of times.
 */
/* MAP_ANONYMOUS and MADV_HUGEPAGE are not POSIX. */
#define _DEFAULT_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "crp/table.h"
#include "crp/clock.h"

#include <assert.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define TABLE_MAGIC   0x314c424154505243ull /* "CRPTABL1" little-endian */
#define TABLE_VERSION 1u
#define HEADER_SIZE   4096u
#define PROBE_MAX     256u
#define VICTIM_SCAN   32u
#define ID_INLINE     40u
#define POOL_CELL     256u
#define POOL_EVERY    64u   /* one long-id cell per this many slots */
#define POOL_SCAN     4096u /* slots searched for a long id to evict, at most */
#define TENANT_CAP    4096u
#define MAX_SHARDS    256u
/* A snapshot read spins briefly, then yields, and gives up (CRP_BUSY) only
 * after READ_GIVE_UP_NS: a writer's critical section is a few dozen stores,
 * so only a preempted or dead writer (a crashed engine, seen from another
 * process) keeps it open that long. */
#define READ_SPINS      64u
#define READ_GIVE_UP_NS 200000000ull
#define NO_SLOT         UINT32_MAX
#define NO_CELL         UINT32_MAX

/* State word: bits 0-1 status, 2-3 state, 4-9 reasons, 10 dirty,
 * 11 until_midnight, 12-15 spare, 16-63 since (ms since the epoch, 48 bits
 * last until the year 10889). */
enum { ST_EMPTY = 0, ST_LIVE = 1, ST_TOMB = 2 };
#define W_STATUS(w)  ((unsigned)((w)&3u))
#define W_STATE(w)   ((unsigned)(((w) >> 2) & 3u))
#define W_REASONS(w) ((unsigned)(((w) >> 4) & 0x3fu))
#define W_DIRTY      (1ull << 10)
#define W_TODAY      (1ull << 11)
#define W_SINCE(w)   ((w) >> 16)
#define SINCE_MAX    ((1ull << 48) - 1)

/* Meta word: bits 0-7 id length, 8-19 tenant index, 20-31 the minute of the
 * last update modulo 4096 (68 hours). The age lets an insert pick its
 * eviction victim from the hot lines alone, without a cold-line miss per
 * candidate; entries idle longer than 68 hours wrap and may look young,
 * which only makes them a less likely victim than they deserve. */
#define META_TENANT(m) (((m) >> 8) & 0xfffu)
#define META_AGE(m)    ((m) >> 20)
#define AGE_MASK       0xfffu
#define AGE_OF(ms)     ((uint32_t)((ms) / 60000u) & AGE_MASK)

static inline uint32_t make_meta(size_t id_len, uint32_t tenant, uint64_t now_ms)
{
    return AGE_OF(now_ms) << 20 | tenant << 8 | (uint32_t)id_len;
}

struct hot {
    _Atomic uint64_t key_lo;
    _Atomic uint64_t key_hi;
    _Atomic uint64_t word;
    _Atomic uint32_t gen;
    _Atomic uint32_t meta; /* age minutes << 20 | tenant index << 8 | id length */
};

struct cold {
    _Atomic uint32_t seq;
    _Atomic uint32_t payload[CRP_PAYLOAD_SIZE / 4];
    _Atomic uint64_t last_ms;
};

struct idcell {
    _Atomic uint64_t w[ID_INLINE / 8];
};

struct poolcell {
    _Atomic uint64_t w[POOL_CELL / 8];
};

struct tenant {
    _Atomic uint32_t state; /* 0 free, 1 being written, 2 ready */
    _Atomic uint32_t len;
    _Atomic uint64_t hash;
    _Atomic uint64_t text[CRP_TENANT_MAX / 8];
};

/* Per-shard counters and the pool allocator. Each shard's block is written
 * by its writer only; others read the counters relaxed (statistics). */
struct shard {
    _Atomic uint64_t live;
    _Atomic uint64_t restricted;
    _Atomic uint64_t evictions;
    _Atomic uint64_t insert_full;
    _Atomic uint64_t ids_full;
    _Atomic uint64_t tenants_full;
    uint32_t pool_next; /* first never-used cell, relative to the shard */
    uint32_t pool_free; /* head of the free list, or NO_CELL */
    uint32_t pool_hand; /* where the next search for a long id to evict starts */
    uint8_t pad[4];
};

struct header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t total_bytes;
    uint64_t capacity;
    uint64_t slots;
    uint64_t shard_slots;
    uint64_t shard_limit;
    uint32_t shards;
    uint32_t shard_shift;
    uint32_t pool_cells; /* per shard */
    uint32_t tenant_cap;
    uint64_t seed;
    uint64_t generation;
    uint64_t off_shards, off_hot, off_cold, off_ids, off_pool, off_tenants;
    _Atomic uint32_t retired;
};

_Static_assert(sizeof(struct hot) == 32, "two hot entries per cache line");
_Static_assert(sizeof(struct cold) == 48, "cold entry size");
_Static_assert(sizeof(struct idcell) == ID_INLINE, "id cell size");
_Static_assert(sizeof(struct shard) == 64, "one cache line per shard");
_Static_assert(sizeof(struct header) <= HEADER_SIZE, "header fits its page");
_Static_assert(TENANT_CAP <= 4096, "tenant index has 12 bits in meta");

struct crp_table {
    unsigned char *base;
    size_t bytes;
    struct header *h;
    struct shard *shards;
    struct hot *hot;
    struct cold *cold;
    struct idcell *ids;
    struct poolcell *pool;
    struct tenant *tenants;
    bool writable;
    char shm_name[256];
};

/* ---- small helpers ---------------------------------------------------- */

static inline uint64_t make_word(unsigned status, const crp_entry *e)
{
    uint64_t since = e->since_ms > SINCE_MAX ? SINCE_MAX : e->since_ms;
    return (uint64_t)status | (uint64_t)(e->state & 3u) << 2 | (uint64_t)(e->reasons & 0x3fu) << 4 |
           (e->dirty ? W_DIRTY : 0) | (e->until_midnight ? W_TODAY : 0) | since << 16;
}

static inline uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static inline uint64_t home_of(const crp_table *t, const crp_key *k)
{
    /* Multiply-shift maps 32 hash bits onto [0, shard_slots) uniformly. */
    return ((k->lo >> 32) * t->h->shard_slots) >> 32;
}

unsigned crp_table_shard_of(const crp_table *t, const crp_key *k)
{
    return t->h->shards == 1 ? 0 : (unsigned)(k->hi >> t->h->shard_shift);
}

unsigned crp_table_shards(const crp_table *t)
{
    return t->h->shards;
}

void crp_table_shard_range(const crp_table *t, unsigned s, uint64_t *first, uint64_t *end)
{
    *first = (uint64_t)s * t->h->shard_slots;
    *end = *first + t->h->shard_slots;
}

crp_key crp_table_key(const crp_table *t, const void *id, size_t len)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(id, len, t->h->seed);
    return (crp_key){.lo = h.low64, .hi = h.high64};
}

/* Copies n bytes into atomic words with relaxed stores: the bracketing
 * counter (generation or sequence) orders them for readers. */
static void words_store(_Atomic uint64_t *dst, const void *src, size_t n)
{
    uint64_t buf[POOL_CELL / 8] = {0};
    memcpy(buf, src, n);
    for (size_t i = 0; i < (n + 7) / 8; i++)
        atomic_store_explicit(&dst[i], buf[i], memory_order_relaxed);
}

static void words_load(const _Atomic uint64_t *src, void *dst, size_t n)
{
    uint64_t buf[POOL_CELL / 8];
    for (size_t i = 0; i < (n + 7) / 8; i++)
        buf[i] = atomic_load_explicit((_Atomic uint64_t *)&src[i], memory_order_relaxed);
    memcpy(dst, buf, n);
}

/* ---- creation and mapping --------------------------------------------- */

static crp_err random_u64(uint64_t *out)
{
    uint64_t v = 0;
    while (v == 0) {
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
            return CRP_SYS;
    }
    *out = v;
    return CRP_OK;
}

static void bind_views(crp_table *t)
{
    struct header *h = (struct header *)t->base;
    t->h = h;
    t->shards = (struct shard *)(t->base + h->off_shards);
    t->hot = (struct hot *)(t->base + h->off_hot);
    t->cold = (struct cold *)(t->base + h->off_cold);
    t->ids = (struct idcell *)(t->base + h->off_ids);
    t->pool = (struct poolcell *)(t->base + h->off_pool);
    t->tenants = (struct tenant *)(t->base + h->off_tenants);
}

/* Computes the geometry into a header; returns false on bad options. */
static bool plan_layout(struct header *h, const crp_table_opts *o)
{
    unsigned shards = o->shards ? o->shards : 1;
    if (o->capacity < 64 * (uint64_t)shards || o->capacity > (1ull << 31) || shards > MAX_SHARDS ||
        (shards & (shards - 1)) != 0)
        return false;
    uint64_t shard_cap = (o->capacity + shards - 1) / shards;
    /* A quarter of slack keeps linear probes short at full load (load
     * factor 0.8); an even slot count keeps each shard's hot entries paired
     * on cache lines. */
    uint64_t shard_slots = align_up(shard_cap + shard_cap / 4 + 8, 2);
    uint64_t slots = shard_slots * shards;
    if (slots >= NO_SLOT)
        return false;
    uint32_t pool_cells = (uint32_t)(shard_slots / POOL_EVERY + 16);

    memset(h, 0, sizeof *h);
    h->magic = TABLE_MAGIC;
    h->version = TABLE_VERSION;
    h->header_size = HEADER_SIZE;
    h->capacity = o->capacity;
    h->shards = shards;
    h->shard_shift = shards == 1 ? 0 : 64 - (uint32_t)__builtin_ctz(shards);
    h->shard_slots = shard_slots;
    h->shard_limit = o->capacity / shards;
    h->slots = slots;
    h->pool_cells = pool_cells;
    h->tenant_cap = TENANT_CAP;

    uint64_t off = HEADER_SIZE;
    h->off_shards = off;
    off = align_up(off + (uint64_t)shards * sizeof(struct shard), 64);
    h->off_hot = off;
    off = align_up(off + slots * sizeof(struct hot), 64);
    h->off_cold = off;
    off = align_up(off + slots * sizeof(struct cold), 64);
    h->off_ids = off;
    off = align_up(off + slots * sizeof(struct idcell), 64);
    h->off_pool = off;
    off = align_up(off + (uint64_t)pool_cells * shards * sizeof(struct poolcell), 64);
    h->off_tenants = off;
    off = align_up(off + (uint64_t)TENANT_CAP * sizeof(struct tenant), 4096);
    h->total_bytes = off;
    return true;
}

/* Marks an existing table object of this name retired and unlinks it, so
 * readers still mapping it know to re-attach. A foreign object of the same
 * name is unlinked too: the name is ours by configuration. */
static void retire_existing(const char *name)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(struct header)) {
        void *p = mmap(NULL, sizeof(struct header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            struct header *h = p;
            if (h->magic == TABLE_MAGIC)
                /* Release: nothing to publish beyond the flag itself, but it
                 * pairs with the acquire in crp_table_retired() by habit. */
                atomic_store_explicit(&h->retired, 1, memory_order_release);
            munmap(p, sizeof(struct header));
        }
    }
    close(fd);
    shm_unlink(name);
}

static crp_err tenant_intern(crp_table *t, const void *name, size_t len, uint32_t *idx);

crp_err crp_table_create(crp_table **out, const crp_table_opts *opts)
{
    struct header plan;
    if (out == NULL || opts == NULL || !plan_layout(&plan, opts))
        return CRP_INVAL;
    const char *name = opts->shm_name && opts->shm_name[0] ? opts->shm_name : NULL;
    if (name && (name[0] != '/' || strlen(name) >= 256 || strchr(name + 1, '/')))
        return CRP_INVAL;

    crp_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return CRP_NOMEM;
    crp_err err = CRP_OK;
    uint64_t seed = opts->seed;
    if (seed == 0 && (err = random_u64(&seed)) != CRP_OK)
        goto out_free;
    uint64_t generation;
    if ((err = random_u64(&generation)) != CRP_OK)
        goto out_free;

    void *p;
    if (name) {
        retire_existing(name);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, opts->shm_mode ? opts->shm_mode : 0644);
        if (fd < 0) {
            err = CRP_SYS;
            goto out_free;
        }
        if (ftruncate(fd, (off_t)plan.total_bytes) != 0) {
            int e = errno;
            close(fd);
            shm_unlink(name);
            errno = e;
            err = CRP_SYS;
            goto out_free;
        }
        p = mmap(NULL, plan.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        int e = errno;
        close(fd);
        if (p == MAP_FAILED) {
            shm_unlink(name);
            errno = e;
            err = CRP_SYS;
            goto out_free;
        }
        snprintf(t->shm_name, sizeof t->shm_name, "%s", name);
    } else {
        p = mmap(NULL, plan.total_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
        if (p == MAP_FAILED) {
            err = CRP_SYS;
            goto out_free;
        }
    }
#ifdef MADV_HUGEPAGE
    /* Fewer TLB misses on big tables (a DRAM miss through 4 KiB pages costs
     * a page walk more). Advisory: shared memory gets huge pages only when
     * /sys/kernel/mm/transparent_hugepage/shmem_enabled allows it. */
    (void)madvise(p, plan.total_bytes, MADV_HUGEPAGE);
#endif
    t->base = p;
    t->bytes = plan.total_bytes;
    t->writable = true;
    plan.seed = seed;
    plan.generation = generation;
    /* Fresh mappings are zero: every slot EMPTY, every counter 0. */
    memcpy(t->base, &plan, sizeof plan);
    bind_views(t);
    for (unsigned s = 0; s < plan.shards; s++)
        t->shards[s].pool_free = NO_CELL;
    /* The tenant a connector falls back to when the tenant table is full
     * (crp_table_upsert_sw) always has its entry. */
    uint32_t empty_tenant;
    (void)tenant_intern(t, "", 0, &empty_tenant);
    *out = t;
    return CRP_OK;

out_free:
    free(t);
    return err;
}

crp_err crp_table_attach(crp_table **out, const char *shm_name)
{
    if (out == NULL || shm_name == NULL || shm_name[0] != '/')
        return CRP_INVAL;
    int fd = shm_open(shm_name, O_RDONLY, 0);
    if (fd < 0)
        return CRP_SYS;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return CRP_SYS;
    }
    if ((size_t)st.st_size < HEADER_SIZE) {
        close(fd);
        return CRP_BADFILE;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return CRP_SYS;
    const struct header *h = p;
    /* Validate everything a reader will index with, so a foreign or torn
     * object cannot send a lookup out of bounds. */
    struct header plan;
    crp_table_opts o = {.capacity = h->capacity, .shards = h->shards};
    bool ok = h->magic == TABLE_MAGIC && h->version == TABLE_VERSION &&
              h->total_bytes == (uint64_t)st.st_size && plan_layout(&plan, &o) &&
              plan.total_bytes == h->total_bytes && plan.off_tenants == h->off_tenants &&
              plan.off_hot == h->off_hot && plan.shard_slots == h->shard_slots;
    if (!ok) {
        munmap(p, (size_t)st.st_size);
        return CRP_BADFILE;
    }
    crp_table *t = calloc(1, sizeof *t);
    if (t == NULL) {
        munmap(p, (size_t)st.st_size);
        return CRP_NOMEM;
    }
    t->base = p;
    t->bytes = (size_t)st.st_size;
    t->writable = false;
    bind_views(t);
    *out = t;
    return CRP_OK;
}

void crp_table_destroy(crp_table **tp)
{
    if (tp == NULL || *tp == NULL)
        return;
    crp_table *t = *tp;
    /* Acquire pairs with the release in retire_existing(): if a newer
     * engine already replaced this object, the name is now its table's and
     * must not be unlinked. */
    if (t->writable && t->shm_name[0] &&
        atomic_load_explicit(&t->h->retired, memory_order_acquire) == 0) {
        /* Readers that still map the object learn to re-attach. */
        atomic_store_explicit(&t->h->retired, 1, memory_order_release);
        shm_unlink(t->shm_name);
    }
    munmap(t->base, t->bytes);
    free(t);
    *tp = NULL;
}

uint64_t crp_table_generation(const crp_table *t)
{
    return t->h->generation;
}

bool crp_table_retired(const crp_table *t)
{
    /* Acquire pairs with the release in destroy/retire_existing. */
    return atomic_load_explicit(&t->h->retired, memory_order_acquire) != 0;
}

uint64_t crp_table_capacity(const crp_table *t)
{
    return t->h->capacity;
}

const void *crp_table_bytes(const crp_table *t, size_t *len)
{
    *len = t->bytes;
    return t->base;
}

/* ---- lookup ------------------------------------------------------------ */

bool crp_table_lookup(const crp_table *t, const crp_key *k, crp_verdict *out)
{
    const struct header *h = t->h;
    uint64_t n = h->shard_slots;
    uint64_t base = crp_table_shard_of(t, k) * n;
    uint64_t i = home_of(t, k);

    for (unsigned d = 0; d < PROBE_MAX; d++) {
        struct hot *e = &t->hot[base + i];
        /* Acquire pairs with the writer's final release store of the
         * generation: an even value means the fields below are complete. */
        uint32_t g1 = atomic_load_explicit(&e->gen, memory_order_acquire);
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        uint64_t lo = atomic_load_explicit(&e->key_lo, memory_order_relaxed);
        uint64_t hi = atomic_load_explicit(&e->key_hi, memory_order_relaxed);
        /* Acquire fence pairs with the writer's release fence after it made
         * the generation odd: if we read any field of a new occupant, the
         * second load below sees the changed generation. */
        atomic_thread_fence(memory_order_acquire);
        uint32_t g2 = atomic_load_explicit(&e->gen, memory_order_relaxed);
        if ((g1 & 1u) == 0 && g1 == g2) {
            unsigned st = W_STATUS(w);
            if (st == ST_EMPTY)
                break;
            if (st == ST_LIVE && lo == k->lo && hi == k->hi) {
                out->state = (uint8_t)W_STATE(w);
                out->reasons = (uint8_t)W_REASONS(w);
                out->since_ms = W_SINCE(w);
                return true;
            }
        }
        if (++i == n)
            i = 0;
    }
    out->state = CRP_STATE_UNKNOWN;
    out->reasons = 0;
    out->since_ms = 0;
    return false;
}

void crp_table_prefetch(const crp_table *t, const crp_key *k, bool update)
{
    uint64_t i = crp_table_shard_of(t, k) * t->h->shard_slots + home_of(t, k);
    if (update) {
        __builtin_prefetch(&t->hot[i], 1, 3);
        __builtin_prefetch(&t->cold[i], 1, 3);
    } else {
        __builtin_prefetch(&t->hot[i], 0, 3);
    }
}

/* ---- consistent snapshot of one slot ------------------------------------ */

/* Reads the tenant name of an index. Tenant entries are immutable once
 * ready, so an acquire on the state is all a reader needs. */
static void tenant_read(const crp_table *t, uint32_t idx, char *dst, uint8_t *len)
{
    *len = 0;
    dst[0] = '\0';
    if (idx >= t->h->tenant_cap)
        return;
    struct tenant *tn = &t->tenants[idx];
    /* Acquire pairs with the release that made the entry ready. */
    if (atomic_load_explicit(&tn->state, memory_order_acquire) != 2)
        return;
    uint32_t l = atomic_load_explicit(&tn->len, memory_order_relaxed);
    if (l > CRP_TENANT_MAX)
        return;
    words_load(tn->text, dst, l);
    dst[l] = '\0';
    *len = (uint8_t)l;
}

/* Copies slot i consistently. Returns CRP_OK, CRP_NOTFOUND when it is not
 * LIVE, or CRP_BUSY when writers kept changing it. */
static crp_err read_slot(const crp_table *t, uint64_t i, crp_record *r)
{
    struct hot *e = &t->hot[i];
    struct cold *c = &t->cold[i];
    uint64_t deadline = 0;
    for (unsigned tries = 1;; tries++) {
        if (tries % READ_SPINS == 0) {
            uint64_t now = crp_clock_mono_ns();
            if (deadline == 0)
                deadline = now + READ_GIVE_UP_NS;
            else if (now > deadline)
                return CRP_BUSY;
            sched_yield();
        }
        /* Acquire on both counters pairs with the writer's release stores
         * that close a generation (reuse) or a sequence (update). */
        uint32_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire);
        uint32_t g1 = atomic_load_explicit(&e->gen, memory_order_acquire);
        if ((s1 | g1) & 1u)
            continue;
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        if (W_STATUS(w) != ST_LIVE)
            return CRP_NOTFOUND;
        r->key.lo = atomic_load_explicit(&e->key_lo, memory_order_relaxed);
        r->key.hi = atomic_load_explicit(&e->key_hi, memory_order_relaxed);
        uint32_t meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
        r->slot = (uint32_t)i;
        r->entry.state = (uint8_t)W_STATE(w);
        r->entry.reasons = (uint8_t)W_REASONS(w);
        r->entry.dirty = (w & W_DIRTY) != 0;
        r->entry.until_midnight = (w & W_TODAY) != 0;
        r->entry.since_ms = W_SINCE(w);
        r->entry.last_ms = atomic_load_explicit(&c->last_ms, memory_order_relaxed);
        uint32_t pw[CRP_PAYLOAD_SIZE / 4];
        for (size_t j = 0; j < CRP_PAYLOAD_SIZE / 4; j++)
            pw[j] = atomic_load_explicit(&c->payload[j], memory_order_relaxed);
        memcpy(r->entry.payload, pw, sizeof pw);
        r->id_len = (uint8_t)(meta & 0xffu);
        if (r->id_len <= ID_INLINE) {
            words_load(t->ids[i].w, r->id, r->id_len);
        } else {
            uint64_t cell = atomic_load_explicit(&t->ids[i].w[0], memory_order_relaxed);
            uint64_t cells = (uint64_t)t->h->pool_cells * t->h->shards;
            if (cell >= cells)
                continue; /* torn: the counters below will disagree */
            words_load(t->pool[cell].w, r->id, r->id_len);
        }
        r->id[r->id_len] = '\0';
        /* Acquire fence pairs with the writers' release fences after they
         * made a counter odd: a changed field implies a changed counter. */
        atomic_thread_fence(memory_order_acquire);
        uint32_t s2 = atomic_load_explicit(&c->seq, memory_order_relaxed);
        uint32_t g2 = atomic_load_explicit(&e->gen, memory_order_relaxed);
        if (s1 != s2 || g1 != g2)
            continue;
        tenant_read(t, META_TENANT(meta), r->tenant, &r->tenant_len);
        return CRP_OK;
    }
}

crp_err crp_table_read(const crp_table *t, const crp_key *k, crp_record *out)
{
    uint64_t n = t->h->shard_slots;
    uint64_t base = crp_table_shard_of(t, k) * n;
    uint64_t i = home_of(t, k);
    for (unsigned d = 0; d < PROBE_MAX; d++) {
        struct hot *e = &t->hot[base + i];
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        if (W_STATUS(w) == ST_EMPTY)
            break;
        if (W_STATUS(w) == ST_LIVE &&
            atomic_load_explicit(&e->key_lo, memory_order_relaxed) == k->lo &&
            atomic_load_explicit(&e->key_hi, memory_order_relaxed) == k->hi) {
            crp_err err = read_slot(t, base + i, out);
            /* The slot may have been reused between the check and the
             * copy; only a record with our key counts. */
            if (err == CRP_OK && (out->key.lo != k->lo || out->key.hi != k->hi))
                err = CRP_NOTFOUND;
            if (err != CRP_NOTFOUND)
                return err;
        }
        if (++i == n)
            i = 0;
    }
    return CRP_NOTFOUND;
}

bool crp_table_next(const crp_table *t, uint64_t *cursor, crp_record *out)
{
    for (uint64_t i = *cursor; i < t->h->slots; i++) {
        uint64_t w = atomic_load_explicit(&t->hot[i].word, memory_order_relaxed);
        if (W_STATUS(w) != ST_LIVE)
            continue;
        if (read_slot(t, i, out) == CRP_OK) {
            *cursor = i + 1;
            return true;
        }
    }
    *cursor = t->h->slots;
    return false;
}

/* ---- writer side --------------------------------------------------------- */

static crp_err tenant_intern(crp_table *t, const void *name, size_t len, uint32_t *idx)
{
    if (name == NULL)
        name = "";
    uint64_t hash = XXH3_64bits(name, len);
    uint32_t cap = t->h->tenant_cap;
    uint32_t i = (uint32_t)(hash % cap);
    char buf[CRP_TENANT_MAX];
    for (uint32_t d = 0; d < cap; d++, i = (i + 1) % cap) {
        struct tenant *tn = &t->tenants[i];
        /* Acquire pairs with the release that made an entry ready. */
        uint32_t st = atomic_load_explicit(&tn->state, memory_order_acquire);
        if (st == 0) {
            uint32_t expect = 0;
            /* Writers of different shards may intern the same new tenant at
             * once; the CAS elects one of them to fill the entry. Acquire
             * (both ways) so a loser then reads the winner's fields. */
            if (atomic_compare_exchange_strong_explicit(
                    &tn->state, &expect, 1, memory_order_acquire, memory_order_acquire)) {
                atomic_store_explicit(&tn->hash, hash, memory_order_relaxed);
                atomic_store_explicit(&tn->len, (uint32_t)len, memory_order_relaxed);
                words_store(tn->text, name, len);
                /* Release publishes hash, len and text with the state. */
                atomic_store_explicit(&tn->state, 2, memory_order_release);
                *idx = i;
                return CRP_OK;
            }
            st = expect;
        }
        /* Another writer is filling this entry: it needs only a few stores,
         * and this happens once per new tenant, never on the lookup path. */
        while (st == 1)
            st = atomic_load_explicit(&tn->state, memory_order_acquire);
        if (atomic_load_explicit(&tn->hash, memory_order_relaxed) == hash &&
            atomic_load_explicit(&tn->len, memory_order_relaxed) == len) {
            words_load(tn->text, buf, len);
            if (memcmp(buf, name, len) == 0) {
                *idx = i;
                return CRP_OK;
            }
        }
    }
    return CRP_TENANTS_FULL;
}

static inline bool evictable(uint64_t w)
{
    return W_STATUS(w) == ST_LIVE && W_STATE(w) == CRP_STATE_ACTIVE && !(w & W_DIRTY);
}

static inline void seq_open(struct cold *c)
{
    uint32_t s = atomic_load_explicit(&c->seq, memory_order_relaxed);
    atomic_store_explicit(&c->seq, s + 1, memory_order_relaxed);
    /* Release fence: the odd sequence is ordered before the field stores
     * that follow; pairs with the readers' acquire fence before their
     * second sequence load. */
    atomic_thread_fence(memory_order_release);
}

static inline void seq_close(struct cold *c)
{
    uint32_t s = atomic_load_explicit(&c->seq, memory_order_relaxed);
    /* Release: the field stores are complete before the even value; pairs
     * with the readers' acquire load of the sequence. */
    atomic_store_explicit(&c->seq, s + 1, memory_order_release);
}

static void pool_free(crp_table *t, unsigned shard, uint32_t cell)
{
    struct shard *sh = &t->shards[shard];
    uint32_t rel = cell - shard * t->h->pool_cells;
    atomic_store_explicit(&t->pool[cell].w[0], sh->pool_free, memory_order_relaxed);
    sh->pool_free = rel;
}

static bool pool_alloc(crp_table *t, unsigned shard, uint32_t *cell)
{
    struct shard *sh = &t->shards[shard];
    uint32_t first = shard * t->h->pool_cells;
    if (sh->pool_free != NO_CELL) {
        *cell = first + sh->pool_free;
        sh->pool_free = (uint32_t)atomic_load_explicit(&t->pool[*cell].w[0], memory_order_relaxed);
        return true;
    }
    if (sh->pool_next < t->h->pool_cells) {
        *cell = first + sh->pool_next++;
        return true;
    }
    return false;
}

/* Turns a tombstone back to EMPTY when the slot after it is EMPTY, walking
 * backwards: no chain can pass such a tombstone (invariant 2), and EMPTY
 * slots keep misses short. */
static void tomb_cleanup(crp_table *t, uint64_t base, uint64_t i)
{
    uint64_t n = t->h->shard_slots;
    for (uint64_t steps = 0; steps < n; steps++) {
        uint64_t next = i + 1 == n ? 0 : i + 1;
        uint64_t wi = atomic_load_explicit(&t->hot[base + i].word, memory_order_relaxed);
        uint64_t wn = atomic_load_explicit(&t->hot[base + next].word, memory_order_relaxed);
        if (W_STATUS(wi) != ST_TOMB || W_STATUS(wn) != ST_EMPTY)
            return;
        /* Relaxed: a reader sees TOMB (skip) or EMPTY (stop), both right. */
        atomic_store_explicit(&t->hot[base + i].word, 0, memory_order_relaxed);
        i = i == 0 ? n - 1 : i - 1;
    }
}

static void evict(crp_table *t, unsigned shard, uint64_t slot)
{
    struct hot *e = &t->hot[slot];
    struct cold *c = &t->cold[slot];
    uint32_t len = atomic_load_explicit(&e->meta, memory_order_relaxed) & 0xffu; /* id length */
    /* The sequence brackets the eviction because the pool cell freed here
     * may be rewritten by another slot's insert before a snapshot reader of
     * this slot finishes (invariant 5). */
    seq_open(c);
    uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
    atomic_store_explicit(&e->word, (w & ~3ull) | ST_TOMB, memory_order_relaxed);
    if (len > ID_INLINE)
        pool_free(t, shard,
                  (uint32_t)atomic_load_explicit(&t->ids[slot].w[0], memory_order_relaxed));
    seq_close(c);
    struct shard *sh = &t->shards[shard];
    /* Relaxed: statistics only; the writer is the sole writer. */
    atomic_store_explicit(&sh->live, atomic_load_explicit(&sh->live, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    atomic_store_explicit(&sh->evictions,
                          atomic_load_explicit(&sh->evictions, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* The pool is full and an insert needs a cell: evicts a clean, idle-enough
 * entry of the shard that holds one (the first found from the shard's hand,
 * which moves on, so successive calls go round the shard like a clock).
 * Needed because long ids may cluster nowhere near the key that needs the
 * cell: without it, a flood of clean long ids would fill the pool and every
 * later long id (a compromised connector's too) would be refused. The slot
 * is left a tombstone (no clean-up: it may lie inside the chain of the key
 * being inserted). Bounded: POOL_SCAN slots. False when none was found. */
static bool evict_long_id(crp_table *t, unsigned shard, uint64_t avoid)
{
    struct shard *sh = &t->shards[shard];
    uint64_t n = t->h->shard_slots, base = (uint64_t)shard * n;
    uint64_t i = sh->pool_hand < n ? sh->pool_hand : 0;
    uint64_t scan = n < POOL_SCAN ? n : POOL_SCAN;
    for (uint64_t d = 0; d < scan; d++) {
        const struct hot *e = &t->hot[base + i];
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        uint32_t meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
        uint64_t s = base + i;
        if (++i == n)
            i = 0;
        if (evictable(w) && (meta & 0xffu) > ID_INLINE && s != avoid) {
            evict(t, shard, s);
            sh->pool_hand = (uint32_t)i;
            return true;
        }
    }
    sh->pool_hand = (uint32_t)i;
    return false;
}

static inline void stat_add(_Atomic uint64_t *v, int64_t d)
{
    /* Relaxed: statistics written by one writer, read approximately. */
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* Whether an insert into this shard must evict first. Each shard holds at
 * most its share of the capacity, so the total never exceeds it and no
 * writer reads another's counters. Keys split across shards binomially, so
 * the fullest shard starts evicting a few standard deviations
 * (sqrt(capacity / shards)) before the whole table is full. */
static inline bool shard_at_limit(const crp_table *t, const struct shard *sh)
{
    return atomic_load_explicit(&sh->live, memory_order_relaxed) >= t->h->shard_limit;
}

crp_err crp_table_find_sw(const crp_table *t, const crp_key *k, crp_slot *slot)
{
    uint64_t n = t->h->shard_slots;
    uint64_t base = crp_table_shard_of(t, k) * n;
    uint64_t i = home_of(t, k);
    for (unsigned d = 0; d < PROBE_MAX; d++) {
        const struct hot *e = &t->hot[base + i];
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        if (W_STATUS(w) == ST_EMPTY)
            break;
        if (W_STATUS(w) == ST_LIVE &&
            atomic_load_explicit(&e->key_lo, memory_order_relaxed) == k->lo &&
            atomic_load_explicit(&e->key_hi, memory_order_relaxed) == k->hi) {
            *slot = (crp_slot)(base + i);
            return CRP_OK;
        }
        if (++i == n)
            i = 0;
    }
    return CRP_NOTFOUND;
}

crp_err crp_table_upsert_sw(crp_table *t, const crp_key *k, const void *id, size_t id_len,
                            const void *tenant, size_t tenant_len, uint64_t now_ms, crp_slot *slot,
                            bool *created)
{
    assert(t->writable);
    const struct header *h = t->h;
    uint64_t n = h->shard_slots;
    unsigned shard = crp_table_shard_of(t, k);
    uint64_t base = shard * n;
    uint64_t i = home_of(t, k);
    struct shard *sh = &t->shards[shard];

    uint64_t free_slot = NO_SLOT, victim = NO_SLOT;
    uint32_t victim_idle = 0, now_age = AGE_OF(now_ms);
    unsigned free_d = PROBE_MAX, victim_d = PROBE_MAX;
    bool chain_open = true; /* false once an EMPTY slot ended the key's chain */
    for (unsigned d = 0; d < PROBE_MAX; d++) {
        /* Past the key's chain only a victim is sought: a short look (one
         * kilobyte of hot lines) keeps inserts into a full table cheap, and
         * the whole window is searched only if that found nothing. */
        if (!chain_open && victim != NO_SLOT && d >= VICTIM_SCAN)
            break;
        uint64_t s = base + i;
        const struct hot *e = &t->hot[s];
        uint64_t w = atomic_load_explicit(&e->word, memory_order_relaxed);
        unsigned st = W_STATUS(w);
        if (chain_open) {
            if (st == ST_LIVE && atomic_load_explicit(&e->key_lo, memory_order_relaxed) == k->lo &&
                atomic_load_explicit(&e->key_hi, memory_order_relaxed) == k->hi) {
                *slot = (crp_slot)s;
                if (created)
                    *created = false;
                return CRP_OK;
            }
            if (st != ST_LIVE && free_slot == NO_SLOT) {
                free_slot = s;
                free_d = d;
            }
            if (st == ST_EMPTY) {
                chain_open = false;
                /* Below the limit the first free slot is the answer; at the
                 * limit keep scanning the window for a victim. */
                if (!shard_at_limit(t, sh))
                    break;
            }
        }
        if (evictable(w)) {
            uint32_t idle =
                (now_age - META_AGE(atomic_load_explicit(&e->meta, memory_order_relaxed))) &
                AGE_MASK;
            if (victim == NO_SLOT || idle > victim_idle) {
                victim = s;
                victim_idle = idle;
                victim_d = d;
            }
        }
        if (++i == n)
            i = 0;
    }

    if (id_len == 0 || id_len > CRP_ID_MAX || tenant_len > CRP_TENANT_MAX)
        return CRP_INVAL;

    bool at_limit = shard_at_limit(t, sh);
    uint64_t target;
    if (at_limit || free_slot == NO_SLOT) {
        if (victim == NO_SLOT) {
            stat_add(&sh->insert_full, 1);
            return CRP_FULL;
        }
        /* Place the key at the first free slot of its chain if that comes
         * before the victim; else in the victim's slot. */
        target = free_slot != NO_SLOT && free_d < victim_d ? free_slot : victim;
    } else {
        target = free_slot;
    }

    uint32_t tenant_idx;
    if (tenant_intern(t, tenant, tenant_len, &tenant_idx) != CRP_OK) {
        /* The empty tenant was interned at creation, so this cannot fail:
         * a connector must be storable (and restrictable) whatever its
         * tenant. Only tenant = * admins see it then. */
        stat_add(&sh->tenants_full, 1);
        if (tenant_intern(t, "", 0, &tenant_idx) != CRP_OK)
            return CRP_TENANTS_FULL;
    }
    uint32_t cell = NO_CELL;
    bool must_evict = at_limit || free_slot == NO_SLOT;
    if (id_len > ID_INLINE && !pool_alloc(t, shard, &cell)) {
        /* The victim, which has to go anyway, frees a cell if it has one;
         * else a clean entry elsewhere in the shard that has one goes. */
        bool victim_has_cell =
            must_evict &&
            (atomic_load_explicit(&t->hot[victim].meta, memory_order_relaxed) & 0xffu) > ID_INLINE;
        if (!victim_has_cell && (!evict_long_id(t, shard, must_evict ? victim : NO_SLOT) ||
                                 !pool_alloc(t, shard, &cell))) {
            stat_add(&sh->ids_full, 1);
            return CRP_IDS_FULL;
        }
    }
    if (must_evict) {
        evict(t, shard, victim);
        if (id_len > ID_INLINE && cell == NO_CELL && !pool_alloc(t, shard, &cell)) {
            stat_add(&sh->ids_full, 1); /* cannot happen: the victim had a cell */
            tomb_cleanup(t, base, victim - base);
            return CRP_IDS_FULL;
        }
    }

    struct hot *e = &t->hot[target];
    struct cold *c = &t->cold[target];
    uint32_t g = atomic_load_explicit(&e->gen, memory_order_relaxed);
    /* Odd generation first; the release fence orders it before the field
     * stores (pairs with the readers' acquire fence, invariant 3). */
    atomic_store_explicit(&e->gen, g + 1, memory_order_relaxed);
    seq_open(c);
    atomic_store_explicit(&e->key_lo, k->lo, memory_order_relaxed);
    atomic_store_explicit(&e->key_hi, k->hi, memory_order_relaxed);
    atomic_store_explicit(&e->meta, make_meta(id_len, tenant_idx, now_ms), memory_order_relaxed);
    if (cell == NO_CELL) {
        words_store(t->ids[target].w, id, id_len);
    } else {
        words_store(t->pool[cell].w, id, id_len);
        atomic_store_explicit(&t->ids[target].w[0], cell, memory_order_relaxed);
    }
    for (size_t j = 0; j < CRP_PAYLOAD_SIZE / 4; j++)
        atomic_store_explicit(&c->payload[j], 0, memory_order_relaxed);
    atomic_store_explicit(&c->last_ms, now_ms, memory_order_relaxed);
    crp_entry fresh = {.state = CRP_STATE_ACTIVE};
    atomic_store_explicit(&e->word, make_word(ST_LIVE, &fresh), memory_order_relaxed);
    seq_close(c);
    /* Release publishes the whole occupant; pairs with the acquire load of
     * the generation in lookups and snapshot reads. */
    atomic_store_explicit(&e->gen, g + 2, memory_order_release);

    if (target != victim && victim != NO_SLOT && (at_limit || free_slot == NO_SLOT))
        tomb_cleanup(t, base, victim - base);
    stat_add(&sh->live, 1);
    *slot = (crp_slot)target;
    if (created)
        *created = true;
    return CRP_OK;
}

void crp_table_load_sw(const crp_table *t, crp_slot slot, crp_entry *e)
{
    const struct hot *hot = &t->hot[slot];
    const struct cold *c = &t->cold[slot];
    uint64_t w = atomic_load_explicit(&hot->word, memory_order_relaxed);
    e->state = (uint8_t)W_STATE(w);
    e->reasons = (uint8_t)W_REASONS(w);
    e->dirty = (w & W_DIRTY) != 0;
    e->until_midnight = (w & W_TODAY) != 0;
    e->since_ms = W_SINCE(w);
    e->last_ms = atomic_load_explicit(&c->last_ms, memory_order_relaxed);
    uint32_t pw[CRP_PAYLOAD_SIZE / 4];
    for (size_t j = 0; j < CRP_PAYLOAD_SIZE / 4; j++)
        pw[j] = atomic_load_explicit(&c->payload[j], memory_order_relaxed);
    memcpy(e->payload, pw, sizeof pw);
}

void crp_table_store_sw(crp_table *t, crp_slot slot, const crp_entry *e)
{
    assert(t->writable);
    assert(e->state >= CRP_STATE_ACTIVE && e->state <= CRP_STATE_PROBATION);
    struct hot *hot = &t->hot[slot];
    struct cold *c = &t->cold[slot];
    uint32_t pw[CRP_PAYLOAD_SIZE / 4];
    memcpy(pw, e->payload, sizeof pw);

    seq_open(c);
    for (size_t j = 0; j < CRP_PAYLOAD_SIZE / 4; j++)
        atomic_store_explicit(&c->payload[j], pw[j], memory_order_relaxed);
    atomic_store_explicit(&c->last_ms, e->last_ms, memory_order_relaxed);
    /* Refresh the coarse age only when its minute changes, so that most
     * updates leave the hot line (which lookups read) untouched. */
    uint32_t meta = atomic_load_explicit(&hot->meta, memory_order_relaxed);
    if (META_AGE(meta) != AGE_OF(e->last_ms))
        atomic_store_explicit(&hot->meta, (meta & ~(AGE_MASK << 20)) | AGE_OF(e->last_ms) << 20,
                              memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&hot->word, memory_order_relaxed);
    uint64_t w = make_word(ST_LIVE, e);
    if (w != old) {
        /* One store carries state, reasons and since: the next lookup on
         * any thread or process sees all of the new verdict or none.
         * Release orders the payload stores above before it, for readers
         * that acquire the word. */
        atomic_store_explicit(&hot->word, w, memory_order_release);
        unsigned shard = (unsigned)(slot / t->h->shard_slots);
        int was = W_STATE(old) == CRP_STATE_RESTRICTED, is = e->state == CRP_STATE_RESTRICTED;
        if (was != is)
            stat_add(&t->shards[shard].restricted, is - was);
    }
    seq_close(c);
}

void crp_table_stats_get(const crp_table *t, crp_table_stats *out)
{
    memset(out, 0, sizeof *out);
    out->capacity = t->h->capacity;
    out->slots = t->h->slots;
    out->bytes = t->bytes;
    for (unsigned s = 0; s < t->h->shards; s++) {
        const struct shard *sh = &t->shards[s];
        /* Relaxed: statistics only. */
        out->live += atomic_load_explicit(&sh->live, memory_order_relaxed);
        out->restricted += atomic_load_explicit(&sh->restricted, memory_order_relaxed);
        out->evictions += atomic_load_explicit(&sh->evictions, memory_order_relaxed);
        out->insert_full += atomic_load_explicit(&sh->insert_full, memory_order_relaxed);
        out->ids_full += atomic_load_explicit(&sh->ids_full, memory_order_relaxed);
        out->tenants_full += atomic_load_explicit(&sh->tenants_full, memory_order_relaxed);
    }
}
