/* Criterion suite for core/config.c: defaults, every key, every error path
 * (each must name the file, the line and the key), comments, the dump
 * round trip, and the shipped etc/connrep.conf. Files are written to a
 * fresh mkdtemp directory per test and removed afterwards. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crp/config.h"

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/crp_config_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL, "mkdtemp: %s", strerror(errno));
}

/* Removes the temp directory and what the tests put in it (files and one
 * level of empty directories). */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[PATH_MAX];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

TestSuite(config, .init = make_tmpdir, .fini = remove_tmpdir);

/* Writes `text` (len bytes, or strlen when 0) to tmpdir/name; fills path. */
static void write_file_n(const char *name, const char *text, size_t len, char *path, size_t size)
{
    FILE *f;

    snprintf(path, size, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    cr_assert(f != NULL, "fopen %s: %s", path, strerror(errno));
    if (len == 0)
        len = strlen(text);
    cr_assert(eq(sz, fwrite(text, 1, len, f), len));
    cr_assert(eq(int, fclose(f), 0));
}

static void write_file(const char *name, const char *text, char *path, size_t size)
{
    write_file_n(name, text, 0, path, size);
}

/* Loads `text` as a file and expects success. */
static void load_ok(crp_config *cfg, const char *text)
{
    char path[PATH_MAX];
    char err[512];
    crp_err rc;

    write_file("ok.conf", text, path, sizeof(path));
    rc = crp_config_load(cfg, path, err, sizeof(err));
    cr_assert(eq(int, rc, CRP_OK), "unexpected error: %s\n--- file:\n%s", err, text);
    cr_assert(eq(str, err, ""));
}

static void assert_config_eq(const crp_config *a, const crp_config *b);

/* Loads `text` (len bytes, or strlen when 0) and expects CRP_CONFIG with a
 * message "PATH:LINE: ..." that contains each of the needles. Also checks
 * that the failed load left the defaults and no identities behind. */
static void expect_error_n(const char *text, size_t len, int line, const char *needle,
                           const char *needle2)
{
    char path[PATH_MAX];
    char err[512];
    char prefix[PATH_MAX + 32];
    crp_config cfg, defaults;
    crp_err rc;

    write_file_n("bad.conf", text, len, path, sizeof(path));
    rc = crp_config_load(&cfg, path, err, sizeof(err));
    cr_assert(eq(int, rc, CRP_CONFIG), "accepted:\n%s", text);
    if (line > 0)
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", path);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "message '%s' does not start with '%s'",
              err, prefix);
    cr_assert(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
    if (needle2 != NULL)
        cr_assert(strstr(err, needle2) != NULL, "message '%s' lacks '%s'", err, needle2);
    crp_config_defaults(&defaults);
    assert_config_eq(&cfg, &defaults);
    cr_assert(eq(ptr, cfg.identities, NULL));
    crp_config_fini(&cfg);
}

static void expect_error(const char *text, int line, const char *needle, const char *needle2)
{
    expect_error_n(text, 0, line, needle, needle2);
}

static void assert_identity_eq(const crp_identity *a, const crp_identity *b)
{
    cr_assert(eq(str, (char *)a->name, (char *)b->name));
    cr_assert(eq(str, (char *)a->public_key, (char *)b->public_key));
    cr_assert(eq(int, memcmp(a->public_key_bin, b->public_key_bin, CRP_KEY_BYTES), 0));
    cr_assert(eq(int, a->role, b->role));
    cr_assert(eq(int, a->any_tenant, b->any_tenant));
    cr_assert(eq(str, (char *)a->tenant, (char *)b->tenant));
    cr_assert(eq(str, (char *)a->email, (char *)b->email));
}

static void assert_config_eq(const crp_config *a, const crp_config *b)
{
    cr_assert(eq(u64, a->engine.max_connectors, b->engine.max_connectors));
    cr_assert(eq(str, (char *)a->engine.shm_name, (char *)b->engine.shm_name));
    cr_assert(eq(str, (char *)a->engine.state_dir, (char *)b->engine.state_dir));
    cr_assert(eq(uint, a->engine.shards, b->engine.shards));
    cr_assert(eq(str, (char *)a->feed.bind, (char *)b->feed.bind));
    cr_assert(eq(str, (char *)a->feed.connect, (char *)b->feed.connect));
    cr_assert(eq(u64, a->feed.max_frame_bytes, b->feed.max_frame_bytes));
    cr_assert(eq(str, (char *)a->lookup.bind, (char *)b->lookup.bind));
    cr_assert(eq(str, (char *)a->events.bind, (char *)b->events.bind));
    cr_assert(eq(str, (char *)a->admin.bind, (char *)b->admin.bind));
    cr_assert(eq(str, (char *)a->admin.secret_key_file, (char *)b->admin.secret_key_file));
    cr_assert(eq(u64, a->scoring.half_life_ms, b->scoring.half_life_ms));
    cr_assert(eq(dbl, a->scoring.min_messages, b->scoring.min_messages));
    cr_assert(eq(dbl, a->scoring.spam_ratio, b->scoring.spam_ratio));
    cr_assert(eq(dbl, a->scoring.phish_ratio, b->scoring.phish_ratio));
    cr_assert(eq(dbl, a->scoring.high_confidence_phish, b->scoring.high_confidence_phish));
    cr_assert(eq(dbl, a->scoring.malware, b->scoring.malware));
    cr_assert(eq(u64, a->scoring.recipients_per_hour, b->scoring.recipients_per_hour));
    cr_assert(eq(u64, a->scoring.recipients_per_day, b->scoring.recipients_per_day));
    cr_assert(eq(int, a->scoring.action, b->scoring.action));
    cr_assert(eq(u64, a->scoring.auto_release_after_ms, b->scoring.auto_release_after_ms));
    cr_assert(eq(u64, a->scoring.probation_ms, b->scoring.probation_ms));
    cr_assert(eq(dbl, a->scoring.probation_factor, b->scoring.probation_factor));
    cr_assert(eq(int, a->alerts.enabled, b->alerts.enabled));
    cr_assert(eq(int, a->alerts.email, b->alerts.email));
    cr_assert(eq(str, (char *)a->alerts.recipients, (char *)b->alerts.recipients));
    cr_assert(eq(uint, a->alerts.daily_limit, b->alerts.daily_limit));
    cr_assert(eq(str, (char *)a->alerts.notify_command, (char *)b->alerts.notify_command));
    cr_assert(eq(int, a->audit.enabled, b->audit.enabled));
    cr_assert(eq(sz, a->n_identities, b->n_identities));
    for (size_t i = 0; i < a->n_identities; i++)
        assert_identity_eq(&a->identities[i], &b->identities[i]);
}

/* The defaults, spelled out from PROTOCOL.md section 6 (plus shards = 2). */
static void assert_protocol_defaults(const crp_config *c)
{
    cr_assert(eq(u64, c->engine.max_connectors, 1048576));
    cr_assert(eq(str, (char *)c->engine.shm_name, "/connrep"));
    cr_assert(eq(str, (char *)c->engine.state_dir, "./var/lib/connrep"));
    cr_assert(eq(uint, c->engine.shards, 2));
    cr_assert(eq(str, (char *)c->feed.bind, "ipc://./var/run/connrep/feed"));
    cr_assert(eq(str, (char *)c->feed.connect, ""));
    cr_assert(eq(u64, c->feed.max_frame_bytes, 4u * 1024 * 1024));
    cr_assert(eq(str, (char *)c->lookup.bind, "ipc://./var/run/connrep/lookup"));
    cr_assert(eq(str, (char *)c->events.bind, "ipc://./var/run/connrep/events"));
    cr_assert(eq(str, (char *)c->admin.bind, "ipc://./var/run/connrep/admin"));
    cr_assert(eq(str, (char *)c->admin.secret_key_file, "./var/lib/connrep/admin.key"));
    cr_assert(eq(u64, c->scoring.half_life_ms, 3600000));
    cr_assert(eq(dbl, c->scoring.min_messages, 20));
    cr_assert(eq(dbl, c->scoring.spam_ratio, 0.5));
    cr_assert(eq(dbl, c->scoring.phish_ratio, 0.1));
    cr_assert(eq(dbl, c->scoring.high_confidence_phish, 3));
    cr_assert(eq(dbl, c->scoring.malware, 3));
    cr_assert(eq(u64, c->scoring.recipients_per_hour, 10000));
    cr_assert(eq(u64, c->scoring.recipients_per_day, 100000));
    cr_assert(eq(int, c->scoring.action, CRP_ACTION_RESTRICT));
    cr_assert(eq(u64, c->scoring.auto_release_after_ms, 0));
    cr_assert(eq(u64, c->scoring.probation_ms, 24u * 3600000));
    cr_assert(eq(dbl, c->scoring.probation_factor, 0.5));
    cr_assert(eq(int, c->alerts.enabled, true));
    cr_assert(eq(int, c->alerts.email, true));
    cr_assert(eq(str, (char *)c->alerts.recipients, "TenantAdmins"));
    cr_assert(eq(uint, c->alerts.daily_limit, 3));
    cr_assert(eq(str, (char *)c->alerts.notify_command, ""));
    cr_assert(eq(int, c->audit.enabled, true));
    cr_assert(eq(sz, c->n_identities, 0));
    cr_assert(eq(ptr, c->identities, NULL));
}

/* ------------------------------------------------------------------------ */
/* Defaults */

Test(config, defaults_are_the_protocol_values)
{
    crp_config c;

    crp_config_defaults(&c);
    assert_protocol_defaults(&c);
    crp_config_fini(&c);
}

Test(config, no_file_gives_defaults)
{
    crp_config c;
    char err[64] = "junk";

    cr_assert(eq(int, crp_config_load(&c, NULL, err, sizeof(err)), CRP_OK));
    cr_assert(eq(str, err, ""));
    assert_protocol_defaults(&c);
    crp_config_fini(&c);
    cr_assert(eq(int, crp_config_load(&c, NULL, NULL, 0), CRP_OK));
    assert_protocol_defaults(&c);
}

Test(config, empty_file_gives_defaults)
{
    crp_config c;

    load_ok(&c, "");
    assert_protocol_defaults(&c);
    load_ok(&c, "; only a comment\n\n# and another\n[engine]\n[audit]\n");
    assert_protocol_defaults(&c);
}

Test(config, fini_is_null_safe_and_idempotent)
{
    crp_config c;

    crp_config_fini(NULL);
    crp_config_defaults(&c);
    crp_config_fini(&c);
    crp_config_fini(&c);
    cr_assert(eq(ptr, c.identities, NULL));
}

/* ------------------------------------------------------------------------ */
/* Every key */

static const char full_text[] = "[engine]\n"
                                "max_connectors = 4096\n"
                                "shm_name = /crp-test\n"
                                "state_dir = /srv/connrep/state\n"
                                "shards = 4\n"
                                "[feed]\n"
                                "bind = tcp://127.0.0.1:5555 , ipc:///tmp/crp-feed\n"
                                "connect = tcp://10.0.0.1:6000,tcp://10.0.0.2:6000\n"
                                "max_frame_bytes = 1MiB\n"
                                "[lookup]\n"
                                "bind = tcp://*:5556\n"
                                "[events]\n"
                                "bind =\n"
                                "[admin]\n"
                                "bind = tcp://127.0.0.1:5558\n"
                                "secret_key_file = /etc/connrep/admin.key\n"
                                "[scoring]\n"
                                "half_life = 1.5h\n"
                                "min_messages = 12.5\n"
                                "spam_ratio = 0.75\n"
                                "phish_ratio = 1\n"
                                "high_confidence_phish = 2.5\n"
                                "malware = 1\n"
                                "recipients_per_hour = 500\n"
                                "recipients_per_day = 500\n"
                                "action = restrict_today\n"
                                "auto_release_after = 7d\n"
                                "probation = 0\n"
                                "probation_factor = 0.25\n"
                                "[alerts]\n"
                                "enabled = off\n"
                                "email = NO\n"
                                "recipients = soc@example.com, ciso@example.com\n"
                                "daily_limit = 1\n"
                                "notify_command = logger -t connrep;echo sent\n"
                                "[audit]\n"
                                "enabled = false\n"
                                "[identity alice]\n"
                                "public_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                                "role = SecurityAdministrator\n"
                                "email = alice@example.com\n"
                                "[identity bob.reader]\n"
                                "public_key = Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\n"
                                "role = GlobalReader\n"
                                "tenant = contoso\n"
                                "[identity no-tenant]\n"
                                "role = ViewOnlyOrganizationManagement\n"
                                "public_key = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n"
                                "tenant =\n"
                                "email =\n";

/* "HelloWorld" is ZeroMQ RFC 32's test vector. */
static const uint8_t hello_world[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};

Test(config, every_key_parses)
{
    crp_config c;
    uint8_t key[CRP_KEY_BYTES];

    load_ok(&c, full_text);
    cr_assert(eq(u64, c.engine.max_connectors, 4096));
    cr_assert(eq(str, c.engine.shm_name, "/crp-test"));
    cr_assert(eq(str, c.engine.state_dir, "/srv/connrep/state"));
    cr_assert(eq(uint, c.engine.shards, 4));
    cr_assert(eq(str, c.feed.bind, "tcp://127.0.0.1:5555,ipc:///tmp/crp-feed"));
    cr_assert(eq(str, c.feed.connect, "tcp://10.0.0.1:6000,tcp://10.0.0.2:6000"));
    cr_assert(eq(u64, c.feed.max_frame_bytes, 1u << 20));
    cr_assert(eq(str, c.lookup.bind, "tcp://*:5556"));
    cr_assert(eq(str, c.events.bind, ""));
    cr_assert(eq(str, c.admin.bind, "tcp://127.0.0.1:5558"));
    cr_assert(eq(str, c.admin.secret_key_file, "/etc/connrep/admin.key"));
    cr_assert(eq(u64, c.scoring.half_life_ms, 5400000));
    cr_assert(eq(dbl, c.scoring.min_messages, 12.5));
    cr_assert(eq(dbl, c.scoring.spam_ratio, 0.75));
    cr_assert(eq(dbl, c.scoring.phish_ratio, 1));
    cr_assert(eq(dbl, c.scoring.high_confidence_phish, 2.5));
    cr_assert(eq(dbl, c.scoring.malware, 1));
    cr_assert(eq(u64, c.scoring.recipients_per_hour, 500));
    cr_assert(eq(u64, c.scoring.recipients_per_day, 500));
    cr_assert(eq(int, c.scoring.action, CRP_ACTION_RESTRICT_TODAY));
    cr_assert(eq(u64, c.scoring.auto_release_after_ms, 7u * 86400000));
    cr_assert(eq(u64, c.scoring.probation_ms, 0));
    cr_assert(eq(dbl, c.scoring.probation_factor, 0.25));
    cr_assert(eq(int, c.alerts.enabled, false));
    cr_assert(eq(int, c.alerts.email, false));
    cr_assert(eq(str, c.alerts.recipients, "soc@example.com,ciso@example.com"));
    cr_assert(eq(uint, c.alerts.daily_limit, 1));
    cr_assert(eq(str, c.alerts.notify_command, "logger -t connrep;echo sent"));
    cr_assert(eq(int, c.audit.enabled, false));

    cr_assert(eq(sz, c.n_identities, 3));
    cr_assert(eq(str, c.identities[0].name, "alice"));
    cr_assert(eq(str, c.identities[0].public_key, "HelloWorldHelloWorldHelloWorldHelloWorld"));
    for (size_t i = 0; i < CRP_KEY_BYTES; i++)
        cr_assert(eq(u8, c.identities[0].public_key_bin[i], hello_world[i % 8]));
    cr_assert(eq(int, c.identities[0].role, CRP_ROLE_SECURITY_ADMINISTRATOR));
    cr_assert(eq(int, c.identities[0].any_tenant, true));
    cr_assert(eq(str, c.identities[0].tenant, ""));
    cr_assert(eq(str, c.identities[0].email, "alice@example.com"));

    cr_assert(eq(str, c.identities[1].name, "bob.reader"));
    cr_assert(eq(int, c.identities[1].role, CRP_ROLE_GLOBAL_READER));
    cr_assert(eq(int, c.identities[1].any_tenant, false));
    cr_assert(eq(str, c.identities[1].tenant, "contoso"));
    cr_assert(eq(str, c.identities[1].email, ""));

    /* An empty tenant is the tenant named "", not every tenant. */
    cr_assert(eq(str, c.identities[2].name, "no-tenant"));
    cr_assert(eq(int, c.identities[2].role, CRP_ROLE_VIEW_ONLY_ORGANIZATION_MANAGEMENT));
    cr_assert(eq(int, c.identities[2].any_tenant, false));
    cr_assert(eq(str, c.identities[2].tenant, ""));

    for (size_t i = 0; i < CRP_KEY_BYTES; i++)
        key[i] = hello_world[i % 8];
    cr_assert(eq(ptr, (void *)crp_config_identity_by_key(&c, key), &c.identities[0]));
    memcpy(key, c.identities[2].public_key_bin, sizeof(key));
    cr_assert(eq(ptr, (void *)crp_config_identity_by_key(&c, key), &c.identities[2]));
    key[0] ^= 1;
    cr_assert(eq(ptr, (void *)crp_config_identity_by_key(&c, key), NULL));
    crp_config_fini(&c);
    cr_assert(eq(sz, c.n_identities, 0));
}

Test(config, boolean_spellings)
{
    static const char *const yes[] = {"true", "TRUE", "on", "On", "yes", "1"};
    static const char *const no[] = {"false", "False", "off", "OFF", "no", "0"};
    char text[128];
    crp_config c;

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(text, sizeof(text), "[alerts]\nemail = %s\n", no[i]);
        load_ok(&c, text);
        cr_assert(eq(int, c.alerts.email, false), "%s", no[i]);
        snprintf(text, sizeof(text), "[alerts]\nemail = %s\n", yes[i]);
        load_ok(&c, text);
        cr_assert(eq(int, c.alerts.email, true), "%s", yes[i]);
    }
}

Test(config, limits_accepted_at_the_boundaries)
{
    crp_config c;
    char text[8192];

    load_ok(&c, "[engine]\nmax_connectors = 64\nshards = 1\n[feed]\nmax_frame_bytes = 64\n"
                "[scoring]\nmin_messages = 0\nrecipients_per_hour = 1\nrecipients_per_day = 1\n"
                "probation_factor = 1\n[alerts]\ndaily_limit = 3\n");
    cr_assert(eq(u64, c.engine.max_connectors, 64));
    cr_assert(eq(uint, c.engine.shards, 1));
    cr_assert(eq(u64, c.feed.max_frame_bytes, 64));
    cr_assert(eq(dbl, c.scoring.min_messages, 0));
    load_ok(&c, "[engine]\nmax_connectors = 1073741824\nshards = 64\nshm_name =\n"
                "[feed]\nmax_frame_bytes = 256MiB\n[scoring]\n"
                "recipients_per_hour = 9007199254740992\nrecipients_per_day = 9007199254740992\n");
    cr_assert(eq(u64, c.engine.max_connectors, 1u << 30));
    cr_assert(eq(uint, c.engine.shards, 64));
    cr_assert(eq(str, c.engine.shm_name, ""));
    cr_assert(eq(u64, c.feed.max_frame_bytes, 256u << 20));

    /* The longest values that fit. */
    {
        size_t n = (size_t)snprintf(text, sizeof(text), "[engine]\nstate_dir = /");
        memset(text + n, 'd', 4094);
        strcpy(text + n + 4094, "\n");
    }
    load_ok(&c, text);
    cr_assert(eq(sz, strlen(c.engine.state_dir), 4095));
}

/* ------------------------------------------------------------------------ */
/* Durations and sizes */

Test(config, parse_duration)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},          {"00", 0},
        {"0.0", 0},        {"0ms", 0},
        {"0d", 0},         {"500ms", 500},
        {"30s", 30000},    {"5m", 300000},
        {"1h", 3600000},   {"7d", 604800000},
        {"1.5h", 5400000}, {"0.5s", 500},
        {"1.25s", 1250},   {"2.500000000000s", 2500},
        {"0.001s", 1},     {"18446744073709551615ms", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",
        "1",
        "10",
        "1.5",
        "-1s",
        "+1s",
        " 1s",
        "1s ",
        "1 s",
        "1S",
        "1H",
        "1sec",
        "1.s",
        ".5s",
        "1.0005s",
        "0.0001s",
        "1.5ms",
        "1e3s",
        "1.5.2h",
        "1hh",
        "1h30m",
        "0x10s",
        "s",
        "18446744073709551616ms",
        "213503982335d",
        "18446744073709551615.5ms",
    };
    uint64_t ms;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = 12345;
        cr_assert(eq(int, crp_config_parse_duration(good[i].s, &ms), CRP_OK), "'%s'", good[i].s);
        cr_assert(eq(u64, ms, good[i].ms), "'%s'", good[i].s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = 12345;
        cr_assert(eq(int, crp_config_parse_duration(bad[i], &ms), CRP_INVAL), "'%s'", bad[i]);
        cr_assert(eq(u64, ms, 12345), "'%s' changed the output", bad[i]);
    }
    cr_assert(eq(int, crp_config_parse_duration(NULL, &ms), CRP_INVAL));
}

Test(config, parse_size)
{
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"64", 64},
        {"64B", 64},
        {"1KiB", 1024},
        {"4MiB", 4u << 20},
        {"2GiB", UINT64_C(2) << 30},
        {"17179869183GiB", UINT64_C(17179869183) << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",
        "B",
        "4mib",
        "4MB",
        "4M",
        "4 MiB",
        "-1",
        "+1",
        "1.5MiB",
        "4MiBx",
        " 4MiB",
        "17179869184GiB",
        "18446744073709551616",
        "1TiB",
    };
    uint64_t b;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        b = 7;
        cr_assert(eq(int, crp_config_parse_size(good[i].s, &b), CRP_OK), "'%s'", good[i].s);
        cr_assert(eq(u64, b, good[i].bytes), "'%s'", good[i].s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = 7;
        cr_assert(eq(int, crp_config_parse_size(bad[i], &b), CRP_INVAL), "'%s'", bad[i]);
        cr_assert(eq(u64, b, 7), "'%s' changed the output", bad[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* Errors: each names the file, the line and the key */

Test(config, error_unknown_section)
{
    expect_error("[engine]\nshards = 2\n\n[engien]\nshards = 4\n", 4, "unknown section [engien]",
                 NULL);
    /* Even without keys, and even when it is the last line. */
    expect_error("[engine]\n[bogus]\n", 2, "unknown section [bogus]", NULL);
    expect_error("[ engine ]\n", 1, "unknown section [ engine ]", NULL);
}

Test(config, error_unknown_key)
{
    expect_error("[engine]\nshards = 2\nmax_conectors = 64\n", 3,
                 "[engine] unknown key 'max_conectors'", NULL);
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\nname = a\n",
                 4, "[identity a] unknown key 'name'", NULL);
    /* A key of another section. */
    expect_error("[feed]\nshards = 2\n", 2, "[feed] unknown key 'shards'", NULL);
}

Test(config, error_key_outside_section)
{
    expect_error("; comment\nshards = 2\n", 2, "key 'shards' outside any section", NULL);
}

Test(config, error_syntax)
{
    expect_error("[engine]\nshards = 2\nmax_connectors\n", 3, "syntax error", NULL);
    expect_error("[engine]\n[feed\nbind =\n", 2, "syntax error", NULL);
    /* A syntax error before a value error is the one reported. */
    expect_error("[engine]\nshards\nshards = 3\n", 2, "syntax error", NULL);
    expect_error("[engine]\nshards = 3\nshards\n", 2, "[engine] shards", NULL);
    expect_error("[engine] shards = 2\n", 1, "unexpected text after [engine]", NULL);
}

Test(config, error_key_set_twice)
{
    expect_error("[engine]\nshards = 2\n[feed]\n[engine]\nshards = 4\n", 5,
                 "[engine] shards: set twice (first on line 2)", NULL);
    expect_error("[identity a]\nrole = GlobalReader\nrole = GlobalReader\n", 3,
                 "[identity a] role: set twice (first on line 2)", NULL);
}

Test(config, error_bad_duration)
{
    expect_error("[scoring]\nhalf_life = 1 hour\n", 2, "[scoring] half_life: expected a duration",
                 "got '1 hour'");
    expect_error("[scoring]\nprobation = 24H\n", 2, "[scoring] probation: expected a duration",
                 "got '24H'");
    expect_error("[scoring]\nhalf_life = 0\n", 2,
                 "[scoring] half_life: expected a duration "
                 "greater than 0",
                 "got '0'");
}

Test(config, error_bare_nonzero_number)
{
    expect_error("[scoring]\n\nhalf_life = 3600\n", 3, "[scoring] half_life: expected",
                 "got '3600'");
    expect_error("[scoring]\nauto_release_after = 10\n", 2,
                 "[scoring] auto_release_after: expected", "got '10'");
    expect_error("[scoring]\nprobation = 1.5\n", 2, "[scoring] probation: expected", "got '1.5'");
}

Test(config, error_bad_size)
{
    expect_error("[feed]\nmax_frame_bytes = 4MB\n", 2, "[feed] max_frame_bytes: expected a size",
                 "got '4MB'");
    expect_error("[feed]\nmax_frame_bytes = 32\n", 2, "[feed] max_frame_bytes: expected",
                 "got '32'");
    expect_error("[feed]\nmax_frame_bytes = 512MiB\n", 2, "[feed] max_frame_bytes: expected",
                 "got '512MiB'");
    expect_error("[feed]\nmax_frame_bytes = -1\n", 2, "[feed] max_frame_bytes", "got '-1'");
    expect_error("[feed]\nmax_frame_bytes = 99999999999999999999999\n", 2, "[feed] max_frame_bytes",
                 NULL);
}

Test(config, error_max_connectors_and_shards)
{
    expect_error("[engine]\nmax_connectors = 1000000\n", 2,
                 "[engine] max_connectors: expected a power of two", "got '1000000'");
    expect_error("[engine]\nmax_connectors = 32\n", 2, "[engine] max_connectors", "got '32'");
    expect_error("[engine]\nmax_connectors = 2147483648\n", 2, "[engine] max_connectors", NULL);
    expect_error("[engine]\nmax_connectors = -64\n", 2, "[engine] max_connectors", NULL);
    expect_error("[engine]\nmax_connectors = 18446744073709551616\n", 2, "[engine] max_connectors",
                 NULL);
    expect_error("[engine]\nshards = 0\n", 2, "[engine] shards: expected", "got '0'");
    expect_error("[engine]\nshards = 3\n", 2, "[engine] shards", "got '3'");
    expect_error("[engine]\nshards = 128\n", 2, "[engine] shards", "got '128'");
}

Test(config, error_bad_strings)
{
    expect_error("[engine]\nshm_name = connrep\n", 2, "[engine] shm_name: expected",
                 "got 'connrep'");
    expect_error("[engine]\nshm_name = /a/b\n", 2, "[engine] shm_name", "got '/a/b'");
    expect_error("[engine]\nshm_name = /\n", 2, "[engine] shm_name", NULL);
    expect_error("[engine]\nstate_dir =\n", 2, "[engine] state_dir: expected", NULL);
    expect_error("[admin]\nsecret_key_file = ; commented out\n", 2,
                 "[admin] secret_key_file: expected", NULL);
    expect_error("[feed]\nbind = localhost:5555\n", 2, "[feed] bind: expected",
                 "got 'localhost:5555'");
    expect_error("[feed]\nconnect = tcp://a:1,,tcp://b:2\n", 2, "[feed] connect", NULL);
    expect_error("[feed]\nconnect = tcp://a:1,\n", 2, "[feed] connect", NULL);
    expect_error("[lookup]\nbind = tcp://a b:1\n", 2, "[lookup] bind", NULL);
    expect_error("[alerts]\nrecipients =\n", 2, "[alerts] recipients: expected", NULL);
    expect_error("[alerts]\nrecipients = soc\n", 2, "[alerts] recipients", "got 'soc'");
    expect_error("[alerts]\nrecipients = TenantAdmins, soc@example.com\n", 2, "[alerts] recipients",
                 NULL);
    expect_error("[alerts]\nnotify_command = a\x01"
                 "b\n",
                 2, "[alerts] notify_command", NULL);
}

Test(config, error_bad_action)
{
    expect_error("[scoring]\naction = block\n", 2,
                 "[scoring] action: expected restrict, restrict_today or alert_only",
                 "got 'block'");
    expect_error("[scoring]\naction = Restrict\n", 2, "[scoring] action", NULL);
}

Test(config, error_bad_ratio)
{
    static const char *const bad[] = {"0",  "1.5", "-0.1", "abc", "0.5x", "1e-1",
                                      "1.", ".5",  "inf",  "nan", "0.0"};
    char text[128], got[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "[scoring]\nspam_ratio = 0.5\nphish_ratio = %s\n", bad[i]);
        snprintf(got, sizeof(got), "got '%s'", bad[i]);
        expect_error(text, 3, "[scoring] phish_ratio: expected a ratio", got);
    }
    expect_error("[scoring]\nprobation_factor = 0\n", 2, "[scoring] probation_factor", NULL);
    expect_error("[scoring]\nmalware = 0\n", 2, "[scoring] malware: expected", NULL);
    expect_error("[scoring]\nhigh_confidence_phish = -3\n", 2, "[scoring] high_confidence_phish",
                 NULL);
    expect_error("[scoring]\nmin_messages = -1\n", 2, "[scoring] min_messages", NULL);
    expect_error("[scoring]\nrecipients_per_hour = 0\n", 2, "[scoring] recipients_per_hour", NULL);
    expect_error("[scoring]\nrecipients_per_day = 1.5\n", 2, "[scoring] recipients_per_day", NULL);
}

Test(config, error_daily_limit)
{
    expect_error("[alerts]\ndaily_limit = 0\n", 2, "[alerts] daily_limit: expected", "got '0'");
    expect_error("[alerts]\ndaily_limit = 4\n", 2, "[alerts] daily_limit: expected", "got '4'");
}

Test(config, error_bad_boolean)
{
    expect_error("[audit]\nenabled = maybe\n", 2, "[audit] enabled: expected true or false",
                 "got 'maybe'");
    expect_error("[alerts]\nemail = 2\n", 2, "[alerts] email", NULL);
}

Test(config, error_z85_key_length)
{
    expect_error("[identity a]\nrole = GlobalReader\n"
                 "public_key = HelloWorldHelloWorldHelloWorldHelloWorl\n",
                 3, "[identity a] public_key: expected 40 Z85 characters", "(39 characters)");
    expect_error("[identity a]\nrole = GlobalReader\n"
                 "public_key = HelloWorldHelloWorldHelloWorldHelloWorldH\n",
                 3, "[identity a] public_key: expected 40 Z85", "(41 characters)");
    expect_error("[identity a]\npublic_key =\nrole = GlobalReader\n", 2, "[identity a] public_key",
                 "(0 characters)");
}

Test(config, error_z85_key_characters)
{
    /* '~', ',', '"', ';', '\\', '_' and '|' are not in the Z85 alphabet. */
    static const char bad_chars[] = "~,\"\\_|'`";
    char text[256];

    for (size_t i = 0; bad_chars[i]; i++) {
        snprintf(text, sizeof(text),
                 "[identity a]\nrole = GlobalReader\npublic_key = "
                 "HelloWorld%celloWorldHelloWorldHelloWorld\n",
                 bad_chars[i]);
        expect_error(text, 3, "[identity a] public_key: expected 40 Z85", "is not a Z85 character");
    }
    /* Valid characters, but a group that no encoder produces (> 2^32). */
    expect_error("[identity a]\nrole = GlobalReader\n"
                 "public_key = #####WorldHelloWorldHelloWorldHelloWorld\n",
                 3, "[identity a] public_key", "exceeds 32 bits");
}

Test(config, error_identity_fields)
{
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = Administrator\n",
                 3, "[identity a] role: expected OrganizationManagement", "got 'Administrator'");
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\n"
                 "tenant = 01234567890123456789012345678901234567890123456789012345678901234\n",
                 4, "[identity a] tenant: expected", NULL);
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\nemail = alice\n",
                 4, "[identity a] email: expected an e-mail address", "got 'alice'");
}

Test(config, error_identity_required_keys)
{
    expect_error("[engine]\n[identity a]\nrole = GlobalReader\n[feed]\n", 2,
                 "[identity a] public_key: required key missing", NULL);
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n", 1,
                 "[identity a] role: required key missing", NULL);
    expect_error("[identity empty]\n", 1, "[identity empty] public_key: required", NULL);
}

Test(config, error_identity_names)
{
    expect_error("[identity]\n", 1, "[identity] needs a name", NULL);
    expect_error("[engine]\n[identity a b]\n", 2, "[identity a b] expected an identity name",
                 "got 'a b'");
    expect_error("[identity al/ice]\n", 1, "[identity al/ice] expected an identity name", NULL);
}

Test(config, error_duplicate_identity)
{
    expect_error("[identity alice]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\n\n[identity alice]\n",
                 5, "[identity alice] duplicate identity", NULL);
}

Test(config, error_duplicate_public_key)
{
    expect_error("[identity alice]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\n[identity bob]\nrole = GlobalReader\n"
                 "public_key = HelloWorldHelloWorldHelloWorldHelloWorld\n",
                 6, "[identity bob] public_key: duplicate public key", "'alice'");
}

Test(config, error_alerts_without_audit)
{
    static const char msg[] = "alerts need the audit log: [alerts] enabled = true requires "
                              "[audit] enabled = true";
    crp_config c;

    /* Only [audit] set: its line. */
    expect_error("[engine]\n[audit]\nenabled = false\n", 3, msg, NULL);
    /* Both set: the later line. */
    expect_error("[alerts]\nenabled = true\n[audit]\nenabled = off\n", 4, msg, NULL);
    expect_error("[audit]\nenabled = no\n[alerts]\nemail = false\nenabled = yes\n", 5, msg, NULL);
    /* Consistent combinations load. */
    load_ok(&c, "[audit]\nenabled = false\n[alerts]\nenabled = false\n");
    cr_assert(eq(int, c.audit.enabled, false));
    load_ok(&c, "[alerts]\nenabled = true\n");
}

Test(config, error_recipient_limits_inverted)
{
    expect_error("[scoring]\nrecipients_per_day = 5000\n", 2,
                 "[scoring] recipients_per_day: expected at least recipients_per_hour (10000)",
                 "got '5000'");
    expect_error("[scoring]\nrecipients_per_day = 5000\nrecipients_per_hour = 6000\n", 3,
                 "[scoring] recipients_per_day", NULL);
}

Test(config, error_unreadable_file)
{
    char path[PATH_MAX], err[512], want[PATH_MAX + 64];
    crp_config c;

    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    cr_assert(eq(int, crp_config_load(&c, path, err, sizeof(err)), CRP_CONFIG));
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    cr_assert(eq(str, err, want));
    assert_protocol_defaults(&c);

    snprintf(path, sizeof(path), "%s/dir.conf", tmpdir);
    cr_assert(eq(int, mkdir(path, 0700), 0));
    cr_assert(eq(int, crp_config_load(&c, path, err, sizeof(err)), CRP_CONFIG));
    snprintf(want, sizeof(want), "%s: cannot ", path);
    cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
    cr_assert(strstr(err, strerror(EISDIR)) != NULL, "%s", err);

    /* A NULL or short error buffer is fine. */
    cr_assert(eq(int, crp_config_load(&c, path, NULL, 0), CRP_CONFIG));
    cr_assert(eq(int, crp_config_load(&c, path, err, 5), CRP_CONFIG));
    cr_assert(eq(sz, strlen(err), 4));
}

Test(config, error_overlong_value)
{
    static char text[20000];
    size_t n;

    n = (size_t)snprintf(text, sizeof(text), "[engine]\nshards = 2\nstate_dir = /");
    memset(text + n, 'd', 4095);
    strcpy(text + n + 4095, "\n");
    expect_error(text, 3, "[engine] state_dir: expected at most 4095 bytes", "(4096 bytes)");

    n = (size_t)snprintf(text, sizeof(text), "[alerts]\nnotify_command = ");
    memset(text + n, 'x', 5000);
    strcpy(text + n + 5000, "\n");
    expect_error(text, 2, "[alerts] notify_command: expected at most 4095 bytes", NULL);

    n = (size_t)snprintf(text, sizeof(text), "[feed]\n\nconnect = tcp://a:1");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, ", tcp://a:%d", i);
    strcpy(text + n, "\n");
    expect_error(text, 3, "[feed] connect: expected at most 1023 bytes", NULL);

    n = (size_t)snprintf(text, sizeof(text), "[identity a]\nemail = a@");
    memset(text + n, 'e', 300);
    strcpy(text + n + 300, "\n");
    expect_error(text, 2, "[identity a] email: expected at most 254 bytes", NULL);
}

Test(config, error_overlong_line)
{
    static char text[40000];
    size_t n;

    /* Longer than the line limit: reported for its line and key, and the
     * rest of the long line is not taken for a line of its own. */
    n = (size_t)snprintf(text, sizeof(text), "[alerts]\nnotify_command = ");
    memset(text + n, 'x', 20000);
    strcpy(text + n + 20000, "\n[bogus]\n");
    expect_error(text, 2, "[alerts] notify_command: line longer than 16384 bytes", NULL);

    /* A comment line may not exceed it either. */
    text[0] = ';';
    memset(text + 1, ';', 17000);
    strcpy(text + 17001, "\n[engine]\n");
    expect_error(text, 1, "line longer than 16384 bytes", NULL);
}

Test(config, long_line_with_comment_fits)
{
    static char text[20000];
    crp_config c;
    size_t n;

    /* A value at its limit plus a long comment: under the line limit. */
    n = (size_t)snprintf(text, sizeof(text), "[alerts]\nnotify_command = ");
    memset(text + n, 'x', 4095);
    n += 4095;
    n += (size_t)snprintf(text + n, sizeof(text) - n, " ; ");
    memset(text + n, 'c', 8000);
    strcpy(text + n + 8000, "\r\n[audit]\nenabled = true\n");
    load_ok(&c, text);
    cr_assert(eq(sz, strlen(c.alerts.notify_command), 4095));
}

Test(config, error_nul_byte)
{
    static const char text[] = "[engine]\nshards = 2\0junk\nmax_connectors = 64\n";
    expect_error_n(text, sizeof(text) - 1, 2, "NUL byte", NULL);
}

Test(config, error_line_numbers_count_every_line)
{
    expect_error("; header\r\n\r\n[engine]\r\n  ; indented comment\r\n\tshards = 2\r\n"
                 "# hash comment\r\n[feed]\r\nmax_frame_bytes = 1GiB\r\n",
                 8, "[feed] max_frame_bytes", "got '1GiB'");
}

/* ------------------------------------------------------------------------ */
/* Comments and layout */

Test(config, inline_comments)
{
    crp_config c;

    load_ok(&c, "[alerts]\n"
                "recipients = TenantAdmins ; who gets mail\n"
                "notify_command = a;b ;c\n"
                "[engine]\n"
                "state_dir = /x/y\t; tab before the comment\n"
                "shm_name = /a;b\n"
                "; a full-line comment = not a key\n"
                "# so is this\n"
                "   [feed]    ; indented header with a comment\n"
                "   bind = tcp://a:1 ; indented key\n"
                "\tconnect = tcp://b:2;not-a-comment\n");
    cr_assert(eq(str, c.alerts.recipients, "TenantAdmins"));
    cr_assert(eq(str, c.alerts.notify_command, "a;b"));
    cr_assert(eq(str, c.engine.state_dir, "/x/y"));
    cr_assert(eq(str, c.engine.shm_name, "/a;b"));
    cr_assert(eq(str, c.feed.bind, "tcp://a:1"));
    cr_assert(eq(str, c.feed.connect, "tcp://b:2;not-a-comment"));
}

Test(config, crlf_and_bom)
{
    crp_config c;

    load_ok(&c, "\xEF\xBB\xBF[engine]\r\nshards = 8\r\n[alerts]\r\nrecipients = a@b.c\r\n");
    cr_assert(eq(uint, c.engine.shards, 8));
    cr_assert(eq(str, c.alerts.recipients, "a@b.c"));
    /* No newline at the end of the file. */
    load_ok(&c, "[engine]\nshards = 16");
    cr_assert(eq(uint, c.engine.shards, 16));
}

Test(config, value_glued_semicolon_is_kept)
{
    crp_config c;

    load_ok(&c, "[alerts]\nnotify_command =;starts-with-semicolon\n");
    cr_assert(eq(str, c.alerts.notify_command, ";starts-with-semicolon"));
    load_ok(&c, "[alerts]\nnotify_command = ; only a comment\n");
    cr_assert(eq(str, c.alerts.notify_command, ""));
}

/* ------------------------------------------------------------------------ */
/* Dump */

/* Dumps `c` to a file, loads it back, and checks the result is equal and
 * dumps to the same text. */
static void round_trip(const crp_config *c)
{
    char path[PATH_MAX], err[512];
    char *text1 = NULL, *text2 = NULL;
    size_t len1 = 0, len2 = 0;
    FILE *f;
    crp_config back;

    f = open_memstream(&text1, &len1);
    cr_assert(f != NULL);
    cr_assert(eq(int, crp_config_dump(c, f), 0));
    cr_assert(eq(int, fclose(f), 0));
    write_file("dump.conf", text1, path, sizeof(path));

    cr_assert(eq(int, crp_config_load(&back, path, err, sizeof(err)), CRP_OK), "%s\n%s", err,
              text1);
    assert_config_eq(c, &back);

    f = open_memstream(&text2, &len2);
    cr_assert(f != NULL);
    cr_assert(eq(int, crp_config_dump(&back, f), 0));
    cr_assert(eq(int, fclose(f), 0));
    cr_assert(eq(str, text1, text2));
    crp_config_fini(&back);
    free(text1);
    free(text2);
}

Test(config, dump_round_trip_defaults)
{
    crp_config c;

    crp_config_defaults(&c);
    round_trip(&c);
}

Test(config, dump_round_trip_every_key)
{
    crp_config c;

    load_ok(&c, full_text);
    round_trip(&c);
    crp_config_fini(&c);

    load_ok(&c, "[scoring]\nhalf_life = 1500ms\nauto_release_after = 90s\nprobation = 36h\n"
                "min_messages = 0.1\nspam_ratio = 0.3333333333333333\n"
                "high_confidence_phish = 123456789012345678901234567890\n"
                "malware = 0.000000000000000000000000000000000000001\n"
                "[feed]\nmax_frame_bytes = 1000\n[alerts]\nnotify_command =;x ;y\n");
    cr_assert(eq(str, c.alerts.notify_command, ";x"));
    round_trip(&c);
}

Test(config, dump_writes_readable_values)
{
    crp_config c;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    crp_config_defaults(&c);
    c.scoring.half_life_ms = 5400000;
    f = open_memstream(&text, &len);
    cr_assert(eq(int, crp_config_dump(&c, f), 0));
    cr_assert(eq(int, fclose(f), 0));
    cr_assert(strstr(text, "\nmax_frame_bytes = 4MiB\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\nhalf_life = 90m\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\nprobation = 1d\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\nauto_release_after = 0\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\nphish_ratio = 0.1\n") != NULL, "%s", text);
    cr_assert(strstr(text, "\nconnect =\n") != NULL, "%s", text);
    free(text);
}

Test(config, dump_refuses_values_the_file_cannot_carry)
{
    crp_config c;
    FILE *f = fopen("/dev/null", "w");

    cr_assert(f != NULL);
    crp_config_defaults(&c);
    strcpy(c.alerts.notify_command, "echo a ; rm b");
    errno = 0;
    cr_assert(eq(int, crp_config_dump(&c, f), -1));
    cr_assert(eq(int, errno, EINVAL));
    strcpy(c.alerts.notify_command, "two\nlines");
    cr_assert(eq(int, crp_config_dump(&c, f), -1));
    strcpy(c.alerts.notify_command, "");
    c.scoring.action = (crp_action)7;
    cr_assert(eq(int, crp_config_dump(&c, f), -1));
    fclose(f);
}

/* ------------------------------------------------------------------------ */
/* The shipped example */

/* The repository root, from this file's path (CMake compiles with absolute
 * paths) or $CONNREP_SOURCE_DIR. */
static void shipped_config_path(char *out, size_t size)
{
    const char *env = getenv("CONNREP_SOURCE_DIR");
    static const char tail[] = "tests/core/test_config.c";
    const char *file = __FILE__;
    size_t n = strlen(file);

    if (env != NULL) {
        snprintf(out, size, "%s/etc/connrep.conf", env);
        return;
    }
    cr_assert(n >= sizeof(tail) - 1 && strcmp(file + n - (sizeof(tail) - 1), tail) == 0,
              "cannot locate the source tree from %s; set CONNREP_SOURCE_DIR", file);
    snprintf(out, size, "%.*setc/connrep.conf", (int)(n - (sizeof(tail) - 1)), file);
}

Test(config, shipped_example_loads_as_defaults)
{
    char path[PATH_MAX], err[512];
    crp_config c, d;

    shipped_config_path(path, sizeof(path));
    cr_assert(eq(int, crp_config_load(&c, path, err, sizeof(err)), CRP_OK), "%s", err);
    crp_config_defaults(&d);
    assert_config_eq(&c, &d);
    assert_protocol_defaults(&c);
}

Test(config, shipped_example_identity_is_valid_when_uncommented)
{
    char src[PATH_MAX], path[PATH_MAX], err[512];
    static char text[16384];
    crp_config c;
    FILE *f;
    size_t n, len = 0;
    char line[512];

    /* Uncommenting the example section (the lines after "[identity alice]"
     * up to the end) must give a valid file with one identity. */
    shipped_config_path(src, sizeof(src));
    f = fopen(src, "r");
    cr_assert(f != NULL);
    bool in_example = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, ";[identity alice]", 17) == 0)
            in_example = true;
        n = strlen(line);
        if (in_example && line[0] == ';') {
            memcpy(text + len, line + 1, n - 1);
            len += n - 1;
        } else {
            memcpy(text + len, line, n);
            len += n;
        }
        cr_assert(len < sizeof(text) - 512);
    }
    fclose(f);
    text[len] = '\0';
    cr_assert(in_example);
    write_file("example.conf", text, path, sizeof(path));
    cr_assert(eq(int, crp_config_load(&c, path, err, sizeof(err)), CRP_OK), "%s", err);
    cr_assert(eq(sz, c.n_identities, 1));
    cr_assert(eq(str, c.identities[0].name, "alice"));
    cr_assert(eq(int, c.identities[0].role, CRP_ROLE_SECURITY_ADMINISTRATOR));
    cr_assert(eq(str, c.identities[0].email, "alice@example.com"));
    crp_config_fini(&c);
}

Test(config, names)
{
    cr_assert(
        eq(str, (char *)crp_role_name(CRP_ROLE_ORGANIZATION_MANAGEMENT), "OrganizationManagement"));
    cr_assert(eq(str, (char *)crp_role_name(CRP_ROLE_VIEW_ONLY_ORGANIZATION_MANAGEMENT),
                 "ViewOnlyOrganizationManagement"));
    cr_assert(eq(str, (char *)crp_role_name((crp_role)99), "?"));
    cr_assert(eq(str, (char *)crp_action_name(CRP_ACTION_ALERT_ONLY), "alert_only"));
    cr_assert(eq(str, (char *)crp_action_name((crp_action)-1), "?"));
}

Test(config, failed_load_frees_identities)
{
    /* Identities were added before the error; the failed load must leave
     * none behind (expect_error checks cfg is the defaults; ASan or
     * valgrind would report a leak). */
    expect_error("[identity a]\npublic_key = HelloWorldHelloWorldHelloWorldHelloWorld\n"
                 "role = GlobalReader\n[identity b]\n"
                 "public_key = Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\nrole = GlobalReader\n"
                 "[engine]\nshards = 5\n",
                 8, "[engine] shards", NULL);
}

Test(config, many_identities_grow_the_array)
{
    static char text[65536];
    crp_config c;
    size_t n = 0;
    char key[CRP_Z85_KEY_LEN + 1];

    /* Distinct keys: vary the first group, which stays below 2^32. */
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "0000%cHelloWorldHelloWorldHelloWorldHello",
                 "0123456789abcdefghijklmnopqrstuvwxyzABCD"[i]);
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "[identity user%d]\npublic_key = %s\nrole = SecurityReader\n"
                              "tenant = t%d\n",
                              i, key, i);
    }
    load_ok(&c, text);
    cr_assert(eq(sz, c.n_identities, 40));
    cr_assert(eq(str, c.identities[39].name, "user39"));
    cr_assert(eq(str, c.identities[39].tenant, "t39"));
    round_trip(&c);
    crp_config_fini(&c);
}
