/* Scoring: rules, decay, windows and the state machine, tested on bare
 * crp_entry records (pure), plus a few tests of the table glue. */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <string.h>

#include "crp/scoring.h"
#include "crp/table.h"

#define HOUR 3600000ull
#define DAY  86400000ull
/* A UTC midnight, and 10:00 that day: every test starts there. */
#define DAY0 (19700 * DAY)
#define T0   (DAY0 + 10 * HOUR)

static crp_policy policy(void)
{
    crp_policy p;
    crp_policy_defaults(&p);
    return p;
}

/* What the table inserts: ACTIVE, zero payload, last_ms = now. */
static crp_entry fresh(uint64_t now)
{
    crp_entry e;
    memset(&e, 0, sizeof e);
    e.state = CRP_STATE_ACTIVE;
    e.last_ms = now;
    return e;
}

/* One event at `ts`, received at `ts` (or at `now` for out-of-order tests). */
static size_t send_at(const crp_policy *p, crp_entry *e, uint64_t ts, uint64_t now,
                      unsigned verdict, unsigned rcpt, crp_transition *tr)
{
    crp_event ev = {.id = "c1",
                    .id_len = 2,
                    .ts_ms = ts,
                    .verdict = (uint16_t)verdict,
                    .recipients = (uint16_t)rcpt};
    return crp_score_event(p, e, &ev, now, tr);
}

static size_t send(const crp_policy *p, crp_entry *e, uint64_t ts, unsigned verdict, unsigned rcpt,
                   crp_transition *tr)
{
    return send_at(p, e, ts, ts, verdict, rcpt, tr);
}

/* Sends `count` identical events at ts and checks none of them changes
 * anything. */
static void send_quiet(const crp_policy *p, crp_entry *e, uint64_t ts, unsigned verdict,
                       unsigned count)
{
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    for (unsigned i = 0; i < count; i++)
        cr_assert(eq(sz, send(p, e, ts, verdict, 1, tr), 0));
}

static crp_score score_of(const crp_entry *e)
{
    crp_score s;
    crp_score_get(e, &s);
    return s;
}

/* Restricts e through the malware rule at ts. */
static void restrict_by_malware(const crp_policy *p, crp_entry *e, uint64_t ts)
{
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    size_t n = 0;
    for (int i = 0; i < 100 && n == 0; i++)
        n = send(p, e, ts, CRP_VERDICT_MALWARE, 1, tr);
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(u8, e->state, CRP_STATE_RESTRICTED));
}

/* ------------------------------------------------------------------------ */

Test(scoring, policy_defaults)
{
    crp_policy p = policy();
    cr_assert(eq(u64, p.half_life_ms, HOUR));
    cr_assert(eq(u32, p.min_messages, 20));
    cr_assert(eq(dbl, p.spam_ratio, 0.5));
    cr_assert(eq(dbl, p.phish_ratio, 0.1));
    cr_assert(eq(dbl, p.high_confidence_phish, 3));
    cr_assert(eq(dbl, p.malware, 3));
    cr_assert(eq(u64, p.recipients_per_hour, 10000));
    cr_assert(eq(u64, p.recipients_per_day, 100000));
    cr_assert(eq(int, p.action, CRP_ACTION_RESTRICT));
    cr_assert(eq(u64, p.auto_release_after_ms, 0));
    cr_assert(eq(u64, p.probation_ms, 24 * HOUR));
    cr_assert(eq(dbl, p.probation_factor, 0.5));
    cr_assert(eq(int, crp_policy_check(&p, NULL), CRP_OK));
}

Test(scoring, policy_check_names_bad_field)
{
    crp_policy p = policy();
    const char *why = NULL;
    p.phish_ratio = 0;
    cr_assert(eq(int, crp_policy_check(&p, &why), CRP_INVAL));
    cr_assert(eq(str, (char *)why, "phish_ratio"));
    p = policy();
    p.probation_factor = 1.5;
    cr_assert(eq(int, crp_policy_check(&p, &why), CRP_INVAL));
    cr_assert(eq(str, (char *)why, "probation_factor"));
    p = policy();
    p.malware = NAN;
    cr_assert(eq(int, crp_policy_check(&p, &why), CRP_INVAL));
    cr_assert(eq(str, (char *)why, "malware"));
}

Test(scoring, names)
{
    cr_assert(eq(str, (char *)crp_state_name(0), "unknown"));
    cr_assert(eq(str, (char *)crp_state_name(1), "active"));
    cr_assert(eq(str, (char *)crp_state_name(2), "restricted"));
    cr_assert(eq(str, (char *)crp_state_name(3), "probation"));
    cr_assert(eq(str, (char *)crp_state_name(9), "unknown"));
    cr_assert(eq(str, (char *)crp_state_name(-1), "unknown"));

    const char *names[8];
    size_t n = crp_reason_names(0x3f, names, 8);
    cr_assert(eq(sz, n, 6));
    cr_assert(eq(str, (char *)names[0], "spam_ratio"));
    cr_assert(eq(str, (char *)names[1], "phish_ratio"));
    cr_assert(eq(str, (char *)names[2], "high_confidence_phish"));
    cr_assert(eq(str, (char *)names[3], "malware"));
    cr_assert(eq(str, (char *)names[4], "sending_limit"));
    cr_assert(eq(str, (char *)names[5], "manual"));
    n = crp_reason_names(CRP_REASON_MALWARE | CRP_REASON_MANUAL | 0x80, names, 8);
    cr_assert(eq(sz, n, 2));
    cr_assert(eq(str, (char *)names[0], "malware"));
    cr_assert(eq(str, (char *)names[1], "manual"));
    cr_assert(eq(sz, crp_reason_names(0x3f, names, 2), 2));

    cr_assert(eq(str, (char *)crp_rule_name(CRP_RULE_RECIPIENTS_HOUR), "recipients_per_hour"));
    cr_assert(eq(str, (char *)crp_rule_name(CRP_RULE_HC_PHISH), "high_confidence_phish"));
    cr_assert(eq(str, (char *)crp_transition_kind_name(CRP_TR_WOULD_RESTRICT), "would_restrict"));

    cr_assert(eq(str, (char *)crp_action_name(CRP_ACTION_RESTRICT), "restrict"));
}

Test(scoring, policy_from_config_copies_every_field)
{
    crp_config cfg;
    crp_config_defaults(&cfg);
    cfg.scoring.half_life_ms = 1234;
    cfg.scoring.min_messages = 7.5;
    cfg.scoring.spam_ratio = 0.25;
    cfg.scoring.phish_ratio = 0.05;
    cfg.scoring.high_confidence_phish = 2;
    cfg.scoring.malware = 4;
    cfg.scoring.recipients_per_hour = 11;
    cfg.scoring.recipients_per_day = 22;
    cfg.scoring.action = CRP_ACTION_ALERT_ONLY;
    cfg.scoring.auto_release_after_ms = 33;
    cfg.scoring.probation_ms = 44;
    cfg.scoring.probation_factor = 0.75;
    crp_policy p;
    crp_policy_from_config(&p, &cfg);
    cr_assert(eq(u64, p.half_life_ms, 1234));
    cr_assert(eq(dbl, p.min_messages, 7.5));
    cr_assert(eq(dbl, p.spam_ratio, 0.25));
    cr_assert(eq(dbl, p.phish_ratio, 0.05));
    cr_assert(eq(dbl, p.high_confidence_phish, 2));
    cr_assert(eq(dbl, p.malware, 4));
    cr_assert(eq(u64, p.recipients_per_hour, 11));
    cr_assert(eq(u64, p.recipients_per_day, 22));
    cr_assert(eq(int, p.action, CRP_ACTION_ALERT_ONLY));
    cr_assert(eq(u64, p.auto_release_after_ms, 33));
    cr_assert(eq(u64, p.probation_ms, 44));
    cr_assert(eq(dbl, p.probation_factor, 0.75));
    crp_config_fini(&cfg);
}

Test(scoring, score_fits_payload)
{
    cr_assert(eq(sz, sizeof(crp_score), CRP_PAYLOAD_SIZE));
}

/* ------------------------------------------------------------------------ */
/* Rules: one event below the threshold does not trip, the one reaching it  */
/* does.                                                                     */

Test(scoring, spam_ratio_trips_at_threshold)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, 0, 11);
    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 10);                       /* 10 / 21 < 0.5 */
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_HC_SPAM, 1, tr), 1)); /* 11 / 22 */
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RESTRICTED));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, tr[0].to, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SPAM_RATIO));
    cr_assert(eq(u64, tr[0].at_ms, T0));
    cr_assert(eq(u8, e.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, e.reasons, CRP_REASON_SPAM_RATIO));
    cr_assert(eq(u64, e.since_ms, T0));
    cr_assert(not(e.until_midnight));
    cr_assert(e.dirty);
    cr_assert(eq(u8, tr[0].n_evidence, CRP_RULE_COUNT));
    cr_assert(eq(str, (char *)tr[0].evidence[CRP_RULE_SPAM_RATIO].name, "spam_ratio"));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_SPAM_RATIO].value, 0.5));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_SPAM_RATIO].threshold, 0.5));
    cr_assert(tr[0].evidence[CRP_RULE_SPAM_RATIO].tripped);
    cr_assert(not(tr[0].evidence[CRP_RULE_PHISH_RATIO].tripped));
}

Test(scoring, spam_ratio_needs_min_messages)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    crp_rule_eval ex[CRP_RULE_COUNT];

    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 19);
    cr_assert(eq(sz, crp_score_explain(&p, &e, T0, ex, CRP_RULE_COUNT), CRP_RULE_COUNT));
    cr_assert(eq(dbl, ex[CRP_RULE_SPAM_RATIO].value, 1.0));
    cr_assert(not(ex[CRP_RULE_SPAM_RATIO].tripped));
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_SPAM, 1, tr), 1));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SPAM_RATIO));
}

Test(scoring, phish_ratio_trips_at_threshold)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, 0, 27);
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 2);                     /* 2 / 29 */
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_PHISH, 1, tr), 1)); /* 3 / 30 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_PHISH_RATIO));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_PHISH_RATIO].value, 0.1));
}

Test(scoring, phish_ratio_needs_min_messages)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, 0, 17);
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 2);     /* 2 / 19: ratio over, volume under */
    cr_assert(eq(sz, send(&p, &e, T0, 0, 1, tr), 1)); /* 2 / 20 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_PHISH_RATIO));
}

Test(scoring, hc_phish_trips_at_threshold)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, CRP_VERDICT_HC_PHISH, 2);
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_HC_PHISH, 1, tr), 1));
    /* Three messages are below min_messages: only the count rule trips. */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_HC_PHISH));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_HC_PHISH].value, 3.0));
    crp_score s = score_of(&e);
    cr_assert(eq(flt, s.phish, 3.0f)); /* high-confidence phish is phish too */
    cr_assert(eq(flt, s.hc_phish, 3.0f));
}

Test(scoring, plain_phish_is_not_hc_phish)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 10);
    crp_score s = score_of(&e);
    cr_assert(eq(flt, s.hc_phish, 0.0f));
    cr_assert(eq(flt, s.phish, 10.0f));
}

Test(scoring, malware_trips_at_threshold)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, CRP_VERDICT_MALWARE | CRP_VERDICT_BULK, 2);
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_MALWARE, 1, tr), 1));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_MALWARE));
    cr_assert(eq(str, (char *)tr[0].evidence[CRP_RULE_MALWARE].name, "malware"));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_MALWARE].threshold, 3.0));
}

Test(scoring, bulk_alone_is_clean)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    send_quiet(&p, &e, T0, CRP_VERDICT_BULK, 50);
    crp_score s = score_of(&e);
    cr_assert(eq(flt, s.messages, 50.0f));
    cr_assert(eq(flt, s.spam + s.phish + s.hc_phish + s.malware, 0.0f));
    cr_assert(not(e.dirty));
}

Test(scoring, sending_limit_hour_is_strictly_over)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    cr_assert(eq(sz, send(&p, &e, T0, 0, 9999, tr), 0));
    cr_assert(eq(sz, send(&p, &e, T0 + 1000, 0, 1, tr), 0)); /* exactly 10000 */
    cr_assert(eq(sz, send(&p, &e, T0 + 2000, 0, 1, tr), 1)); /* 10001 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SENDING_LIMIT));
    const crp_rule_eval *h = &tr[0].evidence[CRP_RULE_RECIPIENTS_HOUR];
    cr_assert(eq(str, (char *)h->name, "recipients_per_hour"));
    cr_assert(eq(u8, h->reason, CRP_REASON_SENDING_LIMIT));
    cr_assert(eq(dbl, h->value, 10001.0));
    cr_assert(eq(dbl, h->threshold, 10000.0));
    cr_assert(h->tripped);
    cr_assert(not(tr[0].evidence[CRP_RULE_RECIPIENTS_DAY].tripped));
    cr_assert(eq(u8, tr[0].evidence[CRP_RULE_RECIPIENTS_DAY].reason, CRP_REASON_SENDING_LIMIT));
}

Test(scoring, sending_limit_day)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.recipients_per_hour = 1000000;
    /* 00:00 .. 09:00 of DAY0, 10000 each: 100000 in the day. */
    for (int h = 0; h < 10; h++)
        cr_assert(eq(sz, send(&p, &e, DAY0 + (uint64_t)h * HOUR, 0, 10000, tr), 0));
    cr_assert(eq(sz, send(&p, &e, DAY0 + 10 * HOUR, 0, 1, tr), 1));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SENDING_LIMIT));
    cr_assert(tr[0].evidence[CRP_RULE_RECIPIENTS_DAY].tripped);
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_RECIPIENTS_DAY].value, 100001.0));
    cr_assert(not(tr[0].evidence[CRP_RULE_RECIPIENTS_HOUR].tripped));
}

Test(scoring, sending_window_slides)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    crp_score_values v;

    /* 8000 at 10:30; at 11:30 half of the 10:00 bucket is still in the
     * window (uniform traffic assumed), at 12:00 none of it. */
    cr_assert(eq(sz, send(&p, &e, T0 + HOUR / 2, 0, 8000, tr), 0));
    crp_score_values_at(&p, &e, T0 + HOUR + HOUR / 2, &v);
    cr_assert(eq(dbl, v.recipients_hour, 4000.0));
    cr_assert(eq(dbl, v.recipients_day, 8000.0));
    crp_score_values_at(&p, &e, T0 + 2 * HOUR, &v);
    cr_assert(eq(dbl, v.recipients_hour, 0.0));
    cr_assert(eq(dbl, v.recipients_day, 8000.0));

    cr_assert(eq(sz, send(&p, &e, T0 + HOUR + HOUR / 2, 0, 6000, tr), 0)); /* 6000 + 4000 */
    cr_assert(eq(sz, send(&p, &e, T0 + HOUR + HOUR / 2, 0, 1, tr), 1));    /* 10001 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SENDING_LIMIT));

    /* The next UTC day starts with yesterday's total in its previous bucket. */
    crp_score_values_at(&p, &e, DAY0 + DAY + DAY / 4, &v);
    cr_assert(eq(dbl, v.recipients_day, 14001.0 * 0.75));
    crp_score_values_at(&p, &e, DAY0 + 2 * DAY, &v);
    cr_assert(eq(dbl, v.recipients_day, 0.0));
}

Test(scoring, recipients_saturate)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_score s = score_of(&e);
    s.rcpt_hour_cur = UINT32_MAX - 5;
    s.rcpt_day_cur = UINT32_MAX - 5;
    crp_score_put(&e, &s);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    send(&p, &e, T0, 0, 100, tr);
    s = score_of(&e);
    cr_assert(eq(u32, s.rcpt_hour_cur, UINT32_MAX));
    cr_assert(eq(u32, s.rcpt_day_cur, UINT32_MAX));
}

/* ------------------------------------------------------------------------ */
/* Decay                                                                     */

Test(scoring, one_half_life_halves_counters)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_score_values v;

    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 1);
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 1);
    send_quiet(&p, &e, T0, CRP_VERDICT_MALWARE, 1);
    send_quiet(&p, &e, T0, 0, 5);
    crp_score_values_at(&p, &e, T0 + HOUR, &v);
    cr_assert(ieee_ulp_eq(dbl, v.messages, 4.0, 4));
    cr_assert(ieee_ulp_eq(dbl, v.spam, 0.5, 4));
    cr_assert(ieee_ulp_eq(dbl, v.phish, 0.5, 4));
    cr_assert(ieee_ulp_eq(dbl, v.malware, 0.5, 4));

    /* The event path decays the stored counters the same way. */
    send_quiet(&p, &e, T0 + HOUR, 0, 1);
    crp_score s = score_of(&e);
    cr_assert(epsilon_eq(flt, s.messages, 5.0f, 1e-5f));
    cr_assert(epsilon_eq(flt, s.spam, 0.5f, 1e-6f));
    cr_assert(eq(u64, e.last_ms, T0 + HOUR));

    /* Two more half-lives: a quarter. */
    crp_score_values_at(&p, &e, T0 + 3 * HOUR, &v);
    cr_assert(epsilon_eq(dbl, v.messages, 1.25, 1e-6));
}

Test(scoring, decay_keeps_ratio)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_rule_eval ex[CRP_RULE_COUNT];

    send_quiet(&p, &e, T0, 0, 60);
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 4); /* 4 / 64, under 0.1 */
    crp_score_explain(&p, &e, T0 + 2 * HOUR, ex, CRP_RULE_COUNT);
    cr_assert(epsilon_eq(dbl, ex[CRP_RULE_PHISH_RATIO].value, 0.0625, 1e-7));
    /* 16 decayed messages: below min_messages again. */
    cr_assert(not(ex[CRP_RULE_PHISH_RATIO].tripped));
}

Test(scoring, zero_half_life_never_decays)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    p.half_life_ms = 0;
    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 1);
    send_quiet(&p, &e, T0 + 30 * DAY, 0, 1);
    crp_score s = score_of(&e);
    cr_assert(eq(flt, s.spam, 1.0f));
    cr_assert(eq(flt, s.messages, 2.0f));
}

Test(scoring, decayed_below_threshold_does_not_trip)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, CRP_VERDICT_MALWARE, 2);
    /* One half-life later the two are worth one: a third does not trip. */
    cr_assert(eq(sz, send(&p, &e, T0 + HOUR, CRP_VERDICT_MALWARE, 1, tr), 0));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
}

/* ------------------------------------------------------------------------ */
/* Event time                                                                */

Test(scoring, zero_or_future_timestamp_means_now)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_at(&p, &e, 0, T0 + 5000, 0, 1, tr);
    cr_assert(eq(u64, e.last_ms, T0 + 5000));
    send_at(&p, &e, T0 + DAY, T0 + 6000, 0, 1, tr);
    cr_assert(eq(u64, e.last_ms, T0 + 6000));
}

Test(scoring, out_of_order_events)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    crp_score s;

    send(&p, &e, T0 + HOUR / 2, CRP_VERDICT_SPAM, 100, tr); /* 10:30 */
    uint64_t last = e.last_ms;

    /* 10:10, same hour: no decay, current hour bucket. */
    send_at(&p, &e, T0 + HOUR / 6, T0 + HOUR / 2, CRP_VERDICT_SPAM, 10, tr);
    s = score_of(&e);
    cr_assert(eq(u64, e.last_ms, last));
    cr_assert(eq(flt, s.spam, 2.0f));
    cr_assert(eq(flt, s.messages, 2.0f));
    cr_assert(eq(u32, s.rcpt_hour_cur, 110));

    /* 09:50: the previous hour bucket, still today. */
    send_at(&p, &e, T0 - HOUR / 6, T0 + HOUR / 2, 0, 20, tr);
    s = score_of(&e);
    cr_assert(eq(u32, s.rcpt_hour_cur, 110));
    cr_assert(eq(u32, s.rcpt_hour_prev, 20));
    cr_assert(eq(u32, s.rcpt_day_cur, 130));
    cr_assert(eq(flt, s.messages, 3.0f)); /* counted at full weight */

    /* 08:00: older than the hour window, still in the day window. */
    send_at(&p, &e, T0 - 2 * HOUR, T0 + HOUR / 2, 0, 40, tr);
    s = score_of(&e);
    cr_assert(eq(u32, s.rcpt_hour_cur, 110));
    cr_assert(eq(u32, s.rcpt_hour_prev, 20));
    cr_assert(eq(u32, s.rcpt_day_cur, 170));

    /* Yesterday: the previous day bucket. Two days ago: dropped. */
    send_at(&p, &e, T0 - DAY, T0 + HOUR / 2, 0, 50, tr);
    send_at(&p, &e, T0 - 2 * DAY, T0 + HOUR / 2, 0, 60, tr);
    s = score_of(&e);
    cr_assert(eq(u32, s.rcpt_day_cur, 170));
    cr_assert(eq(u32, s.rcpt_day_prev, 50));
    cr_assert(eq(flt, s.messages, 6.0f));
    cr_assert(eq(u64, e.last_ms, last));
}

Test(scoring, out_of_order_event_can_trip)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send(&p, &e, T0 + 1000, CRP_VERDICT_MALWARE, 1, tr);
    send(&p, &e, T0 + 1000, CRP_VERDICT_MALWARE, 1, tr);
    cr_assert(eq(sz, send_at(&p, &e, T0 - 1000, T0 + 2000, CRP_VERDICT_MALWARE, 1, tr), 1));
    /* Evaluated, and restricted, at the connector's latest event time. */
    cr_assert(eq(u64, tr[0].at_ms, T0 + 1000));
    cr_assert(eq(u64, e.since_ms, T0 + 1000));
    cr_assert(eq(u64, e.last_ms, T0 + 1000));
}

Test(scoring, first_event_older_than_insert_is_in_order)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0 + 5000); /* inserted at receipt */
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_at(&p, &e, T0 - 2 * HOUR, T0 + 5000, 0, 30, tr);
    cr_assert(eq(u64, e.last_ms, T0 - 2 * HOUR));
    crp_score s = score_of(&e);
    cr_assert(eq(u32, s.rcpt_hour_cur, 30));
    cr_assert(eq(u32, s.rcpt_day_cur, 30));
}

Test(scoring, zeroed_entry_is_a_fresh_connector)
{
    crp_policy p = policy();
    crp_entry e;
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    memset(&e, 0, sizeof e);
    cr_assert(eq(sz, send(&p, &e, T0, 0, 1, tr), 0));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
    cr_assert(eq(u64, e.last_ms, T0));
}

/* ------------------------------------------------------------------------ */
/* Restricted connectors                                                     */

Test(scoring, restricted_keeps_counting_without_retrip)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    restrict_by_malware(&p, &e, T0);
    for (int i = 0; i < 3; i++)
        cr_assert(eq(sz, send(&p, &e, T0 + 3000, CRP_VERDICT_HC_PHISH, 20000, tr), 0));
    cr_assert(eq(u8, e.reasons, CRP_REASON_MALWARE));
    cr_assert(eq(u64, e.since_ms, T0));
    crp_rule_eval ex[CRP_RULE_COUNT];
    crp_score_explain(&p, &e, T0 + 3000, ex, CRP_RULE_COUNT);
    cr_assert(ex[CRP_RULE_HC_PHISH].tripped);
    cr_assert(ex[CRP_RULE_RECIPIENTS_HOUR].tripped);
    cr_assert(eq(dbl, ex[CRP_RULE_HC_PHISH].value, 3.0));
}

Test(scoring, explain_matches_transition_evidence)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    crp_rule_eval ex[CRP_RULE_COUNT];

    /* Some history an hour earlier so decay is involved. */
    send_quiet(&p, &e, T0 - HOUR, CRP_VERDICT_SPAM, 7);
    send_quiet(&p, &e, T0 - HOUR, 0, 9);
    send(&p, &e, T0 - HOUR + 1, 0, 6000, tr);
    size_t n = 0;
    uint64_t t = T0 + 123;
    while (n == 0)
        n = send(&p, &e, t++, CRP_VERDICT_HC_PHISH, 1, tr);
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(sz, crp_score_explain(&p, &e, tr[0].at_ms, ex, CRP_RULE_COUNT), CRP_RULE_COUNT));
    for (int i = 0; i < CRP_RULE_COUNT; i++) {
        cr_assert(eq(str, (char *)ex[i].name, (char *)tr[0].evidence[i].name));
        cr_assert(eq(u8, ex[i].rule, (uint8_t)i));
        cr_assert(eq(u8, ex[i].reason, tr[0].evidence[i].reason));
        cr_assert(eq(dbl, ex[i].value, tr[0].evidence[i].value));
        cr_assert(eq(dbl, ex[i].threshold, tr[0].evidence[i].threshold));
        cr_assert(eq(int, ex[i].tripped, tr[0].evidence[i].tripped));
    }
    /* A short buffer gets the first rules only. */
    cr_assert(eq(sz, crp_score_explain(&p, &e, tr[0].at_ms, ex, 2), 2));
}

/* ------------------------------------------------------------------------ */
/* Removal and probation                                                     */

Test(scoring, remove_resets_and_starts_probation)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr;

    restrict_by_malware(&p, &e, T0);
    cr_assert(eq(int, crp_score_remove(&p, &e, T0 + HOUR, &tr), CRP_OK));
    cr_assert(eq(u8, tr.kind, CRP_TR_UNBLOCKED));
    cr_assert(eq(u8, tr.from, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, tr.to, CRP_STATE_PROBATION));
    cr_assert(eq(u8, tr.reasons, CRP_REASON_MALWARE)); /* lifted */
    cr_assert(eq(u64, tr.at_ms, T0 + HOUR));
    cr_assert(eq(u8, tr.n_evidence, 0));
    cr_assert(eq(u8, e.state, CRP_STATE_PROBATION));
    cr_assert(eq(u8, e.reasons, 0));
    cr_assert(eq(u64, e.since_ms, T0 + HOUR));
    cr_assert(e.dirty);
    crp_score s = score_of(&e);
    crp_score zero;
    memset(&zero, 0, sizeof zero);
    cr_assert(eq(int, memcmp(&s, &zero, sizeof s), 0));
}

Test(scoring, remove_without_probation_goes_active)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr;

    p.probation_ms = 0;
    restrict_by_malware(&p, &e, T0);
    cr_assert(eq(int, crp_score_remove(&p, &e, T0 + 1, &tr), CRP_OK));
    cr_assert(eq(u8, tr.to, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
    cr_assert(eq(u64, e.since_ms, 0));
    cr_assert(not(e.dirty));
    cr_assert(eq(flt, score_of(&e).malware, 0.0f));
}

Test(scoring, remove_not_restricted_is_conflict)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr;

    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 1);
    crp_entry before = e;
    cr_assert(eq(int, crp_score_remove(&p, &e, T0, &tr), CRP_CONFLICT));
    cr_assert(eq(int, memcmp(&e, &before, sizeof e), 0));

    restrict_by_malware(&p, &e, T0);
    cr_assert(eq(int, crp_score_remove(&p, &e, T0, &tr), CRP_OK));
    cr_assert(eq(u8, e.state, CRP_STATE_PROBATION));
    cr_assert(eq(int, crp_score_remove(&p, &e, T0, &tr), CRP_CONFLICT));
}

Test(scoring, probation_tightens_thresholds)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    crp_rule_eval ex[CRP_RULE_COUNT];

    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0, tr);
    crp_score_explain(&p, &e, T0, ex, CRP_RULE_COUNT);
    cr_assert(eq(dbl, ex[CRP_RULE_SPAM_RATIO].threshold, 0.25));
    cr_assert(eq(dbl, ex[CRP_RULE_PHISH_RATIO].threshold, 0.05));
    cr_assert(eq(dbl, ex[CRP_RULE_HC_PHISH].threshold, 1.5));
    cr_assert(eq(dbl, ex[CRP_RULE_MALWARE].threshold, 1.5));
    cr_assert(eq(dbl, ex[CRP_RULE_RECIPIENTS_HOUR].threshold, 5000.0));
    cr_assert(eq(dbl, ex[CRP_RULE_RECIPIENTS_DAY].threshold, 50000.0));

    /* Malware: 1 < 1.5, 2 >= 1.5. */
    cr_assert(eq(sz, send(&p, &e, T0 + 1, CRP_VERDICT_MALWARE, 1, tr), 0));
    cr_assert(eq(sz, send(&p, &e, T0 + 1, CRP_VERDICT_MALWARE, 1, tr), 1));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RESTRICTED));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_PROBATION));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_MALWARE].threshold, 1.5));
}

Test(scoring, probation_ratio_and_sending_limit)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0, tr);
    /* Spam ratio 0.25, and it still needs 20 messages. */
    send_quiet(&p, &e, T0, 0, 15);
    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 4);                     /* 4 / 19 */
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_SPAM, 1, tr), 1)); /* 5 / 20 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SPAM_RATIO));
    cr_assert(eq(dbl, tr[0].evidence[CRP_RULE_SPAM_RATIO].threshold, 0.25));

    e = fresh(T0);
    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0, tr);
    send_quiet(&p, &e, T0, 0, 30);
    send_quiet(&p, &e, T0, CRP_VERDICT_SPAM, 9);                     /* 9 / 39 */
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_SPAM, 1, tr), 1)); /* 10 / 40 */
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SPAM_RATIO));

    e = fresh(T0);
    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0, tr);
    cr_assert(eq(sz, send(&p, &e, T0 + 1, 0, 5000, tr), 0));
    cr_assert(eq(sz, send(&p, &e, T0 + 2, 0, 1, tr), 1));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_SENDING_LIMIT));
}

Test(scoring, probation_ends_after_probation)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0 + HOUR, tr);
    uint64_t end = T0 + HOUR + p.probation_ms;
    cr_assert(not(crp_score_tick(&p, &e, end - 1, tr)));
    cr_assert(eq(u8, e.state, CRP_STATE_PROBATION));
    cr_assert(crp_score_tick(&p, &e, end, tr));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_PROBATION_ENDED));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_PROBATION));
    cr_assert(eq(u8, tr[0].to, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
    cr_assert(eq(u64, e.since_ms, 0));
    cr_assert(not(e.dirty));

    /* Normal thresholds again: one malware message is not enough. */
    cr_assert(eq(sz, send(&p, &e, end + 1, CRP_VERDICT_MALWARE, 1, tr), 0));
    cr_assert(eq(sz, send(&p, &e, end + 1, CRP_VERDICT_MALWARE, 1, tr), 0));
}

Test(scoring, probation_end_applied_before_event)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.half_life_ms = 0; /* so the counts compare exactly a day later */
    restrict_by_malware(&p, &e, T0);
    crp_score_remove(&p, &e, T0, tr);
    send_quiet(&p, &e, T0 + 1, CRP_VERDICT_MALWARE, 1);
    /* At the end of probation the second malware message is judged by the
     * normal threshold (3), not the probation one (1.5). */
    uint64_t end = T0 + p.probation_ms;
    size_t n = send(&p, &e, end, CRP_VERDICT_MALWARE, 1, tr);
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_PROBATION_ENDED));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
}

/* ------------------------------------------------------------------------ */
/* Time-driven releases                                                      */

Test(scoring, restrict_today_releases_at_next_utc_midnight)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.action = CRP_ACTION_RESTRICT_TODAY;
    restrict_by_malware(&p, &e, T0);
    cr_assert(e.until_midnight);
    uint64_t midnight = DAY0 + DAY;
    cr_assert(not(crp_score_tick(&p, &e, midnight - 1, tr)));
    cr_assert(eq(u8, e.state, CRP_STATE_RESTRICTED));
    cr_assert(crp_score_tick(&p, &e, midnight, tr));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RELEASED));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_MALWARE));
    cr_assert(eq(u8, tr[0].to, CRP_STATE_PROBATION));
    cr_assert(eq(u8, e.state, CRP_STATE_PROBATION));
    cr_assert(eq(u64, e.since_ms, midnight));
    cr_assert(not(e.until_midnight));
    cr_assert(eq(flt, score_of(&e).malware, 0.0f));
}

Test(scoring, restrict_today_at_midnight_lasts_the_day)
{
    crp_policy p = policy();
    crp_entry e = fresh(DAY0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.action = CRP_ACTION_RESTRICT_TODAY;
    restrict_by_malware(&p, &e, DAY0);
    cr_assert(not(crp_score_tick(&p, &e, DAY0 + DAY - 1, tr)));
    cr_assert(crp_score_tick(&p, &e, DAY0 + DAY, tr));
}

Test(scoring, release_then_restrict_in_one_event)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.action = CRP_ACTION_RESTRICT_TODAY;
    restrict_by_malware(&p, &e, T0);
    /* The first event after midnight releases, then trips the probation
     * sending limit (5000) on its own. */
    size_t n = send(&p, &e, DAY0 + DAY + 5, 0, 6000, tr);
    cr_assert(eq(sz, n, 2));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RELEASED));
    cr_assert(eq(u64, tr[0].at_ms, DAY0 + DAY + 5));
    cr_assert(eq(u8, tr[1].kind, CRP_TR_RESTRICTED));
    cr_assert(eq(u8, tr[1].from, CRP_STATE_PROBATION));
    cr_assert(eq(u8, tr[1].reasons, CRP_REASON_SENDING_LIMIT));
    cr_assert(eq(dbl, tr[1].evidence[CRP_RULE_RECIPIENTS_HOUR].value, 6000.0));
    cr_assert(e.until_midnight);
}

Test(scoring, auto_release_releases_engine_restrictions)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.auto_release_after_ms = 2 * HOUR;
    restrict_by_malware(&p, &e, T0);
    cr_assert(not(crp_score_tick(&p, &e, T0 + 2 * HOUR - 1, tr)));
    cr_assert(crp_score_tick(&p, &e, T0 + 2 * HOUR, tr));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RELEASED));
    cr_assert(eq(u8, e.state, CRP_STATE_PROBATION));
}

Test(scoring, auto_release_off_keeps_restriction)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    restrict_by_malware(&p, &e, T0);
    cr_assert(not(crp_score_tick(&p, &e, T0 + 365 * DAY, tr)));
    cr_assert(eq(u8, e.state, CRP_STATE_RESTRICTED));
}

Test(scoring, auto_release_never_releases_manual_block)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_entry e2 = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.auto_release_after_ms = HOUR;
    p.action = CRP_ACTION_RESTRICT_TODAY;
    cr_assert(crp_score_block(&p, &e, T0, tr));
    cr_assert(not(crp_score_tick(&p, &e, T0 + 30 * DAY, tr)));
    cr_assert(eq(u8, e.state, CRP_STATE_RESTRICTED));

    /* An engine restriction that is then blocked manually stays too. */
    restrict_by_malware(&p, &e2, T0);
    cr_assert(crp_score_block(&p, &e2, T0 + 1, tr));
    cr_assert(not(e2.until_midnight));
    cr_assert(not(crp_score_tick(&p, &e2, T0 + 30 * DAY, tr)));
    cr_assert(eq(u8, e2.state, CRP_STATE_RESTRICTED));
    /* An admin can still remove it. */
    cr_assert(eq(int, crp_score_remove(&p, &e2, T0 + 30 * DAY, tr), CRP_OK));
}

/* ------------------------------------------------------------------------ */
/* Manual block                                                              */

Test(scoring, manual_block_from_every_state)
{
    crp_policy p = policy();
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    crp_entry a = fresh(T0);
    send_quiet(&p, &a, T0, CRP_VERDICT_SPAM, 1);
    cr_assert(crp_score_block(&p, &a, T0 + 5, tr));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_BLOCKED));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, tr[0].to, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_MANUAL));
    cr_assert(eq(u8, tr[0].n_evidence, CRP_RULE_COUNT));
    cr_assert(eq(u8, a.reasons, CRP_REASON_MANUAL));
    cr_assert(eq(u64, a.since_ms, T0 + 5));
    cr_assert(a.dirty);
    cr_assert(eq(flt, score_of(&a).spam, 1.0f)); /* counters kept */
    /* Already manually blocked: nothing to do. */
    cr_assert(not(crp_score_block(&p, &a, T0 + 6, tr)));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_NONE));
    cr_assert(eq(u64, a.since_ms, T0 + 5));

    crp_entry b = fresh(T0);
    restrict_by_malware(&p, &b, T0);
    crp_score_remove(&p, &b, T0 + 1, tr);
    cr_assert(crp_score_block(&p, &b, T0 + 2, tr));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_PROBATION));
    cr_assert(eq(u8, b.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, b.reasons, CRP_REASON_MANUAL));

    crp_entry c = fresh(T0);
    restrict_by_malware(&p, &c, T0);
    cr_assert(crp_score_block(&p, &c, T0 + 9, tr));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, c.reasons, CRP_REASON_MALWARE | CRP_REASON_MANUAL));
    cr_assert(eq(u64, c.since_ms, T0)); /* restricted since the engine did it */
}

/* ------------------------------------------------------------------------ */
/* alert_only                                                                */

Test(scoring, alert_only_never_restricts)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    p.action = CRP_ACTION_ALERT_ONLY;
    send_quiet(&p, &e, T0, CRP_VERDICT_MALWARE, 2);
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_MALWARE, 1, tr), 1));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_WOULD_RESTRICT));
    cr_assert(tr[0].would_restrict);
    cr_assert(eq(u8, tr[0].from, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, tr[0].to, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_MALWARE));
    cr_assert(eq(u8, tr[0].n_evidence, CRP_RULE_COUNT));
    cr_assert(tr[0].evidence[CRP_RULE_MALWARE].tripped);
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
    cr_assert(eq(u8, e.reasons, 0));
    cr_assert(eq(u64, e.since_ms, 0));

    /* Still over: no new report. A newly tripped rule: a report. */
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_MALWARE, 1, tr), 0));
    send_quiet(&p, &e, T0, CRP_VERDICT_HC_PHISH, 2);
    cr_assert(eq(sz, send(&p, &e, T0, CRP_VERDICT_HC_PHISH, 1, tr), 1));
    cr_assert(eq(u8, tr[0].reasons, CRP_REASON_MALWARE | CRP_REASON_HC_PHISH));
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));

    /* Back under (decay), then over again: reported again. */
    cr_assert(eq(sz, send(&p, &e, T0 + 3 * HOUR, 0, 1, tr), 0));
    send_quiet(&p, &e, T0 + 3 * HOUR, CRP_VERDICT_MALWARE, 2);
    cr_assert(eq(sz, send(&p, &e, T0 + 3 * HOUR, CRP_VERDICT_MALWARE, 1, tr), 1));
    cr_assert(tr[0].would_restrict);
}

/* ------------------------------------------------------------------------ */
/* dirty                                                                     */

Test(scoring, dirty_flag)
{
    crp_policy p = policy();
    crp_entry e = fresh(T0);
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    send_quiet(&p, &e, T0, 0, 10);
    cr_assert(not(e.dirty));
    send_quiet(&p, &e, T0, CRP_VERDICT_PHISH, 1);
    cr_assert(e.dirty);
    /* One half-life: 0.5 is still a signal. */
    send_quiet(&p, &e, T0 + HOUR, 0, 1);
    cr_assert(e.dirty);
    cr_assert(not(crp_score_tick(&p, &e, T0 + HOUR + HOUR / 2, tr)));
    cr_assert(not(e.dirty)); /* 0.35 by now */
    /* A tick does not rewrite the counters nor the time. */
    cr_assert(eq(u64, e.last_ms, T0 + HOUR));
    cr_assert(epsilon_eq(flt, score_of(&e).phish, 0.5f, 1e-6f));

    /* Any non-ACTIVE state is dirty, whatever the counters. */
    crp_score_block(&p, &e, T0 + 2 * HOUR, tr);
    cr_assert(e.dirty);
    crp_score_remove(&p, &e, T0 + 2 * HOUR, tr);
    cr_assert(e.dirty); /* probation */
    crp_score_tick(&p, &e, T0 + 2 * HOUR + p.probation_ms, tr);
    cr_assert(eq(u8, e.state, CRP_STATE_ACTIVE));
    cr_assert(not(e.dirty));
}

Test(scoring, dirty_for_each_signal)
{
    crp_policy p = policy();
    const unsigned bits[] = {CRP_VERDICT_SPAM, CRP_VERDICT_HC_SPAM, CRP_VERDICT_PHISH,
                             CRP_VERDICT_HC_PHISH, CRP_VERDICT_MALWARE};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        crp_entry e = fresh(T0);
        send_quiet(&p, &e, T0, bits[i], 1);
        cr_assert(e.dirty, "verdict bit %#x", bits[i]);
    }
    crp_entry e = fresh(T0);
    send_quiet(&p, &e, T0, CRP_VERDICT_BULK, 1);
    cr_assert(not(e.dirty));
}

/* ------------------------------------------------------------------------ */
/* Table glue                                                                */

static crp_table *small_table(void)
{
    crp_table *t = NULL;
    crp_table_opts o = {.capacity = 1024, .seed = 42};
    cr_assert(eq(int, crp_table_create(&t, &o), CRP_OK));
    return t;
}

Test(scoring_table, apply_inserts_and_restricts)
{
    crp_policy p = policy();
    crp_table *t = small_table();
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    size_t n = 9;
    crp_event ev = {.id = "conn-a",
                    .id_len = 6,
                    .tenant = "contoso",
                    .tenant_len = 7,
                    .ts_ms = T0,
                    .verdict = CRP_VERDICT_MALWARE,
                    .recipients = 1};

    crp_key k = crp_table_key(t, "conn-a", 6);
    crp_verdict v;
    cr_assert(not(crp_table_lookup(t, &k, &v)));
    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_OK));
    cr_assert(eq(sz, n, 0));
    cr_assert(crp_table_lookup(t, &k, &v));
    cr_assert(eq(u8, v.state, CRP_STATE_ACTIVE));
    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_OK));
    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_OK));
    cr_assert(eq(sz, n, 1));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_RESTRICTED));
    cr_assert(crp_table_lookup(t, &k, &v));
    cr_assert(eq(u8, v.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, v.reasons, CRP_REASON_MALWARE));
    cr_assert(eq(u64, v.since_ms, T0));

    crp_record r;
    cr_assert(eq(int, crp_table_read(t, &k, &r), CRP_OK));
    cr_assert(eq(str, r.id, "conn-a"));
    cr_assert(eq(str, r.tenant, "contoso"));
    cr_assert(r.entry.dirty);
    crp_score s;
    crp_score_get(&r.entry, &s);
    cr_assert(eq(flt, s.malware, 3.0f));
    cr_assert(eq(u32, s.rcpt_hour_cur, 3));

    /* Remove: probation, visible to the next lookup; twice is a conflict. */
    cr_assert(eq(int, crp_score_remove_sw(t, &p, &k, T0 + 10, tr), CRP_OK));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_UNBLOCKED));
    cr_assert(crp_table_lookup(t, &k, &v));
    cr_assert(eq(u8, v.state, CRP_STATE_PROBATION));
    cr_assert(eq(int, crp_score_remove_sw(t, &p, &k, T0 + 10, tr), CRP_CONFLICT));

    /* Probation ends through the tick glue. */
    bool changed = false;
    cr_assert(
        eq(int, crp_score_tick_sw(t, &p, &k, T0 + 10 + p.probation_ms, tr, &changed), CRP_OK));
    cr_assert(changed);
    cr_assert(crp_table_lookup(t, &k, &v));
    cr_assert(eq(u8, v.state, CRP_STATE_ACTIVE));
    crp_table_destroy(&t);
    cr_assert(eq(ptr, t, NULL));
}

Test(scoring_table, block_unknown_connector)
{
    crp_policy p = policy();
    crp_table *t = small_table();
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];

    cr_assert(eq(int, crp_score_block_sw(t, &p, "conn-b", 6, "fabrikam", 8, T0, tr), CRP_OK));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_BLOCKED));
    cr_assert(eq(u8, tr[0].from, CRP_STATE_UNKNOWN)); /* it was never seen */
    cr_assert(eq(u8, tr[0].to, CRP_STATE_RESTRICTED));
    crp_key k = crp_table_key(t, "conn-b", 6);
    crp_verdict v;
    cr_assert(crp_table_lookup(t, &k, &v));
    cr_assert(eq(u8, v.state, CRP_STATE_RESTRICTED));
    cr_assert(eq(u8, v.reasons, CRP_REASON_MANUAL));
    cr_assert(eq(int, crp_score_block_sw(t, &p, "conn-b", 6, "fabrikam", 8, T0 + 1, tr), CRP_OK));
    cr_assert(eq(u8, tr[0].kind, CRP_TR_NONE));

    crp_key other = crp_table_key(t, "nobody", 6);
    cr_assert(eq(int, crp_score_remove_sw(t, &p, &other, T0, tr), CRP_NOTFOUND));
    bool changed = true;
    cr_assert(eq(int, crp_score_tick_sw(t, &p, &other, T0, tr, &changed), CRP_NOTFOUND));
    cr_assert(not(changed));
    crp_table_destroy(&t);
}

Test(scoring_table, bad_lengths_are_inval)
{
    crp_policy p = policy();
    crp_table *t = small_table();
    crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
    size_t n = 7;
    crp_event ev = {.id = "x", .id_len = 0, .ts_ms = T0, .recipients = 1};

    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_INVAL));
    cr_assert(eq(sz, n, 0));
    ev.id_len = 1;
    ev.tenant_len = CRP_TENANT_MAX + 1;
    ev.tenant = "t";
    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_INVAL));
    ev.tenant = NULL;
    ev.tenant_len = 3;
    cr_assert(eq(int, crp_score_apply_sw(t, &p, &ev, T0, tr, &n), CRP_INVAL));
    cr_assert(eq(int, crp_score_block_sw(t, &p, "", 0, NULL, 0, T0, tr), CRP_INVAL));
    crp_table_destroy(&t);
}

struct batch_count {
    size_t calls, restricted;
};

static void count_transitions(void *ctx, const crp_event *ev, const crp_transition *tr, size_t ntr)
{
    struct batch_count *c = ctx;
    (void)ev;
    c->calls++;
    for (size_t i = 0; i < ntr; i++)
        c->restricted += tr[i].kind == CRP_TR_RESTRICTED;
}

/* The pipelined batch path must leave exactly the state the one-by-one path
 * leaves, report the same transitions, and count refused events. */
Test(scoring_table, batch_matches_single_events)
{
    crp_table *a = NULL, *b = NULL;
    crp_table_opts o = {.capacity = 4096, .shards = 1, .seed = 99};
    cr_assert(eq(int, crp_table_create(&a, &o), CRP_OK));
    cr_assert(eq(int, crp_table_create(&b, &o), CRP_OK));
    crp_policy p;
    crp_policy_defaults(&p);

    enum { N = 5000, CONNS = 300 };
    static char ids[CONNS][16];
    static crp_event ev[N];
    uint64_t base = 1764806400000ull;
    for (int i = 0; i < CONNS; i++)
        snprintf(ids[i], sizeof ids[i], "c-%d", i);
    for (int i = 0; i < N; i++) {
        int c = (i * 7919) % CONNS;
        ev[i] = (crp_event){.id = ids[c],
                            .id_len = (uint8_t)strlen(ids[c]),
                            .tenant = "t",
                            .tenant_len = 1,
                            .ts_ms = base + (uint64_t)i * 10,
                            .verdict = (uint16_t)(c % 10 == 0 ? CRP_VERDICT_SPAM : 0),
                            .recipients = 1};
    }
    ev[17].id_len = 0; /* refused by both paths */

    struct batch_count single = {0}, batch = {0};
    size_t single_refused = 0;
    for (int i = 0; i < N; i++) {
        crp_transition tr[CRP_SCORE_MAX_TRANSITIONS];
        size_t ntr = 0;
        if (crp_score_apply_sw(a, &p, &ev[i], base + N * 10, tr, &ntr) != CRP_OK) {
            single_refused++;
            continue;
        }
        if (ntr)
            count_transitions(&single, &ev[i], tr, ntr);
    }
    size_t refused = 0;
    size_t applied =
        crp_score_apply_batch_sw(b, &p, ev, N, base + N * 10, count_transitions, &batch, &refused);
    cr_assert(eq(sz, refused, 1));
    cr_assert(eq(sz, single_refused, 1));
    cr_assert(eq(sz, applied, N - 1));
    cr_assert(eq(sz, batch.calls, single.calls));
    cr_assert(eq(sz, batch.restricted, single.restricted));
    cr_assert(gt(sz, batch.restricted, 0));
    for (int i = 0; i < CONNS; i++) {
        crp_key k = crp_table_key(a, ids[i], strlen(ids[i]));
        crp_record ra, rb;
        cr_assert(eq(int, crp_table_read(a, &k, &ra), CRP_OK));
        cr_assert(eq(int, crp_table_read(b, &k, &rb), CRP_OK));
        cr_assert(eq(int, ra.entry.state, rb.entry.state));
        crp_score sa, sb;
        crp_score_get(&ra.entry, &sa);
        crp_score_get(&rb.entry, &sb);
        cr_assert(eq(int, memcmp(ra.entry.payload, rb.entry.payload, CRP_PAYLOAD_SIZE), 0),
                  "%s: messages %g/%g spam %g/%g rcpt %u/%u %u/%u", ids[i], sa.messages,
                  sb.messages, sa.spam, sb.spam, sa.rcpt_hour_cur, sb.rcpt_hour_cur,
                  sa.rcpt_hour_prev, sb.rcpt_hour_prev);
        cr_assert(eq(u64, ra.entry.last_ms, rb.entry.last_ms));
    }
    crp_table_destroy(&a);
    crp_table_destroy(&b);
}
