/* Configuration loader: libinih splits the file into sections and
 * "key = value" pairs, this file checks and stores every value.
 *
 * How the work is split with inih, and why.
 *
 * inih's handler is called with (section, key, value) only: this build has
 * no line numbers in the callback, never reports a section that has no keys,
 * and silently cuts section names at 49 bytes. Every error must name its
 * line, empty [identity] sections must be caught, and identity names may be
 * longer, so we feed inih through our own line reader (ini_parse_stream).
 * The reader counts lines (inih asks for exactly one line per call), notices
 * section headers itself (so it sees every section, empty or not, with its
 * line), and tidies each line before inih sees it: it removes a UTF-8 BOM
 * and the leading blanks. Without leading blanks no line can be taken for a
 * Python-style continuation of the previous value, whatever inih's build
 * options are; an indented "key = value" is simply a key.
 *
 * Inline comments: inih (default build) cuts a value at a ';' that follows
 * whitespace, which is exactly PROTOCOL.md's rule. The handler cuts again by
 * the same rule, which changes nothing after inih did it and still gives the
 * right value with an inih built without inline comments.
 *
 * Line length: inih reads a line into a buffer of ini_max_line bytes (200 by
 * default) and would cut a longer line into two "lines" silently. Debian's
 * build exposes ini_max_line as a process-wide variable; we raise it once
 * (the engine has no other inih user), declared weak so that a build without
 * the variable still links. Either way the reader sees the real buffer size
 * and reports a line that does not fit, instead of letting inih split it.
 *
 * Errors: the first one wins (by line). inih keeps parsing after an error and
 * returns the first failing line, which may be a syntax error it found
 * itself; the handler and the reader stop doing work once they failed.
 */
#include "crp/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

/* Present in Debian's libinih (built with INI_RUNTIME_OPTIONS), absent in
 * upstream builds; weak, so its address is NULL when absent. */
extern int ini_max_line __attribute__((weak));

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Values longer than this are shortened in error messages. */
#define ECHO_MAX 64
/* Room for a section name between the brackets: "identity " and a name. */
#define SECTION_NAME_MAX 96
/* 2^53: the largest count a double (scoring's arithmetic) holds exactly. */
#define COUNT_MAX (UINT64_C(1) << 53)

enum section {
    SEC_NONE, /* before the first section header */
    SEC_ENGINE,
    SEC_FEED,
    SEC_LOOKUP,
    SEC_EVENTS,
    SEC_ADMIN,
    SEC_SCORING,
    SEC_ALERTS,
    SEC_AUDIT,
    SEC_IDENTITY,
    SEC_UNKNOWN, /* after an unknown section: everything is ignored */
};

/* Section names in dump order; identity sections are written last. */
static const char *const section_names[] = {
    [SEC_ENGINE] = "engine", [SEC_FEED] = "feed",   [SEC_LOOKUP] = "lookup",
    [SEC_EVENTS] = "events", [SEC_ADMIN] = "admin", [SEC_SCORING] = "scoring",
    [SEC_ALERTS] = "alerts", [SEC_AUDIT] = "audit",
};

enum value_type {
    V_UINT,     /* decimal integer into uint64_t or unsigned (by field size) */
    V_NUMBER,   /* decimal number into double */
    V_DURATION, /* duration into uint64_t milliseconds */
    V_SIZE,     /* size into uint64_t bytes */
    V_BOOL,
    V_ACTION,
    V_STRING, /* into a char array */
    V_LIST,   /* comma-separated list into a char array, normalized */
};

enum value_check {
    C_ANY,       /* any text without control characters */
    C_NONEMPTY,  /* as C_ANY, and not empty */
    C_SHM,       /* "" or "/name" */
    C_ENDPOINT,  /* list items: transport://address */
    C_RECIPIENT, /* "TenantAdmins", or list items: e-mail addresses */
};

enum {
    F_POW2 = 1u << 0,     /* V_UINT: a power of two */
    F_NONZERO = 1u << 1,  /* V_DURATION: 0 (off) not allowed */
    F_MIN_EXCL = 1u << 2, /* V_NUMBER: strictly greater than dmin */
};

typedef struct key_def {
    enum section section;
    const char *name;
    enum value_type type;
    enum value_check check;
    unsigned flags;
    size_t offset; /* of the field in crp_config */
    size_t size;   /* of the field */
    uint64_t umin, umax;
    double dmin, dmax;
    const char *expect; /* completes "expected ..." in messages */
} key_def;

#define AT(member) .offset = offsetof(crp_config, member), .size = sizeof(((crp_config *)0)->member)

#define EXPECT_BOOL   "true or false (or on/off, yes/no, 1/0)"
#define EXPECT_BINDS  "a comma-separated list of endpoints (transport://address)"
#define EXPECT_RATIO  "a ratio greater than 0 and at most 1"
#define EXPECT_COUNT  "a positive integer (at most 9007199254740992)"
#define EXPECT_OFFDUR "a duration with a unit ms, s, m, h or d (e.g. 12h, 7d), or 0 for off"

/* Every key of every fixed section: the parser, the dump and the cross
 * checks all read this one table, so a new key cannot be parsed but not
 * dumped. Identity keys are handled separately (their section repeats). */
static const key_def keys[] = {
    {SEC_ENGINE, "max_connectors", V_UINT, C_ANY, F_POW2, AT(engine.max_connectors), 64,
     UINT64_C(1) << 30, 0, 0, "a power of two from 64 to 1073741824"},
    {SEC_ENGINE, "shm_name", V_STRING, C_SHM, 0, AT(engine.shm_name), 0, 0, 0, 0,
     "nothing, or '/' and a name without '/'"},
    {SEC_ENGINE, "state_dir", V_STRING, C_NONEMPTY, 0, AT(engine.state_dir), 0, 0, 0, 0,
     "a directory path"},
    {SEC_ENGINE, "shards", V_UINT, C_ANY, F_POW2, AT(engine.shards), 1, 64, 0, 0,
     "a power of two from 1 to 64"},
    {SEC_ENGINE, "snapshot_every", V_DURATION, C_ANY, 0, AT(engine.snapshot_every_ms), 0, 0, 0, 0,
     EXPECT_OFFDUR},

    {SEC_FEED, "bind", V_LIST, C_ENDPOINT, 0, AT(feed.bind), 0, 0, 0, 0, EXPECT_BINDS},
    {SEC_FEED, "connect", V_LIST, C_ENDPOINT, 0, AT(feed.connect), 0, 0, 0, 0, EXPECT_BINDS},
    {SEC_FEED, "max_frame_bytes", V_SIZE, C_ANY, 0, AT(feed.max_frame_bytes), 64,
     UINT64_C(256) << 20, 0, 0, "a size from 64B to 256MiB (units B, KiB, MiB, GiB)"},

    {SEC_LOOKUP, "bind", V_LIST, C_ENDPOINT, 0, AT(lookup.bind), 0, 0, 0, 0, EXPECT_BINDS},

    {SEC_EVENTS, "bind", V_LIST, C_ENDPOINT, 0, AT(events.bind), 0, 0, 0, 0, EXPECT_BINDS},

    {SEC_ADMIN, "bind", V_LIST, C_ENDPOINT, 0, AT(admin.bind), 0, 0, 0, 0, EXPECT_BINDS},
    {SEC_ADMIN, "secret_key_file", V_STRING, C_NONEMPTY, 0, AT(admin.secret_key_file), 0, 0, 0, 0,
     "a file path"},

    {SEC_SCORING, "half_life", V_DURATION, C_ANY, F_NONZERO, AT(scoring.half_life_ms), 0, 0, 0, 0,
     "a duration greater than 0 with a unit ms, s, m, h or d (e.g. 30m, 1h, 1.5h)"},
    {SEC_SCORING, "min_messages", V_NUMBER, C_ANY, 0, AT(scoring.min_messages), 0, 0, 0, HUGE_VAL,
     "a number >= 0"},
    {SEC_SCORING, "spam_ratio", V_NUMBER, C_ANY, F_MIN_EXCL, AT(scoring.spam_ratio), 0, 0, 0, 1,
     EXPECT_RATIO},
    {SEC_SCORING, "phish_ratio", V_NUMBER, C_ANY, F_MIN_EXCL, AT(scoring.phish_ratio), 0, 0, 0, 1,
     EXPECT_RATIO},
    {SEC_SCORING, "high_confidence_phish", V_NUMBER, C_ANY, F_MIN_EXCL,
     AT(scoring.high_confidence_phish), 0, 0, 0, HUGE_VAL, "a number greater than 0"},
    {SEC_SCORING, "malware", V_NUMBER, C_ANY, F_MIN_EXCL, AT(scoring.malware), 0, 0, 0, HUGE_VAL,
     "a number greater than 0"},
    {SEC_SCORING, "recipients_per_hour", V_UINT, C_ANY, 0, AT(scoring.recipients_per_hour), 1,
     COUNT_MAX, 0, 0, EXPECT_COUNT},
    {SEC_SCORING, "recipients_per_day", V_UINT, C_ANY, 0, AT(scoring.recipients_per_day), 1,
     COUNT_MAX, 0, 0, EXPECT_COUNT},
    {SEC_SCORING, "action", V_ACTION, C_ANY, 0, AT(scoring.action), 0, 0, 0, 0,
     "restrict, restrict_today or alert_only"},
    {SEC_SCORING, "auto_release_after", V_DURATION, C_ANY, 0, AT(scoring.auto_release_after_ms), 0,
     0, 0, 0, EXPECT_OFFDUR},
    {SEC_SCORING, "probation", V_DURATION, C_ANY, 0, AT(scoring.probation_ms), 0, 0, 0, 0,
     EXPECT_OFFDUR},
    {SEC_SCORING, "probation_factor", V_NUMBER, C_ANY, F_MIN_EXCL, AT(scoring.probation_factor), 0,
     0, 0, 1, "a factor greater than 0 and at most 1"},

    {SEC_ALERTS, "enabled", V_BOOL, C_ANY, 0, AT(alerts.enabled), 0, 0, 0, 0, EXPECT_BOOL},
    {SEC_ALERTS, "email", V_BOOL, C_ANY, 0, AT(alerts.email), 0, 0, 0, 0, EXPECT_BOOL},
    {SEC_ALERTS, "recipients", V_LIST, C_RECIPIENT, 0, AT(alerts.recipients), 0, 0, 0, 0,
     "TenantAdmins or a comma-separated list of e-mail addresses"},
    {SEC_ALERTS, "daily_limit", V_UINT, C_ANY, 0, AT(alerts.daily_limit), 1, 3, 0, 0,
     "an integer from 1 to 3"},
    {SEC_ALERTS, "notify_command", V_STRING, C_ANY, 0, AT(alerts.notify_command), 0, 0, 0, 0,
     "a shell command"},

    {SEC_AUDIT, "enabled", V_BOOL, C_ANY, 0, AT(audit.enabled), 0, 0, 0, 0, EXPECT_BOOL},
};

/* Keys of an [identity NAME] section, indexing load_ctx.id_line. */
enum id_key { ID_PUBLIC_KEY, ID_ROLE, ID_TENANT, ID_EMAIL, ID_NKEYS };
static const char *const id_key_names[ID_NKEYS] = {"public_key", "role", "tenant", "email"};

static const char *const role_names[] = {
    [CRP_ROLE_ORGANIZATION_MANAGEMENT] = "OrganizationManagement",
    [CRP_ROLE_SECURITY_ADMINISTRATOR] = "SecurityAdministrator",
    [CRP_ROLE_GLOBAL_READER] = "GlobalReader",
    [CRP_ROLE_SECURITY_READER] = "SecurityReader",
    [CRP_ROLE_VIEW_ONLY_ORGANIZATION_MANAGEMENT] = "ViewOnlyOrganizationManagement",
};

static const char *const action_names[] = {
    [CRP_ACTION_RESTRICT] = "restrict",
    [CRP_ACTION_RESTRICT_TODAY] = "restrict_today",
    [CRP_ACTION_ALERT_ONLY] = "alert_only",
};

/* The Z85 alphabet of ZeroMQ RFC 32, in digit order. */
static const char z85_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/* State of one crp_config_load call; lives on the caller's stack. */
typedef struct load_ctx {
    crp_config *cfg;
    const char *path;
    FILE *f;
    char *errbuf;
    size_t errlen;
    int lineno;     /* line the reader returned last, from 1 */
    bool failed;    /* an error message has been written */
    int err_line;   /* its line (0: not tied to a line) */
    crp_err err;    /* CRP_CONFIG or CRP_NOMEM once failed */
    int read_errno; /* a read error, reported after parsing */

    enum section sec;
    int sec_line;
    char sec_name[SECTION_NAME_MAX + 1];
    int key_line[ARRAY_LEN(keys)]; /* where each key was set; 0 = default */
    int id_line[ID_NKEYS];         /* the same for the current identity */

    char value[CRP_CONFIG_LINE_MAX + 1]; /* the handler's copy of a value */
} load_ctx;

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

static void ini_setup(void)
{
    /* One more than the longest line, for the newline; fgets adds the NUL
     * within the same count. A CR before the newline is handled by the
     * reader. */
    if (&ini_max_line != NULL)
        ini_max_line = CRP_CONFIG_LINE_MAX + 1;
}

/* ------------------------------------------------------------------------ */
/* Error messages */

__attribute__((format(printf, 3, 4))) static void fail_at(load_ctx *c, int line, const char *fmt,
                                                          ...)
{
    va_list ap;
    int n;

    if (c->failed)
        return;
    c->failed = true;
    c->err_line = line;
    c->err = CRP_CONFIG;
    if (c->errbuf == NULL || c->errlen == 0)
        return;
    if (line > 0)
        n = snprintf(c->errbuf, c->errlen, "%s:%d: ", c->path, line);
    else
        n = snprintf(c->errbuf, c->errlen, "%s: ", c->path);
    if (n < 0 || (size_t)n >= c->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(c->errbuf + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* "[section] key: expected <what>, got '<value>'<detail>" at the current
 * line. Always returns false, so callers can `return fail_value(...)`. */
static bool fail_value(load_ctx *c, const char *key, const char *what, const char *value,
                       const char *detail)
{
    size_t len = strlen(value);
    int shown = len > ECHO_MAX ? ECHO_MAX - 3 : (int)len;

    fail_at(c, c->lineno, "[%s] %s: expected %s, got '%.*s%s'%s", c->sec_name, key, what, shown,
            value, len > ECHO_MAX ? "..." : "", detail ? detail : "");
    return false;
}

static bool fail_too_long(load_ctx *c, const char *key, const char *value, size_t limit)
{
    char detail[64];
    char what[64];

    snprintf(detail, sizeof(detail), " (%zu bytes)", strlen(value));
    snprintf(what, sizeof(what), "at most %zu bytes", limit);
    return fail_value(c, key, what, value, detail);
}

/* ------------------------------------------------------------------------ */
/* Scalar parsers: they allocate nothing and never touch errno's meaning. */

/* Accepts one or more decimal digits and nothing else. */
static bool parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (*s != '\0')
        return false;
    *out = v;
    return true;
}

/* Accepts digits with an optional '.' and more digits: no sign, no
 * exponent, no "inf", so what parses is what a person reads. strtod does the
 * correctly rounded conversion; it assumes the C locale's '.', which the
 * engine never changes. */
static bool parse_number(const char *s, double *out)
{
    const char *p = s;
    char *end;
    double v;

    if (!isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p != '\0')
        return false;
    v = strtod(s, &end);
    if (end != p || !isfinite(v))
        return false;
    *out = v;
    return true;
}

crp_err crp_config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t whole = 0, frac = 0, scale = 1, unit = 0, v;
    const char *p = s;
    const char *frac_start = NULL, *frac_end = NULL;

    if (s == NULL || !isdigit((unsigned char)*p))
        return CRP_INVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10)
            return CRP_INVAL;
        whole = whole * 10 + d;
    }
    if (*p == '.') {
        frac_start = ++p;
        while (isdigit((unsigned char)*p))
            p++;
        frac_end = p;
        if (frac_end == frac_start)
            return CRP_INVAL;
        /* Trailing zeros carry no value; dropping them keeps "1.50000000000h"
         * within the nine significant fraction digits handled below. */
        while (frac_end > frac_start && frac_end[-1] == '0')
            frac_end--;
        if (frac_end - frac_start > 9)
            return CRP_INVAL;
        for (const char *q = frac_start; q < frac_end; q++) {
            frac = frac * 10 + (uint64_t)(*q - '0');
            scale *= 10;
        }
    }
    if (*p == '\0') {
        /* A bare number is only allowed as the "off" value. */
        if (whole != 0 || frac != 0)
            return CRP_INVAL;
        *ms = 0;
        return CRP_OK;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].name) == 0) {
            unit = units[i].ms;
            break;
        }
    }
    if (unit == 0)
        return CRP_INVAL;
    /* frac < 10^9 and unit <= 8.64e7, so frac * unit fits in 64 bits. */
    if (frac * unit % scale != 0)
        return CRP_INVAL; /* not a whole number of milliseconds */
    if (whole > UINT64_MAX / unit)
        return CRP_INVAL;
    v = whole * unit;
    if (v > UINT64_MAX - frac * unit / scale)
        return CRP_INVAL;
    *ms = v + frac * unit / scale;
    return CRP_OK;
}

crp_err crp_config_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *name;
        unsigned shift;
    } units[] = {
        {"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30},
    };
    uint64_t v = 0;
    const char *p = s;

    if (s == NULL || !isdigit((unsigned char)*p))
        return CRP_INVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CRP_INVAL;
        v = v * 10 + d;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].name) == 0) {
            if (v > (UINT64_MAX >> units[i].shift))
                return CRP_INVAL;
            *bytes = v << units[i].shift;
            return CRP_OK;
        }
    }
    return CRP_INVAL;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "on", "yes", "1"};
    static const char *const no[] = {"false", "off", "no", "0"};

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Looks `s` up in a table of names; returns its index or -1. */
static int name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (names[i] != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Text checks */

static bool has_control(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return true;
    }
    return false;
}

/* An endpoint as ZeroMQ spells it: a lower-case transport, "://", and an
 * address without blanks. The transport itself is ZeroMQ's to judge. */
static bool is_endpoint(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || !islower((unsigned char)s[0]))
        return false;
    while (i < n && (islower((unsigned char)s[i]) || isdigit((unsigned char)s[i])))
        i++;
    if (n - i < 4 || memcmp(s + i, "://", 3) != 0)
        return false;
    for (i += 3; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

bool crp_config_is_email(const char *s, size_t n)
{
    const char *at = NULL;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f || ch == ',' || ch == ';')
            return false;
        if (ch == '@')
            at = s + i;
    }
    return at != NULL && at > s && at < s + n - 1;
}

static bool is_space(char ch)
{
    return isspace((unsigned char)ch) != 0;
}

/* Splits `in` at commas, trims each item, checks it and writes "a,b,c" into
 * out[size]. Returns 0, 1 for a bad or empty item, 2 when it does not fit. */
static int normalize_list(const char *in, enum value_check check, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    if (*in == '\0')
        return 0;
    for (const char *p = in;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;

        while (b < e && is_space(*b))
            b++;
        while (e > b && is_space(e[-1]))
            e--;
        if (check == C_ENDPOINT ? !is_endpoint(b, (size_t)(e - b))
                                : !crp_config_is_email(b, (size_t)(e - b)))
            return 1;
        if (used + (used > 0) + (size_t)(e - b) >= size)
            return 2;
        if (used > 0)
            out[used++] = ',';
        memcpy(out + used, b, (size_t)(e - b));
        used += (size_t)(e - b);
        out[used] = '\0';
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

static int z85_digit(char ch)
{
    const char *p = ch ? strchr(z85_alphabet, ch) : NULL;
    return p ? (int)(p - z85_alphabet) : -1;
}

/* Decodes a 40-character Z85 key. Returns 0, or 1 + the index of the first
 * character outside the alphabet, or -1 when a 5-character group exceeds
 * 32 bits (text no Z85 encoder produces). */
static int z85_decode_key(const char *s, uint8_t out[CRP_KEY_BYTES])
{
    for (size_t g = 0; g < CRP_Z85_KEY_LEN / 5; g++) {
        uint64_t v = 0;
        for (size_t i = 0; i < 5; i++) {
            int d = z85_digit(s[g * 5 + i]);
            if (d < 0)
                return (int)(g * 5 + i) + 1;
            v = v * 85 + (uint64_t)d;
        }
        if (v > UINT32_MAX)
            return -1;
        out[g * 4 + 0] = (uint8_t)(v >> 24);
        out[g * 4 + 1] = (uint8_t)(v >> 16);
        out[g * 4 + 2] = (uint8_t)(v >> 8);
        out[g * 4 + 3] = (uint8_t)v;
    }
    return 0;
}

/* Cuts an inline comment (';' after whitespace) and the blanks before it. */
static void strip_inline_comment(char *s)
{
    size_t n;

    for (size_t i = 1; s[i] != '\0'; i++) {
        if (s[i] == ';' && is_space(s[i - 1])) {
            s[i] = '\0';
            break;
        }
    }
    n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        s[--n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Fixed sections */

static bool set_fixed_key(load_ctx *c, const key_def *kd, const char *v)
{
    void *field = (char *)c->cfg + kd->offset;

    switch (kd->type) {
    case V_UINT: {
        uint64_t x;
        if (!parse_uint(v, &x) || x < kd->umin || x > kd->umax ||
            ((kd->flags & F_POW2) && (x & (x - 1)) != 0))
            return fail_value(c, kd->name, kd->expect, v, NULL);
        if (kd->size == sizeof(unsigned))
            *(unsigned *)field = (unsigned)x;
        else
            *(uint64_t *)field = x;
        return true;
    }
    case V_NUMBER: {
        double x;
        if (!parse_number(v, &x) || x < kd->dmin || x > kd->dmax ||
            ((kd->flags & F_MIN_EXCL) && x == kd->dmin))
            return fail_value(c, kd->name, kd->expect, v, NULL);
        *(double *)field = x;
        return true;
    }
    case V_DURATION: {
        uint64_t x;
        if (crp_config_parse_duration(v, &x) != CRP_OK || ((kd->flags & F_NONZERO) && x == 0))
            return fail_value(c, kd->name, kd->expect, v, NULL);
        *(uint64_t *)field = x;
        return true;
    }
    case V_SIZE: {
        uint64_t x;
        if (crp_config_parse_size(v, &x) != CRP_OK || x < kd->umin || x > kd->umax)
            return fail_value(c, kd->name, kd->expect, v, NULL);
        *(uint64_t *)field = x;
        return true;
    }
    case V_BOOL:
        if (!parse_bool(v, (bool *)field))
            return fail_value(c, kd->name, kd->expect, v, NULL);
        return true;
    case V_ACTION: {
        int i = name_index(action_names, ARRAY_LEN(action_names), v);
        if (i < 0)
            return fail_value(c, kd->name, kd->expect, v, NULL);
        *(crp_action *)field = (crp_action)i;
        return true;
    }
    case V_STRING: {
        size_t n = strlen(v);
        bool ok = !has_control(v);
        if (n >= kd->size)
            return fail_too_long(c, kd->name, v, kd->size - 1);
        if (kd->check == C_NONEMPTY)
            ok = ok && n > 0;
        if (kd->check == C_SHM)
            ok = ok && (n == 0 || (v[0] == '/' && n > 1 && strchr(v + 1, '/') == NULL));
        if (!ok)
            return fail_value(c, kd->name, kd->expect, v, NULL);
        memcpy(field, v, n + 1);
        return true;
    }
    case V_LIST: {
        char out[CRP_CONFIG_LIST_MAX];
        int r;
        if (kd->check == C_RECIPIENT && strcmp(v, "TenantAdmins") == 0) {
            memcpy(field, v, sizeof("TenantAdmins"));
            return true;
        }
        if (kd->check == C_RECIPIENT && *v == '\0')
            return fail_value(c, kd->name, kd->expect, v, NULL);
        r = normalize_list(v, kd->check, out, kd->size < sizeof(out) ? kd->size : sizeof(out));
        if (r == 2)
            return fail_too_long(c, kd->name, v, kd->size - 1);
        if (r != 0)
            return fail_value(c, kd->name, kd->expect, v, NULL);
        memcpy(field, out, strlen(out) + 1);
        return true;
    }
    }
    return fail_value(c, kd->name, "a known key type", v, NULL); /* not reached */
}

static int find_key(enum section sec, const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
        if (keys[i].section == sec && strcmp(keys[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Identity sections */

static bool is_identity_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= CRP_CONFIG_NAME_MAX)
        return false;
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && strchr("._-@+", *s) == NULL)
            return false;
    }
    return true;
}

static crp_identity *current_identity(load_ctx *c)
{
    return &c->cfg->identities[c->cfg->n_identities - 1];
}

static bool identity_begin(load_ctx *c, const char *name)
{
    crp_config *cfg = c->cfg;
    crp_identity *id;

    if (!is_identity_name(name)) {
        fail_at(c, c->lineno,
                "[%s] expected an identity name of 1..%u characters from A-Z a-z 0-9 . _ - @ +, "
                "got '%s'",
                c->sec_name, CRP_CONFIG_NAME_MAX - 1, name);
        return false;
    }
    for (size_t i = 0; i < cfg->n_identities; i++) {
        if (strcmp(cfg->identities[i].name, name) == 0) {
            fail_at(c, c->lineno, "[%s] duplicate identity: '%s' is already defined", c->sec_name,
                    name);
            return false;
        }
    }
    if (cfg->n_identities == cfg->identities_cap) {
        size_t cap = cfg->identities_cap ? cfg->identities_cap * 2 : 8;
        crp_identity *grown = realloc(cfg->identities, cap * sizeof(*grown));
        if (grown == NULL) {
            fail_at(c, c->lineno, "[%s] out of memory", c->sec_name);
            c->err = CRP_NOMEM;
            return false;
        }
        cfg->identities = grown;
        cfg->identities_cap = cap;
    }
    id = &cfg->identities[cfg->n_identities++];
    memset(id, 0, sizeof(*id));
    memcpy(id->name, name, strlen(name) + 1);
    id->any_tenant = true;
    memset(c->id_line, 0, sizeof(c->id_line));
    return true;
}

/* An identity without a key or a role could never be used correctly, and
 * a role default would grant rights nobody wrote down. */
static void identity_end(load_ctx *c)
{
    for (int k = ID_PUBLIC_KEY; k <= ID_ROLE; k++) {
        if (c->id_line[k] == 0) {
            fail_at(c, c->sec_line, "[%s] %s: required key missing", c->sec_name, id_key_names[k]);
            return;
        }
    }
}

static bool set_identity_key(load_ctx *c, enum id_key k, const char *v)
{
    crp_identity *id = current_identity(c);
    crp_config *cfg = c->cfg;
    size_t n = strlen(v);
    const char *key = id_key_names[k];

    switch (k) {
    case ID_PUBLIC_KEY: {
        static const char what[] = "40 Z85 characters (a CURVE public key)";
        uint8_t bin[CRP_KEY_BYTES];
        char detail[64];
        int r;
        if (n != CRP_Z85_KEY_LEN) {
            snprintf(detail, sizeof(detail), " (%zu characters)", n);
            return fail_value(c, key, what, v, detail);
        }
        r = z85_decode_key(v, bin);
        if (r > 0) {
            snprintf(detail, sizeof(detail), " ('%c' at position %d is not a Z85 character)",
                     isprint((unsigned char)v[r - 1]) ? v[r - 1] : '?', r);
            return fail_value(c, key, what, v, detail);
        }
        if (r < 0)
            return fail_value(c, key, what, v, " (a 5-character group exceeds 32 bits)");
        for (size_t i = 0; i + 1 < cfg->n_identities; i++) {
            if (memcmp(cfg->identities[i].public_key_bin, bin, sizeof(bin)) == 0) {
                fail_at(c, c->lineno, "[%s] %s: duplicate public key: identity '%s' has it too",
                        c->sec_name, key, cfg->identities[i].name);
                return false;
            }
        }
        memcpy(id->public_key, v, n + 1);
        memcpy(id->public_key_bin, bin, sizeof(bin));
        return true;
    }
    case ID_ROLE: {
        int i = name_index(role_names, ARRAY_LEN(role_names), v);
        if (i < 0)
            return fail_value(c, key,
                              "OrganizationManagement, SecurityAdministrator, GlobalReader, "
                              "SecurityReader or ViewOnlyOrganizationManagement",
                              v, NULL);
        id->role = (crp_role)i;
        return true;
    }
    case ID_TENANT:
        if (strcmp(v, "*") == 0) {
            id->any_tenant = true;
            id->tenant[0] = '\0';
            return true;
        }
        if (n >= CRP_CONFIG_TENANT_MAX || has_control(v))
            return fail_value(c, key, "* or a tenant name of at most 64 bytes", v, NULL);
        id->any_tenant = false;
        memcpy(id->tenant, v, n + 1);
        return true;
    case ID_EMAIL:
        if (n >= CRP_CONFIG_EMAIL_MAX)
            return fail_too_long(c, key, v, CRP_CONFIG_EMAIL_MAX - 1);
        if (n > 0 && !crp_config_is_email(v, n))
            return fail_value(c, key, "an e-mail address (name@domain) or nothing", v, NULL);
        memcpy(id->email, v, n + 1);
        return true;
    case ID_NKEYS:
        break;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Sections, as the reader meets their headers */

static void section_end(load_ctx *c)
{
    if (!c->failed && c->sec == SEC_IDENTITY)
        identity_end(c);
}

static void section_begin(load_ctx *c, const char *name, size_t len)
{
    static const char identity[] = "identity";

    section_end(c);
    c->sec = SEC_UNKNOWN;
    c->sec_line = c->lineno;
    if (len > SECTION_NAME_MAX) {
        fail_at(c, c->lineno, "unknown section [%.*s...]", 40, name);
        return;
    }
    memcpy(c->sec_name, name, len);
    c->sec_name[len] = '\0';
    if (c->failed)
        return;
    for (size_t s = 0; s < ARRAY_LEN(section_names); s++) {
        if (section_names[s] != NULL && strcmp(section_names[s], c->sec_name) == 0) {
            c->sec = (enum section)s;
            return;
        }
    }
    if (strncmp(c->sec_name, identity, sizeof(identity) - 1) == 0 &&
        (c->sec_name[sizeof(identity) - 1] == ' ' || c->sec_name[sizeof(identity) - 1] == '\0')) {
        if (c->sec_name[sizeof(identity) - 1] == '\0') {
            fail_at(c, c->lineno, "[identity] needs a name: [identity NAME]");
            return;
        }
        if (identity_begin(c, c->sec_name + sizeof(identity)))
            c->sec = SEC_IDENTITY;
        return;
    }
    fail_at(c, c->lineno, "unknown section [%s]", c->sec_name);
}

/* ------------------------------------------------------------------------ */
/* inih callbacks */

/* inih's line reader. Returns one physical line per call, without its line
 * break and tidied (see the top of the file), or NULL at the end of the file
 * or on a read error. Reading byte by byte keeps our line count equal to
 * inih's whatever the line holds: an over-long line or a NUL byte becomes an
 * error and an empty line, never a second line or a short one. */
static char *read_line(char *str, int num, void *stream)
{
    load_ctx *c = stream;
    size_t len = 0, skip = 0, cap = num > 0 ? (size_t)num - 1 : 0;
    bool any = false, nul = false, too_long = false, cr = false;
    int ch;

    errno = 0;
    while ((ch = getc(c->f)) != EOF) {
        any = true;
        if (ch == '\n')
            break;
        if (cr)
            too_long = true; /* a CR that was not the end of the line */
        cr = false;
        if (ch == '\0')
            nul = true;
        if (len < cap)
            str[len++] = (char)ch;
        else if (ch == '\r')
            cr = true; /* the line may still end here: CR LF */
        else
            too_long = true;
    }
    if (ch == EOF && ferror(c->f)) {
        c->read_errno = errno ? errno : EIO;
        return NULL;
    }
    if (!any)
        return NULL;
    str[len] = '\0';
    c->lineno++;
    if (too_long || nul) {
        char *eq = strchr(str, '=');
        int keylen = eq ? (int)(eq - str) : 0;
        while (keylen > 0 && is_space(str[keylen - 1]))
            keylen--;
        if (nul)
            fail_at(c, c->lineno, "NUL byte in line");
        else if (eq != NULL && keylen > 0 && keylen < 64 && c->sec != SEC_NONE)
            fail_at(c, c->lineno, "[%s] %.*s: line longer than %zu bytes", c->sec_name, keylen, str,
                    cap);
        else
            fail_at(c, c->lineno, "line longer than %zu bytes", cap);
        str[0] = '\0';
        return str;
    }
    if (c->lineno == 1 && len >= 3 && memcmp(str, "\xEF\xBB\xBF", 3) == 0)
        skip = 3;
    while (skip < len && is_space(str[skip]))
        skip++;
    memmove(str, str + skip, len - skip + 1);

    if (str[0] == '[') {
        /* The same rule as inih: the name ends at ']' or at an inline
         * comment, which makes the header malformed (inih reports it). */
        char *p = str + 1;
        bool was_space = false;
        while (*p && *p != ']' && !(was_space && *p == ';')) {
            was_space = is_space(*p);
            p++;
        }
        if (*p == ']') {
            const char *rest = p + 1;
            section_begin(c, str + 1, (size_t)(p - (str + 1)));
            while (is_space(*rest))
                rest++;
            if (*rest != '\0' && !(*rest == ';' && is_space(rest[-1])))
                fail_at(c, c->lineno, "unexpected text after [%s]", c->sec_name);
        }
    }
    return str;
}

static int handle_pair(void *user, const char *section, const char *name, const char *value)
{
    load_ctx *c = user;
    int k;

    /* The reader tracks the section itself (inih's copy may be cut short). */
    (void)section;
    if (c->failed || c->sec == SEC_UNKNOWN)
        return 1; /* the first error is already recorded */
    if (c->sec == SEC_NONE) {
        fail_at(c, c->lineno, "key '%s' outside any section", name);
        return 0;
    }
    if (strlen(value) >= sizeof(c->value)) {
        fail_at(c, c->lineno, "line longer than %u bytes", CRP_CONFIG_LINE_MAX);
        return 0;
    }
    memcpy(c->value, value, strlen(value) + 1);
    strip_inline_comment(c->value);

    if (c->sec == SEC_IDENTITY) {
        k = name_index(id_key_names, ID_NKEYS, name);
        if (k < 0) {
            fail_at(c, c->lineno, "[%s] unknown key '%s'", c->sec_name, name);
            return 0;
        }
        if (c->id_line[k] != 0) {
            fail_at(c, c->lineno, "[%s] %s: set twice (first on line %d)", c->sec_name, name,
                    c->id_line[k]);
            return 0;
        }
        c->id_line[k] = c->lineno;
        return set_identity_key(c, (enum id_key)k, c->value) ? 1 : 0;
    }

    k = find_key(c->sec, name);
    if (k < 0) {
        fail_at(c, c->lineno, "[%s] unknown key '%s'", c->sec_name, name);
        return 0;
    }
    if (c->key_line[k] != 0) {
        fail_at(c, c->lineno, "[%s] %s: set twice (first on line %d)", c->sec_name, name,
                c->key_line[k]);
        return 0;
    }
    c->key_line[k] = c->lineno;
    return set_fixed_key(c, &keys[k], c->value) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Checks across keys, after the whole file is read */

static int later_line(const load_ctx *c, enum section s1, const char *k1, enum section s2,
                      const char *k2)
{
    int a = c->key_line[find_key(s1, k1)];
    int b = c->key_line[find_key(s2, k2)];
    return a > b ? a : b;
}

static void cross_check(load_ctx *c)
{
    const crp_config *cfg = c->cfg;

    /* Every alert is an audited action: alerts without the audit log would
     * leave no trace of why an operator was woken. */
    if (cfg->alerts.enabled && !cfg->audit.enabled) {
        fail_at(c, later_line(c, SEC_ALERTS, "enabled", SEC_AUDIT, "enabled"),
                "alerts need the audit log: [alerts] enabled = true requires [audit] enabled = "
                "true");
        return;
    }
    /* The day window contains the hour window: with a daily limit below the
     * hourly one the hourly limit could never trip, which is a typo rather
     * than a policy. Equal limits are fine (one effective limit). */
    if (cfg->scoring.recipients_per_day < cfg->scoring.recipients_per_hour) {
        fail_at(
            c, later_line(c, SEC_SCORING, "recipients_per_day", SEC_SCORING, "recipients_per_hour"),
            "[scoring] recipients_per_day: expected at least recipients_per_hour (%" PRIu64
            "), got '%" PRIu64 "'",
            cfg->scoring.recipients_per_hour, cfg->scoring.recipients_per_day);
    }
}

/* ------------------------------------------------------------------------ */
/* Public functions */

void crp_config_defaults(crp_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->engine.max_connectors = 1048576;
    strcpy(cfg->engine.shm_name, "/connrep");
    strcpy(cfg->engine.state_dir, "./var/lib/connrep");
    cfg->engine.snapshot_every_ms = 5u * 60u * 1000u;
    cfg->engine.shards = 2;

    strcpy(cfg->feed.bind, "ipc://./var/run/connrep/feed");
    cfg->feed.max_frame_bytes = UINT64_C(4) << 20;
    strcpy(cfg->lookup.bind, "ipc://./var/run/connrep/lookup");
    strcpy(cfg->events.bind, "ipc://./var/run/connrep/events");
    strcpy(cfg->admin.bind, "ipc://./var/run/connrep/admin");
    strcpy(cfg->admin.secret_key_file, "./var/lib/connrep/admin.key");

    cfg->scoring.half_life_ms = UINT64_C(3600000);
    cfg->scoring.min_messages = 20;
    cfg->scoring.spam_ratio = 0.5;
    cfg->scoring.phish_ratio = 0.1;
    cfg->scoring.high_confidence_phish = 3;
    cfg->scoring.malware = 3;
    cfg->scoring.recipients_per_hour = 10000;
    cfg->scoring.recipients_per_day = 100000;
    cfg->scoring.action = CRP_ACTION_RESTRICT;
    cfg->scoring.auto_release_after_ms = 0;
    cfg->scoring.probation_ms = UINT64_C(24) * 3600000;
    cfg->scoring.probation_factor = 0.5;

    cfg->alerts.enabled = true;
    cfg->alerts.email = true;
    strcpy(cfg->alerts.recipients, "TenantAdmins");
    cfg->alerts.daily_limit = 3;
    cfg->audit.enabled = true;
}

void crp_config_fini(crp_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->identities);
    cfg->identities = NULL;
    cfg->n_identities = 0;
    cfg->identities_cap = 0;
}

crp_err crp_config_load(crp_config *cfg, const char *path, char *errbuf, size_t errlen)
{
    load_ctx *c;
    load_ctx ctx;
    char why[128];
    int ret;

    crp_config_defaults(cfg);
    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (path == NULL)
        return CRP_OK;
    pthread_once(&ini_once, ini_setup);

    c = &ctx;
    memset(c, 0, offsetof(load_ctx, value));
    c->cfg = cfg;
    c->path = path;
    c->errbuf = errbuf;
    c->errlen = errlen;
    c->sec = SEC_NONE;
    c->err = CRP_OK;

    c->f = fopen(path, "r");
    if (c->f == NULL) {
        if (strerror_r(errno, why, sizeof(why)) != 0)
            snprintf(why, sizeof(why), "error %d", errno);
        fail_at(c, 0, "cannot open: %s", why);
        return CRP_CONFIG;
    }
    ret = ini_parse_stream(read_line, c, handle_pair, c);
    section_end(c);
    fclose(c->f);

    /* inih returns the first line that failed, ours or its own syntax
     * error; an earlier line than ours can only be its own. */
    if (ret > 0 && (!c->failed || ret < c->err_line)) {
        c->failed = false;
        fail_at(c, ret, "syntax error: expected [section] or key = value");
    } else if (ret < 0 && !c->failed) {
        fail_at(c, 0, "cannot parse: out of memory");
        c->err = CRP_NOMEM;
    }
    if (c->read_errno != 0 && !c->failed) {
        if (strerror_r(c->read_errno, why, sizeof(why)) != 0)
            snprintf(why, sizeof(why), "error %d", c->read_errno);
        fail_at(c, 0, "cannot read: %s", why);
    }
    if (!c->failed)
        cross_check(c);
    if (c->failed) {
        crp_config_fini(cfg);
        crp_config_defaults(cfg);
        return c->err;
    }
    return CRP_OK;
}

const crp_identity *crp_config_identity_by_key(const crp_config *cfg, const uint8_t *key)
{
    for (size_t i = 0; i < cfg->n_identities; i++) {
        if (memcmp(cfg->identities[i].public_key_bin, key, CRP_KEY_BYTES) == 0)
            return &cfg->identities[i];
    }
    return NULL;
}

const char *crp_role_name(crp_role role)
{
    if ((unsigned)role < ARRAY_LEN(role_names))
        return role_names[role];
    return "?";
}

const char *crp_action_name(crp_action action)
{
    if ((unsigned)action < ARRAY_LEN(action_names))
        return action_names[action];
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Dump */

/* Whether a string survives a trip through the file: no line breaks or
 * other control characters, no blanks at either end (inih trims them), and
 * no ';' after whitespace (an inline comment). */
static bool dumpable(const char *s)
{
    size_t n = strlen(s);

    if (has_control(s) || (n > 0 && (is_space(s[0]) || is_space(s[n - 1]))))
        return false;
    for (size_t i = 1; i < n; i++) {
        if (s[i] == ';' && is_space(s[i - 1]))
            return false;
    }
    return true;
}

/* The shortest fixed-point text that reads back as exactly `v`, so the
 * dump shows "0.1" rather than "0.10000000000000001" and still round-trips.
 * %f rather than %g: the file syntax has no exponent. */
static bool format_number(double v, char *buf, size_t size)
{
    if (!isfinite(v) || v < 0)
        return false;
    for (int prec = 0; prec <= 340; prec++) {
        int n = snprintf(buf, size, "%.*f", prec, v);
        if (n < 0 || (size_t)n >= size)
            return false;
        if (strtod(buf, NULL) == v)
            return true;
    }
    return false;
}

static void format_duration(uint64_t ms, char *buf, size_t size)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

    if (ms == 0) {
        snprintf(buf, size, "0");
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", ms / units[i].ms, units[i].name);
            return;
        }
    }
}

static void format_size(uint64_t bytes, char *buf, size_t size)
{
    static const struct {
        const char *name;
        unsigned shift;
    } units[] = {{"GiB", 30}, {"MiB", 20}, {"KiB", 10}};

    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        uint64_t unit = UINT64_C(1) << units[i].shift;
        if (bytes != 0 && bytes % unit == 0) {
            snprintf(buf, size, "%" PRIu64 "%s", bytes / unit, units[i].name);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64 "B", bytes);
}

/* Writes "key = value". A value starting with ';' is glued to the '=' so
 * that it is not read back as a comment. */
static int dump_pair(FILE *f, const char *key, const char *value)
{
    const char *sep = (value[0] == '\0' || value[0] == ';') ? "" : " ";

    if (!dumpable(value)) {
        errno = EINVAL;
        return -1;
    }
    return fprintf(f, "%s =%s%s\n", key, sep, value) < 0 ? -1 : 0;
}

static int dump_fixed_key(FILE *f, const crp_config *cfg, const key_def *kd)
{
    const void *field = (const char *)cfg + kd->offset;
    char buf[768];

    switch (kd->type) {
    case V_UINT:
        snprintf(buf, sizeof(buf), "%" PRIu64,
                 kd->size == sizeof(unsigned) ? (uint64_t) * (const unsigned *)field
                                              : *(const uint64_t *)field);
        break;
    case V_NUMBER:
        if (!format_number(*(const double *)field, buf, sizeof(buf))) {
            errno = EINVAL;
            return -1;
        }
        break;
    case V_DURATION:
        format_duration(*(const uint64_t *)field, buf, sizeof(buf));
        break;
    case V_SIZE:
        format_size(*(const uint64_t *)field, buf, sizeof(buf));
        break;
    case V_BOOL:
        snprintf(buf, sizeof(buf), "%s", *(const bool *)field ? "true" : "false");
        break;
    case V_ACTION: {
        crp_action a = *(const crp_action *)field;
        if ((unsigned)a >= ARRAY_LEN(action_names)) {
            errno = EINVAL;
            return -1;
        }
        snprintf(buf, sizeof(buf), "%s", action_names[a]);
        break;
    }
    case V_STRING:
    case V_LIST:
        return dump_pair(f, kd->name, (const char *)field);
    }
    return dump_pair(f, kd->name, buf);
}

int crp_config_dump(const crp_config *cfg, FILE *f)
{
    if (fprintf(f, "; connrep configuration (effective values)\n") < 0)
        return -1;
    for (size_t s = 0; s < ARRAY_LEN(section_names); s++) {
        if (section_names[s] == NULL)
            continue;
        if (fprintf(f, "\n[%s]\n", section_names[s]) < 0)
            return -1;
        for (size_t k = 0; k < ARRAY_LEN(keys); k++) {
            if (keys[k].section == (enum section)s && dump_fixed_key(f, cfg, &keys[k]) < 0)
                return -1;
        }
    }
    for (size_t i = 0; i < cfg->n_identities; i++) {
        const crp_identity *id = &cfg->identities[i];
        if ((unsigned)id->role >= ARRAY_LEN(role_names) || !is_identity_name(id->name)) {
            errno = EINVAL;
            return -1;
        }
        if (fprintf(f, "\n[identity %s]\n", id->name) < 0 ||
            dump_pair(f, "public_key", id->public_key) < 0 ||
            dump_pair(f, "role", role_names[id->role]) < 0 ||
            dump_pair(f, "tenant", id->any_tenant ? "*" : id->tenant) < 0 ||
            dump_pair(f, "email", id->email) < 0)
            return -1;
    }
    return 0;
}
