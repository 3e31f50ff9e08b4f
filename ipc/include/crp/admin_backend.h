/* The admin backend over the engine runtime: the crp_admin_backend
 * functions of crp/admin.h implemented with the engine's connector table
 * and its synchronous control calls (crp/engine.h).
 *
 *   tenant_of        a table read (any thread, no round trip)
 *   list_restricted  a walk of the table (crp_table_next); key figures are
 *                    the counters decayed to now with the running policy
 *   describe         crp_engine_get (every rule now, with the thresholds of
 *                    the connector's state) plus, for a restricted
 *                    connector, the evidence at the restriction from the
 *                    audit log: the connector's latest transition line when
 *                    it is the state.restricted or state.blocked line of the
 *                    current restriction (same since)
 *   remove, block    crp_engine_remove, crp_engine_block with the identity
 *                    as actor: stored in the table before they return, so
 *                    the very next lookup on every path sees the change;
 *                    the events thread then writes the transition's audit
 *                    line and publishes state.unblocked / state.blocked
 *   stats            crp_engine_stats_json, parsed
 *   save_alert_policy
 *                    crp_engine_save_alert_policy: journaled (a POLICY
 *                    record) and applied by the events thread, returning
 *                    once durable; a restart restores it
 *
 * Connector ids and tenants are bytes; in JSON and in tenant_of they take
 * the audit log's form (crp_json_bytes: UTF-8 as is, other bytes as the
 * text "\xNN"), so a tenant reads the same in replies, scope checks and the
 * audit log. A tenant whose escaped form is longer than a config tenant may
 * be (64 bytes) is answered with a DEL byte at its end, which no [identity]
 * tenant can contain, so it is in the scope of `tenant = *` identities only.
 *
 * Threads: the admin server calls the functions on its own thread, one at a
 * time (crp/admin.h); nothing here is shared with another thread except
 * through the engine's thread-safe calls.
 */
#ifndef CRP_ADMIN_BACKEND_H
#define CRP_ADMIN_BACKEND_H

#include <stdbool.h>

#include "crp/admin.h"
#include "crp/alerts.h"
#include "crp/audit.h"
#include "crp/engine.h"

/* The backend's context; the caller embeds it (crp_admin_engine_init) and
 * keeps it alive as long as the admin server runs. */
typedef struct crp_admin_engine {
    crp_engine *engine; /* borrowed */
    crp_audit *audit;   /* borrowed; NULL or disabled: no evidence at block time */
} crp_admin_engine;

/* Fills *ae for an engine and its audit log (may be NULL), and *be with
 * the backend functions over it (be->ctx = ae). Both must outlive the admin
 * server started with *be. Allocates nothing; never fails. */
void crp_admin_engine_init(crp_admin_engine *ae, crp_engine *engine, crp_audit *audit,
                           crp_admin_backend *be);

#endif
