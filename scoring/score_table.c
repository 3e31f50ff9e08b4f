/* Table glue: the shard writer's path from an event (or an admin action) to
 * a published entry. Each function is find-or-insert, load, a pure scoring
 * function from scoring.c, store. No I/O and no allocation; every call must
 * come from the shard writer of the key involved (crp_table_shard_of), which
 * is what makes the load-modify-store sequence safe without a lock.
 */
#include "crp/scoring.h"

static bool lengths_ok(const void *id, size_t id_len, const void *tenant, size_t tenant_len)
{
    return id != NULL && id_len >= 1 && id_len <= CRP_ID_MAX && tenant_len <= CRP_TENANT_MAX &&
           (tenant != NULL || tenant_len == 0);
}

/* The per-event path once the key is known. */
static crp_err apply_key(crp_table *t, const crp_policy *p, const crp_key *k, const crp_event *ev,
                         uint64_t now_ms, crp_transition *tr, size_t *ntr)
{
    crp_slot slot;
    crp_entry e;
    bool created;
    crp_err err;

    err = crp_table_upsert_sw(t, k, ev->id, ev->id_len, ev->tenant, ev->tenant_len, now_ms, &slot,
                              &created);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    *ntr = crp_score_event(p, &e, ev, now_ms, tr);
    crp_table_store_sw(t, slot, &e);
    return CRP_OK;
}

crp_err crp_score_apply_sw(crp_table *t, const crp_policy *p, const crp_event *ev, uint64_t now_ms,
                           crp_transition *tr, size_t *ntr)
{
    *ntr = 0;
    if (!lengths_ok(ev->id, ev->id_len, ev->tenant, ev->tenant_len))
        return CRP_INVAL;
    crp_key k = crp_table_key(t, ev->id, ev->id_len);
    return apply_key(t, p, &k, ev, now_ms, tr, ntr);
}

/* How many events ahead the batch path hashes and prefetches: enough to
 * cover a DRAM miss (~100 ns) with the ~20-40 ns of work per event. */
#define PIPELINE 8

size_t crp_score_apply_batch_sw(crp_table *t, const crp_policy *p, const crp_event *ev, size_t n,
                                uint64_t now_ms, crp_transition_fn *fn, void *ctx,
                                size_t *refused)
{
    crp_key keys[PIPELINE];
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    size_t applied = 0, bad = 0;

    for (size_t i = 0; i < n + PIPELINE; i++) {
        if (i >= PIPELINE) {
            /* Stage 2: apply event j, whose lines were requested PIPELINE
             * events ago. It runs before stage 1 because both use the same
             * ring position. */
            size_t j = i - PIPELINE, ntr = 0;
            const crp_event *e = &ev[j];
            if (!lengths_ok(e->id, e->id_len, e->tenant, e->tenant_len) ||
                apply_key(t, p, &keys[j % PIPELINE], e, now_ms, tr, &ntr) != CRP_OK) {
                bad++;
            } else {
                applied++;
                if (ntr > 0 && fn != NULL)
                    fn(ctx, e, tr, ntr);
            }
        }
        if (i < n) {
            /* Stage 1: hash and prefetch event i. */
            const crp_event *e = &ev[i];
            if (lengths_ok(e->id, e->id_len, e->tenant, e->tenant_len)) {
                keys[i % PIPELINE] = crp_table_key(t, e->id, e->id_len);
                crp_table_prefetch(t, &keys[i % PIPELINE], true);
            }
        }
    }
    if (refused != NULL)
        *refused = bad;
    return applied;
}

crp_err crp_score_remove_sw(crp_table *t, const crp_policy *p, const crp_key *k, uint64_t now_ms,
                            crp_transition *tr)
{
    crp_slot slot;
    crp_entry e;
    crp_err err;

    err = crp_table_find_sw(t, k, &slot);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    err = crp_score_remove(p, &e, now_ms, tr);
    if (err != CRP_OK)
        return err;
    crp_table_store_sw(t, slot, &e);
    return CRP_OK;
}

crp_err crp_score_block_sw(crp_table *t, const crp_policy *p, const void *id, size_t id_len,
                           const void *tenant, size_t tenant_len, uint64_t now_ms,
                           crp_transition *tr)
{
    crp_slot slot;
    crp_entry e;
    bool created;
    crp_err err;

    if (!lengths_ok(id, id_len, tenant, tenant_len))
        return CRP_INVAL;
    crp_key k = crp_table_key(t, id, id_len);
    err = crp_table_upsert_sw(t, &k, id, id_len, tenant, tenant_len, now_ms, &slot, &created);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    if (crp_score_block(p, &e, now_ms, tr)) {
        crp_table_store_sw(t, slot, &e);
        /* The entry was inserted ACTIVE a moment ago only to be blocked:
         * to everyone outside it came from nowhere (docs/protocol.md 4.2,
         * previous_state "unknown"). */
        if (created)
            tr->from = CRP_STATE_UNKNOWN;
    }
    return CRP_OK;
}

crp_err crp_score_tick_sw(crp_table *t, const crp_policy *p, const crp_key *k, uint64_t now_ms,
                          crp_transition *tr, bool *changed)
{
    crp_slot slot;
    crp_entry e;
    crp_err err;

    *changed = false;
    err = crp_table_find_sw(t, k, &slot);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    bool was_dirty = e.dirty;
    *changed = crp_score_tick(p, &e, now_ms, tr);
    if (*changed || e.dirty != was_dirty)
        crp_table_store_sw(t, slot, &e);
    return CRP_OK;
}
