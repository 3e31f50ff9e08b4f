#include "crp/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "crp/clock.h"

static const char *const level_names[] = {"debug", "info", "warn", "error"};

char *crp_rfc3339(uint64_t ms, char out[CRP_RFC3339_LEN])
{
    time_t secs = (time_t)(ms / 1000u);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, CRP_RFC3339_LEN, "1970-01-01T00:00:00.000Z");
        return out;
    }
    /* The moduli only tell the compiler the field widths. */
    snprintf(out, CRP_RFC3339_LEN, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
             (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
             (unsigned)tm.tm_sec % 100u, (unsigned)(ms % 1000u));
    return out;
}

void crp_log(crp_log_level level, const char *fmt, ...)
{
    char line[2048];
    char ts[CRP_RFC3339_LEN];
    if ((unsigned)level > CRP_LOG_ERROR)
        level = CRP_LOG_ERROR;
    int n =
        snprintf(line, sizeof line, "%s %s ", crp_rfc3339(crp_clock_ms(), ts), level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line: lines of different threads never interleave. */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

size_t crp_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    /* The second byte's range excludes overlong forms (E0, F0), surrogates
     * (ED) and code points past U+10FFFF (F4). */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    }
    return len;
}
