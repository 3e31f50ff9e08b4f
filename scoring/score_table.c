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

crp_err crp_score_apply_sw(crp_table *t, const crp_policy *p, const crp_event *ev, uint64_t now_ms,
                           crp_transition *tr, size_t *ntr)
{
    crp_slot slot;
    crp_entry e;
    bool created;
    crp_err err;

    *ntr = 0;
    if (!lengths_ok(ev->id, ev->id_len, ev->tenant, ev->tenant_len))
        return CRP_INVAL;
    crp_key k = crp_table_key(t, ev->id, ev->id_len);
    err = crp_table_upsert_sw(t, &k, ev->id, ev->id_len, ev->tenant, ev->tenant_len, now_ms, &slot,
                              &created);
    if (err != CRP_OK)
        return err;
    crp_table_load_sw(t, slot, &e);
    *ntr = crp_score_event(p, &e, ev, now_ms, tr);
    crp_table_store_sw(t, slot, &e);
    return CRP_OK;
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
    if (crp_score_block(p, &e, now_ms, tr))
        crp_table_store_sw(t, slot, &e);
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
