/* The admin backend over the engine runtime (see crp/admin_backend.h). */
#include "crp/admin_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crp/clock.h"

/* Counters are floats in the table (crp_score); printed with the 9 digits
 * of the admin replies, 0.6f would read 0.600000024. Values derived from
 * them are rounded to the 7 significant digits a float carries. */
#define FLOAT_DIGITS 7

/* A restriction with its sort key, while the list is built. */
typedef struct listed {
    uint64_t since_ms;
    json_t *entry;
} listed;

static double round_float(double v)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.*g", FLOAT_DIGITS, v);
    return strtod(buf, NULL);
}

static json_t *time_or_null(uint64_t ms)
{
    char buf[CRP_RFC3339_LEN];
    return ms != 0 ? json_string(crp_rfc3339(ms, buf)) : json_null();
}

/* The tenant as the admin face shows and compares it (see the header),
 * into out[CRP_CONFIG_TENANT_MAX]. */
static void tenant_text(const char *tenant, size_t len, char *out)
{
    json_t *j = crp_json_bytes(tenant, len);
    const char *t = json_string_value(j);
    size_t n = t != NULL ? strlen(t) : 0;

    if (t == NULL) {
        /* Out of memory: a tenant nobody's scope names. */
        out[0] = '\x7f';
        out[1] = '\0';
    } else if (n < CRP_CONFIG_TENANT_MAX) {
        memcpy(out, t, n + 1);
    } else {
        memcpy(out, t, CRP_CONFIG_TENANT_MAX - 2);
        out[CRP_CONFIG_TENANT_MAX - 2] = '\x7f';
        out[CRP_CONFIG_TENANT_MAX - 1] = '\0';
    }
    json_decref(j);
}

static bool read_record(crp_admin_engine *ae, const char *id, size_t len, crp_record *rec)
{
    const crp_table *t = crp_engine_table(ae->engine);
    crp_key k = crp_table_key(t, id, len);
    return crp_table_read(t, &k, rec) == CRP_OK;
}

/* connector_id, tenant, state, reasons and since of a record; NULL when out
 * of memory. */
static json_t *record_json(const crp_record *rec)
{
    json_t *o = json_object();
    int bad = o == NULL;
    bool has_since =
        rec->entry.state == CRP_STATE_RESTRICTED || rec->entry.state == CRP_STATE_PROBATION;

    if (bad)
        return NULL;
    bad |= json_object_set_new(o, "connector_id", crp_json_bytes(rec->id, rec->id_len));
    bad |= json_object_set_new(o, "tenant", crp_json_bytes(rec->tenant, rec->tenant_len));
    bad |= json_object_set_new(o, "state", json_string(crp_state_name(rec->entry.state)));
    bad |= json_object_set_new(o, "reasons", crp_json_reasons(rec->entry.reasons));
    bad |= json_object_set_new(o, "since",
                               has_since ? time_or_null(rec->entry.since_ms) : json_null());
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* probation_until for a connector in probation: its since plus the
 * probation in force now (a reload may have changed it since). */
static int add_probation_until(crp_admin_engine *ae, json_t *o, uint64_t since_ms)
{
    crp_policy pol;
    crp_engine_policy(ae->engine, &pol);
    if (pol.probation_ms == 0)
        return 0;
    return json_object_set_new(o, "probation_until", time_or_null(since_ms + pol.probation_ms));
}

static double ratio(double part, double whole)
{
    return whole > 0 ? part / whole : 0.0;
}

/* ------------------------------------------------------------------------ */
/* Backend functions                                                         */
/* ------------------------------------------------------------------------ */

static crp_err be_tenant_of(void *ctx, const char *id, size_t len, char *tenant)
{
    crp_record rec;

    if (!read_record(ctx, id, len, &rec))
        return CRP_NOTFOUND;
    tenant_text(rec.tenant, rec.tenant_len, tenant);
    return CRP_OK;
}

static int by_since_then_id(const void *a, const void *b)
{
    const listed *x = a, *y = b;
    if (x->since_ms != y->since_ms)
        return x->since_ms < y->since_ms ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x->entry, "connector_id")),
                  json_string_value(json_object_get(y->entry, "connector_id")));
}

static json_t *figures_json(const crp_score_values *v)
{
    json_t *f = json_object();
    int bad = f == NULL;

    if (bad)
        return NULL;
    bad |= json_object_set_new(f, "messages", json_real(round_float(v->messages)));
    bad |=
        json_object_set_new(f, "spam_ratio", json_real(round_float(ratio(v->spam, v->messages))));
    bad |=
        json_object_set_new(f, "phish_ratio", json_real(round_float(ratio(v->phish, v->messages))));
    bad |= json_object_set_new(f, "high_confidence_phish", json_real(round_float(v->hc_phish)));
    bad |= json_object_set_new(f, "malware", json_real(round_float(v->malware)));
    bad |= json_object_set_new(f, "recipients_hour", json_real(round_float(v->recipients_hour)));
    bad |= json_object_set_new(f, "recipients_day", json_real(round_float(v->recipients_day)));
    if (bad) {
        json_decref(f);
        return NULL;
    }
    return f;
}

/* The restricted connectors in scope, oldest restriction first. The table
 * is walked without stopping its writers: each record is consistent, and a
 * connector restricted or released during the walk may or may not be in
 * the list. */
static crp_err be_list_restricted(void *ctx, const crp_admin_scope *scope, json_t **list)
{
    crp_admin_engine *ae = ctx;
    const crp_table *t = crp_engine_table(ae->engine);
    uint64_t cursor = 0, now = crp_clock_ms();
    listed *items = NULL;
    size_t n = 0, cap = 0;
    crp_err err = CRP_OK;
    crp_policy pol;
    crp_record rec;

    crp_engine_policy(ae->engine, &pol);
    while (crp_table_next(t, &cursor, &rec)) {
        char tenant[CRP_CONFIG_TENANT_MAX];
        crp_score_values v;
        json_t *e;

        if (rec.entry.state != CRP_STATE_RESTRICTED)
            continue;
        tenant_text(rec.tenant, rec.tenant_len, tenant);
        if (!scope->any_tenant && strcmp(tenant, scope->tenant) != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap == 0 ? 64 : 2 * cap;
            listed *grown = realloc(items, ncap * sizeof *items);
            if (grown == NULL) {
                err = CRP_NOMEM;
                break;
            }
            items = grown;
            cap = ncap;
        }
        e = record_json(&rec);
        crp_score_values_at(&pol, &rec.entry, now, &v);
        if (e == NULL || json_object_set_new(e, "figures", figures_json(&v)) != 0) {
            json_decref(e);
            err = CRP_NOMEM;
            break;
        }
        items[n++] = (listed){.since_ms = rec.entry.since_ms, .entry = e};
    }
    if (err == CRP_OK)
        qsort(items, n, sizeof *items, by_since_then_id);
    *list = err == CRP_OK ? json_array() : NULL;
    if (*list == NULL && err == CRP_OK)
        err = CRP_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (err == CRP_OK && json_array_append_new(*list, items[i].entry) != 0)
            err = CRP_NOMEM;
        else if (err != CRP_OK)
            json_decref(items[i].entry);
    }
    free(items);
    if (err != CRP_OK) {
        json_decref(*list);
        *list = NULL;
    }
    return err;
}

/* The transition line of the audit log that made the current restriction
 * (state.restricted, or state.blocked for a manual one), or NULL: no audit
 * log, the line is not written yet (the events thread writes it a moment
 * after the table changed), or the log was rotated since. */
static json_t *restriction_line(crp_admin_engine *ae, const crp_record *rec)
{
    char id[CRP_ID_MAX + 1], since[CRP_RFC3339_LEN];
    crp_audit_query q = {.action = "state.*", .limit = 1, .any_tenant = true};
    json_t *found = NULL, *line;
    const char *verb, *line_since;

    if (!crp_audit_enabled(ae->audit) || memchr(rec->id, '\0', rec->id_len) != NULL)
        return NULL;
    memcpy(id, rec->id, rec->id_len);
    id[rec->id_len] = '\0';
    q.connector_id = id;
    if (crp_audit_search(ae->audit, &q, &found, NULL) != CRP_OK)
        return NULL;
    line = json_array_get(found, 0);
    verb = json_string_value(json_object_get(line, "verb"));
    line_since = json_string_value(json_object_get(line, "since"));
    crp_rfc3339(rec->entry.since_ms, since);
    /* Only the latest transition, and only if it began this restriction: an
     * older restriction's evidence would mislead. */
    if (verb == NULL || line_since == NULL || strcmp(line_since, since) != 0 ||
        (strcmp(verb, "state.restricted") != 0 && strcmp(verb, "state.blocked") != 0)) {
        json_decref(found);
        return NULL;
    }
    json_incref(line);
    json_decref(found);
    return line;
}

/* The evidence entry of `rule` in an audit line, or NULL. */
static json_t *evidence_of(json_t *line, const char *rule)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(line, "evidence"), i, e)
    {
        const char *name = json_string_value(json_object_get(e, "rule"));
        if (name != NULL && strcmp(name, rule) == 0)
            return e;
    }
    return NULL;
}

static json_t *number_or_null(json_t *v)
{
    return json_is_number(v) ? json_real(round_float(json_number_value(v))) : json_null();
}

static json_t *rules_json(const crp_engine_detail *d, json_t *line)
{
    json_t *rules = json_array();

    for (size_t i = 0; rules != NULL && i < d->n_rules && i < CRP_RULE_COUNT; i++) {
        const crp_rule_eval *r = &d->rules[i];
        json_t *at = evidence_of(line, r->name);
        json_t *tripped_at = json_object_get(at, "tripped");
        json_t *o = json_object();
        int bad = o == NULL;
        if (!bad) {
            bad |= json_object_set_new(o, "rule", json_string(r->name));
            bad |= json_object_set_new(o, "threshold", json_real(r->threshold));
            bad |= json_object_set_new(o, "value", json_real(round_float(r->value)));
            bad |= json_object_set_new(o, "tripped", json_boolean(r->tripped));
            bad |= json_object_set_new(o, "value_at_block",
                                       number_or_null(json_object_get(at, "value")));
            bad |= json_object_set_new(o, "threshold_at_block",
                                       number_or_null(json_object_get(at, "threshold")));
            bad |= json_object_set_new(o, "tripped_at_block",
                                       json_is_boolean(tripped_at) ? json_incref(tripped_at)
                                                                   : json_null());
        }
        if (bad || json_array_append_new(rules, o) != 0) {
            json_decref(rules);
            return NULL;
        }
    }
    return rules;
}

static json_t *signals_json(const crp_score_values *v)
{
    json_t *s = json_object();
    int bad = s == NULL;

    if (bad)
        return NULL;
    bad |= json_object_set_new(s, "messages", json_real(round_float(v->messages)));
    bad |= json_object_set_new(s, "spam", json_real(round_float(v->spam)));
    bad |= json_object_set_new(s, "phish", json_real(round_float(v->phish)));
    bad |= json_object_set_new(s, "hc_phish", json_real(round_float(v->hc_phish)));
    bad |= json_object_set_new(s, "malware", json_real(round_float(v->malware)));
    bad |= json_object_set_new(s, "recipients_hour", json_real(round_float(v->recipients_hour)));
    bad |= json_object_set_new(s, "recipients_day", json_real(round_float(v->recipients_day)));
    if (bad) {
        json_decref(s);
        return NULL;
    }
    return s;
}

static crp_err be_describe(void *ctx, const char *id, size_t len, json_t **detail)
{
    crp_admin_engine *ae = ctx;
    crp_engine_detail *d = malloc(sizeof *d);
    json_t *o = NULL, *line = NULL;
    crp_err err;
    int bad;

    *detail = NULL;
    if (d == NULL)
        return CRP_NOMEM;
    err = crp_engine_get(ae->engine, id, len, d);
    if (err != CRP_OK)
        goto out;
    err = CRP_NOMEM;
    o = record_json(&d->record);
    if (o == NULL)
        goto out;
    if (d->record.entry.state == CRP_STATE_RESTRICTED)
        line = restriction_line(ae, &d->record);
    bad = json_object_set_new(o, "last_event", time_or_null(d->record.entry.last_ms));
    bad |= json_object_set_new(o, "evaluated_at", time_or_null(d->at_ms));
    if (d->record.entry.state == CRP_STATE_PROBATION)
        bad |= add_probation_until(ae, o, d->record.entry.since_ms);
    if (line != NULL) {
        /* Who restricted it, and why, from the same audit line. */
        json_t *actor = json_object_get(line, "actor"), *why = json_object_get(line, "reason");
        if (json_is_string(actor))
            bad |= json_object_set(o, "restricted_by", actor);
        if (json_is_string(why))
            bad |= json_object_set(o, "restriction_comment", why);
    }
    bad |= json_object_set_new(o, "rules", rules_json(d, line));
    bad |= json_object_set_new(o, "signals", signals_json(&d->values));
    if (bad)
        goto out;
    *detail = o;
    o = NULL;
    err = CRP_OK;
out:
    json_decref(line);
    json_decref(o);
    free(d);
    return err;
}

static crp_err be_remove(void *ctx, const char *id, size_t len, const char *actor,
                         const char *reason, json_t **result)
{
    crp_admin_engine *ae = ctx;
    crp_transition tr;
    crp_record rec;
    crp_err err;
    json_t *o;
    int bad;

    *result = NULL;
    err = crp_engine_remove(ae->engine, id, len, actor, reason, &tr);
    if (err != CRP_OK)
        return err;
    /* The removal is stored: what a lookup answers from now on. */
    if (!read_record(ae, id, len, &rec)) {
        memset(&rec, 0, sizeof rec);
        rec.id_len = (uint8_t)len;
        memcpy(rec.id, id, len);
    }
    o = json_object();
    if (o == NULL)
        return CRP_NOMEM;
    bad = json_object_set_new(o, "connector_id", crp_json_bytes(rec.id, rec.id_len));
    bad |= json_object_set_new(o, "tenant", crp_json_bytes(rec.tenant, rec.tenant_len));
    bad |= json_object_set_new(o, "state", json_string(crp_state_name(tr.to)));
    bad |= json_object_set_new(o, "previous_state", json_string(crp_state_name(tr.from)));
    /* As in the state.unblocked event: the reasons that were lifted. */
    bad |= json_object_set_new(o, "reasons", crp_json_reasons(tr.reasons));
    bad |= json_object_set_new(o, "since", time_or_null(tr.at_ms));
    if (tr.to == CRP_STATE_PROBATION)
        bad |= add_probation_until(ae, o, tr.at_ms);
    bad |= json_object_set_new(o, "actor", json_string(actor));
    if (bad) {
        /* The connector is unblocked; only the reply could not be built. */
        json_decref(o);
        return CRP_NOMEM;
    }
    *result = o;
    return CRP_OK;
}

static crp_err be_block(void *ctx, const char *id, size_t len, const char *tenant,
                        const char *actor, const char *reason, json_t **result)
{
    crp_admin_engine *ae = ctx;
    crp_transition tr;
    crp_record rec;
    crp_err err;
    json_t *o;
    int bad;

    *result = NULL;
    err = crp_engine_block(ae->engine, id, len, tenant, strlen(tenant), actor, reason, &tr);
    if (err != CRP_OK)
        return err;
    if (!read_record(ae, id, len, &rec))
        return CRP_NOTFOUND; /* cannot happen: a restricted entry is never evicted */
    o = record_json(&rec);
    if (o == NULL)
        return CRP_NOMEM;
    bad = 0;
    if (tr.kind == CRP_TR_NONE)
        bad |= json_object_set_new(o, "already_blocked", json_true());
    else
        bad |= json_object_set_new(o, "previous_state", json_string(crp_state_name(tr.from)));
    bad |= json_object_set_new(o, "actor", json_string(actor));
    if (bad) {
        json_decref(o);
        return CRP_NOMEM;
    }
    *result = o;
    return CRP_OK;
}

static crp_err be_stats(void *ctx, json_t **stats)
{
    crp_admin_engine *ae = ctx;
    char *text = crp_engine_stats_json(ae->engine);

    *stats = text != NULL ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return *stats != NULL ? CRP_OK : CRP_NOMEM;
}

static crp_err be_save_alert_policy(void *ctx, const crp_alert_policy *p, const char *actor)
{
    crp_admin_engine *ae = ctx;

    return crp_engine_save_alert_policy(ae->engine, p, actor);
}

void crp_admin_engine_init(crp_admin_engine *ae, crp_engine *engine, crp_audit *audit,
                           crp_admin_backend *be)
{
    memset(ae, 0, sizeof *ae);
    ae->engine = engine;
    ae->audit = audit;
    *be = (crp_admin_backend){
        .ctx = ae,
        .tenant_of = be_tenant_of,
        .list_restricted = be_list_restricted,
        .describe = be_describe,
        .remove = be_remove,
        .block = be_block,
        .stats = be_stats,
        .save_alert_policy = be_save_alert_policy,
    };
}
