/* Scoring: decayed counters, sliding recipient windows, rules and the
 * connector state machine, as pure functions over one crp_entry.
 *
 * INVARIANTS (for every entry these functions leave behind):
 *  - state is ACTIVE, RESTRICTED or PROBATION. A zeroed entry (state UNKNOWN)
 *    is accepted as a fresh ACTIVE connector.
 *  - ACTIVE: reasons == 0, since_ms == 0, until_midnight == false.
 *  - RESTRICTED: reasons != 0; since_ms = when it was restricted;
 *    until_midnight only when the engine restricted it under restrict_today
 *    and it carries no MANUAL bit.
 *  - PROBATION: reasons == 0, since_ms = start of probation,
 *    until_midnight == false.
 *  - dirty == (state != ACTIVE || a bad-signal counter >= 0.5), evaluated at
 *    the time of the last change (a tick may clear it later as counters
 *    decay).
 *  - The payload's counters are decayed to last_ms and its window buckets
 *    are the hour and day containing last_ms and the ones before them.
 *
 * Legal transitions and who makes them:
 *   ACTIVE/PROBATION -> RESTRICTED   a rule trips on an event (engine)
 *   any              -> RESTRICTED   manual block (admin)
 *   RESTRICTED       -> PROBATION/ACTIVE  admin removal; or, for engine
 *                       restrictions only, midnight / auto release (time)
 *   PROBATION        -> ACTIVE       probation over (time)
 * Every move out of RESTRICTED resets the counters.
 *
 * Nothing here allocates, locks or touches global state; the hot path is
 * crp_score_event, which costs one exp2() when time moved since the last
 * event and a few dozen arithmetic operations otherwise.
 */
#include "crp/scoring.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define HOUR_MS 3600000ull
#define DAY_MS  86400000ull

/* A counter at or above this marks the connector as carrying a bad signal:
 * half a message is what one bad message decays to after one half-life. */
#define BAD_SIGNAL 0.5f

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

static const char *const rule_names[CRP_RULE_COUNT] = {
    [CRP_RULE_SPAM_RATIO] = "spam_ratio",
    [CRP_RULE_PHISH_RATIO] = "phish_ratio",
    [CRP_RULE_HC_PHISH] = "high_confidence_phish",
    [CRP_RULE_MALWARE] = "malware",
    [CRP_RULE_RECIPIENTS_HOUR] = "recipients_per_hour",
    [CRP_RULE_RECIPIENTS_DAY] = "recipients_per_day",
};

static const uint8_t rule_reasons[CRP_RULE_COUNT] = {
    [CRP_RULE_SPAM_RATIO] = CRP_REASON_SPAM_RATIO,
    [CRP_RULE_PHISH_RATIO] = CRP_REASON_PHISH_RATIO,
    [CRP_RULE_HC_PHISH] = CRP_REASON_HC_PHISH,
    [CRP_RULE_MALWARE] = CRP_REASON_MALWARE,
    [CRP_RULE_RECIPIENTS_HOUR] = CRP_REASON_SENDING_LIMIT,
    [CRP_RULE_RECIPIENTS_DAY] = CRP_REASON_SENDING_LIMIT,
};

static const char *const reason_names[] = {
    "spam_ratio", "phish_ratio", "high_confidence_phish", "malware", "sending_limit", "manual",
};

static const char *const state_names[] = {
    [CRP_STATE_UNKNOWN] = "unknown",
    [CRP_STATE_ACTIVE] = "active",
    [CRP_STATE_RESTRICTED] = "restricted",
    [CRP_STATE_PROBATION] = "probation",
};


static const char *const kind_names[] = {
    [CRP_TR_NONE] = "none",
    [CRP_TR_RESTRICTED] = "restricted",
    [CRP_TR_RELEASED] = "released",
    [CRP_TR_UNBLOCKED] = "unblocked",
    [CRP_TR_BLOCKED] = "blocked",
    [CRP_TR_PROBATION_ENDED] = "probation_ended",
    [CRP_TR_WOULD_RESTRICT] = "would_restrict",
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

const char *crp_rule_name(int rule)
{
    if (rule < 0 || rule >= CRP_RULE_COUNT)
        return "unknown";
    return rule_names[rule];
}

const char *crp_state_name(int state)
{
    if (state < 0 || (size_t)state >= COUNT_OF(state_names))
        return "unknown";
    return state_names[state];
}

const char *crp_transition_kind_name(int kind)
{
    if (kind < 0 || (size_t)kind >= COUNT_OF(kind_names))
        return "unknown";
    return kind_names[kind];
}

void crp_policy_from_config(crp_policy *p, const crp_config *cfg)
{
    p->half_life_ms = cfg->scoring.half_life_ms;
    p->min_messages = cfg->scoring.min_messages;
    p->spam_ratio = cfg->scoring.spam_ratio;
    p->phish_ratio = cfg->scoring.phish_ratio;
    p->high_confidence_phish = cfg->scoring.high_confidence_phish;
    p->malware = cfg->scoring.malware;
    p->recipients_per_hour = cfg->scoring.recipients_per_hour;
    p->recipients_per_day = cfg->scoring.recipients_per_day;
    p->action = cfg->scoring.action;
    p->auto_release_after_ms = cfg->scoring.auto_release_after_ms;
    p->probation_ms = cfg->scoring.probation_ms;
    p->probation_factor = cfg->scoring.probation_factor;
}

size_t crp_reason_names(unsigned bits, const char **out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < COUNT_OF(reason_names) && k < n; i++) {
        if (bits & (1u << i))
            out[k++] = reason_names[i];
    }
    return k;
}

/* ------------------------------------------------------------------------ */
/* Policy                                                                    */
/* ------------------------------------------------------------------------ */

void crp_policy_defaults(crp_policy *p)
{
    *p = (crp_policy){
        .half_life_ms = HOUR_MS,
        .min_messages = 20,
        .spam_ratio = 0.5,
        .phish_ratio = 0.1,
        .high_confidence_phish = 3,
        .malware = 3,
        .recipients_per_hour = 10000,
        .recipients_per_day = 100000,
        .action = CRP_ACTION_RESTRICT,
        .auto_release_after_ms = 0,
        .probation_ms = 24 * HOUR_MS,
        .probation_factor = 0.5,
    };
}

crp_err crp_policy_check(const crp_policy *p, const char **why)
{
    const char *bad = NULL;

    /* Written as !(x > 0) so that NaN is rejected too. */
    if (!(p->spam_ratio > 0 && p->spam_ratio <= 1))
        bad = "spam_ratio";
    else if (!(p->phish_ratio > 0 && p->phish_ratio <= 1))
        bad = "phish_ratio";
    else if (!(p->high_confidence_phish > 0 && isfinite(p->high_confidence_phish)))
        bad = "high_confidence_phish";
    else if (!(p->malware > 0 && isfinite(p->malware)))
        bad = "malware";
    else if (p->recipients_per_hour == 0)
        bad = "recipients_per_hour";
    else if (p->recipients_per_day == 0)
        bad = "recipients_per_day";
    else if ((unsigned)p->action > CRP_ACTION_ALERT_ONLY)
        bad = "action";
    else if (!(p->probation_factor > 0 && p->probation_factor <= 1))
        bad = "probation_factor";
    if (why != NULL)
        *why = bad;
    return bad == NULL ? CRP_OK : CRP_INVAL;
}

/* ------------------------------------------------------------------------ */
/* Counters and windows                                                      */
/* ------------------------------------------------------------------------ */

static uint64_t add_sat64(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint32_t add_sat32(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

/* 2^(-dt / half_life). Only called with dt > 0; exp2 underflows cleanly to
 * 0 for very long idle times. It multiplies by the reciprocal on purpose:
 * 1 / half_life does not depend on the entry, so the CPU computes it while
 * the entry is still coming from memory, and the chain that does wait for
 * the entry has a multiply where a division would be (about 3 ns shorter
 * per event, measured). The exponent differs from a true division by at
 * most one ulp. */
static double decay_factor(const crp_policy *p, uint64_t dt)
{
    if (p->half_life_ms == 0)
        return 1.0;
    double per_ms = 1.0 / (double)p->half_life_ms;
    return exp2(-(double)dt * per_ms);
}

/* Moves a two-bucket window from the bucket of `last` to the bucket of
 * `at` (at >= last): one bucket on, the current becomes the previous; two or
 * more on, both are empty. */
static void window_advance(uint32_t *cur, uint32_t *prev, uint64_t last, uint64_t at, uint64_t len)
{
    uint64_t lb = last / len, ab = at / len;

    if (ab == lb)
        return;
    *prev = ab == lb + 1 ? *cur : 0;
    *cur = 0;
}

/* The sliding-window estimate at `at` (>= last) of a window whose buckets
 * are those of `last`. See crp_score in the header for its error bound. */
static double window_estimate(uint32_t cur, uint32_t prev, uint64_t last, uint64_t at, uint64_t len)
{
    window_advance(&cur, &prev, last, at, len);
    double elapsed = (double)(at % len) / (double)len;
    return (double)cur + (double)prev * (1.0 - elapsed);
}

static bool score_empty(const crp_score *s)
{
    return s->messages == 0 && s->rcpt_hour_cur == 0 && s->rcpt_hour_prev == 0 &&
           s->rcpt_day_cur == 0 && s->rcpt_day_prev == 0;
}

/* Brings the stored counters from e->last_ms forward to t (t >= last_ms):
 * decays them, moves the windows, and makes t the new last_ms. */
static void score_advance(const crp_policy *p, crp_entry *e, crp_score *s, uint64_t t)
{
    uint64_t dt = t - e->last_ms;

    if (dt == 0)
        return;
    float f = (float)decay_factor(p, dt);
    s->messages *= f;
    s->spam *= f;
    s->phish *= f;
    s->hc_phish *= f;
    s->malware *= f;
    window_advance(&s->rcpt_hour_cur, &s->rcpt_hour_prev, e->last_ms, t, HOUR_MS);
    window_advance(&s->rcpt_day_cur, &s->rcpt_day_prev, e->last_ms, t, DAY_MS);
    e->last_ms = t;
}

/* Adds an event's recipients to one window. An event in last_ms's bucket
 * goes to the current bucket, one in the bucket before to the previous; an
 * older one has left the window already. */
static void window_add(uint32_t *cur, uint32_t *prev, uint64_t last, uint64_t t, uint64_t len,
                       uint32_t n)
{
    uint64_t lb = last / len, tb = t / len;

    if (tb == lb)
        *cur = add_sat32(*cur, n);
    else if (tb + 1 == lb)
        *prev = add_sat32(*prev, n);
}

/* Adds one event at time t to counters already advanced to
 * max(t, e->last_ms). Out-of-order events (t < last_ms) are added without
 * decay: counting an old bad message at full weight errs on the safe side,
 * and saves an exp2() for the rare late event. */
static void score_add(crp_score *s, const crp_entry *e, const crp_event *ev, uint64_t t)
{
    unsigned v = ev->verdict;

    s->messages += 1.0f;
    if (v & (CRP_VERDICT_SPAM | CRP_VERDICT_HC_SPAM))
        s->spam += 1.0f;
    if (v & (CRP_VERDICT_PHISH | CRP_VERDICT_HC_PHISH))
        s->phish += 1.0f;
    if (v & CRP_VERDICT_HC_PHISH)
        s->hc_phish += 1.0f;
    if (v & CRP_VERDICT_MALWARE)
        s->malware += 1.0f;
    window_add(&s->rcpt_hour_cur, &s->rcpt_hour_prev, e->last_ms, t, HOUR_MS, ev->recipients);
    window_add(&s->rcpt_day_cur, &s->rcpt_day_prev, e->last_ms, t, DAY_MS, ev->recipients);
}

/* The same expressions as evaluate(), so what get-connector shows is what
 * the rules judge. */
void crp_score_values_at(const crp_policy *p, const crp_entry *e, uint64_t now_ms,
                         crp_score_values *out)
{
    uint64_t last = e->last_ms, at = now_ms > last ? now_ms : last;
    double f = at > last ? decay_factor(p, at - last) : 1.0;
    crp_score s;

    crp_score_get(e, &s);
    out->messages = (double)s.messages * f;
    out->spam = (double)s.spam * f;
    out->phish = (double)s.phish * f;
    out->hc_phish = (double)s.hc_phish * f;
    out->malware = (double)s.malware * f;
    out->recipients_hour = window_estimate(s.rcpt_hour_cur, s.rcpt_hour_prev, last, at, HOUR_MS);
    out->recipients_day = window_estimate(s.rcpt_day_cur, s.rcpt_day_prev, last, at, DAY_MS);
}

/* ------------------------------------------------------------------------ */
/* Rules                                                                     */
/* ------------------------------------------------------------------------ */

/* Records one rule's evaluation when evidence is wanted, and returns its
 * reason bit when it tripped. */
static unsigned judge(crp_rule_eval *out, int rule, double value, double threshold, bool tripped)
{
    if (out != NULL) {
        out[rule] = (crp_rule_eval){
            .name = rule_names[rule],
            .value = value,
            .threshold = threshold,
            .rule = (uint8_t)rule,
            .reason = rule_reasons[rule],
            .tripped = tripped,
        };
    }
    return tripped ? rule_reasons[rule] : 0;
}

/* Evaluates every rule on the score s (stored as of `last`) at time `at`
 * (>= last) with the thresholds of `state`, and returns the tripped reason
 * bits. With out != NULL it also writes the CRP_RULE_COUNT evaluations.
 *
 * This is the one place rules are decided, for the event path and explain
 * alike, so evidence and decisions cannot disagree. Without `out` it skips
 * work whose outcome is already known: a ratio below min_messages never
 * trips (no division), and a window whose two buckets together are under
 * the limit cannot be over it (the estimate is at most their sum), so most
 * events cost a handful of comparisons here. Values are computed by the same
 * expressions either way. */
static unsigned evaluate(const crp_policy *p, uint8_t state, const crp_score *s, uint64_t last,
                         uint64_t at, crp_rule_eval *out)
{
    double f = at > last ? decay_factor(p, at - last) : 1.0;
    double k = state == CRP_STATE_PROBATION ? p->probation_factor : 1.0;
    double msgs = (double)s->messages * f;
    bool volume = msgs >= (double)p->min_messages;
    unsigned bits = 0;

    double t = p->spam_ratio * k;
    if (out != NULL || volume) {
        double r = msgs > 0 ? (double)s->spam * f / msgs : 0;
        bits |= judge(out, CRP_RULE_SPAM_RATIO, r, t, volume && r >= t);
    }
    t = p->phish_ratio * k;
    if (out != NULL || volume) {
        double r = msgs > 0 ? (double)s->phish * f / msgs : 0;
        bits |= judge(out, CRP_RULE_PHISH_RATIO, r, t, volume && r >= t);
    }
    double c = (double)s->hc_phish * f;
    t = p->high_confidence_phish * k;
    bits |= judge(out, CRP_RULE_HC_PHISH, c, t, c >= t);
    c = (double)s->malware * f;
    t = p->malware * k;
    bits |= judge(out, CRP_RULE_MALWARE, c, t, c >= t);

    t = (double)p->recipients_per_hour * k;
    if (out != NULL || (double)s->rcpt_hour_cur + (double)s->rcpt_hour_prev > t) {
        c = window_estimate(s->rcpt_hour_cur, s->rcpt_hour_prev, last, at, HOUR_MS);
        bits |= judge(out, CRP_RULE_RECIPIENTS_HOUR, c, t, c > t);
    }
    t = (double)p->recipients_per_day * k;
    if (out != NULL || (double)s->rcpt_day_cur + (double)s->rcpt_day_prev > t) {
        c = window_estimate(s->rcpt_day_cur, s->rcpt_day_prev, last, at, DAY_MS);
        bits |= judge(out, CRP_RULE_RECIPIENTS_DAY, c, t, c > t);
    }
    return bits;
}

size_t crp_score_explain(const crp_policy *p, const crp_entry *e, uint64_t now_ms,
                         crp_rule_eval *out, size_t n)
{
    crp_rule_eval all[CRP_RULE_COUNT];
    crp_score s;

    crp_score_get(e, &s);
    evaluate(p, e->state, &s, e->last_ms, now_ms > e->last_ms ? now_ms : e->last_ms, all);
    if (n > CRP_RULE_COUNT)
        n = CRP_RULE_COUNT;
    memcpy(out, all, n * sizeof *out);
    return n;
}

/* ------------------------------------------------------------------------ */
/* State machine                                                             */
/* ------------------------------------------------------------------------ */

static bool bad_signal(const crp_score *s, float f)
{
    float worst = s->spam;

    if (s->phish > worst)
        worst = s->phish;
    if (s->hc_phish > worst)
        worst = s->hc_phish;
    if (s->malware > worst)
        worst = s->malware;
    return worst * f >= BAD_SIGNAL;
}

/* Keeps the table from evicting a connector worth remembering: one that is
 * restricted or on probation, or has recently sent bad mail. */
static void update_dirty(crp_entry *e, const crp_score *s)
{
    e->dirty = e->state != CRP_STATE_ACTIVE || bad_signal(s, 1.0f);
}

static void tr_init(crp_transition *tr, uint8_t kind, uint8_t from, const crp_entry *e,
                    uint8_t reasons, uint64_t at)
{
    tr->at_ms = at;
    tr->kind = kind;
    tr->from = from;
    tr->to = e->state;
    tr->reasons = reasons;
    tr->would_restrict = kind == CRP_TR_WOULD_RESTRICT;
    tr->n_evidence = 0;
}

/* Ends a restriction: counters reset, then probation or ACTIVE. */
static void release(const crp_policy *p, crp_entry *e, uint64_t now_ms, uint8_t kind,
                    crp_transition *tr)
{
    uint8_t lifted = e->reasons;

    memset(e->payload, 0, sizeof e->payload);
    e->reasons = 0;
    e->until_midnight = false;
    if (p->probation_ms > 0) {
        e->state = CRP_STATE_PROBATION;
        e->since_ms = now_ms;
        e->dirty = true;
    } else {
        e->state = CRP_STATE_ACTIVE;
        e->since_ms = 0;
        e->dirty = false;
    }
    tr_init(tr, kind, CRP_STATE_RESTRICTED, e, lifted, now_ms);
}

/* When an engine restriction ends by itself, or UINT64_MAX if never. */
static uint64_t release_due(const crp_policy *p, const crp_entry *e)
{
    uint64_t due = UINT64_MAX;

    if (e->reasons & CRP_REASON_MANUAL)
        return UINT64_MAX;
    if (e->until_midnight)
        due = (e->since_ms / DAY_MS + 1) * DAY_MS;
    if (p->auto_release_after_ms > 0) {
        uint64_t after = add_sat64(e->since_ms, p->auto_release_after_ms);
        if (after < due)
            due = after;
    }
    return due;
}

/* Applies the time-driven transition due at now_ms, if any. */
static bool tick_transition(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr)
{
    if (e->state == CRP_STATE_RESTRICTED) {
        if (now_ms < release_due(p, e))
            return false;
        release(p, e, now_ms, CRP_TR_RELEASED, tr);
        return true;
    }
    if (e->state == CRP_STATE_PROBATION) {
        if (now_ms < add_sat64(e->since_ms, p->probation_ms))
            return false;
        e->state = CRP_STATE_ACTIVE;
        e->since_ms = 0;
        e->reasons = 0;
        tr_init(tr, CRP_TR_PROBATION_ENDED, CRP_STATE_PROBATION, e, 0, now_ms);
        return true;
    }
    if (e->state != CRP_STATE_ACTIVE) {
        /* A zeroed entry: a fresh connector nobody has scored yet. */
        e->state = CRP_STATE_ACTIVE;
        e->reasons = 0;
        e->since_ms = 0;
        e->until_midnight = false;
    }
    return false;
}

bool crp_score_tick(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr)
{
    bool changed = tick_transition(p, e, now_ms, tr);

    if (e->dirty && e->state == CRP_STATE_ACTIVE) {
        crp_score s;
        float f = 1.0f;

        crp_score_get(e, &s);
        if (now_ms > e->last_ms)
            f = (float)decay_factor(p, now_ms - e->last_ms);
        e->dirty = bad_signal(&s, f);
    }
    return changed;
}

size_t crp_score_event(const crp_policy *p, crp_entry *e, const crp_event *ev, uint64_t now_ms,
                       crp_transition *tr)
{
    size_t n = 0;
    crp_score s, before;
    uint64_t t = ev->ts_ms;

    if (tick_transition(p, e, now_ms, &tr[n]))
        n++;

    if (t == 0 || t > now_ms)
        t = now_ms;
    crp_score_get(e, &s);
    /* A connector with no history has nothing to decay, so its clock can
     * start at this event even when the table stamped it later (on insert,
     * with the time of receipt). Otherwise a first event stamped a little
     * earlier would count as out of order. */
    if (t < e->last_ms && score_empty(&s))
        e->last_ms = t;
    if (t >= e->last_ms)
        score_advance(p, e, &s, t);
    before = s;
    score_add(&s, e, ev, t);
    crp_score_put(e, &s);

    if (e->state != CRP_STATE_RESTRICTED) {
        uint64_t at = e->last_ms;
        unsigned bits = evaluate(p, e->state, &s, at, at, NULL);

        /* With alert_only, report only when this event makes a rule trip
         * that did not trip just before it; a connector that stays over a
         * threshold would otherwise alert on every message. */
        if (bits != 0 && p->action == CRP_ACTION_ALERT_ONLY)
            bits &= ~evaluate(p, e->state, &before, at, at, NULL);
        if (bits != 0) {
            crp_transition *out = &tr[n++];
            uint8_t from = e->state;

            bits = evaluate(p, e->state, &s, at, at, out->evidence);
            if (p->action == CRP_ACTION_ALERT_ONLY) {
                tr_init(out, CRP_TR_WOULD_RESTRICT, from, e, (uint8_t)bits, at);
            } else {
                e->state = CRP_STATE_RESTRICTED;
                e->reasons = (uint8_t)bits;
                e->since_ms = at;
                e->until_midnight = p->action == CRP_ACTION_RESTRICT_TODAY;
                tr_init(out, CRP_TR_RESTRICTED, from, e, (uint8_t)bits, at);
            }
            out->n_evidence = CRP_RULE_COUNT;
        }
    }
    update_dirty(e, &s);
    return n;
}

crp_err crp_score_remove(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr)
{
    if (e->state != CRP_STATE_RESTRICTED)
        return CRP_CONFLICT;
    release(p, e, now_ms, CRP_TR_UNBLOCKED, tr);
    return CRP_OK;
}

bool crp_score_block(const crp_policy *p, crp_entry *e, uint64_t now_ms, crp_transition *tr)
{
    uint8_t from = e->state;

    if (from == CRP_STATE_RESTRICTED && (e->reasons & CRP_REASON_MANUAL)) {
        tr_init(tr, CRP_TR_NONE, from, e, e->reasons, now_ms);
        return false;
    }
    if (from != CRP_STATE_ACTIVE && from != CRP_STATE_RESTRICTED && from != CRP_STATE_PROBATION)
        from = e->state = CRP_STATE_ACTIVE;
    /* The evidence is what the rules said just before the block, with the
     * thresholds of the state the connector was in. */
    crp_score_explain(p, e, now_ms, tr->evidence, CRP_RULE_COUNT);
    if (from == CRP_STATE_RESTRICTED) {
        e->reasons |= CRP_REASON_MANUAL;
    } else {
        e->state = CRP_STATE_RESTRICTED;
        e->reasons = CRP_REASON_MANUAL;
        e->since_ms = now_ms;
    }
    e->until_midnight = false;
    e->dirty = true;
    tr_init(tr, CRP_TR_BLOCKED, from, e, e->reasons, now_ms);
    tr->n_evidence = CRP_RULE_COUNT;
    return true;
}
