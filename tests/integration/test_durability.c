/* Durability of the real daemon (docs/reliability.md): state changes
 * acknowledged before a SIGKILL are there after a restart, a corrupt
 * journal stops start-up with a message naming the file, and a torn tail is
 * cut.
 *
 * The kill -9 loop prints the figures docs/reliability.md quotes:
 * "kills survived: N, blocks lost: 0, unblocks lost: 0, restart p50 X ms".
 * Its seed is fixed, so a failure replays the same sequence of operations
 * (the moment of each kill still depends on the machine's timing).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "harness.h"

static crp_harness H;

#define ADMIN_MS 3000
#define WAIT_MS  5000
#define ADMIN    "om_all"
/* A lookup's state byte for a restricted connector (PROTOCOL section 2). */
#define RESTRICTED 2

static void setup(void)
{
    cr_assert(eq(int, crp_harness_init(&H), 0));
    cr_assert(ne(
        ptr, (void *)crp_harness_add_identity(&H, ADMIN, "OrganizationManagement", "*", ""), NULL));
    /* One malware message restricts, so feed traffic makes restrictions. */
    crp_harness_set(&H, "scoring", "malware", "1");
}

/* The state_dir tmpfs of the disk-full test, unmounted before the harness
 * removes its directory. */
static bool tmpfs_mounted;

static void teardown(void)
{
    if (tmpfs_mounted && crp_harness_running(&H))
        (void)crp_harness_stop(&H, SIGKILL, 10000);
    if (tmpfs_mounted && umount2(H.state_dir, MNT_DETACH) == 0)
        tmpfs_mounted = false;
    crp_harness_fini(&H);
}

TestSuite(durability, .init = setup, .fini = teardown, .timeout = 150);

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

/* An admin verb on one connector; "ok", the error code, or NULL when no
 * answer came (the daemon was killed while it ran). */
static const char *admin_verb_within(const char *verb, const char *id, char *code, size_t cap,
                                     int timeout_ms)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"verb\":\"%s\",\"connector_id\":\"%s\",\"reason\":\"durability test\"}", verb, id);
    json_t *r = crp_harness_admin(&H, ADMIN, body, timeout_ms);
    if (r == NULL)
        return NULL;
    if (json_is_true(json_object_get(r, "ok"))) {
        snprintf(code, cap, "ok");
    } else {
        const char *c = json_string_value(json_object_get(json_object_get(r, "error"), "code"));
        snprintf(code, cap, "%s", c != NULL ? c : "?");
    }
    json_decref(r);
    return code;
}

static const char *admin_verb(const char *verb, const char *id, char *code, size_t cap)
{
    return admin_verb_within(verb, id, code, cap, ADMIN_MS);
}

static crp_reply_result look(const char *id)
{
    crp_reply_result res;
    char text[512];
    memset(&res, 0, sizeof res);
    cr_assert(eq(int, crp_harness_lookup(&H, id, &res, text, sizeof text), 0), "lookup %s", id);
    return res;
}

static void start(void)
{
    cr_assert(eq(int, crp_harness_start(&H), 0), "connrepd did not start");
}

static void kill9(void)
{
    /* 128 + SIGKILL, or the status of a daemon that already died. */
    (void)crp_harness_stop(&H, SIGKILL, 10000);
}

static void journal_path(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/journal", H.state_dir);
}

/* The alert policy as get-alert-policy answers it, in one line:
 * "enabled email recipients daily_limit". */
static void policy_now(char *buf, size_t cap)
{
    json_t *r = crp_harness_admin(&H, ADMIN, "{\"verb\":\"get-alert-policy\"}", ADMIN_MS);
    cr_assert(ne(ptr, r, NULL));
    json_t *p = json_object_get(r, "result");
    bool ok = json_is_true(json_object_get(r, "ok"));
    cr_assert(ok, "get-alert-policy was refused");
    snprintf(buf, cap, "%d %d %s %lld", json_is_true(json_object_get(p, "enabled")),
             json_is_true(json_object_get(p, "email")),
             json_string_value(json_object_get(p, "recipients")),
             (long long)json_integer_value(json_object_get(p, "daily_limit")));
    json_decref(r);
}

static void set_policy(const char *fields)
{
    char body[512];
    snprintf(body, sizeof body, "{\"verb\":\"set-alert-policy\",%s}", fields);
    json_t *r = crp_harness_admin(&H, ADMIN, body, ADMIN_MS);
    cr_assert(ne(ptr, r, NULL));
    bool ok = json_is_true(json_object_get(r, "ok"));
    cr_assert(ok, "set-alert-policy %s was refused", fields);
    json_decref(r);
}

/* ------------------------------------------------------------------------ */

/* An acknowledged alert-policy edit survives a SIGKILL (the journal's
 * POLICY record) and a clean restart (the snapshot's copy: the final
 * snapshot leaves nothing to replay); the config file's [alerts] only
 * applies to a new state_dir. */
Test(durability, alert_policy_edits_survive_kill_and_restart)
{
    char before[1200], after[1200];
    start();
    policy_now(before, sizeof before);
    cr_assert(eq(str, before, "0 1 TenantAdmins 3"), "the config's policy: %s", before);

    set_policy("\"enabled\":true,\"email\":false,\"recipients\":\"soc@example.org, "
               "noc@example.org\",\"daily_limit\":2");
    policy_now(before, sizeof before);
    cr_assert(eq(str, before, "1 0 soc@example.org,noc@example.org 2"), "%s", before);
    kill9();
    start();
    policy_now(after, sizeof after);
    cr_assert(eq(str, after, before), "after kill -9: %s", after);
    cr_assert(crp_harness_log_contains(&H, "alert policy restored", WAIT_MS));

    set_policy("\"daily_limit\":1,\"email\":true");
    policy_now(before, sizeof before);
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));
    /* The final snapshot rotated the journal: a bare 32-byte segment
     * header, no record, so the policy below comes from the snapshot. */
    char path[CRP_HARNESS_PATH_MAX + 16];
    struct stat st;
    journal_path(path, sizeof path);
    cr_assert(eq(int, stat(path, &st), 0));
    cr_assert(eq(i64, (long long)st.st_size, 32));
    start();
    policy_now(after, sizeof after);
    cr_assert(eq(str, after, "1 1 soc@example.org,noc@example.org 1"), "after SIGTERM: %s", after);
}

/* ------------------------------------------------------------------------ */

/* A block and an unblock, each acknowledged by the admin socket, and a
 * restriction the engine made from the feed, survive a SIGKILL. */
Test(durability, acknowledged_block_and_unblock_survive_kill)
{
    char code[64];
    crp_harness_set(&H, "engine", "snapshot_every", "0");
    start();
    cr_assert(eq(str, (char *)admin_verb("block-connector", "d-block", code, sizeof code), "ok"));
    cr_assert(eq(int,
                 crp_harness_feed_same(&H, "d-unblock", CRP_FEED_VERDICT_MALWARE, 1,
                                       crp_harness_now_ms(), 1),
                 0));
    cr_assert(eq(
        int,
        crp_harness_feed_same(&H, "d-engine", CRP_FEED_VERDICT_MALWARE, 1, crp_harness_now_ms(), 1),
        0));
    uint64_t deadline = mono_ms() + WAIT_MS;
    while ((look("d-unblock").state != 2 || look("d-engine").state != 2) && mono_ms() < deadline)
        pause_ms(10);
    cr_assert(eq(u8, look("d-unblock").state, 2));
    cr_assert(eq(
        str, (char *)admin_verb("remove-blocked-connector", "d-unblock", code, sizeof code), "ok"));
    /* The engine's own restriction is durable once its group commit ran;
     * the stats count the committed records. */
    cr_assert(ge(int, (int)crp_harness_wait_stat(&H, "journal_records", 4, WAIT_MS), 4));
    kill9();

    start();
    crp_reply_result b = look("d-block"), u = look("d-unblock"), e = look("d-engine");
    cr_assert(eq(u8, b.state, 2), "the block was lost");
    cr_assert(ne(u8, b.reasons, 0));
    cr_assert(eq(u8, e.state, 2), "the engine's restriction was lost");
    cr_assert(ne(u8, u.state, 2), "the unblock was lost");
    cr_assert(ne(u8, u.state, 0));
    cr_assert(crp_harness_log_contains(&H, "replayed 4 journal records", WAIT_MS));
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0));

    /* A clean stop wrote a final snapshot: nothing left to replay. */
    start();
    cr_assert(eq(u8, look("d-block").state, 2));
    cr_assert(ne(u8, look("d-unblock").state, 2));
    cr_assert(crp_harness_log_contains(&H, "replayed 0 journal records", WAIT_MS));
}

/* ------------------------------------------------------------------------ */
/* The kill -9 loop                                                          */
/* ------------------------------------------------------------------------ */

#define POOL       24
#define ITERATIONS 30
#define SEED       20261204u

enum expect { EXP_UNKNOWN = 0, EXP_RESTRICTED = 1, EXP_FREE = 2 };

/* How long the loop waits for an admin answer: one that comes later is
 * counted as in flight at the kill (either outcome allowed), so a short
 * wait only costs coverage, never a false failure. */
#define LOOP_ADMIN_MS 800

typedef struct killer {
    pid_t pid;
    long after_ms;
    /* Set once the signal is sent. Release/acquire: the main thread stops
     * sending traffic when it sees it; nothing else is published. */
    _Atomic bool fired;
} killer;

/* Kills the daemon after a delay, from its own thread, so that the kill
 * lands while the main thread is in the middle of its traffic. */
static void *killer_main(void *arg)
{
    killer *k = arg;
    pause_ms(k->after_ms);
    kill(k->pid, SIGKILL);
    atomic_store_explicit(&k->fired, true, memory_order_release); /* see killer */
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(durability, kill9_loop_loses_nothing_acknowledged)
{
    enum expect exp[POOL];
    char ids[POOL][16], code[64];
    uint64_t restart_ms[ITERATIONS];
    unsigned seed = SEED, blocks = 0, unblocks = 0, in_flight = 0, feed_frames = 0;
    unsigned blocks_lost = 0, unblocks_lost = 0, kills = 0;

    /* Snapshots every 200 ms, so some kills land during one. Room for every
     * restricted throw-away connector the feed makes (see the report on a
     * table full of restricted connectors in docs/reliability.md). */
    crp_harness_set(&H, "engine", "snapshot_every", "200ms");
    crp_harness_set(&H, "engine", "max_connectors", "16384");
    for (int i = 0; i < POOL; i++) {
        snprintf(ids[i], sizeof ids[i], "k-%02d", i);
        exp[i] = EXP_UNKNOWN;
    }
    for (int it = 0; it < ITERATIONS; it++) {
        uint64_t t0 = mono_ms();
        start();
        restart_ms[it] = mono_ms() - t0;

        /* Every change acknowledged before the last kill is there, and no
         * connector is half-changed (restricted without a reason, or free
         * with one). */
        for (int i = 0; i < POOL; i++) {
            crp_reply_result r = look(ids[i]);
            bool restricted = r.state == 2;
            if (restricted)
                cr_assert(ne(u8, r.reasons, 0), "%s restricted without a reason", ids[i]);
            else if (r.state != 0)
                cr_assert(eq(u8, r.reasons, 0), "%s free with reasons %u", ids[i], r.reasons);
            if (exp[i] == EXP_RESTRICTED && !restricted)
                blocks_lost++;
            if (exp[i] == EXP_FREE && restricted)
                unblocks_lost++;
            /* What is there now is what the next iteration builds on. */
            exp[i] = restricted ? EXP_RESTRICTED : r.state != 0 ? EXP_FREE : EXP_UNKNOWN;
        }
        cr_assert(eq(u32, blocks_lost, 0), "a block acknowledged before kill %d was lost", it);
        cr_assert(eq(u32, unblocks_lost, 0), "an unblock acknowledged before kill %d was lost", it);

        killer k = {.pid = H.pid, .after_ms = 30 + (long)(rand_r(&seed) % 400u)};
        pthread_t th;
        cr_assert(eq(int, pthread_create(&th, NULL, killer_main, &k), 0));
        for (int op = 0; !atomic_load_explicit(&k.fired, memory_order_acquire) /* see killer */;
             op++) {
            int i = (int)(rand_r(&seed) % POOL);
            /* Feed traffic between the admin verbs: engine restrictions of
             * throw-away connectors, and clean mail for the pool. */
            char fid[32];
            snprintf(fid, sizeof fid, "f-%d-%d", it, op);
            (void)crp_harness_feed_same(&H, fid, op % 4 == 0 ? CRP_FEED_VERDICT_MALWARE : 0u, 1,
                                        crp_harness_now_ms(), 4);
            feed_frames++;
            bool block = exp[i] != EXP_RESTRICTED;
            const char *c =
                admin_verb_within(block ? "block-connector" : "remove-blocked-connector", ids[i],
                                  code, sizeof code, LOOP_ADMIN_MS);
            if (c == NULL) {
                /* Killed before the answer: either outcome is allowed. */
                exp[i] = EXP_UNKNOWN;
                in_flight++;
                break;
            }
            if (strcmp(c, "ok") == 0) {
                exp[i] = block ? EXP_RESTRICTED : EXP_FREE;
                if (block)
                    blocks++;
                else
                    unblocks++;
            } else {
                /* Refused (e.g. the connector was released meanwhile):
                 * nothing was acknowledged, so nothing is expected. */
                exp[i] = EXP_UNKNOWN;
            }
        }
        pthread_join(th, NULL);
        kill9();
        kills++;
    }
    /* The last kill's survivors. */
    start();
    for (int i = 0; i < POOL; i++) {
        bool restricted = look(ids[i]).state == 2;
        blocks_lost += exp[i] == EXP_RESTRICTED && !restricted;
        unblocks_lost += exp[i] == EXP_FREE && restricted;
    }
    qsort(restart_ms, ITERATIONS, sizeof restart_ms[0], cmp_u64);
    fprintf(stderr,
            "kills survived: %u, blocks lost: %u, unblocks lost: %u, restart p50 %llu ms "
            "(max %llu ms; %u blocks and %u unblocks acknowledged, %u in flight at a kill, "
            "%u feed frames, seed %u)\n",
            kills, blocks_lost, unblocks_lost, (unsigned long long)restart_ms[ITERATIONS / 2],
            (unsigned long long)restart_ms[ITERATIONS - 1], blocks, unblocks, in_flight,
            feed_frames, SEED);
    cr_assert(eq(u32, blocks_lost, 0));
    cr_assert(eq(u32, unblocks_lost, 0));
    cr_assert(eq(u32, kills, ITERATIONS));
}

/* ------------------------------------------------------------------------ */
/* Damaged journals                                                          */
/* ------------------------------------------------------------------------ */

/* Three blocks, each its own group commit (the admin waits for each), then
 * a SIGKILL, so the journal holds three records and no snapshot covers
 * them. Returns the journal's size. */
static off_t three_records_then_kill(void)
{
    char code[64], path[512];
    struct stat st;
    crp_harness_set(&H, "engine", "snapshot_every", "0");
    start();
    cr_assert(eq(str, (char *)admin_verb("block-connector", "c-1", code, sizeof code), "ok"));
    cr_assert(eq(str, (char *)admin_verb("block-connector", "c-2", code, sizeof code), "ok"));
    cr_assert(eq(str, (char *)admin_verb("block-connector", "c-3", code, sizeof code), "ok"));
    kill9();
    journal_path(path, sizeof path);
    cr_assert(eq(int, stat(path, &st), 0));
    return st.st_size;
}

static void patch(const char *path, off_t off, const void *bytes, size_t n, bool append)
{
    int fd = open(path, O_WRONLY | (append ? O_APPEND : 0));
    cr_assert(ge(int, fd, 0), "%s: %s", path, strerror(errno));
    ssize_t w = append ? write(fd, bytes, n) : pwrite(fd, bytes, n, off);
    cr_assert(eq(sz, (size_t)w, n));
    close(fd);
}

/* A damaged newest snapshot: start-up falls back to snapshot.prev and
 * replays the older journal segment too, so nothing is lost; with both
 * snapshots damaged it stops, naming the file and the offset. */
Test(durability, corrupt_snapshot_falls_back_to_the_previous_one)
{
    char code[64], path[512], out[4096], err[16384];
    crp_harness_set(&H, "engine", "snapshot_every", "0");
    start();
    cr_assert(eq(str, (char *)admin_verb("block-connector", "snap-a", code, sizeof code), "ok"));
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0)); /* snapshot 1: a */
    start();
    cr_assert(eq(str, (char *)admin_verb("block-connector", "snap-b", code, sizeof code), "ok"));
    cr_assert(eq(int, crp_harness_stop(&H, SIGTERM, 10000), 0)); /* snapshot 2: a, b */

    /* A byte in the middle of the newest snapshot's body. */
    struct stat st;
    snprintf(path, sizeof path, "%s/snapshot", H.state_dir);
    cr_assert(eq(int, stat(path, &st), 0));
    unsigned char x = 0x5a;
    patch(path, st.st_size / 2 + 1, &x, 1, false);
    start();
    cr_assert(eq(u8, look("snap-a").state, RESTRICTED));
    cr_assert(eq(u8, look("snap-b").state, RESTRICTED), "b comes from journal.prev");
    cr_assert(crp_harness_log_contains(&H, "trying", WAIT_MS));
    kill9(); /* no final snapshot: both files stay as they are */

    /* Both damaged: no silent start on an empty table. */
    snprintf(path, sizeof path, "%s/snapshot.prev", H.state_dir);
    cr_assert(eq(int, stat(path, &st), 0));
    patch(path, st.st_size / 2 + 1, &x, 1, false);
    const char *args[] = {"--config", H.config_path, "--foreground", NULL};
    int rc = crp_harness_run(args, out, sizeof out, err, sizeof err);
    cr_assert(eq(int, rc, 1), "stderr: %s", err);
    cr_assert(ne(ptr, strstr(err, "snapshot"), NULL), "stderr: %s", err);
    cr_assert(ne(ptr, strstr(err, "offset"), NULL), "stderr: %s", err);
}

Test(durability, corrupt_journal_middle_stops_start_up)
{
    char path[512], out[4096], err[16384];
    off_t size = three_records_then_kill();
    journal_path(path, sizeof path);
    /* A byte inside the first record's payload (after the 32-byte segment
     * header and the 25-byte record header): two intact records follow. */
    cr_assert(gt(sz, (size_t)size, 100));
    unsigned char x = 0xff;
    patch(path, 32 + 25 + 10, &x, 1, false);

    const char *args[] = {"--config", H.config_path, "--foreground", NULL};
    int st = crp_harness_run(args, out, sizeof out, err, sizeof err);
    cr_assert(eq(int, st, 1), "stderr: %s", err);
    cr_assert(ne(ptr, strstr(err, "journal"), NULL), "stderr: %s", err);
    cr_assert(ne(ptr, strstr(err, H.state_dir), NULL), "stderr: %s", err);
    cr_assert(ne(ptr, strstr(err, "offset"), NULL), "stderr: %s", err);
}

Test(durability, torn_journal_tail_is_cut)
{
    char path[512];
    struct stat st;
    off_t size = three_records_then_kill();
    journal_path(path, sizeof path);
    /* Half of a record header: what a crash in the middle of a write
     * leaves. */
    static const unsigned char torn[] = {'C', 'R', 'P', 'R', 40, 0, 0, 0, 1, 2, 3};
    patch(path, 0, torn, sizeof torn, true);

    start();
    cr_assert(crp_harness_log_contains(&H, "cut a torn last record", WAIT_MS));
    cr_assert(eq(u8, look("c-1").state, 2));
    cr_assert(eq(u8, look("c-2").state, 2));
    cr_assert(eq(u8, look("c-3").state, 2));
    cr_assert(eq(int, stat(path, &st), 0));
    cr_assert(eq(sz, (size_t)st.st_size, (size_t)size));
}

/* ------------------------------------------------------------------------ */
/* Kills at chosen moments of a snapshot and a rotation                       */
/* ------------------------------------------------------------------------ */

/* SIGKILLs the daemon the moment the nth event of kind `want` (IN_CREATE,
 * IN_MODIFY) happens to file `name` in state_dir, seen through inotify;
 * false when it did not happen within timeout_ms. The watch is set before
 * anything is awaited, so no event is missed. */
static bool kill_at_file_event(const char *name, uint32_t want, int nth, int timeout_ms)
{
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    cr_assert(ge(int, fd, 0), "inotify_init1: %s", strerror(errno));
    cr_assert(ge(int, inotify_add_watch(fd, H.state_dir, IN_CREATE | IN_MODIFY), 0),
              "inotify_add_watch %s: %s", H.state_dir, strerror(errno));
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    int seen = 0;
    bool fired = false;
    _Alignas(struct inotify_event) char buf[8192];
    while (!fired && mono_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - mono_ms())) <= 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf);
        for (ssize_t off = 0; off < n && !fired;) {
            const struct inotify_event *e = (const struct inotify_event *)(buf + off);
            if ((e->mask & want) && e->len > 0 && strcmp(e->name, name) == 0 && ++seen == nth) {
                kill(H.pid, SIGKILL);
                fired = true;
            }
            off += (ssize_t)(sizeof *e + e->len);
        }
    }
    close(fd);
    return fired;
}

/* Fills the table with n clean connectors "fill-<i>", so that a snapshot
 * takes long enough to be caught in the middle. */
static void fill_clean(int n)
{
    static crp_feed_event ev[1000];
    static char ids[1000][24];
    for (int done = 0; done < n;) {
        int k = n - done < 1000 ? n - done : 1000;
        for (int i = 0; i < k; i++) {
            int len = snprintf(ids[i], sizeof ids[i], "fill-%d", done + i);
            ev[i] = (crp_feed_event){.recipients = 1, .id = ids[i], .id_len = (size_t)len};
        }
        cr_assert(eq(int, crp_harness_feed(&H, 0, 0, ev, (size_t)k), 0));
        done += k;
    }
    cr_assert(ge(i64, crp_harness_wait_stat(&H, "events_applied", n, 30000), n));
}

/* SIGKILL at the start of a snapshot write, in its middle, and at the start
 * of the journal rotation that follows one, each caught by inotify rather
 * than by chance: every block and unblock acknowledged before is there
 * after the restart, and what the kill left half-written is not used. */
Test(durability, kill_during_snapshot_and_rotation_loses_nothing)
{
    static const struct {
        const char *file;
        uint32_t event;
        int nth;
        const char *what;
    } moments[] = {
        {"snapshot.tmp", IN_CREATE, 1, "the snapshot's temp file was created"},
        {"snapshot.tmp", IN_MODIFY, 8, "the snapshot was being written"},
        {"journal.tmp", IN_CREATE, 1, "the journal rotation began"},
    };
    enum { N = 3 * 8 };
    char id[32], code[64];
    bool blocked[N] = {false};
    crp_harness_set(&H, "engine", "snapshot_every", "300ms");
    crp_harness_set(&H, "engine", "max_connectors", "262144");
    start();
    fill_clean(100000);
    for (size_t m = 0; m < sizeof moments / sizeof moments[0]; m++) {
        /* Eight acknowledged changes per round: new blocks, and unblocks of
         * some from the round before. */
        for (int i = 0; i < 8; i++) {
            int k = (int)m * 8 + i;
            snprintf(id, sizeof id, "snapkill-%d", k);
            cr_assert(eq(str, (char *)admin_verb("block-connector", id, code, sizeof code), "ok"));
            blocked[k] = true;
            if (m > 0 && i % 2 == 0) {
                int u = k - 8;
                snprintf(id, sizeof id, "snapkill-%d", u);
                cr_assert(eq(str,
                             (char *)admin_verb("remove-blocked-connector", id, code, sizeof code),
                             "ok"));
                blocked[u] = false;
            }
        }
        cr_assert(kill_at_file_event(moments[m].file, moments[m].event, moments[m].nth, 10000),
                  "never saw: %s", moments[m].what);
        (void)crp_harness_stop(&H, SIGKILL, 10000);
        char path[CRP_HARNESS_PATH_MAX + 16];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", H.state_dir, moments[m].file);
        cr_assert(eq(int, stat(path, &st), 0), "the kill did not land while %s", moments[m].what);
        start();
        for (int k = 0; k < (int)(m + 1) * 8; k++) {
            snprintf(id, sizeof id, "snapkill-%d", k);
            uint8_t state = look(id).state;
            /* An unblocked connector is on probation, or active without one. */
            if (blocked[k])
                cr_assert(eq(u8, state, RESTRICTED), "%s after a kill when %s", id,
                          moments[m].what);
            else
                cr_assert(state == 1 || state == 3, "%s is in state %u after a kill when %s", id,
                          state, moments[m].what);
        }
        fprintf(stderr, "durability figure: killed when %s (%s, %lld bytes): nothing lost\n",
                moments[m].what, moments[m].file, (long long)st.st_size);
    }
}

/* ------------------------------------------------------------------------ */
/* Disk full                                                                  */
/* ------------------------------------------------------------------------ */

static bool write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

/* Puts dir on a tmpfs of its own (size as mount(8) takes it), in a private
 * mount namespace of this test process: the daemon it spawns inherits it,
 * and nothing outside sees it. As root only the mount namespace is new;
 * otherwise a user namespace maps this user to root in it (where the
 * kernel allows that). False, with the reason, when neither works. */
static bool private_tmpfs(const char *dir, const char *size, char *why, size_t cap)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid != 0) {
        char map[64];
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
            snprintf(why, cap, "unshare(CLONE_NEWUSER|CLONE_NEWNS): %s", strerror(errno));
            return false;
        }
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        bool ok =
            write_file("/proc/self/uid_map", map) && write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        if (!ok || !write_file("/proc/self/gid_map", map)) {
            snprintf(why, cap, "cannot map the user namespace: %s", strerror(errno));
            return false;
        }
    } else if (unshare(CLONE_NEWNS) != 0) {
        snprintf(why, cap, "unshare(CLONE_NEWNS): %s", strerror(errno));
        return false;
    }
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=0700", size);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, cap, "mkdir %s: %s", dir, strerror(errno));
        return false;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        snprintf(why, cap, "mount tmpfs on %s: %s", dir, strerror(errno));
        return false;
    }
    return true;
}

/* Fills the file system of path with one file until it is full; returns
 * the bytes written. */
static long long fill_disk(const char *path)
{
    static char chunk[4096];
    long long total = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(ge(int, fd, 0), "%s: %s", path, strerror(errno));
    for (;;) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w <= 0)
            break;
        total += w;
    }
    cr_assert(eq(int, errno, ENOSPC), "filling %s stopped with %s", path, strerror(errno));
    close(fd);
    return total;
}

/* The next event with this topic (others are skipped), or false after
 * timeout_ms. Its body's connector_id, if any, goes to id. */
static bool event_with_topic(const char *topic, int timeout_ms, char *id, size_t cap)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return false;
        crp_harness_event ev;
        if (crp_harness_next_event(&H, (int)(deadline - now), &ev) != 0)
            return false;
        bool match = strcmp(ev.topic, topic) == 0;
        if (match && id != NULL) {
            const char *c = json_string_value(json_object_get(ev.body, "connector_id"));
            snprintf(id, cap, "%s", c != NULL ? c : "");
        }
        crp_harness_event_fini(&ev);
        if (match)
            return true;
    }
}

/* The real daemon with its state_dir on a small tmpfs that fills up: the
 * journal fails, the alarm goes out, lookups keep answering (the new
 * restriction included), nothing is acknowledged or published until it is
 * durable; when space returns the daemon heals itself without a restart,
 * publishes what it held back, acknowledges again, and a kill -9 afterwards
 * loses nothing. */
Test(durability, disk_full_acknowledges_nothing_and_recovers_when_space_returns)
{
    char why[512], code[64], id[300], ballast[CRP_HARNESS_PATH_MAX + 16];
    if (!private_tmpfs(H.state_dir, "4m", why, sizeof why))
        cr_skip_test("no private tmpfs for the state_dir here: %s", why);
    tmpfs_mounted = true;
    snprintf(ballast, sizeof ballast, "%s/ballast", H.state_dir);

    start();
    cr_assert(eq(int, crp_harness_subscribe(&H), 0));
    cr_assert(eq(str, (char *)admin_verb("block-connector", "df-before", code, sizeof code), "ok"));
    cr_assert(event_with_topic("state.blocked", WAIT_MS, id, sizeof id));
    cr_assert(eq(str, id, "df-before"));

    /* The disk fills up; the feed restricts connectors. A journal record
     * is about 100 bytes and the journal's last page may have room for a
     * few, so enough of them to need new pages. */
    long long filled = fill_disk(ballast);
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "df-during-%d", i);
        cr_assert(
            eq(int,
               crp_harness_feed_same(&H, id, CRP_FEED_VERDICT_MALWARE, 1, crp_harness_now_ms(), 1),
               0));
    }
    /* Restrictions made durable before the disk filled are published now;
     * the alarm follows them. */
    bool seen[N] = {false};
    int published = 0;
    uint64_t deadline = mono_ms() + WAIT_MS;
    bool alarm = false;
    while (!alarm && mono_ms() < deadline) {
        crp_harness_event ev;
        if (crp_harness_next_event(&H, (int)(deadline - mono_ms()), &ev) != 0)
            break;
        int k = -1;
        const char *c = json_string_value(json_object_get(ev.body, "connector_id"));
        alarm = strcmp(ev.topic, "alarm.journal") == 0;
        if (strcmp(ev.topic, "state.restricted") == 0 && c != NULL &&
            sscanf(c, "df-during-%d", &k) == 1 && k >= 0 && k < N && !seen[k]) {
            seen[k] = true;
            published++;
        }
        crp_harness_event_fini(&ev);
    }
    cr_assert(alarm, "no alarm.journal event");
    json_t *st = crp_harness_stats(&H, ADMIN_MS);
    cr_assert(ne(ptr, st, NULL), "the daemon stopped answering");
    cr_assert(eq(i64, crp_harness_stat(st, "journal_failed"), 1));
    cr_assert(ge(i64, crp_harness_stat(st, "journal_errors"), 1));
    json_decref(st);
    /* The batch that failed is held back (the stats catch up with the
     * alarm within a moment). */
    long long held = crp_harness_wait_stat(&H, "events_held", 1, WAIT_MS);
    cr_assert(ge(i64, held, 1));
    /* Lookups keep answering, with every restriction made meanwhile. */
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "df-during-%d", i);
        cr_assert(eq(u8, look(id).state, RESTRICTED), "%s", id);
    }
    cr_assert(eq(u8, look("df-before").state, RESTRICTED));
    /* An admin change is answered, and not acknowledged. */
    cr_assert(
        ne(ptr, (void *)admin_verb("block-connector", "df-refused", code, sizeof code), NULL));
    cr_assert(eq(str, code, "unavailable"));
    cr_assert(crp_harness_log_contains(&H, "ALARM journal failed", WAIT_MS));

    /* Space returns: within the heal interval (1 s, then doubling) a
     * snapshot heals the journal and the held restrictions are published,
     * each once. */
    cr_assert(eq(int, unlink(ballast), 0));
    deadline = mono_ms() + 20000;
    while (published < N && mono_ms() < deadline) {
        crp_harness_event ev;
        if (crp_harness_next_event(&H, (int)(deadline - mono_ms()), &ev) != 0)
            break;
        int k = -1;
        const char *c = json_string_value(json_object_get(ev.body, "connector_id"));
        if (strcmp(ev.topic, "state.restricted") == 0 && c != NULL &&
            sscanf(c, "df-during-%d", &k) == 1 && k >= 0 && k < N) {
            cr_assert(not(seen[k]), "df-during-%d published twice", k);
            seen[k] = true;
            published++;
        }
        crp_harness_event_fini(&ev);
    }
    cr_assert(eq(int, published, N), "the held restrictions were not all published");
    st = crp_harness_stats(&H, ADMIN_MS);
    cr_assert(ne(ptr, st, NULL));
    cr_assert(eq(i64, crp_harness_stat(st, "journal_failed"), 0));
    cr_assert(eq(i64, crp_harness_stat(st, "events_held"), 0));
    json_decref(st);
    cr_assert(eq(str, (char *)admin_verb("block-connector", "df-after", code, sizeof code), "ok"));

    /* The audit log is whole: the restriction made during the failure has
     * its line, and search reads past whatever the full disk cut. */
    json_t *r = crp_harness_admin(
        &H, ADMIN, "{\"verb\":\"search-audit-log\",\"connector_id\":\"df-during-99\"}", ADMIN_MS);
    cr_assert(ne(ptr, r, NULL));
    bool ok = json_is_true(json_object_get(r, "ok"));
    cr_assert(ok, "search-audit-log failed after the disk was full");
    size_t found = json_array_size(json_object_get(json_object_get(r, "result"), "entries"));
    json_decref(r);
    cr_assert(ge(int, (int)found, 1));

    /* Every line of the audit log is whole JSON: what the full disk cut
     * off was removed again, so no later line runs on from a torn one. */
    char audit[CRP_HARNESS_PATH_MAX + 16], line[16384];
    snprintf(audit, sizeof audit, "%s/audit.log", H.state_dir);
    FILE *f = fopen(audit, "r");
    cr_assert(ne(ptr, f, NULL), "%s: %s", audit, strerror(errno));
    int lines = 0, audited = 0;
    bool has_line[N] = {false};
    while (fgets(line, sizeof line, f) != NULL) {
        json_t *o = json_loads(line, 0, NULL);
        cr_assert(ne(ptr, o, NULL), "audit line %d is not JSON: %.200s", lines + 1, line);
        const char *verb = json_string_value(json_object_get(o, "verb"));
        const char *c = json_string_value(json_object_get(o, "target"));
        int k = -1;
        if (verb != NULL && strcmp(verb, "state.restricted") == 0 && c != NULL &&
            sscanf(c, "df-during-%d", &k) == 1 && k >= 0 && k < N && !has_line[k]) {
            has_line[k] = true;
            audited++;
        }
        json_decref(o);
        lines++;
    }
    fclose(f);
    /* ... and every restriction has its transition line. */
    cr_assert(eq(int, audited, N));

    /* Nothing acknowledged is lost to a kill -9. */
    kill9();
    start();
    cr_assert(eq(u8, look("df-before").state, RESTRICTED));
    cr_assert(eq(u8, look("df-after").state, RESTRICTED));
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "df-during-%d", i);
        cr_assert(eq(u8, look(id).state, RESTRICTED), "%s after kill -9", id);
    }
    fprintf(stderr,
            "durability figure: disk full (tmpfs 4 MiB, %lld bytes of ballast): alarm, %lld of %d "
            "restrictions held back and published after the heal, lookups answered, the admin "
            "change refused, healed without a restart, 0 lost to kill -9\n",
            filled, held, N);
}
