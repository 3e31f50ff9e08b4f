/* connrep error codes.
 *
 * Every fallible function in the engine returns a crp_err; CRP_OK is zero and
 * every error is negative, so `if (err < 0)` and `if (err != CRP_OK)` agree.
 * The list is one X-macro so names, messages and values cannot drift apart.
 */
#ifndef CRP_ERR_H
#define CRP_ERR_H

#define CRP_ERR_MAP(X)                                                                             \
    X(OK, 0, "success")                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(FULL, -3, "table full: no evictable entry in the probe window")                              \
    X(IDS_FULL, -4, "long-id overflow pool full")                                                  \
    X(TENANTS_FULL, -5, "tenant table full")                                                       \
    X(NOTFOUND, -6, "not found")                                                                   \
    X(IO, -7, "input/output error")                                                                \
    X(BADFILE, -8, "bad or incompatible file")                                                     \
    X(CONFIG, -9, "configuration error")                                                           \
    X(BUSY, -10, "entry is being written, retry")                                                  \
    X(CONFLICT, -11, "state conflict")                                                             \
    X(SYS, -12, "system call failed (see errno)")                                                  \
    X(TIMEOUT, -13, "timed out")                                                                   \
    X(PROTO, -14, "protocol error")

typedef enum crp_err {
#define CRP_ERR_ENUM(name, value, text) CRP_##name = (value),
    CRP_ERR_MAP(CRP_ERR_ENUM)
#undef CRP_ERR_ENUM
} crp_err;

/* Returns a static, human-readable message; never NULL. */
const char *crp_strerror(crp_err err);
/* Returns the symbolic name ("CRP_FULL"); never NULL. */
const char *crp_err_name(crp_err err);

#include <stddef.h>

/* Replaces errbuf's content with the formatted message, truncated to
 * errlen; errbuf NULL or errlen 0: nothing. For the "sentence in errbuf"
 * that fallible functions return beside their crp_err. */
void crp_errbuf_printf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
