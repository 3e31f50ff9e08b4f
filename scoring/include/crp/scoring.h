/* Scoring: turns per-message verdicts into a per-connector reputation and
 * decides when a connector is restricted, released and trusted again.
 *
 * This module is pure computation over core's crp_entry records. It does no
 * I/O, starts no threads, keeps no global state and allocates nothing, so
 * every function below is reentrant: different entries may be scored from
 * different threads at the same time. A single entry must be changed by one
 * thread at a time, which the table guarantees by its single-writer-per-shard
 * rule (the *_sw glue functions at the end must be called by the key's shard
 * writer).
 *
 * Model (PROTOCOL.md sections 1 and 6a):
 *  - Each event adds 1 to `messages`, to `spam` (verdict bit 0 or 1), to
 *    `phish` (bit 2 or 3), to `hc_phish` (bit 3), to `malware` (bit 4); these
 *    counters decay by 2^(-dt / half_life), applied lazily when the next event
 *    arrives. The event's recipient count goes into a sliding hour window and
 *    a sliding day window.
 *  - After every applied event the rules are evaluated; any tripped rule
 *    moves an ACTIVE or PROBATION connector to RESTRICTED (unless the action
 *    is alert_only). During PROBATION every threshold is multiplied by
 *    probation_factor; min_messages is not.
 *  - A restriction ends by an admin removal, by auto_release_after, or (with
 *    action restrict_today) at the next UTC midnight after it began. Any
 *    release resets the counters and starts probation (or goes straight to
 *    ACTIVE when probation is 0). Probation ends after `probation` ms.
 *
 * State kept per connector (crp_entry): state, reasons, since_ms (RESTRICTED:
 * restricted since; PROBATION: probation start; ACTIVE: 0), until_midnight
 * (restricted by restrict_today), dirty (set while the connector carries any
 * bad signal or is not ACTIVE, so the table never evicts it), last_ms (time
 * of the last applied event) and the 36-byte payload holding a crp_score.
 *
 * Times are milliseconds since the Unix epoch (UTC), durations milliseconds.
 */
#ifndef CRP_SCORING_H
#define CRP_SCORING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "crp/config.h"
#include "crp/err.h"
#include "crp/table.h"

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

/* Verdict bits, numbered as on the feed wire (PROTOCOL.md section 1). An
 * event with no bit set is a clean message: it still counts toward volume. */
enum crp_verdict_bit {
    CRP_VERDICT_SPAM = 1u << 0,
    CRP_VERDICT_HC_SPAM = 1u << 1,
    CRP_VERDICT_PHISH = 1u << 2,
    CRP_VERDICT_HC_PHISH = 1u << 3,
    CRP_VERDICT_MALWARE = 1u << 4,
    CRP_VERDICT_BULK = 1u << 5,
};
/* The bits a valid event may carry; the feed decoder rejects the others. */
#define CRP_VERDICT_MASK 0x3fu

/* One verdict for one message through one connector. The strings are not
 * NUL-terminated and are only borrowed for the duration of the call. */
typedef struct crp_event {
    const char *id; /* connector id, 1..CRP_ID_MAX bytes */
    uint8_t id_len;
    const char *tenant; /* 0..CRP_TENANT_MAX bytes; may be NULL when 0 */
    uint8_t tenant_len;
    uint64_t ts_ms;      /* event time; 0 = time of receipt (now) */
    uint16_t verdict;    /* enum crp_verdict_bit */
    uint16_t recipients; /* recipients of the message, 1..65535 */
} crp_event;

/* ------------------------------------------------------------------------ */
/* Policy                                                                    */
/* ------------------------------------------------------------------------ */

/* The [scoring] section as plain numbers. Filled by the caller (the config
 * module's values, or crp_policy_defaults); scoring never parses anything.
 * Count thresholds are doubles because probation multiplies them by a
 * fraction. A policy may be replaced between calls (SIGHUP reload): it is
 * read, never kept. */
typedef struct crp_policy {
    uint64_t half_life_ms;        /* 0 = counters never decay */
    double min_messages;          /* ratio rules need this decayed volume */
    double spam_ratio;            /* spam / messages >= this trips */
    double phish_ratio;           /* phish / messages >= this trips */
    double high_confidence_phish; /* hc_phish >= this trips */
    double malware;               /* malware >= this trips */
    uint64_t recipients_per_hour; /* last hour > this trips */
    uint64_t recipients_per_day;  /* last day > this trips */
    crp_action action; /* from crp/config.h */
    uint64_t auto_release_after_ms; /* 0 = only an admin releases */
    uint64_t probation_ms;          /* 0 = no probation after a release */
    double probation_factor;        /* thresholds multiplier in probation */
} crp_policy;

/* Fills *p with PROTOCOL.md section 6 defaults: half_life 1h, min_messages
 * 20, spam_ratio 0.5, phish_ratio 0.1, high_confidence_phish 3, malware 3,
 * recipients_per_hour 10000, recipients_per_day 100000, action restrict,
 * auto_release_after 0, probation 24h, probation_factor 0.5. */
void crp_policy_defaults(crp_policy *p);

/* Checks that a policy makes sense: ratios in (0, 1], count thresholds > 0,
 * probation_factor in (0, 1], a known action. Returns CRP_OK or CRP_INVAL
 * and, if `why` is not NULL, a static string naming the bad field. */
crp_err crp_policy_check(const crp_policy *p, const char **why);

/* Copies the [scoring] section of a loaded config into *p. The config
 * module has already validated every value. */
void crp_policy_from_config(crp_policy *p, const crp_config *cfg);

/* ------------------------------------------------------------------------ */
/* Per-connector score (the entry's payload)                                 */
/* ------------------------------------------------------------------------ */

/* The score lives in crp_entry.payload, in host byte order, copied in and
 * out with memcpy (crp_score_get / crp_score_put). Layout, 36 bytes:
 *
 *   offset  0  float    messages   decayed to entry.last_ms
 *   offset  4  float    spam
 *   offset  8  float    phish
 *   offset 12  float    hc_phish
 *   offset 16  float    malware
 *   offset 20  uint32   rcpt_hour_cur   recipients in last_ms's UTC hour
 *   offset 24  uint32   rcpt_hour_prev  recipients in the hour before it
 *   offset 28  uint32   rcpt_day_cur    recipients in last_ms's UTC day
 *   offset 32  uint32   rcpt_day_prev   recipients in the day before it
 *
 * The window buckets are fixed UTC hours and days; which hour and day they
 * are is derived from entry.last_ms, so it needs no storage. An all-zero
 * payload is a connector with no history (what the table inserts).
 *
 * Why float: 36 bytes hold five counters and four buckets only as 32-bit
 * values. A float keeps ratios exact to about 1e-7 relative, far below any
 * threshold anyone sets. Adding 1 to a float is exact up to 2^24 (16.7 M);
 * only a connector whose *decayed* volume exceeds that loses whole
 * increments, and at that volume only the ratios matter, which stay exact.
 *
 * Why two buckets per window: the sliding-window estimate is
 *   current + previous * (1 - fraction of the current bucket elapsed),
 * which is exact when the previous bucket's traffic was uniform over it and
 * otherwise off by at most the previous bucket's count (all of it fell just
 * before or just after the window's start). Counts saturate at UINT32_MAX. */
typedef struct crp_score {
    float messages;
    float spam;
    float phish;
    float hc_phish;
    float malware;
    uint32_t rcpt_hour_cur;
    uint32_t rcpt_hour_prev;
    uint32_t rcpt_day_cur;
    uint32_t rcpt_day_prev;
} crp_score;

_Static_assert(sizeof(crp_score) <= CRP_PAYLOAD_SIZE, "crp_score must fit in crp_entry.payload");

/* Copies the score out of / into an entry's payload. */
static inline void crp_score_get(const crp_entry *e, crp_score *s)
{
    memcpy(s, e->payload, sizeof *s);
}

static inline void crp_score_put(crp_entry *e, const crp_score *s)
{
    memcpy(e->payload, s, sizeof *s);
}

/* A connector's numbers as of one moment, for display (get-connector). */
typedef struct crp_score_values {
    double messages;
    double spam;
    double phish;
    double hc_phish;
    double malware;
    double recipients_hour; /* sliding-window estimates */
    double recipients_day;
} crp_score_values;

/* Fills *out with the entry's counters decayed to now_ms and its window
 * estimates at now_ms (a now_ms before last_ms is taken as last_ms). */
void crp_score_values_at(const crp_policy *p, const crp_entry *e, uint64_t now_ms,
                         crp_score_values *out);

/* ------------------------------------------------------------------------ */
/* Rules and evidence                                                        */
/* ------------------------------------------------------------------------ */

/* The rules, in evaluation and evidence order. The sending limit of
 * PROTOCOL 6a is two rules here, one per window; both map to reason bit 4
 * (CRP_REASON_SENDING_LIMIT, wire name "sending_limit"). */
enum crp_rule {
    CRP_RULE_SPAM_RATIO = 0,      /* "spam_ratio" */
    CRP_RULE_PHISH_RATIO = 1,     /* "phish_ratio" */
    CRP_RULE_HC_PHISH = 2,        /* "high_confidence_phish" */
    CRP_RULE_MALWARE = 3,         /* "malware" */
    CRP_RULE_RECIPIENTS_HOUR = 4, /* "recipients_per_hour" */
    CRP_RULE_RECIPIENTS_DAY = 5,  /* "recipients_per_day" */
    CRP_RULE_COUNT = 6,
};

/* One rule evaluated at one moment: the evidence of PROTOCOL section 4
 * ({"rule", "value", "threshold", "tripped"}). `name` is the rule's name,
 * which is also the config key of its threshold; `reason` is the reason bit
 * it sets when tripped (both recipients rules set CRP_REASON_SENDING_LIMIT).
 * For the ratio rules `value` is the ratio (0 with no messages) and `tripped`
 * is false below min_messages even when the ratio is over the threshold. */
typedef struct crp_rule_eval {
    const char *name; /* static string */
    double value;
    double threshold; /* probation-adjusted */
    uint8_t rule;     /* enum crp_rule */
    uint8_t reason;   /* enum crp_reason bit */
    bool tripped;
} crp_rule_eval;

/* The wire name of a rule, "unknown" when out of range. */
const char *crp_rule_name(int rule);

/* ------------------------------------------------------------------------ */
/* Transitions                                                               */
/* ------------------------------------------------------------------------ */

enum crp_transition_kind {
    CRP_TR_NONE = 0,
    CRP_TR_RESTRICTED = 1,      /* a rule tripped: ACTIVE/PROBATION -> RESTRICTED */
    CRP_TR_RELEASED = 2,        /* auto or midnight release -> PROBATION/ACTIVE */
    CRP_TR_UNBLOCKED = 3,       /* admin removal -> PROBATION/ACTIVE */
    CRP_TR_BLOCKED = 4,         /* manual block -> RESTRICTED (MANUAL) */
    CRP_TR_PROBATION_ENDED = 5, /* PROBATION -> ACTIVE */
    CRP_TR_WOULD_RESTRICT = 6,  /* alert_only: a rule newly tripped, no change */
};

/* "none", "restricted", "released", "unblocked", "blocked",
 * "probation_ended", "would_restrict"; "unknown" otherwise. */
const char *crp_transition_kind_name(int kind);

/* What one call changed. `from`/`to` are enum crp_state (equal for
 * WOULD_RESTRICT). `reasons`: for RESTRICTED and BLOCKED the entry's reason
 * bits after the change; for WOULD_RESTRICT the bits that would have been
 * set; for RELEASED and UNBLOCKED the bits that were lifted; 0 for
 * PROBATION_ENDED. `at_ms` is when it took effect: for RESTRICTED and
 * WOULD_RESTRICT the time the rules were evaluated at (the event time, or
 * the connector's latest event time when the event came out of order), for
 * the others now_ms. It is also the new since_ms when the connector entered
 * RESTRICTED or PROBATION (a manual block of an already restricted connector
 * keeps the old since_ms).
 *
 * Evidence: for RESTRICTED, WOULD_RESTRICT and BLOCKED, n_evidence ==
 * CRP_RULE_COUNT and evidence[] is every rule evaluated at at_ms (after the
 * event, with the thresholds of the state the connector was in). For the
 * other kinds n_evidence is 0. */
typedef struct crp_transition {
    uint64_t at_ms;
    uint8_t kind; /* enum crp_transition_kind */
    uint8_t from;
    uint8_t to;
    uint8_t reasons;
    bool would_restrict; /* true exactly for CRP_TR_WOULD_RESTRICT */
    uint8_t n_evidence;
    crp_rule_eval evidence[CRP_RULE_COUNT];
} crp_transition;

/* An event can cause at most two transitions: a release or probation end
 * that was due before it, then a restriction (or would-restrict) by it. */
#define CRP_SCORE_MAX_TRANSITIONS 2

/* ------------------------------------------------------------------------ */
/* Pure state machine over one entry                                         */
/* ------------------------------------------------------------------------ */

/* Applies one event to *e at wall-clock time now_ms.
 *
 * First applies whatever time-driven transition is due at now_ms (as
 * crp_score_tick). Then: the event time is ev->ts_ms, or now_ms when that is
 * 0 or later than now_ms. Counters decay from e->last_ms to the event time
 * and the event is added; an event older than e->last_ms (out of order) is
 * added without decay, to the previous window bucket when it falls in it,
 * and not counted in a window it is older than. last_ms becomes the event
 * time when later. Then the rules are evaluated (not for RESTRICTED, which
 * keeps counting but does not re-trip) and the connector restricted, or with
 * alert_only reported as WOULD_RESTRICT when the event newly trips a rule
 * that was not tripped just before it. Updates e->dirty.
 *
 * tr must have room for CRP_SCORE_MAX_TRANSITIONS; returns how many it
 * filled (0, 1 or 2), in the order they happened. ev's strings are not
 * used. Never fails; reentrant. */
size_t crp_score_event(const crp_policy *p, crp_entry *e, const crp_event *ev, uint64_t now_ms,
                       crp_transition *tr);

/* Applies the time-driven transitions due at now_ms: release of an engine
 * restriction at the next UTC midnight (restrict_today) or after
 * auto_release_after (never of a MANUAL one), and the end of probation.
 * Also clears e->dirty when the counters have decayed below the bad-signal
 * level by now_ms (the counters themselves are not changed).
 *
 * Returns true and fills *tr when the state changed. The entry may change
 * even when it returns false (dirty cleared): store it back if it differs. */
bool crp_score_tick(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr);

/* Admin removal (Remove-BlockedConnector): a RESTRICTED connector, for any
 * reason including MANUAL, has its counters reset and enters PROBATION
 * (since = now_ms) when p->probation_ms > 0, else ACTIVE. Returns CRP_OK
 * with *tr filled (kind UNBLOCKED), or CRP_CONFLICT, changing nothing, when
 * the connector is not RESTRICTED. */
crp_err crp_score_remove(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr);

/* Manual block: RESTRICTED with reason MANUAL from any state; an engine
 * restriction keeps its reasons and since and gains MANUAL. A manual block
 * never expires by itself (until_midnight is cleared, no auto release).
 * Counters are kept. Returns true with *tr filled (kind BLOCKED), or false
 * with tr->kind = CRP_TR_NONE when it was already manually blocked. */
bool crp_score_block(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr);

/* Evaluates every rule for *e at now_ms: counters decayed to now_ms, window
 * estimates at now_ms, thresholds adjusted for the entry's state. Writes
 * min(n, CRP_RULE_COUNT) evaluations in enum crp_rule order and returns how
 * many it wrote. With now_ms equal to the time of a transition's event, the
 * result equals that transition's evidence. */
size_t crp_score_explain(const crp_policy *p, const crp_entry *e, uint64_t now_ms,
                         crp_rule_eval *out, size_t n);

/* "unknown", "active", "restricted", "probation"; "unknown" when out of
 * range. Static strings. */
const char *crp_state_name(int state);

/* Writes the wire names of the reason bits set in `bits`, lowest bit first
 * ("spam_ratio", "phish_ratio", "high_confidence_phish", "malware",
 * "sending_limit", "manual"), at most n of them; unknown bits are skipped.
 * Returns how many it wrote. */
size_t crp_reason_names(unsigned bits, const char **out, size_t n);

/* ------------------------------------------------------------------------ */
/* Table glue (the shard writer's path; no I/O)                              */
/* ------------------------------------------------------------------------ */

/* Scores one event against the table: hashes ev's id, finds or inserts the
 * connector (with ev's tenant on insert), applies crp_score_event and
 * publishes the entry. tr must have room for CRP_SCORE_MAX_TRANSITIONS;
 * *ntr receives how many were filled.
 *
 * Returns CRP_OK, CRP_INVAL (id_len 0, tenant_len > CRP_TENANT_MAX, tenant
 * NULL with a length), or the table's insert errors (CRP_FULL,
 * CRP_IDS_FULL, CRP_TENANTS_FULL), in which case nothing changed.
 * Caller: the shard writer of the id's key; allocates nothing. */
crp_err crp_score_apply_sw(crp_table *t, const crp_policy *p, const crp_event *ev, uint64_t now_ms,
                           crp_transition *tr, size_t *ntr);

/* Called for each event of a batch that changed state (ntr >= 1). */
typedef void crp_transition_fn(void *ctx, const crp_event *ev, const crp_transition *tr,
                               size_t ntr);

/* Applies n events in order, as crp_score_apply_sw each, but hashes and
 * prefetches each event's home slot a few events ahead so that the memory
 * misses of neighbouring events overlap (the table does not fit in cache).
 * Calls fn (may be NULL) for every event that produced transitions. Returns
 * the number of events applied; the others were refused by the table
 * (CRP_FULL, CRP_IDS_FULL, CRP_TENANTS_FULL, CRP_INVAL) and are counted in
 * *refused. Caller: the shard writer of every event's key. */
size_t crp_score_apply_batch_sw(crp_table *t, const crp_policy *p, const crp_event *ev, size_t n,
                                uint64_t now_ms, crp_transition_fn *fn, void *ctx,
                                size_t *refused);

/* Admin removal by key (crp_score_remove on the stored entry). Returns
 * CRP_OK, CRP_NOTFOUND when the key is absent, or CRP_CONFLICT when it is not
 * RESTRICTED. Caller: the key's shard writer. */
crp_err crp_score_remove_sw(crp_table *t, const crp_policy *p, const crp_key *k, uint64_t now_ms,
                            crp_transition *tr);

/* Manual block by id, inserting the connector (with the tenant) when
 * unknown; tr->from is then CRP_STATE_UNKNOWN. Returns CRP_OK (tr->kind is
 * CRP_TR_NONE when it was already manually blocked), CRP_INVAL for bad
 * lengths, or the table's insert errors. Caller: the shard writer of the
 * id's key. */
crp_err crp_score_block_sw(crp_table *t, const crp_policy *p, const void *id, size_t id_len,
                           const void *tenant, size_t tenant_len, uint64_t now_ms,
                           crp_transition *tr);

/* Applies crp_score_tick to a stored entry and publishes it when it changed.
 * Returns CRP_OK (*changed tells whether a transition was written to *tr)
 * or CRP_NOTFOUND. For a periodic sweep over restricted and probation
 * connectors and over dirty ones. Caller: the key's shard writer. */
crp_err crp_score_tick_sw(crp_table *t, const crp_policy *p, const crp_key *k, uint64_t now_ms,
                          crp_transition *tr, bool *changed);

#endif
