/* The connector table: a fixed-capacity, position-independent hash table of
 * connectors, readable wait-free from any thread or process, written by one
 * writer thread per shard.
 *
 * Identity. A connector id (1..255 bytes) is hashed with XXH3-128 and the
 * table's seed; the 128-bit hash is the key. The id text and the tenant
 * (0..64 bytes) are stored beside the entry for display.
 *
 * Shards and writers. The table is split into `shards` independent regions;
 * the top bits of a key choose its shard. Every function suffixed `_sw`
 * ("single writer") may be called for a given shard by at most one thread at
 * a time — the shard's writer. Different shards may be written concurrently
 * by different threads without any lock. Everything else (lookup, snapshot
 * reads, iteration, statistics) may be called from any thread, and from
 * another process that attached the table read-only.
 *
 * Memory. All storage is one mapping sized at creation: nothing is allocated
 * afterwards. When a shard is full, an insert evicts the least recently
 * updated entry that is ACTIVE and not marked dirty in the key's probe window;
 * RESTRICTED, PROBATION and dirty entries are never evicted. If nothing in the
 * window can go, the insert fails with CRP_FULL and the shard counts it.
 *
 * Placement. The mapping can be anonymous memory, a POSIX shared-memory
 * object, or (as bytes) a file: inside it there are only offsets.
 */
#ifndef CRP_TABLE_H
#define CRP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crp/err.h"

/* Connector states, numbered as on the wire (PROTOCOL.md section 2). */
enum crp_state {
    CRP_STATE_UNKNOWN = 0,
    CRP_STATE_ACTIVE = 1,
    CRP_STATE_RESTRICTED = 2,
    CRP_STATE_PROBATION = 3,
};

/* Reason bits, numbered as on the wire. */
enum crp_reason {
    CRP_REASON_SPAM_RATIO = 1u << 0,
    CRP_REASON_PHISH_RATIO = 1u << 1,
    CRP_REASON_HC_PHISH = 1u << 2,
    CRP_REASON_MALWARE = 1u << 3,
    CRP_REASON_SENDING_LIMIT = 1u << 4,
    CRP_REASON_MANUAL = 1u << 5,
};

#define CRP_ID_MAX     255u
#define CRP_TENANT_MAX 64u
/* Bytes of opaque per-entry data the writer (scoring) owns. */
#define CRP_PAYLOAD_SIZE 36u

typedef struct crp_table crp_table;

typedef struct crp_key {
    uint64_t lo;
    uint64_t hi;
} crp_key;

/* What a lookup answers: one consistent state word. */
typedef struct crp_verdict {
    uint8_t state;     /* enum crp_state; UNKNOWN when absent */
    uint8_t reasons;   /* enum crp_reason bits */
    uint64_t since_ms; /* RESTRICTED: restricted since; PROBATION: probation start; else 0 */
} crp_verdict;

/* An entry as its shard writer sees and changes it. */
typedef struct crp_entry {
    uint8_t state; /* ACTIVE, RESTRICTED or PROBATION */
    uint8_t reasons;
    bool dirty;          /* the writer's signal "worth keeping": never evicted while set */
    bool until_midnight; /* restricted by action restrict_today */
    uint64_t since_ms;   /* see crp_verdict */
    uint64_t last_ms;    /* time of the last update; eviction takes the oldest */
    _Alignas(8) unsigned char payload[CRP_PAYLOAD_SIZE];
} crp_entry;

/* A consistent copy of one whole entry, for admin reads and iteration. */
typedef struct crp_record {
    crp_key key;
    uint32_t slot;
    crp_entry entry;
    uint8_t id_len;
    uint8_t tenant_len;
    char id[CRP_ID_MAX + 1];         /* NUL-terminated copy */
    char tenant[CRP_TENANT_MAX + 1]; /* NUL-terminated copy */
} crp_record;

typedef struct crp_table_opts {
    uint64_t capacity;    /* connectors the table must hold, >= 64 */
    unsigned shards;      /* writer partitions, power of two, 1..256; 0 = 1 */
    uint64_t seed;        /* hash seed; 0 = random (getrandom) */
    const char *shm_name; /* NULL or "": anonymous memory; else a POSIX shm object */
    unsigned shm_mode;    /* permission bits of the shm object; 0 = 0644 */
} crp_table_opts;

/* Aggregate statistics; each field is read with relaxed loads, so the sum
 * is approximate while writers run. */
typedef struct crp_table_stats {
    uint64_t capacity;     /* connectors the table holds */
    uint64_t slots;        /* slots allocated (capacity plus probing slack) */
    uint64_t live;         /* entries present */
    uint64_t restricted;   /* entries in RESTRICTED state */
    uint64_t evictions;    /* entries pushed out to make room */
    uint64_t insert_full;  /* inserts refused: nothing evictable */
    uint64_t ids_full;     /* inserts refused: long-id pool holds only entries that stay */
    uint64_t tenants_full; /* inserts stored without their tenant: tenant table full */
    uint64_t bytes;        /* size of the mapping */
} crp_table_stats;

typedef uint32_t crp_slot;

/* Creates a table for writing. With a shm_name, an existing object of that
 * name (a previous engine's) is marked retired, so its readers re-attach,
 * and replaced. Returns CRP_OK and *out, or an error (CRP_INVAL for bad
 * options, CRP_SYS with errno for mapping failures). Not thread-safe. */
crp_err crp_table_create(crp_table **out, const crp_table_opts *opts);

/* Maps an existing shm table read-only (another process's). Only lookup,
 * read, iteration and stats may be used on the result. CRP_BADFILE if the
 * object is not a table of this layout version. */
crp_err crp_table_attach(crp_table **out, const char *shm_name);

/* Unmaps; for a created shm table, also marks it retired and unlinks the
 * object. NULL-safe; sets *tp = NULL. */
void crp_table_destroy(crp_table **tp);

/* Hashes an id into its key with the table's seed. Any thread. */
crp_key crp_table_key(const crp_table *t, const void *id, size_t len);

/* Wait-free lookup: visits each slot of the probe window at most once and
 * never waits for a writer. Returns true and fills *out when present; false
 * (and out->state = UNKNOWN) when absent. Any thread or process. */
bool crp_table_lookup(const crp_table *t, const crp_key *k, crp_verdict *out);

/* Hints the CPU to fetch the lines a lookup (update = false: the home hot
 * line) or an update (update = true: hot and cold, with write intent) of
 * this key will touch first. Batch loops call it a few keys ahead to
 * overlap memory misses. Any thread. */
void crp_table_prefetch(const crp_table *t, const crp_key *k, bool update);

/* Copies one entry consistently (per-slot sequence counter). Returns
 * CRP_OK, CRP_NOTFOUND, or CRP_BUSY if a writer kept the entry open for
 * 200 ms (only a preempted-for-long or dead writer does). May spin and
 * yield while a writer is mid-update; never used on the lookup path. Any
 * thread. */
crp_err crp_table_read(const crp_table *t, const crp_key *k, crp_record *out);

/* Iteration without stopping writers: fills *out with the next present
 * entry at or after *cursor (start at 0) and advances the cursor. Returns
 * false at the end. Each record is consistent on its own; an entry present
 * for the whole walk always appears (waiting for its writer as
 * crp_table_read does); entries inserted or evicted during the walk may or
 * may not. Any thread. */
bool crp_table_next(const crp_table *t, uint64_t *cursor, crp_record *out);

/* The shard a key belongs to (its writer's index). */
unsigned crp_table_shard_of(const crp_table *t, const crp_key *k);
unsigned crp_table_shards(const crp_table *t);
/* The cursor range [*first, *end) of shard s, for crp_table_next: a shard
 * writer sweeps its own entries (time-driven transitions) with it. */
void crp_table_shard_range(const crp_table *t, unsigned s, uint64_t *first, uint64_t *end);

/* Finds the key or inserts it (ACTIVE, zero payload, last_ms = now_ms),
 * evicting if the shard is full. An id longer than 40 bytes needs a cell of
 * the shard's long-id pool; when the pool is used up, a clean entry of the
 * shard that holds one is evicted for it. The tenant table holds 4096
 * distinct tenants; a connector of a tenant that no longer fits is stored
 * with the empty tenant (counted in tenants_full) rather than refused, so
 * it can still be restricted. Returns CRP_OK with *slot and *created, or
 * CRP_FULL / CRP_IDS_FULL (nothing evictable: every entry near the key, or
 * every long-id holder, is restricted, on probation or dirty) / CRP_INVAL.
 * The id and tenant are stored on insert only; a known connector keeps its
 * first tenant. Caller: the key's shard writer. */
crp_err crp_table_upsert_sw(crp_table *t, const crp_key *k, const void *id, size_t id_len,
                            const void *tenant, size_t tenant_len, uint64_t now_ms, crp_slot *slot,
                            bool *created);

/* Finds a present key; CRP_OK with *slot or CRP_NOTFOUND. Caller: the
 * key's shard writer (the slot stays valid until that writer evicts). */
crp_err crp_table_find_sw(const crp_table *t, const crp_key *k, crp_slot *slot);

/* Reads an entry without synchronisation: only its shard writer may. */
void crp_table_load_sw(const crp_table *t, crp_slot slot, crp_entry *e);

/* Publishes a changed entry. The state word (state, reasons, since) is
 * one atomic store, visible to the very next lookup; payload and last_ms
 * are written under the slot's sequence counter. Caller: shard writer. */
void crp_table_store_sw(crp_table *t, crp_slot slot, const crp_entry *e);

void crp_table_stats_get(const crp_table *t, crp_table_stats *out);

/* Header facts. The generation is random per creation; readers compare it
 * to notice a replaced table. Retired is set when the creating engine stops
 * or is replaced: an attached reader should re-attach. */
uint64_t crp_table_generation(const crp_table *t);
bool crp_table_retired(const crp_table *t);
uint64_t crp_table_capacity(const crp_table *t);

/* The raw mapping, for writing a snapshot of the bytes. */
const void *crp_table_bytes(const crp_table *t, size_t *len);

#endif
