/* Criterion suite for core/journal.c: round trips, torn tails at every
 * offset, corruption in the middle, and I/O errors injected on the Nth
 * write, fdatasync, fsync, rename or open (once and from then on, ENOSPC
 * and EIO) followed by a simulated power loss.
 *
 * The power-loss model: the injecting I/O layer remembers, per file, the
 * size at its last successful fsync/fdatasync. A "crash" cuts every journal
 * file back to that size plus a random prefix of the bytes written after it
 * (some unsynced data survives, some does not, possibly mid-record). Only
 * file contents are modelled; renames count as durable once they return.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crp/journal.h"
#include "io_inject.h"

/* ------------------------------------------------------------------------ */
/* Directory and file helpers                                               */
/* ------------------------------------------------------------------------ */

static char dir[64];

static void path_of(char *out, size_t n, const char *d, const char *name)
{
    snprintf(out, n, "%s/%s", d, name);
}

static void rm_tree(const char *d)
{
    static const char *names[] = {"journal",  "journal.prev",  "journal.tmp",
                                  "snapshot", "snapshot.prev", "snapshot.tmp"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_of(p, sizeof p, d, names[i]);
        unlink(p);
    }
    rmdir(d);
}

static void make_dir(void)
{
    strcpy(dir, "/tmp/crp-journal-XXXXXX");
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void clean_dir(void)
{
    rm_tree(dir);
}

TestSuite(journal, .init = make_dir, .fini = clean_dir);

/* Tests of logic (fault loops, thousands of rewritten files) move to tmpfs
 * when there is one: ext4 flushes a file replaced by truncation or rename
 * (auto_da_alloc), which costs seconds and proves nothing here, since
 * their power loss is modelled in-process. Durability on a real disk is
 * what round_trip_many_records and commit_throughput exercise. */
static void use_tmpfs(void)
{
    struct stat sb;
    char d[64] = "/dev/shm/crp-journal-XXXXXX";
    if (stat("/dev/shm", &sb) != 0 || !S_ISDIR(sb.st_mode) || mkdtemp(d) == NULL)
        return;
    rm_tree(dir);
    strcpy(dir, d);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    cr_assert(p != NULL);
    cr_assert(eq(sz, fread(p, 1, (size_t)n, f), (size_t)n));
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void spill(const char *path, const unsigned char *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "%s: %s", path, strerror(errno));
    cr_assert(eq(sz, fwrite(p, 1, len, f), len));
    fclose(f);
}

static off_t size_of(const char *path)
{
    struct stat sb;
    cr_assert(eq(int, stat(path, &sb), 0), "%s: %s", path, strerror(errno));
    return sb.st_size;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------------ */
/* Records: content is a pure function of the sequence                      */
/* ------------------------------------------------------------------------ */

#define POLICY_TEST_MAX 3000u

struct want {
    uint8_t type;
    char id[CRP_ID_MAX];
    uint8_t id_len;
    char tenant[CRP_TENANT_MAX];
    uint8_t tenant_len;
    char actor[CRP_JOURNAL_ACTOR_MAX];
    uint8_t actor_len;
    char comment[CRP_JOURNAL_COMMENT_MAX];
    uint16_t comment_len;
    uint8_t state, reasons, kind;
    bool until_midnight;
    uint64_t since_ms, at_ms;
    unsigned char policy[POLICY_TEST_MAX];
    uint32_t policy_len;
};

static void want_for(uint64_t seq, struct want *w)
{
    uint64_t h = seq * 0x9E3779B97F4A7C15ull;
    memset(w, 0, sizeof *w);
    if (seq % 7 == 3) {
        w->type = CRP_JOURNAL_POLICY;
        w->policy_len = (uint32_t)((h >> 40) % POLICY_TEST_MAX);
        for (uint32_t k = 0; k < w->policy_len; k++)
            w->policy[k] = (unsigned char)((seq + k) * 31u);
        return;
    }
    w->type = CRP_JOURNAL_STATE;
    /* Every length from the smallest to the largest occurs. */
    w->id_len = (uint8_t)(seq % 11 == 0 ? CRP_ID_MAX : 1 + (h >> 8) % CRP_ID_MAX);
    w->tenant_len = (uint8_t)(seq % 13 == 0 ? CRP_TENANT_MAX : (h >> 16) % (CRP_TENANT_MAX + 1));
    w->actor_len = (uint8_t)((h >> 24) % (CRP_JOURNAL_ACTOR_MAX + 1));
    w->comment_len = (uint16_t)(seq % 17 == 0 ? CRP_JOURNAL_COMMENT_MAX
                                              : (h >> 32) % (CRP_JOURNAL_COMMENT_MAX + 1));
    for (unsigned k = 0; k < w->id_len; k++)
        w->id[k] = (char)('a' + (seq + k) % 26);
    for (unsigned k = 0; k < w->tenant_len; k++)
        w->tenant[k] = (char)('A' + (seq * 3 + k) % 26);
    for (unsigned k = 0; k < w->actor_len; k++)
        w->actor[k] = (char)('0' + (seq + k) % 10);
    for (unsigned k = 0; k < w->comment_len; k++)
        w->comment[k] = (char)(' ' + (seq * 7 + k) % 95);
    w->state = (uint8_t)(CRP_STATE_ACTIVE + seq % 3);
    w->reasons = (uint8_t)(h >> 50);
    w->kind = (uint8_t)(1 + seq % 6);
    w->until_midnight = (seq & 1) != 0;
    w->since_ms = 1700000000000ull + seq;
    w->at_ms = w->since_ms + 5;
}

static void rec_of(const struct want *w, crp_journal_rec *r)
{
    memset(r, 0, sizeof *r);
    r->type = w->type;
    r->policy = w->policy;
    r->policy_len = w->policy_len;
    r->state.id = w->id;
    r->state.id_len = w->id_len;
    r->state.tenant = w->tenant;
    r->state.tenant_len = w->tenant_len;
    r->state.actor = w->actor;
    r->state.actor_len = w->actor_len;
    r->state.comment = w->comment;
    r->state.comment_len = w->comment_len;
    r->state.state = w->state;
    r->state.reasons = w->reasons;
    r->state.kind = w->kind;
    r->state.until_midnight = w->until_midnight;
    r->state.since_ms = w->since_ms;
    r->state.at_ms = w->at_ms;
}

static void check_rec(const crp_journal_rec *r)
{
    struct want w;
    want_for(r->seq, &w);
    cr_assert(eq(u8, r->type, w.type), "seq %llu", (unsigned long long)r->seq);
    if (w.type == CRP_JOURNAL_POLICY) {
        cr_assert(eq(u32, r->policy_len, w.policy_len));
        cr_assert(eq(int, memcmp(r->policy, w.policy, w.policy_len), 0));
        return;
    }
    const crp_journal_state *s = &r->state;
    cr_assert(eq(u8, s->id_len, w.id_len));
    cr_assert(eq(int, memcmp(s->id, w.id, w.id_len), 0));
    cr_assert(eq(u8, s->tenant_len, w.tenant_len));
    cr_assert(eq(int, memcmp(s->tenant, w.tenant, w.tenant_len), 0));
    cr_assert(eq(u8, s->actor_len, w.actor_len));
    cr_assert(eq(int, memcmp(s->actor, w.actor, w.actor_len), 0));
    cr_assert(eq(u16, s->comment_len, w.comment_len));
    cr_assert(eq(int, memcmp(s->comment, w.comment, w.comment_len), 0));
    cr_assert(eq(u8, s->state, w.state));
    cr_assert(eq(u8, s->reasons, w.reasons));
    cr_assert(eq(u8, s->kind, w.kind));
    cr_assert(eq(int, s->until_midnight, w.until_midnight));
    cr_assert(eq(u64, s->since_ms, w.since_ms));
    cr_assert(eq(u64, s->at_ms, w.at_ms));
}

/* Appends n records; returns CRP_OK or the first error. */
static crp_err append_n(crp_journal *j, unsigned n)
{
    static struct want w;
    crp_journal_rec r;
    for (unsigned i = 0; i < n; i++) {
        uint64_t seq = crp_journal_last_seq(j) + 1, got = 0;
        want_for(seq, &w);
        rec_of(&w, &r);
        crp_err err = crp_journal_append(j, &r, &got);
        if (err != CRP_OK)
            return err;
        cr_assert(eq(u64, got, seq));
    }
    return CRP_OK;
}

struct replay {
    uint64_t n, first, last;
    bool gap;
};

static crp_err on_replay(void *ctx, const crp_journal_rec *r)
{
    struct replay *rp = ctx;
    check_rec(r);
    if (rp->n == 0)
        rp->first = r->seq;
    else if (r->seq != rp->last + 1)
        rp->gap = true;
    rp->last = r->seq;
    rp->n++;
    return CRP_OK;
}

static crp_err open_in(const char *d, crp_journal **j, uint64_t from, const crp_io_ops *io,
                       struct replay *rp, char *err, size_t errlen)
{
    memset(rp, 0, sizeof *rp);
    crp_journal_opts o = {.from_seq = from, .replay = on_replay, .ctx = rp, .io = io};
    return crp_journal_open(j, d, &o, err, errlen);
}

static crp_err open_j(crp_journal **j, uint64_t from, const crp_io_ops *io, struct replay *rp,
                      char *err, size_t errlen)
{
    return open_in(dir, j, from, io, rp, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Injecting I/O with a power-loss model                                     */
/* ------------------------------------------------------------------------ */

/* Power loss: every journal file keeps its synced bytes and a random
 * prefix of the rest. */
static void crash(const char *d, unsigned *rng)
{
    static const char *names[] = {"journal", "journal.prev", "journal.tmp"};
    char p[128];
    for (size_t i = 0; i < 3; i++) {
        path_of(p, sizeof p, d, names[i]);
        inj_crash_file(p, rng);
    }
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

Test(journal, round_trip_many_records)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    crp_journal_stats st;

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(str, err, ""));
    cr_assert(eq(u64, rp.n, 0));
    /* Group commits of 1..50 records. */
    unsigned total = 0;
    for (unsigned b = 0; total < 5000; b++) {
        unsigned n = 1 + (b * 7) % 50;
        cr_assert(eq(int, append_n(j, n), CRP_OK));
        cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
        total += n;
    }
    crp_journal_stats_get(j, &st);
    cr_assert(eq(u64, st.last_seq, total));
    cr_assert(eq(u64, st.durable_seq, total));
    cr_assert(eq(u64, st.pending, 0));
    cr_assert(not(st.failed));
    crp_journal_close(&j);
    cr_assert(eq(ptr, j, NULL));
    crp_journal_close(&j); /* NULL-safe */

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(str, err, ""));
    cr_assert(eq(u64, rp.n, total));
    cr_assert(eq(u64, rp.first, 1));
    cr_assert(eq(u64, rp.last, total));
    cr_assert(not(rp.gap));
    /* Sequences continue after a reopen. */
    cr_assert(eq(int, append_n(j, 3), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);

    /* A snapshot covering 2500: only the later records are replayed. */
    cr_assert(eq(int, open_j(&j, 2500, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, total + 3 - 2500));
    cr_assert(eq(u64, rp.first, 2501));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

struct blob_copy {
    unsigned char *dst;
    uint32_t len;
    unsigned n;
};

static crp_err copy_blob(void *ctx, const crp_journal_rec *rec)
{
    struct blob_copy *c = ctx;
    cr_assert(eq(u8, rec->type, CRP_JOURNAL_POLICY));
    memcpy(c->dst, rec->policy, rec->policy_len);
    c->len = rec->policy_len;
    c->n++;
    return CRP_OK;
}

Test(journal, largest_policy_record)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    unsigned char *blob = malloc(CRP_JOURNAL_POLICY_MAX);
    unsigned char *seen = malloc(CRP_JOURNAL_POLICY_MAX);
    for (size_t i = 0; i < CRP_JOURNAL_POLICY_MAX; i++)
        blob[i] = (unsigned char)(i * 131u >> 3);
    crp_journal_rec r = {
        .type = CRP_JOURNAL_POLICY, .policy = blob, .policy_len = CRP_JOURNAL_POLICY_MAX};

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_OK));
    r.policy_len = CRP_JOURNAL_POLICY_MAX + 1;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);

    struct blob_copy c = {.dst = seen};
    crp_journal_opts o = {.replay = copy_blob, .ctx = &c};
    cr_assert(eq(int, crp_journal_open(&j, dir, &o, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u32, c.n, 1));
    cr_assert(eq(u32, c.len, CRP_JOURNAL_POLICY_MAX));
    cr_assert(eq(int, memcmp(seen, blob, CRP_JOURNAL_POLICY_MAX), 0));
    crp_journal_close(&j);
    free(seen);
    free(blob);
}

Test(journal, close_drops_uncommitted)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 10), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    cr_assert(eq(int, append_n(j, 5), CRP_OK));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(u64, rp.n, 10));
    /* The dropped sequences are reused: they were never durable or
     * acknowledged, so nothing can refer to them. */
    cr_assert(eq(u64, crp_journal_last_seq(j), 10));
    crp_journal_close(&j);
}

Test(journal, append_rejects_bad_records)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    struct want w;
    crp_journal_rec r;

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    want_for(1, &w);
    rec_of(&w, &r);
    r.state.id_len = 0;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    rec_of(&w, &r);
    r.state.tenant_len = CRP_TENANT_MAX + 1;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    rec_of(&w, &r);
    r.state.actor_len = CRP_JOURNAL_ACTOR_MAX + 1;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    rec_of(&w, &r);
    r.state.comment_len = CRP_JOURNAL_COMMENT_MAX + 1;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    rec_of(&w, &r);
    r.state.state = CRP_STATE_UNKNOWN;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    rec_of(&w, &r);
    r.type = 9;
    cr_assert(eq(int, crp_journal_append(j, &r, NULL), CRP_INVAL));
    cr_assert(eq(u64, crp_journal_last_seq(j), 0));
    crp_journal_close(&j);
}

/* ------------------------------------------------------------------------ */
/* Torn tails and corruption                                                 */
/* ------------------------------------------------------------------------ */

#define TORN_RECORDS 20u

/* Writes TORN_RECORDS records, one commit each, and returns the file and
 * the offset where the last record starts. */
static unsigned char *make_journal(size_t *len, size_t *last_off, size_t *mid_off, size_t *mid_len)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512], p[128];
    path_of(p, sizeof p, dir, "journal");
    inj_reset();
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK));
    for (unsigned i = 0; i < TORN_RECORDS; i++) {
        size_t before = (size_t)size_of(p);
        if (i == TORN_RECORDS - 1)
            *last_off = before;
        cr_assert(eq(int, append_n(j, 1), CRP_OK));
        cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
        if (i == TORN_RECORDS / 2) {
            *mid_off = before;
            *mid_len = (size_t)size_of(p) - before;
        }
    }
    crp_journal_close(&j);
    return slurp(p, len);
}

/* After a cut: the earlier records replay, the file ends where the last
 * record began, and appending then works. */
static void check_cut_and_append(size_t last_off, const char *why)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512], p[128], want[256];
    path_of(p, sizeof p, dir, "journal");

    /* Unarmed injecting ops: real writes, syncs to the page cache only,
     * which is all this logic needs (thousands of runs, fast in CI). */
    inj_reset();
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK), "%s: %s", why, err);
    snprintf(want, sizeof want, "%s: offset %zu: cut a torn last record", p, last_off);
    cr_assert(strstr(err, want) != NULL, "%s: got '%s', want '%s'", why, err, want);
    cr_assert(eq(u64, rp.n, TORN_RECORDS - 1), "%s", why);
    cr_assert(not(rp.gap));
    cr_assert(eq(sz, (size_t)size_of(p), last_off), "%s", why);
    crp_journal_stats st;
    crp_journal_stats_get(j, &st);
    cr_assert(gt(u64, st.tail_cut, 0));
    cr_assert(not(st.failed));
    cr_assert(eq(int, append_n(j, 1), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(str, err, ""), "%s", why);
    cr_assert(eq(u64, rp.n, TORN_RECORDS), "%s", why);
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

Test(journal, torn_tail_at_every_offset_is_cut)
{
    use_tmpfs();
    size_t len, last_off, mid_off, mid_len;
    char p[128];
    unsigned char *orig = make_journal(&len, &last_off, &mid_off, &mid_len);
    path_of(p, sizeof p, dir, "journal");
    size_t last_len = len - last_off;
    cr_log_info("last record: %zu bytes at offset %zu", last_len, last_off);

    /* Short: the file ends at every byte inside the last record. */
    for (size_t k = 1; k < last_len; k++) {
        char why[64];
        snprintf(why, sizeof why, "cut at +%zu", k);
        spill(p, orig, last_off + k);
        check_cut_and_append(last_off, why);
    }
    /* Damaged: every byte of the last record flipped in turn. */
    for (size_t k = 0; k < last_len; k++) {
        char why[64];
        unsigned char *c = malloc(len);
        memcpy(c, orig, len);
        c[last_off + k] ^= 0x5a;
        snprintf(why, sizeof why, "flip at +%zu", k);
        spill(p, c, len);
        free(c);
        check_cut_and_append(last_off, why);
    }
    /* Zeros after the last record (a file extended but not written): cut,
     * all records kept. */
    {
        crp_journal *j = NULL;
        struct replay rp;
        char err[512];
        unsigned char *c = calloc(1, len + 4096);
        memcpy(c, orig, len);
        spill(p, c, len + 4096);
        free(c);
        cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
        cr_assert(strstr(err, "cut a torn last record") != NULL, "%s", err);
        cr_assert(eq(u64, rp.n, TORN_RECORDS));
        cr_assert(eq(sz, (size_t)size_of(p), len));
        crp_journal_close(&j);
    }
    free(orig);
}

Test(journal, corrupt_middle_record_is_refused)
{
    use_tmpfs();
    size_t len, last_off, mid_off, mid_len;
    char p[128], want[256];
    unsigned char *orig = make_journal(&len, &last_off, &mid_off, &mid_len);
    path_of(p, sizeof p, dir, "journal");

    for (size_t k = 0; k < mid_len; k++) {
        crp_journal *j = NULL;
        struct replay rp;
        char err[512];
        size_t got_len;
        unsigned char *c = malloc(len);
        memcpy(c, orig, len);
        c[mid_off + k] ^= 0x01;
        spill(p, c, len);
        cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_BADFILE),
                  "flip at +%zu: %s", k, err);
        cr_assert(eq(ptr, j, NULL));
        snprintf(want, sizeof want, "%s: offset %zu:", p, mid_off);
        cr_assert(strstr(err, want) != NULL, "flip at +%zu: got '%s', want '%s'", k, err, want);
        /* Nothing was replayed and nothing cut. */
        cr_assert(eq(u64, rp.n, 0));
        unsigned char *after = slurp(p, &got_len);
        cr_assert(eq(sz, got_len, len));
        cr_assert(eq(int, memcmp(after, c, len), 0));
        free(after);
        free(c);
    }
    free(orig);
}

Test(journal, bad_segment_header_is_refused)
{
    use_tmpfs();
    size_t len, last_off, mid_off, mid_len;
    char p[128];
    unsigned char *orig = make_journal(&len, &last_off, &mid_off, &mid_len);
    path_of(p, sizeof p, dir, "journal");
    for (size_t k = 0; k < 32; k++) {
        crp_journal *j = NULL;
        struct replay rp;
        char err[512], want[160];
        orig[k] ^= 0x80;
        spill(p, orig, len);
        orig[k] ^= 0x80;
        cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_BADFILE), "%zu", k);
        snprintf(want, sizeof want, "%s: offset 0:", p);
        cr_assert(strstr(err, want) != NULL, "%s", err);
    }
    free(orig);
}

Test(journal, missing_records_are_refused)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512], p[128];

    /* A snapshot was loaded but the journal is gone. */
    cr_assert(eq(int, open_j(&j, 5, NULL, &rp, err, sizeof err), CRP_BADFILE));
    cr_assert(strstr(err, "missing") != NULL, "%s", err);

    /* Records 1..5 in journal.prev, the segment after it starts at 6. */
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 5), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    cr_assert(eq(int, crp_journal_rotate(j, 5), CRP_OK));
    cr_assert(eq(int, append_n(j, 2), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);

    /* From the older snapshot (covering 2), journal.prev supplies 3..5. */
    cr_assert(eq(int, open_j(&j, 2, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.first, 3));
    cr_assert(eq(u64, rp.last, 7));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);

    /* Without journal.prev, the same start must refuse, naming the hole. */
    path_of(p, sizeof p, dir, "journal.prev");
    cr_assert(eq(int, unlink(p), 0));
    cr_assert(eq(int, open_j(&j, 2, NULL, &rp, err, sizeof err), CRP_BADFILE));
    cr_assert(strstr(err, "records 3..5 are missing") != NULL, "%s", err);
    cr_assert(eq(u64, rp.n, 0));
    /* From the newer snapshot it is not needed. */
    cr_assert(eq(int, open_j(&j, 5, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, 2));
    crp_journal_close(&j);
}

/* ------------------------------------------------------------------------ */
/* Rotation                                                                  */
/* ------------------------------------------------------------------------ */

Test(journal, rotate_carries_records_after_the_snapshot)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 10), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    /* The snapshot covers 6; 7..10 were appended while it was written,
     * 11..12 are not committed yet: rotation makes them durable too. */
    cr_assert(eq(int, append_n(j, 2), CRP_OK));
    cr_assert(eq(int, crp_journal_rotate(j, 13), CRP_INVAL));
    cr_assert(eq(int, crp_journal_rotate(j, 6), CRP_OK));
    crp_journal_stats st;
    crp_journal_stats_get(j, &st);
    cr_assert(eq(u64, st.segment_base, 7));
    cr_assert(eq(u64, st.durable_seq, 12));
    cr_assert(eq(u64, st.pending, 0));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    cr_assert(eq(int, crp_journal_rotate(j, 5), CRP_INVAL)); /* before the segment */
    crp_journal_close(&j);

    cr_assert(eq(int, open_j(&j, 6, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.first, 7));
    cr_assert(eq(u64, rp.last, 12));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.first, 1));
    cr_assert(eq(u64, rp.last, 12));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

Test(journal, interrupted_rotation_is_completed)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512], p[128];

    inj_reset();
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 4), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    cr_assert(eq(int, append_n(j, 3), CRP_OK));
    /* Fail the second rename of the rotation: journal is already
     * journal.prev, journal.tmp is complete. */
    inj_arm(F_RENAME, 2, false, EIO, false);
    cr_assert(eq(int, crp_journal_rotate(j, 4), CRP_IO));
    cr_assert(crp_journal_failed(j));
    cr_assert(eq(int, crp_journal_errno(j), EIO));
    cr_assert(strstr(crp_journal_error(j), "rename failed") != NULL, "%s", crp_journal_error(j));
    path_of(p, sizeof p, dir, "journal");
    cr_assert(not(file_exists(p)));
    crp_journal_close(&j);

    cr_assert(eq(int, open_j(&j, 4, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(strstr(err, "completed an interrupted rotation") != NULL, "%s", err);
    cr_assert(eq(u64, rp.first, 5));
    cr_assert(eq(u64, rp.last, 7));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, 7));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

Test(journal, crash_during_first_creation_is_a_first_start)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512], p[128];
    static const size_t sizes[] = {0, 1, 31};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        path_of(p, sizeof p, dir, "journal.tmp");
        spill(p, (const unsigned char *)"CRPJRNL1CRPJRNL1CRPJRNL1CRPJRNL1", sizes[i]);
        cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
        cr_assert(strstr(err, "removed an incomplete first segment") != NULL, "%s", err);
        cr_assert(eq(int, append_n(j, 1), CRP_OK));
        cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
        crp_journal_close(&j);
        path_of(p, sizeof p, dir, "journal");
        cr_assert(eq(int, unlink(p), 0));
    }
    /* With a snapshot loaded, a damaged tmp is not explained away. */
    path_of(p, sizeof p, dir, "journal.tmp");
    spill(p, (const unsigned char *)"x", 1);
    cr_assert(eq(int, open_j(&j, 3, NULL, &rp, err, sizeof err), CRP_BADFILE));
    cr_assert(strstr(err, "offset 0") != NULL, "%s", err);
}

Test(journal, failed_journal_refuses_until_rotate)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    crp_journal_stats st;

    inj_reset();
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 5), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    inj_arm(F_FDATASYNC, 1, false, EIO, false);
    cr_assert(eq(int, append_n(j, 3), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_IO));
    cr_assert(crp_journal_failed(j));
    cr_assert(eq(int, crp_journal_errno(j), EIO));
    crp_journal_stats_get(j, &st);
    cr_assert(st.failed);
    cr_assert(eq(str, (char *)st.failed_op, "fdatasync"));
    cr_assert(eq(u64, st.io_errors, 1));
    cr_assert(eq(u64, st.durable_seq, 5));

    /* The failure was "once", yet nothing touches the file again: no
     * retry of the sync, no write behind the unknown bytes. */
    unsigned writes = inj.calls[F_WRITE], syncs = inj.calls[F_FDATASYNC];
    cr_assert(eq(int, append_n(j, 1), CRP_IO));
    cr_assert(eq(int, crp_journal_commit(j), CRP_IO));
    cr_assert(eq(int, crp_journal_commit(j), CRP_IO));
    cr_assert(eq(u32, inj.calls[F_WRITE], writes));
    cr_assert(eq(u32, inj.calls[F_FDATASYNC], syncs));
    cr_assert(eq(u64, crp_journal_last_seq(j), 8));

    /* A snapshot covering 8 succeeded: rotation recovers. */
    cr_assert(eq(int, crp_journal_rotate(j, 8), CRP_OK));
    cr_assert(not(crp_journal_failed(j)));
    cr_assert(eq(int, crp_journal_errno(j), 0));
    cr_assert(eq(int, append_n(j, 2), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);

    /* The failed batch 6..8 was carried into the new segment, so even the
     * older snapshot's start finds every record. */
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, 10));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

/* The journal failed, the snapshot still captured the failed batch (it
 * covers sequence 8, the journal's disk holds 1..5), and the rotation
 * failed too. A restart from the snapshot must not reuse 6..8, nor put a
 * hole inside a segment. */
static void make_snapshot_ahead(void)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    inj_reset();
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK));
    cr_assert(eq(int, append_n(j, 5), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    inj_rearm(F_FDATASYNC, 1, true, ENOSPC);
    cr_assert(eq(int, append_n(j, 3), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_IO));
    inj_rearm(F_RENAME, 1, true, ENOSPC);
    cr_assert(eq(int, crp_journal_rotate(j, 8), CRP_IO));
    crp_journal_close(&j);
    /* The unsynced batch is lost with the power. */
    char p[128];
    path_of(p, sizeof p, dir, "journal");
    unsigned rng = 0;
    crash(dir, &rng);
    cr_assert(le(sz, (size_t)size_of(p), 32u + 5u * 2000u));
}

Test(journal, snapshot_ahead_of_failed_journal)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    use_tmpfs();
    make_snapshot_ahead();

    cr_assert(eq(int, open_j(&j, 8, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, 0));
    cr_assert(eq(u64, crp_journal_last_seq(j), 8));
    crp_journal_stats st;
    crp_journal_stats_get(j, &st);
    cr_assert(eq(u64, st.segment_base, 9));
    cr_assert(eq(int, append_n(j, 2), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 8, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.first, 9));
    cr_assert(eq(u64, rp.last, 10));
    crp_journal_close(&j);
    /* The older start cannot be served, and says so. */
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_BADFILE));
    cr_assert(strstr(err, "records 6..8 are missing") != NULL, "%s", err);
}

Test(journal, snapshot_ahead_and_segment_start_fails)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    use_tmpfs();
    make_snapshot_ahead();

    /* The new segment cannot be created at open: the journal is failed,
     * but start-up goes on. */
    inj_arm(F_FSYNC, 1, true, EIO, false);
    cr_assert(eq(int, open_j(&j, 8, &inj_ops, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(crp_journal_failed(j));
    cr_assert(strstr(err, "fsync failed") != NULL, "%s", err);
    cr_assert(eq(int, append_n(j, 1), CRP_IO));
    /* The disk is back; the next snapshot covers 8 again, and its
     * rotation starts the segment after it. */
    inj.armed = false;
    cr_assert(eq(int, crp_journal_rotate(j, 8), CRP_OK));
    cr_assert(eq(int, append_n(j, 2), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 8, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.first, 9));
    cr_assert(eq(u64, rp.last, 10));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
}

/* ------------------------------------------------------------------------ */
/* Fault injection: Nth call fails, once or persistently, then power loss    */
/* ------------------------------------------------------------------------ */

struct fault_result {
    bool ok;
    unsigned failures;
};

/* Runs the workload of an engine against the journal with one fault armed:
 * batches of 1..5 records with a commit each; every 8 batches a (virtual,
 * always successful) snapshot covering the last sequence, then a rotation.
 * Then the power fails. Checks that every acknowledged record comes back,
 * from the newest snapshot and, where possible, from the older one. */
static void run_fault(enum fop op, unsigned at, bool persistent, int e, bool partial, unsigned seed,
                      unsigned *calls)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    uint64_t acked = 0, snap = 0, snap_prev = 0, seen[3] = {0, 0, 0};
    bool saw_fail = false;
    char what[96];

    snprintf(what, sizeof what, "%s #%u %s %s%s", fop_name[op], at,
             persistent ? "persistent" : "once", e == ENOSPC ? "ENOSPC" : "EIO",
             partial ? " partial" : "");
    inj_arm(op, at, persistent, e, partial);
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK), "%s: %s", what, err);
    for (unsigned b = 1; b <= 30; b++) {
        /* The snapshot began two batches ago: it covers what had been
         * appended then, and the rotation carries the rest. */
        seen[b % 3] = crp_journal_last_seq(j);
        if (b % 8 == 0) {
            snap_prev = snap;
            snap = seen[(b + 1) % 3] > snap ? seen[(b + 1) % 3] : snap;
            crp_err rc = crp_journal_rotate(j, snap);
            cr_assert(rc == CRP_OK || rc == CRP_IO, "%s: rotate %d", what, rc);
            cr_assert(eq(int, rc == CRP_IO, crp_journal_failed(j)), "%s", what);
        }
        bool was_failed = crp_journal_failed(j);
        unsigned io_calls = inj.calls[F_WRITE] + inj.calls[F_FDATASYNC];
        crp_err rc = append_n(j, 1 + (b * 3 + seed) % 5);
        if (was_failed) {
            cr_assert(eq(int, rc, CRP_IO), "%s", what);
        } else {
            cr_assert(eq(int, rc, CRP_OK), "%s", what);
        }
        rc = crp_journal_commit(j);
        if (rc == CRP_OK) {
            acked = crp_journal_last_seq(j);
        } else {
            cr_assert(eq(int, rc, CRP_IO), "%s", what);
            cr_assert(crp_journal_failed(j), "%s", what);
            cr_assert(eq(int, crp_journal_errno(j), e), "%s", what);
            saw_fail = true;
        }
        if (was_failed) /* a failed journal does no I/O */
            cr_assert(eq(u32, inj.calls[F_WRITE] + inj.calls[F_FDATASYNC], io_calls), "%s", what);
    }
    crp_journal_stats st;
    crp_journal_stats_get(j, &st);
    cr_assert(eq(int, st.io_errors > 0, inj.failures > 0 || saw_fail), "%s", what);
    crp_journal_close(&j);
    if (calls != NULL)
        memcpy(calls, inj.calls, sizeof inj.calls);

    /* Power loss, then a start-up with the real system calls. Keep a copy
     * of the directory for the fallback start. */
    crash(dir, &seed);
    char dir2[96];
    snprintf(dir2, sizeof dir2, "%s-fallback-XXXXXX", dir);
    cr_assert(mkdtemp(dir2) != NULL, "%s: %s", dir2, strerror(errno));
    static const char *names[] = {"journal", "journal.prev", "journal.tmp"};
    for (size_t i = 0; i < 3; i++) {
        char a[128], b[128];
        path_of(a, sizeof a, dir, names[i]);
        path_of(b, sizeof b, dir2, names[i]);
        if (file_exists(a)) {
            size_t n;
            unsigned char *c = slurp(a, &n);
            spill(b, c, n);
            free(c);
        }
    }
    inj_reset();
    cr_assert(eq(int, open_j(&j, snap, NULL, &rp, err, sizeof err), CRP_OK), "%s: %s", what, err);
    /* Everything acknowledged after the snapshot is replayed, in order. */
    if (acked > snap) {
        cr_assert(eq(u64, rp.first, snap + 1), "%s: %s", what, err);
        cr_assert(ge(u64, rp.last, acked), "%s: %s", what, err);
    }
    cr_assert(not(rp.gap), "%s", what);
    /* The journal is writable after the restart. */
    uint64_t next = crp_journal_last_seq(j) + 1;
    cr_assert(ge(u64, next, snap + 1), "%s", what);
    cr_assert(eq(int, append_n(j, 1), CRP_OK), "%s", what);
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK), "%s", what);
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, snap, NULL, &rp, err, sizeof err), CRP_OK), "%s: %s", what, err);
    cr_assert(eq(u64, rp.last, next), "%s", what);
    crp_journal_close(&j);

    /* The fallback start from the older snapshot either replays every
     * acknowledged record after it, or — only when writes failed — refuses
     * and names the missing records. It never replays across a hole. */
    crp_err rc = open_in(dir2, &j, snap_prev, NULL, &rp, err, sizeof err);
    if (rc == CRP_OK) {
        if (acked > snap_prev) {
            cr_assert(eq(u64, rp.first, snap_prev + 1), "%s fallback: %s", what, err);
            cr_assert(ge(u64, rp.last, acked), "%s fallback", what);
        }
        cr_assert(not(rp.gap), "%s fallback", what);
        crp_journal_close(&j);
    } else {
        cr_assert(eq(int, rc, CRP_BADFILE), "%s fallback: %s", what, err);
        cr_assert(strstr(err, "missing") != NULL, "%s fallback: %s", what, err);
        cr_assert(saw_fail || st.io_errors > 0, "%s fallback refused without a failure: %s", what,
                  err);
    }
    rm_tree(dir2);
    rm_tree(dir);
    cr_assert(eq(int, mkdir(dir, 0700), 0));
}

Test(journal, injected_failures_lose_nothing_acknowledged, .timeout = 240)
{
    use_tmpfs();
    static const enum fop ops[] = {F_WRITE, F_FDATASYNC, F_FSYNC, F_RENAME, F_OPEN};
    static const int errs[] = {ENOSPC, EIO};
    unsigned calls[F_NOPS], runs = 0;

    /* A dry run counts the calls the workload makes, so that every one of
     * them is made to fail in turn (and one more, which never comes). */
    run_fault(F_WRITE, 0, false, 0, false, 1, calls);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (unsigned at = 1; at <= calls[ops[o]] + 1; at++)
            for (int persistent = 0; persistent <= 1; persistent++)
                for (size_t e = 0; e < 2; e++) {
                    run_fault(ops[o], at, persistent, errs[e], false, at * 7 + (unsigned)e, NULL);
                    runs++;
                    if (ops[o] == F_WRITE) {
                        run_fault(ops[o], at, persistent, errs[e], true, at * 5 + 1, NULL);
                        runs++;
                    }
                }
    fprintf(stderr,
            "journal: %u injected-fault scenarios (every write %u, fdatasync %u, fsync %u, "
            "rename %u, open %u of the workload; once and persistent; ENOSPC and EIO), each "
            "followed by a power loss: 0 acknowledged records lost\n",
            runs, calls[F_WRITE], calls[F_FDATASYNC], calls[F_FSYNC], calls[F_RENAME],
            calls[F_OPEN]);
}

Test(journal, failed_tail_cut_leaves_journal_failed)
{
    use_tmpfs();
    size_t len, last_off, mid_off, mid_len;
    char p[128];
    unsigned char *orig = make_journal(&len, &last_off, &mid_off, &mid_len);
    path_of(p, sizeof p, dir, "journal");
    spill(p, orig, len - 3);

    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    inj_arm(F_FTRUNCATE, 1, false, EIO, false);
    cr_assert(eq(int, open_j(&j, 0, &inj_ops, &rp, err, sizeof err), CRP_OK), "%s", err);
    cr_assert(eq(u64, rp.n, TORN_RECORDS - 1));
    cr_assert(crp_journal_failed(j));
    cr_assert(strstr(err, "ftruncate failed") != NULL, "%s", err);
    cr_assert(eq(int, append_n(j, 1), CRP_IO));
    /* The next snapshot's rotation repairs it. */
    cr_assert(eq(int, crp_journal_rotate(j, TORN_RECORDS - 1), CRP_OK));
    cr_assert(eq(int, append_n(j, 1), CRP_OK));
    cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
    crp_journal_close(&j);
    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK), "%s", err);
    /* The old segment, torn tail included, is journal.prev now: reported,
     * never written. */
    cr_assert(strstr(err, "journal.prev: offset") != NULL, "%s", err);
    cr_assert(eq(u64, rp.n, TORN_RECORDS));
    cr_assert(not(rp.gap));
    crp_journal_close(&j);
    free(orig);
}

Test(journal, commit_throughput)
{
    crp_journal *j = NULL;
    struct replay rp;
    char err[512];
    struct timespec a, b;

    cr_assert(eq(int, open_j(&j, 0, NULL, &rp, err, sizeof err), CRP_OK));
    const unsigned commits = 200, per = 16;
    double lat[200];
    for (unsigned i = 0; i < commits; i++) {
        cr_assert(eq(int, append_n(j, per), CRP_OK));
        clock_gettime(CLOCK_MONOTONIC, &a);
        cr_assert(eq(int, crp_journal_commit(j), CRP_OK));
        clock_gettime(CLOCK_MONOTONIC, &b);
        lat[i] = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    }
    for (unsigned i = 1; i < commits; i++)
        for (unsigned k = i; k > 0 && lat[k - 1] > lat[k]; k--) {
            double t = lat[k];
            lat[k] = lat[k - 1];
            lat[k - 1] = t;
        }
    fprintf(stderr,
            "journal: commit (write + fdatasync) of %u records: median %.3f ms, p99 %.3f ms\n", per,
            lat[commits / 2], lat[commits * 99 / 100]);
    crp_journal_close(&j);
}
