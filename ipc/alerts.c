/* The alert policy "Suspicious connector activity" (see crp/alerts.h).
 *
 * INVARIANTS (all under a->mu):
 *  - A tracker slot is in use exactly when its count is > 0; a slot's day
 *    is the UTC day its count belongs to. Slots of days before
 *    a->max_day - 1 are dropped when max_day advances (one rebuild a day).
 *  - a->children[0..n_children) are the notify commands not reaped yet;
 *    a child's fd is >= 0 while part of its message is still unwritten.
 */
#define _DEFAULT_SOURCE /* SOCK_CLOEXEC, getentropy, gethostname */

#include "crp/alerts.h"
#include "crp/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "crp/clock.h"

extern char **environ;

#define TRACK_SLOTS (2u * CRP_ALERTS_TRACK_MAX) /* load factor at most 1/2 */
#define MS_PER_DAY  86400000u

typedef struct track_slot {
    uint64_t lo, hi; /* XXH3-128 of the connector id with a->seed */
    uint32_t day;    /* UTC day number (days since the epoch) */
    uint32_t count;  /* notifications that day; 0 = free slot */
} track_slot;

typedef struct admin_mail {
    char email[CRP_CONFIG_EMAIL_MAX];
    bool any_tenant;
    char tenant[CRP_CONFIG_TENANT_MAX];
} admin_mail;

typedef struct child {
    pid_t pid;
    int fd; /* our end of the child's stdin, -1 once everything is written */
    char *msg;
    size_t len, off;
    uint64_t started_ns; /* CLOCK_MONOTONIC */
    bool killed;
    char id[CRP_ID_MAX + 1]; /* for the failure's audit line */
    size_t id_len;
    char tenant[CRP_TENANT_MAX + 1];
    size_t tenant_len;
} child;

/* A finished child whose failure is audited after the mutex is released. */
typedef struct failure {
    char id[CRP_ID_MAX + 1];
    size_t id_len;
    char tenant[CRP_TENANT_MAX + 1];
    size_t tenant_len;
    char why[64];
} failure;

struct crp_alerts {
    pthread_mutex_t mu;
    crp_alert_policy policy;
    char notify_command[CRP_CONFIG_COMMAND_MAX];
    char hostname[256];
    crp_audit *audit;
    admin_mail *admins; /* OrganizationManagement identities with an email */
    size_t n_admins;
    /* Daily counts. */
    track_slot *slots;
    size_t n_used;
    uint32_t max_day;
    uint64_t seed;
    /* Children. */
    child children[CRP_ALERTS_CHILDREN_MAX];
    size_t n_children;
    uint64_t msg_counter;
    crp_alerts_stats st;
};

/* ------------------------------------------------------------------------ */
/* Small helpers */

/* A growing string. On allocation failure `oom` is set and later appends
 * do nothing, so builders check once at the end. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_grow(sbuf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_add(sbuf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb_grow(b, (size_t)n);
    if (b->oom)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static char *sb_take(sbuf *b)
{
    if (b->oom || b->p == NULL) {
        free(b->p);
        return b->oom ? NULL : strdup("");
    }
    return b->p;
}

/* Length of the valid UTF-8 character at s (not NUL, not a control
 * character), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    /* Well-formed UTF-8 without C0 controls, DEL or C1 controls (U+0080..
     * U+009F, encoded C2 80..C2 9F): what may stand in a mail header. */
    if (s[0] < 0x20 || s[0] == 0x7f)
        return 0;
    size_t len = crp_utf8_seq(s, n);
    if (len == 2 && s[0] == 0xc2 && s[1] < 0xa0)
        return 0;
    return len;
}

/* Appends opaque bytes for display: printable ASCII (and, unless
 * ascii_only, valid UTF-8) as is, every other byte as "\xNN". Stops with
 * "..." after max_out output bytes, which keeps header and body lines far
 * below RFC 5322's 998-character limit whatever the id holds. */
static void sb_display(sbuf *b, const char *s, size_t len, bool ascii_only, size_t max_out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t out = 0;

    for (size_t i = 0; i < len;) {
        size_t k = utf8_char(u + i, len - i);
        if (ascii_only && k > 1)
            k = 0;
        if (out + (k ? k : 4) > max_out) {
            sb_str(b, "...");
            return;
        }
        if (k == 0) {
            sb_printf(b, "\\x%02x", u[i]);
            out += 4;
            i++;
        } else {
            sb_add(b, s + i, k);
            out += k;
            i += k;
        }
    }
}

/* Appends the id as one shell word for the unblock command line. */
static void sb_shell_word(sbuf *b, const char *s, size_t len)
{
    bool plain = len > 0;

    for (size_t i = 0; i < len && plain; i++) {
        char c = s[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                strchr("._:@{}+=,/-", c) != NULL;
    }
    if (plain) {
        sb_add(b, s, len);
        return;
    }
    sb_str(b, "'");
    for (size_t i = 0; i < len;) {
        size_t k = utf8_char((const unsigned char *)s + i, len - i);
        if (k == 1 && s[i] == '\'') {
            sb_str(b, "'\\''");
        } else if (k > 0) {
            sb_add(b, s + i, k);
        } else {
            k = 1;
            sb_printf(b, "\\x%02x", (unsigned char)s[i]);
        }
        i += k;
    }
    sb_str(b, "'");
}

/* ------------------------------------------------------------------------ */
/* Policy */

void crp_alert_policy_from_config(crp_alert_policy *p, const crp_config *cfg)
{
    memset(p, 0, sizeof(*p));
    p->enabled = cfg->alerts.enabled;
    p->email = cfg->alerts.email;
    snprintf(p->recipients, sizeof(p->recipients), "%s", cfg->alerts.recipients);
    p->daily_limit = cfg->alerts.daily_limit;
}

static void set_why(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", msg);
}

crp_err crp_alert_policy_normalize(crp_alert_policy *p, char *why, size_t whylen)
{
    char out[CRP_CONFIG_LIST_MAX];
    size_t used = 0;
    const char *in = p->recipients;

    if (p->daily_limit < 1 || p->daily_limit > 3) {
        set_why(why, whylen, "daily_limit: expected 1, 2 or 3 notifications per connector per day");
        return CRP_INVAL;
    }
    if (memchr(in, '\0', sizeof(p->recipients)) == NULL) {
        set_why(why, whylen, "recipients: too long");
        return CRP_INVAL;
    }
    if (strcmp(in, "TenantAdmins") == 0)
        return CRP_OK;
    out[0] = '\0';
    for (const char *s = in;;) {
        const char *comma = strchr(s, ',');
        const char *e = comma ? comma : s + strlen(s), *b = s;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (!crp_config_is_email(b, (size_t)(e - b)) || (size_t)(e - b) >= CRP_CONFIG_EMAIL_MAX) {
            set_why(why, whylen,
                    "recipients: expected TenantAdmins or a comma-separated list of e-mail "
                    "addresses");
            return CRP_INVAL;
        }
        if (used + 1 + (size_t)(e - b) >= sizeof(out)) {
            set_why(why, whylen, "recipients: too long");
            return CRP_INVAL;
        }
        if (used > 0)
            out[used++] = ',';
        memcpy(out + used, b, (size_t)(e - b));
        used += (size_t)(e - b);
        out[used] = '\0';
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    memcpy(p->recipients, out, used + 1);
    return CRP_OK;
}

json_t *crp_alert_policy_json(const crp_alert_policy *p)
{
    return json_pack("{s:s, s:b, s:b, s:s, s:I}", "name", CRP_ALERT_POLICY_NAME, "enabled",
                     p->enabled, "email", p->email, "recipients", p->recipients, "daily_limit",
                     (json_int_t)p->daily_limit);
}

crp_err crp_alert_policy_parse(const char *text, size_t len, crp_alert_policy *out, char *why,
                               size_t whylen)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *enabled = json_object_get(o, "enabled"), *email = json_object_get(o, "email");
    json_t *rcpt = json_object_get(o, "recipients"), *limit = json_object_get(o, "daily_limit");
    crp_alert_policy p;
    crp_err err = CRP_INVAL;

    if (o == NULL) {
        set_why(why, whylen, "not JSON");
    } else if (!json_is_boolean(enabled) || !json_is_boolean(email) || !json_is_string(rcpt) ||
               !json_is_integer(limit)) {
        set_why(why, whylen, "expected enabled, email, recipients and daily_limit");
    } else if (json_string_length(rcpt) >= sizeof(p.recipients)) {
        set_why(why, whylen, "recipients: too long");
    } else {
        json_int_t v = json_integer_value(limit);
        memset(&p, 0, sizeof p);
        p.enabled = json_is_true(enabled);
        p.email = json_is_true(email);
        p.daily_limit = v >= 1 && v <= 3 ? (unsigned)v : 0;
        memcpy(p.recipients, json_string_value(rcpt), json_string_length(rcpt));
        err = crp_alert_policy_normalize(&p, why, whylen);
        if (err == CRP_OK)
            *out = p;
    }
    json_decref(o);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

static crp_err copy_admins(const crp_config *cfg, admin_mail **out, size_t *n)
{
    admin_mail *m;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    if (cfg->n_identities == 0)
        return CRP_OK;
    m = calloc(cfg->n_identities, sizeof(*m));
    if (m == NULL)
        return CRP_NOMEM;
    for (size_t i = 0; i < cfg->n_identities; i++) {
        const crp_identity *id = &cfg->identities[i];
        if (id->role != CRP_ROLE_ORGANIZATION_MANAGEMENT || id->email[0] == '\0')
            continue;
        snprintf(m[k].email, sizeof(m[k].email), "%s", id->email);
        m[k].any_tenant = id->any_tenant;
        snprintf(m[k].tenant, sizeof(m[k].tenant), "%s", id->tenant);
        k++;
    }
    *out = m;
    *n = k;
    return CRP_OK;
}

static void hostname_init(char *out, size_t size)
{
    char h[256] = "";
    size_t k = 0;

    if (gethostname(h, sizeof(h) - 1) != 0)
        h[0] = '\0';
    h[sizeof(h) - 1] = '\0';
    /* Only what is legal in a domain name goes into From: and Message-ID. */
    for (size_t i = 0; h[i] != '\0' && k + 1 < size; i++) {
        char c = h[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.')
            out[k++] = c;
    }
    out[k] = '\0';
    if (k == 0)
        snprintf(out, size, "localhost");
}

crp_err crp_alerts_create(crp_alerts **out, const crp_config *cfg, crp_audit *audit, char *errbuf,
                          size_t errlen)
{
    crp_alerts *a;
    char why[256];

    *out = NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CRP_NOMEM;
    a->slots = calloc(TRACK_SLOTS, sizeof(track_slot));
    if (a->slots == NULL || copy_admins(cfg, &a->admins, &a->n_admins) != CRP_OK) {
        free(a->slots);
        free(a);
        return CRP_NOMEM;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->audit = audit;
    snprintf(a->notify_command, sizeof(a->notify_command), "%s", cfg->alerts.notify_command);
    hostname_init(a->hostname, sizeof(a->hostname));
    if (getentropy(&a->seed, sizeof(a->seed)) != 0)
        a->seed = crp_clock_mono_ns() ^ ((uint64_t)getpid() << 32);
    crp_alert_policy_from_config(&a->policy, cfg);
    if (crp_alert_policy_normalize(&a->policy, why, sizeof(why)) != CRP_OK) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen, "[alerts] %s", why);
        crp_alerts_destroy(&a);
        return CRP_INVAL;
    }
    if (a->policy.enabled && !crp_audit_enabled(audit)) {
        if (errbuf != NULL && errlen > 0)
            snprintf(errbuf, errlen,
                     "alerts need the audit log: [alerts] enabled = true requires [audit] "
                     "enabled = true");
        crp_alerts_destroy(&a);
        return CRP_CONFLICT;
    }
    *out = a;
    return CRP_OK;
}

void crp_alerts_destroy(crp_alerts **ap)
{
    crp_alerts *a;

    if (ap == NULL || *ap == NULL)
        return;
    a = *ap;
    if (crp_alerts_wait(a, 2000) != CRP_OK)
        crp_log(CRP_LOG_WARN,
                "alerts: %zu notify command(s) still running at shutdown; not waiting for them",
                a->n_children);
    for (size_t i = 0; i < a->n_children; i++) {
        if (a->children[i].fd >= 0)
            close(a->children[i].fd);
        free(a->children[i].msg);
    }
    pthread_mutex_destroy(&a->mu);
    free(a->admins);
    free(a->slots);
    free(a);
    *ap = NULL;
}

crp_err crp_alerts_reconfigure(crp_alerts *a, const crp_config *cfg)
{
    admin_mail *m, *old;
    size_t n;

    if (copy_admins(cfg, &m, &n) != CRP_OK)
        return CRP_NOMEM;
    pthread_mutex_lock(&a->mu);
    old = a->admins;
    a->admins = m;
    a->n_admins = n;
    snprintf(a->notify_command, sizeof(a->notify_command), "%s", cfg->alerts.notify_command);
    pthread_mutex_unlock(&a->mu);
    free(old);
    return CRP_OK;
}

void crp_alerts_get_policy(crp_alerts *a, crp_alert_policy *out)
{
    pthread_mutex_lock(&a->mu);
    *out = a->policy;
    pthread_mutex_unlock(&a->mu);
}

crp_err crp_alerts_set_policy(crp_alerts *a, const crp_alert_policy *p, char *why, size_t whylen)
{
    crp_alert_policy np = *p;
    crp_err err = crp_alert_policy_normalize(&np, why, whylen);

    if (err != CRP_OK)
        return err;
    if (np.enabled && !crp_audit_enabled(a->audit)) {
        set_why(why, whylen,
                "alerts need the audit log: turn on the audit log ([audit] enabled = true) "
                "before you turn on the alert policy");
        return CRP_CONFLICT;
    }
    pthread_mutex_lock(&a->mu);
    a->policy = np;
    pthread_mutex_unlock(&a->mu);
    return CRP_OK;
}

void crp_alerts_stats_get(crp_alerts *a, crp_alerts_stats *out)
{
    pthread_mutex_lock(&a->mu);
    *out = a->st;
    out->running = (unsigned)a->n_children;
    pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------------------ */
/* Daily counts */

/* Drops the counts of days before `today - 1`. A rebuild instead of
 * tombstones keeps probing simple; it runs once per UTC day. */
static void track_roll_locked(crp_alerts *a, uint32_t today)
{
    track_slot *ns;

    if (today <= a->max_day)
        return;
    a->max_day = today;
    if (a->n_used == 0)
        return;
    ns = calloc(TRACK_SLOTS, sizeof(*ns));
    if (ns == NULL)
        return; /* keep the old counts; retried on the next call of a later day */
    a->n_used = 0;
    for (size_t i = 0; i < TRACK_SLOTS; i++) {
        const track_slot *s = &a->slots[i];
        if (s->count == 0 || s->day + 1 < today)
            continue;
        for (size_t j = s->lo & (TRACK_SLOTS - 1);; j = (j + 1) & (TRACK_SLOTS - 1)) {
            if (ns[j].count == 0) {
                ns[j] = *s;
                a->n_used++;
                break;
            }
        }
    }
    free(a->slots);
    a->slots = ns;
}

/* The slot of a connector, or the free slot where it would go (NULL when
 * the table holds CRP_ALERTS_TRACK_MAX connectors and this one is not
 * among them). */
static track_slot *track_find_locked(crp_alerts *a, const char *id, size_t len)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(id, len, a->seed);

    for (size_t j = h.low64 & (TRACK_SLOTS - 1);; j = (j + 1) & (TRACK_SLOTS - 1)) {
        track_slot *s = &a->slots[j];
        if (s->count == 0) {
            if (a->n_used >= CRP_ALERTS_TRACK_MAX)
                return NULL;
            s->lo = h.low64;
            s->hi = h.high64;
            s->day = 0;
            return s;
        }
        if (s->lo == h.low64 && s->hi == h.high64)
            return s;
    }
}

/* ------------------------------------------------------------------------ */
/* Recipients and message */

static char *recipients_locked(crp_alerts *a, const char *tenant, size_t tenant_len, size_t *n)
{
    sbuf b = {0};

    *n = 0;
    if (strcmp(a->policy.recipients, "TenantAdmins") != 0) {
        for (const char *s = a->policy.recipients; *s != '\0';) {
            const char *comma = strchr(s, ',');
            size_t len = comma ? (size_t)(comma - s) : strlen(s);
            if (*n > 0)
                sb_str(&b, ", ");
            sb_add(&b, s, len);
            (*n)++;
            s += len + (comma != NULL);
        }
        return sb_take(&b);
    }
    for (size_t i = 0; i < a->n_admins; i++) {
        const admin_mail *m = &a->admins[i];
        bool dup = false;
        if (!m->any_tenant &&
            (strlen(m->tenant) != tenant_len || memcmp(m->tenant, tenant, tenant_len) != 0))
            continue;
        for (size_t j = 0; j < i && !dup; j++) {
            const admin_mail *o = &a->admins[j];
            dup = strcmp(o->email, m->email) == 0 &&
                  (o->any_tenant ||
                   (strlen(o->tenant) == tenant_len && memcmp(o->tenant, tenant, tenant_len) == 0));
        }
        if (dup)
            continue;
        if (*n > 0)
            sb_str(&b, ", ");
        sb_str(&b, m->email);
        (*n)++;
    }
    return sb_take(&b);
}

char *crp_alerts_recipients(crp_alerts *a, const char *tenant, size_t tenant_len, size_t *n)
{
    char *r;

    pthread_mutex_lock(&a->mu);
    r = recipients_locked(a, tenant ? tenant : "", tenant_len, n);
    pthread_mutex_unlock(&a->mu);
    return r;
}

/* RFC 5322 date, built by hand: strftime's %a and %b follow the locale. */
static void rfc5322_date(uint64_t ms, char out[40])
{
    static const char *const wd[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday % 7], tm.tm_mday,
             mo[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static char *build_message(const char *host, const crp_alert_info *info, uint64_t now_ms,
                           const char *to, const char *message_id, unsigned nth, unsigned limit)
{
    char date[40], since[CRP_RFC3339_LEN];
    const char *names[8];
    size_t nr = crp_reason_names(info->reasons, names, 8);
    sbuf b = {0};
    size_t col = 4;

    rfc5322_date(now_ms, date);
    sb_printf(&b, "From: connrep@%s\r\n", host);
    /* Fold the To: list after commas so no line grows past 78 characters
     * (RFC 5322 section 2.2.3). */
    sb_str(&b, "To: ");
    for (const char *s = to; *s != '\0';) {
        const char *comma = strstr(s, ", ");
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (s != to) {
            sb_str(&b, ",");
            col++;
            if (col + 1 + len > 78) {
                sb_str(&b, "\r\n ");
                col = 1;
            } else {
                sb_str(&b, " ");
                col++;
            }
        }
        sb_add(&b, s, len);
        col += len;
        if (comma == NULL)
            break;
        s = comma + 2;
    }
    sb_str(&b, "\r\n");
    sb_printf(&b, "Date: %s\r\n", date);
    sb_str(&b, "Subject: " CRP_ALERT_POLICY_NAME ": ");
    sb_display(&b, info->connector_id, info->id_len, true, 200);
    sb_str(&b, info->would_restrict ? " would be restricted (alert only)\r\n" : " restricted\r\n");
    sb_printf(&b, "Message-ID: %s\r\n", message_id);
    sb_str(&b, "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n"
               "Auto-Submitted: auto-generated\r\n"
               "\r\n");

    if (info->would_restrict)
        sb_str(&b, "A connector looks compromised. The engine runs with action = alert_only,\r\n"
                   "so it was NOT restricted: its mail is still relayed.\r\n\r\n");
    else
        sb_str(&b, "A connector was restricted from relaying email because it looks\r\n"
                   "compromised. Its messages are now refused with\r\n"
                   "  550 5.7.711 Access denied, bad inbound connector. AS(2204)\r\n\r\n");
    sb_str(&b, "Alert policy: " CRP_ALERT_POLICY_NAME "\r\nConnector:    ");
    sb_display(&b, info->connector_id, info->id_len, false, 800);
    sb_str(&b, "\r\nTenant:       ");
    if (info->tenant_len == 0)
        sb_str(&b, "(none)");
    else
        sb_display(&b, info->tenant, info->tenant_len, false, 300);
    sb_printf(&b, "\r\n%s%s\r\nReasons:      ",
              info->would_restrict ? "Detected:     " : "Restricted:   ",
              crp_rfc3339(info->since_ms, since));
    for (size_t i = 0; i < nr; i++)
        sb_printf(&b, "%s%s", i ? ", " : "", names[i]);
    if (nr == 0)
        sb_str(&b, "(none)");
    sb_printf(&b, "\r\nActor:        %s\r\n", info->actor != NULL ? info->actor : "engine");
    if (info->n_evidence > 0) {
        sb_str(&b, "\r\nEvidence (every rule at the moment of the restriction):\r\n");
        sb_printf(&b, "  %-24s %14s %14s  %s\r\n", "rule", "value", "threshold", "tripped");
        for (size_t i = 0; i < info->n_evidence; i++) {
            const crp_rule_eval *e = &info->evidence[i];
            sb_printf(&b, "  %-24s %14.4f %14.4f  %s\r\n", e->name ? e->name : "unknown", e->value,
                      e->threshold, e->tripped ? "yes" : "no");
        }
    }
    sb_str(&b, "\r\nBefore you unblock the connector, follow the required steps to regain\r\n"
               "control of it (Respond to a compromised connector). Then remove the\r\n"
               "restriction with:\r\n\r\n  connrep remove-blocked-connector --connector-id ");
    sb_shell_word(&b, info->connector_id, info->id_len);
    sb_str(&b, "\r\n\r\nDetails: connrep get-blocked-connector --connector-id ");
    sb_shell_word(&b, info->connector_id, info->id_len);
    sb_printf(&b,
              "\r\n\r\nThis is notification %u of at most %u for this connector today "
              "(UTC).\r\n",
              nth, limit);
    return sb_take(&b);
}

char *crp_alerts_build_message(crp_alerts *a, const crp_alert_info *info, uint64_t now_ms,
                               const char *to, const char *message_id, unsigned nth, unsigned limit)
{
    return build_message(a->hostname, info, now_ms, to, message_id, nth, limit);
}

/* ------------------------------------------------------------------------ */
/* Children */

/* Writes what the socket takes without blocking; closes our end when the
 * whole message is written or the child stopped reading. */
static void child_pump(child *c)
{
    while (c->fd >= 0 && c->off < c->len) {
        ssize_t w = send(c->fd, c->msg + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0) {
            /* The child closed its stdin (EPIPE): its exit status tells. */
            break;
        }
        c->off += (size_t)w;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->msg);
    c->msg = NULL;
}

/* Starts notify_command with msg on its stdin; takes ownership of msg. */
static bool spawn_locked(crp_alerts *a, char *msg, const crp_alert_info *info)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char *argv[] = {"sh", "-c", a->notify_command, NULL};
    int sv[2];
    child *c;
    pid_t pid;
    int rc;

    if (a->n_children >= CRP_ALERTS_CHILDREN_MAX) {
        crp_log(CRP_LOG_WARN, "alerts: %u notify commands still running: not starting another",
                CRP_ALERTS_CHILDREN_MAX);
        free(msg);
        return false;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        crp_log(CRP_LOG_WARN, "alerts: socketpair: %s", strerror(errno));
        free(msg);
        return false;
    }
    posix_spawn_file_actions_init(&fa);
    /* dup2 clears close-on-exec on the child's fd 0; every other fd of ours
     * is close-on-exec, so the child gets only stdin and our stdout/err. */
    posix_spawn_file_actions_adddup2(&fa, sv[1], STDIN_FILENO);
    /* The caller may be a thread with every signal blocked (the engine's
     * events thread is) in a daemon that ignores SIGPIPE; a child inherits
     * both, and a mailer that cannot be told to stop, or that never sees a
     * broken pipe, is no good. It starts with an empty mask and default
     * dispositions instead. */
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    if (rc != 0) {
        crp_log(CRP_LOG_WARN, "alerts: cannot start notify_command: %s", strerror(rc));
        close(sv[0]);
        free(msg);
        return false;
    }
    c = &a->children[a->n_children++];
    memset(c, 0, sizeof(*c));
    c->pid = pid;
    c->fd = sv[0];
    c->msg = msg;
    c->len = strlen(msg);
    c->started_ns = crp_clock_mono_ns();
    c->id_len = info->id_len <= CRP_ID_MAX ? info->id_len : CRP_ID_MAX;
    memcpy(c->id, info->connector_id, c->id_len);
    c->tenant_len = info->tenant_len <= CRP_TENANT_MAX ? info->tenant_len : CRP_TENANT_MAX;
    if (c->tenant_len > 0)
        memcpy(c->tenant, info->tenant, c->tenant_len);
    child_pump(c);
    return true;
}

/* Reaps finished children; fills fails[] (at most nf) with failures to
 * audit after unlocking. Returns how many it filled. */
static size_t reap_locked(crp_alerts *a, failure *fails, size_t nf)
{
    uint64_t now = crp_clock_mono_ns();
    size_t k = 0;

    for (size_t i = 0; i < a->n_children;) {
        child *c = &a->children[i];
        int status;
        pid_t r;

        child_pump(c);
        r = waitpid(c->pid, &status, WNOHANG);
        if (r == 0) {
            if (!c->killed && now > c->started_ns + CRP_ALERTS_CHILD_TIMEOUT_MS * 1000000ull) {
                kill(c->pid, SIGKILL);
                c->killed = true;
            }
            i++;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 && !c->killed) {
            a->st.command_ok++;
        } else {
            char why[64];
            if (r < 0)
                snprintf(why, sizeof(why), "lost track of it (%s)", strerror(errno));
            else if (c->killed)
                snprintf(why, sizeof(why), "killed after %u s", CRP_ALERTS_CHILD_TIMEOUT_MS / 1000);
            else if (WIFEXITED(status))
                snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(status));
            else
                snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(status));
            sbuf shown = {0};
            a->st.command_failed++;
            /* Ids are opaque bytes: escape them so a log line stays one line. */
            sb_display(&shown, c->id, c->id_len, true, 300);
            crp_log(CRP_LOG_WARN, "alerts: notify_command failed for connector %s: %s",
                    shown.p ? shown.p : "?", why);
            free(shown.p);
            if (k < nf) {
                memcpy(fails[k].id, c->id, c->id_len);
                fails[k].id_len = c->id_len;
                memcpy(fails[k].tenant, c->tenant, c->tenant_len);
                fails[k].tenant_len = c->tenant_len;
                snprintf(fails[k].why, sizeof(fails[k].why), "%s", why);
                k++;
            }
        }
        if (c->fd >= 0)
            close(c->fd);
        free(c->msg);
        a->children[i] = a->children[--a->n_children];
    }
    return k;
}

static void audit_failures(crp_alerts *a, const failure *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string("alert"));
        json_object_set_new(o, "actor", json_string("engine"));
        json_object_set_new(o, "role", json_null());
        json_object_set_new(o, "tenant", crp_json_bytes(f[i].tenant, f[i].tenant_len));
        json_object_set_new(o, "verb", json_string("alert.notify-failed"));
        json_object_set_new(o, "target", crp_json_bytes(f[i].id, f[i].id_len));
        json_object_set_new(o, "result", json_string("failed"));
        json_object_set_new(o, "message", json_string(f[i].why));
        crp_audit_append(a->audit, o);
        json_decref(o);
    }
}

void crp_alerts_reap(crp_alerts *a)
{
    failure f[8];
    size_t n;

    pthread_mutex_lock(&a->mu);
    n = reap_locked(a, f, 8);
    pthread_mutex_unlock(&a->mu);
    audit_failures(a, f, n);
}

crp_err crp_alerts_wait(crp_alerts *a, int timeout_ms)
{
    uint64_t deadline =
        crp_clock_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;

    for (;;) {
        size_t left;
        crp_alerts_reap(a);
        pthread_mutex_lock(&a->mu);
        left = a->n_children;
        pthread_mutex_unlock(&a->mu);
        if (left == 0)
            return CRP_OK;
        if (crp_clock_mono_ns() >= deadline)
            return CRP_TIMEOUT;
        nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* The decision */

crp_err crp_alerts_on_restriction(crp_alerts *a, const crp_alert_info *info, uint64_t now_ms,
                                  crp_alert_decision *d)
{
    uint32_t today = (uint32_t)(now_ms / MS_PER_DAY);
    const char *result;
    char *to = NULL, *msg = NULL;
    failure fails[8];
    size_t nfail;
    crp_alert_policy pol;
    json_t *line;

    memset(d, 0, sizeof(*d));
    if (info->id_len == 0 || info->connector_id == NULL)
        return CRP_INVAL;

    pthread_mutex_lock(&a->mu);
    nfail = reap_locked(a, fails, 8);
    pol = a->policy;
    d->daily_limit = pol.daily_limit;
    if (!pol.enabled) {
        pthread_mutex_unlock(&a->mu);
        audit_failures(a, fails, nfail);
        return CRP_OK;
    }
    d->publish = true;
    a->st.raised++;
    if (!pol.email) {
        result = "email_off";
    } else {
        track_slot *s;
        track_roll_locked(a, today);
        s = track_find_locked(a, info->connector_id, info->id_len);
        /* A late restriction from before midnight counts in the newer day. */
        unsigned sent = s == NULL ? 0 : s->count == 0 || s->day < today ? 0 : s->count;
        if (s == NULL) {
            result = "suppressed";
            d->suppressed = true;
            a->st.suppressed++;
            a->st.untracked++;
        } else if (sent >= pol.daily_limit) {
            result = "suppressed";
            d->suppressed = true;
            d->notifications_today = sent;
            a->st.suppressed++;
        } else {
            to = recipients_locked(a, info->tenant ? info->tenant : "", info->tenant_len,
                                   &d->n_recipients);
            if (to == NULL) {
                pthread_mutex_unlock(&a->mu);
                return CRP_NOMEM;
            }
            if (d->n_recipients == 0) {
                result = "no_recipients";
                a->st.no_recipients++;
            } else {
                snprintf(d->message_id, sizeof(d->message_id), "<%llu.%ld.%llu@%.64s>",
                         (unsigned long long)now_ms, (long)getpid(),
                         (unsigned long long)++a->msg_counter, a->hostname);
                msg = build_message(a->hostname, info, now_ms, to, d->message_id, sent + 1,
                                    pol.daily_limit);
                if (msg == NULL) {
                    free(to);
                    pthread_mutex_unlock(&a->mu);
                    return CRP_NOMEM;
                }
                if (s->count == 0 || s->day < today) {
                    if (s->count == 0)
                        a->n_used++;
                    s->day = today;
                    s->count = 0;
                }
                s->count++;
                d->notify = true;
                d->notifications_today = s->count;
                a->st.notified++;
                if (a->notify_command[0] == '\0') {
                    result = "no_command";
                    free(msg);
                } else {
                    d->spawned = spawn_locked(a, msg, info);
                    result = "notified";
                    if (d->spawned)
                        a->st.spawned++;
                    else
                        a->st.spawn_failed++;
                }
            }
        }
    }
    pthread_mutex_unlock(&a->mu);
    audit_failures(a, fails, nfail);

    /* The audit line is written outside the mutex: fdatasync must not hold
     * up other threads' decisions. */
    line = json_object();
    if (line == NULL) {
        free(to);
        return CRP_NOMEM;
    }
    json_object_set_new(line, "kind", json_string("alert"));
    json_object_set_new(line, "actor", json_string(info->actor ? info->actor : "engine"));
    json_object_set_new(line, "role", json_null());
    json_object_set_new(line, "tenant",
                        crp_json_bytes(info->tenant ? info->tenant : "", info->tenant_len));
    json_object_set_new(line, "verb", json_string("alert.suspicious-connector"));
    json_object_set_new(line, "target", crp_json_bytes(info->connector_id, info->id_len));
    json_object_set_new(line, "result", json_string(result));
    json_object_set_new(line, "reasons", crp_json_reasons(info->reasons));
    json_object_set_new(line, "details",
                        json_pack("{s:I, s:I, s:I, s:s}", "notifications_today",
                                  (json_int_t)d->notifications_today, "daily_limit",
                                  (json_int_t)d->daily_limit, "recipients",
                                  (json_int_t)d->n_recipients, "message_id", d->message_id));
    if (d->spawned == false && d->notify && a->notify_command[0] != '\0')
        json_object_set_new(line, "message", json_string("notify_command could not be started"));
    crp_audit_append(a->audit, line);
    json_decref(line);
    free(to);
    return CRP_OK;
}

char *crp_alerts_event_json(const crp_alert_info *info, const crp_alert_decision *d,
                            uint64_t now_ms)
{
    char since[CRP_RFC3339_LEN], now[CRP_RFC3339_LEN];
    json_t *o;
    char *s;

    o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "policy", json_string(CRP_ALERT_POLICY_NAME));
    json_object_set_new(o, "connector_id", crp_json_bytes(info->connector_id, info->id_len));
    json_object_set_new(o, "tenant",
                        crp_json_bytes(info->tenant ? info->tenant : "", info->tenant_len));
    json_object_set_new(o, "state", json_string(info->would_restrict ? "active" : "restricted"));
    json_object_set_new(o, "reasons", crp_json_reasons(info->reasons));
    json_object_set_new(o, "since", json_string(crp_rfc3339(info->since_ms, since)));
    json_object_set_new(o, "actor", json_string(info->actor ? info->actor : "engine"));
    json_object_set_new(o, "evidence", crp_json_evidence(info->evidence, info->n_evidence));
    json_object_set_new(o, "would_restrict", json_boolean(info->would_restrict));
    json_object_set_new(o, "notified", json_boolean(d->notify));
    json_object_set_new(o, "suppressed", json_boolean(d->suppressed));
    json_object_set_new(o, "notifications_today", json_integer(d->notifications_today));
    json_object_set_new(o, "daily_limit", json_integer(d->daily_limit));
    json_object_set_new(o, "time", json_string(crp_rfc3339(now_ms, now)));
    /* Nine significant digits, as in the state events. */
    s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}
