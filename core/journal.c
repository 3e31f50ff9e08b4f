/* The journal: checksummed state-change records in an append-only file.
 *
 * FILE LAYOUT. A segment is a 32-byte header followed by records:
 *
 *   header   magic u64 "CRPJRNL1", version u32, header length u32 (32),
 *            base sequence u64, XXH3-64 of the previous 24 bytes
 *   record   magic u32 "CRPR", length u32, checksum u64, sequence u64,
 *            type u8, then `length` bytes of payload
 *
 *   STATE payload: at_ms u64, since_ms u64, state u8, reasons u8, kind u8,
 *            flags u8 (bit 0: until_midnight), id_len u8, tenant_len u8,
 *            actor_len u8, comment_len u16, then id, tenant, actor, comment
 *   POLICY payload: the bytes
 *
 * INVARIANTS.
 *  1. The records of a segment have the sequences base, base + 1, ... with
 *     no gap. A segment may be empty; its "last sequence" is then base - 1.
 *  2. [0, durable_off) of the current segment is on disk: written and
 *     fdatasynced (or fsynced when the segment was built). durable_seq is
 *     the sequence of the last record in it, or base - 1.
 *  3. The commit buffer holds the records durable_seq + 1 .. next_seq - 1,
 *     encoded, in order. A failed commit keeps them there: nothing of them
 *     counts as durable, and a rotation writes them into the new segment.
 *  4. While failed, nothing writes to the current segment: append and
 *     commit refuse, so its bytes past durable_off (a torn or unsynced
 *     write) are never built upon. Only a rotation, which writes a new file,
 *     clears the failure.
 *  5. A rotation never removes a record that the segment pair
 *     (journal.prev, journal) needs: the new segment starts at or before
 *     durable_seq + 1, so journal.prev followed by journal is gap-free.
 *  6. half_rotated: journal has been renamed to journal.prev but journal.tmp
 *     not yet to journal. Then tmp_fd is the complete, fsynced new segment,
 *     and the next rotation only finishes the rename; rebuilding the tmp
 *     file in place would expose a half-written journal.tmp to a crash
 *     while it is the only candidate for `journal`.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "crp/journal.h"
#include "io_priv.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_MAGIC   0x314c4e524a505243ull /* "CRPJRNL1" little-endian */
#define SEG_VERSION 1u
#define SEG_HDR     32u
#define REC_MAGIC   0x52504352u /* "CRPR" little-endian */
#define REC_HDR     25u
/* at, since, then seven single bytes and the comment length. */
#define STATE_FIXED 25u
#define STATE_MAX                                                                                  \
    (STATE_FIXED + CRP_ID_MAX + CRP_TENANT_MAX + CRP_JOURNAL_ACTOR_MAX + CRP_JOURNAL_COMMENT_MAX)
#define PAYLOAD_MAX CRP_JOURNAL_POLICY_MAX
#define NOT_FOUND   ((size_t)-1)

struct crp_journal {
    const crp_io_ops *io;
    char *dir;
    char *path;      /* dir/journal */
    char *prev_path; /* dir/journal.prev */
    char *tmp_path;  /* dir/journal.tmp */
    int fd;          /* the current segment; -1 when none could be created */
    uint64_t base;   /* first sequence of the current segment */
    uint64_t next_seq;
    uint64_t durable_seq;
    uint64_t durable_off;
    unsigned char *buf; /* the commit buffer (invariant 3) */
    size_t buf_len;
    size_t buf_cap;
    bool half_rotated; /* invariant 6 */
    int tmp_fd;        /* a complete journal.tmp kept for the next rotation */
    uint64_t tmp_base;
    uint64_t tmp_size;
    /* Sequences up to hole_end exist only in the snapshot open() was given
     * (they failed to commit here); a new segment must start after them. */
    uint64_t hole_end;
    bool failed;
    int failed_errno;
    const char *failed_op;
    char msg[512]; /* the sentence describing the failure */
    crp_journal_stats st;
};

/* ------------------------------------------------------------------------ */
/* Little-endian encoding and messages                                       */
/* ------------------------------------------------------------------------ */

/* Appends a warning to errbuf: open may have more than one to report. */
__attribute__((format(printf, 3, 4))) static void add_msg(char *errbuf, size_t errlen,
                                                          const char *fmt, ...)
{
    va_list ap;
    size_t used;

    if (errbuf == NULL || errlen == 0)
        return;
    used = strlen(errbuf);
    if (used > 0 && used + 2 < errlen) {
        memcpy(errbuf + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf + used, errlen - used, fmt, ap);
    va_end(ap);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ------------------------------------------------------------------------ */
/* POSIX I/O                                                                 */
/* ------------------------------------------------------------------------ */

static int posix_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

static ssize_t posix_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

static int posix_fsync(int fd)
{
    return fsync(fd);
}

static int posix_fdatasync(int fd)
{
    return fdatasync(fd);
}

static int posix_rename(const char *from, const char *to)
{
    return rename(from, to);
}

static int posix_ftruncate(int fd, off_t len)
{
    return ftruncate(fd, len);
}

static const crp_io_ops posix_ops = {
    .open = posix_open,
    .pwrite = posix_pwrite,
    .fsync = posix_fsync,
    .fdatasync = posix_fdatasync,
    .rename = posix_rename,
    .ftruncate = posix_ftruncate,
};

const crp_io_ops *crp_io_posix(void)
{
    return &posix_ops;
}

int crp_io_write_all(const crp_io_ops *io, int fd, const void *buf, size_t len, uint64_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = io->pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

const char *crp_io_fsync_dir(const crp_io_ops *io, const char *dir)
{
    int fd = io->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return "open";
    int rc = io->fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc == 0 ? NULL : "fsync";
}

/* Reads a whole file. Reads are not injected (see crp_io_ops). */
static crp_err read_all(int fd, const char *path, unsigned char **data, size_t *len, char *errbuf,
                        size_t errlen)
{
    struct stat sb;
    unsigned char *p;
    size_t got = 0;

    *data = NULL;
    *len = 0;
    if (fstat(fd, &sb) != 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: fstat: %s", path, strerror(errno));
        return CRP_IO;
    }
    p = malloc(sb.st_size > 0 ? (size_t)sb.st_size : 1);
    if (p == NULL)
        return CRP_NOMEM;
    while (got < (size_t)sb.st_size) {
        ssize_t n = pread(fd, p + got, (size_t)sb.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            crp_errbuf_printf(errbuf, errlen, "%s: read at offset %zu: %s", path, got,
                              n < 0 ? strerror(errno) : "unexpected end of file");
            free(p);
            return CRP_IO;
        }
        got += (size_t)n;
    }
    *data = p;
    *len = got;
    return CRP_OK;
}

/* Marks the journal failed with the call that failed; keeps the most
 * recent failure, which is what an operator needs to fix. */
static crp_err fail(crp_journal *j, const char *op, int err, const char *path)
{
    j->failed = true;
    j->failed_errno = err;
    j->failed_op = op;
    j->st.io_errors++;
    snprintf(j->msg, sizeof j->msg, "%s: %s failed: %s", path, op, strerror(err));
    return CRP_IO;
}

/* ------------------------------------------------------------------------ */
/* Records                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t rec_checksum(const unsigned char *rec, uint32_t len)
{
    return XXH3_64bits_withSeed(rec + 16, 9 + (size_t)len, (uint64_t)len << 32 | REC_MAGIC);
}

static void seg_header(unsigned char *h, uint64_t base)
{
    le_put64(h, SEG_MAGIC);
    le_put32(h + 8, SEG_VERSION);
    le_put32(h + 12, SEG_HDR);
    le_put64(h + 16, base);
    le_put64(h + 24, XXH3_64bits(h, 24));
}

/* Checks the limits of a record to append and returns its payload size. */
static crp_err rec_check(const crp_journal_rec *r, uint32_t *plen)
{
    if (r->type == CRP_JOURNAL_STATE) {
        const crp_journal_state *s = &r->state;
        if (s->id == NULL || s->id_len == 0 || s->tenant_len > CRP_TENANT_MAX ||
            (s->tenant == NULL && s->tenant_len > 0) || s->actor_len > CRP_JOURNAL_ACTOR_MAX ||
            (s->actor == NULL && s->actor_len > 0) || s->comment_len > CRP_JOURNAL_COMMENT_MAX ||
            (s->comment == NULL && s->comment_len > 0) || s->state < CRP_STATE_ACTIVE ||
            s->state > CRP_STATE_PROBATION)
            return CRP_INVAL;
        *plen = STATE_FIXED + s->id_len + s->tenant_len + s->actor_len + s->comment_len;
        return CRP_OK;
    }
    if (r->type == CRP_JOURNAL_POLICY) {
        if (r->policy_len > CRP_JOURNAL_POLICY_MAX || (r->policy == NULL && r->policy_len > 0))
            return CRP_INVAL;
        *plen = r->policy_len;
        return CRP_OK;
    }
    return CRP_INVAL;
}

static void rec_encode(unsigned char *p, const crp_journal_rec *r, uint64_t seq, uint32_t plen)
{
    unsigned char *q = p + REC_HDR;

    le_put32(p, REC_MAGIC);
    le_put32(p + 4, plen);
    le_put64(p + 16, seq);
    p[24] = r->type;
    if (r->type == CRP_JOURNAL_STATE) {
        const crp_journal_state *s = &r->state;
        le_put64(q, s->at_ms);
        le_put64(q + 8, s->since_ms);
        q[16] = s->state;
        q[17] = s->reasons;
        q[18] = s->kind;
        q[19] = s->until_midnight ? 1 : 0;
        q[20] = s->id_len;
        q[21] = s->tenant_len;
        q[22] = s->actor_len;
        le_put16(q + 23, s->comment_len);
        q += STATE_FIXED;
        memcpy(q, s->id, s->id_len);
        q += s->id_len;
        if (s->tenant_len > 0)
            memcpy(q, s->tenant, s->tenant_len);
        q += s->tenant_len;
        if (s->actor_len > 0)
            memcpy(q, s->actor, s->actor_len);
        q += s->actor_len;
        if (s->comment_len > 0)
            memcpy(q, s->comment, s->comment_len);
    } else if (plen > 0) {
        memcpy(q, r->policy, plen);
    }
    le_put64(p + 8, rec_checksum(p, plen));
}

/* Whether a complete record with a correct checksum starts at off. On
 * false, *why says what is wrong with it. */
static bool rec_intact(const unsigned char *d, size_t len, size_t off, uint32_t *plen,
                       const char **why)
{
    if (len - off < REC_HDR) {
        *why = "short record header";
        return false;
    }
    if (le_get32(d + off) != REC_MAGIC) {
        *why = "bad record magic";
        return false;
    }
    uint32_t n = le_get32(d + off + 4);
    if (n > PAYLOAD_MAX) {
        *why = "impossible record length";
        return false;
    }
    if (len - off - REC_HDR < n) {
        *why = "short record";
        return false;
    }
    if (le_get64(d + off + 8) != rec_checksum(d + off, n)) {
        *why = "checksum mismatch";
        return false;
    }
    *plen = n;
    return true;
}

/* Decodes an intact record; false when its payload is malformed (a bug or
 * an incompatible writer, never a torn write: the checksum matched). */
static bool rec_decode(const unsigned char *p, uint32_t plen, crp_journal_rec *r)
{
    const unsigned char *q = p + REC_HDR;

    memset(r, 0, sizeof *r);
    r->seq = le_get64(p + 16);
    r->type = p[24];
    if (r->type == CRP_JOURNAL_POLICY) {
        r->policy = q;
        r->policy_len = plen;
        return true;
    }
    if (r->type != CRP_JOURNAL_STATE || plen < STATE_FIXED)
        return false;
    crp_journal_state *s = &r->state;
    s->at_ms = le_get64(q);
    s->since_ms = le_get64(q + 8);
    s->state = q[16];
    s->reasons = q[17];
    s->kind = q[18];
    if (q[19] > 1)
        return false;
    s->until_midnight = q[19] == 1;
    s->id_len = q[20];
    s->tenant_len = q[21];
    s->actor_len = q[22];
    s->comment_len = le_get16(q + 23);
    if (s->id_len == 0 || s->tenant_len > CRP_TENANT_MAX || s->actor_len > CRP_JOURNAL_ACTOR_MAX ||
        s->comment_len > CRP_JOURNAL_COMMENT_MAX || s->state < CRP_STATE_ACTIVE ||
        s->state > CRP_STATE_PROBATION)
        return false;
    if ((size_t)plen !=
        (size_t)STATE_FIXED + s->id_len + s->tenant_len + s->actor_len + s->comment_len)
        return false;
    q += STATE_FIXED;
    s->id = (const char *)q;
    s->tenant = (const char *)(q + s->id_len);
    s->actor = s->tenant + s->tenant_len;
    s->comment = s->actor + s->actor_len;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Reading segments                                                          */
/* ------------------------------------------------------------------------ */

struct segment {
    const char *path;
    unsigned char *data; /* the whole file */
    size_t len;
    uint64_t base;
    size_t end;        /* end of the last intact record */
    uint64_t last_seq; /* base - 1 when empty */
    uint64_t records;
    const char *torn_why; /* non-NULL: [end, len) is a torn tail */
};

/* The first offset >= from holding an intact record with a sequence that
 * could follow the damaged one (>= min_seq), or NOT_FOUND. The sequence
 * condition keeps a record-like byte string inside some payload (a policy
 * blob may hold anything) from being taken for a later record. */
static size_t find_intact(const unsigned char *d, size_t len, size_t from, uint64_t min_seq)
{
    const char *why;
    uint32_t plen;

    for (size_t off = from; off + REC_HDR <= len; off++) {
        if (d[off] != (REC_MAGIC & 0xff) || le_get32(d + off) != REC_MAGIC)
            continue;
        if (rec_intact(d, len, off, &plen, &why) && le_get64(d + off + 16) >= min_seq)
            return off;
    }
    return NOT_FOUND;
}

/* Validates a segment in memory: its header, and every record in order.
 * Damage followed by an intact record is corruption (CRP_BADFILE); damage
 * with nothing intact after it is a torn tail, left for the caller to cut. */
static crp_err seg_scan(struct segment *s, char *errbuf, size_t errlen)
{
    const unsigned char *d = s->data;

    if (s->len < SEG_HDR) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset 0: file is %zu bytes, shorter than a segment header", s->path,
                          s->len);
        return CRP_BADFILE;
    }
    if (le_get64(d) != SEG_MAGIC || le_get64(d + 24) != XXH3_64bits(d, 24)) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset 0: not a journal segment header (bad magic or checksum)",
                          s->path);
        return CRP_BADFILE;
    }
    if (le_get32(d + 8) != SEG_VERSION || le_get32(d + 12) != SEG_HDR || le_get64(d + 16) == 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: offset 0: unsupported segment version %u", s->path,
                          (unsigned)le_get32(d + 8));
        return CRP_BADFILE;
    }
    s->base = le_get64(d + 16);

    size_t off = SEG_HDR;
    uint64_t expect = s->base;
    s->torn_why = NULL;
    while (off < s->len) {
        uint32_t plen;
        const char *why;
        crp_journal_rec r;

        if (!rec_intact(d, s->len, off, &plen, &why)) {
            size_t next = find_intact(d, s->len, off + 1, expect);
            if (next != NOT_FOUND) {
                crp_errbuf_printf(
                    errbuf, errlen,
                    "%s: offset %zu: %s in the record after sequence %llu, but an intact "
                    "record (sequence %llu) follows at offset %zu: the journal is corrupt "
                    "in the middle; refusing to drop records",
                    s->path, off, why, (unsigned long long)(expect - 1),
                    (unsigned long long)le_get64(d + next + 16), next);
                return CRP_BADFILE;
            }
            s->torn_why = why;
            break;
        }
        if (le_get64(d + off + 16) != expect) {
            crp_errbuf_printf(
                errbuf, errlen, "%s: offset %zu: sequence %llu where %llu was expected", s->path,
                off, (unsigned long long)le_get64(d + off + 16), (unsigned long long)expect);
            return CRP_BADFILE;
        }
        if (!rec_decode(d + off, plen, &r)) {
            crp_errbuf_printf(errbuf, errlen,
                              "%s: offset %zu: record %llu (type %u) has a malformed payload",
                              s->path, off, (unsigned long long)expect, (unsigned)r.type);
            return CRP_BADFILE;
        }
        off += REC_HDR + (size_t)plen;
        expect++;
        s->records++;
    }
    s->end = off;
    s->last_seq = expect - 1;
    return CRP_OK;
}

/* Delivers the segment's records from *expect on and advances *expect. A
 * segment starting after *expect means records are missing: CRP_BADFILE. */
static crp_err seg_deliver(const struct segment *s, uint64_t *expect, const crp_journal_opts *o,
                           uint64_t *replayed, char *errbuf, size_t errlen)
{
    if (s->base > *expect) {
        crp_errbuf_printf(
            errbuf, errlen,
            "%s: offset 0: the segment starts at sequence %llu, but records from %llu on are "
            "needed: records %llu..%llu are missing",
            s->path, (unsigned long long)s->base, (unsigned long long)*expect,
            (unsigned long long)*expect, (unsigned long long)(s->base - 1));
        return CRP_BADFILE;
    }
    for (size_t off = SEG_HDR; off < s->end;) {
        crp_journal_rec r;
        uint32_t plen = le_get32(s->data + off + 4);
        bool ok = rec_decode(s->data + off, plen, &r);
        assert(ok); /* seg_scan decoded every record before the end */
        (void)ok;
        if (r.seq >= *expect) {
            if (o != NULL && o->replay != NULL) {
                crp_err err = o->replay(o->ctx, &r);
                if (err != CRP_OK) {
                    crp_errbuf_printf(errbuf, errlen,
                                      "%s: offset %zu: replaying record %llu failed: %s", s->path,
                                      off, (unsigned long long)r.seq, crp_strerror(err));
                    return err;
                }
            }
            (*replayed)++;
            *expect = r.seq + 1;
        }
        off += REC_HDR + (size_t)plen;
    }
    return CRP_OK;
}

static crp_err seg_load(struct segment *s, const char *path, int fd, char *errbuf, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    crp_err err = read_all(fd, path, &s->data, &s->len, errbuf, errlen);
    if (err != CRP_OK)
        return err;
    return seg_scan(s, errbuf, errlen);
}

/* ------------------------------------------------------------------------ */
/* Building a new segment (creation and rotation)                            */
/* ------------------------------------------------------------------------ */

/* Reads back the current segment's durable records from `base` on, to copy
 * them into the next segment. They were written by us and fsynced; a
 * mismatch now is a disk problem, reported as an I/O failure. */
static crp_err read_carry(crp_journal *j, uint64_t base, unsigned char **out, size_t *out_len)
{
    unsigned char *d = NULL;
    size_t len = 0;
    size_t off = SEG_HDR;
    uint64_t seq = j->base;
    char why[256] = "";

    *out = NULL;
    *out_len = 0;
    crp_err err = read_all(j->fd, j->path, &d, &len, why, sizeof why);
    if (err != CRP_OK)
        return err == CRP_NOMEM ? err : fail(j, "read", errno != 0 ? errno : EIO, j->path);
    if (len < j->durable_off)
        goto out_mismatch;
    while (seq < base && off < j->durable_off) {
        uint32_t plen;
        const char *w;
        if (!rec_intact(d, j->durable_off, off, &plen, &w) || le_get64(d + off + 16) != seq)
            goto out_mismatch;
        off += REC_HDR + (size_t)plen;
        seq++;
    }
    if (seq != base)
        goto out_mismatch;
    *out_len = (size_t)j->durable_off - off;
    memmove(d, d + off, *out_len);
    *out = d;
    return CRP_OK;

out_mismatch:
    free(d);
    return fail(j, "read back", EIO, j->path);
}

/* Builds journal.tmp: header, the durable records from base on, then the
 * commit buffer; fsyncs it and keeps it open in tmp_fd. */
static crp_err build_tmp(crp_journal *j, uint64_t base)
{
    unsigned char hdr[SEG_HDR];
    unsigned char *carry = NULL;
    size_t carry_len = 0;
    crp_err err;
    int fd;

    if (j->fd >= 0 && base <= j->durable_seq) {
        err = read_carry(j, base, &carry, &carry_len);
        if (err != CRP_OK)
            return err;
    }
    /* Read-write: this becomes the current segment, and the next rotation
     * reads its records back to carry them. */
    fd = j->io->open(j->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = fail(j, "open", errno, j->tmp_path);
        goto out_free_carry;
    }
    seg_header(hdr, base);
    if (crp_io_write_all(j->io, fd, hdr, SEG_HDR, 0) != 0 ||
        crp_io_write_all(j->io, fd, carry, carry_len, SEG_HDR) != 0 ||
        crp_io_write_all(j->io, fd, j->buf, j->buf_len, SEG_HDR + carry_len) != 0) {
        err = fail(j, "write", errno, j->tmp_path);
        goto out_unlink_tmp;
    }
    if (j->io->fsync(fd) != 0) {
        err = fail(j, "fsync", errno, j->tmp_path);
        goto out_unlink_tmp;
    }
    j->tmp_fd = fd;
    j->tmp_base = base;
    j->tmp_size = SEG_HDR + carry_len + j->buf_len;
    free(carry);
    return CRP_OK;

out_unlink_tmp:
    close(fd);
    unlink(j->tmp_path);
out_free_carry:
    free(carry);
    return err;
}

/* Makes a new segment starting at `base` the current one: the creation of
 * the first segment (fd < 0) and every rotation. See invariants 5 and 6
 * for the order of the steps. */
static crp_err rotate_to(crp_journal *j, uint64_t base)
{
    crp_err err;

    if (j->tmp_fd >= 0 && j->tmp_base > base) {
        /* A kept tmp that starts too late cannot serve; drop it unless it
         * is the only candidate for `journal`. */
        if (j->half_rotated)
            return CRP_INVAL;
        close(j->tmp_fd);
        j->tmp_fd = -1;
        unlink(j->tmp_path);
    }
    if (j->tmp_fd < 0) {
        err = build_tmp(j, base);
        if (err != CRP_OK)
            return err;
    }
    if (j->fd >= 0 && !j->half_rotated) {
        if (j->io->rename(j->path, j->prev_path) != 0)
            return fail(j, "rename", errno, j->path);
        j->half_rotated = true;
        const char *op = crp_io_fsync_dir(j->io, j->dir);
        if (op != NULL)
            return fail(j, op, errno, j->dir);
    }
    if (j->io->rename(j->tmp_path, j->path) != 0)
        return fail(j, "rename", errno, j->tmp_path);

    /* journal now names the new segment: switch to it whatever happens
     * next, so a later rotation renames the right file. */
    if (j->fd >= 0)
        close(j->fd);
    j->fd = j->tmp_fd;
    j->tmp_fd = -1;
    j->half_rotated = false;
    j->base = j->tmp_base;
    if (j->next_seq < j->base)
        j->next_seq = j->base;
    j->durable_seq = j->next_seq - 1;
    j->durable_off = j->tmp_size;
    j->buf_len = 0;
    j->hole_end = 0;
    const char *op = crp_io_fsync_dir(j->io, j->dir);
    if (op != NULL)
        return fail(j, op, errno, j->dir);

    j->failed = false;
    j->failed_errno = 0;
    j->failed_op = "";
    j->msg[0] = '\0';
    return CRP_OK;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Whether a file starts with an intact segment header. */
static bool tmp_header_ok(const char *path)
{
    unsigned char h[SEG_HDR];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = pread(fd, h, SEG_HDR, 0);
    close(fd);
    return n == (ssize_t)SEG_HDR && le_get64(h) == SEG_MAGIC &&
           le_get64(h + 24) == XXH3_64bits(h, 24);
}

/* Brings the directory to "journal exists" or "fresh": completes or removes
 * a rotation's journal.tmp. Sets *fresh when there is no journal at all
 * and none should exist. */
static crp_err settle_files(crp_journal *j, uint64_t from_seq, bool *fresh, char *errbuf,
                            size_t errlen)
{
    *fresh = false;
    if (exists(j->path)) {
        /* A rotation that did not reach its first rename: the tmp file is
         * not needed (journal still holds everything). */
        if (unlink(j->tmp_path) != 0 && errno != ENOENT) {
            crp_errbuf_printf(errbuf, errlen, "%s: unlink: %s", j->tmp_path, strerror(errno));
            return CRP_IO;
        }
        return CRP_OK;
    }
    if (exists(j->tmp_path) && !tmp_header_ok(j->tmp_path) && from_seq == 0 &&
        !exists(j->prev_path)) {
        /* The very first creation crashed before its fsync: there was never
         * a journal, so this is still a first start. */
        if (unlink(j->tmp_path) != 0) {
            crp_errbuf_printf(errbuf, errlen, "%s: unlink: %s", j->tmp_path, strerror(errno));
            return CRP_IO;
        }
        add_msg(errbuf, errlen, "%s: removed an incomplete first segment", j->tmp_path);
    }
    if (exists(j->tmp_path)) {
        /* A rotation's tmp file was complete and fsynced before journal was
         * renamed away, so finishing the rename is all that is left. (A
         * damaged one is renamed too, and open reports it, naming it.) */
        if (j->io->rename(j->tmp_path, j->path) != 0 || crp_io_fsync_dir(j->io, j->dir) != NULL) {
            crp_errbuf_printf(errbuf, errlen, "%s: completing an interrupted rotation: %s",
                              j->tmp_path, strerror(errno));
            j->st.io_errors++;
            return CRP_IO;
        }
        add_msg(errbuf, errlen, "%s: completed an interrupted rotation", j->path);
        return CRP_OK;
    }
    if (from_seq != 0 || exists(j->prev_path)) {
        crp_errbuf_printf(
            errbuf, errlen,
            "%s: missing, but %s: records after sequence %llu may be lost; refusing to "
            "start",
            j->path, from_seq != 0 ? "a snapshot was loaded" : "journal.prev exists",
            (unsigned long long)from_seq);
        return CRP_BADFILE;
    }
    *fresh = true;
    return CRP_OK;
}

static void free_segment(struct segment *s)
{
    free(s->data);
    s->data = NULL;
}

crp_err crp_journal_open(crp_journal **out, const char *dir, const crp_journal_opts *opts,
                         char *errbuf, size_t errlen)
{
    struct segment cur = {0}, prev = {0};
    uint64_t from_seq = opts != NULL ? opts->from_seq : 0;
    uint64_t expect = from_seq + 1;
    bool fresh;
    crp_err err;
    crp_journal *j;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (out == NULL || dir == NULL || from_seq == UINT64_MAX)
        return CRP_INVAL;
    *out = NULL;
    j = calloc(1, sizeof *j);
    if (j == NULL)
        return CRP_NOMEM;
    j->fd = -1;
    j->tmp_fd = -1;
    j->failed_op = "";
    j->io = opts != NULL && opts->io != NULL ? opts->io : crp_io_posix();
    j->dir = strdup(dir);
    j->path = join(dir, CRP_JOURNAL_FILE);
    j->prev_path = join(dir, CRP_JOURNAL_PREV);
    j->tmp_path = join(dir, CRP_JOURNAL_TMP);
    if (j->dir == NULL || j->path == NULL || j->prev_path == NULL || j->tmp_path == NULL) {
        err = CRP_NOMEM;
        goto out_free_journal;
    }

    err = settle_files(j, from_seq, &fresh, errbuf, errlen);
    if (err != CRP_OK)
        goto out_free_journal;
    if (fresh) {
        /* An empty directory: nothing to replay. A failure to create the
         * file leaves a failed journal, so the engine can serve and raise
         * the alarm; a rotation after the next snapshot creates it. */
        j->base = 1;
        j->next_seq = 1;
        if (rotate_to(j, 1) != CRP_OK)
            add_msg(errbuf, errlen, "%s", j->msg);
        *out = j;
        return CRP_OK;
    }

    j->fd = j->io->open(j->path, O_RDWR | O_CLOEXEC, 0);
    if (j->fd < 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: open: %s", j->path, strerror(errno));
        j->st.io_errors++;
        err = CRP_IO;
        goto out_free_journal;
    }
    err = seg_load(&cur, j->path, j->fd, errbuf, errlen);
    if (err != CRP_OK)
        goto out_free_segments;

    if (cur.base > expect) {
        int pfd = open(j->prev_path, O_RDONLY | O_CLOEXEC);
        if (pfd < 0) {
            crp_errbuf_printf(errbuf, errlen,
                              "%s: offset 0: starts at sequence %llu, but records from %llu on are "
                              "needed and %s cannot be opened (%s): records %llu..%llu are missing",
                              j->path, (unsigned long long)cur.base, (unsigned long long)expect,
                              j->prev_path, strerror(errno), (unsigned long long)expect,
                              (unsigned long long)(cur.base - 1));
            err = CRP_BADFILE;
            goto out_free_segments;
        }
        err = seg_load(&prev, j->prev_path, pfd, errbuf, errlen);
        close(pfd);
        if (err != CRP_OK)
            goto out_free_segments;
    }

    /* Everything is validated: from here on, damage is only cut, never
     * discovered. A tail that cannot be cut leaves the journal failed
     * (invariant 4: nothing is appended after it) rather than stopping a
     * start-up that has everything it needs. */
    if (cur.torn_why != NULL) {
        uint64_t cut = cur.len - cur.end;
        add_msg(errbuf, errlen, "%s: offset %zu: cut a torn last record (%s, %llu bytes)", j->path,
                cur.end, cur.torn_why, (unsigned long long)cut);
        const char *op = NULL;
        if (j->io->ftruncate(j->fd, (off_t)cur.end) != 0)
            op = "ftruncate";
        else if (j->io->fsync(j->fd) != 0)
            op = "fsync";
        if (op != NULL) {
            fail(j, op, errno, j->path);
            add_msg(errbuf, errlen, "%s", j->msg);
        } else {
            j->st.tail_cut = cut;
        }
    }
    if (prev.data != NULL) {
        if (prev.torn_why != NULL)
            add_msg(errbuf, errlen, "%s: offset %zu: torn last record (%s) ignored", j->prev_path,
                    prev.end, prev.torn_why);
        err = seg_deliver(&prev, &expect, opts, &j->st.replayed, errbuf, errlen);
        if (err != CRP_OK)
            goto out_free_segments;
    }
    err = seg_deliver(&cur, &expect, opts, &j->st.replayed, errbuf, errlen);
    if (err != CRP_OK)
        goto out_free_segments;

    j->base = cur.base;
    j->next_seq = cur.last_seq + 1;
    j->durable_seq = cur.last_seq;
    j->durable_off = cur.end;
    free_segment(&cur);
    free_segment(&prev);

    if (from_seq > j->durable_seq) {
        /* The snapshot covers sequences this segment never got (they failed
         * to commit and reached disk through the snapshot). Continuing in
         * this segment would put a hole in it; start one after from_seq. */
        j->next_seq = from_seq + 1;
        j->hole_end = from_seq;
        if (rotate_to(j, from_seq + 1) != CRP_OK)
            add_msg(errbuf, errlen, "%s", j->msg);
        else
            j->st.rotations++;
    }
    *out = j;
    return CRP_OK;

out_free_segments:
    free_segment(&cur);
    free_segment(&prev);
out_free_journal:
    crp_journal_close(&j);
    return err;
}

void crp_journal_close(crp_journal **jp)
{
    crp_journal *j;

    if (jp == NULL || *jp == NULL)
        return;
    j = *jp;
    *jp = NULL;
    if (j->fd >= 0)
        close(j->fd);
    if (j->tmp_fd >= 0)
        close(j->tmp_fd);
    free(j->buf);
    free(j->dir);
    free(j->path);
    free(j->prev_path);
    free(j->tmp_path);
    free(j);
}

crp_err crp_journal_append(crp_journal *j, const crp_journal_rec *rec, uint64_t *seq)
{
    uint32_t plen;
    crp_err err;

    if (j == NULL || rec == NULL)
        return CRP_INVAL;
    if (j->failed)
        return CRP_IO;
    err = rec_check(rec, &plen);
    if (err != CRP_OK)
        return err;
    size_t need = j->buf_len + REC_HDR + plen;
    if (need > j->buf_cap) {
        size_t cap = j->buf_cap > 0 ? j->buf_cap : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *b = realloc(j->buf, cap);
        if (b == NULL)
            return CRP_NOMEM;
        j->buf = b;
        j->buf_cap = cap;
    }
    rec_encode(j->buf + j->buf_len, rec, j->next_seq, plen);
    j->buf_len = need;
    if (seq != NULL)
        *seq = j->next_seq;
    j->next_seq++;
    j->st.appended++;
    return CRP_OK;
}

crp_err crp_journal_commit(crp_journal *j)
{
    if (j == NULL)
        return CRP_INVAL;
    if (j->failed)
        return CRP_IO;
    if (j->buf_len == 0)
        return CRP_OK;
    assert(j->fd >= 0); /* no segment only after a failed creation */
    if (crp_io_write_all(j->io, j->fd, j->buf, j->buf_len, j->durable_off) != 0)
        return fail(j, "write", errno, j->path);
    /* Once this fails the data's fate is unknown and the kernel may have
     * marked the pages clean: never sync again and call it durable. */
    if (j->io->fdatasync(j->fd) != 0)
        return fail(j, "fdatasync", errno, j->path);
    j->durable_off += j->buf_len;
    j->durable_seq = j->next_seq - 1;
    j->st.commits++;
    j->st.bytes_written += j->buf_len;
    j->buf_len = 0;
    return CRP_OK;
}

crp_err crp_journal_rotate(crp_journal *j, uint64_t covered_seq)
{
    if (j == NULL || covered_seq >= j->next_seq || covered_seq + 1 < j->base)
        return CRP_INVAL;
    uint64_t base = (covered_seq < j->durable_seq ? covered_seq : j->durable_seq) + 1;
    if (base <= j->hole_end)
        base = j->hole_end + 1;
    crp_err err = rotate_to(j, base);
    if (err == CRP_OK)
        j->st.rotations++;
    return err;
}

bool crp_journal_failed(const crp_journal *j)
{
    return j->failed;
}

int crp_journal_errno(const crp_journal *j)
{
    return j->failed ? j->failed_errno : 0;
}

uint64_t crp_journal_last_seq(const crp_journal *j)
{
    return j->next_seq - 1;
}

const char *crp_journal_error(const crp_journal *j)
{
    return j->msg;
}

void crp_journal_stats_get(const crp_journal *j, crp_journal_stats *out)
{
    uint64_t pending = 0;
    for (size_t off = 0; off < j->buf_len; pending++)
        off += REC_HDR + le_get32(j->buf + off + 4);
    *out = j->st;
    out->last_seq = j->next_seq - 1;
    out->durable_seq = j->durable_seq;
    out->segment_base = j->base;
    out->segment_bytes = j->durable_off;
    out->pending = pending;
    out->failed = j->failed;
    out->failed_errno = j->failed ? j->failed_errno : 0;
    out->failed_op = j->failed ? j->failed_op : "";
}
