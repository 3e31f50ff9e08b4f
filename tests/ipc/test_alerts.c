/* Criterion suite for ipc/alerts.c: the daily notification limit per
 * connector and UTC day, the RFC 5322 message a real notify_command gets
 * on its stdin (written to numbered files and parsed here), TenantAdmins
 * resolution by tenant scope, email off / policy off, the audit lines of
 * each decision, a failing notify command, and the rule that alerts need
 * the audit log. Each test has its own temp dir and config file. */
#define _XOPEN_SOURCE 700 /* nftw */
#define _DEFAULT_SOURCE

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/alerts.h"
#include "crp/audit.h"

#define DAY_MS 86400000ull
/* 2024-05-01T10:00:00Z, a Wednesday. */
#define T0 1714557600000ull

static char tmpdir[64];
static char maildir[128];
static crp_config cfg;
static crp_audit *audit;
static crp_alerts *alerts;
static crp_rule_eval evidence[2];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    strcpy(tmpdir, "/tmp/crp_alerts_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(maildir, sizeof(maildir), "%s/mail", tmpdir);
    cr_assert(eq(int, mkdir(maildir, 0700), 0));
    crp_config_defaults(&cfg);
    audit = NULL;
    alerts = NULL;
    evidence[0] =
        (crp_rule_eval){.name = "spam_ratio", .value = 0.75, .threshold = 0.5, .tripped = true};
    evidence[1] = (crp_rule_eval){.name = "malware", .value = 1, .threshold = 3, .tripped = false};
}

static void teardown(void)
{
    crp_alerts_destroy(&alerts);
    crp_audit_destroy(&audit);
    crp_config_fini(&cfg);
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(alerts, .init = setup, .fini = teardown, .timeout = 30);

/* Writes and loads a config: `extra` goes into [alerts]; `audit_on` sets
 * [audit] enabled. Identities: a tenant-wide OrganizationManagement admin,
 * one per tenant red and blue, one without e-mail, and a
 * SecurityAdministrator (never a TenantAdmins recipient). */
static void load_config(const char *extra, bool audit_on)
{
    char path[128], err[512], pub[41], sec[41];
    static const char *const ids[][4] = {
        {"om-all", "OrganizationManagement", "*", "all@example.com"},
        {"om-red", "OrganizationManagement", "red", "red@example.com"},
        {"om-blue", "OrganizationManagement", "blue", "blue@example.com"},
        {"om-quiet", "OrganizationManagement", "red", ""},
        {"sa-all", "SecurityAdministrator", "*", "sa@example.com"},
        {"om-red2", "OrganizationManagement", "red", "red2@example.com"},
    };
    FILE *f;

    snprintf(path, sizeof(path), "%s/connrep.conf", tmpdir);
    f = fopen(path, "w");
    cr_assert(f != NULL);
    fprintf(f, "[engine]\nstate_dir = %s/state\n\n[alerts]\n%s\n\n[audit]\nenabled = %s\n", tmpdir,
            extra, audit_on ? "true" : "false");
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        cr_assert(eq(int, zmq_curve_keypair(pub, sec), 0));
        fprintf(f, "\n[identity %s]\npublic_key = %s\nrole = %s\ntenant = %s\n", ids[i][0], pub,
                ids[i][1], ids[i][2]);
        if (ids[i][3][0] != '\0')
            fprintf(f, "email = %s\n", ids[i][3]);
    }
    fclose(f);
    cr_assert(eq(int, crp_config_load(&cfg, path, err, sizeof(err)), CRP_OK), "%s", err);
}

/* The notify command of the tests: each message goes to the next free
 * mail/msg.N file. The ';' are glued to the word before them, so the
 * config parser does not take them for comments. */
static void notify_config(char *buf, size_t size, const char *more)
{
    snprintf(buf, size,
             "notify_command = i=0;while [ -e %s/msg.$i ];do i=$((i+1));done;cat > %s/msg.$i\n%s",
             maildir, maildir, more);
}

static void start(const char *alerts_extra, bool audit_on)
{
    char err[512] = "";

    load_config(alerts_extra, audit_on);
    cr_assert(eq(int, crp_audit_create_from_config(&audit, &cfg, err, sizeof(err)), CRP_OK), "%s",
              err);
    cr_assert(eq(int, crp_alerts_create(&alerts, &cfg, audit, err, sizeof(err)), CRP_OK), "%s",
              err);
}

static crp_alert_info info_for(const char *id, const char *tenant)
{
    return (crp_alert_info){.connector_id = id,
                            .id_len = strlen(id),
                            .tenant = tenant,
                            .tenant_len = strlen(tenant),
                            .reasons = CRP_REASON_SPAM_RATIO,
                            .since_ms = T0 - 5000,
                            .evidence = evidence,
                            .n_evidence = 2};
}

/* One restriction, then wait for its notify command: the numbered-file
 * command of the tests must not run twice at once. */
static void restrict_once(const crp_alert_info *in, uint64_t now, crp_alert_decision *d)
{
    cr_assert(eq(int, crp_alerts_on_restriction(alerts, in, now, d), CRP_OK));
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
}

static int count_mail(void)
{
    char path[192];
    int n = 0;

    for (;; n++) {
        snprintf(path, sizeof(path), "%s/msg.%d", maildir, n);
        if (access(path, F_OK) != 0)
            return n;
    }
}

static char *read_mail(int n)
{
    char path[192];
    FILE *f;
    char *buf = calloc(1, 65536);
    size_t len;

    snprintf(path, sizeof(path), "%s/msg.%d", maildir, n);
    f = fopen(path, "r");
    cr_assert(f != NULL, "no %s", path);
    len = fread(buf, 1, 65535, f);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* The value of a header (up to its CRLF), or "" when absent. */
static void header(const char *msg, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    const char *p = msg, *end = strstr(msg, "\r\n\r\n");

    out[0] = '\0';
    for (; p != NULL && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == ':' && p[n + 1] == ' ') {
            const char *e = strstr(p, "\r\n");
            snprintf(out, size, "%.*s", (int)(e - p - n - 2), p + n + 2);
            return;
        }
    }
}

static bool has(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static json_t *audit_lines(const char *result)
{
    crp_audit_query q = {.any_tenant = true, .action = "alert.suspicious-connector"};
    json_t *all = NULL, *out = json_array(), *e;
    size_t i;

    cr_assert(eq(int, crp_audit_search(audit, &q, &all, NULL), CRP_OK));
    json_array_foreach(all, i, e)
    {
        if (result == NULL || strcmp(json_string_value(json_object_get(e, "result")), result) == 0)
            json_array_append(out, e);
    }
    json_decref(all);
    return out;
}

Test(alerts, five_restrictions_in_a_day_give_daily_limit_emails)
{
    char extra[1024], v[512], host[256] = "", want[512];
    crp_alert_info in = info_for("conn-7f0c", "red");
    crp_alert_decision d;
    json_t *lines;
    crp_alerts_stats st;
    char ids[3][512];

    notify_config(extra, sizeof(extra), "");
    start(extra, true);
    for (int i = 0; i < 5; i++) {
        cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0 + (uint64_t)i * 3600000, &d),
                     CRP_OK));
        cr_assert(d.publish);
        cr_assert(eq(int, d.notify, i < 3));
        cr_assert(eq(int, d.suppressed, i >= 3));
        cr_assert(eq(u32, d.notifications_today, i < 3 ? (unsigned)i + 1 : 3u));
        cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    }
    cr_assert(eq(int, count_mail(), 3));

    gethostname(host, sizeof(host) - 1);
    for (int n = 0; n < 3; n++) {
        char *m = read_mail(n);
        header(m, "From", v, sizeof(v));
        snprintf(want, sizeof(want), "connrep@%s", host);
        cr_assert(eq(str, v, want));
        header(m, "To", v, sizeof(v));
        cr_assert(eq(str, v, "all@example.com, red@example.com, red2@example.com"));
        header(m, "Date", v, sizeof(v));
        /* 10:00 + n hours on Wednesday 1 May 2024, RFC 5322 form. */
        snprintf(want, sizeof(want), "Wed, 01 May 2024 %02d:00:00 +0000", 10 + n);
        cr_assert(eq(str, v, want));
        header(m, "Subject", v, sizeof(v));
        cr_assert(eq(str, v, "Suspicious connector activity: conn-7f0c restricted"));
        header(m, "Message-ID", v, sizeof(v));
        cr_assert(v[0] == '<' && v[strlen(v) - 1] == '>' && has(v, "@"), "%s", v);
        snprintf(ids[n], sizeof(ids[n]), "%s", v);
        header(m, "MIME-Version", v, sizeof(v));
        cr_assert(eq(str, v, "1.0"));
        header(m, "Content-Type", v, sizeof(v));
        cr_assert(eq(str, v, "text/plain; charset=utf-8"));
        cr_assert(has(m, "\r\nConnector:    conn-7f0c\r\n"));
        cr_assert(has(m, "\r\nTenant:       red\r\n"));
        cr_assert(has(m, "\r\nReasons:      spam_ratio\r\n"));
        cr_assert(has(m, "\r\nRestricted:   2024-05-01T09:59:55.000Z\r\n"));
        cr_assert(has(m, "spam_ratio"), "%s", m);
        cr_assert(has(m, "0.7500") && has(m, "0.5000") && has(m, "yes"));
        cr_assert(has(m, "connrep remove-blocked-connector --connector-id conn-7f0c\r\n"));
        cr_assert(has(m, "regain"));
        snprintf(want, sizeof(want), "notification %d of at most 3", n + 1);
        cr_assert(has(m, want));
        /* Every line ends with CRLF: no bare LF anywhere. */
        for (const char *p = m; (p = strchr(p, '\n')) != NULL; p++)
            cr_assert(p > m && p[-1] == '\r');
        free(m);
    }
    cr_assert(strcmp(ids[0], ids[1]) != 0 && strcmp(ids[1], ids[2]) != 0);

    lines = audit_lines("notified");
    cr_assert(eq(sz, json_array_size(lines), 3));
    json_decref(lines);
    lines = audit_lines("suppressed");
    cr_assert(eq(sz, json_array_size(lines), 2));
    cr_assert(eq(str,
                 (char *)json_string_value(json_object_get(json_array_get(lines, 0), "target")),
                 "conn-7f0c"));
    json_decref(lines);
    crp_alerts_stats_get(alerts, &st);
    cr_assert(eq(u64, st.notified, 3));
    cr_assert(eq(u64, st.suppressed, 2));
    cr_assert(eq(u64, st.command_ok, 3));
}

Test(alerts, lower_daily_limit_and_other_connectors_count_apart)
{
    char extra[1024];
    crp_alert_info a = info_for("conn-a", "red"), b = info_for("conn-b", "blue");
    crp_alert_decision d;

    notify_config(extra, sizeof(extra), "daily_limit = 1\n");
    start(extra, true);
    for (int i = 0; i < 3; i++) {
        restrict_once(&a, T0 + (uint64_t)i, &d);
        cr_assert(eq(int, d.notify, i == 0));
        restrict_once(&b, T0 + (uint64_t)i, &d);
        cr_assert(eq(int, d.notify, i == 0));
    }
    cr_assert(eq(int, count_mail(), 2));
}

Test(alerts, a_new_utc_day_resets_the_count)
{
    char extra[1024];
    crp_alert_info in = info_for("conn-day", "blue");
    crp_alert_decision d;
    /* 23:30 UTC on day 1. */
    uint64_t late = (T0 / DAY_MS) * DAY_MS + DAY_MS - 1800000;

    notify_config(extra, sizeof(extra), "");
    start(extra, true);
    for (int i = 0; i < 4; i++) {
        restrict_once(&in, late + (uint64_t)i * 60000, &d);
        cr_assert(eq(int, d.notify, i < 3));
    }
    /* 00:01 UTC the next day: a fresh allowance. */
    restrict_once(&in, late + 1860000, &d);
    cr_assert(d.notify);
    cr_assert(eq(u32, d.notifications_today, 1u));
    /* And two days later the old days are gone, not just ignored. */
    for (int i = 0; i < 3; i++) {
        restrict_once(&in, late + 3 * DAY_MS + (uint64_t)i, &d);
        cr_assert(d.notify);
    }
    restrict_once(&in, late + 3 * DAY_MS + 10, &d);
    cr_assert(d.suppressed);
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    cr_assert(eq(int, count_mail(), 7));
}

Test(alerts, tenant_admins_resolve_by_scope)
{
    char *r;
    size_t n;
    crp_alert_policy p;
    char why[256];

    start("", true);
    r = crp_alerts_recipients(alerts, "red", 3, &n);
    cr_assert(eq(str, r, "all@example.com, red@example.com, red2@example.com"));
    cr_assert(eq(sz, n, 3));
    free(r);
    r = crp_alerts_recipients(alerts, "blue", 4, &n);
    cr_assert(eq(str, r, "all@example.com, blue@example.com"));
    free(r);
    r = crp_alerts_recipients(alerts, "green", 5, &n);
    cr_assert(eq(str, r, "all@example.com"));
    cr_assert(eq(sz, n, 1));
    free(r);
    r = crp_alerts_recipients(alerts, "", 0, &n);
    cr_assert(eq(str, r, "all@example.com"));
    free(r);

    /* An explicit list replaces TenantAdmins, whatever the tenant. */
    crp_alerts_get_policy(alerts, &p);
    snprintf(p.recipients, sizeof(p.recipients), " soc@example.com ,  noc@example.org");
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_OK), "%s", why);
    crp_alerts_get_policy(alerts, &p);
    cr_assert(eq(str, p.recipients, "soc@example.com,noc@example.org"));
    r = crp_alerts_recipients(alerts, "red", 3, &n);
    cr_assert(eq(str, r, "soc@example.com, noc@example.org"));
    cr_assert(eq(sz, n, 2));
    free(r);
}

Test(alerts, email_off_sends_nothing_but_still_publishes)
{
    char extra[1024];
    crp_alert_info in = info_for("conn-x", "red");
    crp_alert_decision d;
    json_t *lines;
    char *ev;
    json_t *o;

    notify_config(extra, sizeof(extra), "email = false\n");
    start(extra, true);
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0 + (uint64_t)i, &d), CRP_OK));
        cr_assert(d.publish);
        cr_assert(not(d.notify));
        cr_assert(not(d.suppressed));
    }
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    cr_assert(eq(int, count_mail(), 0));
    lines = audit_lines("email_off");
    cr_assert(eq(sz, json_array_size(lines), 4));
    json_decref(lines);

    ev = crp_alerts_event_json(&in, &d, T0);
    o = json_loads(ev, 0, NULL);
    free(ev);
    cr_assert(eq(str, (char *)json_string_value(json_object_get(o, "connector_id")), "conn-x"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(o, "tenant")), "red"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(o, "state")), "restricted"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(o, "policy")),
                 "Suspicious connector activity"));
    cr_assert(eq(str, (char *)json_string_value(json_array_get(json_object_get(o, "reasons"), 0)),
                 "spam_ratio"));
    cr_assert(eq(sz, json_array_size(json_object_get(o, "evidence")), 2));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(o, "since")),
                 "2024-05-01T09:59:55.000Z"));
    json_decref(o);
}

Test(alerts, policy_off_publishes_nothing)
{
    char extra[1024];
    crp_alert_info in = info_for("conn-x", "red");
    crp_alert_decision d;
    json_t *lines;

    notify_config(extra, sizeof(extra), "enabled = false\n");
    start(extra, true);
    cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0, &d), CRP_OK));
    cr_assert(not(d.publish));
    cr_assert(not(d.notify));
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    cr_assert(eq(int, count_mail(), 0));
    lines = audit_lines(NULL);
    cr_assert(eq(sz, json_array_size(lines), 0));
    json_decref(lines);
}

Test(alerts, alerts_need_the_audit_log)
{
    char err[512] = "", why[512] = "";
    crp_alert_policy p;

    /* The config parser refuses the combination itself... */
    {
        char path[128];
        FILE *f;
        snprintf(path, sizeof(path), "%s/bad.conf", tmpdir);
        f = fopen(path, "w");
        fprintf(f, "[alerts]\nenabled = true\n[audit]\nenabled = false\n");
        fclose(f);
        cr_assert(eq(int, crp_config_load(&cfg, path, err, sizeof(err)), CRP_CONFIG));
        cr_assert(has(err, "audit"), "%s", err);
    }
    /* ...and so does the module, for a config built in memory. */
    load_config("enabled = false\n", false);
    cr_assert(eq(int, crp_audit_create_from_config(&audit, &cfg, err, sizeof(err)), CRP_OK));
    cfg.alerts.enabled = true;
    cr_assert(eq(int, crp_alerts_create(&alerts, &cfg, audit, err, sizeof(err)), CRP_CONFLICT));
    cr_assert(has(err, "audit log"), "%s", err);
    cr_assert(alerts == NULL);

    /* At run time: turning the policy on with the audit log off is refused. */
    cfg.alerts.enabled = false;
    cr_assert(eq(int, crp_alerts_create(&alerts, &cfg, audit, err, sizeof(err)), CRP_OK), "%s",
              err);
    crp_alerts_get_policy(alerts, &p);
    p.enabled = true;
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_CONFLICT));
    cr_assert(has(why, "audit log"), "%s", why);
    crp_alerts_get_policy(alerts, &p);
    cr_assert(not(p.enabled));
}

Test(alerts, bad_policies_are_refused)
{
    crp_alert_policy p;
    char why[256];

    start("", true);
    crp_alerts_get_policy(alerts, &p);
    p.daily_limit = 4;
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_INVAL));
    cr_assert(has(why, "daily_limit"));
    p.daily_limit = 0;
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_INVAL));
    p.daily_limit = 2;
    snprintf(p.recipients, sizeof(p.recipients), "soc@example.com, not an address");
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_INVAL));
    cr_assert(has(why, "recipients"));
    snprintf(p.recipients, sizeof(p.recipients), "a@b\r\nBcc: evil@x");
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_INVAL));
    snprintf(p.recipients, sizeof(p.recipients), "%s", "");
    cr_assert(eq(int, crp_alerts_set_policy(alerts, &p, why, sizeof(why)), CRP_INVAL));
}

Test(alerts, failing_command_is_counted_and_audited)
{
    crp_alert_info in = info_for("conn-fail", "red");
    crp_alert_decision d;
    crp_alerts_stats st;
    crp_audit_query q = {.any_tenant = true, .action = "alert.notify-failed"};
    json_t *out;

    start("notify_command = cat >/dev/null && exit 3\n", true);
    cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0, &d), CRP_OK));
    cr_assert(d.notify && d.spawned);
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    crp_alerts_stats_get(alerts, &st);
    cr_assert(eq(u64, st.command_failed, 1));
    cr_assert(eq(u64, st.command_ok, 0));
    cr_assert(eq(int, crp_audit_search(audit, &q, &out, NULL), CRP_OK));
    cr_assert(eq(sz, json_array_size(out), 1));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(json_array_get(out, 0), "message")),
                 "exit status 3"));
    json_decref(out);
}

Test(alerts, command_that_ignores_stdin_does_not_hurt)
{
    crp_alert_info in = info_for("conn-quiet", "red");
    crp_alert_decision d;
    crp_alerts_stats st;

    /* It exits without reading: our write gets EPIPE, which must neither
     * raise SIGPIPE nor block. */
    start("notify_command = exit 0\n", true);
    for (int i = 0; i < 3; i++)
        cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0 + (uint64_t)i, &d), CRP_OK));
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    crp_alerts_stats_get(alerts, &st);
    cr_assert(eq(u64, st.command_ok, 3));
}

Test(alerts, odd_ids_cannot_inject_headers)
{
    char extra[1024], v[512];
    static const char id[] = "evil\r\nBcc: x@y\xff";
    crp_alert_info in = {.connector_id = id,
                         .id_len = sizeof(id) - 1,
                         .tenant = "red",
                         .tenant_len = 3,
                         .reasons = CRP_REASON_MANUAL,
                         .since_ms = T0};
    crp_alert_decision d;
    char *m;

    notify_config(extra, sizeof(extra), "");
    start(extra, true);
    cr_assert(eq(int, crp_alerts_on_restriction(alerts, &in, T0, &d), CRP_OK));
    cr_assert(eq(int, crp_alerts_wait(alerts, 5000), CRP_OK));
    m = read_mail(0);
    header(m, "Subject", v, sizeof(v));
    cr_assert(eq(str, v, "Suspicious connector activity: evil\\x0d\\x0aBcc: x@y\\xff restricted"));
    header(m, "Bcc", v, sizeof(v));
    cr_assert(eq(str, v, ""));
    cr_assert(has(m, "--connector-id 'evil\\x0d\\x0aBcc: x@y\\xff'"), "%s", m);
    free(m);
}
