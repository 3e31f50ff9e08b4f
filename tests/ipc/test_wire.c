/* Wire codecs: round trips, exact bytes, every rejection reason, and every
 * truncation point decoded from a buffer that ends right before an unmapped
 * page, so that any read past the end crashes the test. */
/* MAP_ANONYMOUS is not in POSIX.1-2008; glibc exposes it with this. */
#define _DEFAULT_SOURCE

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crp/wire.h"

/* ------------------------------------------------------------------------
 * Guard page: `limit` is the first byte of a PROT_NONE page; guard_put()
 * copies a message so that its last byte is limit[-1].
 * ------------------------------------------------------------------------ */

typedef struct guard {
    unsigned char *map;
    size_t map_len;
    unsigned char *limit;
} guard;

static void guard_init(guard *g, size_t max_len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (max_len + page - 1) / page + 1;

    g->map_len = pages * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(ne(ptr, g->map, MAP_FAILED));
    g->limit = g->map + (pages - 1) * page;
    cr_assert(eq(int, mprotect(g->limit, page, PROT_NONE), 0));
}

static const unsigned char *guard_put(guard *g, const void *msg, size_t len)
{
    cr_assert(le(sz, len, (size_t)(g->limit - g->map)));
    if (len != 0)
        memcpy(g->limit - len, msg, len);
    return g->limit - len;
}

static void guard_fini(guard *g)
{
    munmap(g->map, g->map_len);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static crp_feed_event mkev(const char *id, const char *tenant, uint16_t verdict,
                           uint16_t recipients, uint64_t ts)
{
    crp_feed_event ev = {
        .ts_ms = ts,
        .verdict = verdict,
        .recipients = recipients,
        .id = id,
        .id_len = strlen(id),
        .tenant = tenant,
        .tenant_len = tenant != NULL ? strlen(tenant) : 0,
    };
    return ev;
}

/* A valid three-event frame with ids and tenants of different lengths. */
static const crp_feed_event *sample_events(size_t *n)
{
    static crp_feed_event evs[3];

    evs[0] = mkev("7f0c2a5e-1b7d-4f55-9a1e-2c3b4d5e6f70", "contoso.onmicrosoft.com",
                  CRP_FEED_VERDICT_SPAM, 3, 1700000000000ull);
    evs[1] = mkev("c", NULL, 0, 1, 0);
    evs[2] = mkev("connector-2", "t", CRP_FEED_VERDICT_HC_PHISH | CRP_FEED_VERDICT_PHISH, 65535,
                  UINT64_MAX);
    *n = 3;
    return evs;
}

static size_t build_sample(unsigned char *buf, size_t cap)
{
    crp_feed_builder b;
    size_t n;
    const crp_feed_event *evs = sample_events(&n);

    cr_assert(crp_feed_builder_init(&b, buf, cap, 42, 7));
    for (size_t i = 0; i < n; i++)
        cr_assert(crp_feed_builder_add(&b, &evs[i]));
    return crp_feed_builder_finish(&b);
}

/* A frame of one event whose fixed fields are given raw, so that invalid
 * values can be written. buf must hold CRP_FEED_HEADER_SIZE +
 * CRP_FEED_EVENT_MAX_SIZE bytes; returns the length the frame should have. */
static size_t raw_frame(unsigned char *buf, uint16_t verdict, uint16_t recipients, uint8_t id_len,
                        uint8_t tenant_len)
{
    unsigned char *e = buf + CRP_FEED_HEADER_SIZE;

    memset(buf, 'x', CRP_FEED_HEADER_SIZE + CRP_FEED_EVENT_MAX_SIZE);
    cr_assert(eq(sz, crp_feed_encode_header(buf, CRP_FEED_HEADER_SIZE, 1, 1, 1),
                 (size_t)CRP_FEED_HEADER_SIZE));
    memset(e, 0, 8);
    put16(e + 8, verdict);
    put16(e + 10, recipients);
    e[12] = id_len;
    e[13] = tenant_len;
    return CRP_FEED_HEADER_SIZE + CRP_FEED_EVENT_MIN_SIZE + id_len + tenant_len;
}

static int decode(const void *buf, size_t len)
{
    crp_feed_header h;

    return crp_feed_decode(buf, len, CRP_FEED_MAX_FRAME_DEFAULT, &h);
}

/* ------------------------------------------------------------------------
 * Feed
 * ------------------------------------------------------------------------ */

Test(wire, feed_reason_names)
{
    static const char *const names[] = {
        "ok",        "bad_magic",     "bad_version",       "truncated",      "trailing_bytes",
        "bad_count", "bad_id_length", "bad_tenant_length", "bad_recipients", "reserved_bits",
        "oversize",
    };

    cr_assert(eq(int, CRP_FEED_OK, 0));
    cr_assert(eq(int, CRP_FEED_REASON_LIMIT, 11));
    for (int r = 0; r < CRP_FEED_REASON_LIMIT; r++)
        cr_assert(eq(str, (char *)crp_feed_reason_name(r), (char *)names[r]));
    cr_assert(eq(str, (char *)crp_feed_reason_name(CRP_FEED_REASON_LIMIT), "unknown"));
    cr_assert(eq(str, (char *)crp_feed_reason_name(-1), "unknown"));
    cr_assert(eq(str, (char *)crp_feed_reason_name(CRP_FEED_TRUNCATED), "truncated"));
    cr_assert(eq(str, (char *)crp_feed_reason_name(CRP_FEED_OVERSIZE), "oversize"));
}

Test(wire, feed_round_trip)
{
    unsigned char buf[1024];
    size_t n, len = build_sample(buf, sizeof(buf));
    const crp_feed_event *evs = sample_events(&n);
    crp_feed_header h;
    crp_feed_iter it;
    crp_feed_event ev;
    size_t i = 0;

    cr_assert(gt(sz, len, 0));
    cr_assert(eq(int, crp_feed_decode(buf, len, 0, &h), CRP_FEED_OK));
    cr_assert(eq(u64, h.producer, 42));
    cr_assert(eq(u64, h.seq, 7));
    cr_assert(eq(u32, h.count, 3));
    crp_feed_iter_init(&it, &h);
    while (crp_feed_next(&it, &ev)) {
        cr_assert(lt(sz, i, n));
        cr_assert(eq(u64, ev.ts_ms, evs[i].ts_ms));
        cr_assert(eq(u16, ev.verdict, evs[i].verdict));
        cr_assert(eq(u16, ev.recipients, evs[i].recipients));
        cr_assert(eq(sz, ev.id_len, evs[i].id_len));
        cr_assert(eq(int, memcmp(ev.id, evs[i].id, ev.id_len), 0));
        cr_assert(eq(sz, ev.tenant_len, evs[i].tenant_len));
        if (ev.tenant_len != 0)
            cr_assert(eq(int, memcmp(ev.tenant, evs[i].tenant, ev.tenant_len), 0));
        /* Pointers are into the frame, not copies. */
        cr_assert(ge(ptr, (void *)ev.id, (void *)buf));
        cr_assert(le(ptr, (void *)(ev.tenant + ev.tenant_len), (void *)(buf + len)));
        i++;
    }
    cr_assert(eq(sz, i, n));
    cr_assert(not(crp_feed_next(&it, &ev)));
}

Test(wire, feed_encode_functions_match_builder)
{
    unsigned char a[1024], b[1024];
    size_t n, len = build_sample(a, sizeof(a));
    const crp_feed_event *evs = sample_events(&n);
    size_t off = crp_feed_encode_header(b, sizeof(b), 42, 7, (uint32_t)n);

    cr_assert(eq(sz, off, (size_t)CRP_FEED_HEADER_SIZE));
    for (size_t i = 0; i < n; i++) {
        size_t w = crp_feed_encode_event(b + off, sizeof(b) - off, &evs[i]);
        cr_assert(eq(sz, w, CRP_FEED_EVENT_MIN_SIZE + evs[i].id_len + evs[i].tenant_len));
        off += w;
    }
    cr_assert(eq(sz, off, len));
    cr_assert(eq(int, memcmp(a, b, len), 0));
}

/* The example of docs/protocol.md section 1.5, byte for byte. */
Test(wire, feed_exact_bytes)
{
    static const unsigned char want[] = {
        0x43, 0x52, 0x46, 0x31, 0x01, 0x00, 0x00, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02,
        0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x68,
        0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x11, 0x00, 0x34, 0x12, 0x02, 0x01, 0x61, 0x62, 0x74,
    };
    unsigned char buf[64];
    crp_feed_builder b;
    crp_feed_event ev =
        mkev("ab", "t", CRP_FEED_VERDICT_SPAM | CRP_FEED_VERDICT_MALWARE, 0x1234, 1700000000000ull);
    crp_feed_header h;

    cr_assert(crp_feed_builder_init(&b, buf, sizeof(buf), 0x0102030405060708ull, 2));
    cr_assert(crp_feed_builder_add(&b, &ev));
    cr_assert(eq(sz, crp_feed_builder_finish(&b), sizeof(want)));
    cr_assert(eq(sz, sizeof(want), 45));
    cr_assert(eq(int, memcmp(buf, want, sizeof(want)), 0));
    cr_assert(eq(int, crp_feed_decode(want, sizeof(want), 0, &h), CRP_FEED_OK));
}

Test(wire, feed_each_reason_from_a_crafted_frame)
{
    unsigned char good[1024], buf[1100];
    size_t len = build_sample(good, sizeof(good));
    crp_feed_header h;

#define EXPECT(frame, flen, reason, name)                                                          \
    do {                                                                                           \
        int r_ = decode(frame, flen);                                                              \
        cr_assert(eq(int, r_, reason));                                                            \
        cr_assert(eq(str, (char *)crp_feed_reason_name(r_), name));                                \
    } while (0)

    /* bad_magic */
    memcpy(buf, good, len);
    buf[3] = '2';
    EXPECT(buf, len, CRP_FEED_BAD_MAGIC, "bad_magic");
    /* bad_version */
    memcpy(buf, good, len);
    put16(buf + 4, 2);
    EXPECT(buf, len, CRP_FEED_BAD_VERSION, "bad_version");
    /* truncated: header, and events */
    EXPECT(good, CRP_FEED_HEADER_SIZE - 1, CRP_FEED_TRUNCATED, "truncated");
    EXPECT(good, len - 1, CRP_FEED_TRUNCATED, "truncated");
    /* trailing_bytes */
    memcpy(buf, good, len);
    buf[len] = 0;
    EXPECT(buf, len + 1, CRP_FEED_TRAILING_BYTES, "trailing_bytes");
    /* bad_count */
    memcpy(buf, good, len);
    put32(buf + 24, 0);
    EXPECT(buf, len, CRP_FEED_BAD_COUNT, "bad_count");
    /* bad_id_length, bad_tenant_length, bad_recipients, reserved_bits */
    EXPECT(buf, raw_frame(buf, 0, 1, 0, 0), CRP_FEED_BAD_ID_LENGTH, "bad_id_length");
    EXPECT(buf, raw_frame(buf, 0, 1, 1, 65), CRP_FEED_BAD_TENANT_LENGTH, "bad_tenant_length");
    EXPECT(buf, raw_frame(buf, 0, 0, 1, 0), CRP_FEED_BAD_RECIPIENTS, "bad_recipients");
    EXPECT(buf, raw_frame(buf, 0x0040, 1, 1, 0), CRP_FEED_RESERVED_BITS, "reserved_bits");
    memcpy(buf, good, len);
    put16(buf + 6, 1);
    EXPECT(buf, len, CRP_FEED_RESERVED_BITS, "reserved_bits");
    /* oversize */
    cr_assert(eq(int, crp_feed_decode(good, len, len - 1, &h), CRP_FEED_OVERSIZE));
    cr_assert(eq(str, (char *)crp_feed_reason_name(CRP_FEED_OVERSIZE), "oversize"));
#undef EXPECT
}

Test(wire, feed_every_prefix_is_truncated_at_a_guard_page)
{
    unsigned char good[1024];
    size_t len = build_sample(good, sizeof(good));
    guard g;
    crp_feed_header h;

    guard_init(&g, len);
    for (size_t n = 0; n < len; n++) {
        const unsigned char *p = guard_put(&g, good, n);
        int r = crp_feed_decode(p, n, 0, &h);
        cr_assert(eq(int, r, CRP_FEED_TRUNCATED), "prefix of %zu bytes", n);
        cr_assert(eq(str, (char *)crp_feed_reason_name(r), "truncated"));
    }
    /* The whole frame, ending at the guard, decodes and iterates. */
    {
        const unsigned char *p = guard_put(&g, good, len);
        crp_feed_iter it;
        crp_feed_event ev;
        uint32_t seen = 0;

        cr_assert(eq(int, crp_feed_decode(p, len, 0, &h), CRP_FEED_OK));
        crp_feed_iter_init(&it, &h);
        while (crp_feed_next(&it, &ev))
            seen++;
        cr_assert(eq(u32, seen, 3));
        cr_assert(eq(int, ev.tenant[ev.tenant_len - 1], 't'));
    }
    guard_fini(&g);
}

Test(wire, feed_every_suffix_defect_at_a_guard_page)
{
    /* A frame whose last event ends at the guard with its id length byte
     * claiming more than is there: the decoder must stop at the end. */
    unsigned char buf[512];
    size_t len = raw_frame(buf, 0, 1, 255, 64);
    guard g;

    guard_init(&g, len);
    for (size_t cut = CRP_FEED_HEADER_SIZE; cut < len; cut++)
        cr_assert(eq(int, decode(guard_put(&g, buf, cut), cut), CRP_FEED_TRUNCATED));
    cr_assert(eq(int, decode(guard_put(&g, buf, len), len), CRP_FEED_OK));
    guard_fini(&g);
}

/* AddressSanitizer turns SIGSEGV into a report and exit(1), so this check
 * runs only in builds without it. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CRP_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CRP_TEST_ASAN 1
#endif

#if !defined(CRP_TEST_ASAN)
/* Proves the guard is armed: the tests above would crash on an overread. */
Test(wire, guard_page_traps_reads, .signal = SIGSEGV)
{
    guard g;
    volatile const unsigned char *p;

    guard_init(&g, 1);
    p = g.limit;
    (void)p[0];
}
#endif

Test(wire, feed_count_limits)
{
    unsigned char buf[512];
    size_t len = raw_frame(buf, 0, 1, 1, 0);

    put32(buf + 24, 0);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_BAD_COUNT));
    put32(buf + 24, 65536);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_BAD_COUNT));
    put32(buf + 24, UINT32_MAX);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_BAD_COUNT));
    put32(buf + 24, 2);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_TRUNCATED));
    cr_assert(eq(sz, crp_feed_encode_header(buf, sizeof(buf), 1, 1, 0), 0));
    cr_assert(eq(sz, crp_feed_encode_header(buf, sizeof(buf), 1, 1, 65536), 0));
    cr_assert(eq(sz, crp_feed_encode_header(buf, CRP_FEED_HEADER_SIZE - 1, 1, 1, 1), 0));
}

Test(wire, feed_65535_events)
{
    size_t cap = CRP_FEED_HEADER_SIZE + 65536 * (CRP_FEED_EVENT_MIN_SIZE + 1);
    unsigned char *buf = malloc(cap);
    crp_feed_builder b;
    crp_feed_event ev = mkev("x", NULL, 0, 1, 0);
    crp_feed_header h;
    crp_feed_iter it;
    uint32_t seen = 0;
    size_t len;

    cr_assert(not(eq(ptr, buf, NULL)));
    cr_assert(crp_feed_builder_init(&b, buf, cap, 1, 1));
    for (uint32_t i = 0; i < 65535; i++)
        cr_assert(crp_feed_builder_add(&b, &ev));
    cr_assert(not(crp_feed_builder_add(&b, &ev)), "a 65536th event is refused");
    len = crp_feed_builder_finish(&b);
    cr_assert(eq(sz, len, CRP_FEED_HEADER_SIZE + 65535 * (CRP_FEED_EVENT_MIN_SIZE + 1)));
    cr_assert(eq(int, crp_feed_decode(buf, len, 0, &h), CRP_FEED_OK));
    cr_assert(eq(u32, h.count, 65535));
    crp_feed_iter_init(&it, &h);
    while (crp_feed_next(&it, &ev))
        seen++;
    cr_assert(eq(u32, seen, 65535));
    /* The same frame with its count raised to 65536 and one more event. */
    memcpy(buf + len, buf + CRP_FEED_HEADER_SIZE, CRP_FEED_EVENT_MIN_SIZE + 1);
    put32(buf + 24, 65536);
    cr_assert(eq(int, crp_feed_decode(buf, len + CRP_FEED_EVENT_MIN_SIZE + 1, 0, &h),
                 CRP_FEED_BAD_COUNT));
    free(buf);
}

Test(wire, feed_id_length_limits)
{
    unsigned char buf[512];
    char id[256];
    crp_feed_event ev;

    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 0, 0)), CRP_FEED_BAD_ID_LENGTH));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 1, 0)), CRP_FEED_OK));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 255, 0)), CRP_FEED_OK));

    memset(id, 'i', sizeof(id));
    ev = mkev("", NULL, 0, 1, 0);
    ev.id = id;
    ev.id_len = 0;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
    ev.id_len = 256;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
    ev.id_len = 255;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 14 + 255));
    ev.id = NULL;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
}

Test(wire, feed_tenant_length_limits)
{
    unsigned char buf[512];
    char tenant[66];
    crp_feed_event ev = mkev("id", NULL, 0, 1, 0);

    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 1, 64)), CRP_FEED_OK));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 1, 65)), CRP_FEED_BAD_TENANT_LENGTH));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 1, 255)), CRP_FEED_BAD_TENANT_LENGTH));

    memset(tenant, 't', sizeof(tenant));
    ev.tenant = tenant;
    ev.tenant_len = 65;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
    ev.tenant_len = 64;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 14 + 2 + 64));
    ev.tenant = NULL;
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
}

Test(wire, feed_recipients)
{
    unsigned char buf[512];
    crp_feed_event ev = mkev("id", NULL, 0, 0, 0);

    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 0, 1, 0)), CRP_FEED_BAD_RECIPIENTS));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 1, 0)), CRP_FEED_OK));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 65535, 1, 0)), CRP_FEED_OK));
    cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
}

Test(wire, feed_verdict_bits)
{
    unsigned char buf[512];
    crp_feed_event ev = mkev("id", NULL, 0, 1, 0);

    for (unsigned bit = 0; bit < 6; bit++)
        cr_assert(
            eq(int, decode(buf, raw_frame(buf, (uint16_t)(1u << bit), 1, 1, 0)), CRP_FEED_OK));
    cr_assert(eq(int, decode(buf, raw_frame(buf, CRP_FEED_VERDICT_MASK, 1, 1, 0)), CRP_FEED_OK));
    for (unsigned bit = 6; bit < 16; bit++) {
        cr_assert(eq(int, decode(buf, raw_frame(buf, (uint16_t)(1u << bit), 1, 1, 0)),
                     CRP_FEED_RESERVED_BITS),
                  "verdict bit %u", bit);
        ev.verdict = (uint16_t)(1u << bit);
        cr_assert(eq(sz, crp_feed_encode_event(buf, sizeof(buf), &ev), 0));
    }
}

Test(wire, feed_header_flags_are_reserved)
{
    unsigned char buf[512];
    size_t len = raw_frame(buf, 0, 1, 1, 0);

    for (unsigned bit = 0; bit < 16; bit++) {
        put16(buf + 6, (uint16_t)(1u << bit));
        cr_assert(eq(int, decode(buf, len), CRP_FEED_RESERVED_BITS), "flag bit %u", bit);
    }
}

Test(wire, feed_oversize)
{
    unsigned char good[1024];
    size_t len = build_sample(good, sizeof(good));
    crp_feed_header h;

    cr_assert(eq(int, crp_feed_decode(good, len, len, &h), CRP_FEED_OK));
    cr_assert(eq(int, crp_feed_decode(good, len, len - 1, &h), CRP_FEED_OVERSIZE));
    cr_assert(eq(int, crp_feed_decode(good, len, 0, &h), CRP_FEED_OK), "0 = no limit");
    /* Oversize is decided on the length alone, before anything is read. */
    cr_assert(eq(int, crp_feed_decode(good, 5, 4, &h), CRP_FEED_OVERSIZE));
}

Test(wire, feed_reason_precedence)
{
    unsigned char good[1024], buf[1100];
    size_t len = build_sample(good, sizeof(good));
    crp_feed_header h;
    size_t ev1, ev2; /* offsets of the second and third events */

    /* oversize beats truncated */
    cr_assert(eq(int, crp_feed_decode(good, 3, 2, &h), CRP_FEED_OVERSIZE));
    /* a short header is truncated even if its magic is already wrong */
    cr_assert(eq(int, decode("XYZ", 3), CRP_FEED_TRUNCATED));
    /* bad_magic beats bad_version, flags and count */
    memcpy(buf, good, len);
    buf[0] = 'X';
    put16(buf + 4, 9);
    put16(buf + 6, 1);
    put32(buf + 24, 0);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_BAD_MAGIC));
    /* bad_version beats flags */
    buf[0] = 'C';
    cr_assert(eq(int, decode(buf, len), CRP_FEED_BAD_VERSION));
    /* header flags beat bad_count */
    put16(buf + 4, 1);
    cr_assert(eq(int, decode(buf, len), CRP_FEED_RESERVED_BITS));
    /* bad_count beats trailing bytes */
    put16(buf + 6, 0);
    cr_assert(eq(int, decode(buf, len + 1), CRP_FEED_BAD_COUNT));

    /* Within one event: verdict, then recipients, then id, then tenant
     * length, then the variable bytes. */
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0x8000, 0, 0, 65)), CRP_FEED_RESERVED_BITS));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 0, 0, 65)), CRP_FEED_BAD_RECIPIENTS));
    cr_assert(eq(int, decode(buf, raw_frame(buf, 0, 1, 0, 65)), CRP_FEED_BAD_ID_LENGTH));
    (void)raw_frame(buf, 0, 1, 1, 65);
    cr_assert(eq(int, decode(buf, CRP_FEED_HEADER_SIZE + CRP_FEED_EVENT_MIN_SIZE),
                 CRP_FEED_BAD_TENANT_LENGTH),
              "tenant length is judged before the missing bytes");

    /* Events are checked in order: a defect in event 1 wins over one in
     * event 2 and over trailing bytes. */
    memcpy(buf, good, len);
    ev1 = CRP_FEED_HEADER_SIZE + CRP_FEED_EVENT_MIN_SIZE + good[CRP_FEED_HEADER_SIZE + 12] +
          good[CRP_FEED_HEADER_SIZE + 13];
    ev2 = len - (CRP_FEED_EVENT_MIN_SIZE + strlen("connector-2") + strlen("t"));
    put16(buf + ev1 + 10, 0);     /* second event: recipients 0 */
    put16(buf + ev2 + 8, 0x0100); /* third event: a reserved verdict bit */
    buf[len] = 0;                 /* and a trailing byte */
    cr_assert(eq(int, decode(buf, len + 1), CRP_FEED_BAD_RECIPIENTS));
    put16(buf + ev1 + 10, 1);
    cr_assert(eq(int, decode(buf, len + 1), CRP_FEED_RESERVED_BITS));
    put16(buf + ev2 + 8, 0);
    cr_assert(eq(int, decode(buf, len + 1), CRP_FEED_TRAILING_BYTES));
    cr_assert(eq(int, decode(buf, len), CRP_FEED_OK));
}

Test(wire, feed_failed_decode_fills_header_and_walks_nothing)
{
    unsigned char good[1024];
    size_t len = build_sample(good, sizeof(good));
    crp_feed_header h;
    crp_feed_iter it;
    crp_feed_event ev;

    cr_assert(eq(int, crp_feed_decode(good, len - 1, 0, &h), CRP_FEED_TRUNCATED));
    cr_assert(eq(u64, h.producer, 42), "producer is known for logging");
    cr_assert(eq(u64, h.seq, 7));
    crp_feed_iter_init(&it, &h);
    cr_assert(not(crp_feed_next(&it, &ev)));

    cr_assert(eq(int, crp_feed_decode(NULL, 0, 0, &h), CRP_FEED_TRUNCATED));
    cr_assert(eq(u64, h.producer, 0));
}

Test(wire, feed_builder_limits)
{
    unsigned char buf[64];
    crp_feed_builder b;
    crp_feed_event ev = mkev("abcdefghij", NULL, 0, 1, 0); /* 24 bytes */
    crp_feed_event bad = mkev("id", NULL, 0, 0, 0);

    cr_assert(not(crp_feed_builder_init(&b, buf, 27, 1, 1)));
    cr_assert(not(crp_feed_builder_add(&b, &ev)));
    cr_assert(eq(sz, crp_feed_builder_finish(&b), 0));

    cr_assert(crp_feed_builder_init(&b, buf, sizeof(buf), 1, 1));
    cr_assert(eq(sz, crp_feed_builder_finish(&b), 0), "an empty frame is not a frame");
    cr_assert(not(crp_feed_builder_add(&b, &bad)));
    cr_assert(crp_feed_builder_add(&b, &ev));
    cr_assert(not(crp_feed_builder_add(&b, &ev)), "28 + 2 * 24 > 64");
    cr_assert(eq(sz, crp_feed_builder_finish(&b), 52));
    cr_assert(eq(int, decode(buf, 52), CRP_FEED_OK));
    cr_assert(eq(sz, crp_feed_encode_event(buf, 23, &ev), 0));
    cr_assert(eq(sz, crp_feed_encode_event(buf, 24, &ev), 24));
}

/* ------------------------------------------------------------------------
 * Lookup requests
 * ------------------------------------------------------------------------ */

static size_t sample_req(unsigned char *buf, size_t cap, unsigned flags, uint32_t rid)
{
    static const crp_lookup_id ids[] = {
        {"7f0c2a5e-1b7d-4f55-9a1e-2c3b4d5e6f70", 36},
        {"a", 1},
        {"connector-2", 11},
    };
    return crp_lookup_encode_req(buf, cap, flags, rid, ids, 3);
}

Test(wire, lookup_round_trip)
{
    unsigned char buf[256];
    size_t len = sample_req(buf, sizeof(buf), CRP_LOOKUP_FLAG_TEXT, 0xdeadbeef);
    static const char *const want[] = {"7f0c2a5e-1b7d-4f55-9a1e-2c3b4d5e6f70", "a", "connector-2"};
    crp_lookup_req req;
    crp_lookup_iter it;
    const char *id;
    size_t id_len, i = 0;

    cr_assert(eq(sz, len, 14 + 37 + 2 + 12));
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_OK));
    cr_assert(eq(u32, req.request_id, 0xdeadbeef));
    cr_assert(eq(u16, req.flags, CRP_LOOKUP_FLAG_TEXT));
    cr_assert(eq(u16, req.count, 3));
    crp_lookup_iter_init(&it, &req);
    while (crp_lookup_next_id(&it, &id, &id_len)) {
        cr_assert(eq(sz, id_len, strlen(want[i])));
        cr_assert(eq(int, memcmp(id, want[i], id_len), 0));
        i++;
    }
    cr_assert(eq(sz, i, 3));
}

/* The request example of docs/protocol.md section 2.5, byte for byte. */
Test(wire, lookup_exact_bytes)
{
    static const unsigned char want[] = {
        'C',  'R',  'Q',  '1',  0x01, 0x00, 0x01, 0x00, 0x04, 0x03,
        0x02, 0x01, 0x02, 0x00, 0x02, 'a',  'b',  0x01, 'c',
    };
    crp_lookup_id ids[] = {{"ab", 2}, {"c", 1}};
    unsigned char buf[64];

    cr_assert(eq(sz, crp_lookup_encode_req(buf, sizeof(buf), 1, 0x01020304, ids, 2), sizeof(want)));
    cr_assert(eq(int, memcmp(buf, want, sizeof(want)), 0));
}

Test(wire, lookup_short_or_bad_magic_is_malformed_with_request_id_0)
{
    unsigned char buf[256];
    size_t len = sample_req(buf, sizeof(buf), 0, 77);
    crp_lookup_req req;
    guard g;

    guard_init(&g, len);
    for (size_t n = 0; n < CRP_LOOKUP_HEADER_SIZE; n++) {
        cr_assert(eq(int, crp_lookup_decode(guard_put(&g, buf, n), n, &req), CRP_LOOKUP_MALFORMED));
        cr_assert(eq(u32, req.request_id, 0));
    }
    guard_fini(&g);
    buf[0] = 'X';
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_MALFORMED));
    cr_assert(eq(u32, req.request_id, 0));
    cr_assert(eq(int, crp_lookup_decode(NULL, 0, &req), CRP_LOOKUP_MALFORMED));
}

Test(wire, lookup_other_version_is_unsupported)
{
    unsigned char buf[256];
    size_t len = sample_req(buf, sizeof(buf), 0, 77);
    crp_lookup_req req;

    put16(buf + 4, 2);
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_UNSUPPORTED));
    cr_assert(eq(u32, req.request_id, 77), "request id echoed");
    cr_assert(eq(u16, req.count, 0));
    put16(buf + 4, 0);
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_UNSUPPORTED));
    /* Only the 14-byte header matters for the version. */
    cr_assert(eq(int, crp_lookup_decode(buf, 14, &req), CRP_LOOKUP_UNSUPPORTED));
}

Test(wire, lookup_count_limits)
{
    unsigned char *buf = malloc(CRP_LOOKUP_REQ_MAX_SIZE + 1);
    crp_lookup_id *ids = calloc(4097, sizeof(*ids));
    char id[255];
    crp_lookup_req req;
    crp_lookup_iter it;
    const char *p;
    size_t n, len, seen = 0;

    cr_assert(not(eq(ptr, buf, NULL)));
    cr_assert(not(eq(ptr, ids, NULL)));
    memset(id, 'z', sizeof(id));
    for (size_t i = 0; i < 4097; i++)
        ids[i] = (crp_lookup_id){id, 255};

    len = crp_lookup_encode_req(buf, CRP_LOOKUP_REQ_MAX_SIZE, 0, 9, ids, 4096);
    cr_assert(eq(sz, len, (size_t)CRP_LOOKUP_REQ_MAX_SIZE));
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_OK));
    crp_lookup_iter_init(&it, &req);
    while (crp_lookup_next_id(&it, &p, &n)) {
        cr_assert(eq(sz, n, 255));
        seen++;
    }
    cr_assert(eq(sz, seen, 4096));

    cr_assert(eq(sz, crp_lookup_encode_req(buf, CRP_LOOKUP_REQ_MAX_SIZE + 1, 0, 9, ids, 4097), 0));
    cr_assert(eq(sz, crp_lookup_encode_req(buf, CRP_LOOKUP_REQ_MAX_SIZE, 0, 9, ids, 0), 0));
    cr_assert(eq(sz, crp_lookup_encode_req(buf, CRP_LOOKUP_REQ_MAX_SIZE - 1, 0, 9, ids, 4096), 0));

    put16(buf + 12, 4097);
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_MALFORMED));
    cr_assert(eq(u32, req.request_id, 9), "a sound header's request id is echoed");
    put16(buf + 12, 0);
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_MALFORMED));
    cr_assert(eq(int, crp_lookup_decode(buf, 14, &req), CRP_LOOKUP_MALFORMED));
    free(ids);
    free(buf);
}

Test(wire, lookup_id_length_limits)
{
    unsigned char buf[512];
    char id[256];
    crp_lookup_id one = {id, 255};
    crp_lookup_req req;
    size_t len;

    memset(id, 'q', sizeof(id));
    len = crp_lookup_encode_req(buf, sizeof(buf), 0, 1, &one, 1);
    cr_assert(eq(sz, len, 14 + 1 + 255));
    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_OK));
    one.len = 256;
    cr_assert(eq(sz, crp_lookup_encode_req(buf, sizeof(buf), 0, 1, &one, 1), 0));
    one.len = 0;
    cr_assert(eq(sz, crp_lookup_encode_req(buf, sizeof(buf), 0, 1, &one, 1), 0));
    one = (crp_lookup_id){NULL, 3};
    cr_assert(eq(sz, crp_lookup_encode_req(buf, sizeof(buf), 0, 1, &one, 1), 0));

    /* An id of length 0 on the wire. */
    buf[14] = 0;
    cr_assert(eq(int, crp_lookup_decode(buf, 15, &req), CRP_LOOKUP_MALFORMED));
}

Test(wire, lookup_trailing_bytes_and_every_prefix_at_a_guard_page)
{
    unsigned char buf[256];
    size_t len = sample_req(buf, sizeof(buf), 0, 5);
    crp_lookup_req req;
    guard g;

    buf[len] = 0;
    cr_assert(eq(int, crp_lookup_decode(buf, len + 1, &req), CRP_LOOKUP_MALFORMED));
    cr_assert(eq(u32, req.request_id, 5));

    guard_init(&g, len);
    for (size_t n = 0; n < len; n++)
        cr_assert(eq(int, crp_lookup_decode(guard_put(&g, buf, n), n, &req), CRP_LOOKUP_MALFORMED),
                  "prefix of %zu bytes", n);
    cr_assert(eq(int, crp_lookup_decode(guard_put(&g, buf, len), len, &req), CRP_LOOKUP_OK));
    guard_fini(&g);
}

Test(wire, lookup_unknown_flags_are_ignored)
{
    unsigned char buf[256];
    size_t len = sample_req(buf, sizeof(buf), 0xfffe, 5);
    crp_lookup_req req;

    cr_assert(eq(int, crp_lookup_decode(buf, len, &req), CRP_LOOKUP_OK));
    cr_assert(eq(u16, req.flags, 0xfffe));
    cr_assert(eq(int, req.flags &CRP_LOOKUP_FLAG_TEXT, 0));
    cr_assert(eq(sz, sample_req(buf, sizeof(buf), 0x10000, 5), 0));
}

Test(wire, stats_request_detection)
{
    cr_assert(crp_lookup_is_stats("CRS1", 4));
    cr_assert(not(crp_lookup_is_stats("CRS1\n", 5)));
    cr_assert(not(crp_lookup_is_stats("CRS", 3)));
    cr_assert(not(crp_lookup_is_stats("CRQ1", 4)));
    cr_assert(not(crp_lookup_is_stats("crs1", 4)));
    cr_assert(not(crp_lookup_is_stats(NULL, 0)));
}

/* ------------------------------------------------------------------------
 * Lookup replies
 * ------------------------------------------------------------------------ */

Test(wire, smtp_text_is_exact)
{
    cr_assert(eq(str, CRP_SMTP_TEXT, "550 5.7.711 Access denied, bad inbound connector. AS(2204)"));
    cr_assert(eq(sz, CRP_SMTP_TEXT_LEN, 58));
}

Test(wire, reply_round_trip)
{
    unsigned char buf[512];
    crp_reply_writer w;
    crp_reply rep;
    crp_reply_iter it;
    crp_reply_result r;
    size_t len;

    cr_assert(crp_reply_begin(&w, buf, sizeof(buf), CRP_LOOKUP_OK, 0xabcdef01));
    cr_assert(crp_reply_add(&w, 0, 0, 0, NULL));
    cr_assert(crp_reply_add(&w, 2, 0x21, 1700000000123ull, CRP_SMTP_TEXT));
    cr_assert(crp_reply_add(&w, 1, 0x3f, 99, CRP_SMTP_TEXT)); /* normalised */
    cr_assert(crp_reply_add(&w, 3, 0x01, 12345, NULL));       /* normalised */
    cr_assert(crp_reply_add(&w, 2, 0x04, 5, NULL));
    len = crp_reply_finish(&w);
    cr_assert(eq(sz, len, 14 + 5 * 12 + CRP_SMTP_TEXT_LEN));

    cr_assert(eq(int, crp_reply_decode(buf, len, &rep), CRP_OK));
    cr_assert(eq(u16, rep.status, CRP_LOOKUP_OK));
    cr_assert(eq(u32, rep.request_id, 0xabcdef01));
    cr_assert(eq(u16, rep.count, 5));
    crp_reply_iter_init(&it, &rep);

    cr_assert(crp_reply_next(&it, &r));
    cr_assert(eq(u8, r.state, 0));
    cr_assert(eq(sz, r.text_len, 0));

    cr_assert(crp_reply_next(&it, &r));
    cr_assert(eq(u8, r.state, 2));
    cr_assert(eq(u8, r.reasons, 0x21));
    cr_assert(eq(u64, r.since_ms, 1700000000123ull));
    cr_assert(eq(sz, r.text_len, CRP_SMTP_TEXT_LEN));
    cr_assert(eq(int, memcmp(r.text, CRP_SMTP_TEXT, CRP_SMTP_TEXT_LEN), 0));

    cr_assert(crp_reply_next(&it, &r));
    cr_assert(eq(u8, r.state, 1));
    cr_assert(eq(u8, r.reasons, 0));
    cr_assert(eq(u64, r.since_ms, 0));
    cr_assert(eq(sz, r.text_len, 0));

    cr_assert(crp_reply_next(&it, &r));
    cr_assert(eq(u8, r.state, 3));
    cr_assert(eq(u8, r.reasons, 0));
    cr_assert(eq(u64, r.since_ms, 0));

    cr_assert(crp_reply_next(&it, &r));
    cr_assert(eq(u8, r.state, 2));
    cr_assert(eq(u8, r.reasons, 0x04));
    cr_assert(eq(sz, r.text_len, 0), "no text unless asked for");

    cr_assert(not(crp_reply_next(&it, &r)));
}

/* The reply example of docs/protocol.md section 2.5, byte for byte. */
Test(wire, reply_exact_bytes)
{
    static const unsigned char want[] = {
        0x43, 0x52, 0x52, 0x31, 0x01, 0x00, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01, 0x02, 0x00,
        0x02, 0x09, 0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x3a, 0x00, 0x35, 0x35,
        0x30, 0x20, 0x35, 0x2e, 0x37, 0x2e, 0x37, 0x31, 0x31, 0x20, 0x41, 0x63, 0x63, 0x65,
        0x73, 0x73, 0x20, 0x64, 0x65, 0x6e, 0x69, 0x65, 0x64, 0x2c, 0x20, 0x62, 0x61, 0x64,
        0x20, 0x69, 0x6e, 0x62, 0x6f, 0x75, 0x6e, 0x64, 0x20, 0x63, 0x6f, 0x6e, 0x6e, 0x65,
        0x63, 0x74, 0x6f, 0x72, 0x2e, 0x20, 0x41, 0x53, 0x28, 0x32, 0x32, 0x30, 0x34, 0x29,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    unsigned char buf[128];
    crp_reply_writer w;
    crp_reply rep;

    cr_assert(crp_reply_begin(&w, buf, sizeof(buf), 0, 0x01020304));
    cr_assert(crp_reply_add(&w, 2, 0x09, 1700000000000ull, CRP_SMTP_TEXT));
    cr_assert(crp_reply_add(&w, 0, 0, 0, CRP_SMTP_TEXT));
    cr_assert(eq(sz, crp_reply_finish(&w), sizeof(want)));
    cr_assert(eq(sz, sizeof(want), 96));
    cr_assert(eq(int, memcmp(buf, want, sizeof(want)), 0));
    cr_assert(eq(int, memcmp(want + 26, CRP_SMTP_TEXT, CRP_SMTP_TEXT_LEN), 0));
    cr_assert(eq(int, crp_reply_decode(want, sizeof(want), &rep), CRP_OK));
}

Test(wire, reply_error_statuses)
{
    unsigned char buf[64];
    crp_reply_writer w;
    crp_reply rep;
    crp_reply_iter it;
    crp_reply_result r;

    for (int status = 1; status <= 3; status++) {
        cr_assert(crp_reply_begin(&w, buf, sizeof(buf), status, 0));
        cr_assert(not(crp_reply_add(&w, 0, 0, 0, NULL)), "no results with status %d", status);
        cr_assert(eq(sz, crp_reply_finish(&w), 14));
        cr_assert(eq(int, crp_reply_decode(buf, 14, &rep), CRP_OK));
        cr_assert(eq(u16, rep.status, (uint16_t)status));
        cr_assert(eq(u16, rep.count, 0));
        crp_reply_iter_init(&it, &rep);
        cr_assert(not(crp_reply_next(&it, &r)));
    }
    cr_assert(not(crp_reply_begin(&w, buf, sizeof(buf), 4, 0)));
    cr_assert(not(crp_reply_begin(&w, buf, sizeof(buf), -1, 0)));
    cr_assert(not(crp_reply_begin(&w, buf, 13, 0, 0)));
    cr_assert(not(crp_reply_add(&w, 0, 0, 0, NULL)));
    cr_assert(eq(sz, crp_reply_finish(&w), 0));

    cr_assert(crp_reply_begin(&w, buf, sizeof(buf), 0, 0));
    cr_assert(eq(sz, crp_reply_finish(&w), 0), "an ok reply needs a result");
}

Test(wire, reply_writer_rejects_bad_results)
{
    unsigned char buf[64];
    crp_reply_writer w;

    cr_assert(crp_reply_begin(&w, buf, sizeof(buf), 0, 0));
    cr_assert(not(crp_reply_add(&w, 4, 0, 0, NULL)));
    cr_assert(not(crp_reply_add(&w, -1, 0, 0, NULL)));
    cr_assert(not(crp_reply_add(&w, 2, 0x40, 0, NULL)));
    cr_assert(not(crp_reply_add(&w, 2, 0, 0, CRP_SMTP_TEXT)), "14 + 12 + 58 > 64");
    cr_assert(crp_reply_add(&w, 2, 0, 0, NULL));
    cr_assert(eq(sz, crp_reply_finish(&w), 26));
}

Test(wire, reply_max_size_is_exact)
{
    size_t cap = crp_reply_max_size(CRP_LOOKUP_COUNT_MAX, true);
    unsigned char *buf = malloc(cap);
    crp_reply_writer w;
    crp_reply rep;

    cr_assert(eq(sz, crp_reply_max_size(1, false), 26));
    cr_assert(eq(sz, crp_reply_max_size(1, true), 26 + 58));
    cr_assert(not(eq(ptr, buf, NULL)));
    cr_assert(crp_reply_begin(&w, buf, cap, 0, 1));
    for (unsigned i = 0; i < CRP_LOOKUP_COUNT_MAX; i++)
        cr_assert(crp_reply_add(&w, 2, 1, i, CRP_SMTP_TEXT));
    cr_assert(not(crp_reply_add(&w, 0, 0, 0, NULL)), "4097th result");
    cr_assert(eq(sz, crp_reply_finish(&w), cap));
    cr_assert(eq(int, crp_reply_decode(buf, cap, &rep), CRP_OK));
    cr_assert(eq(u16, rep.count, 4096));

    cr_assert(crp_reply_begin(&w, buf, cap - 1, 0, 1));
    for (unsigned i = 0; i < CRP_LOOKUP_COUNT_MAX - 1; i++)
        cr_assert(crp_reply_add(&w, 2, 1, i, CRP_SMTP_TEXT));
    cr_assert(not(crp_reply_add(&w, 2, 1, 0, CRP_SMTP_TEXT)));
    free(buf);
}

static size_t sample_reply(unsigned char *buf, size_t cap)
{
    crp_reply_writer w;

    cr_assert(crp_reply_begin(&w, buf, cap, 0, 3));
    cr_assert(crp_reply_add(&w, 1, 0, 0, NULL));
    cr_assert(crp_reply_add(&w, 2, 2, 77, CRP_SMTP_TEXT));
    cr_assert(crp_reply_add(&w, 0, 0, 0, NULL));
    return crp_reply_finish(&w);
}

Test(wire, reply_decode_rejects)
{
    unsigned char good[256], buf[256];
    size_t len = sample_reply(good, sizeof(good));
    crp_reply rep;
    size_t r1 = 14 + 12; /* the restricted result */

#define REJECT(mutation)                                                                           \
    do {                                                                                           \
        memcpy(buf, good, len);                                                                    \
        mutation;                                                                                  \
        cr_assert(eq(int, crp_reply_decode(buf, len, &rep), CRP_PROTO), #mutation);                \
    } while (0)

    cr_assert(eq(int, crp_reply_decode(good, len, &rep), CRP_OK));
    REJECT(buf[3] = '2');
    REJECT(put16(buf + 4, 2));
    REJECT(put16(buf + 6, 4));
    REJECT(put16(buf + 6, 1)); /* status != 0 with results */
    REJECT(put16(buf + 12, 0));
    REJECT(put16(buf + 12, 4097));
    REJECT(put16(buf + 12, 2));       /* trailing result */
    REJECT(put16(buf + 12, 4));       /* missing result */
    REJECT(buf[14] = 4);              /* state */
    REJECT(put16(buf + 14 + 10, 1));  /* text on an active result */
    REJECT(put16(buf + r1 + 10, 59)); /* text longer than the reply */
    REJECT(put16(buf + r1 + 10, 57)); /* text shorter: the rest is garbage */
#undef REJECT

    memcpy(buf, good, len);
    buf[len] = 0;
    cr_assert(eq(int, crp_reply_decode(buf, len + 1, &rep), CRP_PROTO), "trailing byte");

    /* An error status with a body. */
    memcpy(buf, good, 14);
    put16(buf + 6, 2);
    put16(buf + 12, 0);
    cr_assert(eq(int, crp_reply_decode(buf, 14, &rep), CRP_OK));
    cr_assert(eq(int, crp_reply_decode(buf, 15, &rep), CRP_PROTO));
}

Test(wire, reply_every_prefix_at_a_guard_page)
{
    unsigned char good[256];
    size_t len = sample_reply(good, sizeof(good));
    crp_reply rep;
    guard g;

    guard_init(&g, len);
    for (size_t n = 0; n < len; n++)
        cr_assert(eq(int, crp_reply_decode(guard_put(&g, good, n), n, &rep), CRP_PROTO),
                  "prefix of %zu bytes", n);
    cr_assert(eq(int, crp_reply_decode(guard_put(&g, good, len), len, &rep), CRP_OK));
    guard_fini(&g);
}
