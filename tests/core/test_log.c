/* Criterion suite for core/log.c: timestamps and UTF-8 validation. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "crp/log.h"

Test(log, rfc3339_formats_utc_milliseconds)
{
    char buf[CRP_RFC3339_LEN];
    cr_assert(eq(str, crp_rfc3339(0, buf), "1970-01-01T00:00:00.000Z"));
    cr_assert(eq(str, crp_rfc3339(1764806400123ull, buf), "2025-12-04T00:00:00.123Z"));
    cr_assert(eq(str, crp_rfc3339(951782400999ull, buf), "2000-02-29T00:00:00.999Z"));
}

static size_t seq(const char *s, size_t n)
{
    return crp_utf8_seq((const unsigned char *)s, n);
}

Test(log, utf8_accepts_well_formed_sequences)
{
    cr_assert(eq(sz, seq("a", 1), 1));
    cr_assert(eq(sz, seq("\0", 1), 1));
    cr_assert(eq(sz, seq("\xc3\xa9", 2), 2));         /* é */
    cr_assert(eq(sz, seq("\xe2\x82\xac", 3), 3));     /* € */
    cr_assert(eq(sz, seq("\xf0\x9f\x98\x80", 4), 4)); /* U+1F600 */
    cr_assert(eq(sz, seq("\xf4\x8f\xbf\xbf", 4), 4)); /* U+10FFFF */
}

Test(log, utf8_rejects_malformed_sequences)
{
    cr_assert(eq(sz, seq("\x80", 1), 0));             /* lone continuation */
    cr_assert(eq(sz, seq("\xc0\xaf", 2), 0));         /* overlong '/' */
    cr_assert(eq(sz, seq("\xe0\x80\xaf", 3), 0));     /* overlong */
    cr_assert(eq(sz, seq("\xed\xa0\x80", 3), 0));     /* surrogate U+D800 */
    cr_assert(eq(sz, seq("\xf4\x90\x80\x80", 4), 0)); /* past U+10FFFF */
    cr_assert(eq(sz, seq("\xf5\x80\x80\x80", 4), 0));
    cr_assert(eq(sz, seq("\xe2\x82", 2), 0)); /* truncated */
    cr_assert(eq(sz, seq("\xc3\x28", 2), 0)); /* bad continuation */
}
