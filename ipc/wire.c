/* Wire codecs: see crp/wire.h for the contract and docs/protocol.md for the
 * formats.
 *
 * Bounds discipline. Every decoder keeps `off`, the number of bytes consumed,
 * and only ever compares lengths against `len - off` (which cannot underflow,
 * because off <= len holds throughout). It never forms a pointer beyond the
 * buffer and never reads a byte before checking that it is there, so a
 * decoder can be handed a message that ends right before an unmapped page.
 *
 * The iterators run over messages already validated by their decoder and so
 * only assert what validation proved.
 */
#include "crp/wire.h"

#include <assert.h>
#include <string.h>

/* Little-endian accessors, byte by byte: no alignment or host byte order is
 * assumed. Compilers turn these into single loads and stores where the target
 * allows. */
static inline uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static inline void wr16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void wr32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* ------------------------------------------------------------------------
 * Feed
 * ------------------------------------------------------------------------ */

const char *crp_feed_reason_name(int reason)
{
    switch (reason) {
    case CRP_FEED_OK:
        return "ok";
#define CRP_FEED_REASON_TEXT(name, text)                                                           \
    case CRP_FEED_##name:                                                                          \
        return #text;
        CRP_FEED_REASON_MAP(CRP_FEED_REASON_TEXT)
#undef CRP_FEED_REASON_TEXT
    default:
        return "unknown";
    }
}

crp_feed_reason crp_feed_decode(const void *buf, size_t len, size_t max_frame_bytes,
                                crp_feed_header *hdr)
{
    const unsigned char *p = buf;
    uint32_t count;
    size_t off;

    assert(hdr != NULL);
    assert(buf != NULL || len == 0);
    memset(hdr, 0, sizeof(*hdr));

    /* Size first: an oversize frame is not looked at at all. */
    if (max_frame_bytes != 0 && len > max_frame_bytes)
        return CRP_FEED_OVERSIZE;
    if (len < CRP_FEED_HEADER_SIZE)
        return CRP_FEED_TRUNCATED;
    if (memcmp(p, CRP_FEED_MAGIC, 4) != 0)
        return CRP_FEED_BAD_MAGIC;
    if (rd16(p + 4) != CRP_FEED_VERSION)
        return CRP_FEED_BAD_VERSION;

    hdr->producer = rd64(p + 8);
    hdr->seq = rd64(p + 16);
    count = rd32(p + 24);
    hdr->count = count;

    if (rd16(p + 6) != 0)
        return CRP_FEED_RESERVED_BITS;
    if (count == 0 || count > CRP_FEED_COUNT_MAX)
        return CRP_FEED_BAD_COUNT;

    off = CRP_FEED_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = p + off;
        size_t rem = len - off;
        size_t id_len, tenant_len, size;

        /* Fields are checked in wire order, so the first defect in the
         * byte stream is the one reported. */
        if (rem < CRP_FEED_EVENT_MIN_SIZE)
            return CRP_FEED_TRUNCATED;
        if ((rd16(e + 8) & ~CRP_FEED_VERDICT_MASK) != 0)
            return CRP_FEED_RESERVED_BITS;
        if (rd16(e + 10) == 0)
            return CRP_FEED_BAD_RECIPIENTS;
        id_len = e[12];
        tenant_len = e[13];
        if (id_len == 0)
            return CRP_FEED_BAD_ID_LENGTH;
        if (tenant_len > CRP_WIRE_TENANT_MAX)
            return CRP_FEED_BAD_TENANT_LENGTH;
        size = CRP_FEED_EVENT_MIN_SIZE + id_len + tenant_len;
        if (rem < size)
            return CRP_FEED_TRUNCATED;
        off += size;
    }
    if (off != len)
        return CRP_FEED_TRAILING_BYTES;

    hdr->events_ = p + CRP_FEED_HEADER_SIZE;
    hdr->events_len_ = len - CRP_FEED_HEADER_SIZE;
    return CRP_FEED_OK;
}

void crp_feed_iter_init(crp_feed_iter *it, const crp_feed_header *hdr)
{
    it->p_ = hdr->events_;
    it->left_ = hdr->events_ != NULL ? hdr->count : 0;
}

bool crp_feed_next(crp_feed_iter *it, crp_feed_event *ev)
{
    const unsigned char *e = it->p_;

    if (it->left_ == 0)
        return false;
    ev->ts_ms = rd64(e);
    ev->verdict = rd16(e + 8);
    ev->recipients = rd16(e + 10);
    ev->id_len = e[12];
    ev->tenant_len = e[13];
    ev->id = (const char *)e + CRP_FEED_EVENT_MIN_SIZE;
    ev->tenant = ev->id + ev->id_len;
    /* Decode proved these; a failure means the buffer changed or the
     * iterator was not started from a successful decode. */
    assert(ev->id_len >= 1 && ev->tenant_len <= CRP_WIRE_TENANT_MAX);
    it->p_ = e + CRP_FEED_EVENT_MIN_SIZE + ev->id_len + ev->tenant_len;
    it->left_--;
    return true;
}

size_t crp_feed_encode_header(void *buf, size_t cap, uint64_t producer, uint64_t seq,
                              uint32_t count)
{
    unsigned char *p = buf;

    if (cap < CRP_FEED_HEADER_SIZE || count == 0 || count > CRP_FEED_COUNT_MAX)
        return 0;
    memcpy(p, CRP_FEED_MAGIC, 4);
    wr16(p + 4, CRP_FEED_VERSION);
    wr16(p + 6, 0);
    wr64(p + 8, producer);
    wr64(p + 16, seq);
    wr32(p + 24, count);
    return CRP_FEED_HEADER_SIZE;
}

static bool feed_event_valid(const crp_feed_event *ev)
{
    return (ev->verdict & ~CRP_FEED_VERDICT_MASK) == 0 && ev->recipients != 0 && ev->id != NULL &&
           ev->id_len >= 1 && ev->id_len <= CRP_WIRE_ID_MAX &&
           ev->tenant_len <= CRP_WIRE_TENANT_MAX && (ev->tenant != NULL || ev->tenant_len == 0);
}

size_t crp_feed_encode_event(void *buf, size_t cap, const crp_feed_event *ev)
{
    unsigned char *p = buf;
    size_t size;

    if (!feed_event_valid(ev))
        return 0;
    size = CRP_FEED_EVENT_MIN_SIZE + ev->id_len + ev->tenant_len;
    if (cap < size)
        return 0;
    wr64(p, ev->ts_ms);
    wr16(p + 8, ev->verdict);
    wr16(p + 10, ev->recipients);
    p[12] = (unsigned char)ev->id_len;
    p[13] = (unsigned char)ev->tenant_len;
    memcpy(p + CRP_FEED_EVENT_MIN_SIZE, ev->id, ev->id_len);
    if (ev->tenant_len != 0)
        memcpy(p + CRP_FEED_EVENT_MIN_SIZE + ev->id_len, ev->tenant, ev->tenant_len);
    return size;
}

bool crp_feed_builder_init(crp_feed_builder *b, void *buf, size_t cap, uint64_t producer,
                           uint64_t seq)
{
    b->buf_ = buf;
    b->cap_ = cap;
    b->len_ = 0;
    b->count_ = 0;
    /* A provisional count of 1 makes the header encodable; finish() writes
     * the real one. */
    if (crp_feed_encode_header(buf, cap, producer, seq, 1) == 0) {
        b->cap_ = 0;
        return false;
    }
    b->len_ = CRP_FEED_HEADER_SIZE;
    return true;
}

bool crp_feed_builder_add(crp_feed_builder *b, const crp_feed_event *ev)
{
    size_t n;

    if (b->len_ == 0 || b->count_ == CRP_FEED_COUNT_MAX)
        return false;
    n = crp_feed_encode_event(b->buf_ + b->len_, b->cap_ - b->len_, ev);
    if (n == 0)
        return false;
    b->len_ += n;
    b->count_++;
    return true;
}

size_t crp_feed_builder_finish(crp_feed_builder *b)
{
    if (b->len_ == 0 || b->count_ == 0)
        return 0;
    wr32(b->buf_ + 24, b->count_);
    return b->len_;
}

/* ------------------------------------------------------------------------
 * Lookup requests
 * ------------------------------------------------------------------------ */

crp_lookup_status crp_lookup_decode(const void *buf, size_t len, crp_lookup_req *req)
{
    const unsigned char *p = buf;
    uint16_t count;
    size_t off;

    assert(req != NULL);
    assert(buf != NULL || len == 0);
    memset(req, 0, sizeof(*req));

    if (len < CRP_LOOKUP_HEADER_SIZE || memcmp(p, CRP_LOOKUP_MAGIC, 4) != 0)
        return CRP_LOOKUP_MALFORMED;
    /* From here the header is 14 bytes with the right magic: the request id
     * is echoed in every answer, so a DEALER client can match it. */
    req->request_id = rd32(p + 8);
    if (rd16(p + 4) != CRP_LOOKUP_VERSION)
        return CRP_LOOKUP_UNSUPPORTED;
    req->flags = rd16(p + 6);
    count = rd16(p + 12);
    if (count == 0 || count > CRP_LOOKUP_COUNT_MAX)
        return CRP_LOOKUP_MALFORMED;

    off = CRP_LOOKUP_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        size_t id_len;

        if (len - off < 1)
            return CRP_LOOKUP_MALFORMED;
        id_len = p[off];
        if (id_len == 0 || len - off - 1 < id_len)
            return CRP_LOOKUP_MALFORMED;
        off += 1 + id_len;
    }
    if (off != len)
        return CRP_LOOKUP_MALFORMED;

    req->count = count;
    req->ids_ = p + CRP_LOOKUP_HEADER_SIZE;
    req->ids_len_ = len - CRP_LOOKUP_HEADER_SIZE;
    return CRP_LOOKUP_OK;
}

void crp_lookup_iter_init(crp_lookup_iter *it, const crp_lookup_req *req)
{
    it->p_ = req->ids_;
    it->left_ = req->ids_ != NULL ? req->count : 0;
}

bool crp_lookup_next_id(crp_lookup_iter *it, const char **id, size_t *len)
{
    const unsigned char *p = it->p_;

    if (it->left_ == 0)
        return false;
    assert(p[0] != 0);
    *len = p[0];
    *id = (const char *)p + 1;
    it->p_ = p + 1 + p[0];
    it->left_--;
    return true;
}

bool crp_lookup_is_stats(const void *buf, size_t len)
{
    return len == 4 && memcmp(buf, CRP_STATS_MAGIC, 4) == 0;
}

size_t crp_lookup_encode_req(void *buf, size_t cap, unsigned flags, uint32_t request_id,
                             const crp_lookup_id *ids, size_t n)
{
    unsigned char *p = buf;
    size_t off;

    if (n == 0 || n > CRP_LOOKUP_COUNT_MAX || flags > 0xffffu || cap < CRP_LOOKUP_HEADER_SIZE)
        return 0;
    memcpy(p, CRP_LOOKUP_MAGIC, 4);
    wr16(p + 4, CRP_LOOKUP_VERSION);
    wr16(p + 6, (uint16_t)flags);
    wr32(p + 8, request_id);
    wr16(p + 12, (uint16_t)n);

    off = CRP_LOOKUP_HEADER_SIZE;
    for (size_t i = 0; i < n; i++) {
        size_t id_len = ids[i].len;

        if (ids[i].id == NULL || id_len == 0 || id_len > CRP_WIRE_ID_MAX || cap - off < 1 + id_len)
            return 0;
        p[off] = (unsigned char)id_len;
        memcpy(p + off + 1, ids[i].id, id_len);
        off += 1 + id_len;
    }
    return off;
}

/* ------------------------------------------------------------------------
 * Lookup replies
 * ------------------------------------------------------------------------ */

size_t crp_reply_max_size(size_t count, bool with_text)
{
    return CRP_REPLY_HEADER_SIZE +
           count * (CRP_REPLY_RESULT_MIN_SIZE + (with_text ? CRP_SMTP_TEXT_LEN : 0));
}

bool crp_reply_begin(crp_reply_writer *w, void *buf, size_t cap, int status, uint32_t request_id)
{
    unsigned char *p = buf;

    w->buf_ = p;
    w->cap_ = cap;
    w->len_ = 0; /* 0 marks a failed writer */
    w->status_ = 0;
    w->count_ = 0;
    if (cap < CRP_REPLY_HEADER_SIZE || status < CRP_LOOKUP_OK || status > CRP_LOOKUP_UNSUPPORTED)
        return false;
    memcpy(p, CRP_REPLY_MAGIC, 4);
    wr16(p + 4, CRP_LOOKUP_VERSION);
    wr16(p + 6, (uint16_t)status);
    wr32(p + 8, request_id);
    wr16(p + 12, 0);
    w->status_ = (uint16_t)status;
    w->len_ = CRP_REPLY_HEADER_SIZE;
    return true;
}

bool crp_reply_add(crp_reply_writer *w, int state, unsigned reasons, uint64_t since_ms,
                   const char *text)
{
    unsigned char *p;
    size_t text_len = 0;

    if (w->len_ == 0 || w->status_ != CRP_LOOKUP_OK || w->count_ == CRP_LOOKUP_COUNT_MAX)
        return false;
    if (state < 0 || state > 3 || (reasons & ~0x3fu) != 0)
        return false;
    if (state != 2) {
        /* The wire carries reasons, since and text for restricted
         * connectors only. */
        reasons = 0;
        since_ms = 0;
        text = NULL;
    }
    if (text != NULL) {
        text_len = strlen(text);
        if (text_len > 0xffffu)
            return false;
    }
    if (w->cap_ - w->len_ < CRP_REPLY_RESULT_MIN_SIZE + text_len)
        return false;

    p = w->buf_ + w->len_;
    p[0] = (unsigned char)state;
    p[1] = (unsigned char)reasons;
    wr64(p + 2, since_ms);
    wr16(p + 10, (uint16_t)text_len);
    if (text_len != 0)
        memcpy(p + CRP_REPLY_RESULT_MIN_SIZE, text, text_len);
    w->len_ += CRP_REPLY_RESULT_MIN_SIZE + text_len;
    w->count_++;
    return true;
}

size_t crp_reply_finish(crp_reply_writer *w)
{
    if (w->len_ == 0 || (w->status_ == CRP_LOOKUP_OK && w->count_ == 0))
        return 0;
    wr16(w->buf_ + 12, w->count_);
    return w->len_;
}

crp_err crp_reply_decode(const void *buf, size_t len, crp_reply *rep)
{
    const unsigned char *p = buf;
    uint16_t status, count;
    size_t off;

    assert(rep != NULL);
    assert(buf != NULL || len == 0);
    memset(rep, 0, sizeof(*rep));

    if (len < CRP_REPLY_HEADER_SIZE || memcmp(p, CRP_REPLY_MAGIC, 4) != 0 ||
        rd16(p + 4) != CRP_LOOKUP_VERSION)
        return CRP_PROTO;
    status = rd16(p + 6);
    count = rd16(p + 12);
    if (status > CRP_LOOKUP_UNSUPPORTED)
        return CRP_PROTO;
    rep->status = status;
    rep->request_id = rd32(p + 8);

    if (status != CRP_LOOKUP_OK)
        return count == 0 && len == CRP_REPLY_HEADER_SIZE ? CRP_OK : CRP_PROTO;
    if (count == 0 || count > CRP_LOOKUP_COUNT_MAX)
        return CRP_PROTO;

    off = CRP_REPLY_HEADER_SIZE;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *r = p + off;
        size_t rem = len - off;
        size_t text_len;

        if (rem < CRP_REPLY_RESULT_MIN_SIZE)
            return CRP_PROTO;
        text_len = rd16(r + 10);
        if (r[0] > 3 || (text_len != 0 && r[0] != 2))
            return CRP_PROTO;
        if (rem - CRP_REPLY_RESULT_MIN_SIZE < text_len)
            return CRP_PROTO;
        off += CRP_REPLY_RESULT_MIN_SIZE + text_len;
    }
    if (off != len)
        return CRP_PROTO;

    rep->count = count;
    rep->results_ = p + CRP_REPLY_HEADER_SIZE;
    rep->results_len_ = len - CRP_REPLY_HEADER_SIZE;
    return CRP_OK;
}

void crp_reply_iter_init(crp_reply_iter *it, const crp_reply *rep)
{
    it->p_ = rep->results_;
    it->left_ = rep->results_ != NULL ? rep->count : 0;
}

bool crp_reply_next(crp_reply_iter *it, crp_reply_result *res)
{
    const unsigned char *r = it->p_;

    if (it->left_ == 0)
        return false;
    res->state = r[0];
    res->reasons = r[1];
    res->since_ms = rd64(r + 2);
    res->text_len = rd16(r + 10);
    res->text = (const char *)r + CRP_REPLY_RESULT_MIN_SIZE;
    assert(res->state <= 3);
    it->p_ = r + CRP_REPLY_RESULT_MIN_SIZE + res->text_len;
    it->left_--;
    return true;
}
