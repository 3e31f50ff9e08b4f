/* Snapshots of the connector table: format and rename dance in
 * crp/snapshot.h.
 *
 * A load reads the file twice: once to validate every byte (so a damaged
 * file is refused before the table changes, and the caller can fall back
 * to snapshot.prev with the same table), once to apply. Both passes stream
 * through one block-sized buffer: a 1M-connector snapshot is about 100 MB,
 * more than start-up should hold at once, and the second read comes from
 * the page cache.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "crp/snapshot.h"

#include "crp/clock.h"
#include "io_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC   0x3150414e53505243ull /* "CRPSNAP1" little-endian */
#define SNAP_VERSION 1u
#define SNAP_HDR     64u
#define SEC_HDR      16u
#define BLOCK_MAX    (64u * 1024u)
/* state, reasons, flags, id_len, tenant_len, since, last, payload */
#define REC_FIXED  (5u + 16u + CRP_PAYLOAD_SIZE)
#define REC_MAX    (REC_FIXED + CRP_ID_MAX + CRP_TENANT_MAX)
#define FLAG_DIRTY 1u
#define FLAG_TODAY 2u

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static uint64_t sec_hash(const unsigned char *p, uint32_t len, uint32_t count)
{
    return XXH3_64bits_withSeed(p, len, (uint64_t)count << 32 | len);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */
/* ------------------------------------------------------------------------ */

struct writer {
    const crp_io_ops *io;
    int fd;
    uint64_t off; /* where the next section goes */
    XXH3_state_t body;
    unsigned char *blk; /* SEC_HDR + BLOCK_MAX */
    uint32_t blk_len;   /* record bytes in blk */
    uint32_t blk_count;
};

/* Writes one section (header + bytes) at w->off and adds it to the body
 * checksum. */
static int put_section(struct writer *w, unsigned char *hdr, const void *data, uint32_t len,
                       uint32_t count)
{
    le_put32(hdr, len);
    le_put32(hdr + 4, count);
    le_put64(hdr + 8, sec_hash(data, len, count));
    XXH3_64bits_update(&w->body, hdr, SEC_HDR);
    XXH3_64bits_update(&w->body, data, len);
    if (hdr + SEC_HDR == (const unsigned char *)data) {
        /* The block buffer keeps its header in front: one write. */
        if (crp_io_write_all(w->io, w->fd, hdr, SEC_HDR + (size_t)len, w->off) != 0)
            return -1;
    } else if (crp_io_write_all(w->io, w->fd, hdr, SEC_HDR, w->off) != 0 ||
               crp_io_write_all(w->io, w->fd, data, len, w->off + SEC_HDR) != 0) {
        return -1;
    }
    w->off += SEC_HDR + (uint64_t)len;
    return 0;
}

static int flush_block(struct writer *w)
{
    if (w->blk_count == 0)
        return 0;
    int rc = put_section(w, w->blk, w->blk + SEC_HDR, w->blk_len, w->blk_count);
    w->blk_len = 0;
    w->blk_count = 0;
    return rc;
}

static uint32_t encode_record(unsigned char *p, const crp_record *r)
{
    const crp_entry *e = &r->entry;
    p[0] = e->state;
    p[1] = e->reasons;
    p[2] = (unsigned char)((e->dirty ? FLAG_DIRTY : 0) | (e->until_midnight ? FLAG_TODAY : 0));
    p[3] = r->id_len;
    p[4] = r->tenant_len;
    le_put64(p + 5, e->since_ms);
    le_put64(p + 13, e->last_ms);
    memcpy(p + 21, e->payload, CRP_PAYLOAD_SIZE);
    memcpy(p + REC_FIXED, r->id, r->id_len);
    memcpy(p + REC_FIXED + r->id_len, r->tenant, r->tenant_len);
    return REC_FIXED + r->id_len + r->tenant_len;
}

crp_err crp_snapshot_write(const crp_table *t, const char *dir, uint64_t covered_seq,
                           const void *extra, size_t extra_len, const crp_io_ops *io,
                           crp_snapshot_info *info, char *errbuf, size_t errlen)
{
    struct writer w = {.fd = -1};
    unsigned char hdr[SNAP_HDR], shdr[SEC_HDR];
    int saved;
    char *tmp = NULL, *cur = NULL, *prev = NULL;
    const char *op, *where;
    uint64_t records = 0, cursor = 0;
    uint64_t created = crp_clock_ms();
    crp_record r;
    crp_err err = CRP_NOMEM;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (t == NULL || dir == NULL || extra_len > CRP_SNAPSHOT_EXTRA_MAX ||
        (extra == NULL && extra_len > 0))
        return CRP_INVAL;
    w.io = io != NULL ? io : crp_io_posix();
    tmp = join(dir, CRP_SNAPSHOT_TMP);
    cur = join(dir, CRP_SNAPSHOT_FILE);
    prev = join(dir, CRP_SNAPSHOT_PREV);
    w.blk = malloc(SEC_HDR + BLOCK_MAX);
    if (tmp == NULL || cur == NULL || prev == NULL || w.blk == NULL)
        goto out_free;

    err = CRP_IO;
    where = tmp;
    op = "open";
    w.fd = w.io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0)
        goto out_io;
    XXH3_64bits_reset(&w.body);
    w.off = SNAP_HDR;
    op = "write";
    if (put_section(&w, shdr, extra != NULL ? extra : "", (uint32_t)extra_len, 0) != 0)
        goto out_unlink_tmp;
    while (crp_table_next(t, &cursor, &r)) {
        if (w.blk_len + REC_MAX > BLOCK_MAX && flush_block(&w) != 0)
            goto out_unlink_tmp;
        w.blk_len += encode_record(w.blk + SEC_HDR + w.blk_len, &r);
        w.blk_count++;
        records++;
    }
    if (flush_block(&w) != 0)
        goto out_unlink_tmp;

    le_put64(hdr, SNAP_MAGIC);
    le_put32(hdr + 8, SNAP_VERSION);
    le_put32(hdr + 12, SNAP_HDR);
    le_put64(hdr + 16, covered_seq);
    le_put64(hdr + 24, records);
    le_put64(hdr + 32, w.off - SNAP_HDR);
    le_put64(hdr + 40, created);
    le_put64(hdr + 48, XXH3_64bits_digest(&w.body));
    le_put64(hdr + 56, XXH3_64bits(hdr, 56));
    if (crp_io_write_all(w.io, w.fd, hdr, SNAP_HDR, 0) != 0)
        goto out_unlink_tmp;
    op = "fsync";
    if (w.io->fsync(w.fd) != 0)
        goto out_unlink_tmp;
    close(w.fd);
    w.fd = -1;

    /* Keep the previous snapshot: a fallback needs it, and the journal
     * keeps the records after it (crp/journal.h). A missing `snapshot`
     * (first write, or a crash between the two renames) is fine. */
    op = "rename";
    where = cur;
    if (w.io->rename(cur, prev) != 0 && errno != ENOENT)
        goto out_unlink_tmp;
    where = dir;
    op = crp_io_fsync_dir(w.io, dir);
    if (op != NULL)
        goto out_unlink_tmp;
    op = "rename";
    where = tmp;
    if (w.io->rename(tmp, cur) != 0)
        goto out_unlink_tmp;
    where = dir;
    op = crp_io_fsync_dir(w.io, dir);
    if (op != NULL)
        goto out_io; /* `snapshot` is the new file; only its name may not be durable */

    if (info != NULL) {
        info->covered_seq = covered_seq;
        info->records = records;
        info->duplicates = 0;
        info->dropped = 0;
        info->bytes = w.off;
        info->created_ms = created;
    }
    err = CRP_OK;
    goto out_free;

out_unlink_tmp:
    saved = errno;
    if (w.fd >= 0)
        close(w.fd);
    unlink(tmp);
    errno = saved;
out_io:
    crp_errbuf_printf(errbuf, errlen, "%s: %s failed while writing a snapshot: %s", where, op,
                      strerror(errno));
out_free:
    free(w.blk);
    free(tmp);
    free(cur);
    free(prev);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

struct reader {
    int fd;
    const char *path;
    uint64_t size;
    char *errbuf;
    size_t errlen;
};

static crp_err read_at(struct reader *rd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pread(rd->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            crp_errbuf_printf(rd->errbuf, rd->errlen, "%s: read at offset %llu: %s", rd->path,
                              (unsigned long long)off,
                              n < 0 ? strerror(errno) : "unexpected end of file");
            return CRP_IO;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return CRP_OK;
}

/* Reads the section at off into buf (room for max bytes) after checking
 * its header against the file; *len and *count describe it. */
static crp_err read_section(struct reader *rd, uint64_t off, unsigned char *buf, uint32_t max,
                            uint32_t *len, uint32_t *count, XXH3_state_t *body)
{
    unsigned char h[SEC_HDR];
    crp_err err;

    if (rd->size - off < SEC_HDR) {
        crp_errbuf_printf(rd->errbuf, rd->errlen, "%s: offset %llu: truncated section header",
                          rd->path, (unsigned long long)off);
        return CRP_BADFILE;
    }
    err = read_at(rd, h, SEC_HDR, off);
    if (err != CRP_OK)
        return err;
    *len = le_get32(h);
    *count = le_get32(h + 4);
    if (*len > max || rd->size - off - SEC_HDR < *len) {
        crp_errbuf_printf(
            rd->errbuf, rd->errlen,
            "%s: offset %llu: section length %u is impossible here (limit %u, %llu bytes "
            "left)",
            rd->path, (unsigned long long)off, (unsigned)*len, (unsigned)max,
            (unsigned long long)(rd->size - off - SEC_HDR));
        return CRP_BADFILE;
    }
    err = read_at(rd, buf, *len, off + SEC_HDR);
    if (err != CRP_OK)
        return err;
    if (le_get64(h + 8) != sec_hash(buf, *len, *count)) {
        crp_errbuf_printf(rd->errbuf, rd->errlen,
                          "%s: offset %llu: section of %u bytes fails its checksum", rd->path,
                          (unsigned long long)off, (unsigned)*len);
        return CRP_BADFILE;
    }
    if (body != NULL) {
        XXH3_64bits_update(body, h, SEC_HDR);
        XXH3_64bits_update(body, buf, *len);
    }
    return CRP_OK;
}

struct srec {
    crp_entry e;
    uint8_t id_len;
    uint8_t tenant_len;
    const char *id;
    const char *tenant;
};

/* Decodes the record at p (limit bytes available); returns its size, or 0
 * when it is malformed. */
static uint32_t decode_record(const unsigned char *p, uint32_t limit, struct srec *s)
{
    if (limit < REC_FIXED)
        return 0;
    memset(&s->e, 0, sizeof s->e);
    s->e.state = p[0];
    s->e.reasons = p[1];
    s->e.dirty = (p[2] & FLAG_DIRTY) != 0;
    s->e.until_midnight = (p[2] & FLAG_TODAY) != 0;
    s->id_len = p[3];
    s->tenant_len = p[4];
    s->e.since_ms = le_get64(p + 5);
    s->e.last_ms = le_get64(p + 13);
    memcpy(s->e.payload, p + 21, CRP_PAYLOAD_SIZE);
    if (s->e.state < CRP_STATE_ACTIVE || s->e.state > CRP_STATE_PROBATION ||
        (p[2] & ~(FLAG_DIRTY | FLAG_TODAY)) != 0 || s->id_len == 0 ||
        s->tenant_len > CRP_TENANT_MAX)
        return 0;
    uint32_t n = REC_FIXED + s->id_len + s->tenant_len;
    if (n > limit)
        return 0;
    s->id = (const char *)p + REC_FIXED;
    s->tenant = s->id + s->id_len;
    return n;
}

static crp_err apply_record(crp_table *t, const struct srec *s, uint64_t *dups)
{
    crp_key k = crp_table_key(t, s->id, s->id_len);
    crp_slot slot;
    bool created;
    crp_entry e;

    crp_err err = crp_table_upsert_sw(t, &k, s->id, s->id_len, s->tenant, s->tenant_len,
                                      s->e.last_ms, &slot, &created);
    if (err != CRP_OK)
        return err;
    if (!created)
        (*dups)++;
    crp_table_load_sw(t, slot, &e);
    e.state = s->e.state;
    e.reasons = s->e.reasons;
    e.dirty = s->e.dirty;
    e.until_midnight = s->e.until_midnight;
    e.since_ms = s->e.since_ms;
    e.last_ms = s->e.last_ms;
    memcpy(e.payload, s->e.payload, CRP_PAYLOAD_SIZE);
    crp_table_store_sw(t, slot, &e);
    return CRP_OK;
}

/* Which records a pass over the blocks applies. The table never evicts a
 * restricted, probation or dirty entry, so those go in first, when the
 * table is empty; clean ACTIVE ones follow, and one the table has no room
 * for (its probe window holds only entries that must stay) is dropped and
 * counted: it is a connector with nothing against it, which the feed
 * brings back. A restricted one that does not fit stops the load. */
enum walk_pass {
    WALK_VALIDATE = 0, /* t == NULL: check and feed the body checksum */
    WALK_KEEP = 1,     /* apply the records the table must keep */
    WALK_CLEAN = 2,    /* apply clean ACTIVE records, dropping what does not fit */
};

static bool must_keep(const struct srec *s)
{
    return s->e.state != CRP_STATE_ACTIVE || s->e.dirty;
}

/* One pass over the record blocks from off (enum walk_pass). */
static crp_err walk_blocks(struct reader *rd, uint64_t off, unsigned char *blk, crp_table *t,
                           enum walk_pass pass, XXH3_state_t *body, uint64_t *records,
                           uint64_t *dups, uint64_t *dropped)
{
    *records = 0;
    while (off < rd->size) {
        uint32_t len, count;
        crp_err err = read_section(rd, off, blk, BLOCK_MAX, &len, &count, body);
        if (err != CRP_OK)
            return err;
        uint32_t pos = 0;
        for (uint32_t i = 0; i < count; i++) {
            struct srec s;
            uint32_t n = decode_record(blk + pos, len - pos, &s);
            if (n == 0) {
                crp_errbuf_printf(
                    rd->errbuf, rd->errlen,
                    "%s: offset %llu: malformed record %llu in the block at offset %llu", rd->path,
                    (unsigned long long)(off + SEC_HDR + pos), (unsigned long long)(*records + i),
                    (unsigned long long)off);
                return CRP_BADFILE;
            }
            if (pass != WALK_VALIDATE && must_keep(&s) == (pass == WALK_KEEP)) {
                err = apply_record(t, &s, dups);
                if (err != CRP_OK && pass == WALK_CLEAN && err != CRP_NOMEM) {
                    (*dropped)++;
                    err = CRP_OK;
                }
                if (err != CRP_OK) {
                    crp_errbuf_printf(
                        rd->errbuf, rd->errlen,
                        "%s: offset %llu: the table refused record %llu (id %.*s): %s", rd->path,
                        (unsigned long long)(off + SEC_HDR + pos),
                        (unsigned long long)(*records + i), (int)s.id_len, s.id, crp_strerror(err));
                    return err;
                }
            }
            pos += n;
        }
        if (count == 0 || pos != len) {
            crp_errbuf_printf(rd->errbuf, rd->errlen,
                              "%s: offset %llu: block holds %u bytes but its %u records use %u",
                              rd->path, (unsigned long long)off, (unsigned)len, (unsigned)count,
                              (unsigned)pos);
            return CRP_BADFILE;
        }
        *records += count;
        off += SEC_HDR + (uint64_t)len;
    }
    return CRP_OK;
}

crp_err crp_snapshot_load(crp_table *t, const char *dir, crp_snapshot_which which,
                          uint64_t *covered_seq, void **extra, size_t *extra_len,
                          crp_snapshot_info *info, char *errbuf, size_t errlen)
{
    struct reader rd = {.fd = -1, .errbuf = errbuf, .errlen = errlen};
    unsigned char hdr[SNAP_HDR];
    unsigned char *blk = NULL, *xbuf = NULL;
    uint32_t xlen = 0, xcount;
    uint64_t records = 0, dups = 0, dropped = 0, body_off;
    XXH3_state_t body;
    struct stat sb;
    char *path = NULL;
    crp_err err;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (extra != NULL)
        *extra = NULL;
    if (extra_len != NULL)
        *extra_len = 0;
    if (t == NULL || dir == NULL || covered_seq == NULL)
        return CRP_INVAL;
    path = join(dir, which == CRP_SNAPSHOT_PREVIOUS ? CRP_SNAPSHOT_PREV : CRP_SNAPSHOT_FILE);
    blk = malloc(BLOCK_MAX);
    if (path == NULL || blk == NULL) {
        err = CRP_NOMEM;
        goto out_free;
    }
    rd.path = path;
    rd.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (rd.fd < 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: %s", path, strerror(errno));
        err = errno == ENOENT ? CRP_NOTFOUND : CRP_IO;
        goto out_free;
    }
    if (fstat(rd.fd, &sb) != 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: fstat: %s", path, strerror(errno));
        err = CRP_IO;
        goto out_close;
    }
    rd.size = (uint64_t)sb.st_size;

    /* Pass 1: everything is checked before the table is touched. */
    err = CRP_BADFILE;
    if (rd.size < SNAP_HDR) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset 0: file is %llu bytes, shorter than the header", path,
                          (unsigned long long)rd.size);
        goto out_close;
    }
    err = read_at(&rd, hdr, SNAP_HDR, 0);
    if (err != CRP_OK)
        goto out_close;
    err = CRP_BADFILE;
    if (le_get64(hdr) != SNAP_MAGIC || le_get64(hdr + 56) != XXH3_64bits(hdr, 56)) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset 0: not a snapshot header (bad magic or checksum)", path);
        goto out_close;
    }
    if (le_get32(hdr + 8) != SNAP_VERSION || le_get32(hdr + 12) != SNAP_HDR) {
        crp_errbuf_printf(errbuf, errlen, "%s: offset 0: unsupported snapshot version %u", path,
                          (unsigned)le_get32(hdr + 8));
        goto out_close;
    }
    if (le_get64(hdr + 32) != rd.size - SNAP_HDR) {
        uint64_t want = SNAP_HDR + le_get64(hdr + 32);
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset %llu: file is %llu bytes but its header says %llu", path,
                          (unsigned long long)(want < rd.size ? want : rd.size),
                          (unsigned long long)rd.size, (unsigned long long)want);
        goto out_close;
    }
    XXH3_64bits_reset(&body);
    {
        /* The extra section: its length decides how much to allocate, so
         * read the header first and bound it. */
        unsigned char h[SEC_HDR];
        if (rd.size - SNAP_HDR < SEC_HDR) {
            crp_errbuf_printf(errbuf, errlen, "%s: offset %u: truncated section header", path,
                              SNAP_HDR);
            goto out_close;
        }
        err = read_at(&rd, h, SEC_HDR, SNAP_HDR);
        if (err != CRP_OK)
            goto out_close;
        err = CRP_BADFILE;
        if (le_get32(h) > CRP_SNAPSHOT_EXTRA_MAX || le_get32(h + 4) != 0) {
            crp_errbuf_printf(errbuf, errlen, "%s: offset %u: bad extra section header", path,
                              SNAP_HDR);
            goto out_close;
        }
        xbuf = malloc(le_get32(h) > 0 ? le_get32(h) : 1);
        if (xbuf == NULL) {
            err = CRP_NOMEM;
            goto out_close;
        }
        err = read_section(&rd, SNAP_HDR, xbuf, CRP_SNAPSHOT_EXTRA_MAX, &xlen, &xcount, &body);
        if (err != CRP_OK)
            goto out_free_extra;
    }
    body_off = SNAP_HDR + SEC_HDR + (uint64_t)xlen;
    err = walk_blocks(&rd, body_off, blk, NULL, WALK_VALIDATE, &body, &records, &dups, &dropped);
    if (err != CRP_OK)
        goto out_free_extra;
    err = CRP_BADFILE;
    if (records != le_get64(hdr + 24)) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: offset 24: header counts %llu records, the blocks hold %llu", path,
                          (unsigned long long)le_get64(hdr + 24), (unsigned long long)records);
        goto out_free_extra;
    }
    if (XXH3_64bits_digest(&body) != le_get64(hdr + 48)) {
        crp_errbuf_printf(errbuf, errlen, "%s: offset %u: body checksum mismatch", path, SNAP_HDR);
        goto out_free_extra;
    }

    /* Pass 2: apply. The blocks are checked again as they are read; a
     * difference now would be a failing disk, not a damaged file. */
    err = walk_blocks(&rd, body_off, blk, t, WALK_KEEP, NULL, &records, &dups, &dropped);
    if (err == CRP_OK)
        err = walk_blocks(&rd, body_off, blk, t, WALK_CLEAN, NULL, &records, &dups, &dropped);
    if (err == CRP_BADFILE)
        err = CRP_IO;
    if (err != CRP_OK)
        goto out_free_extra;

    *covered_seq = le_get64(hdr + 16);
    if (extra != NULL && xlen > 0) {
        *extra = xbuf;
        xbuf = NULL;
    }
    if (extra_len != NULL)
        *extra_len = xlen;
    if (info != NULL) {
        info->covered_seq = le_get64(hdr + 16);
        info->records = records;
        info->duplicates = dups;
        info->dropped = dropped;
        info->bytes = rd.size;
        info->created_ms = le_get64(hdr + 40);
    }
    err = CRP_OK;

out_free_extra:
    free(xbuf);
out_close:
    close(rd.fd);
out_free:
    free(blk);
    free(path);
    return err;
}
