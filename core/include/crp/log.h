/* Log lines, timestamps and UTF-8: the small text helpers every module
 * shares. No allocation, no locks. */
#ifndef CRP_LOG_H
#define CRP_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum crp_log_level {
    CRP_LOG_DEBUG = 0,
    CRP_LOG_INFO = 1,
    CRP_LOG_WARN = 2,
    CRP_LOG_ERROR = 3,
} crp_log_level;

/* One line per call on stderr: "2026-12-04T17:00:00.123Z level text", with
 * a single write(2) so lines of different threads never interleave; lines
 * longer than 2 KiB are cut. Any thread; blocks only as long as stderr. */
void crp_log(crp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CRP_RFC3339_LEN 32u

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into out
 * and returns out. Pure function. */
char *crp_rfc3339(uint64_t ms, char out[CRP_RFC3339_LEN]);

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), or 0 when
 * there is none: overlong forms, surrogates and code points over U+10FFFF
 * are rejected; NUL counts as a one-byte sequence. Reads at most 4 bytes
 * and never past n (n >= 1). Pure function. */
size_t crp_utf8_seq(const unsigned char *s, size_t n);

#endif
