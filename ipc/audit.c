/* The audit log: append-only JSON lines (see crp/audit.h for the format).
 *
 * Writing: one mutex serializes the writers of this process so that a line
 * is built, written with one write(2) and fdatasync'ed before the next one
 * starts; O_APPEND keeps lines whole against other processes too.
 *
 * Searching: the file is streamed forward through a fixed buffer and every
 * complete line is parsed with jansson; the newest `limit` matches are kept
 * in a ring, so memory does not grow with the file. The file is in time
 * order (one writer mutex, one clock), so "newest first" is simply the ring
 * read backwards.
 */
#define _DEFAULT_SOURCE /* fdatasync, O_CLOEXEC on older libcs */

#include "crp/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crp/clock.h"
#include "crp/log.h"

struct crp_audit {
    pthread_mutex_t mu; /* serializes writers: one line at a time */
    int fd;             /* O_APPEND, -1 when disabled */
    bool enabled;
    bool no_sync;
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
    char path[CRP_CONFIG_PATH_MAX + sizeof("/" CRP_AUDIT_FILE)];
    /* Statistics and health; relaxed: nothing else is ordered by them. */
    _Atomic uint64_t lines;
    _Atomic uint64_t errors;
    atomic_bool healthy;
};

static uint64_t default_clock(void *ctx)
{
    (void)ctx;
    return crp_clock_ms();
}

/* Creates dir and its missing parents with mode 0700. Returns 0 or -1 with
 * errno set. */
static int mkdir_p(const char *dir)
{
    char buf[CRP_CONFIG_PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

crp_err crp_audit_create(crp_audit **out, const crp_audit_opts *opts, char *errbuf, size_t errlen)
{
    crp_audit *a;
    struct stat st;

    *out = NULL;
    if (opts == NULL || (opts->enabled && (opts->state_dir == NULL || *opts->state_dir == '\0'))) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "audit log: no state_dir");
        return CRP_INVAL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CRP_NOMEM;
    pthread_mutex_init(&a->mu, NULL);
    a->fd = -1;
    a->enabled = opts->enabled;
    a->no_sync = opts->no_sync;
    a->clock_ms = opts->clock_ms != NULL ? opts->clock_ms : default_clock;
    a->clock_ctx = opts->clock_ctx;
    atomic_init(&a->lines, 0);
    atomic_init(&a->errors, 0);
    atomic_init(&a->healthy, true);
    if (!a->enabled) {
        *out = a;
        return CRP_OK;
    }
    if (strlen(opts->state_dir) >= CRP_CONFIG_PATH_MAX) {
        crp_errbuf_printf(errbuf, errlen, "audit log: state_dir '%s' too long", opts->state_dir);
        goto out_free;
    }
    snprintf(a->path, sizeof(a->path), "%s/%s", opts->state_dir, CRP_AUDIT_FILE);
    if (mkdir_p(opts->state_dir) != 0) {
        crp_errbuf_printf(errbuf, errlen, "audit log: cannot create directory %s: %s",
                          opts->state_dir, strerror(errno));
        goto out_free;
    }
    a->fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) {
        crp_errbuf_printf(errbuf, errlen, "audit log: cannot open %s: %s", a->path,
                          strerror(errno));
        goto out_free;
    }
    /* A crash may have torn the last line. Terminate it so the fragment
     * stays alone on its line (search skips it) instead of swallowing the
     * next record. */
    if (fstat(a->fd, &st) == 0 && st.st_size > 0) {
        int rfd = open(a->path, O_RDONLY | O_CLOEXEC);
        char last = '\n';
        if (rfd >= 0) {
            if (pread(rfd, &last, 1, st.st_size - 1) != 1)
                last = '\n';
            close(rfd);
        }
        if (last != '\n' && write(a->fd, "\n", 1) != 1) {
            crp_errbuf_printf(errbuf, errlen, "audit log: cannot repair %s: %s", a->path,
                              strerror(errno));
            goto out_close;
        }
    }
    *out = a;
    return CRP_OK;

out_close:
    close(a->fd);
out_free:
    pthread_mutex_destroy(&a->mu);
    free(a);
    return CRP_IO;
}

crp_err crp_audit_create_from_config(crp_audit **out, const crp_config *cfg, char *errbuf,
                                     size_t errlen)
{
    crp_audit_opts o = {.state_dir = cfg->engine.state_dir, .enabled = cfg->audit.enabled};
    return crp_audit_create(out, &o, errbuf, errlen);
}

void crp_audit_destroy(crp_audit **ap)
{
    crp_audit *a;

    if (ap == NULL || *ap == NULL)
        return;
    a = *ap;
    if (a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->mu);
    free(a);
    *ap = NULL;
}

bool crp_audit_enabled(const crp_audit *a)
{
    return a != NULL && a->enabled;
}

bool crp_audit_healthy(const crp_audit *a)
{
    /* Relaxed: a hint for refusing changes, not a synchronization point. */
    return a == NULL || !a->enabled || atomic_load_explicit(&a->healthy, memory_order_relaxed);
}

void crp_audit_stats_get(const crp_audit *a, crp_audit_stats *out)
{
    /* Statistics only: relaxed loads. */
    out->lines = atomic_load_explicit(&a->lines, memory_order_relaxed);
    out->errors = atomic_load_explicit(&a->errors, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* Time */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil); timegm() is not POSIX. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits at *p; returns -1 when they are not all digits. */
static int digits(const char **p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    return v;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Parses an RFC 3339 date-time or a plain date; false on any deviation. */
static bool parse_rfc3339(const char *s, uint64_t *out_ms)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, off = 0;
    unsigned frac_ms = 0;
    int64_t days, total;

    y = digits(&p, 4);
    if (y < 1970 || *p++ != '-')
        return false;
    mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || *p++ != '-')
        return false;
    d = digits(&p, 2);
    if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)))
        return false;
    if (*p != '\0') {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        p++;
        h = digits(&p, 2);
        if (h < 0 || h > 23 || *p++ != ':')
            return false;
        mi = digits(&p, 2);
        if (mi < 0 || mi > 59 || *p++ != ':')
            return false;
        sec = digits(&p, 2);
        if (sec < 0 || sec > 60) /* 60: a leap second, taken as :59.999 below */
            return false;
        if (*p == '.') {
            unsigned scale = 100;
            p++;
            if (*p < '0' || *p > '9')
                return false;
            for (; *p >= '0' && *p <= '9'; p++) {
                frac_ms += (unsigned)(*p - '0') * scale;
                scale /= 10;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            int oh = digits(&p, 2), om;
            if (oh < 0 || oh > 23 || *p++ != ':')
                return false;
            om = digits(&p, 2);
            if (om < 0 || om > 59)
                return false;
            off = sign * (oh * 60 + om);
        } else {
            return false;
        }
        if (*p != '\0')
            return false;
    }
    if (sec == 60) {
        sec = 59;
        frac_ms = 999;
    }
    days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    total = ((days * 24 + h) * 60 + mi - off) * 60 + sec;
    if (total < 0)
        return false;
    *out_ms = (uint64_t)total * 1000u + frac_ms;
    return true;
}

crp_err crp_time_parse(const char *s, uint64_t now_ms, uint64_t *out_ms)
{
    uint64_t d;

    if (s == NULL || *s == '\0')
        return CRP_INVAL;
    if (crp_config_parse_duration(s, &d) == CRP_OK) {
        *out_ms = d < now_ms ? now_ms - d : 0;
        return CRP_OK;
    }
    return parse_rfc3339(s, out_ms) ? CRP_OK : CRP_INVAL;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one;
 * NUL is refused too, so that audit text survives C-string handling. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    return s[0] == 0 ? 0 : crp_utf8_seq(s, n);
}

json_t *crp_json_bytes(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char *buf, *w;
    json_t *j;
    size_t i;

    if (len == 0)
        return json_string("");
    for (i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0)
            break;
        i += k;
    }
    if (i == len)
        return json_stringn(s, len);
    /* Worst case every byte becomes "\xNN". */
    buf = malloc(len * 4 + 1);
    if (buf == NULL)
        return NULL;
    w = buf;
    for (i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0) {
            w += sprintf(w, "\\x%02x", u[i]);
            i++;
        } else {
            memcpy(w, u + i, k);
            w += k;
            i += k;
        }
    }
    j = json_stringn(buf, (size_t)(w - buf));
    free(buf);
    return j;
}

json_t *crp_json_reasons(unsigned bits)
{
    const char *names[8];
    size_t n = crp_reason_names(bits, names, 8);
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, json_string(names[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *crp_json_evidence(const crp_rule_eval *ev, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *o =
            json_pack("{s:s, s:f, s:f, s:b}", "rule", ev[i].name ? ev[i].name : "unknown", "value",
                      ev[i].value, "threshold", ev[i].threshold, "tripped", ev[i].tripped);
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* ------------------------------------------------------------------------ */
/* Writing */

static crp_err write_line_locked(crp_audit *a, const json_t *line, bool sync)
{
    char tbuf[CRP_RFC3339_LEN];
    json_t *copy = NULL;
    char *text;
    size_t len, off = 0;
    crp_err err = CRP_OK;

    if (json_object_get(line, "time") == NULL) {
        /* "time" first: build a new object and copy the members after it. */
        const char *k;
        json_t *v;
        copy = json_object();
        if (copy == NULL ||
            json_object_set_new(copy, "time",
                                json_string(crp_rfc3339(a->clock_ms(a->clock_ctx), tbuf))) != 0) {
            json_decref(copy);
            return CRP_NOMEM;
        }
        json_object_foreach((json_t *)line, k, v)
        {
            if (json_object_set(copy, k, v) != 0) {
                json_decref(copy);
                return CRP_NOMEM;
            }
        }
        line = copy;
    }
    /* Nine significant digits, as in the events: 0.1 stays 0.1. */
    text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(copy);
    if (text == NULL)
        return CRP_NOMEM;
    len = strlen(text);
    if (len + 1 > CRP_AUDIT_LINE_MAX) {
        free(text);
        return CRP_INVAL;
    }
    /* json_dumps never emits a raw newline (it escapes control characters),
     * so the only newline is the terminator we put in place of the NUL. */
    text[len++] = '\n';
    /* A full disk may take part of the line: it is cut off again, so the
     * next line does not run on from a torn one (which would hide it from
     * search). This process is the log's only writer (the pid file). */
    off_t end = lseek(a->fd, 0, SEEK_END);
    while (off < len) {
        ssize_t w = write(a->fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = CRP_IO;
            break;
        }
        off += (size_t)w;
    }
    if (err != CRP_OK && off > 0 && end >= 0 && ftruncate(a->fd, end) != 0)
        crp_log(CRP_LOG_ERROR, "audit: %s: cannot cut a torn line at offset %lld: %s", a->path,
                (long long)end, strerror(errno));
    free(text);
    if (err == CRP_OK && sync && !a->no_sync && fdatasync(a->fd) != 0)
        err = CRP_IO;
    return err;
}

static void count_result(crp_audit *a, crp_err err)
{
    /* Relaxed: statistics and a health hint only. */
    if (err == CRP_OK) {
        atomic_fetch_add_explicit(&a->lines, 1, memory_order_relaxed);
        atomic_store_explicit(&a->healthy, true, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&a->errors, 1, memory_order_relaxed);
        if (err == CRP_IO)
            atomic_store_explicit(&a->healthy, false, memory_order_relaxed);
    }
}

static crp_err append(crp_audit *a, const json_t *line, bool sync)
{
    crp_err err;

    if (a == NULL || !a->enabled)
        return CRP_OK;
    if (!json_is_object(line))
        return CRP_INVAL;
    pthread_mutex_lock(&a->mu);
    err = write_line_locked(a, line, sync);
    pthread_mutex_unlock(&a->mu);
    count_result(a, err);
    return err;
}

crp_err crp_audit_append(crp_audit *a, const json_t *line)
{
    return append(a, line, true);
}

crp_err crp_audit_sync(crp_audit *a)
{
    crp_err err = CRP_OK;

    if (a == NULL || !a->enabled || a->no_sync)
        return CRP_OK;
    pthread_mutex_lock(&a->mu);
    if (fdatasync(a->fd) != 0)
        err = CRP_IO;
    pthread_mutex_unlock(&a->mu);
    if (err != CRP_OK) {
        atomic_fetch_add_explicit(&a->errors, 1, memory_order_relaxed);  /* statistics only */
        atomic_store_explicit(&a->healthy, false, memory_order_relaxed); /* a hint only */
    }
    return err;
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? crp_json_bytes(s, strlen(s)) : json_null();
}

crp_err crp_audit_request_line(crp_audit *a, const crp_audit_request *r)
{
    json_t *o;
    crp_err err;
    char verb[65];

    if (a == NULL || !a->enabled)
        return CRP_OK;
    if (r->verb != NULL) {
        snprintf(verb, sizeof(verb), "%s", r->verb);
    }
    o = json_object();
    if (o == NULL)
        return CRP_NOMEM;
    json_object_set_new(o, "kind", json_string("request"));
    json_object_set_new(o, "actor", str_or_null(r->actor));
    json_object_set_new(o, "role", str_or_null(r->role));
    json_object_set_new(o, "scope", str_or_null(r->scope));
    json_object_set_new(o, "tenant", str_or_null(r->tenant));
    json_object_set_new(o, "verb", str_or_null(r->verb != NULL ? verb : NULL));
    json_object_set_new(o, "target", str_or_null(r->target));
    json_object_set_new(o, "result", str_or_null(r->result));
    if (r->message != NULL)
        json_object_set_new(o, "message", str_or_null(r->message));
    if (r->reason != NULL)
        json_object_set_new(o, "reason", str_or_null(r->reason));
    if (r->details != NULL)
        json_object_set(o, "details", (json_t *)r->details);
    err = crp_audit_append(a, o);
    json_decref(o);
    return err;
}

crp_err crp_audit_transition_line(crp_audit *a, const crp_audit_transition *t)
{
    char since[CRP_RFC3339_LEN], verb[48];
    const crp_transition *tr = t->tr;
    json_t *o;
    crp_err err;

    if (a == NULL || !a->enabled)
        return CRP_OK;
    if (tr == NULL || tr->kind == CRP_TR_NONE)
        return CRP_INVAL;
    snprintf(verb, sizeof(verb), "state.%s", crp_transition_kind_name(tr->kind));
    o = json_object();
    if (o == NULL)
        return CRP_NOMEM;
    json_object_set_new(o, "kind", json_string("transition"));
    json_object_set_new(o, "actor", json_string(t->actor != NULL ? t->actor : "engine"));
    json_object_set_new(o, "role", json_null());
    json_object_set_new(o, "tenant", crp_json_bytes(t->tenant ? t->tenant : "", t->tenant_len));
    json_object_set_new(o, "verb", json_string(verb));
    json_object_set_new(o, "target", crp_json_bytes(t->connector_id, t->id_len));
    json_object_set_new(o, "result", json_string("ok"));
    json_object_set_new(o, "from", json_string(crp_state_name(tr->from)));
    json_object_set_new(o, "to", json_string(crp_state_name(tr->to)));
    json_object_set_new(o, "reasons", crp_json_reasons(tr->reasons));
    json_object_set_new(o, "since", json_string(crp_rfc3339(tr->at_ms, since)));
    if (tr->n_evidence > 0)
        json_object_set_new(o, "evidence", crp_json_evidence(tr->evidence, tr->n_evidence));
    if (t->comment != NULL && *t->comment != '\0')
        json_object_set_new(o, "reason", str_or_null(t->comment));
    err = append(a, o, !t->defer_sync);
    json_decref(o);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Searching */

/* A ring of the newest `cap` matches. */
typedef struct ring {
    json_t **items;
    size_t cap, head, n; /* head: index of the oldest item */
    bool dropped;
} ring;

static void ring_push(ring *r, json_t *item)
{
    if (r->n < r->cap) {
        r->items[(r->head + r->n) % r->cap] = item;
        r->n++;
        return;
    }
    json_decref(r->items[r->head]);
    r->items[r->head] = item;
    r->head = (r->head + 1) % r->cap;
    r->dropped = true;
}

/* True when s is only printable ASCII without '"' and '\\': then its JSON
 * form is itself between quotes, and a raw substring test can reject a
 * line before it is parsed. */
static bool plain_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    }
    return true;
}

/* Whether the line contains "\"" needle "\"" (needle plain ASCII). */
static bool contains_quoted(const char *line, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    if (len < n + 2)
        return false;
    for (size_t i = 0; i + n + 2 <= len; i++) {
        if (line[i] == '"' && line[i + n + 1] == '"' && memcmp(line + i + 1, needle, n) == 0)
            return true;
    }
    return false;
}

static bool str_member_eq(const json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL && strcmp(v, want) == 0;
}

typedef struct search_ctx {
    const crp_audit_query *q;
    bool pre_id, pre_actor; /* raw-line prefilters usable */
    ring r;
} search_ctx;

static void consider_line(search_ctx *c, const char *line, size_t len)
{
    const crp_audit_query *q = c->q;
    json_t *o;
    uint64_t t;

    if (c->pre_id && !contains_quoted(line, len, q->connector_id))
        return;
    if (c->pre_actor && !contains_quoted(line, len, q->actor))
        return;
    o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o))
        goto skip;
    {
        const char *time = json_string_value(json_object_get(o, "time"));
        if (time == NULL || !parse_rfc3339(time, &t))
            goto skip;
    }
    if ((q->since_ms != 0 && t < q->since_ms) || (q->until_ms != 0 && t > q->until_ms))
        goto skip;
    if (!q->any_tenant && !str_member_eq(o, "tenant", q->tenant != NULL ? q->tenant : ""))
        goto skip;
    if (q->connector_id != NULL && !str_member_eq(o, "target", q->connector_id))
        goto skip;
    if (q->actor != NULL && !str_member_eq(o, "actor", q->actor))
        goto skip;
    if (q->action != NULL) {
        const char *verb = json_string_value(json_object_get(o, "verb"));
        size_t al = strlen(q->action);
        if (verb == NULL)
            goto skip;
        if (al > 0 && q->action[al - 1] == '*') {
            if (strncmp(verb, q->action, al - 1) != 0)
                goto skip;
        } else if (strcmp(verb, q->action) != 0) {
            goto skip;
        }
    }
    ring_push(&c->r, o);
    return;
skip:
    json_decref(o);
}

crp_err crp_audit_search(crp_audit *a, const crp_audit_query *q, json_t **out, bool *more)
{
    search_ctx c = {.q = q};
    size_t limit = q->limit == 0 ? CRP_AUDIT_LIMIT_DEFAULT : q->limit;
    char *buf = NULL;
    size_t have = 0;
    bool skipping = false; /* inside a line too long to keep */
    crp_err err = CRP_OK;
    json_t *arr;
    int fd;

    *out = NULL;
    if (more != NULL)
        *more = false;
    if (limit > CRP_AUDIT_LIMIT_MAX)
        return CRP_INVAL;
    arr = json_array();
    if (arr == NULL)
        return CRP_NOMEM;
    if (a == NULL || !a->enabled) {
        *out = arr;
        return CRP_OK;
    }
    fd = open(a->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* No file yet (removed by an operator): nothing to find. */
        if (errno == ENOENT) {
            *out = arr;
            return CRP_OK;
        }
        json_decref(arr);
        return CRP_IO;
    }
    c.pre_id = q->connector_id != NULL && plain_ascii(q->connector_id);
    c.pre_actor = q->actor != NULL && plain_ascii(q->actor);
    c.r.cap = limit;
    c.r.items = calloc(limit, sizeof(json_t *));
    buf = malloc(CRP_AUDIT_LINE_MAX);
    if (c.r.items == NULL || buf == NULL) {
        err = CRP_NOMEM;
        goto out;
    }
    for (;;) {
        ssize_t got = read(fd, buf + have, CRP_AUDIT_LINE_MAX - have);
        size_t start = 0;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = CRP_IO;
            goto out;
        }
        if (got == 0)
            break; /* what is left in buf has no newline: a torn line */
        have += (size_t)got;
        for (size_t i = 0; i < have; i++) {
            if (buf[i] != '\n')
                continue;
            if (!skipping && i > start)
                consider_line(&c, buf + start, i - start);
            skipping = false;
            start = i + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == CRP_AUDIT_LINE_MAX) {
            /* A line longer than any we write: drop it up to its newline. */
            skipping = true;
            have = 0;
        }
    }
    for (size_t i = c.r.n; i-- > 0;) {
        if (json_array_append(arr, c.r.items[(c.r.head + i) % c.r.cap]) != 0) {
            err = CRP_NOMEM;
            goto out;
        }
    }
    if (more != NULL)
        *more = c.r.dropped;
out:
    close(fd);
    for (size_t i = 0; c.r.items != NULL && i < c.r.n; i++)
        json_decref(c.r.items[(c.r.head + i) % c.r.cap]);
    free(c.r.items);
    free(buf);
    if (err != CRP_OK) {
        json_decref(arr);
        return err;
    }
    *out = arr;
    return CRP_OK;
}
