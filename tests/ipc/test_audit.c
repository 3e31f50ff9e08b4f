/* Criterion suite for ipc/audit.c: the line format, every search filter,
 * since/until (absolute and relative), limit and newest-first order, the
 * tenant scope of a search, a disabled log, and a torn last line. Each test
 * gets a fresh mkdtemp directory and a fake clock. */
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
#include <unistd.h>

#include "crp/audit.h"

static char tmpdir[64];
static char logpath[128];
static uint64_t fake_now;
static crp_audit *audit;

/* Criterion's cr_assert cannot take jansson's type macros directly (they
 * expand to a parenthesized expression); these wrap them. */
static bool is_array(const json_t *j)
{
    return json_is_array(j);
}

static bool is_object(const json_t *j)
{
    return json_is_object(j);
}

static bool is_true(const json_t *j)
{
    return json_is_true(j);
}

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/crp_audit_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(logpath, sizeof(logpath), "%s/state/%s", tmpdir, CRP_AUDIT_FILE);
    fake_now = 1714564800000ull; /* 2024-05-01T12:00:00.000Z */
    audit = NULL;
}

static void teardown(void)
{
    crp_audit_destroy(&audit);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(audit, .init = setup, .fini = teardown, .timeout = 20);

static void open_audit(bool enabled)
{
    char state[96], err[256] = "";
    crp_audit_opts o = {.enabled = enabled, .no_sync = false, .clock_ms = fake_clock};

    snprintf(state, sizeof(state), "%s/state", tmpdir);
    o.state_dir = state;
    cr_assert(eq(int, crp_audit_create(&audit, &o, err, sizeof(err)), CRP_OK), "%s", err);
}

static void req_line(const char *actor, const char *tenant, const char *verb, const char *target,
                     const char *result)
{
    crp_audit_request r = {.actor = actor,
                           .role = "SecurityAdministrator",
                           .scope = "*",
                           .tenant = tenant,
                           .verb = verb,
                           .target = target,
                           .result = result};
    cr_assert(eq(int, crp_audit_request_line(audit, &r), CRP_OK));
}

static json_t *search(const crp_audit_query *q, bool *more)
{
    json_t *out = NULL;
    cr_assert(eq(int, crp_audit_search(audit, q, &out, more), CRP_OK));
    cr_assert(is_array(out));
    return out;
}

static const char *sget(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "(null)";
}

/* Ten request lines one minute apart: actor a0/a1 alternating, target
 * conn-0..conn-4 twice, tenants red (even) and blue (odd). */
static void write_ten(void)
{
    for (int i = 0; i < 10; i++) {
        char actor[8], target[16];
        snprintf(actor, sizeof(actor), "a%d", i % 2);
        snprintf(target, sizeof(target), "conn-%d", i % 5);
        req_line(actor, i % 2 ? "blue" : "red", i < 5 ? "get-connector" : "block-connector", target,
                 i == 9 ? "forbidden" : "ok");
        fake_now += 60000;
    }
}

Test(audit, lines_are_json_with_every_field_and_time_first)
{
    FILE *f;
    char line[4096];
    struct stat st;
    json_t *o;

    open_audit(true);
    req_line("alice", "red", "remove-blocked-connector", "conn-1", "ok");
    cr_assert(eq(int, stat(logpath, &st), 0));
    cr_assert(eq(u32, (unsigned)(st.st_mode & 0777), 0600u));
    f = fopen(logpath, "r");
    cr_assert(f != NULL);
    cr_assert(fgets(line, sizeof(line), f) != NULL);
    cr_assert(eq(int, strncmp(line, "{\"time\":\"2024-05-01T12:00:00.000Z\"", 34), 0), "%s", line);
    o = json_loads(line, 0, NULL);
    cr_assert(is_object(o));
    cr_assert(eq(str, (char *)sget(o, "kind"), "request"));
    cr_assert(eq(str, (char *)sget(o, "actor"), "alice"));
    cr_assert(eq(str, (char *)sget(o, "role"), "SecurityAdministrator"));
    cr_assert(eq(str, (char *)sget(o, "tenant"), "red"));
    cr_assert(eq(str, (char *)sget(o, "verb"), "remove-blocked-connector"));
    cr_assert(eq(str, (char *)sget(o, "target"), "conn-1"));
    cr_assert(eq(str, (char *)sget(o, "result"), "ok"));
    json_decref(o);
    cr_assert(fgets(line, sizeof(line), f) == NULL);
    fclose(f);
}

Test(audit, transition_line_carries_evidence)
{
    crp_transition tr = {.at_ms = fake_now - 1000,
                         .kind = CRP_TR_RESTRICTED,
                         .from = CRP_STATE_ACTIVE,
                         .to = CRP_STATE_RESTRICTED,
                         .reasons = CRP_REASON_SPAM_RATIO | CRP_REASON_MALWARE,
                         .n_evidence = 2};
    crp_audit_transition t = {
        .connector_id = "conn\xff-x", .id_len = 7, .tenant = "red", .tenant_len = 3, .tr = &tr};
    crp_audit_query q = {.any_tenant = true, .action = "state.restricted"};
    json_t *out, *o, *ev;

    tr.evidence[0] =
        (crp_rule_eval){.name = "spam_ratio", .value = 0.8, .threshold = 0.5, .tripped = true};
    tr.evidence[1] =
        (crp_rule_eval){.name = "malware", .value = 4, .threshold = 3, .tripped = true};
    open_audit(true);
    cr_assert(eq(int, crp_audit_transition_line(audit, &t), CRP_OK));
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 1));
    o = json_array_get(out, 0);
    cr_assert(eq(str, (char *)sget(o, "kind"), "transition"));
    cr_assert(eq(str, (char *)sget(o, "actor"), "engine"));
    /* A byte that is not UTF-8 is kept readable, not dropped. */
    cr_assert(eq(str, (char *)sget(o, "target"), "conn\\xff-x"));
    cr_assert(eq(str, (char *)sget(o, "from"), "active"));
    cr_assert(eq(str, (char *)sget(o, "to"), "restricted"));
    cr_assert(eq(str, (char *)sget(o, "since"), "2024-05-01T11:59:59.000Z"));
    cr_assert(eq(str, (char *)json_string_value(json_array_get(json_object_get(o, "reasons"), 1)),
                 "malware"));
    ev = json_object_get(o, "evidence");
    cr_assert(eq(sz, json_array_size(ev), 2));
    cr_assert(eq(str, (char *)sget(json_array_get(ev, 0), "rule"), "spam_ratio"));
    cr_assert(eq(dbl, json_real_value(json_object_get(json_array_get(ev, 0), "value")), 0.8));
    cr_assert(is_true(json_object_get(json_array_get(ev, 1), "tripped")));
    json_decref(out);
}

/* Deferred lines are written at once (a search sees them) and counted;
 * crp_audit_sync is their group commit. */
Test(audit, deferred_transition_lines_and_group_sync)
{
    crp_transition tr = {.at_ms = fake_now,
                         .kind = CRP_TR_UNBLOCKED,
                         .from = CRP_STATE_RESTRICTED,
                         .to = CRP_STATE_PROBATION};
    crp_audit_query q = {.any_tenant = true, .action = "state.unblocked"};
    crp_audit_stats st;
    json_t *out;

    open_audit(true);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "c-%d", i);
        crp_audit_transition t = {
            .connector_id = id, .id_len = strlen(id), .tr = &tr, .defer_sync = true};
        cr_assert(eq(int, crp_audit_transition_line(audit, &t), CRP_OK));
    }
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 5));
    json_decref(out);
    cr_assert(eq(int, crp_audit_sync(audit), CRP_OK));
    crp_audit_stats_get(audit, &st);
    cr_assert(eq(u64, st.lines, 5));
    cr_assert(eq(u64, st.errors, 0));
    cr_assert(crp_audit_healthy(audit));
}

Test(audit, newest_first_with_default_limit)
{
    crp_audit_query q = {.any_tenant = true};
    bool more = true;
    json_t *out;

    open_audit(true);
    write_ten();
    out = search(&q, &more);
    cr_assert(eq(sz, json_array_size(out), 10));
    cr_assert(not(more));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "time"), "2024-05-01T12:09:00.000Z"));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 9), "time"), "2024-05-01T12:00:00.000Z"));
    json_decref(out);
}

Test(audit, limit_keeps_the_newest_and_says_more)
{
    crp_audit_query q = {.any_tenant = true, .limit = 3};
    bool more = false;
    json_t *out;

    open_audit(true);
    write_ten();
    out = search(&q, &more);
    cr_assert(eq(sz, json_array_size(out), 3));
    cr_assert(more);
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "time"), "2024-05-01T12:09:00.000Z"));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 2), "time"), "2024-05-01T12:07:00.000Z"));
    json_decref(out);
    q.limit = CRP_AUDIT_LIMIT_MAX + 1;
    out = (json_t *)1;
    cr_assert(eq(int, crp_audit_search(audit, &q, &out, NULL), CRP_INVAL));
}

Test(audit, filter_by_connector_actor_and_action)
{
    crp_audit_query q = {.any_tenant = true, .connector_id = "conn-3"};
    json_t *out;

    open_audit(true);
    write_ten();
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 2)); /* i = 3 and 8 */
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "verb"), "block-connector"));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 1), "verb"), "get-connector"));
    json_decref(out);

    q = (crp_audit_query){.any_tenant = true, .actor = "a1"};
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 5));
    for (size_t i = 0; i < 5; i++)
        cr_assert(eq(str, (char *)sget(json_array_get(out, i), "actor"), "a1"));
    json_decref(out);

    q = (crp_audit_query){.any_tenant = true, .action = "block-connector", .actor = "a0"};
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 2)); /* i = 6, 8 */
    json_decref(out);

    q = (crp_audit_query){.any_tenant = true, .action = "block-*"};
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 5));
    json_decref(out);

    q = (crp_audit_query){.any_tenant = true, .connector_id = "conn-9"};
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 0));
    json_decref(out);
}

Test(audit, since_and_until_bound_the_time)
{
    crp_audit_query q = {.any_tenant = true};
    uint64_t t;
    json_t *out;

    open_audit(true);
    write_ten(); /* 12:00 .. 12:09; fake_now is 12:10 afterwards */
    cr_assert(eq(int, crp_time_parse("2024-05-01T12:03:00Z", fake_now, &q.since_ms), CRP_OK));
    cr_assert(eq(int, crp_time_parse("2024-05-01T14:05:00+02:00", fake_now, &q.until_ms), CRP_OK));
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 3)); /* 12:03, 12:04, 12:05 inclusive */
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "time"), "2024-05-01T12:05:00.000Z"));
    json_decref(out);

    /* Relative: "4m" is now - 4 minutes = 12:06. */
    q = (crp_audit_query){.any_tenant = true};
    cr_assert(eq(int, crp_time_parse("4m", fake_now, &q.since_ms), CRP_OK));
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 4));
    json_decref(out);

    cr_assert(eq(int, crp_time_parse("2024-05-01", 0, &t), CRP_OK));
    cr_assert(eq(u64, t, 1714521600000ull));
    cr_assert(eq(int, crp_time_parse("2024-05-01T12:00:00.5Z", 0, &t), CRP_OK));
    cr_assert(eq(u64, t, 1714564800500ull));
    cr_assert(eq(int, crp_time_parse("24h", 100000000ull, &t), CRP_OK));
    cr_assert(eq(u64, t, 100000000ull - 86400000ull));
    cr_assert(eq(int, crp_time_parse("yesterday", 0, &t), CRP_INVAL));
    cr_assert(eq(int, crp_time_parse("2024-02-30", 0, &t), CRP_INVAL));
    cr_assert(eq(int, crp_time_parse("2024-05-01T12:00:00", 0, &t), CRP_INVAL));
    cr_assert(eq(int, crp_time_parse("", 0, &t), CRP_INVAL));
}

Test(audit, tenant_scoped_search_sees_only_its_tenant)
{
    crp_audit_query q = {.any_tenant = false, .tenant = "blue"};
    json_t *out;

    open_audit(true);
    write_ten();
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 5));
    for (size_t i = 0; i < 5; i++)
        cr_assert(eq(str, (char *)sget(json_array_get(out, i), "tenant"), "blue"));
    json_decref(out);
}

Test(audit, disabled_writes_nothing)
{
    crp_audit_query q = {.any_tenant = true};
    struct stat st;
    json_t *out;

    open_audit(false);
    cr_assert(not(crp_audit_enabled(audit)));
    req_line("alice", "red", "whoami", NULL, "ok");
    cr_assert(eq(int, stat(logpath, &st), -1));
    cr_assert(eq(int, errno, ENOENT));
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 0));
    json_decref(out);
}

Test(audit, torn_last_line_is_skipped_and_repaired)
{
    crp_audit_query q = {.any_tenant = true};
    json_t *out;
    int fd;

    open_audit(true);
    req_line("alice", "red", "whoami", NULL, "ok");
    req_line("bob", "red", "whoami", NULL, "ok");
    /* A crash in the middle of a write leaves half a line. */
    fd = open(logpath, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0);
    cr_assert(
        eq(int, (int)write(fd, "{\"time\":\"2024-05-01T12:00:01.000Z\",\"actor\":\"car", 48), 48));
    close(fd);
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 2));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "actor"), "bob"));
    json_decref(out);

    /* Reopening terminates the fragment, so the next line stays whole. */
    crp_audit_destroy(&audit);
    open_audit(true);
    req_line("dave", "red", "whoami", NULL, "ok");
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 3));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "actor"), "dave"));
    json_decref(out);
}

Test(audit, garbage_and_long_lines_are_skipped)
{
    crp_audit_query q = {.any_tenant = true};
    char *big;
    json_t *out;
    int fd;

    open_audit(true);
    req_line("alice", "red", "whoami", NULL, "ok");
    fd = open(logpath, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0);
    cr_assert(eq(int, (int)write(fd, "not json\n[1,2]\n", 15), 15));
    big = malloc(CRP_AUDIT_LINE_MAX * 2);
    memset(big, 'x', CRP_AUDIT_LINE_MAX * 2);
    big[CRP_AUDIT_LINE_MAX * 2 - 1] = '\n';
    cr_assert(eq(int, (int)write(fd, big, CRP_AUDIT_LINE_MAX * 2), (int)CRP_AUDIT_LINE_MAX * 2));
    free(big);
    close(fd);
    req_line("bob", "red", "whoami", NULL, "ok");
    out = search(&q, NULL);
    cr_assert(eq(sz, json_array_size(out), 2));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 0), "actor"), "bob"));
    cr_assert(eq(str, (char *)sget(json_array_get(out, 1), "actor"), "alice"));
    json_decref(out);
}

Test(audit, json_bytes_escapes_what_is_not_utf8)
{
    json_t *j = crp_json_bytes("a\xc3\xa9z", 4);
    cr_assert(eq(str, (char *)json_string_value(j), "a\xc3\xa9z"));
    json_decref(j);
    j = crp_json_bytes("a\x00z\xc3", 4);
    cr_assert(eq(str, (char *)json_string_value(j), "a\\x00z\\xc3"));
    json_decref(j);
}
