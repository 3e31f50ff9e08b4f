/* libFuzzer target: the lookup decoders. The same bytes go to the engine's
 * side (crp_lookup_decode and the ids iterator, crp_lookup_is_stats) and to
 * the client's side (crp_reply_decode and the results iterator), so one
 * corpus explores requests ("CRQ1"), stats requests ("CRS1") and replies
 * ("CRR1").
 *
 * Checked on every input, besides what the sanitizers catch, against the
 * contract of crp/wire.h:
 *  - a request decodes to ok, malformed or unsupported (never overloaded,
 *    the engine's own decision); the request id is 0 unless the header was
 *    sound, and is echoed for an unsupported version;
 *  - an ok request walks exactly `count` ids of 1..255 bytes lying end to
 *    end up to the last byte, and re-encodes to the same bytes;
 *  - a reply decodes to CRP_OK or CRP_PROTO; an ok reply walks exactly
 *    `count` results whose state is 0..3, with a text only in state 2, end
 *    to end up to the last byte; a reply in the canonical form the writer
 *    produces re-encodes to the same bytes.
 */
#include <stdbool.h>
#include <string.h>

#include "crp/wire.h"

#include "fuzz.h"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_request(const uint8_t *data, size_t size)
{
    crp_lookup_req req;
    crp_lookup_status st = crp_lookup_decode(data, size, &req);
    crp_lookup_id *ids;
    crp_lookup_iter it;
    const char *id, *expect = (const char *)data + CRP_LOOKUP_HEADER_SIZE;
    size_t len, n = 0;
    unsigned char *copy;
    bool sound = size >= CRP_LOOKUP_HEADER_SIZE && memcmp(data, CRP_LOOKUP_MAGIC, 4) == 0;

    CHECK(st == CRP_LOOKUP_OK || st == CRP_LOOKUP_MALFORMED || st == CRP_LOOKUP_UNSUPPORTED);
    CHECK(req.request_id == (sound ? le32(data + 8) : 0));
    if (st != CRP_LOOKUP_OK) {
        CHECK(req.count == 0 && req.ids_ == NULL);
        CHECK(st != CRP_LOOKUP_UNSUPPORTED || sound);
        crp_lookup_iter_init(&it, &req);
        CHECK(!crp_lookup_next_id(&it, &id, &len));
        return;
    }
    CHECK(sound);
    CHECK(req.count >= 1 && req.count <= CRP_LOOKUP_COUNT_MAX);
    ids = calloc(req.count, sizeof(*ids));
    CHECK(ids != NULL);
    crp_lookup_iter_init(&it, &req);
    while (crp_lookup_next_id(&it, &id, &len)) {
        CHECK(n < req.count);
        CHECK(len >= 1 && len <= CRP_WIRE_ID_MAX);
        /* One length byte, then the id. */
        CHECK(id == expect + 1);
        expect = id + len;
        CHECK(expect <= (const char *)data + size);
        ids[n].id = id;
        ids[n].len = len;
        n++;
    }
    CHECK(n == req.count);
    CHECK(expect == (const char *)data + size);

    copy = malloc(size);
    CHECK(copy != NULL);
    CHECK(crp_lookup_encode_req(copy, size, req.flags, req.request_id, ids, n) == size);
    CHECK(memcmp(copy, data, size) == 0);
    free(copy);
    free(ids);
}

/* Whether the writer would produce exactly this result: it zeroes reasons
 * and since outside state 2, keeps reason bits 0..5 only, and takes the
 * text as a C string. */
static bool canonical(const crp_reply_result *r)
{
    if (r->state != 2)
        return r->reasons == 0 && r->since_ms == 0 && r->text_len == 0;
    return (r->reasons & ~0x3fu) == 0 && memchr(r->text, '\0', r->text_len) == NULL;
}

static void check_reply(const uint8_t *data, size_t size)
{
    crp_reply rep;
    crp_err err = crp_reply_decode(data, size, &rep);
    crp_reply_iter it;
    crp_reply_result res;
    crp_reply_writer w;
    const char *expect = (const char *)data + CRP_REPLY_HEADER_SIZE;
    unsigned char *copy;
    char text[0x10000];
    bool same_form = true;
    size_t n = 0;

    CHECK(err == CRP_OK || err == CRP_PROTO);
    if (err != CRP_OK) {
        CHECK(rep.count == 0 && rep.results_ == NULL);
        crp_reply_iter_init(&it, &rep);
        CHECK(!crp_reply_next(&it, &res));
        return;
    }
    CHECK(rep.status <= CRP_LOOKUP_UNSUPPORTED);
    CHECK(rep.request_id == le32(data + 8));
    copy = malloc(size);
    CHECK(copy != NULL);
    CHECK(crp_reply_begin(&w, copy, size, rep.status, rep.request_id));
    if (rep.status != CRP_LOOKUP_OK) {
        CHECK(rep.count == 0 && size == CRP_REPLY_HEADER_SIZE);
    } else {
        CHECK(rep.count >= 1 && rep.count <= CRP_LOOKUP_COUNT_MAX);
    }
    crp_reply_iter_init(&it, &rep);
    while (crp_reply_next(&it, &res)) {
        CHECK(n < rep.count);
        n++;
        CHECK(res.state <= 3);
        CHECK(res.text_len == 0 || res.state == 2);
        CHECK(res.text == expect + CRP_REPLY_RESULT_MIN_SIZE);
        expect = res.text + res.text_len;
        CHECK(expect <= (const char *)data + size);
        if (!canonical(&res)) {
            same_form = false;
            continue;
        }
        memcpy(text, res.text, res.text_len);
        text[res.text_len] = '\0';
        if (same_form)
            CHECK(crp_reply_add(&w, res.state, res.reasons, res.since_ms,
                                res.text_len > 0 ? text : NULL));
    }
    CHECK(n == rep.count);
    CHECK(expect == (const char *)data + size);
    if (same_form) {
        CHECK(crp_reply_finish(&w) == size);
        CHECK(memcmp(copy, data, size) == 0);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CHECK(crp_lookup_is_stats(data, size) == (size == 4 && memcmp(data, CRP_STATS_MAGIC, 4) == 0));
    check_request(data, size);
    check_reply(data, size);
    return 0;
}
