/* The audit log: every admin request (allowed or denied), every state
 * transition with its evidence, and every alert decision, as append-only
 * JSON lines in `state_dir/audit.log`.
 *
 * Format (docs/admin.md, "Audit log"): one JSON object per line, written
 * with a single write(2) on a file opened O_APPEND, so a line is never
 * interleaved with another one, also across processes. Every line has
 *   time    RFC 3339 UTC with milliseconds ("2024-05-01T12:00:00.123Z")
 *   kind    "request" | "transition" | "alert" | "auth"
 *   actor   identity name, or "engine"
 *   role    the actor's role (requests), else null
 *   tenant  the tenant the line belongs to (the connector's tenant when
 *           known and in the caller's scope, else the caller's scope; "*"
 *           for an identity of every tenant); search by a tenant-scoped
 *           identity shows only its tenant's lines
 *   verb    the admin verb, or "state.restricted", "state.unblocked",
 *           "state.blocked", "state.released", "state.probation_ended",
 *           "state.would_restrict", "alert.suspicious-connector",
 *           "alert.notify-failed", "auth.refused"
 *   target  the connector id, or null
 *   result  "ok" or the error code of the reply (requests); "ok"
 *           (transitions); see docs/admin.md for alerts
 * plus, where they apply: scope, message, reason, from, to, reasons, since,
 * evidence ([{"rule","value","threshold","tripped"}]) and details.
 *
 * Durability: each line is fdatasync'ed before the call returns (admin
 * traffic and transitions are rare events, so this costs nothing that
 * matters and makes "written before the reply is sent" mean "on disk").
 *
 * A file whose last line was torn by a crash is repaired on open by
 * appending a newline, so the torn fragment stays a line of its own (which
 * search skips) and never corrupts the next record.
 *
 * Threads: every function may be called from any thread; writers are
 * serialized by a mutex held for one line (write + fdatasync). Search
 * reads through its own file descriptor and does not block writers.
 */
#ifndef CRP_AUDIT_H
#define CRP_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crp/config.h"
#include "crp/err.h"
#include "crp/log.h"
#include "crp/scoring.h"

typedef struct crp_audit crp_audit;

/* The file name inside state_dir. */
#define CRP_AUDIT_FILE "audit.log"
/* Search limits: default and largest `limit`. */
#define CRP_AUDIT_LIMIT_DEFAULT 100u
#define CRP_AUDIT_LIMIT_MAX     10000u
/* The longest line written or read back (longer lines are refused when
 * writing and skipped when searching). */
#define CRP_AUDIT_LINE_MAX 65536u

/* Room for an RFC 3339 time with milliseconds: "2024-05-01T12:00:00.123Z". */

typedef struct crp_audit_opts {
    const char *state_dir; /* the directory of audit.log; created (0700) when missing */
    bool enabled;          /* false: create nothing, write nothing, search finds nothing */
    bool no_sync;          /* true: skip the per-line fdatasync (tests, benchmarks) */
    /* Wall clock for the "time" field, in ms since the epoch; NULL means
     * crp_clock_ms. Tests pass a fake clock. Called with the write mutex
     * held, so it must not call back into the audit log. */
    uint64_t (*clock_ms)(void *ctx);
    void *clock_ctx;
} crp_audit_opts;

/* Opens (creating when missing, mode 0600) state_dir/audit.log for
 * appending. With opts->enabled false nothing is touched on disk and every
 * write is a successful no-op. Returns CRP_OK and *out, CRP_NOMEM, or
 * CRP_IO / CRP_SYS with a sentence naming the path in errbuf (may be NULL).
 * Any thread. */
crp_err crp_audit_create(crp_audit **out, const crp_audit_opts *opts, char *errbuf, size_t errlen);

/* Same, with state_dir and enabled taken from [engine] and [audit]. */
crp_err crp_audit_create_from_config(crp_audit **out, const crp_config *cfg, char *errbuf,
                                     size_t errlen);

/* Closes the file and frees the object. NULL-safe; sets *ap = NULL. No
 * other call may be running. */
void crp_audit_destroy(crp_audit **ap);

/* Whether the log is on ([audit] enabled). NULL counts as off. */
bool crp_audit_enabled(const crp_audit *a);

/* False after a line could not be written (disk full, I/O error) until a
 * later line is written successfully. The admin server refuses changes
 * while the log is unhealthy, since it could not record them. */
bool crp_audit_healthy(const crp_audit *a);

/* Counters, statistics only (relaxed reads). */
typedef struct crp_audit_stats {
    uint64_t lines;  /* lines written */
    uint64_t errors; /* lines that could not be written */
} crp_audit_stats;
void crp_audit_stats_get(const crp_audit *a, crp_audit_stats *out);

/* Appends `line` (a JSON object; borrowed, not modified) as one line. When
 * it has no "time" member, the time of the write goes first. Returns CRP_OK
 * (also when disabled), CRP_INVAL (not an object, or longer than
 * CRP_AUDIT_LINE_MAX), CRP_NOMEM or CRP_IO. */
crp_err crp_audit_append(crp_audit *a, const json_t *line);

/* One admin request and its outcome. Strings are NUL-terminated and may be
 * NULL (written as null), except verb may be NULL only for a body that was
 * not a JSON object with a string verb. */
typedef struct crp_audit_request {
    const char *actor;     /* identity name */
    const char *role;      /* crp_role_name() */
    const char *scope;     /* "*" or the identity's tenant */
    const char *tenant;    /* the tenant the line belongs to (see the file comment) */
    const char *verb;      /* as received (truncated to 64 bytes) */
    const char *target;    /* connector id */
    const char *result;    /* "ok" or an error code */
    const char *message;   /* the error message, for denied or failed requests */
    const char *reason;    /* the admin's reason text (remove, block) */
    const json_t *details; /* borrowed; e.g. the new alert policy */
} crp_audit_request;

/* Makes every line written so far durable (one fdatasync): the group
 * commit of lines written with defer_sync. Returns CRP_OK or CRP_IO (the log
 * is then unhealthy). Blocks on the disk; any thread. */
crp_err crp_audit_sync(crp_audit *a);

/* Writes a "request" line. Returns as crp_audit_append. */
crp_err crp_audit_request_line(crp_audit *a, const crp_audit_request *r);

/* One state transition made by the engine or by an admin. */
typedef struct crp_audit_transition {
    const char *connector_id; /* id_len bytes, any bytes (not valid UTF-8 is escaped) */
    size_t id_len;
    const char *tenant; /* tenant_len bytes; NULL when 0 */
    size_t tenant_len;
    const crp_transition *tr; /* kind, from, to, reasons, at_ms, evidence */
    const char *actor;        /* "engine" when NULL */
    const char *comment;      /* the admin's reason text, or NULL */
    bool defer_sync;          /* write now, make durable at crp_audit_sync() */
} crp_audit_transition;

/* Writes a "transition" line: verb "state.<kind>", from, to, reasons,
 * since (tr->at_ms), evidence (when tr carries it), reason. Returns as
 * crp_audit_append; CRP_INVAL for CRP_TR_NONE. */
crp_err crp_audit_transition_line(crp_audit *a, const crp_audit_transition *t);

/* What search-audit-log asks for. Strings NULL = no filter. */
typedef struct crp_audit_query {
    const char *connector_id; /* equal to "target" */
    const char *actor;        /* equal to "actor" */
    /* equal to "verb"; a trailing '*' matches a prefix ("state.*") */
    const char *action;
    uint64_t since_ms; /* time >= since; 0 = no lower bound */
    uint64_t until_ms; /* time <= until; 0 = no upper bound */
    size_t limit;      /* 0 = CRP_AUDIT_LIMIT_DEFAULT; at most CRP_AUDIT_LIMIT_MAX */
    /* The caller's scope: a tenant-scoped caller sees lines whose "tenant"
     * equals its tenant, nothing else. */
    bool any_tenant;
    const char *tenant;
} crp_audit_query;

/* Searches the log, newest first. *out receives a new JSON array of at most
 * `limit` line objects (the caller owns it) and *more whether older matches
 * were left out (more may be NULL). Streams the file once: memory is
 * bounded by limit lines plus one read buffer, whatever the file's size.
 * Lines that are not JSON objects (a torn last line, garbage) are skipped,
 * as are lines longer than CRP_AUDIT_LINE_MAX. With the log disabled the
 * array is empty. Returns CRP_OK, CRP_INVAL (limit too large), CRP_NOMEM
 * or CRP_IO. Blocks on file I/O; any thread. */
crp_err crp_audit_search(crp_audit *a, const crp_audit_query *q, json_t **out, bool *more);

/* ---- helpers shared with the admin server, alerts and events ---------- */

/* Parses a search bound: an RFC 3339 date-time ("2024-05-01T12:00:00Z",
 * optional fraction, 'Z' or a +hh:mm / -hh:mm offset), a date
 * ("2024-05-01", midnight UTC), or a duration in the config syntax ("24h",
 * "30m", "7d") meaning now_ms minus it. Returns CRP_OK and *out_ms, or
 * CRP_INVAL. Pure function. */
crp_err crp_time_parse(const char *s, uint64_t now_ms, uint64_t *out_ms);

/* A JSON string for bytes that may not be UTF-8 (connector ids, tenants):
 * valid UTF-8 without NUL is kept as is; otherwise each offending byte is
 * written as the text "\xNN". Returns a new reference, or NULL (no
 * memory). */
json_t *crp_json_bytes(const char *s, size_t len);

/* The wire names of reason bits as a new JSON array (["spam_ratio", ...]). */
json_t *crp_json_reasons(unsigned bits);

/* Evidence as a new JSON array of {"rule","value","threshold","tripped"}. */
json_t *crp_json_evidence(const crp_rule_eval *ev, size_t n);

#endif
