/* libFuzzer target: the feed decoder (crp_feed_decode) and its iterator,
 * which every frame from a verdict producer goes through.
 *
 * The input is one frame. Besides what the sanitizers catch (a read outside
 * the input, undefined arithmetic), each input checks the contract of
 * crp/wire.h:
 *  - the reason is one of the named ones, and the size limit comes first
 *    (limit size - 1: oversize; limit size: the same answer as no limit);
 *  - after a failure the header is zeroed except producer, seq and count,
 *    and a walk over it is empty;
 *  - after a success the walk returns exactly `count` events with every
 *    field in range, lying end to end inside the frame up to its last byte;
 *  - re-encoding those events with the builder gives the same bytes.
 */
#include <stdbool.h>
#include <string.h>

#include "crp/wire.h"

#include "fuzz.h"

/* Decoding must not depend on the limit other than through `oversize`. */
static void check_limit(const uint8_t *data, size_t size, crp_feed_reason unlimited)
{
    crp_feed_header hdr;

    CHECK(crp_feed_decode(data, size, size, &hdr) == unlimited);
    /* A limit of 0 means none, so a 1-byte frame cannot be oversize. */
    if (size > 1)
        CHECK(crp_feed_decode(data, size, size - 1, &hdr) == CRP_FEED_OVERSIZE);
}

static void check_failure(const crp_feed_header *hdr)
{
    crp_feed_iter it;
    crp_feed_event ev;

    CHECK(hdr->events_ == NULL && hdr->events_len_ == 0);
    crp_feed_iter_init(&it, hdr);
    CHECK(!crp_feed_next(&it, &ev));
}

/* Walks a decoded frame and rebuilds it from the events. */
static void check_success(const uint8_t *data, size_t size, const crp_feed_header *hdr)
{
    const char *end = (const char *)data + size;
    const char *expect = (const char *)data + CRP_FEED_HEADER_SIZE;
    unsigned char *copy = malloc(size);
    crp_feed_builder b;
    crp_feed_iter it;
    crp_feed_event ev;
    uint32_t n = 0;

    CHECK(copy != NULL);
    CHECK(hdr->count >= 1 && hdr->count <= CRP_FEED_COUNT_MAX);
    CHECK(crp_feed_builder_init(&b, copy, size, hdr->producer, hdr->seq));
    crp_feed_iter_init(&it, hdr);
    while (crp_feed_next(&it, &ev)) {
        n++;
        CHECK(n <= hdr->count);
        CHECK((ev.verdict & ~CRP_FEED_VERDICT_MASK) == 0);
        CHECK(ev.recipients != 0);
        CHECK(ev.id_len >= 1 && ev.id_len <= CRP_WIRE_ID_MAX);
        CHECK(ev.tenant_len <= CRP_WIRE_TENANT_MAX);
        /* Events lie end to end: the id follows the fixed part of this
         * event, which starts where the previous one ended. */
        CHECK(ev.id == expect + CRP_FEED_EVENT_MIN_SIZE);
        CHECK(ev.tenant == ev.id + ev.id_len);
        CHECK(ev.tenant + ev.tenant_len <= end);
        expect = ev.tenant + ev.tenant_len;
        CHECK(crp_feed_builder_add(&b, &ev));
    }
    CHECK(n == hdr->count);
    CHECK(expect == end);
    CHECK(crp_feed_builder_finish(&b) == size);
    CHECK(memcmp(copy, data, size) == 0);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    crp_feed_header hdr;
    crp_feed_reason r = crp_feed_decode(data, size, 0, &hdr);

    CHECK(r >= CRP_FEED_OK && r < CRP_FEED_REASON_LIMIT && r != CRP_FEED_OVERSIZE);
    CHECK(strcmp(crp_feed_reason_name(r), "unknown") != 0);
    check_limit(data, size, r);
    if (r == CRP_FEED_OK) {
        check_success(data, size, &hdr);
        return 0;
    }
    /* Producer, seq and count are kept once magic and version were right,
     * so that a rejection can be logged with its producer. */
    if (r == CRP_FEED_TRUNCATED && size < CRP_FEED_HEADER_SIZE)
        CHECK(hdr.producer == 0 && hdr.seq == 0 && hdr.count == 0);
    if (r == CRP_FEED_BAD_MAGIC || r == CRP_FEED_BAD_VERSION)
        CHECK(hdr.producer == 0 && hdr.seq == 0 && hdr.count == 0);
    check_failure(&hdr);
    return 0;
}
