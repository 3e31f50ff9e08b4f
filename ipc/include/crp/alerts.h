/* The alert policy "Suspicious connector activity": what happens when a
 * connector is restricted.
 *
 * For each restriction, unless the policy is off:
 *  - the caller publishes an `alert.suspicious-connector` event (the
 *    decision says so; crp_alerts_event_json builds its body);
 *  - when e-mail notifications are on, at most `daily_limit` (1..3)
 *    notifications per connector per UTC day are sent: an RFC 5322 message
 *    piped to `notify_command` (/bin/sh -c, message on its stdin). Further
 *    ones that day are suppressed, counted and audited.
 *
 * Recipients: `TenantAdmins` is the `email` of every identity with role
 * OrganizationManagement whose scope covers the connector's tenant (tenant
 * = *, or the same tenant); otherwise the configured comma-separated list.
 *
 * The policy needs the audit log (as the document says: "For alerts to
 * work, audit log search must be turned on"): enabling it while the audit
 * log is off is refused with CRP_CONFLICT.
 *
 * The notify command never blocks the caller: it is started with
 * posix_spawn (fork+exec), its stdin is a socket the message is written to
 * without blocking (what does not fit yet is written later by
 * crp_alerts_reap), and it is reaped with waitpid(pid, WNOHANG) by later
 * calls. A command that fails (exit status != 0, killed, or still running
 * after CRP_ALERTS_CHILD_TIMEOUT_MS, when it is killed) is logged on
 * stderr, counted and audited; it never takes the caller down. Only the
 * children this module started are waited for (never waitpid(-1)).
 *
 * Memory: the per-connector daily counts live in a fixed table of
 * CRP_ALERTS_TRACK_MAX connectors; entries of days before yesterday are
 * evicted when the UTC day changes. If the table fills within two days the
 * notification is suppressed (counted as `untracked`): a mail storm of
 * tens of thousands of messages helps nobody.
 *
 * Threads: every function may be called from any thread; one mutex guards
 * the policy, the daily counts and the children. The audit log is written
 * outside that mutex.
 */
#ifndef CRP_ALERTS_H
#define CRP_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crp/audit.h"
#include "crp/config.h"
#include "crp/err.h"
#include "crp/scoring.h"

typedef struct crp_alerts crp_alerts;

#define CRP_ALERT_POLICY_NAME "Suspicious connector activity"
/* Connectors whose daily counts are tracked at once. */
#define CRP_ALERTS_TRACK_MAX 65536u
/* notify_command processes alive at once; more are not started (counted). */
#define CRP_ALERTS_CHILDREN_MAX 64u
/* A notify_command still running after this long is killed (SIGKILL). */
#define CRP_ALERTS_CHILD_TIMEOUT_MS 60000u

/* The editable policy (get-alert-policy / set-alert-policy). */
typedef struct crp_alert_policy {
    bool enabled;                         /* raise alerts at all */
    bool email;                           /* send e-mail notifications */
    char recipients[CRP_CONFIG_LIST_MAX]; /* "TenantAdmins" or "a@x,b@y" */
    unsigned daily_limit;                 /* 1..3 per connector per UTC day */
} crp_alert_policy;

/* Copies [alerts] enabled, email, recipients, daily_limit. */
void crp_alert_policy_from_config(crp_alert_policy *p, const crp_config *cfg);

/* Validates and normalizes a policy in place: daily_limit 1..3, recipients
 * "TenantAdmins" or a non-empty list of plausible addresses (no blanks,
 * commas, semicolons or control characters; "a , b" becomes "a,b").
 * Returns CRP_OK or CRP_INVAL with a sentence in why (may be NULL). Does
 * not look at the audit log. Pure function. */
crp_err crp_alert_policy_normalize(crp_alert_policy *p, char *why, size_t whylen);

/* The policy as a new JSON object: {"name", "enabled", "email",
 * "recipients", "daily_limit"}. */
json_t *crp_alert_policy_json(const crp_alert_policy *p);

/* The inverse of crp_alert_policy_json, for a policy read back from the
 * journal or a snapshot: len bytes of JSON with enabled, email, recipients
 * (a string) and daily_limit ("name" and unknown keys are ignored), then
 * crp_alert_policy_normalize. CRP_OK with *out set, or CRP_INVAL with a
 * sentence in why (*out untouched). */
crp_err crp_alert_policy_parse(const char *text, size_t len, crp_alert_policy *out, char *why,
                               size_t whylen);

/* Creates the alerts module with the policy, notify_command and identities
 * of cfg (copied: cfg may be freed afterwards). `audit` must outlive the
 * module; it may be NULL only when the policy is off (it counts as a
 * disabled audit log). Returns CRP_OK, CRP_NOMEM, or CRP_CONFLICT (alerts
 * on while the audit log is off) with a sentence in errbuf. */
crp_err crp_alerts_create(crp_alerts **out, const crp_config *cfg, crp_audit *audit, char *errbuf,
                          size_t errlen);

/* Waits up to 2 s for running notify commands, then frees everything
 * (commands still running are left to finish on their own). NULL-safe;
 * sets *ap = NULL. */
void crp_alerts_destroy(crp_alerts **ap);

/* Takes the identities (TenantAdmins) and notify_command of a reloaded
 * configuration; the policy is left alone (it is edited at run time, see
 * crp_alerts_set_policy). Returns CRP_OK or CRP_NOMEM (nothing changed). */
crp_err crp_alerts_reconfigure(crp_alerts *a, const crp_config *cfg);

/* Copies the current policy. */
void crp_alerts_get_policy(crp_alerts *a, crp_alert_policy *out);

/* Replaces the policy after crp_alert_policy_normalize. Returns CRP_OK,
 * CRP_INVAL (bad value), or CRP_CONFLICT when p->enabled and the audit log
 * is off ("alerts need the audit log: ..."); why gets the sentence. The
 * daily counts are kept: lowering daily_limit takes effect at once. */
crp_err crp_alerts_set_policy(crp_alerts *a, const crp_alert_policy *p, char *why, size_t whylen);

/* One restriction, as the engine saw it. Strings are borrowed for the
 * call; id and tenant are bytes (not NUL-terminated). */
typedef struct crp_alert_info {
    const char *connector_id;
    size_t id_len;
    const char *tenant; /* NULL when tenant_len is 0 */
    size_t tenant_len;
    unsigned reasons;  /* CRP_REASON_* bits */
    uint64_t since_ms; /* restricted since */
    const crp_rule_eval *evidence;
    size_t n_evidence;
    const char *actor;   /* "engine" when NULL */
    bool would_restrict; /* action alert_only: the connector was NOT restricted */
} crp_alert_info;

/* What crp_alerts_on_restriction decided. */
typedef struct crp_alert_decision {
    bool publish;                 /* the policy is on: publish alert.suspicious-connector */
    bool notify;                  /* a notification counts against today's limit (message built) */
    bool spawned;                 /* notify_command was started with the message */
    bool suppressed;              /* e-mail on, but over the daily limit (or untracked) */
    unsigned notifications_today; /* for this connector, this one included */
    unsigned daily_limit;
    size_t n_recipients;
    char message_id[128]; /* "<...@host>" when notify, else "" */
} crp_alert_decision;

/* Applies the policy to one restriction at wall-clock time now_ms (its UTC
 * day is the one counted). Fills *d; when d->notify the message has been
 * built and (with a notify_command) handed to a child process. Writes one
 * audit line "alert.suspicious-connector" whose result is "notified",
 * "suppressed", "email_off", "no_recipients" or "no_command". Also reaps
 * finished children. Returns CRP_OK (whatever was decided), CRP_NOMEM or
 * CRP_INVAL (id_len 0). Never blocks for long: no waiting on children. */
crp_err crp_alerts_on_restriction(crp_alerts *a, const crp_alert_info *info, uint64_t now_ms,
                                  crp_alert_decision *d);

/* The JSON body of the alert.suspicious-connector event, as a new string
 * the caller frees with free(): {"policy", "connector_id", "tenant",
 * "state", "reasons", "since", "actor", "evidence", "notified",
 * "notifications_today", "daily_limit", "time"}. NULL when out of memory. */
char *crp_alerts_event_json(const crp_alert_info *info, const crp_alert_decision *d,
                            uint64_t now_ms);

/* The resolved recipient list for a tenant under the current policy, as a
 * new "a@x, b@y" string (free() it; "" when nobody), and *n their count.
 * NULL when out of memory. */
char *crp_alerts_recipients(crp_alerts *a, const char *tenant, size_t tenant_len, size_t *n);

/* Builds the RFC 5322 message for one restriction (CRLF line ends) with the
 * given To: list and Message-ID; the caller frees it. For tests and tools:
 * on_restriction uses it. NULL when out of memory. */
char *crp_alerts_build_message(crp_alerts *a, const crp_alert_info *info, uint64_t now_ms,
                               const char *to, const char *message_id, unsigned nth,
                               unsigned limit);

/* Finishes writing messages to, and reaps, notify commands that are done;
 * kills those past CRP_ALERTS_CHILD_TIMEOUT_MS. Never blocks. Call it
 * periodically (the engine's sweep); on_restriction calls it too. */
void crp_alerts_reap(crp_alerts *a);

/* Waits until every notify command has exited, up to timeout_ms. Returns
 * CRP_OK or CRP_TIMEOUT. For tests and shutdown. */
crp_err crp_alerts_wait(crp_alerts *a, int timeout_ms);

typedef struct crp_alerts_stats {
    uint64_t raised;         /* restrictions seen with the policy on */
    uint64_t notified;       /* notifications counted against the limit */
    uint64_t suppressed;     /* over the daily limit */
    uint64_t untracked;      /* suppressed because the daily table was full */
    uint64_t no_recipients;  /* e-mail on but nobody to send to */
    uint64_t spawned;        /* notify_command started */
    uint64_t spawn_failed;   /* could not start (or too many running) */
    uint64_t command_failed; /* exited != 0, killed, or timed out */
    uint64_t command_ok;     /* exited 0 */
    unsigned running;        /* children not reaped yet */
} crp_alerts_stats;
void crp_alerts_stats_get(crp_alerts *a, crp_alerts_stats *out);

#endif
