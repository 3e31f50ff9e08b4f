/* Integration: the admin face of the real connrepd (PROTOCOL.md section 5,
 * docs/admin.md), end to end.
 *
 * Each test starts its own daemon through the harness, with an identity of
 * every role (CURVE key pairs generated per test, written into the config's
 * [identity] sections), and talks to it as operators do: JSON requests over
 * a CURVE DEALER socket, and the `connrep` CLI. Connectors are restricted
 * through the feed (the engine's rules) or by block-connector; lookups go
 * through libconnrep on both paths (ZeroMQ and shared memory); events are
 * read from the daemon's PUB socket; the audit log is read back both with
 * search-audit-log and from the file.
 *
 * Covered: the role x verb matrix (five roles with tenant = *, and scoped
 * identities in their own tenant), tenant scope (another tenant's
 * connector answers not_found and leaks nothing), refused handshakes (an
 * unknown key, no CURVE at all), an audit line for every request written
 * before its reply, an unblock visible to the very next lookup on both
 * paths and published with its actor, the daily limit of alert e-mails
 * (messages written by a test notify_command, headers and body checked),
 * no alert for manual blocks, alerts refused without the audit log (config
 * check and set-alert-policy), SIGHUP and the alert policy, and the CLI.
 */
#define _DEFAULT_SOURCE
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zmq.h>

#include "connrep.h"
#include "harness.h"

static crp_harness H;

/* Identities of the generated config. */
static const struct {
    const char *name, *role, *tenant, *email;
    bool change;
} ids[] = {
    {"om_all", "OrganizationManagement", "*", "soc@example.com", true},
    {"sa_all", "SecurityAdministrator", "*", "", true},
    {"gr_all", "GlobalReader", "*", "", false},
    {"sr_all", "SecurityReader", "*", "", false},
    {"vo_all", "ViewOnlyOrganizationManagement", "*", "", false},
    {"om_red", "OrganizationManagement", "red", "admin@red.example", true},
    {"gr_red", "GlobalReader", "red", "", false},
    {"sa_blue", "SecurityAdministrator", "blue", "", true},
};
#define N_IDS     (sizeof ids / sizeof ids[0])
#define N_GLOBAL  5 /* the first five have tenant = * */
#define ADMIN_MS  3000
#define EVENT_MS  5000
#define REFUSE_MS 700

static void setup(void)
{
    cr_assert(eq(int, crp_harness_init(&H), 0));
    for (size_t i = 0; i < N_IDS; i++)
        cr_assert(ne(ptr,
                     (void *)crp_harness_add_identity(&H, ids[i].name, ids[i].role, ids[i].tenant,
                                                      ids[i].email),
                     NULL));
    /* One malware message restricts; in probation half of one does. */
    crp_harness_set(&H, "scoring", "malware", "1");
}

static void teardown(void)
{
    crp_harness_fini(&H);
}

TestSuite(admin_it, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start(void)
{
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not start");
}

/* Criterion's assertions cannot take jansson's macros directly. */
static bool is_array(const json_t *j)
{
    return json_is_array(j);
}

static bool is_true(const json_t *j)
{
    return json_is_true(j);
}

static bool is_null(const json_t *j)
{
    return json_is_null(j);
}

static const char *str_at(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "(none)";
}

/* The reply of the last request, kept until the next one. */
static json_t *last;
static char last_text[65536];

/* Sends a request (printf-style body) as identity `who` and returns the
 * reply; asserts that one came. */
static json_t *call(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *call(const char *who, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    json_decref(last);
    last = crp_harness_admin(&H, who, body, ADMIN_MS);
    if (last == NULL)
        crp_harness_dump(&H);
    cr_assert(ne(ptr, last, NULL), "no answer to %s from %s", body, who);
    char *text = json_dumps(last, JSON_COMPACT);
    snprintf(last_text, sizeof last_text, "%s", text != NULL ? text : "?");
    free(text);
    return last;
}

static const char *code_of(const json_t *r)
{
    if (json_is_true(json_object_get(r, "ok")))
        return "ok";
    return str_at(json_object_get(r, "error"), "code");
}

static const char *message_of(const json_t *r)
{
    return str_at(json_object_get(r, "error"), "message");
}

static json_t *result_of(const json_t *r)
{
    return json_object_get(r, "result");
}

/* A request whose outcome must be `code`; returns the reply. */
static json_t *expect(const char *who, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *expect(const char *who, const char *code, const char *fmt, ...)
{
    char body[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    json_t *r = call(who, "%s", body);
    cr_assert(eq(str, (char *)code_of(r), (char *)code), "%s as %s: %s", body, who, last_text);
    if (strcmp(code, "ok") != 0) {
        cr_assert(eq(ptr, json_object_get(r, "result"), NULL));
        cr_assert(ne(str, (char *)message_of(r), ""));
    }
    return r;
}

/* Feeds n events of one verdict for a connector of a tenant. */
static void feed(const char *id, const char *tenant, uint16_t verdict, size_t n)
{
    crp_feed_event ev[64];
    cr_assert(le(sz, n, sizeof ev / sizeof ev[0]));
    for (size_t i = 0; i < n; i++)
        ev[i] = (crp_feed_event){.verdict = verdict,
                                 .recipients = 1,
                                 .id = id,
                                 .id_len = strlen(id),
                                 .tenant = tenant,
                                 .tenant_len = strlen(tenant)};
    cr_assert(eq(int, crp_harness_feed(&H, 0, 0, ev, n), 0));
}

/* The next event about connector `id` (events of other connectors, such as
 * the harness's sync restrictions, are skipped); its body, owned by the
 * caller. */
static json_t *event_for(const char *id, char *topic, size_t topic_cap)
{
    uint64_t deadline = mono_ms() + EVENT_MS;
    crp_harness_event ev;
    while (mono_ms() < deadline) {
        if (crp_harness_next_event(&H, 500, &ev) != 0)
            continue;
        if (strcmp(str_at(ev.body, "connector_id"), id) == 0) {
            snprintf(topic, topic_cap, "%s", ev.topic);
            return ev.body;
        }
        crp_harness_event_fini(&ev);
    }
    crp_harness_dump(&H);
    cr_assert(false, "no event about %s within %d ms", id, EVENT_MS);
    return NULL;
}

/* The next event about `id`, which must have topic `want`. */
static json_t *expect_event(const char *id, const char *want)
{
    char topic[64];
    json_t *b = event_for(id, topic, sizeof topic);
    cr_assert(eq(str, topic, (char *)want), "%s: got %s", id, topic);
    return b;
}

/* Restricts a connector through the feed (one malware message) and waits
 * for its state.restricted event. Needs crp_harness_subscribe. */
static void restrict_by_rule(const char *id, const char *tenant)
{
    feed(id, tenant, CRP_FEED_VERDICT_MALWARE, 1);
    json_t *b = expect_event(id, "state.restricted");
    json_decref(b);
}

/* The state a lookup over the daemon's lookup socket (CRQ1) gives. */
static int state_of(const char *id)
{
    crp_reply_result r;
    cr_assert(eq(int, crp_harness_lookup(&H, id, &r, NULL, 0), 0));
    return r.state;
}

/* Polls until a connector fed through the feed reaches `state`. */
static void wait_state(const char *id, int state)
{
    uint64_t deadline = mono_ms() + EVENT_MS;
    while (state_of(id) != state && mono_ms() < deadline)
        pause_ms(5);
    cr_assert(eq(int, state_of(id), state), "%s", id);
}

/* Every line of the audit log file, in file order. */
static json_t *audit_file(void)
{
    char path[CRP_HARNESS_PATH_MAX + 16], line[65536];
    snprintf(path, sizeof path, "%s/audit.log", H.state_dir);
    FILE *f = fopen(path, "r");
    json_t *out = json_array();
    if (f == NULL)
        return out;
    while (fgets(line, sizeof line, f) != NULL) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        cr_assert(ne(ptr, o, NULL), "audit line is not JSON: %s", line);
        json_array_append_new(out, o);
    }
    fclose(f);
    return out;
}

/* The last "request" line of the audit log file. */
static json_t *last_request_line(void)
{
    json_t *all = audit_file(), *found = NULL;
    for (size_t i = json_array_size(all); i-- > 0 && found == NULL;) {
        json_t *o = json_array_get(all, i);
        if (strcmp(str_at(o, "kind"), "request") == 0)
            found = json_incref(o);
    }
    json_decref(all);
    cr_assert(ne(ptr, found, NULL), "no request line in the audit log");
    return found;
}

/* The last request must be in the file already: the line is written
 * before the reply is sent. */
static void expect_audited(const char *who, const char *verb, const char *target,
                           const char *result)
{
    json_t *l = last_request_line();
    cr_assert(eq(str, (char *)str_at(l, "actor"), (char *)who));
    cr_assert(eq(str, (char *)str_at(l, "verb"), (char *)verb));
    cr_assert(eq(str, (char *)str_at(l, "result"), (char *)result), "%s %s", who, verb);
    if (target != NULL)
        cr_assert(eq(str, (char *)str_at(l, "target"), (char *)target));
    else
        cr_assert(is_null(json_object_get(l, "target")));
    json_decref(l);
}

/* ------------------------------------------------------------------------ */
/* Roles and verbs                                                           */
/* ------------------------------------------------------------------------ */

/* Every role with tenant = * against every verb: reads for all, changes
 * for OrganizationManagement and SecurityAdministrator only; a denied
 * change changes nothing; every request leaves its audit line before the
 * reply. Then the scoped identities within their own tenant. */
Test(admin_it, role_verb_matrix)
{
    static const struct {
        const char *verb, *body, *target;
        bool change;
    } verbs[] = {
        {"get-blocked-connector", "{\"verb\":\"get-blocked-connector\"}", NULL, false},
        {"get-blocked-connector", "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"m-r1\"}",
         "m-r1", false},
        {"get-connector", "{\"verb\":\"get-connector\",\"connector_id\":\"m-a1\"}", "m-a1", false},
        {"get-alert-policy", "{\"verb\":\"get-alert-policy\"}", NULL, false},
        {"search-audit-log", "{\"verb\":\"search-audit-log\",\"limit\":5}", NULL, false},
        {"get-stats", "{\"verb\":\"get-stats\"}", NULL, false},
        {"whoami", "{\"verb\":\"whoami\"}", NULL, false},
        {"remove-blocked-connector",
         "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"m-r1\",\"reason\":\"matrix\"}",
         "m-r1", true},
        {"block-connector",
         "{\"verb\":\"block-connector\",\"connector_id\":\"m-a1\",\"reason\":\"matrix\"}", "m-a1",
         true},
        {"set-alert-policy", "{\"verb\":\"set-alert-policy\",\"daily_limit\":2}", NULL, true},
    };
    start();
    /* m-r1 restricted (by hand), m-a1 active (one clean message). */
    feed("m-a1", "red", 0, 1);
    wait_state("m-a1", CONNREP_STATE_ACTIVE);
    expect("sa_all", "ok",
           "{\"verb\":\"block-connector\",\"connector_id\":\"m-r1\",\"reason\":\"setup\","
           "\"tenant\":\"red\"}");

    size_t sent[N_IDS] = {0};
    int a1_state = CONNREP_STATE_ACTIVE; /* probation once a change role blocked and removed it */
    for (size_t who = 0; who < N_GLOBAL; who++) {
        for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++) {
            const char *want = !verbs[v].change || ids[who].change ? "ok" : "forbidden";
            json_t *r = expect(ids[who].name, want, "%s", verbs[v].body);
            sent[who]++;
            expect_audited(ids[who].name, verbs[v].verb, verbs[v].target, want);
            if (strcmp(want, "forbidden") == 0) {
                /* The role is named, and nothing changed. */
                cr_assert(ne(ptr, strstr(message_of(r), ids[who].role), NULL), "%s", last_text);
                cr_assert(eq(int, state_of("m-r1"), CONNREP_STATE_RESTRICTED));
                cr_assert(eq(int, state_of("m-a1"), a1_state));
                json_t *p = expect("gr_all", "ok", "{\"verb\":\"get-alert-policy\"}");
                cr_assert(
                    eq(i64, json_integer_value(json_object_get(result_of(p), "daily_limit")), 3));
                continue;
            }
            /* Allowed changes took effect; put things back for the next. */
            if (strcmp(verbs[v].verb, "remove-blocked-connector") == 0) {
                cr_assert(eq(str, (char *)str_at(result_of(r), "state"), "probation"));
                cr_assert(eq(int, state_of("m-r1"), CONNREP_STATE_PROBATION));
                expect("sa_all", "ok",
                       "{\"verb\":\"block-connector\",\"connector_id\":\"m-r1\","
                       "\"reason\":\"again\"}");
            } else if (strcmp(verbs[v].verb, "block-connector") == 0) {
                cr_assert(eq(int, state_of("m-a1"), CONNREP_STATE_RESTRICTED));
                expect("sa_all", "ok",
                       "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"m-a1\"}");
                /* Probation: not restricted, as before. */
                a1_state = CONNREP_STATE_PROBATION;
                cr_assert(eq(int, state_of("m-a1"), a1_state));
            } else if (strcmp(verbs[v].verb, "set-alert-policy") == 0) {
                cr_assert(
                    eq(i64, json_integer_value(json_object_get(result_of(r), "daily_limit")), 2));
                expect("sa_all", "ok", "{\"verb\":\"set-alert-policy\",\"daily_limit\":3}");
            }
        }
    }

    /* Scoped identities within their own tenant: the same rule. */
    expect("gr_red", "ok", "{\"verb\":\"get-connector\",\"connector_id\":\"m-r1\"}");
    expect_audited("gr_red", "get-connector", "m-r1", "ok");
    expect("gr_red", "forbidden",
           "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"m-r1\"}");
    expect_audited("gr_red", "remove-blocked-connector", "m-r1", "forbidden");
    cr_assert(eq(int, state_of("m-r1"), CONNREP_STATE_RESTRICTED));
    expect("om_red", "ok", "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"m-r1\"}");
    cr_assert(eq(int, state_of("m-r1"), CONNREP_STATE_PROBATION));
    /* The alert policy is global: a scoped change role may not set it. */
    expect("om_red", "forbidden", "{\"verb\":\"set-alert-policy\",\"email\":false}");
    json_t *w = result_of(expect("sa_blue", "ok", "{\"verb\":\"whoami\"}"));
    cr_assert(eq(str, (char *)str_at(w, "tenant"), "blue"));
    cr_assert(is_true(json_object_get(w, "may_change")));
    char *verbs_text = json_dumps(json_object_get(w, "verbs"), JSON_COMPACT);
    cr_assert(eq(ptr, strstr(verbs_text, "set-alert-policy"), NULL), "%s", verbs_text);
    cr_assert(ne(ptr, strstr(verbs_text, "remove-blocked-connector"), NULL), "%s", verbs_text);
    free(verbs_text);

    /* search-audit-log finds every request of an identity, denied ones too. */
    for (size_t who = 0; who < N_GLOBAL; who++) {
        json_t *r = result_of(expect(
            "sa_all", "ok", "{\"verb\":\"search-audit-log\",\"actor\":\"%s\",\"limit\":1000}",
            ids[who].name));
        size_t requests = 0, i;
        json_t *e;
        json_array_foreach(json_object_get(r, "entries"), i, e)
        {
            if (strcmp(str_at(e, "kind"), "request") == 0)
                requests++;
        }
        /* sa_all and gr_all also made the set-up and reset requests. */
        if (strcmp(ids[who].name, "sa_all") != 0 && strcmp(ids[who].name, "gr_all") != 0)
            cr_assert(eq(sz, requests, sent[who]), "%s", ids[who].name);
        else
            cr_assert(ge(sz, requests, sent[who]), "%s", ids[who].name);
    }
    json_t *r = result_of(expect(
        "gr_all", "ok",
        "{\"verb\":\"search-audit-log\",\"actor\":\"vo_all\",\"action\":\"block-connector\"}"));
    cr_assert(eq(i64, json_integer_value(json_object_get(r, "count")), 1));
    cr_assert(eq(str, (char *)str_at(json_array_get(json_object_get(r, "entries"), 0), "result"),
                 "forbidden"));
}

/* ------------------------------------------------------------------------ */
/* Tenant scope                                                              */
/* ------------------------------------------------------------------------ */

/* A reply must not mention the other tenant's connector (unless the
 * caller named it), its tenant or anything about it. */
static void expect_no_leak(const char *what, bool id_named)
{
    if (!id_named)
        cr_assert(eq(ptr, strstr(last_text, "s-b1"), NULL), "%s leaks: %s", what, last_text);
    cr_assert(eq(ptr, strstr(last_text, "blue"), NULL), "%s leaks: %s", what, last_text);
    cr_assert(eq(ptr, strstr(last_text, "sending_limit"), NULL), "%s leaks: %s", what, last_text);
}

/* The request body of verb i (0 get-connector, 1 get-blocked-connector,
 * 2 remove-blocked-connector, 3 block-connector) naming connector id. */
static void naming_body(int i, const char *id, char *body, size_t cap)
{
    switch (i) {
    case 0:
        snprintf(body, cap, "{\"verb\":\"get-connector\",\"connector_id\":\"%s\"}", id);
        break;
    case 1:
        snprintf(body, cap, "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"%s\"}", id);
        break;
    case 2:
        snprintf(body, cap, "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"%s\"}", id);
        break;
    default:
        snprintf(body, cap,
                 "{\"verb\":\"block-connector\",\"connector_id\":\"%s\",\"reason\":\"x\"}", id);
        break;
    }
}

Test(admin_it, tenant_scope_hides_and_protects_other_tenants)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    /* s-b1 of tenant blue is restricted for a reason nothing of tenant red
     * has: too many recipients in an hour (one message to 20000). */
    crp_feed_event big = {
        .recipients = 20000, .id = "s-b1", .id_len = 4, .tenant = "blue", .tenant_len = 4};
    cr_assert(eq(int, crp_harness_feed(&H, 0, 0, &big, 1), 0));
    json_decref(expect_event("s-b1", "state.restricted"));
    restrict_by_rule("s-r1", "red");

    /* Every verb that names s-b1 answers as for a connector that does not
     * exist: not_found, the same message but for the id. */
    const char *scoped[] = {"om_red", "gr_red"};
    for (size_t k = 0; k < 2; k++) {
        for (int i = 0; i < 4; i++) {
            char body[256], msg_other[600], msg_unknown[600];
            naming_body(i, "s-b1", body, sizeof body);
            json_t *r = expect(scoped[k], "not_found", "%s", body);
            snprintf(msg_other, sizeof msg_other, "%s", message_of(r));
            expect_no_leak(body, true);
            char *at = strstr(msg_other, "s-b1");
            cr_assert(ne(ptr, at, NULL));
            memcpy(at, "s-zz", 4);
            /* Blocking an unknown id would create it: a read stands in. */
            naming_body(i == 3 ? 0 : i, "s-zz", body, sizeof body);
            r = expect(scoped[k], "not_found", "%s", body);
            snprintf(msg_unknown, sizeof msg_unknown, "%s", message_of(r));
            cr_assert(eq(str, msg_other, msg_unknown));
        }
    }
    /* Still restricted, by the engine's rule alone. */
    cr_assert(eq(int, state_of("s-b1"), CONNREP_STATE_RESTRICTED));
    json_t *d =
        result_of(expect("sa_all", "ok", "{\"verb\":\"get-connector\",\"connector_id\":\"s-b1\"}"));
    cr_assert(eq(str, (char *)json_string_value(json_array_get(json_object_get(d, "reasons"), 0)),
                 "sending_limit"));
    cr_assert(eq(sz, json_array_size(json_object_get(d, "reasons")), 1));

    /* Lists, audit search and stats show the own tenant only. */
    json_t *list = result_of(expect("om_red", "ok", "{\"verb\":\"get-blocked-connector\"}"));
    expect_no_leak("the list", false);
    cr_assert(eq(sz, json_array_size(list), 1));
    cr_assert(eq(str, (char *)str_at(json_array_get(list, 0), "connector_id"), "s-r1"));
    json_t *all = result_of(expect("gr_all", "ok", "{\"verb\":\"get-blocked-connector\"}"));
    cr_assert(ge(sz, json_array_size(all), 2)); /* plus the sync connectors */
    expect("gr_red", "ok", "{\"verb\":\"search-audit-log\",\"limit\":10000}");
    /* Their own requests that named s-b1 are there (in their tenant, as
     * the caller's scope); nothing the engine knows about it. */
    expect_no_leak("search-audit-log", true);
    json_t *st = result_of(expect("om_red", "ok", "{\"verb\":\"get-stats\"}"));
    expect_no_leak("get-stats", false);
    cr_assert(eq(str, (char *)str_at(st, "tenant"), "red"));
    cr_assert(eq(i64, json_integer_value(json_object_get(st, "restricted")), 1));
    cr_assert(eq(ptr, json_object_get(st, "engine"), NULL));

    /* A scoped identity blocks new connectors in its own tenant only. */
    expect("om_red", "forbidden",
           "{\"verb\":\"block-connector\",\"connector_id\":\"s-new\",\"reason\":\"x\","
           "\"tenant\":\"blue\"}");
    cr_assert(eq(int, state_of("s-new"), CONNREP_STATE_UNKNOWN));
    json_t *b = result_of(
        expect("om_red", "ok",
               "{\"verb\":\"block-connector\",\"connector_id\":\"s-new\",\"reason\":\"x\"}"));
    cr_assert(eq(str, (char *)str_at(b, "tenant"), "red"));
    cr_assert(eq(str, (char *)str_at(b, "previous_state"), "unknown"));
    /* The other side of the fence sees it not at all. */
    expect("sa_blue", "not_found", "{\"verb\":\"get-connector\",\"connector_id\":\"s-new\"}");
}

/* ------------------------------------------------------------------------ */
/* Authentication                                                            */
/* ------------------------------------------------------------------------ */

Test(admin_it, unknown_keys_and_plain_clients_are_refused)
{
    char pub[41], sec[41];
    start();
    cr_assert(eq(int, zmq_curve_keypair(pub, sec), 0));
    /* A key the config does not list: the handshake fails, no answer. */
    json_t *r = crp_harness_admin_keys(&H, pub, sec, "{\"verb\":\"whoami\"}", REFUSE_MS);
    cr_assert(eq(ptr, r, NULL), "an unknown key got an answer");
    /* No CURVE at all (NULL mechanism): refused the same way. */
    r = crp_harness_admin_keys(&H, NULL, NULL, "{\"verb\":\"whoami\"}", REFUSE_MS);
    cr_assert(eq(ptr, r, NULL), "a client without CURVE got an answer");

    /* The unknown key was refused by the ZAP handler: counted and audited
     * (a client without CURVE fails earlier, in libzmq's handshake, before
     * any handler is asked). A known key still works. */
    json_t *st = result_of(expect("gr_all", "ok", "{\"verb\":\"get-stats\"}"));
    cr_assert(ge(
        i64, json_integer_value(json_object_get(json_object_get(st, "admin"), "auth_refused")), 1));
    json_t *lines = audit_file(), *e;
    size_t i, refused = 0;
    bool unknown_key_named = false;
    json_array_foreach(lines, i, e)
    {
        if (strcmp(str_at(e, "verb"), "auth.refused") != 0)
            continue;
        refused++;
        unknown_key_named |= strcmp(str_at(json_object_get(e, "details"), "public_key"), pub) == 0;
    }
    json_decref(lines);
    cr_assert(ge(sz, refused, 1));
    cr_assert(unknown_key_named, "the refused key is not in the audit log");
    /* Nothing the refused clients sent was served: no request line. */
    json_t *l = last_request_line();
    cr_assert(eq(str, (char *)str_at(l, "actor"), "gr_all"));
    json_decref(l);
}

/* ------------------------------------------------------------------------ */
/* Audit                                                                     */
/* ------------------------------------------------------------------------ */

/* Requests of every outcome, each audited before its reply, and the
 * transitions they cause with their actor. */
Test(admin_it, every_request_leaves_its_audit_line)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    restrict_by_rule("a-1", "red");

    expect("gr_all", "ok", "{\"verb\":\"get-connector\",\"connector_id\":\"a-1\"}");
    expect_audited("gr_all", "get-connector", "a-1", "ok");
    expect("gr_all", "forbidden",
           "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"a-1\"}");
    expect_audited("gr_all", "remove-blocked-connector", "a-1", "forbidden");
    expect("sr_all", "not_found", "{\"verb\":\"get-connector\",\"connector_id\":\"a-none\"}");
    expect_audited("sr_all", "get-connector", "a-none", "not_found");
    expect("vo_all", "bad_request", "{\"verb\":\"get-connector\",\"connectorId\":\"a-1\"}");
    expect_audited("vo_all", "get-connector", NULL, "bad_request");
    expect("vo_all", "bad_request", "{\"verb\":\"no-such-verb\"}");
    expect_audited("vo_all", "no-such-verb", NULL, "bad_request");
    expect(
        "om_all", "ok",
        "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"a-1\",\"reason\":\"rotated\"}");
    expect_audited("om_all", "remove-blocked-connector", "a-1", "ok");
    expect("om_all", "conflict",
           "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"a-1\"}");
    expect_audited("om_all", "remove-blocked-connector", "a-1", "conflict");
    {
        /* Not JSON at all: audited with a null verb. */
        json_t *r = crp_harness_admin(&H, "sr_all", "not json", ADMIN_MS);
        cr_assert(ne(ptr, r, NULL));
        cr_assert(eq(str, (char *)code_of(r), "bad_request"));
        json_decref(r);
        json_t *l = last_request_line();
        cr_assert(eq(str, (char *)str_at(l, "actor"), "sr_all"));
        cr_assert(is_null(json_object_get(l, "verb")));
        cr_assert(eq(str, (char *)str_at(l, "result"), "bad_request"));
        json_decref(l);
    }
    json_t *u = expect_event("a-1", "state.unblocked");
    cr_assert(eq(str, (char *)str_at(u, "actor"), "om_all"));
    json_decref(u);

    /* The transitions are in the log with their actors, and search finds
     * them (newest first). */
    json_t *r = result_of(
        expect("gr_all", "ok",
               "{\"verb\":\"search-audit-log\",\"connector_id\":\"a-1\",\"action\":\"state.*\"}"));
    json_t *entries = json_object_get(r, "entries");
    cr_assert(eq(sz, json_array_size(entries), 2));
    json_t *unblocked = json_array_get(entries, 0), *restricted = json_array_get(entries, 1);
    cr_assert(eq(str, (char *)str_at(unblocked, "verb"), "state.unblocked"));
    cr_assert(eq(str, (char *)str_at(unblocked, "actor"), "om_all"));
    cr_assert(eq(str, (char *)str_at(unblocked, "reason"), "rotated"));
    cr_assert(eq(str, (char *)str_at(unblocked, "tenant"), "red"));
    cr_assert(eq(str, (char *)str_at(restricted, "verb"), "state.restricted"));
    cr_assert(eq(str, (char *)str_at(restricted, "actor"), "engine"));
    cr_assert(eq(sz, json_array_size(json_object_get(restricted, "evidence")), 6));
    /* search-audit-log itself is audited too. */
    expect_audited("gr_all", "search-audit-log", NULL, "ok");
}

/* ------------------------------------------------------------------------ */
/* Unblock                                                                   */
/* ------------------------------------------------------------------------ */

static connrep_client *open_client(bool shm)
{
    char ep[CRP_HARNESS_PATH_MAX + 16];
    if (shm)
        snprintf(ep, sizeof ep, "shm:%s", H.shm_name);
    else
        snprintf(ep, sizeof ep, "%s", H.lookup_ep);
    connrep_client *c = connrep_open(ep, 2000);
    cr_assert(ne(ptr, c, NULL), "connrep_open(%s)", ep);
    return c;
}

static int lookup_with(connrep_client *c, const char *id)
{
    connrep_result r;
    cr_assert(eq(int, connrep_lookup(c, id, strlen(id), &r), 0), "lookup %s", id);
    return r.state;
}

/* Restrict by rule, read the detail (evidence at block time), remove, and
 * look up at once on both paths; the event carries the actor. */
static void unblock_case(const char *id, int state_after, const char *state_name)
{
    connrep_client *zc = open_client(false), *sc = open_client(true);
    restrict_by_rule(id, "red");
    cr_assert(eq(int, lookup_with(zc, id), CONNREP_STATE_RESTRICTED));
    cr_assert(eq(int, lookup_with(sc, id), CONNREP_STATE_RESTRICTED));

    /* The detail: every rule now and at the restriction, and the advice. */
    char body[256];
    snprintf(body, sizeof body, "{\"verb\":\"get-blocked-connector\",\"connector_id\":\"%s\"}", id);
    json_t *d = result_of(expect("gr_all", "ok", "%s", body));
    cr_assert(eq(str, (char *)str_at(d, "state"), "restricted"));
    cr_assert(eq(str, (char *)str_at(d, "tenant"), "red"));
    cr_assert(eq(str, (char *)str_at(d, "restricted_by"), "engine"));
    cr_assert(ne(ptr, strstr(str_at(d, "advice"), "regain control"), NULL));
    cr_assert(ne(ptr, strstr(str_at(d, "unblock_command"), id), NULL));
    json_t *rules = json_object_get(d, "rules");
    cr_assert(eq(sz, json_array_size(rules), 6));
    json_t *malware = json_array_get(rules, 3);
    cr_assert(eq(str, (char *)str_at(malware, "rule"), "malware"));
    cr_assert(eq(dbl, json_number_value(json_object_get(malware, "value_at_block")), 1.0));
    cr_assert(eq(dbl, json_number_value(json_object_get(malware, "threshold_at_block")), 1.0));
    cr_assert(is_true(json_object_get(malware, "tripped_at_block")));
    cr_assert(eq(dbl, json_number_value(json_object_get(malware, "threshold")), 1.0));
    /* At the restriction the count was exactly 1; now it has decayed a
     * little (half_life 1h). */
    json_t *signals = json_object_get(d, "signals");
    cr_assert(epsilon_eq(dbl, json_number_value(json_object_get(signals, "messages")), 1.0, 1e-3));

    snprintf(body, sizeof body,
             "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"%s\",\"reason\":\"regained "
             "control\"}",
             id);
    json_t *r = result_of(expect("sa_all", "ok", "%s", body));
    /* Right after the reply, both paths say allowed: no wait, no retry. */
    cr_assert(eq(int, lookup_with(zc, id), state_after), "ZeroMQ lookup after the removal");
    cr_assert(eq(int, lookup_with(sc, id), state_after), "shared-memory lookup after the removal");
    cr_assert(eq(str, (char *)str_at(r, "state"), (char *)state_name));
    cr_assert(eq(str, (char *)str_at(r, "previous_state"), "restricted"));

    json_t *ev = expect_event(id, "state.unblocked");
    cr_assert(eq(str, (char *)str_at(ev, "actor"), "sa_all"));
    cr_assert(eq(str, (char *)str_at(ev, "comment"), "regained control"));
    cr_assert(eq(str, (char *)str_at(ev, "state"), (char *)state_name));
    cr_assert(eq(str, (char *)str_at(ev, "previous_state"), "restricted"));
    cr_assert(eq(str, (char *)str_at(ev, "tenant"), "red"));
    json_decref(ev);

    /* get-connector now: not restricted, no values at block time. */
    snprintf(body, sizeof body, "{\"verb\":\"get-connector\",\"connector_id\":\"%s\"}", id);
    d = result_of(expect("gr_all", "ok", "%s", body));
    cr_assert(eq(str, (char *)str_at(d, "state"), (char *)state_name));
    cr_assert(
        is_null(json_object_get(json_array_get(json_object_get(d, "rules"), 3), "value_at_block")));
    cr_assert(eq(ptr, json_object_get(d, "advice"), NULL));
    connrep_close(&zc);
    connrep_close(&sc);
}

Test(admin_it, remove_is_seen_by_the_next_lookup_on_both_paths_probation)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    unblock_case("u-1", CONNREP_STATE_PROBATION, "probation");
    /* In probation the malware threshold is halved (probation_factor). */
    json_t *d =
        result_of(expect("gr_all", "ok", "{\"verb\":\"get-connector\",\"connector_id\":\"u-1\"}"));
    cr_assert(eq(dbl,
                 json_number_value(
                     json_object_get(json_array_get(json_object_get(d, "rules"), 3), "threshold")),
                 0.5));
    cr_assert(ne(ptr, json_object_get(d, "probation_until"), NULL));
}

Test(admin_it, remove_is_seen_by_the_next_lookup_on_both_paths_no_probation)
{
    crp_harness_set(&H, "scoring", "probation", "0");
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    unblock_case("u-2", CONNREP_STATE_ACTIVE, "active");
}

/* ------------------------------------------------------------------------ */
/* Alerts                                                                    */
/* ------------------------------------------------------------------------ */

/* Room for a file name (NAME_MAX) and a path in the temp dir. */
#define NAME_CAP 256
#define PATH_CAP (CRP_HARNESS_PATH_MAX + 2 * NAME_CAP)

/* The files of the test notify_command about connector `id`, sorted. */
static size_t mails_about(const char *maildir, const char *id, char names[][NAME_CAP], size_t cap)
{
    DIR *d = opendir(maildir);
    size_t n = 0;
    struct dirent *de;
    char subject[128];
    snprintf(subject, sizeof subject, "Subject: Suspicious connector activity: %s ", id);
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "mail-", 5) != 0)
            continue;
        char path[PATH_CAP], text[16384] = "";
        snprintf(path, sizeof path, "%s/%s", maildir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(text, 1, sizeof text - 1, f);
        text[len] = '\0';
        fclose(f);
        if (strstr(text, subject) != NULL && n < cap)
            snprintf(names[n++], NAME_CAP, "%s", de->d_name);
    }
    if (d != NULL)
        closedir(d);
    for (size_t i = 1; i < n; i++) { /* insertion sort: a handful of names */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[NAME_CAP];
            memcpy(t, names[j], NAME_CAP);
            memcpy(names[j], names[j - 1], NAME_CAP);
            memcpy(names[j - 1], t, NAME_CAP);
        }
    }
    return n;
}

static void read_mail(const char *maildir, const char *name, char *text, size_t cap)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", maildir, name);
    FILE *f = fopen(path, "r");
    cr_assert(ne(ptr, f, NULL), "%s", path);
    size_t len = fread(text, 1, cap - 1, f);
    text[len] = '\0';
    fclose(f);
}

/* A header line of an RFC 5322 message (CRLF line ends), without the CRLF. */
static bool header_of(const char *msg, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *p = msg; p != NULL && *p != '\0';) {
        if (strncmp(p, "\r\n", 2) == 0)
            return false; /* end of the header */
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)len, v);
            return true;
        }
        p = strstr(p, "\r\n");
        if (p != NULL)
            p += 2;
    }
    return false;
}

/* Five restrictions of one connector in one UTC day: five alert events,
 * exactly daily_limit e-mails (the rest suppressed, counted and audited),
 * each an RFC 5322 message to the tenant's admins. A manual block raises
 * no alert. */
Test(admin_it, five_restrictions_give_daily_limit_emails)
{
    char maildir[CRP_HARNESS_PATH_MAX + 8], cmd[4 * CRP_HARNESS_PATH_MAX];
    snprintf(maildir, sizeof maildir, "%s/mail", H.dir);
    cr_assert(eq(int, mkdir(maildir, 0700), 0));
    /* Each message is written under a temporary name and renamed, so a
     * file named mail-* is always complete. */
    snprintf(cmd, sizeof cmd, "cat > %s/tmp.$$ && mv %s/tmp.$$ %s/mail-$$.eml", maildir, maildir,
             maildir);
    crp_harness_set(&H, "alerts", "enabled", "true");
    crp_harness_set(&H, "alerts", "email", "true");
    crp_harness_set(&H, "alerts", "recipients", "TenantAdmins");
    crp_harness_set(&H, "alerts", "daily_limit", "2");
    crp_harness_set(&H, "alerts", "notify_command", cmd);
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));

    const char *id = "alert-1";
    for (unsigned k = 1; k <= 5; k++) {
        /* The first trips the malware rule (1); later ones trip it in
         * probation, where the threshold is 0.5. */
        restrict_by_rule(id, "red");
        json_t *a = expect_event(id, "alert.suspicious-connector");
        cr_assert(eq(str, (char *)str_at(a, "policy"), "Suspicious connector activity"));
        cr_assert(eq(str, (char *)str_at(a, "tenant"), "red"));
        cr_assert(eq(str, (char *)str_at(a, "actor"), "engine"));
        cr_assert(eq(str,
                     (char *)json_string_value(json_array_get(json_object_get(a, "reasons"), 0)),
                     "malware"));
        cr_assert(eq(sz, json_array_size(json_object_get(a, "evidence")), 6));
        cr_assert(eq(i64, json_integer_value(json_object_get(a, "daily_limit")), 2));
        bool notified = json_is_true(json_object_get(a, "notified"));
        cr_assert(eq(int, notified, k <= 2), "restriction %u", k);
        cr_assert(eq(int, json_is_true(json_object_get(a, "suppressed")), k > 2), "restriction %u",
                  k);
        cr_assert(
            eq(i64, json_integer_value(json_object_get(a, "notifications_today")), k <= 2 ? k : 2));
        json_decref(a);
        expect("sa_all", "ok", "{\"verb\":\"remove-blocked-connector\",\"connector_id\":\"%s\"}",
               id);
        json_t *u = expect_event(id, "state.unblocked");
        json_decref(u);
    }

    /* The notify commands ran (the events thread reaps them). */
    uint64_t deadline = mono_ms() + EVENT_MS;
    char names[8][NAME_CAP];
    size_t n;
    json_t *alerts = NULL;
    for (;;) {
        n = mails_about(maildir, id, names, 8);
        json_t *st = result_of(expect("gr_all", "ok", "{\"verb\":\"get-stats\"}"));
        alerts = json_object_get(st, "alerts");
        if ((n >= 2 && json_integer_value(json_object_get(alerts, "running")) == 0) ||
            mono_ms() > deadline)
            break;
        pause_ms(20);
    }
    cr_assert(eq(sz, n, 2), "e-mails about %s", id);
    cr_assert(eq(i64, json_integer_value(json_object_get(alerts, "suppressed")), 3));
    cr_assert(eq(i64, json_integer_value(json_object_get(alerts, "command_failed")), 0));

    for (size_t i = 0; i < n; i++) {
        char msg[16384], v[512];
        read_mail(maildir, names[i], msg, sizeof msg);
        cr_assert(header_of(msg, "From", v, sizeof v));
        cr_assert(eq(str, (char *)(strncmp(v, "connrep@", 8) == 0 ? "connrep@" : v), "connrep@"));
        cr_assert(header_of(msg, "To", v, sizeof v));
        /* TenantAdmins of red: om_all (tenant *) and om_red, not the
         * other roles. */
        cr_assert(ne(ptr, strstr(v, "soc@example.com"), NULL), "To: %s", v);
        cr_assert(ne(ptr, strstr(v, "admin@red.example"), NULL), "To: %s", v);
        cr_assert(header_of(msg, "Date", v, sizeof v));
        cr_assert(ne(ptr, strstr(v, "+0000"), NULL), "Date: %s", v);
        cr_assert(header_of(msg, "Subject", v, sizeof v));
        cr_assert(eq(str, v, "Suspicious connector activity: alert-1 restricted"));
        cr_assert(header_of(msg, "Message-ID", v, sizeof v));
        cr_assert(eq(chr, v[0], '<'));
        cr_assert(ne(ptr, strchr(v, '@'), NULL));
        cr_assert(header_of(msg, "Auto-Submitted", v, sizeof v));
        const char *body = strstr(msg, "\r\n\r\n");
        cr_assert(ne(ptr, (void *)body, NULL), "no body");
        cr_assert(ne(ptr, strstr(body, "Connector:    alert-1"), NULL), "%s", body);
        cr_assert(ne(ptr, strstr(body, "Tenant:       red"), NULL), "%s", body);
        cr_assert(ne(ptr, strstr(body, "Reasons:      malware"), NULL), "%s", body);
        cr_assert(ne(ptr, strstr(body, "malware"), NULL));
        cr_assert(ne(ptr, strstr(body, "regain"), NULL), "%s", body);
        cr_assert(
            ne(ptr, strstr(body, "connrep remove-blocked-connector --connector-id alert-1"), NULL),
            "%s", body);
        cr_assert(ne(ptr, strstr(body, "of at most 2 for this connector today"), NULL), "%s", body);
    }
    /* One message is the first of the day, the other the second. */
    char m0[16384], m1[16384];
    read_mail(maildir, names[0], m0, sizeof m0);
    read_mail(maildir, names[1], m1, sizeof m1);
    bool first0 = strstr(m0, "notification 1 of at most 2") != NULL;
    cr_assert(ne(ptr, strstr(first0 ? m1 : m0, "notification 2 of at most 2"), NULL));

    /* The audit log has all five decisions. */
    json_t *r = result_of(expect("gr_all", "ok",
                                 "{\"verb\":\"search-audit-log\",\"connector_id\":\"%s\","
                                 "\"action\":\"alert.*\"}",
                                 id));
    size_t notified = 0, suppressed = 0, i;
    json_t *e;
    json_array_foreach(json_object_get(r, "entries"), i, e)
    {
        notified += strcmp(str_at(e, "result"), "notified") == 0;
        suppressed += strcmp(str_at(e, "result"), "suppressed") == 0;
    }
    cr_assert(eq(sz, notified, 2));
    cr_assert(eq(sz, suppressed, 3));

    /* A manual block: state.blocked with the identity as actor, and no
     * alert. The next restriction by a rule is the very next event. */
    expect("sa_all", "ok",
           "{\"verb\":\"block-connector\",\"connector_id\":\"alert-2\",\"reason\":\"stolen\","
           "\"tenant\":\"red\"}");
    crp_harness_event ev;
    cr_assert(eq(int, crp_harness_next_event(&H, EVENT_MS, &ev), 0));
    cr_assert(eq(str, ev.topic, "state.blocked"));
    cr_assert(eq(str, (char *)str_at(ev.body, "actor"), "sa_all"));
    cr_assert(eq(str, (char *)str_at(ev.body, "comment"), "stolen"));
    crp_harness_event_fini(&ev);
    feed("alert-3", "red", CRP_FEED_VERDICT_MALWARE, 1);
    cr_assert(eq(int, crp_harness_next_event(&H, EVENT_MS, &ev), 0));
    cr_assert(eq(str, ev.topic, "state.restricted"));
    cr_assert(eq(str, (char *)str_at(ev.body, "connector_id"), "alert-3"));
    crp_harness_event_fini(&ev);
    cr_assert(eq(int, crp_harness_next_event(&H, EVENT_MS, &ev), 0));
    cr_assert(eq(str, ev.topic, "alert.suspicious-connector"));
    cr_assert(eq(str, (char *)str_at(ev.body, "connector_id"), "alert-3"));
    crp_harness_event_fini(&ev);

    /* Stopping waits for the notify commands and exits cleanly. */
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
}

/* As the document says, alerts need the audit log: the config check
 * refuses the combination, and so does set-alert-policy. */
Test(admin_it, alerts_without_the_audit_log_are_refused)
{
    char out[16384], err[4096];
    crp_harness_set(&H, "audit", "enabled", "false");
    crp_harness_set(&H, "alerts", "enabled", "true");
    cr_assert(eq(int, crp_harness_write_config(&H), 0));
    const char *check[] = {"--config", H.config_path, "--check-config", NULL};
    cr_assert(eq(int, crp_harness_run(check, out, sizeof out, err, sizeof err), 2), "%s", out);
    cr_assert(ne(ptr, strstr(err, "alerts need the audit log"), NULL), "%s", err);
    cr_assert(ne(ptr, strstr(err, H.config_path), NULL), "the file is not named: %s", err);

    /* With both off the daemon runs; turning alerts on is refused. */
    crp_harness_set(&H, "alerts", "enabled", "false");
    cr_assert(eq(int, crp_harness_write_config(&H), 0));
    cr_assert(eq(int, crp_harness_run(check, out, sizeof out, err, sizeof err), 0), "%s", err);
    start();
    json_t *r = expect("sa_all", "conflict", "{\"verb\":\"set-alert-policy\",\"enabled\":true}");
    cr_assert(ne(ptr, strstr(message_of(r), "audit log"), NULL), "%s", last_text);
    json_t *p = result_of(expect("gr_all", "ok", "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(not(is_true(json_object_get(p, "enabled"))));
    /* Other edits of a disabled policy are fine; search has no log. */
    expect("sa_all", "ok", "{\"verb\":\"set-alert-policy\",\"email\":false}");
    expect("gr_all", "unavailable", "{\"verb\":\"search-audit-log\"}");
    char path[CRP_HARNESS_PATH_MAX + 16];
    struct stat st;
    snprintf(path, sizeof path, "%s/audit.log", H.state_dir);
    cr_assert(ne(int, stat(path, &st), 0), "an audit log was written while it is off");
}

/* SIGHUP: a changed [alerts] policy in the file is applied; an unchanged
 * file leaves an admin's edit alone. */
Test(admin_it, sighup_applies_the_files_alert_policy_only_when_it_changed)
{
    crp_harness_set(&H, "alerts", "enabled", "true");
    crp_harness_set(&H, "alerts", "daily_limit", "3");
    start();
    expect("sa_all", "ok", "{\"verb\":\"set-alert-policy\",\"daily_limit\":1}");
    cr_assert(eq(int, crp_harness_signal(&H, SIGHUP), 0));
    cr_assert(crp_harness_log_contains(&H, "SIGHUP: reloading", EVENT_MS));
    cr_assert(eq(i64, crp_harness_wait_stat(&H, "config_reloads", 1, EVENT_MS), 1));
    json_t *p = result_of(expect("gr_all", "ok", "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(eq(i64, json_integer_value(json_object_get(p, "daily_limit")), 1));

    crp_harness_set(&H, "alerts", "daily_limit", "2");
    cr_assert(eq(int, crp_harness_write_config(&H), 0));
    cr_assert(eq(int, crp_harness_signal(&H, SIGHUP), 0));
    cr_assert(eq(i64, crp_harness_wait_stat(&H, "config_reloads", 2, EVENT_MS), 2));
    cr_assert(crp_harness_log_contains(&H, "alert policy from the file", EVENT_MS));
    p = result_of(expect("gr_all", "ok", "{\"verb\":\"get-alert-policy\"}"));
    cr_assert(eq(i64, json_integer_value(json_object_get(p, "daily_limit")), 2));
}

/* ------------------------------------------------------------------------ */
/* The connrep CLI                                                           */
/* ------------------------------------------------------------------------ */

static char cli_out[65536], cli_err[8192];

static int cli(const char *who, const char *const *args)
{
    return crp_harness_run_cli(&H, who, args, cli_out, sizeof cli_out, cli_err, sizeof cli_err);
}

static json_t *cli_json(void)
{
    json_error_t e;
    json_t *j = json_loads(cli_out, JSON_DECODE_ANY, &e);
    cr_assert(ne(ptr, j, NULL), "not JSON: %s (%s)", cli_out, e.text);
    return j;
}

Test(admin_it, cli_against_the_daemon)
{
    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    restrict_by_rule("cli-1", "red");
    restrict_by_rule("cli-2", "red");

    /* whoami */
    const char *whoami[] = {"whoami", NULL};
    cr_assert(eq(int, cli("gr_all", whoami), 0), "%s", cli_err);
    cr_assert(ne(ptr, strstr(cli_out, "gr_all"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "GlobalReader"), NULL), "%s", cli_out);
    const char *whoami_json[] = {"--json", "whoami", NULL};
    cr_assert(eq(int, cli("sa_all", whoami_json), 0), "%s", cli_err);
    json_t *j = cli_json();
    cr_assert(eq(str, (char *)str_at(j, "name"), "sa_all"));
    cr_assert(eq(str, (char *)str_at(j, "role"), "SecurityAdministrator"));
    json_decref(j);

    /* The list, for people and for machines. */
    const char *list[] = {"get-blocked-connector", NULL};
    cr_assert(eq(int, cli("gr_red", list), 0), "%s", cli_err);
    cr_assert(ne(ptr, strstr(cli_out, "ConnectorId"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "cli-1"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "2 restricted connectors."), NULL), "%s", cli_out);
    const char *list_json[] = {"--json", "get-blocked-connector", NULL};
    cr_assert(eq(int, cli("gr_red", list_json), 0), "%s", cli_err);
    j = cli_json();
    cr_assert(is_array(j));
    cr_assert(eq(sz, json_array_size(j), 2));
    cr_assert(eq(str, (char *)str_at(json_array_get(j, 0), "connector_id"), "cli-1"));
    /* One malware message, decayed a little since (half_life 1h). */
    json_t *figures = json_object_get(json_array_get(j, 0), "figures");
    cr_assert(epsilon_eq(dbl, json_number_value(json_object_get(figures, "malware")), 1.0, 1e-3));
    json_decref(j);

    /* One connector in detail. */
    const char *get[] = {"get-connector", "--connector-id", "cli-1", NULL};
    cr_assert(eq(int, cli("sr_all", get), 0), "%s", cli_err);
    cr_assert(ne(ptr, strstr(cli_out, "AtBlock"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "malware"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "regain control"), NULL), "%s", cli_out);
    cr_assert(
        ne(ptr, strstr(cli_out, "connrep remove-blocked-connector --connector-id cli-1"), NULL),
        "%s", cli_out);
    const char *get_json[] = {"--json", "get-connector", "--connector-id", "cli-1", NULL};
    cr_assert(eq(int, cli("sr_all", get_json), 0), "%s", cli_err);
    j = cli_json();
    cr_assert(eq(str, (char *)str_at(j, "state"), "restricted"));
    cr_assert(eq(sz, json_array_size(json_object_get(j, "rules")), 6));
    json_decref(j);
    const char *get_none[] = {"get-connector", "--connector-id", "cli-none", NULL};
    cr_assert(eq(int, cli("sr_all", get_none), 1));
    cr_assert(ne(ptr, strstr(cli_err, "not_found"), NULL), "%s", cli_err);

    /* Removal: a read role is refused (exit 1), a change role unblocks. */
    const char *remove1[] = {"remove-blocked-connector",
                             "--connector-id",
                             "cli-1",
                             "--reason",
                             "credentials rotated",
                             NULL};
    cr_assert(eq(int, cli("gr_all", remove1), 1));
    cr_assert(ne(ptr, strstr(cli_err, "forbidden"), NULL), "%s", cli_err);
    cr_assert(eq(int, state_of("cli-1"), CONNREP_STATE_RESTRICTED));
    cr_assert(eq(int, cli("om_red", remove1), 0), "%s", cli_err);
    cr_assert(ne(ptr, strstr(cli_out, "Connector cli-1 is now probation."), NULL), "%s", cli_out);
    cr_assert(eq(int, state_of("cli-1"), CONNREP_STATE_PROBATION));
    cr_assert(eq(int, cli("om_red", remove1), 1));
    cr_assert(ne(ptr, strstr(cli_err, "conflict"), NULL), "%s", cli_err);
    const char *remove2[] = {"--json", "remove-blocked-connector", "--connector-id", "cli-2", NULL};
    cr_assert(eq(int, cli("sa_all", remove2), 0), "%s", cli_err);
    j = cli_json();
    cr_assert(eq(str, (char *)str_at(j, "state"), "probation"));
    cr_assert(eq(str, (char *)str_at(j, "actor"), "sa_all"));
    json_decref(j);
    json_t *ev = expect_event("cli-1", "state.unblocked");
    cr_assert(eq(str, (char *)str_at(ev, "actor"), "om_red"));
    json_decref(ev);

    /* The audit trail, as people read it. */
    const char *search[] = {"search-audit-log", "--connector-id", "cli-1", NULL};
    cr_assert(eq(int, cli("gr_all", search), 0), "%s", cli_err);
    cr_assert(ne(ptr, strstr(cli_out, "credentials rotated"), NULL), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_out, "state.unblocked"), NULL), "%s", cli_out);

    /* A key the engine does not know: no answer (exit 3). */
    char keyfile[CRP_HARNESS_PATH_MAX + 16];
    snprintf(keyfile, sizeof keyfile, "%s/stranger.key", H.dir);
    const char *keygen[] = {"keygen", "--out", keyfile, NULL};
    cr_assert(eq(int, cli(NULL, keygen), 0), "%s", cli_err);
    const char *stranger[] = {"--key", keyfile, "--timeout", "500", "whoami", NULL};
    cr_assert(eq(int, cli(NULL, stranger), 3), "%s", cli_out);
    cr_assert(ne(ptr, strstr(cli_err, "no answer"), NULL), "%s", cli_err);

    /* A clean stop with the admin server, alerts and audit log: exit 0
     * (a sanitizer's report would change it), socket file removed. */
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
    struct stat st;
    cr_assert(ne(int, stat(H.admin_path, &st), 0), "the admin socket file is left behind");
}
