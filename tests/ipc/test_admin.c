/* Criterion suite for ipc/admin.c: the admin server in process, on an
 * ipc:// endpoint in a temp dir, with real CURVE keys for an identity of
 * every role (plus tenant-scoped ones) and a fake in-memory backend holding
 * connectors of two tenants, "red" and "blue".
 *
 * Covered: the full role x verb matrix (allowed and denied), tenant scope
 * checked before the role (another tenant's connector is not_found and its
 * data never appears in a reply), unknown keys and clients without CURVE
 * refused, one audit line per request written before the reply, malformed
 * bodies, the server key files, alert policy edits (and the audit-log
 * conflict), and the `connrep` CLI's exit codes and output. */
#define _XOPEN_SOURCE 700 /* nftw */
#define _DEFAULT_SOURCE

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/admin.h"

/* Criterion's cr_assert cannot take jansson's type macros directly (they
 * expand to a parenthesized expression); these wrap them. */
static bool is_true(const json_t *j)
{
    return json_is_true(j);
}

static bool is_false(const json_t *j)
{
    return json_is_false(j);
}

static bool is_null(const json_t *j)
{
    return json_is_null(j);
}

static bool is_object(const json_t *j)
{
    return json_is_object(j);
}

/* ------------------------------------------------------------------------ */
/* Identities */

enum { OM_ALL, SA_ALL, GR_ALL, SR_ALL, VO_ALL, OM_RED, GR_RED, SA_BLUE, N_IDS };

static const struct {
    const char *name, *role, *tenant;
    bool change;
} ids[N_IDS] = {
    {"om_all", "OrganizationManagement", "*", true},
    {"sa_all", "SecurityAdministrator", "*", true},
    {"gr_all", "GlobalReader", "*", false},
    {"sr_all", "SecurityReader", "*", false},
    {"vo_all", "ViewOnlyOrganizationManagement", "*", false},
    {"om_red", "OrganizationManagement", "red", true},
    {"gr_red", "GlobalReader", "red", false},
    {"sa_blue", "SecurityAdministrator", "blue", true},
};

static char pubk[N_IDS][41], seck[N_IDS][41];

/* ------------------------------------------------------------------------ */
/* The fake backend: connectors in memory. It deliberately ignores the
 * scope in list_restricted, so the tests see the server's own filter. */

typedef struct fconn {
    char id[64];
    char tenant[16];
    char state[16];
    unsigned reasons;
} fconn;

static fconn fc[32];
static size_t nfc;
static int save_calls;
static char save_actor[64], last_actor[64], last_reason[256];

static void fake_reset(void)
{
    static const fconn init[] = {
        {"conn-r1", "red", "restricted", CRP_REASON_SPAM_RATIO},
        {"conn-r2", "red", "active", 0},
        {"conn-b1", "blue", "restricted", CRP_REASON_MALWARE},
        {"conn-b2", "blue", "restricted", CRP_REASON_PHISH_RATIO},
        {"conn-n1", "", "restricted", CRP_REASON_SENDING_LIMIT},
    };
    memcpy(fc, init, sizeof(init));
    nfc = sizeof(init) / sizeof(init[0]);
    save_calls = 0;
    last_actor[0] = last_reason[0] = save_actor[0] = '\0';
}

static fconn *fake_find(const char *id, size_t len)
{
    for (size_t i = 0; i < nfc; i++) {
        if (strlen(fc[i].id) == len && memcmp(fc[i].id, id, len) == 0)
            return &fc[i];
    }
    return NULL;
}

static json_t *fake_entry(const fconn *c)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:s, s:{s:i, s:f}}", "connector_id", c->id, "tenant",
                     c->tenant, "state", c->state, "reasons", crp_json_reasons(c->reasons), "since",
                     "2024-05-01T10:00:00.000Z", "figures", "messages", 120, "spam_ratio", 0.75);
}

static crp_err fake_tenant_of(void *ctx, const char *id, size_t len, char *tenant)
{
    fconn *c = fake_find(id, len);
    (void)ctx;
    if (c == NULL)
        return CRP_NOTFOUND;
    strcpy(tenant, c->tenant);
    return CRP_OK;
}

static crp_err fake_list(void *ctx, const crp_admin_scope *scope, json_t **list)
{
    (void)ctx;
    (void)scope;
    *list = json_array();
    for (size_t i = 0; i < nfc; i++) {
        if (strcmp(fc[i].state, "restricted") == 0)
            json_array_append_new(*list, fake_entry(&fc[i]));
    }
    return CRP_OK;
}

static crp_err fake_describe(void *ctx, const char *id, size_t len, json_t **detail)
{
    fconn *c = fake_find(id, len);
    (void)ctx;
    if (c == NULL)
        return CRP_NOTFOUND;
    *detail = fake_entry(c);
    json_object_set_new(*detail, "rules",
                        json_pack("[{s:s, s:f, s:f, s:b, s:f, s:f, s:b}]", "rule", "spam_ratio",
                                  "threshold", 0.5, "value", 0.6, "tripped", 1, "value_at_block",
                                  0.8, "threshold_at_block", 0.5, "tripped_at_block", 1));
    json_object_set_new(*detail, "signals",
                        json_pack("{s:f, s:f}", "messages", 120.0, "spam", 90.0));
    return CRP_OK;
}

static crp_err fake_remove(void *ctx, const char *id, size_t len, const char *actor,
                           const char *reason, json_t **result)
{
    fconn *c = fake_find(id, len);
    (void)ctx;
    if (c == NULL)
        return CRP_NOTFOUND;
    if (strcmp(c->state, "restricted") != 0)
        return CRP_CONFLICT;
    strcpy(c->state, "probation");
    c->reasons = 0;
    snprintf(last_actor, sizeof(last_actor), "%s", actor);
    snprintf(last_reason, sizeof(last_reason), "%s", reason ? reason : "(none)");
    *result = fake_entry(c);
    return CRP_OK;
}

static crp_err fake_block(void *ctx, const char *id, size_t len, const char *tenant,
                          const char *actor, const char *reason, json_t **result)
{
    fconn *c = fake_find(id, len);
    (void)ctx;
    if (c == NULL) {
        c = &fc[nfc++];
        snprintf(c->id, sizeof(c->id), "%.*s", (int)len, id);
        snprintf(c->tenant, sizeof(c->tenant), "%s", tenant);
    }
    strcpy(c->state, "restricted");
    c->reasons |= CRP_REASON_MANUAL;
    snprintf(last_actor, sizeof(last_actor), "%s", actor);
    snprintf(last_reason, sizeof(last_reason), "%s", reason);
    *result = fake_entry(c);
    return CRP_OK;
}

static crp_err fake_stats(void *ctx, json_t **stats)
{
    (void)ctx;
    *stats = json_pack("{s:I, s:I}", "connectors", (json_int_t)nfc, "capacity", (json_int_t)1024);
    return CRP_OK;
}

static crp_err fake_save(void *ctx, const crp_alert_policy *p, const char *actor)
{
    (void)ctx;
    (void)p;
    save_calls++;
    snprintf(save_actor, sizeof(save_actor), "%s", actor);
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

/* ------------------------------------------------------------------------ */
/* Fixture */

static char tmpdir[64], confpath[128], keypath[128], endpoint[128], auditpath[128];
static crp_config cfg;
static void *zctx, *cctx;
static crp_audit *audit;
static crp_alerts *alerts;
static crp_admin_server *srv;
static int sent; /* requests answered so far */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/crp_admin_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(confpath, sizeof(confpath), "%s/connrep.conf", tmpdir);
    snprintf(keypath, sizeof(keypath), "%s/keys/admin.key", tmpdir);
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/run/admin", tmpdir);
    snprintf(auditpath, sizeof(auditpath), "%s/state/audit.log", tmpdir);
    for (int i = 0; i < N_IDS; i++)
        cr_assert(eq(int, zmq_curve_keypair(pubk[i], seck[i]), 0));
    crp_config_defaults(&cfg);
    zctx = zmq_ctx_new();
    cctx = zmq_ctx_new();
    audit = NULL;
    alerts = NULL;
    srv = NULL;
    sent = 0;
    fake_reset();
}

static void teardown(void)
{
    crp_admin_server_stop(&srv);
    crp_alerts_destroy(&alerts);
    crp_audit_destroy(&audit);
    crp_config_fini(&cfg);
    zmq_ctx_term(cctx);
    zmq_ctx_term(zctx);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 30);

static void write_config(bool audit_on, bool alerts_on)
{
    FILE *f = fopen(confpath, "w");

    cr_assert(f != NULL);
    fprintf(f,
            "[engine]\nstate_dir = %s/state\n\n[admin]\nbind = %s\nsecret_key_file = %s\n\n"
            "[alerts]\nenabled = %s\nemail = false\n\n[audit]\nenabled = %s\n",
            tmpdir, endpoint, keypath, alerts_on ? "true" : "false", audit_on ? "true" : "false");
    for (int i = 0; i < N_IDS; i++)
        fprintf(f, "\n[identity %s]\npublic_key = %s\nrole = %s\ntenant = %s\n", ids[i].name,
                pubk[i], ids[i].role, ids[i].tenant);
    fclose(f);
}

/* Loads the config and starts audit, alerts and the server. Returns the
 * server's error (errbuf filled) without asserting, so failures can be
 * tested. */
static crp_err try_start(bool audit_on, bool alerts_on, char *err, size_t errlen)
{
    write_config(audit_on, alerts_on);
    cr_assert(eq(int, crp_config_load(&cfg, confpath, err, errlen), CRP_OK), "%s", err);
    cr_assert(eq(int, crp_audit_create_from_config(&audit, &cfg, err, errlen), CRP_OK), "%s", err);
    cr_assert(eq(int, crp_alerts_create(&alerts, &cfg, audit, err, errlen), CRP_OK), "%s", err);
    return crp_admin_server_start(&srv, zctx, &cfg, &fake, audit, alerts, err, errlen);
}

static void start(void)
{
    char err[512] = "";
    cr_assert(eq(int, try_start(true, true, err, sizeof(err)), CRP_OK), "%s", err);
}

/* Sends body with the given client keys; returns the reply text (malloc'd)
 * or NULL on timeout. */
static char *exchange(const char *pub, const char *sec, bool curve, const char *body,
                      int timeout_ms)
{
    void *s = zmq_socket(cctx, ZMQ_DEALER);
    int zero = 0;
    zmq_msg_t m;
    char *out = NULL;

    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof(timeout_ms));
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (curve) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, crp_admin_server_public_key(srv), 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    cr_assert(eq(int, zmq_connect(s, endpoint), 0));
    if (zmq_send(s, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(s, body, strlen(body), 0) < 0)
        goto out;
    zmq_msg_init(&m);
    do {
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            goto out;
        }
    } while (zmq_msg_more(&m));
    out = strndup(zmq_msg_data(&m), zmq_msg_size(&m));
    zmq_msg_close(&m);
out:
    zmq_close(s);
    return out;
}

static json_t *last_reply;
static char *last_text;

/* Sends a request as identity `who` and returns the parsed reply (owned by
 * the fixture until the next call); its text stays in last_text. */
static json_t *call(int who, const char *body)
{
    json_decref(last_reply);
    free(last_text);
    last_text = exchange(pubk[who], seck[who], true, body, 3000);
    cr_assert(last_text != NULL, "no reply to %s from %s", body, ids[who].name);
    sent++;
    last_reply = json_loads(last_text, 0, NULL);
    cr_assert(is_object(last_reply), "%s", last_text);
    return last_reply;
}

/* The error code of a reply, or "ok". */
static const char *code_of(const json_t *r)
{
    if (json_is_true(json_object_get(r, "ok")))
        return "ok";
    return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

static const char *message_of(const json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "error"), "message"));
}

static json_t *result_of(const json_t *r)
{
    return json_object_get(r, "result");
}

static void expect(int who, const char *body, const char *code)
{
    json_t *r = call(who, body);
    cr_assert(eq(str, (char *)code_of(r), (char *)code), "%s as %s: %s", body, ids[who].name,
              last_text);
    if (strcmp(code, "ok") != 0) {
        cr_assert(json_object_get(r, "result") == NULL);
        cr_assert(message_of(r) != NULL && message_of(r)[0] != '\0');
    }
}

/* Request lines of the audit log, in file order. */
static json_t *audit_requests(void)
{
    FILE *f = fopen(auditpath, "r");
    char line[65536];
    json_t *out = json_array();

    if (f == NULL)
        return out;
    while (fgets(line, sizeof(line), f) != NULL) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert(o != NULL, "bad audit line: %s", line);
        if (strcmp(json_string_value(json_object_get(o, "kind")), "request") == 0)
            json_array_append(out, o);
        json_decref(o);
    }
    fclose(f);
    return out;
}

static const char *fstate(const char *id)
{
    fconn *c = fake_find(id, strlen(id));
    return c ? c->state : "(absent)";
}

/* ------------------------------------------------------------------------ */
/* Tests */

Test(admin, key_files_are_created_0600_with_pub_beside)
{
    char pubpath[160], buf[64] = "";
    struct stat st;
    FILE *f;

    start();
    cr_assert(eq(int, stat(keypath, &st), 0));
    cr_assert(eq(u32, (unsigned)(st.st_mode & 0777), 0600u));
    cr_assert(eq(i64, (int64_t)st.st_size, 41));
    snprintf(pubpath, sizeof(pubpath), "%s.pub", keypath);
    cr_assert(eq(int, stat(pubpath, &st), 0));
    cr_assert(eq(u32, (unsigned)(st.st_mode & 0777), 0600u));
    f = fopen(pubpath, "r");
    cr_assert(fgets(buf, sizeof(buf), f) != NULL);
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    cr_assert(eq(str, buf, (char *)crp_admin_server_public_key(srv)));

    /* A restart reuses the pair. */
    {
        char pub1[41];
        char err[256];
        strcpy(pub1, crp_admin_server_public_key(srv));
        crp_admin_server_stop(&srv);
        /* A fresh context: the old listener must be gone before the same
         * ipc:// path is bound again. */
        zmq_ctx_term(zctx);
        zctx = zmq_ctx_new();
        cr_assert(
            eq(int,
               crp_admin_server_start(&srv, zctx, &cfg, &fake, audit, alerts, err, sizeof(err)),
               CRP_OK),
            "%s", err);
        cr_assert(eq(str, pub1, (char *)crp_admin_server_public_key(srv)));
    }
    expect(OM_ALL, "{\"verb\":\"whoami\"}", "ok");
}

Test(admin, restart_in_the_same_context_rebinds_the_zap_handler)
{
    char err[256];

    start();
    for (int i = 0; i < 5; i++) {
        crp_admin_server_stop(&srv);
        /* A new path each time: only the ipc:// listener is released in
         * the background; the ZAP endpoint must be free at once. */
        snprintf(endpoint, sizeof(endpoint), "ipc://%s/run/admin%d", tmpdir, i);
        snprintf(cfg.admin.bind, sizeof(cfg.admin.bind), "%s", endpoint);
        cr_assert(
            eq(int,
               crp_admin_server_start(&srv, zctx, &cfg, &fake, audit, alerts, err, sizeof(err)),
               CRP_OK),
            "%s", err);
        expect(GR_ALL, "{\"verb\":\"whoami\"}", "ok");
    }
}

Test(admin, bad_key_files_are_refused_with_the_file_named)
{
    char err[512] = "";
    char dir[128];
    int fd;

    snprintf(dir, sizeof(dir), "%s/keys", tmpdir);
    mkdir(dir, 0700);
    fd = open(keypath, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert(fd >= 0);
    cr_assert(eq(int, (int)write(fd, "tooshort\n", 9), 9));
    close(fd);
    cr_assert(eq(int, try_start(true, true, err, sizeof(err)), CRP_BADFILE));
    cr_assert(srv == NULL);
    cr_assert(strstr(err, keypath) != NULL, "%s", err);
    cr_assert(strstr(err, "40 Z85") != NULL, "%s", err);

    /* A valid key that others may read is refused too. */
    unlink(keypath);
    cr_assert(eq(int, crp_admin_key_create(keypath, NULL, NULL, err, sizeof(err)), CRP_OK));
    chmod(keypath, 0644);
    crp_alerts_destroy(&alerts);
    crp_audit_destroy(&audit);
    crp_config_fini(&cfg);
    cr_assert(eq(int, try_start(true, true, err, sizeof(err)), CRP_BADFILE));
    cr_assert(strstr(err, "chmod 600") != NULL, "%s", err);
}

/* Every role against every verb, on connectors in scope. */
Test(admin, role_verb_matrix)
{
    static const struct {
        const char *body;
        bool change;
    } verbs[] = {
        {"{\"verb\":\"get-blocked-connector\"}", false},
        {"{\"verb\":\"get-blocked-connector\",\"connector_id\":\"conn-r1\"}", false},
        {"{\"verb\":\"get-connector\",\"connector_id\":\"conn-r2\"}", false},
        {"{\"verb\":\"get-alert-policy\"}", false},
        {"{\"verb\":\"search-audit-log\",\"limit\":5}", false},
        {"{\"verb\":\"get-stats\"}", false},
        {"{\"verb\":\"whoami\"}", false},
        {"{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\",\"reason\":\"ok\"}",
         true},
        {"{\"verb\":\"block-connector\",\"connector_id\":\"conn-r2\",\"reason\":\"test\"}", true},
        {"{\"verb\":\"set-alert-policy\",\"daily_limit\":2}", true},
    };

    start();
    for (int who = 0; who < N_IDS; who++) {
        if (strcmp(ids[who].tenant, "*") != 0)
            continue;
        for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
            const char *want = !verbs[v].change || ids[who].change ? "ok" : "forbidden";
            fake_reset();
            expect(who, verbs[v].body, want);
            if (strcmp(want, "forbidden") == 0) {
                /* A denied change changes nothing. */
                cr_assert(eq(str, (char *)fstate("conn-r1"), "restricted"));
                cr_assert(eq(str, (char *)fstate("conn-r2"), "active"));
                cr_assert(eq(int, save_calls, 0));
                cr_assert(strstr(message_of(last_reply), ids[who].role) != NULL, "%s", last_text);
            }
        }
    }
    /* Scoped identities within their own tenant: the same rule. */
    fake_reset();
    expect(GR_RED, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-r1\"}", "ok");
    expect(GR_RED, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\"}",
           "forbidden");
    expect(OM_RED, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\"}", "ok");
    cr_assert(eq(str, (char *)fstate("conn-r1"), "probation"));
    expect(SA_BLUE, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b1\"}", "ok");
    cr_assert(eq(str, (char *)fstate("conn-b1"), "probation"));
    cr_assert(eq(str, last_actor, "sa_blue"));
}

Test(admin, whoami_reports_role_scope_and_verbs)
{
    json_t *r;

    start();
    r = result_of(call(GR_RED, "{\"verb\":\"whoami\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "name")), "gr_red"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "role")), "GlobalReader"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "tenant")), "red"));
    cr_assert(is_false(json_object_get(r, "may_change")));
    cr_assert(eq(sz, json_array_size(json_object_get(r, "verbs")), 6));
    /* A scoped change role may not edit the (global) alert policy. */
    r = result_of(call(OM_RED, "{\"verb\":\"whoami\"}"));
    cr_assert(eq(sz, json_array_size(json_object_get(r, "verbs")), 8));
    r = result_of(call(SA_ALL, "{\"verb\":\"whoami\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "tenant")), "*"));
    cr_assert(eq(sz, json_array_size(json_object_get(r, "verbs")), 9));
}

Test(admin, another_tenants_connector_is_not_found_and_leaks_nothing)
{
    char unknown_msg[256];
    json_t *r;
    size_t i;
    json_t *e;

    start();
    expect(OM_RED, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-zz\"}", "not_found");
    snprintf(unknown_msg, sizeof(unknown_msg), "%s", message_of(last_reply));
    /* The same answer, word for word (but the id), as for an unknown id. */
    expect(OM_RED, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-b1\"}", "not_found");
    {
        char want[256];
        char *p = strstr(unknown_msg, "conn-zz");
        cr_assert(p != NULL);
        snprintf(want, sizeof(want), "%.*sconn-b1%s", (int)(p - unknown_msg), unknown_msg, p + 7);
        cr_assert(eq(str, (char *)message_of(last_reply), want));
    }
    cr_assert(strstr(last_text, "blue") == NULL, "%s", last_text);
    cr_assert(strstr(last_text, "malware") == NULL, "%s", last_text);

    /* Whatever the verb, and before the role: a reader gets not_found too. */
    expect(OM_RED, "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"conn-b1\"}",
           "not_found");
    expect(OM_RED, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b1\"}",
           "not_found");
    expect(GR_RED, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b1\"}",
           "not_found");
    expect(GR_RED, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\"}",
           "forbidden");
    expect(OM_RED, "{\"verb\":\"block-connector\",\"connector_id\":\"conn-b2\",\"reason\":\"x\"}",
           "not_found");
    expect(SA_BLUE, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-n1\"}", "not_found");
    cr_assert(eq(str, (char *)fstate("conn-b1"), "restricted"));
    cr_assert(eq(u32, fake_find("conn-b2", 7)->reasons, (unsigned)CRP_REASON_PHISH_RATIO));

    /* Lists show only the caller's tenant (the fake returns every tenant). */
    r = result_of(call(OM_RED, "{\"verb\":\"get-blocked-connector\"}"));
    cr_assert(eq(sz, json_array_size(r), 1));
    cr_assert(eq(str,
                 (char *)json_string_value(json_object_get(json_array_get(r, 0), "connector_id")),
                 "conn-r1"));
    cr_assert(strstr(last_text, "blue") == NULL, "%s", last_text);
    r = result_of(call(OM_ALL, "{\"verb\":\"get-blocked-connector\"}"));
    cr_assert(eq(sz, json_array_size(r), 4));

    /* Engine-wide statistics are for tenant = * identities. */
    r = result_of(call(GR_RED, "{\"verb\":\"get-stats\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "tenant")), "red"));
    cr_assert(eq(int, (int)json_integer_value(json_object_get(r, "restricted")), 1));
    cr_assert(json_object_get(r, "engine") == NULL);

    /* The audit log, too, shows a scoped identity only its tenant's lines. */
    r = result_of(call(OM_RED, "{\"verb\":\"search-audit-log\"}"));
    cr_assert(json_array_size(json_object_get(r, "entries")) > 0);
    json_array_foreach(json_object_get(r, "entries"), i, e)
        cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "tenant")), "red"));
    cr_assert(strstr(last_text, "blue") == NULL, "%s", last_text);
}

Test(admin, block_of_a_new_connector_uses_the_callers_tenant)
{
    start();
    expect(OM_RED,
           "{\"verb\":\"block-connector\",\"connector_id\":\"conn-new1\",\"reason\":\"spam run\"}",
           "ok");
    cr_assert(eq(str, fake_find("conn-new1", 9)->tenant, "red"));
    cr_assert(eq(str, last_actor, "om_red"));
    cr_assert(eq(str, last_reason, "spam run"));
    expect(OM_RED,
           "{\"verb\":\"block-connector\",\"connector_id\":\"conn-new2\",\"reason\":\"x\","
           "\"tenant\":\"blue\"}",
           "forbidden");
    cr_assert(fake_find("conn-new2", 9) == NULL);
    expect(OM_ALL,
           "{\"verb\":\"block-connector\",\"connector_id\":\"conn-new3\",\"reason\":\"x\","
           "\"tenant\":\"blue\"}",
           "ok");
    cr_assert(eq(str, fake_find("conn-new3", 9)->tenant, "blue"));
    expect(OM_ALL, "{\"verb\":\"block-connector\",\"connector_id\":\"conn-new4\",\"reason\":\"x\"}",
           "ok");
    cr_assert(eq(str, fake_find("conn-new4", 9)->tenant, ""));
    /* A known connector keeps its tenant: naming another one is a conflict. */
    expect(OM_ALL,
           "{\"verb\":\"block-connector\",\"connector_id\":\"conn-r2\",\"reason\":\"x\","
           "\"tenant\":\"blue\"}",
           "conflict");
    expect(OM_ALL, "{\"verb\":\"block-connector\",\"connector_id\":\"conn-r3\"}", "bad_request");
}

Test(admin, detail_has_rules_signals_and_the_advice)
{
    json_t *r;

    start();
    r = result_of(
        call(SR_ALL, "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"conn-r1\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "state")), "restricted"));
    cr_assert(strstr(json_string_value(json_object_get(r, "advice")),
                     "regain control of it (Respond to a compromised connector)") != NULL);
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "unblock_command")),
                 "connrep remove-blocked-connector --connector-id conn-r1"));
    cr_assert(eq(sz, json_array_size(json_object_get(r, "rules")), 1));
    cr_assert(json_object_get(json_object_get(r, "signals"), "messages") != NULL);
    /* Get-BlockedConnector shows blocked connectors only. */
    expect(SR_ALL, "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"conn-r2\"}",
           "not_found");
    r = result_of(call(SR_ALL, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-r2\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "state")), "active"));
    cr_assert(json_object_get(r, "advice") == NULL);
}

Test(admin, remove_twice_is_a_conflict)
{
    json_t *r;

    start();
    r = result_of(call(SA_ALL, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":"
                               "\"conn-b2\",\"reason\":\"regained control\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "state")), "probation"));
    cr_assert(eq(str, last_reason, "regained control"));
    expect(SA_ALL, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b2\"}",
           "conflict");
    expect(SA_ALL, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-zz\"}",
           "not_found");
}

Test(admin, malformed_requests_are_bad_request)
{
    static const char *const bodies[] = {
        "{",
        "[1]",
        "\"get-stats\"",
        "42",
        "{}",
        "{\"verb\":5}",
        "{\"verb\":\"unblock-everything\"}",
        "{\"verb\":\"whoami\",\"extra\":1}",
        "{\"verb\":\"whoami\",\"verb\":\"get-stats\"}",
        "{\"verb\":\"get-connector\"}",
        "{\"verb\":\"get-connector\",\"connector_id\":5}",
        "{\"verb\":\"get-connector\",\"connector_id\":\"\"}",
        "{\"verb\":\"get-connector\",\"connector_id\":\"a\\u0000b\"}",
        "{\"verb\":\"set-alert-policy\",\"enabled\":\"yes\"}",
        "{\"verb\":\"set-alert-policy\",\"daily_limit\":4}",
        "{\"verb\":\"set-alert-policy\",\"recipients\":\"not an address\"}",
        "{\"verb\":\"search-audit-log\",\"limit\":\"10\"}",
        "{\"verb\":\"search-audit-log\",\"limit\":0}",
        "{\"verb\":\"search-audit-log\",\"limit\":10001}",
        "{\"verb\":\"search-audit-log\",\"since\":\"yesterday\"}",
        "{\"verb\":\"block-connector\",\"connector_id\":\"x\",\"reason\":\"\"}",
        "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\",\"reason\":7}",
        "{\"verb\":\"get-\xff\"}",
    };
    json_t *lines;

    start();
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        expect(OM_ALL, bodies[i], "bad_request");
    cr_assert(eq(str, (char *)fstate("conn-r1"), "restricted"));
    lines = audit_requests();
    cr_assert(eq(sz, json_array_size(lines), sizeof(bodies) / sizeof(bodies[0])));
    json_decref(lines);
}

Test(admin, every_request_leaves_one_audit_line_before_its_reply)
{
    static const struct {
        int who;
        const char *body, *verb, *target, *result, *tenant;
    } reqs[] = {
        {OM_ALL, "{\"verb\":\"whoami\"}", "whoami", NULL, "ok", "*"},
        {GR_ALL, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-r1\"}",
         "remove-blocked-connector", "conn-r1", "forbidden", "red"},
        {OM_RED, "{\"verb\":\"get-connector\",\"connector_id\":\"conn-b1\"}", "get-connector",
         "conn-b1", "not_found", "red"},
        {SA_ALL,
         "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b1\",\"reason\":\"r\"}",
         "remove-blocked-connector", "conn-b1", "ok", "blue"},
        {SA_ALL, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"conn-b1\"}",
         "remove-blocked-connector", "conn-b1", "conflict", "blue"},
        {VO_ALL, "not json", NULL, NULL, "bad_request", "*"},
        {SA_BLUE, "{\"verb\":\"set-alert-policy\",\"email\":true}", "set-alert-policy", NULL,
         "forbidden", "blue"},
        {OM_ALL, "{\"verb\":\"set-alert-policy\",\"daily_limit\":1}", "set-alert-policy", NULL,
         "ok", "*"},
        {SR_ALL, "{\"verb\":\"search-audit-log\",\"actor\":\"sa_all\"}", "search-audit-log", NULL,
         "ok", "*"},
    };
    size_t n = sizeof(reqs) / sizeof(reqs[0]);
    json_t *lines, *e;

    start();
    for (size_t i = 0; i < n; i++) {
        expect(reqs[i].who, reqs[i].body, reqs[i].result);
        /* The line is on disk by the time the reply arrives. */
        lines = audit_requests();
        cr_assert(eq(sz, json_array_size(lines), i + 1));
        e = json_array_get(lines, i);
        cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "actor")),
                     (char *)ids[reqs[i].who].name));
        cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "role")),
                     (char *)ids[reqs[i].who].role));
        cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "result")),
                     (char *)reqs[i].result));
        cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "tenant")),
                     (char *)reqs[i].tenant));
        if (reqs[i].verb != NULL)
            cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "verb")),
                         (char *)reqs[i].verb));
        else
            cr_assert(is_null(json_object_get(e, "verb")));
        if (reqs[i].target != NULL)
            cr_assert(eq(str, (char *)json_string_value(json_object_get(e, "target")),
                         (char *)reqs[i].target));
        json_decref(lines);
    }
    /* The search (the last request) saw the removal and the conflict. */
    cr_assert(eq(int, (int)json_integer_value(json_object_get(result_of(last_reply), "count")), 2));
    /* The policy edit keeps the new policy in its line. */
    lines = audit_requests();
    e = json_array_get(lines, 7);
    cr_assert(eq(
        int, (int)json_integer_value(json_object_get(json_object_get(e, "details"), "daily_limit")),
        1));
    cr_assert(eq(
        str, (char *)json_string_value(json_object_get(json_array_get(lines, 3), "reason")), "r"));
    json_decref(lines);
}

Test(admin, unknown_key_is_refused)
{
    char pub[41], sec[41], *reply;
    crp_admin_stats st;
    crp_audit_query q = {.any_tenant = true, .action = "auth.refused"};
    json_t *out;

    start();
    cr_assert(eq(int, zmq_curve_keypair(pub, sec), 0));
    reply = exchange(pub, sec, true, "{\"verb\":\"whoami\"}", 300);
    cr_assert(reply == NULL, "got %s", reply);
    crp_admin_server_stats(srv, &st);
    cr_assert(st.auth_refused >= 1);
    cr_assert(eq(u64, st.requests, 0));
    cr_assert(eq(int, crp_audit_search(audit, &q, &out, NULL), CRP_OK));
    cr_assert(json_array_size(out) >= 1);
    cr_assert(eq(str,
                 (char *)json_string_value(json_object_get(
                     json_object_get(json_array_get(out, 0), "details"), "public_key")),
                 pub));
    json_decref(out);
    /* A known key still gets in. */
    expect(GR_ALL, "{\"verb\":\"whoami\"}", "ok");
}

Test(admin, client_without_curve_is_refused)
{
    char *reply;
    crp_admin_stats st;

    start();
    reply = exchange(NULL, NULL, false, "{\"verb\":\"whoami\"}", 300);
    cr_assert(reply == NULL, "got %s", reply);
    /* A client that knows the server key but has a wrong secret for a known
     * public key cannot finish the handshake either. */
    {
        char pub2[41], sec2[41];
        zmq_curve_keypair(pub2, sec2);
        reply = exchange(pubk[OM_ALL], sec2, true, "{\"verb\":\"whoami\"}", 300);
        cr_assert(reply == NULL, "got %s", reply);
    }
    crp_admin_server_stats(srv, &st);
    cr_assert(eq(u64, st.requests, 0));
}

Test(admin, alert_policy_get_and_set)
{
    json_t *r;

    start();
    r = result_of(call(VO_ALL, "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "name")),
                 "Suspicious connector activity"));
    cr_assert(is_true(json_object_get(r, "enabled")));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "recipients")), "TenantAdmins"));
    cr_assert(eq(int, (int)json_integer_value(json_object_get(r, "daily_limit")), 3));
    r = result_of(call(OM_ALL, "{\"verb\":\"set-alert-policy\",\"email\":true,\"recipients\":"
                               "[\"soc@example.com\",\"noc@example.org\"],\"daily_limit\":1}"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(r, "recipients")),
                 "soc@example.com,noc@example.org"));
    cr_assert(eq(int, save_calls, 1));
    cr_assert(eq(str, save_actor, "om_all"));
    r = result_of(call(GR_ALL, "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(eq(int, (int)json_integer_value(json_object_get(r, "daily_limit")), 1));
    cr_assert(is_true(json_object_get(r, "email")));
    expect(OM_RED, "{\"verb\":\"set-alert-policy\",\"daily_limit\":2}", "forbidden");
}

Test(admin, alerts_on_with_audit_off_is_a_conflict)
{
    char err[512] = "";
    json_t *r;

    cr_assert(eq(int, try_start(false, false, err, sizeof(err)), CRP_OK), "%s", err);
    r = call(OM_ALL, "{\"verb\":\"set-alert-policy\",\"enabled\":true}");
    cr_assert(eq(str, (char *)code_of(r), "conflict"));
    cr_assert(strstr(message_of(r), "audit log") != NULL, "%s", last_text);
    r = result_of(call(OM_ALL, "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(is_false(json_object_get(r, "enabled")));
    expect(OM_ALL, "{\"verb\":\"set-alert-policy\",\"enabled\":false,\"daily_limit\":2}", "ok");
    expect(OM_ALL, "{\"verb\":\"search-audit-log\"}", "unavailable");
    cr_assert(access(auditpath, F_OK) != 0);
}

Test(admin, stats_for_global_identities)
{
    json_t *r;

    start();
    expect(OM_ALL, "{\"verb\":\"whoami\"}", "ok");
    r = result_of(call(GR_ALL, "{\"verb\":\"get-stats\"}"));
    cr_assert(eq(
        int, (int)json_integer_value(json_object_get(json_object_get(r, "engine"), "connectors")),
        5));
    cr_assert(eq(
        int, (int)json_integer_value(json_object_get(json_object_get(r, "admin"), "requests")), 1));
    cr_assert(json_object_get(json_object_get(r, "alerts"), "suppressed") != NULL);
    cr_assert(is_true(json_object_get(json_object_get(r, "audit"), "enabled")));
}

/* ------------------------------------------------------------------------ */
/* The CLI against the same server */

#ifdef CONNREP_CLI

/* Writes identity `who`'s keys as a client key file pair; returns its path. */
static const char *client_key(int who)
{
    static char path[N_IDS][160];
    char pub[176];
    FILE *f;
    int fd;

    snprintf(path[who], sizeof(path[who]), "%s/%s.key", tmpdir, ids[who].name);
    snprintf(pub, sizeof(pub), "%s.pub", path[who]);
    fd = open(path[who], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    cr_assert(eq(int, (int)write(fd, seck[who], 40), 40));
    cr_assert(eq(int, (int)write(fd, "\n", 1), 1));
    close(fd);
    f = fopen(pub, "w");
    fprintf(f, "%s\n", pubk[who]);
    fclose(f);
    return path[who];
}

/* Runs the CLI with the test's config; returns its exit status and fills
 * out/err with what it printed. */
static int cli(const char *args, char *out, size_t outsize, char *errtext, size_t errsize)
{
    char cmd[2048], opath[160], epath[160];
    int st;
    FILE *f;
    size_t n;

    snprintf(opath, sizeof(opath), "%s/cli.out", tmpdir);
    snprintf(epath, sizeof(epath), "%s/cli.err", tmpdir);
    snprintf(cmd, sizeof(cmd), "%s --config %s %s >%s 2>%s", CONNREP_CLI, confpath, args, opath,
             epath);
    st = system(cmd);
    f = fopen(opath, "r");
    n = fread(out, 1, outsize - 1, f);
    out[n] = '\0';
    fclose(f);
    f = fopen(epath, "r");
    n = fread(errtext, 1, errsize - 1, f);
    errtext[n] = '\0';
    fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(admin, cli_exit_codes_and_output)
{
    static char out[65536], err[4096];
    char args[512];
    json_t *j;

    start();
    snprintf(args, sizeof(args), "--key %s get-blocked-connector", client_key(GR_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 0), "%s", err);
    cr_assert(strstr(out, "ConnectorId") != NULL && strstr(out, "BlockedSince") != NULL, "%s", out);
    cr_assert(strstr(out, "conn-b2") != NULL, "%s", out);

    snprintf(args, sizeof(args), "--key %s get-blocked-connector --connector-id conn-r1",
             client_key(GR_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 0), "%s", err);
    cr_assert(strstr(out, "regain control") != NULL, "%s", out);

    snprintf(args, sizeof(args), "--key %s remove-blocked-connector --connector-id conn-r1",
             client_key(GR_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 1));
    cr_assert(strstr(err, "forbidden") != NULL, "%s", err);

    snprintf(args, sizeof(args),
             "--key %s remove-blocked-connector --connector-id conn-r1 --reason 'cleaned up'",
             client_key(OM_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 0), "%s", err);
    cr_assert(eq(str, (char *)fstate("conn-r1"), "probation"));
    cr_assert(eq(str, last_reason, "cleaned up"));

    snprintf(args, sizeof(args), "--json --key %s whoami", client_key(OM_RED));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 0), "%s", err);
    j = json_loads(out, 0, NULL);
    cr_assert(eq(str, (char *)json_string_value(json_object_get(j, "name")), "om_red"));
    json_decref(j);

    snprintf(args, sizeof(args), "--key %s set-alert-policy --daily-limit 2 --email off",
             client_key(SA_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 0), "%s", err);
    cr_assert(strstr(out, "DailyLimit") != NULL, "%s", out);

    /* Usage errors: exit 2, nothing sent. */
    snprintf(args, sizeof(args), "--key %s remove-blocked-connector", client_key(OM_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 2));
    snprintf(args, sizeof(args), "--key %s set-alert-policy --enabled maybe", client_key(OM_ALL));
    cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 2));

    /* An unknown key: no answer, exit 3, and the message says why. */
    {
        char kp[160];
        snprintf(kp, sizeof(kp), "%s/stranger.key", tmpdir);
        cr_assert(eq(int, crp_admin_key_create(kp, NULL, NULL, err, sizeof(err)), CRP_OK));
        snprintf(args, sizeof(args), "--timeout 300 --key %s whoami", kp);
        cr_assert(eq(int, cli(args, out, sizeof(out), err, sizeof(err)), 3));
        cr_assert(strstr(err, "no answer from") != NULL && strstr(err, "within 300 ms") != NULL,
                  "%s", err);
    }
}

#endif
