/* libFuzzer target: the admin JSON request handler, through
 * crp_admin_handle_for_fuzz (the server thread's request path without
 * sockets), with a fake in-memory backend, a real audit log in a temp
 * directory and a real alerts module.
 *
 * Input layout (tests/fuzz/make_corpus.py writes seeds in it):
 *   byte 0   the caller: one of 15 identities (every role, each with the
 *            scopes "*", "Rq7red" and ""), an unknown User-Id, or none;
 *   byte 1   a backend fault: bits 0..2 the error (none, not found,
 *            conflict, invalid, timeout, full, I/O, no memory), bits 3..5
 *            the function that fails (none, tenant_of, list_restricted,
 *            describe, remove, block, stats, save_alert_policy), bit 6 the
 *            backend leaves its JSON out-parameter NULL on success, bit 7
 *            it answers with odd JSON shapes (and fills out-parameters
 *            even on errors);
 *   byte 2   the set-up: bit 0 every backend function NULL, bit 1 audit
 *            log off (with an alerts module whose policy is off), bit 2 no
 *            alerts module;
 *   rest     the request body, any bytes.
 *
 * Every run starts from the same state: the fake backend's connectors, the
 * alert policy and the audit log (a fixed seed log, truncated back after
 * each request) are reset, so an input always does the same thing.
 *
 * Checked on every input, besides what the sanitizers and LeakSanitizer
 * catch:
 *  - the reply is a JSON object with a boolean "ok", and either "result"
 *    or an "error" with a known code and a message;
 *  - an unknown or missing caller is refused and the backend never called;
 *  - a read-only role never reaches remove, block or save_alert_policy,
 *    and a tenant-scoped identity never saves the (global) alert policy;
 *    a change verb only succeeds for a change role;
 *  - tenant scope: every tenant's connector ids carry a marker ("Rq7",
 *    "Bq7", "Nq7", "Lq7"); the reply to a scoped identity never contains
 *    another tenant's marker unless the request itself does (checked when
 *    the backend behaves; odd backend answers are only checked for
 *    crashes and leaks).
 *
 * CRP_FUZZ_VERBOSE=1 in the environment prints every reply.
 */
#define _DEFAULT_SOURCE /* mkdtemp */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "crp/admin.h"

#include "fuzz.h"

/* ------------------------------------------------------------------------ */
/* Tenants and connectors */

enum { T_RED, T_BLUE, T_NONE, T_LONG, N_TENANTS };

/* The tenant names and the marker every id and name of the tenant holds.
 * The long tenant has the longest name a tenant may have (64 bytes). */
static const char *const tenant_names[N_TENANTS] = {
    "Rq7red", "Bq7blue", "", "Lq7xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
static const char *const markers[N_TENANTS] = {"Rq7", "Bq7", "Nq7", "Lq7"};

#define N_CONN_MAX 24

typedef struct fconn {
    char id[CRP_ID_MAX + 1];
    char tenant[CRP_CONFIG_TENANT_MAX];
    char state[16];
    unsigned reasons;
} fconn;

static const struct {
    const char *id;
    int tenant;
    const char *state;
    unsigned reasons;
} initial[] = {
    {"c-Rq7-1", T_RED, "restricted", CRP_REASON_SPAM_RATIO},
    {"c-Rq7-2", T_RED, "active", 0},
    {"c-Rq7-3", T_RED, "probation", 0},
    {"it's Rq7 \"quoted\"", T_RED, "restricted", CRP_REASON_MANUAL},
    {"c-Bq7-1", T_BLUE, "restricted", CRP_REASON_MALWARE},
    {"c-Bq7-\xc3\xa9", T_BLUE, "restricted", CRP_REASON_PHISH_RATIO},
    {"c-Nq7-1", T_NONE, "restricted", CRP_REASON_SENDING_LIMIT},
    {"c-Lq7-1", T_LONG, "restricted", CRP_REASON_SPAM_RATIO},
};

/* ------------------------------------------------------------------------ */
/* The fake backend */

enum fn { FN_NONE, FN_TENANT_OF, FN_LIST, FN_DESCRIBE, FN_REMOVE, FN_BLOCK, FN_STATS, FN_SAVE };

static const crp_err fault_errs[8] = {CRP_OK,      CRP_NOTFOUND, CRP_CONFLICT, CRP_INVAL,
                                      CRP_TIMEOUT, CRP_FULL,     CRP_IO,       CRP_NOMEM};

static struct {
    fconn conns[N_CONN_MAX];
    size_t n;
    enum fn fault_fn;
    crp_err fault_err;
    bool null_out; /* leave JSON out-parameters NULL on success */
    bool odd;      /* odd JSON shapes */
    unsigned calls, mutations, saves;
} g;

static void fake_reset(uint8_t fault)
{
    memset(&g, 0, sizeof(g));
    for (size_t i = 0; i < sizeof(initial) / sizeof(initial[0]); i++) {
        fconn *c = &g.conns[g.n++];
        snprintf(c->id, sizeof(c->id), "%s", initial[i].id);
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant_names[initial[i].tenant]);
        snprintf(c->state, sizeof(c->state), "%s", initial[i].state);
        c->reasons = initial[i].reasons;
    }
    /* One id of the longest length, 255 bytes. */
    {
        fconn *c = &g.conns[g.n++];
        memset(c->id, 'b', CRP_ID_MAX);
        memcpy(c->id, "c-Bq7-", 6);
        c->id[CRP_ID_MAX] = '\0';
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant_names[T_BLUE]);
        snprintf(c->state, sizeof(c->state), "restricted");
        c->reasons = CRP_REASON_MALWARE;
    }
    g.fault_err = fault_errs[fault & 7u];
    g.fault_fn = (enum fn)((fault >> 3) & 7u);
    g.null_out = (fault & 0x40u) != 0;
    g.odd = (fault & 0x80u) != 0;
}

/* Counts the call; true (with *err) when this function is to fail. */
static bool faulted(enum fn f, crp_err *err)
{
    g.calls++;
    if (g.fault_fn != f || g.fault_err == CRP_OK)
        return false;
    *err = g.fault_err;
    return true;
}

static fconn *fake_find(const char *id, size_t len)
{
    for (size_t i = 0; i < g.n; i++) {
        if (strlen(g.conns[i].id) == len && memcmp(g.conns[i].id, id, len) == 0)
            return &g.conns[i];
    }
    return NULL;
}

static json_t *fake_entry(const fconn *c)
{
    return json_pack("{s:o, s:s, s:s, s:o, s:s, s:{s:i, s:f}}", "connector_id",
                     crp_json_bytes(c->id, strlen(c->id)), "tenant", c->tenant, "state", c->state,
                     "reasons", crp_json_reasons(c->reasons), "since", "2024-05-01T10:00:00.000Z",
                     "figures", "messages", 120, "spam_ratio", 0.75);
}

static crp_err fake_tenant_of(void *ctx, const char *id, size_t len, char *tenant)
{
    fconn *c = fake_find(id, len);
    crp_err err;

    (void)ctx;
    if (faulted(FN_TENANT_OF, &err))
        return err;
    if (c == NULL)
        return CRP_NOTFOUND;
    if (g.odd) {
        /* No terminating NUL in the 65 bytes: the server must cut it. */
        memset(tenant, 'x', CRP_CONFIG_TENANT_MAX);
        return CRP_OK;
    }
    memcpy(tenant, c->tenant, strlen(c->tenant) + 1);
    return CRP_OK;
}

static crp_err fake_list(void *ctx, const crp_admin_scope *scope, json_t **list)
{
    crp_err err;

    (void)ctx;
    (void)scope; /* deliberately ignored: the server filters as well */
    if (faulted(FN_LIST, &err)) {
        if (g.odd)
            *list = json_array();
        return err;
    }
    if (g.null_out)
        return CRP_OK;
    *list = g.odd ? json_pack("[i, s, n, {s:i, s:s}, {}]", 42, "str", "tenant", 7, "connector_id",
                              "c-Bq7-odd")
                  : json_array();
    for (size_t i = 0; i < g.n; i++) {
        if (strcmp(g.conns[i].state, "restricted") == 0)
            json_array_append_new(*list, fake_entry(&g.conns[i]));
    }
    return CRP_OK;
}

static crp_err fake_describe(void *ctx, const char *id, size_t len, json_t **detail)
{
    fconn *c = fake_find(id, len);
    crp_err err;

    (void)ctx;
    if (faulted(FN_DESCRIBE, &err)) {
        if (g.odd)
            *detail = json_object();
        return err;
    }
    if (c == NULL)
        return CRP_NOTFOUND;
    if (g.null_out)
        return CRP_OK;
    if (g.odd) {
        /* Restricted without a tenant, with "advice" already there; or not
         * an object at all. */
        *detail = strcmp(c->state, "restricted") == 0
                      ? json_pack("{s:s, s:i}", "state", "restricted", "advice", 1)
                      : json_pack("[i, i]", 1, 2);
        return CRP_OK;
    }
    *detail = fake_entry(c);
    json_object_set_new(*detail, "rules",
                        json_pack("[{s:s, s:f, s:f, s:b, s:n, s:n, s:n}]", "rule", "spam_ratio",
                                  "threshold", 0.5, "value", 0.6, "tripped", 1, "value_at_block",
                                  "threshold_at_block", "tripped_at_block"));
    json_object_set_new(*detail, "signals",
                        json_pack("{s:f, s:f}", "messages", 120.0, "spam", 90.0));
    return CRP_OK;
}

static crp_err fake_remove(void *ctx, const char *id, size_t len, const char *actor,
                           const char *reason, json_t **result)
{
    fconn *c = fake_find(id, len);
    crp_err err;

    (void)ctx;
    (void)actor;
    (void)reason;
    g.mutations++;
    if (faulted(FN_REMOVE, &err)) {
        if (g.odd)
            *result = json_object();
        return err;
    }
    if (c == NULL)
        return CRP_NOTFOUND;
    if (strcmp(c->state, "restricted") != 0)
        return CRP_CONFLICT;
    snprintf(c->state, sizeof(c->state), "probation");
    c->reasons = 0;
    if (!g.null_out)
        *result = g.odd ? json_string("odd") : fake_entry(c);
    return CRP_OK;
}

static crp_err fake_block(void *ctx, const char *id, size_t len, const char *tenant,
                          const char *actor, const char *reason, json_t **result)
{
    fconn *c = fake_find(id, len);
    crp_err err;

    (void)ctx;
    (void)actor;
    (void)reason;
    g.mutations++;
    if (faulted(FN_BLOCK, &err)) {
        if (g.odd)
            *result = json_object();
        return err;
    }
    CHECK(len >= 1 && len <= CRP_ID_MAX);
    CHECK(strlen(tenant) <= CRP_TENANT_MAX);
    if (c == NULL) {
        if (g.n == N_CONN_MAX)
            return CRP_FULL;
        c = &g.conns[g.n++];
        memcpy(c->id, id, len);
        c->id[len] = '\0';
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
    }
    snprintf(c->state, sizeof(c->state), "restricted");
    c->reasons |= CRP_REASON_MANUAL;
    if (!g.null_out)
        *result = g.odd ? json_string("odd") : fake_entry(c);
    return CRP_OK;
}

static crp_err fake_stats(void *ctx, json_t **stats)
{
    crp_err err;

    (void)ctx;
    if (faulted(FN_STATS, &err)) {
        if (g.odd)
            *stats = json_object();
        return err;
    }
    if (!g.null_out)
        *stats = g.odd ? json_integer(5)
                       : json_pack("{s:I, s:I}", "connectors", (json_int_t)g.n, "capacity",
                                   (json_int_t)1024);
    return CRP_OK;
}

static crp_err fake_save(void *ctx, const crp_alert_policy *p, const char *actor)
{
    crp_err err;

    (void)ctx;
    (void)actor;
    g.saves++;
    if (faulted(FN_SAVE, &err))
        return err;
    CHECK(p->daily_limit >= 1 && p->daily_limit <= 3);
    CHECK(memchr(p->recipients, '\0', sizeof(p->recipients)) != NULL);
    return CRP_OK;
}

static const crp_admin_backend fake = {
    .tenant_of = fake_tenant_of,
    .list_restricted = fake_list,
    .describe = fake_describe,
    .remove = fake_remove,
    .block = fake_block,
    .stats = fake_stats,
    .save_alert_policy = fake_save,
};

static const crp_admin_backend no_backend = {0};

/* ------------------------------------------------------------------------ */
/* Callers */

#define N_ROLES  5
#define N_SCOPES 3
#define N_IDS    (N_ROLES * N_SCOPES)
/* Beyond the identities: an unknown User-Id, and none at all. */
#define N_CALLERS (N_IDS + 2)

static const char *const scopes[N_SCOPES] = {"*", "Rq7red", ""};
static const char *const scope_tags[N_SCOPES] = {"all", "red", "none"};
static crp_identity ids[N_IDS];

static void identities_init(void)
{
    static const char *const role_tags[N_ROLES] = {"om", "sa", "gr", "sr", "vo"};

    for (int r = 0; r < N_ROLES; r++) {
        for (int s = 0; s < N_SCOPES; s++) {
            crp_identity *id = &ids[r * N_SCOPES + s];
            memset(id, 0, sizeof(*id));
            snprintf(id->name, sizeof(id->name), "%s_%s", role_tags[r], scope_tags[s]);
            memset(id->public_key, '0', CRP_Z85_KEY_LEN);
            id->role = (crp_role)r;
            id->any_tenant = strcmp(scopes[s], "*") == 0;
            snprintf(id->tenant, sizeof(id->tenant), "%s", id->any_tenant ? "" : scopes[s]);
        }
    }
}

static bool is_change_role(crp_role role)
{
    return role == CRP_ROLE_ORGANIZATION_MANAGEMENT || role == CRP_ROLE_SECURITY_ADMINISTRATOR;
}

/* ------------------------------------------------------------------------ */
/* Audit log and alerts */

/* The audit log every run starts from: lines of every tenant, lines the
 * search must skip (bad time, no object, a non-string tenant), an escaped
 * id, and a torn last line that crp_audit_create terminates. */
static const char seed_log[] =
    "{\"time\":\"2024-05-01T10:00:00.000Z\",\"kind\":\"transition\",\"actor\":\"engine\","
    "\"role\":null,\"tenant\":\"Rq7red\",\"verb\":\"state.restricted\",\"target\":\"c-Rq7-1\","
    "\"result\":\"ok\",\"from\":\"active\",\"to\":\"restricted\",\"reasons\":[\"spam_ratio\"],"
    "\"since\":\"2024-05-01T10:00:00.000Z\"}\n"
    "{\"time\":\"2024-05-01T10:00:01.000Z\",\"kind\":\"transition\",\"actor\":\"engine\","
    "\"role\":null,\"tenant\":\"Bq7blue\",\"verb\":\"state.restricted\",\"target\":\"c-Bq7-1\","
    "\"result\":\"ok\",\"from\":\"active\",\"to\":\"restricted\",\"reasons\":[\"malware\"],"
    "\"since\":\"2024-05-01T10:00:01.000Z\"}\n"
    "{\"time\":\"2024-05-01T10:00:02.000Z\",\"kind\":\"transition\",\"actor\":\"engine\","
    "\"role\":null,\"tenant\":\"\",\"verb\":\"state.restricted\",\"target\":\"c-Nq7-1\","
    "\"result\":\"ok\",\"reasons\":[]}\n"
    "{\"time\":\"2024-05-01T10:00:03.000Z\",\"kind\":\"transition\",\"actor\":\"engine\","
    "\"tenant\":\"Lq7xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\","
    "\"verb\":\"state.restricted\",\"target\":\"c-Lq7-1\",\"result\":\"ok\"}\n"
    "{\"time\":\"2024-05-01T11:00:00.000Z\",\"kind\":\"request\",\"actor\":\"om_all\","
    "\"role\":\"OrganizationManagement\",\"scope\":\"*\",\"tenant\":\"Bq7blue\","
    "\"verb\":\"block-connector\",\"target\":\"c-Bq7-\\\\xff\",\"result\":\"ok\","
    "\"reason\":\"spam wave\"}\n"
    "{\"time\":\"2024-05-01T11:30:00.000Z\",\"kind\":\"request\",\"actor\":\"om_red\","
    "\"role\":\"OrganizationManagement\",\"scope\":\"Rq7red\",\"tenant\":\"Rq7red\","
    "\"verb\":\"remove-blocked-connector\",\"target\":\"c-Rq7-1\",\"result\":\"ok\"}\n"
    "{\"time\":\"not a time\",\"kind\":\"request\",\"tenant\":\"Rq7red\"}\n"
    "[\"not an object\"]\n"
    "{\"time\":\"2024-05-01T12:00:00Z\",\"tenant\":5,\"target\":\"c-Bq7-1\"}\n"
    "garbage\n"
    "{\"time\":\"2024-05-01T13:00:00.000Z\",\"kind\":\"req";

/* 2024-05-02T00:00:00Z: the audit log's clock. */
#define FAKE_NOW_MS UINT64_C(1714608000000)

/* CRP_FUZZ_VERBOSE=1 prints every reply (for reading what a seed or a
 * crashing input does). */
static bool verbose;
static char tmpdir[256], logpath[320];
static off_t log_base; /* size of the seed log once opened */
static crp_audit *audit_on, *audit_off;
static crp_alerts *alerts_on, *alerts_off;
static crp_alert_policy policy_on, policy_off;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return FAKE_NOW_MS;
}

static void cleanup(void)
{
    crp_alerts_destroy(&alerts_on);
    crp_alerts_destroy(&alerts_off);
    crp_audit_destroy(&audit_on);
    crp_audit_destroy(&audit_off);
    unlink(logpath);
    rmdir(tmpdir);
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_admin: %s: %s\n", what, why);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *base = getenv("TMPDIR");
    crp_audit_opts on = {.enabled = true, .no_sync = true, .clock_ms = fake_clock};
    crp_audit_opts off = {.enabled = false};
    crp_config cfg;
    char err[256];
    struct stat st;
    FILE *f;

    (void)argc;
    (void)argv;
    verbose = getenv("CRP_FUZZ_VERBOSE") != NULL;
    identities_init();
    snprintf(tmpdir, sizeof(tmpdir), "%s/crp_fuzz_admin_XXXXXX",
             base != NULL && *base != '\0' ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp", tmpdir);
    snprintf(logpath, sizeof(logpath), "%s/%s", tmpdir, CRP_AUDIT_FILE);
    f = fopen(logpath, "w");
    if (f == NULL || fputs(seed_log, f) == EOF || fclose(f) != 0)
        die("cannot write the seed log", logpath);
    atexit(cleanup);

    on.state_dir = tmpdir;
    if (crp_audit_create(&audit_on, &on, err, sizeof(err)) != CRP_OK ||
        crp_audit_create(&audit_off, &off, err, sizeof(err)) != CRP_OK)
        die("audit log", err);
    if (stat(logpath, &st) != 0)
        die("stat", logpath);
    log_base = st.st_size;

    /* Alerts on (the defaults) beside the audit log; alerts off beside
     * none, since a policy that is on needs the audit log. */
    crp_config_defaults(&cfg);
    cfg.alerts.email = false;
    if (crp_alerts_create(&alerts_on, &cfg, audit_on, err, sizeof(err)) != CRP_OK)
        die("alerts", err);
    cfg.alerts.enabled = false;
    cfg.audit.enabled = false;
    if (crp_alerts_create(&alerts_off, &cfg, audit_off, err, sizeof(err)) != CRP_OK)
        die("alerts", err);
    crp_alerts_get_policy(alerts_on, &policy_on);
    crp_alerts_get_policy(alerts_off, &policy_off);
    crp_config_fini(&cfg);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Checks */

static bool is_code(const char *code)
{
    static const char *const codes[] = {"bad_request", "forbidden",   "not_found",
                                        "conflict",    "unavailable", "internal"};

    for (size_t i = 0; code != NULL && i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (strcmp(code, codes[i]) == 0)
            return true;
    }
    return false;
}

static bool mem_has(const void *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    for (size_t i = 0; k <= n && i <= n - k; i++) {
        if (memcmp((const char *)hay + i, needle, k) == 0)
            return true;
    }
    return false;
}

/* The request's verb when the body is an object with a string verb. */
static const char *body_verb(const json_t *body)
{
    return json_string_value(json_object_get(body, "verb"));
}

static void check_reply(const crp_identity *who, const uint8_t *body, size_t size,
                        const char *reply)
{
    json_error_t jerr;
    json_t *rep = json_loads(reply, 0, &jerr);
    json_t *req = json_loadb((const char *)body, size, JSON_REJECT_DUPLICATES, NULL);
    char *req_text = req != NULL ? json_dumps(req, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *verb = body_verb(req);
    json_t *ok;
    bool success;

    if (rep == NULL) {
        fprintf(stderr, "fuzz_admin: the reply is not JSON (%s): %s\n", jerr.text, reply);
        abort();
    }
    CHECK(json_is_object(rep));
    ok = json_object_get(rep, "ok");
    CHECK(json_is_boolean(ok));
    success = json_is_true(ok);
    if (success) {
        CHECK(json_object_get(rep, "result") != NULL);
    } else {
        json_t *e = json_object_get(rep, "error");
        CHECK(is_code(json_string_value(json_object_get(e, "code"))));
        CHECK(json_is_string(json_object_get(e, "message")));
    }

    if (who == NULL) {
        CHECK(!success);
        CHECK(strcmp(json_string_value(json_object_get(json_object_get(rep, "error"), "code")),
                     "forbidden") == 0);
        CHECK(g.calls == 0);
    } else {
        bool change = is_change_role(who->role);
        if (!change)
            CHECK(g.mutations == 0 && g.saves == 0);
        if (!who->any_tenant)
            CHECK(g.saves == 0);
        if (success && verb != NULL &&
            (strcmp(verb, "remove-blocked-connector") == 0 ||
             strcmp(verb, "block-connector") == 0 || strcmp(verb, "set-alert-policy") == 0))
            CHECK(change);
        if (success && verb != NULL && strcmp(verb, "set-alert-policy") == 0)
            CHECK(who->any_tenant);
    }

    /* Tenant scope: nothing of another tenant that the request did not
     * name itself. */
    if (who != NULL && !who->any_tenant && !g.odd) {
        for (int t = 0; t < N_TENANTS; t++) {
            if (strcmp(tenant_names[t], who->tenant) == 0)
                continue;
            if (mem_has(body, size, markers[t]) ||
                (req_text != NULL && strstr(req_text, markers[t]) != NULL))
                continue;
            if (strstr(reply, markers[t]) != NULL) {
                fprintf(stderr,
                        "fuzz_admin: identity %s (tenant '%s') sees tenant '%s' (%s) in: %s\n",
                        who->name, who->tenant, tenant_names[t], markers[t], reply);
                abort();
            }
        }
    }
    free(req_text);
    json_decref(req);
    json_decref(rep);
}

/* ------------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned caller;
    uint8_t setup;
    const crp_identity *who;
    const char *user_id;
    crp_audit *audit;
    crp_alerts *alerts;
    char why[256];
    char *reply;

    if (size < 3)
        return 0;
    caller = data[0] % N_CALLERS;
    setup = data[2];
    fake_reset(data[1]);
    if (caller < N_IDS) {
        who = &ids[caller];
        user_id = who->name;
    } else {
        who = NULL;
        user_id = caller == N_IDS ? "mallory" : NULL;
    }

    /* The same state for every run: alert policies and the audit log. */
    CHECK(crp_alerts_set_policy(alerts_on, &policy_on, why, sizeof(why)) == CRP_OK);
    CHECK(crp_alerts_set_policy(alerts_off, &policy_off, why, sizeof(why)) == CRP_OK);
    CHECK(truncate(logpath, log_base) == 0);
    if (setup & 2u) {
        audit = audit_off;
        alerts = alerts_off;
    } else {
        audit = audit_on;
        alerts = alerts_on;
    }
    if (setup & 4u)
        alerts = NULL;

    reply = crp_admin_handle_for_fuzz(ids, N_IDS, (setup & 1u) ? &no_backend : &fake, audit, alerts,
                                      user_id, data + 3, size - 3);
    CHECK(reply != NULL);
    if (verbose)
        fprintf(stderr, "fuzz_admin: caller %s, fault 0x%02x, set-up 0x%02x: %s\n",
                who != NULL ? who->name : (user_id != NULL ? user_id : "(none)"), data[1], setup,
                reply);
    check_reply(who, data + 3, size - 3, reply);
    free(reply);
    return 0;
}
