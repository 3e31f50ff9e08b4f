/* The engine runtime: the connector table, one scoring writer thread per
 * table shard, the feed thread and the events thread, wired together with
 * ZeroMQ inproc:// pipes.
 *
 *   feed ──batches──▶ writer 0..N-1 ──transitions──▶ events ──PUB──▶ consumers
 *                        ▲    │
 *      control calls ────┘    └── crp_table (lookups read it from anywhere)
 *
 * The feed thread validates each frame whole (crp_feed_decode), tracks
 * producer sequences, splits the frame's events by shard and hands each
 * writer its part as one message; a full writer queue makes the feed wait
 * (push-back, counted as feed_backpressure), so a frame is never applied in
 * part. Each writer is the single writer of its shard: it applies events,
 * sweeps its shard every 200 ms for time-driven transitions (auto-release,
 * restrict_today, probation end) and answers control calls. Every
 * transition goes to the events thread, which writes its audit line (when
 * the engine has an audit log), publishes state changes (docs/protocol.md
 * section 4), logs it, and hands restrictions to the alert policy (when
 * the engine has one: crp_engine_sinks).
 *
 * There is no lock anywhere on these paths: each piece of state belongs to
 * one thread, and the only shared data are the table (single writer per
 * shard, wait-free readers) and relaxed statistics counters.
 *
 * The engine does not own the ZeroMQ context: the caller creates it, passes
 * it in, and terminates it after crp_engine_destroy.
 */
#ifndef CRP_ENGINE_H
#define CRP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crp/alerts.h"
#include "crp/audit.h"
#include "crp/config.h"
#include "crp/log.h"
#include "crp/err.h"
#include "crp/journal.h"
#include "crp/scoring.h"
#include "crp/table.h"

typedef struct crp_engine crp_engine;

/* Longest admin comment (a block or removal "reason" text) an event
 * carries; longer text is truncated (at a byte boundary: the events thread
 * replaces a cut UTF-8 sequence with U+FFFD). */
#define CRP_ENGINE_COMMENT_MAX 1024u

/* Creates the table ([engine] max_connectors, shards, shm_name: a POSIX
 * shared-memory object when set, which replaces a previous engine's), the
 * scoring policy from [scoring], binds the feed and events endpoints,
 * connects to [feed] connect, and starts every thread. Returns CRP_OK and
 * *out, or an error with a sentence in errbuf (a bind that failed, a table
 * that could not be mapped). The config is copied; the caller may free it.
 * zctx is a ZeroMQ context that must outlive the engine. Call from the
 * thread that will later stop and destroy the engine. */
crp_err crp_engine_create(crp_engine **out, void *zctx, const crp_config *cfg, char *errbuf,
                          size_t errlen);

/* Where the events thread reports transitions besides the events socket:
 * the admin face (crp/audit.h, crp/alerts.h). Both must outlive the engine
 * (destroy them after crp_engine_destroy); either may be NULL. */
typedef struct crp_engine_sinks {
    /* Every transition, published or not, gets a "transition" line with
     * its actor, the admin's comment and the evidence, written before the
     * event is published. */
    crp_audit *audit;
    /* Every restriction by a rule, and every would-restrict under action
     * alert_only, goes through the alert policy; when the policy is on, an
     * `alert.suspicious-connector` event follows the state event in the
     * same numbered stream. Manual blocks raise no alert (the admin who
     * blocked already knows). The events thread also reaps finished
     * notify commands (crp_alerts_reap) several times a second. */
    crp_alerts *alerts;
    /* Keep connector state in [engine] state_dir (docs/reliability.md):
     * load the newest snapshot and replay the journal before the writers
     * start, journal every state change before it is acknowledged or
     * published, snapshot every [engine] snapshot_every and at a clean
     * stop. Off for engines that are only exercised in memory. */
    bool persist;
    /* The journal's and snapshots' system calls; NULL = crp_io_posix().
     * Tests inject disk failures here. */
    const crp_io_ops *io;
} crp_engine_sinks;

/* crp_engine_create with an audit log and alerts. sinks may be NULL (then
 * it is crp_engine_create). */
crp_err crp_engine_create_with(crp_engine **out, void *zctx, const crp_config *cfg,
                               const crp_engine_sinks *sinks, char *errbuf, size_t errlen);

/* Graceful stop: closes the feed sockets (no new frames), lets every writer
 * apply what is already queued, lets the events thread publish every
 * transition, and joins all threads. The table stays mapped, so lookups
 * (crp_engine_table) remain valid until crp_engine_destroy. Idempotent.
 * Blocks until the queues are drained. Not concurrent with control calls. */
void crp_engine_stop(crp_engine *e);

/* Stops the engine if needed and frees it; a shared-memory table is
 * retired (attached readers re-attach) and its object unlinked.
 * NULL-safe; sets *ep = NULL. */
void crp_engine_destroy(crp_engine **ep);

/* The connector table, for lookups (crp_table_lookup, crp_table_read) from
 * any thread until crp_engine_destroy. */
const crp_table *crp_engine_table(const crp_engine *e);

/* Returns the statistics of docs/protocol.md section 2.6 as a JSON object
 * text (every key of the contract, all ten reasons under frames_rejected,
 * plus engine extras such as feed_backpressure and insert_full). The caller
 * frees it with free(). NULL when out of memory. Any thread; never blocks;
 * counters are read with relaxed loads, so they are a consistent-enough
 * snapshot, not an atomic one. */
char *crp_engine_stats_json(const crp_engine *e);

/* Adds n to the `lookups` counter. For the lookup server; any thread,
 * wait-free. */
void crp_engine_count_lookups(crp_engine *e, uint64_t n);

/* ---- control calls ------------------------------------------------------
 *
 * Each call is a request to the writer that owns the connector's shard,
 * over inproc with a short-lived socket of the calling thread, answered
 * once the change is stored in the table: the very next lookup, on any
 * path, sees it. Any thread may call them (they are meant for one admin or
 * control thread; concurrent calls are serialized by the writer). They
 * block for microseconds normally; CRP_TIMEOUT when the engine is stopping
 * or does not answer within 10 s. Not concurrent with crp_engine_stop.
 *
 * With persistence (crp_engine_sinks.persist), crp_engine_block and
 * crp_engine_remove return CRP_OK only once the journal commit covering the
 * change succeeded (the events thread's group commit of its batch: a few
 * milliseconds more), and CRP_IO when the journal failed: the change is
 * then applied (lookups see it) but not acknowledged as durable. */

/* Manual block (Block-Connector): the connector becomes RESTRICTED with
 * reason MANUAL, inserted with `tenant` when unknown. `actor` is the
 * identity name published in the event (NULL = "engine"); `comment` the
 * admin's reason text (NULL or ""). Returns CRP_OK with *out filled
 * (out->kind == CRP_TR_NONE when it was already manually blocked: no
 * event), CRP_INVAL for bad lengths, CRP_FULL (or another table insert
 * error) when the shard has no room. out may be NULL. */
crp_err crp_engine_block(crp_engine *e, const char *id, size_t len, const char *tenant,
                         size_t tenant_len, const char *actor, const char *comment,
                         crp_transition *out);

/* Admin removal (Remove-BlockedConnector): a RESTRICTED connector's
 * counters are reset and it enters PROBATION (or ACTIVE without
 * probation). Returns CRP_OK with *out filled (kind CRP_TR_UNBLOCKED),
 * CRP_NOTFOUND when the engine does not hold the connector, CRP_CONFLICT
 * when it is not restricted, CRP_INVAL for a bad length. */
crp_err crp_engine_remove(crp_engine *e, const char *id, size_t len, const char *actor,
                          const char *comment, crp_transition *out);

/* Replaces the thresholds ([scoring]) in every writer. Settings that need
 * a restart (endpoints, table size, shards, shm_name, state_dir, the audit
 * log) are not applied; each one that differs is logged as a warning. The
 * [alerts] settings belong to the alerts module (crp_alerts_reconfigure,
 * crp_alerts_set_policy), not to the engine. Returns CRP_OK when every
 * writer took the new thresholds, CRP_INVAL (why names the field) when the
 * policy makes no sense, or CRP_TIMEOUT. why may be NULL. */
crp_err crp_engine_reload(crp_engine *e, const crp_config *cfg, char *why, size_t whylen);

/* Copies the scoring policy the writers run now: the start-up config's
 * [scoring], or the last successful reload's. For readers of the table
 * that need the half-life or the probation (the admin's list figures). Any
 * thread; takes a mutex for the copy, never blocks for long. */
void crp_engine_policy(crp_engine *e, crp_policy *out);

/* What an admin sees of one connector (get-connector). */
typedef struct crp_engine_detail {
    crp_record record;                   /* state, reasons, since, id, tenant, last_ms */
    uint64_t at_ms;                      /* the moment values and rules are evaluated at */
    crp_score_values values;             /* counters decayed to at_ms, window estimates */
    size_t n_rules;                      /* CRP_RULE_COUNT */
    crp_rule_eval rules[CRP_RULE_COUNT]; /* every rule at at_ms, with the
                                           thresholds of the connector's state */
} crp_engine_detail;

/* Fills *out for a connector, evaluated by its writer with the running
 * policy. CRP_OK, CRP_NOTFOUND, CRP_INVAL or CRP_TIMEOUT. */
crp_err crp_engine_get(crp_engine *e, const char *id, size_t len, crp_engine_detail *out);

/* Journals an alert-policy edit (set-alert-policy) and applies it to the
 * sinks' alerts module, in the events thread, in order with the
 * transitions. Returns once the journal commit covering it succeeded:
 * CRP_OK; CRP_IO when the journal is failed (the policy is applied, and
 * becomes durable with the next successful snapshot, but is not
 * acknowledged); CRP_TIMEOUT; CRP_SYS. Without persistence it does nothing
 * and returns CRP_OK (the caller applies the policy). A restart restores
 * the newest saved policy over the config's [alerts]. Any thread. */
crp_err crp_engine_save_alert_policy(crp_engine *e, const crp_alert_policy *p, const char *actor);

/* Logging (crp_log) lives in crp/log.h, included above. */

#endif
