/* libconnrep and the lookup server, without the daemon.
 *
 * client_shm     a table created here in POSIX shared memory, read by
 *                separate (forked) processes through connrep_open("shm:/…"):
 *                a restriction appears, the table is replaced (re-attach),
 *                the engine stops (unavailable). Processes synchronise over
 *                pipes, never with sleeps.
 * lookup_server  crp_lookup_server on ipc:// in a temp dir over a table
 *                filled here, queried with raw REQ and DEALER sockets:
 *                envelopes, batches up to the size limit, every status.
 * client_zmq     connrep_open("ipc://…") against that server, and against
 *                a scripted fake engine for timeouts, late replies and bad
 *                replies.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "connrep.h"
#include "crp/lookup_server.h"
#include "crp/table.h"
#include "crp/wire.h"

#define SINCE_1 1700000000000ull
#define SINCE_2 1700000123456ull

/* ------------------------------------------------------------------------
 * Helpers shared by the suites
 * ------------------------------------------------------------------------ */

/* Inserts or updates one connector as its shard writer would. Returns false
 * on failure (usable in forked children, where cr_assert is not). */
static bool put_entry(crp_table *t, const char *id, int state, unsigned reasons, uint64_t since)
{
    crp_key k = crp_table_key(t, id, strlen(id));
    crp_slot slot;
    bool created;
    if (crp_table_upsert_sw(t, &k, id, strlen(id), "tenant", 6, 1000, &slot, &created) != CRP_OK)
        return false;
    crp_entry e;
    crp_table_load_sw(t, slot, &e);
    e.state = (uint8_t)state;
    e.reasons = (uint8_t)reasons;
    e.since_ms = since;
    e.dirty = state != CRP_STATE_ACTIVE;
    crp_table_store_sw(t, slot, &e);
    return true;
}

static crp_table *table_new(const char *shm_name)
{
    crp_table_opts o = {.capacity = 16384, .shards = 1, .shm_name = shm_name};
    crp_table *t = NULL;
    cr_assert(eq(int, crp_table_create(&t, &o), CRP_OK));
    return t;
}

/* Unique POSIX shm names, unlinked by shm_names_cleanup() even when a test
 * fails half-way (a passing test has already removed them). */
static char shm_names[4][64];
static unsigned shm_used;

static const char *shm_name_new(void)
{
    cr_assert(lt(uint, shm_used, 4u));
    char *n = shm_names[shm_used++];
    snprintf(n, 64, "/crp-test-%ld-%u", (long)getpid(), shm_used);
    return n;
}

static void shm_names_cleanup(void)
{
    for (unsigned i = 0; i < shm_used; i++)
        shm_unlink(shm_names[i]);
    shm_used = 0;
}

/* One-byte messages between processes. get() waits at most 10 s, so a
 * crashed peer fails the test instead of hanging it; 0 means "nothing". */
static void put(int fd, char c)
{
    while (write(fd, &c, 1) != 1 && errno == EINTR) {
    }
}

static char get(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, 10000)) < 0 && errno == EINTR) {
    }
    char c = 0;
    if (rc == 1 && read(fd, &c, 1) != 1)
        c = 0;
    return c;
}

/* Failure inside a forked child: say where, exit non-zero. */
#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child check failed at line %d: %s\n", __LINE__, #cond);               \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

static void wait_ok(pid_t pid)
{
    int status = 0;
    cr_assert(eq(int, (int)waitpid(pid, &status, 0), (int)pid));
    cr_assert(ne(int, WIFEXITED(status), 0), "child did not exit normally");
    cr_assert(eq(int, WEXITSTATUS(status), 0));
}

static bool is_text(const char *s)
{
    return s != NULL && strcmp(s, CONNREP_SMTP_TEXT) == 0;
}

/* ------------------------------------------------------------------------
 * client_shm
 * ------------------------------------------------------------------------ */

TestSuite(client_shm, .fini = shm_names_cleanup, .timeout = 60);

/* A separate process attaches and watches "bad-1" go from ACTIVE to
 * RESTRICTED when this process (the engine's writer) stores it. */
Test(client_shm, sees_restriction_appear)
{
    const char *name = shm_name_new();
    crp_table *t = table_new(name);
    cr_assert(put_entry(t, "bad-1", CRP_STATE_ACTIVE, 0, 0));
    cr_assert(put_entry(t, "clean-1", CRP_STATE_ACTIVE, 0, 0));

    int to_child[2], to_parent[2];
    cr_assert(eq(int, pipe(to_child), 0));
    cr_assert(eq(int, pipe(to_parent), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        char ep[80];
        snprintf(ep, sizeof ep, "shm:%s", name);
        connrep_client *c = connrep_open(ep, 0);
        CHILD_CHECK(c != NULL);
        connrep_result r;
        CHILD_CHECK(connrep_lookup(c, "bad-1", 5, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_ACTIVE && r.smtp_text == NULL && r.reasons == 0);
        put(to_parent[1], 'A'); /* saw ACTIVE */
        CHILD_CHECK(get(to_child[0]) == 'R');
        CHILD_CHECK(connrep_lookup(c, "bad-1", 5, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_RESTRICTED);
        CHILD_CHECK(r.reasons == (CONNREP_REASON_SPAM_RATIO | CONNREP_REASON_MALWARE));
        CHILD_CHECK(r.since_ms == SINCE_1);
        CHILD_CHECK(is_text(r.smtp_text));
        CHILD_CHECK(connrep_lookup(c, "clean-1", 7, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_ACTIVE && r.smtp_text == NULL);
        CHILD_CHECK(connrep_lookup(c, "never-seen", 10, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_UNKNOWN && r.smtp_text == NULL);
        /* The batch call answers the same, in order. */
        connrep_id ids[3] = {{"clean-1", 7}, {"bad-1", 5}, {"never-seen", 10}};
        connrep_result rs[3];
        CHILD_CHECK(connrep_lookup_batch(c, ids, 3, rs) == 0);
        CHILD_CHECK(rs[0].state == 1 && rs[1].state == 2 && rs[2].state == 0);
        CHILD_CHECK(is_text(rs[1].smtp_text) && rs[1].since_ms == SINCE_1);
        connrep_close(&c);
        CHILD_CHECK(c == NULL);
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);
    cr_assert(eq(chr, get(to_parent[0]), 'A'));
    cr_assert(put_entry(t, "bad-1", CRP_STATE_RESTRICTED,
                        CRP_REASON_SPAM_RATIO | CRP_REASON_MALWARE, SINCE_1));
    put(to_child[1], 'R');
    wait_ok(pid);
    close(to_child[1]);
    close(to_parent[0]);
    crp_table_destroy(&t);
}

/* An "engine" process that creates the table, fills it, and on 'q' exits
 * without destroying it (as under kill -9), leaving the object behind. */
static pid_t old_engine(const char *name, int *cmd_fd, int *ready_fd)
{
    int cmd[2], ready[2];
    cr_assert(eq(int, pipe(cmd), 0));
    cr_assert(eq(int, pipe(ready), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(cmd[1]);
        close(ready[0]);
        crp_table_opts o = {.capacity = 4096, .shm_name = name};
        crp_table *t = NULL;
        CHILD_CHECK(crp_table_create(&t, &o) == CRP_OK);
        CHILD_CHECK(put_entry(t, "x", CRP_STATE_RESTRICTED, CRP_REASON_MANUAL, SINCE_1));
        CHILD_CHECK(put_entry(t, "y", CRP_STATE_ACTIVE, 0, 0));
        put(ready[1], 'r');
        CHILD_CHECK(get(cmd[0]) == 'q');
        _exit(0); /* no destroy: the object stays, not retired */
    }
    close(cmd[0]);
    close(ready[1]);
    *cmd_fd = cmd[1];
    *ready_fd = ready[0];
    return pid;
}

/* The table is replaced by a new engine (same name, new generation: the old
 * object is retired), then the engine stops (retired, unlinked: lookups are
 * unavailable), then another starts: the client follows each time. */
Test(client_shm, reattaches_after_replace_and_restart)
{
    const char *name = shm_name_new();
    int e_cmd, e_ready;
    pid_t engine = old_engine(name, &e_cmd, &e_ready);
    cr_assert(eq(chr, get(e_ready), 'r'));

    int to_child[2], to_parent[2];
    cr_assert(eq(int, pipe(to_child), 0));
    cr_assert(eq(int, pipe(to_parent), 0));
    pid_t pid = fork();
    cr_assert(ge(int, pid, 0));
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        char ep[80];
        snprintf(ep, sizeof ep, "shm:%s", name);
        connrep_client *c = connrep_open(ep, 0);
        CHILD_CHECK(c != NULL);
        connrep_result r;
        /* Generation 1: x restricted (manual), y active. */
        CHILD_CHECK(connrep_lookup(c, "x", 1, &r) == 0);
        CHILD_CHECK(r.state == 2 && r.reasons == CONNREP_REASON_MANUAL && is_text(r.smtp_text));
        put(to_parent[1], '1');
        /* Generation 2: x active, y restricted. */
        CHILD_CHECK(get(to_child[0]) == '2');
        CHILD_CHECK(connrep_lookup(c, "x", 1, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_ACTIVE && r.smtp_text == NULL);
        CHILD_CHECK(connrep_lookup(c, "y", 1, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_RESTRICTED && r.since_ms == SINCE_2);
        put(to_parent[1], '2');
        /* Engine stopped: retired and unlinked, nothing to re-attach to. */
        CHILD_CHECK(get(to_child[0]) == '3');
        r.state = 99;
        CHILD_CHECK(connrep_lookup(c, "y", 1, &r) == CONNREP_EUNAVAIL);
        CHILD_CHECK(r.state == CONNREP_STATE_UNKNOWN && r.smtp_text == NULL);
        connrep_id ids[1] = {{"y", 1}};
        CHILD_CHECK(connrep_lookup_batch(c, ids, 1, &r) == CONNREP_EUNAVAIL);
        put(to_parent[1], '3');
        /* Generation 3: z restricted. */
        CHILD_CHECK(get(to_child[0]) == '4');
        CHILD_CHECK(connrep_lookup(c, "z", 1, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_RESTRICTED && r.reasons == CONNREP_REASON_HC_PHISH);
        CHILD_CHECK(connrep_lookup(c, "y", 1, &r) == 0);
        CHILD_CHECK(r.state == CONNREP_STATE_UNKNOWN);
        connrep_close(&c);
        _exit(0);
    }
    close(to_child[0]);
    close(to_parent[1]);

    cr_assert(eq(chr, get(to_parent[0]), '1'));
    /* The old engine dies; a new one replaces its table. */
    put(e_cmd, 'q');
    wait_ok(engine);
    close(e_cmd);
    close(e_ready);
    crp_table *t2 = table_new(name);
    cr_assert(put_entry(t2, "x", CRP_STATE_ACTIVE, 0, 0));
    cr_assert(put_entry(t2, "y", CRP_STATE_RESTRICTED, CRP_REASON_PHISH_RATIO, SINCE_2));
    put(to_child[1], '2');
    cr_assert(eq(chr, get(to_parent[0]), '2'));

    /* Clean stop of the second engine. */
    crp_table_destroy(&t2);
    put(to_child[1], '3');
    cr_assert(eq(chr, get(to_parent[0]), '3'));

    crp_table *t3 = table_new(name);
    cr_assert(put_entry(t3, "z", CRP_STATE_RESTRICTED, CRP_REASON_HC_PHISH, SINCE_1));
    put(to_child[1], '4');
    wait_ok(pid);
    close(to_child[1]);
    close(to_parent[0]);
    crp_table_destroy(&t3);
}

Test(client_shm, open_errors)
{
    errno = 0;
    cr_assert(eq(ptr, connrep_open(NULL, 0), NULL));
    cr_assert(eq(int, errno, EINVAL));
    cr_assert(eq(ptr, connrep_open("udp://1.2.3.4:5", 0), NULL));
    cr_assert(eq(int, errno, EINVAL));
    cr_assert(eq(ptr, connrep_open("shm:noslash", 0), NULL));
    cr_assert(eq(int, errno, EINVAL));
    cr_assert(eq(ptr, connrep_open("shm:/a/b", 0), NULL));
    cr_assert(eq(int, errno, EINVAL));
    cr_assert(eq(ptr, connrep_open("shm:/crp-test-no-such-object", 0), NULL));
    cr_assert(eq(int, errno, ENOENT));

    /* An object that is not a table. */
    const char *name = shm_name_new();
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    cr_assert(ge(int, fd, 0));
    cr_assert(eq(int, ftruncate(fd, 8192), 0));
    close(fd);
    char ep[80];
    snprintf(ep, sizeof ep, "shm:%s", name);
    cr_assert(eq(ptr, connrep_open(ep, 0), NULL));
    cr_assert(eq(int, errno, EPROTO));
    shm_unlink(name);

    connrep_close(NULL);
    connrep_client *none = NULL;
    connrep_close(&none);
}

Test(client_shm, bad_arguments)
{
    const char *name = shm_name_new();
    crp_table *t = table_new(name);
    cr_assert(put_entry(t, "r", CRP_STATE_RESTRICTED, CRP_REASON_MALWARE, SINCE_1));
    char ep[80];
    snprintf(ep, sizeof ep, "shm:%s", name);
    connrep_client *c = connrep_open(ep, 0);
    cr_assert(ne(ptr, c, NULL));

    char big[256];
    memset(big, 'a', sizeof big);
    connrep_result r = {.state = 7};
    cr_assert(eq(int, connrep_lookup(c, "r", 0, &r), CONNREP_EINVAL));
    cr_assert(eq(int, r.state, 0));
    cr_assert(eq(int, connrep_lookup(c, big, 256, &r), CONNREP_EINVAL));
    cr_assert(eq(int, connrep_lookup(c, NULL, 1, &r), CONNREP_EINVAL));
    cr_assert(eq(int, connrep_lookup(NULL, "r", 1, &r), CONNREP_EINVAL));
    cr_assert(eq(int, connrep_lookup(c, "r", 1, NULL), CONNREP_EINVAL));
    cr_assert(eq(int, connrep_lookup(c, big, 255, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_UNKNOWN));

    connrep_id ids[2] = {{"r", 1}, {big, 0}};
    connrep_result rs[2];
    cr_assert(eq(int, connrep_lookup_batch(c, ids, 2, rs), CONNREP_EINVAL));
    cr_assert(eq(int, rs[0].state, 0));
    cr_assert(eq(int, connrep_lookup_batch(c, ids, 0, rs), 0));
    cr_assert(eq(int, connrep_lookup_batch(c, ids, 1, rs), 0));
    cr_assert(eq(int, rs[0].state, CONNREP_STATE_RESTRICTED));

    cr_assert(eq(str, (char *)connrep_strerror(CONNREP_ETIMEOUT),
                 "timed out waiting for the engine's reply"));
    cr_assert(eq(str, (char *)connrep_err_name(CONNREP_EUNAVAIL), "CONNREP_EUNAVAIL"));
    cr_assert(eq(str, (char *)connrep_err_name(-1000), "CONNREP_UNKNOWN"));
    cr_assert(eq(str, (char *)connrep_strerror(0), "success"));

    connrep_close(&c);
    cr_assert(eq(ptr, c, NULL));
    crp_table_destroy(&t);
}

/* ------------------------------------------------------------------------
 * lookup_server fixture: a table with known entries, a server on two ipc
 * endpoints in a temp dir, stub statistics hooks.
 * ------------------------------------------------------------------------ */

#define N_CONN 1000 /* "conn-<i>": every 7th restricted, every 11th probation */

static char tmpdir[64];
static char ep_a[128], ep_b[128];
static crp_table *tbl;
static const char *tbl_name;
static void *zctx;
static crp_lookup_server *srv;

/* Written by the server thread (hooks), read by the test thread after a
 * reply: relaxed is enough, the reply's round trip orders them. */
static _Atomic uint64_t hook_counted;
static _Atomic(const crp_engine *) hook_engine;
static int fake_engine_marker;

static char *stub_stats(const crp_engine *e)
{
    atomic_store_explicit(&hook_engine, e, memory_order_relaxed);
    char buf[128];
    snprintf(buf, sizeof buf, "{\"lookups\":%llu,\"stub\":true}",
             (unsigned long long)atomic_load_explicit(&hook_counted, memory_order_relaxed));
    return strdup(buf);
}

static void stub_count(crp_engine *e, uint64_t n)
{
    (void)e;
    atomic_fetch_add_explicit(&hook_counted, n, memory_order_relaxed);
}

static const crp_lookup_hooks stub_hooks = {.stats_json = stub_stats, .count_lookups = stub_count};

static int expect_state(unsigned i)
{
    if (i % 7 == 0)
        return CRP_STATE_RESTRICTED;
    if (i % 11 == 0)
        return CRP_STATE_PROBATION;
    return CRP_STATE_ACTIVE;
}

static void server_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/crp-lookup-XXXXXX");
    cr_assert(ne(ptr, mkdtemp(tmpdir), NULL));
    snprintf(ep_a, sizeof ep_a, "ipc://%s/lookup", tmpdir);
    snprintf(ep_b, sizeof ep_b, "ipc://%s/lookup2", tmpdir);

    tbl_name = shm_name_new();
    tbl = table_new(tbl_name);
    cr_assert(put_entry(tbl, "restricted-1", CRP_STATE_RESTRICTED,
                        CRP_REASON_SPAM_RATIO | CRP_REASON_MALWARE, SINCE_1));
    cr_assert(put_entry(tbl, "active-1", CRP_STATE_ACTIVE, 0, 0));
    cr_assert(put_entry(tbl, "probation-1", CRP_STATE_PROBATION, 0, SINCE_2));
    for (unsigned i = 0; i < N_CONN; i++) {
        char id[32];
        snprintf(id, sizeof id, "conn-%u", i);
        int st = expect_state(i);
        cr_assert(put_entry(tbl, id, st, st == CRP_STATE_RESTRICTED ? CRP_REASON_PHISH_RATIO : 0,
                            st == CRP_STATE_RESTRICTED ? SINCE_1 + i : 0));
    }

    zctx = zmq_ctx_new();
    cr_assert(ne(ptr, zctx, NULL));
    char binds[300];
    snprintf(binds, sizeof binds, " %s ,%s", ep_a, ep_b);
    atomic_store_explicit(&hook_counted, 0, memory_order_relaxed);
    cr_assert(eq(int,
                 crp_lookup_server_start(&srv, zctx, binds, tbl, (crp_engine *)&fake_engine_marker,
                                         &stub_hooks),
                 CRP_OK));
}

static void server_teardown(void)
{
    crp_lookup_server_stop(&srv);
    cr_assert(eq(ptr, srv, NULL));
    zmq_ctx_term(zctx);
    crp_table_destroy(&tbl);
    shm_names_cleanup();
    char path[200];
    snprintf(path, sizeof path, "%s/lookup", tmpdir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lookup2", tmpdir);
    unlink(path);
    snprintf(path, sizeof path, "%s/fake", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

static void *sock_new(int type, const char *ep)
{
    void *s = zmq_socket(zctx, type);
    cr_assert(ne(ptr, s, NULL));
    int zero = 0, five_s = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &five_s, sizeof five_s);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &five_s, sizeof five_s);
    cr_assert(eq(int, zmq_connect(s, ep), 0));
    return s;
}

/* Receives a whole message: up to max frames into f[] (initialised here).
 * Returns the number of frames, 0 on timeout. */
static size_t recv_all(void *s, zmq_msg_t *f, size_t max)
{
    size_t n = 0;
    for (;;) {
        cr_assert(lt(sz, n, max));
        zmq_msg_init(&f[n]);
        if (zmq_msg_recv(&f[n], s, 0) < 0) {
            zmq_msg_close(&f[n]);
            cr_assert(eq(sz, n, 0));
            return 0;
        }
        if (!zmq_msg_more(&f[n++]))
            return n;
    }
}

static void close_all(zmq_msg_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static size_t encode(unsigned char *buf, size_t cap, unsigned flags, uint32_t rid,
                     const char *const *ids, size_t n)
{
    crp_lookup_id *v = calloc(n, sizeof *v);
    cr_assert(ne(ptr, v, NULL));
    for (size_t i = 0; i < n; i++)
        v[i] = (crp_lookup_id){.id = ids[i], .len = strlen(ids[i])};
    size_t len = crp_lookup_encode_req(buf, cap, flags, rid, v, n);
    free(v);
    cr_assert(gt(sz, len, 0));
    return len;
}

/* Sends one single-frame body and returns the one-frame reply's status,
 * request id and count (REQ socket). */
static void ask_req(void *s, const void *body, size_t len, crp_reply *rep, zmq_msg_t *keep)
{
    cr_assert(eq(int, zmq_send(s, body, len, 0), (int)len));
    zmq_msg_t f[2];
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), rep), CRP_OK));
    *keep = f[0]; /* the reply points into it */
}

TestSuite(lookup_server, .init = server_setup, .fini = server_teardown, .timeout = 60);

Test(lookup_server, req_results_and_text)
{
    void *s = sock_new(ZMQ_REQ, ep_a);
    const char *ids[] = {"restricted-1", "active-1", "probation-1", "unknown-1", "restricted-1"};
    unsigned char buf[512];
    size_t len = encode(buf, sizeof buf, CRP_LOOKUP_FLAG_TEXT, 0xA1B2C3D4u, ids, 5);

    crp_reply rep;
    zmq_msg_t m;
    ask_req(s, buf, len, &rep, &m);
    cr_assert(eq(u16, rep.status, CRP_LOOKUP_OK));
    cr_assert(eq(u32, rep.request_id, 0xA1B2C3D4u));
    cr_assert(eq(u16, rep.count, 5));
    crp_reply_iter it;
    crp_reply_iter_init(&it, &rep);
    crp_reply_result r[5];
    for (int i = 0; i < 5; i++)
        cr_assert(crp_reply_next(&it, &r[i]));
    cr_assert(not(crp_reply_next(&it, &r[0])));
    cr_assert(eq(u8, r[0].state, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, r[0].reasons, CRP_REASON_SPAM_RATIO | CRP_REASON_MALWARE));
    cr_assert(eq(u64, r[0].since_ms, SINCE_1));
    cr_assert(eq(sz, r[0].text_len, CRP_SMTP_TEXT_LEN));
    cr_assert(eq(int, memcmp(r[0].text, CRP_SMTP_TEXT, CRP_SMTP_TEXT_LEN), 0));
    cr_assert(eq(u8, r[1].state, CRP_STATE_ACTIVE));
    cr_assert(eq(sz, r[1].text_len, 0));
    /* Probation carries no since on the wire (C5). */
    cr_assert(eq(u8, r[2].state, CRP_STATE_PROBATION));
    cr_assert(eq(u64, r[2].since_ms, 0));
    cr_assert(eq(u8, r[2].reasons, 0));
    cr_assert(eq(u8, r[3].state, CRP_STATE_UNKNOWN));
    cr_assert(eq(u8, r[4].state, CRP_STATE_RESTRICTED));
    cr_assert(eq(sz, r[4].text_len, CRP_SMTP_TEXT_LEN));
    zmq_msg_close(&m);

    /* Without flag bit 0 no text, even for a restriction; other flag bits
     * are ignored. */
    len = encode(buf, sizeof buf, 0xFFFEu, 7, ids, 1);
    ask_req(s, buf, len, &rep, &m);
    crp_reply_iter_init(&it, &rep);
    cr_assert(crp_reply_next(&it, &r[0]));
    cr_assert(eq(u8, r[0].state, CRP_STATE_RESTRICTED));
    cr_assert(eq(sz, r[0].text_len, 0));
    cr_assert(eq(u64, r[0].since_ms, SINCE_1));
    zmq_msg_close(&m);

    /* The second endpoint serves the same. */
    void *s2 = sock_new(ZMQ_REQ, ep_b);
    ask_req(s2, buf, len, &rep, &m);
    cr_assert(eq(u32, rep.request_id, 7));
    zmq_msg_close(&m);
    zmq_close(s2);
    zmq_close(s);
}

Test(lookup_server, dealer_with_and_without_delimiter)
{
    void *s = sock_new(ZMQ_DEALER, ep_a);
    const char *ids[] = {"restricted-1"};
    unsigned char buf[64];
    size_t len = encode(buf, sizeof buf, CRP_LOOKUP_FLAG_TEXT, 41, ids, 1);

    /* With an empty delimiter: [""][body] -> [""][reply]. */
    cr_assert(eq(int, zmq_send(s, "", 0, ZMQ_SNDMORE), 0));
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    zmq_msg_t f[4];
    size_t n = recv_all(s, f, 4);
    cr_assert(eq(sz, n, 2));
    cr_assert(eq(sz, zmq_msg_size(&f[0]), 0));
    crp_reply rep;
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &rep), CRP_OK));
    cr_assert(eq(u32, rep.request_id, 41));
    cr_assert(eq(u16, rep.count, 1));
    close_all(f, n);

    /* Without: [body] -> [reply]. */
    len = encode(buf, sizeof buf, 0, 42, ids, 1);
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    n = recv_all(s, f, 4);
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
    cr_assert(eq(u32, rep.request_id, 42));
    close_all(f, n);

    /* Several in flight: answered in order, matched by id. */
    for (uint32_t rid = 100; rid < 110; rid++) {
        len = encode(buf, sizeof buf, 0, rid, ids, 1);
        cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    }
    for (uint32_t rid = 100; rid < 110; rid++) {
        n = recv_all(s, f, 4);
        cr_assert(eq(sz, n, 1));
        cr_assert(
            eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
        cr_assert(eq(u32, rep.request_id, rid));
        close_all(f, n);
    }
    zmq_close(s);
}

/* Extra envelope frames come back byte for byte; with more frames than the
 * server keeps the message is dropped without a reply (C6). */
Test(lookup_server, envelope_frames)
{
    void *s = sock_new(ZMQ_DEALER, ep_a);
    const char *ids[] = {"active-1"};
    unsigned char buf[64];

    /* 7 frames + body: with the routing id, 8 envelope frames (the minimum
     * C6 promises). */
    size_t len = encode(buf, sizeof buf, 0, 5, ids, 1);
    for (int i = 0; i < 7; i++) {
        char e[8];
        int el = snprintf(e, sizeof e, "env%d", i);
        cr_assert(eq(int, zmq_send(s, e, (size_t)el, ZMQ_SNDMORE), el));
    }
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    zmq_msg_t f[10];
    size_t n = recv_all(s, f, 10);
    cr_assert(eq(sz, n, 8));
    for (int i = 0; i < 7; i++) {
        char e[8];
        int el = snprintf(e, sizeof e, "env%d", i);
        cr_assert(eq(sz, zmq_msg_size(&f[i]), (size_t)el));
        cr_assert(eq(int, memcmp(zmq_msg_data(&f[i]), e, (size_t)el), 0));
    }
    crp_reply rep;
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[7]), zmq_msg_size(&f[7]), &rep), CRP_OK));
    cr_assert(eq(u32, rep.request_id, 5));
    close_all(f, n);

    /* Too many frames: dropped. The next request's reply is the first one
     * to arrive, since one peer's messages are handled in order. */
    len = encode(buf, sizeof buf, 0, 6, ids, 1);
    for (unsigned i = 0; i < CRP_LOOKUP_ENVELOPE_MAX; i++)
        cr_assert(eq(int, zmq_send(s, "x", 1, ZMQ_SNDMORE), 1));
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    len = encode(buf, sizeof buf, 0, 7, ids, 1);
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    n = recv_all(s, f, 10);
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
    cr_assert(eq(u32, rep.request_id, 7));
    close_all(f, n);

    crp_lookup_server_stats st;
    crp_lookup_server_stats_get(srv, &st);
    cr_assert(eq(u64, st.dropped, 1));
    cr_assert(eq(u64, st.requests, 2));
    zmq_close(s);
}

Test(lookup_server, batch_of_1000)
{
    void *s = sock_new(ZMQ_REQ, ep_a);
    static char names[N_CONN][16];
    const char *ids[N_CONN];
    for (unsigned i = 0; i < N_CONN; i++) {
        snprintf(names[i], sizeof names[i], "conn-%u", N_CONN - 1 - i); /* reversed order */
        ids[i] = names[i];
    }
    static unsigned char buf[16384];
    size_t len = encode(buf, sizeof buf, CRP_LOOKUP_FLAG_TEXT, 1000, ids, N_CONN);
    crp_reply rep;
    zmq_msg_t m;
    ask_req(s, buf, len, &rep, &m);
    cr_assert(eq(u16, rep.status, 0));
    cr_assert(eq(u16, rep.count, N_CONN));
    crp_reply_iter it;
    crp_reply_iter_init(&it, &rep);
    crp_reply_result r;
    for (unsigned i = 0; i < N_CONN; i++) {
        unsigned c = N_CONN - 1 - i;
        cr_assert(crp_reply_next(&it, &r));
        cr_assert(eq(int, r.state, expect_state(c)));
        if (r.state == CRP_STATE_RESTRICTED) {
            cr_assert(eq(u64, r.since_ms, SINCE_1 + c));
            cr_assert(eq(u8, r.reasons, CRP_REASON_PHISH_RATIO));
            cr_assert(eq(sz, r.text_len, CRP_SMTP_TEXT_LEN));
        } else {
            cr_assert(eq(u64, r.since_ms, 0));
            cr_assert(eq(sz, r.text_len, 0));
        }
    }
    zmq_msg_close(&m);
    zmq_close(s);
}

/* 4096 ids of 255 bytes: the largest valid request, exactly ZMQ_MAXMSGSIZE;
 * 4097 ids: status 1 with the request id; one byte over the size limit: the
 * peer is dropped by ZeroMQ and the server keeps serving others. */
Test(lookup_server, size_limits)
{
    size_t cap = CRP_LOOKUP_REQ_MAX_SIZE + 300;
    unsigned char *buf = malloc(cap);
    cr_assert(ne(ptr, buf, NULL));
    crp_lookup_id *v = calloc(CRP_LOOKUP_COUNT_MAX, sizeof *v);
    char(*names)[256] = calloc(CRP_LOOKUP_COUNT_MAX, 256);
    cr_assert(ne(ptr, v, NULL));
    cr_assert(ne(ptr, names, NULL));
    for (unsigned i = 0; i < CRP_LOOKUP_COUNT_MAX; i++) {
        memset(names[i], 'q', 255);
        snprintf(names[i], 16, "long-%u-", i);
        names[i][strlen(names[i])] = 'q'; /* keep 255 bytes, no NUL inside */
        v[i] = (crp_lookup_id){.id = names[i], .len = 255};
    }
    char long_restricted[256];
    memcpy(long_restricted, names[4095], 256);
    long_restricted[255] = '\0';
    cr_assert(put_entry(tbl, long_restricted, CRP_STATE_RESTRICTED, CRP_REASON_MANUAL, SINCE_2));

    void *s = sock_new(ZMQ_DEALER, ep_a);
    size_t len = crp_lookup_encode_req(buf, cap, 1, 4096, v, CRP_LOOKUP_COUNT_MAX);
    cr_assert(eq(sz, len, (size_t)CRP_LOOKUP_REQ_MAX_SIZE));
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    zmq_msg_t f[2];
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    crp_reply rep;
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
    cr_assert(eq(u16, rep.status, 0));
    cr_assert(eq(u16, rep.count, 4096));
    crp_reply_iter it;
    crp_reply_iter_init(&it, &rep);
    crp_reply_result r;
    for (unsigned i = 0; i < 4096; i++) {
        cr_assert(crp_reply_next(&it, &r));
        cr_assert(eq(int, r.state, i == 4095 ? CRP_STATE_RESTRICTED : CRP_STATE_UNKNOWN));
    }
    cr_assert(eq(sz, r.text_len, CRP_SMTP_TEXT_LEN));
    zmq_msg_close(&f[0]);

    /* 4097 short ids: the header is sound, so the id is echoed. */
    len = crp_lookup_encode_req(buf, cap, 0, 4097, v, 1);
    cr_assert(gt(sz, len, 0));
    len = 14;
    for (unsigned i = 0; i < 4097; i++) {
        buf[len++] = 1;
        buf[len++] = 'a';
    }
    buf[12] = 4097 & 0xff;
    buf[13] = 4097 >> 8;
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
    cr_assert(eq(u16, rep.status, CRP_LOOKUP_MALFORMED));
    cr_assert(eq(u32, rep.request_id, 4097));
    cr_assert(eq(u16, rep.count, 0));
    zmq_msg_close(&f[0]);

    /* Over ZMQ_MAXMSGSIZE: ZeroMQ drops the peer; others are still served. */
    len = crp_lookup_encode_req(buf, cap, 0, 99, v, CRP_LOOKUP_COUNT_MAX);
    buf[len++] = 0;
    void *big = sock_new(ZMQ_DEALER, ep_a);
    cr_assert(eq(int, zmq_send(big, buf, len, 0), (int)len));
    const char *ids[] = {"active-1"};
    len = encode(buf, cap, 0, 100, ids, 1);
    cr_assert(eq(int, zmq_send(s, buf, len, 0), (int)len));
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    cr_assert(eq(int, crp_reply_decode(zmq_msg_data(&f[0]), zmq_msg_size(&f[0]), &rep), CRP_OK));
    cr_assert(eq(u32, rep.request_id, 100));
    zmq_msg_close(&f[0]);

    zmq_close(big);
    zmq_close(s);
    free(names);
    free(v);
    free(buf);
}

/* Status 1 with request id 0 for what has no sound header, status 1 with
 * the id echoed for a sound header and a bad body, 3 for another version. */
Test(lookup_server, malformed_and_bad_version)
{
    void *s = sock_new(ZMQ_REQ, ep_a);
    crp_reply rep;
    zmq_msg_t m;
    struct {
        const char *body;
        size_t len;
    } bad[] = {
        {"", 0},     {"CRQ1\x01", 5}, {"XRQ1\x01\x00\x00\x00\x09\x00\x00\x00\x01\x00", 14},
        {"CRS2", 4}, {"CRS1x", 5},    {"crs1", 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ask_req(s, bad[i].body, bad[i].len, &rep, &m);
        cr_assert(eq(u16, rep.status, CRP_LOOKUP_MALFORMED), "case %zu", i);
        cr_assert(eq(u32, rep.request_id, 0), "case %zu", i);
        cr_assert(eq(u16, rep.count, 0));
        zmq_msg_close(&m);
    }

    /* Sound header (request id 0x01020304), bad body. */
    const unsigned char count0[] = {'C', 'R', 'Q', '1', 1, 0, 0, 0, 4, 3, 2, 1, 0, 0};
    const unsigned char trailing[] = {'C', 'R', 'Q', '1', 1, 0, 0,   0,  4,
                                      3,   2,   1,   1,   0, 1, 'a', 'z'};
    const unsigned char empty_id[] = {'C', 'R', 'Q', '1', 1, 0, 0, 0, 4, 3, 2, 1, 1, 0, 0};
    const unsigned char *sound[] = {count0, trailing, empty_id};
    size_t sound_len[] = {sizeof count0, sizeof trailing, sizeof empty_id};
    for (size_t i = 0; i < 3; i++) {
        ask_req(s, sound[i], sound_len[i], &rep, &m);
        cr_assert(eq(u16, rep.status, CRP_LOOKUP_MALFORMED), "case %zu", i);
        cr_assert(eq(u32, rep.request_id, 0x01020304u), "case %zu", i);
        zmq_msg_close(&m);
    }

    const unsigned char v2[] = {'C',  'R',  'Q',  '1',  2, 0, 0, 0,
                                0xef, 0xbe, 0xad, 0xde, 1, 0, 1, 'a'};
    ask_req(s, v2, sizeof v2, &rep, &m);
    cr_assert(eq(u16, rep.status, CRP_LOOKUP_UNSUPPORTED));
    cr_assert(eq(u32, rep.request_id, 0xdeadbeefu));
    cr_assert(eq(u16, rep.count, 0));
    zmq_msg_close(&m);

    crp_lookup_server_stats st;
    crp_lookup_server_stats_get(srv, &st);
    cr_assert(eq(u64, st.malformed, 9));
    cr_assert(eq(u64, st.unsupported, 1));
    cr_assert(eq(u64, st.lookups, 0));
    zmq_close(s);
}

/* CRS1 answers "CRS1" + the hook's JSON with the server's own refusal
 * counters added; lookups answered before are counted first, and the
 * engine pointer given at start reaches the hooks. */
Test(lookup_server, stats)
{
    void *s = sock_new(ZMQ_REQ, ep_a);
    const char *ids[] = {"active-1", "conn-1", "nope"};
    unsigned char buf[128];
    size_t len = encode(buf, sizeof buf, 0, 1, ids, 3);
    crp_reply rep;
    zmq_msg_t m;
    ask_req(s, buf, len, &rep, &m);
    zmq_msg_close(&m);

    cr_assert(eq(int, zmq_send(s, "CRS1", 4, 0), 4));
    zmq_msg_t f[2];
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    const char want[] = "CRS1{\"lookups\":3,\"stub\":true,\"lookup_malformed\":0,"
                        "\"lookup_unsupported\":0,\"lookup_dropped\":0}";
    cr_assert(eq(sz, zmq_msg_size(&f[0]), sizeof want - 1));
    cr_assert(eq(int, memcmp(zmq_msg_data(&f[0]), want, sizeof want - 1), 0));
    zmq_msg_close(&f[0]);
    cr_assert(eq(ptr, (void *)atomic_load_explicit(&hook_engine, memory_order_relaxed),
                 (void *)&fake_engine_marker));

    /* A DEALER without delimiter gets the same, one frame. */
    void *d = sock_new(ZMQ_DEALER, ep_a);
    cr_assert(eq(int, zmq_send(d, "CRS1", 4, 0), 4));
    cr_assert(eq(sz, recv_all(d, f, 2), 1));
    cr_assert(eq(int, memcmp(zmq_msg_data(&f[0]), "CRS1{", 5), 0));
    zmq_msg_close(&f[0]);

    crp_lookup_server_stats st;
    crp_lookup_server_stats_get(srv, &st);
    cr_assert(eq(u64, st.stats, 2));
    cr_assert(eq(u64, st.lookups, 3));
    zmq_close(d);
    zmq_close(s);
}

Test(lookup_server, stats_without_hooks_and_start_errors)
{
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/bare", tmpdir);
    crp_lookup_server *bare = NULL;
    cr_assert(eq(int, crp_lookup_server_start(&bare, zctx, ep, tbl, NULL, NULL), CRP_OK));
    void *s = sock_new(ZMQ_REQ, ep);
    cr_assert(eq(int, zmq_send(s, "CRS1", 4, 0), 4));
    zmq_msg_t f[2];
    cr_assert(eq(sz, recv_all(s, f, 2), 1));
    const char want[] =
        "CRS1{\"lookup_malformed\":0,\"lookup_unsupported\":0,\"lookup_dropped\":0}";
    cr_assert(eq(sz, zmq_msg_size(&f[0]), sizeof want - 1));
    cr_assert(eq(int, memcmp(zmq_msg_data(&f[0]), want, sizeof want - 1), 0));
    zmq_msg_close(&f[0]);
    zmq_close(s);
    crp_lookup_server_stop(&bare);
    cr_assert(eq(ptr, bare, NULL));
    crp_lookup_server_stop(&bare); /* NULL-safe */
    crp_lookup_server_stop(NULL);

    cr_assert(eq(int, crp_lookup_server_start(&bare, zctx, "", tbl, NULL, NULL), CRP_INVAL));
    cr_assert(eq(int, crp_lookup_server_start(&bare, zctx, " , ", tbl, NULL, NULL), CRP_INVAL));
    cr_assert(
        eq(int, crp_lookup_server_start(&bare, zctx, "bogus://x", tbl, NULL, NULL), CRP_INVAL));
    cr_assert(eq(
        int, crp_lookup_server_start(&bare, zctx, "ipc:///nonexistent-dir-crp/x", tbl, NULL, NULL),
        CRP_SYS));

    /* A tcp port already taken: CRP_SYS with EADDRINUSE, and nothing of the
     * list stays bound (the ipc endpoint before it is free again). */
    void *probe = zmq_socket(zctx, ZMQ_ROUTER);
    cr_assert(eq(int, zmq_bind(probe, "tcp://127.0.0.1:*"), 0));
    char last[128];
    size_t last_len = sizeof last;
    cr_assert(eq(int, zmq_getsockopt(probe, ZMQ_LAST_ENDPOINT, last, &last_len), 0));
    char list[400];
    snprintf(list, sizeof list, "%s,%s", ep, last);
    errno = 0;
    cr_assert(eq(int, crp_lookup_server_start(&bare, zctx, list, tbl, NULL, NULL), CRP_SYS));
    cr_assert(eq(int, errno, EADDRINUSE));
    cr_assert(eq(ptr, bare, NULL));
    zmq_close(probe);

    /* tcp works too, on a port free right now (a plain socket that never
     * listened leaves nothing behind when closed). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(ge(int, fd, 0));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert(eq(int, bind(fd, (struct sockaddr *)&sa, sl), 0));
    cr_assert(eq(int, getsockname(fd, (struct sockaddr *)&sa, &sl), 0));
    close(fd);
    snprintf(last, sizeof last, "tcp://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    cr_assert(eq(int, crp_lookup_server_start(&bare, zctx, last, tbl, NULL, NULL), CRP_OK));
    s = sock_new(ZMQ_REQ, last);
    const char *ids[] = {"restricted-1"};
    unsigned char buf[64];
    size_t len = encode(buf, sizeof buf, 1, 77, ids, 1);
    crp_reply rep;
    zmq_msg_t m;
    ask_req(s, buf, len, &rep, &m);
    cr_assert(eq(u32, rep.request_id, 77));
    cr_assert(eq(u16, rep.count, 1));
    zmq_msg_close(&m);
    zmq_close(s);
    crp_lookup_server_stop(&bare);
}

/* The owner shuts the context down first: the thread leaves on ETERM, and
 * stop only joins. */
Test(lookup_server, stop_after_context_shutdown)
{
    void *ctx2 = zmq_ctx_new();
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/shut", tmpdir);
    crp_lookup_server *s2 = NULL;
    cr_assert(eq(int, crp_lookup_server_start(&s2, ctx2, ep, tbl, NULL, NULL), CRP_OK));
    zmq_ctx_shutdown(ctx2);
    crp_lookup_server_stop(&s2);
    cr_assert(eq(ptr, s2, NULL));
    cr_assert(eq(int, zmq_ctx_term(ctx2), 0));
}

/* ------------------------------------------------------------------------
 * client_zmq: libconnrep over ipc:// against the server above, and against
 * a scripted fake engine.
 * ------------------------------------------------------------------------ */

TestSuite(client_zmq, .init = server_setup, .fini = server_teardown, .timeout = 60);

Test(client_zmq, lookups_match_shm)
{
    connrep_client *z = connrep_open(ep_a, 2000);
    cr_assert(ne(ptr, z, NULL));
    char shm_ep[80];
    snprintf(shm_ep, sizeof shm_ep, "shm:%s", tbl_name);
    connrep_client *m = connrep_open(shm_ep, 0);
    cr_assert(ne(ptr, m, NULL));

    const char *ids[] = {"restricted-1", "active-1", "probation-1", "unknown-1"};
    int want[] = {2, 1, 3, 0};
    for (int i = 0; i < 4; i++) {
        connrep_result a, b;
        cr_assert(eq(int, connrep_lookup(z, ids[i], strlen(ids[i]), &a), 0));
        cr_assert(eq(int, connrep_lookup(m, ids[i], strlen(ids[i]), &b), 0));
        cr_assert(eq(int, a.state, want[i]));
        cr_assert(eq(int, b.state, want[i]));
        cr_assert(eq(uint, a.reasons, b.reasons));
        cr_assert(eq(u64, a.since_ms, b.since_ms));
        cr_assert(eq(ptr, (void *)a.smtp_text, (void *)b.smtp_text));
        if (want[i] == 2) {
            cr_assert(is_text(a.smtp_text));
            cr_assert(eq(uint, a.reasons, CONNREP_REASON_SPAM_RATIO | CONNREP_REASON_MALWARE));
            cr_assert(eq(u64, a.since_ms, SINCE_1));
        } else {
            cr_assert(eq(ptr, (void *)a.smtp_text, NULL));
            cr_assert(eq(u64, a.since_ms, 0));
        }
    }
    connrep_close(&z);
    connrep_close(&m);
}

/* 10 000 ids: three requests (4096 + 4096 + 1808), results in order. */
Test(client_zmq, batch_split)
{
    enum { N = 10000 };
    static char names[N][16];
    static connrep_id ids[N];
    static connrep_result out[N];
    for (unsigned i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "conn-%u", i);
        ids[i] = (connrep_id){.id = names[i], .len = strlen(names[i])};
    }
    connrep_client *c = connrep_open(ep_a, 2000);
    cr_assert(ne(ptr, c, NULL));
    crp_lookup_server_stats before, after;
    crp_lookup_server_stats_get(srv, &before);
    cr_assert(eq(int, connrep_lookup_batch(c, ids, N, out), 0));
    crp_lookup_server_stats_get(srv, &after);
    cr_assert(eq(u64, after.requests - before.requests, 3));
    cr_assert(eq(u64, after.lookups - before.lookups, N));
    for (unsigned i = 0; i < N; i++) {
        int st = i < N_CONN ? expect_state(i) : CRP_STATE_UNKNOWN;
        cr_assert(eq(int, out[i].state, st), "id %u", i);
        if (st == CRP_STATE_RESTRICTED) {
            cr_assert(eq(u64, out[i].since_ms, SINCE_1 + i));
            cr_assert(is_text(out[i].smtp_text));
        } else {
            cr_assert(eq(ptr, (void *)out[i].smtp_text, NULL));
        }
    }
    /* 1000 ids: one request. */
    cr_assert(eq(int, connrep_lookup_batch(c, ids, 1000, out), 0));
    cr_assert(eq(int, out[7].state, CRP_STATE_RESTRICTED));
    connrep_close(&c);
}

Test(client_zmq, unavailable_engine)
{
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/nobody-here", tmpdir);
    connrep_client *c = connrep_open(ep, 100);
    cr_assert(ne(ptr, c, NULL));
    connrep_result r = {.state = 5};
    cr_assert(eq(int, connrep_lookup(c, "x", 1, &r), CONNREP_EUNAVAIL));
    cr_assert(eq(int, r.state, 0));
    connrep_close(&c);
}

/* The fake engine: a ROUTER that plays one scripted answer per request. */
enum fake_act {
    FAKE_SILENT,        /* no reply: the client times out */
    FAKE_STALE_THEN_OK, /* replies with other ids first, then the right one */
    FAKE_WRONG_COUNT,   /* right id, 2 results for 1 id */
    FAKE_OVERLOADED,    /* status 2 */
    FAKE_NO_ID,         /* status 1, request id 0 */
};

static const enum fake_act script[] = {FAKE_SILENT,     FAKE_STALE_THEN_OK, FAKE_WRONG_COUNT,
                                       FAKE_OVERLOADED, FAKE_NO_ID,         FAKE_STALE_THEN_OK};
#define SCRIPT_LEN (sizeof script / sizeof script[0])

typedef struct fake {
    void *router;
    uint32_t seen[SCRIPT_LEN];
} fake;

static void fake_send(void *router, zmq_msg_t *rid, const void *body, size_t len)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, rid);
    zmq_msg_send(&copy, router, ZMQ_SNDMORE);
    zmq_send(router, body, len, 0);
}

static size_t fake_reply(unsigned char *buf, int status, uint32_t rid, int results)
{
    crp_reply_writer w;
    crp_reply_begin(&w, buf, 256, status, rid);
    for (int i = 0; i < results; i++)
        crp_reply_add(&w, CRP_STATE_RESTRICTED, CRP_REASON_MALWARE, SINCE_2, NULL);
    return crp_reply_finish(&w);
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&rid, f->router, 0) < 0 || zmq_msg_recv(&body, f->router, 0) < 0)
            return NULL;
        crp_lookup_req req;
        if (crp_lookup_decode(zmq_msg_data(&body), zmq_msg_size(&body), &req) != CRP_LOOKUP_OK)
            return NULL;
        f->seen[i] = req.request_id;
        unsigned char buf[256];
        size_t len;
        switch (script[i]) {
        case FAKE_SILENT:
            break;
        case FAKE_STALE_THEN_OK:
            len = fake_reply(buf, 0, req.request_id + 1000, 1);
            fake_send(f->router, &rid, buf, len);
            len = fake_reply(buf, 0, req.request_id - 1, 1);
            fake_send(f->router, &rid, buf, len);
            fake_send(f->router, &rid, "junk", 4);
            len = fake_reply(buf, 0, req.request_id, 1);
            fake_send(f->router, &rid, buf, len);
            break;
        case FAKE_WRONG_COUNT:
            len = fake_reply(buf, 0, req.request_id, 2);
            fake_send(f->router, &rid, buf, len);
            break;
        case FAKE_OVERLOADED:
            len = fake_reply(buf, CRP_LOOKUP_OVERLOADED, req.request_id, 0);
            fake_send(f->router, &rid, buf, len);
            break;
        case FAKE_NO_ID:
            len = fake_reply(buf, CRP_LOOKUP_MALFORMED, 0, 0);
            fake_send(f->router, &rid, buf, len);
            break;
        }
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
    }
    return NULL;
}

Test(client_zmq, timeouts_stale_and_bad_replies)
{
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/fake", tmpdir);
    fake f = {.router = zmq_socket(zctx, ZMQ_ROUTER)};
    int zero = 0;
    zmq_setsockopt(f.router, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert(eq(int, zmq_bind(f.router, ep), 0));
    pthread_t th;
    cr_assert(eq(int, pthread_create(&th, NULL, fake_main, &f), 0));

    connrep_client *c = connrep_open(ep, 300);
    cr_assert(ne(ptr, c, NULL));
    connrep_result r;
    /* 1: no reply. */
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), CONNREP_ETIMEOUT));
    cr_assert(eq(int, r.state, 0));
    /* 2: replies for other ids and a non-reply are skipped. */
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));
    cr_assert(eq(u64, r.since_ms, SINCE_2));
    cr_assert(is_text(r.smtp_text));
    /* 3..5: bad count, overloaded, rejected. */
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), CONNREP_EPROTO));
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), CONNREP_EOVERLOAD));
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), CONNREP_EREJECTED));
    /* 6: still usable. */
    cr_assert(eq(int, connrep_lookup(c, "a", 1, &r), 0));
    cr_assert(eq(int, r.state, CONNREP_STATE_RESTRICTED));

    pthread_join(th, NULL);
    /* Every request had its own, non-zero id. */
    for (size_t i = 0; i < SCRIPT_LEN; i++) {
        cr_assert(ne(u32, f.seen[i], 0));
        for (size_t j = 0; j < i; j++)
            cr_assert(ne(u32, f.seen[i], f.seen[j]));
    }
    connrep_close(&c);
    zmq_close(f.router);
}
