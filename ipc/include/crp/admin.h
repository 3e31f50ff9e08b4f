/* The admin server: the CURVE-authenticated ROUTER of PROTOCOL.md section 5
 * (docs/admin.md is the operator's guide, with every verb and reply).
 *
 * Two threads, each owning its sockets:
 *  - the ZAP handler (a REP socket on inproc://zeromq.zap.01, ZeroMQ RFC 27)
 *    maps the CURVE public key of each connecting client to an identity of
 *    the config and answers 200 with User-Id = the identity's name, or 400
 *    for an unknown key or any mechanism but CURVE;
 *  - the server thread owns the ROUTER bound on every `[admin] bind`
 *    endpoint (CURVE server, ZMQ_ZAP_DOMAIN "connrep-admin",
 *    ZMQ_ZAP_ENFORCE_DOMAIN on, so a missing handler fails closed), reads
 *    the identity of each request from the message's "User-Id" property
 *    (set by libzmq from our ZAP reply, never by the peer), checks the
 *    tenant scope, then the role, runs the verb against the backend,
 *    writes the audit line, and only then sends the reply.
 *
 * The ZAP endpoint is per ZeroMQ context: the admin server must be the
 * only one in its context to bind it, and no other socket of the context
 * may set ZMQ_ZAP_DOMAIN (NULL-mechanism sockets without a domain, such as
 * the feed and lookup sockets, never consult ZAP).
 *
 * Requests are served one at a time on the server thread, so backend calls
 * never overlap one another.
 */
#ifndef CRP_ADMIN_H
#define CRP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crp/alerts.h"
#include "crp/audit.h"
#include "crp/config.h"
#include "crp/err.h"

typedef struct crp_admin_server crp_admin_server;

/* The ZAP domain of the admin socket. */
#define CRP_ADMIN_ZAP_DOMAIN "connrep-admin"
/* The largest request body accepted (ZMQ_MAXMSGSIZE of the socket). */
#define CRP_ADMIN_MAX_REQUEST (64u * 1024u)
/* Frames a request may carry before its body (routing id included). */
#define CRP_ADMIN_ENVELOPE_MAX 8u
/* The longest admin "reason" text accepted. */
#define CRP_ADMIN_REASON_MAX 1024u

/* What the docs advise before an unblock; part of every detail reply of a
 * restricted connector. */
#define CRP_ADMIN_ADVICE                                                                           \
    "Before you remove the connector, follow the required steps to regain control of it "          \
    "(Respond to a compromised connector)."

/* The caller's tenant scope. */
typedef struct crp_admin_scope {
    bool any_tenant;    /* tenant = *: every tenant */
    const char *tenant; /* NUL-terminated, 0..64 bytes; meaningful when !any_tenant */
} crp_admin_scope;

/* What the admin server needs from the engine. The engine fills one and
 * passes it to crp_admin_server_start, which copies it.
 *
 * Every function is called on the admin server thread only, one call at a
 * time, so the engine may implement them with its synchronous control
 * calls. Ids are bytes (1..255, valid UTF-8 without NUL since they come
 * from JSON) and are not NUL-terminated. Each returns CRP_OK or an error:
 *   CRP_NOTFOUND -> not_found, CRP_CONFLICT -> conflict,
 *   CRP_INVAL -> bad_request, CRP_TIMEOUT / CRP_BUSY / CRP_FULL /
 *   CRP_IDS_FULL / CRP_TENANTS_FULL -> unavailable, anything else ->
 *   internal.
 * A JSON out-parameter is a new reference the server takes over (it may
 * be left NULL on error). Any function may be NULL: its verbs then answer
 * `unavailable`.
 *
 * Times in the JSON are RFC 3339 strings (crp_rfc3339), reasons are wire
 * names (crp_json_reasons), ids and tenants JSON strings (crp_json_bytes).
 */
typedef struct crp_admin_backend {
    void *ctx;

    /* The tenant of a connector the engine holds, into tenant[65] (NUL-
     * terminated), or CRP_NOTFOUND. Used for the scope check, before
     * anything else is done with the connector. */
    crp_err (*tenant_of)(void *ctx, const char *id, size_t len, char *tenant);

    /* The RESTRICTED connectors within scope, as a JSON array of objects
     * with at least "connector_id", "tenant", "state", "reasons" and
     * "since", plus key figures under "figures": {"messages", "spam_ratio",
     * "phish_ratio", "recipients_hour", ...} (numbers, now). The server
     * drops any entry whose tenant is outside the scope. */
    crp_err (*list_restricted)(void *ctx, const crp_admin_scope *scope, json_t **list);

    /* One connector in any state, as a JSON object: "connector_id",
     * "tenant", "state", "reasons", "since" (null unless restricted or in
     * probation), "last_event" (RFC 3339 or null), "evaluated_at", "rules":
     * one object per rule {"rule", "threshold", "value", "tripped" (now),
     * "value_at_block", "threshold_at_block", "tripped_at_block" (at the
     * restriction; null when not restricted or unknown)}, and "signals":
     * {"messages", "spam", "phish", "hc_phish", "malware",
     * "recipients_hour", "recipients_day"} (recent decayed counts, now).
     * CRP_NOTFOUND when the engine does not hold it. The evidence at block
     * time is in the audit log (the last "state.restricted" line of the
     * connector: crp_audit_search with action "state.restricted", limit 1). */
    crp_err (*describe)(void *ctx, const char *id, size_t len, json_t **detail);

    /* Remove-BlockedConnector: unblock, effective for the next lookup on
     * every path, journaled and published (state.unblocked) with `actor`
     * and `reason` (NULL when not given) before it returns. *result: at
     * least "connector_id", "tenant", "state" (probation or active),
     * "since". CRP_CONFLICT when the connector is not restricted. */
    crp_err (*remove)(void *ctx, const char *id, size_t len, const char *actor, const char *reason,
                      json_t **result);

    /* Manual block: RESTRICTED with reason "manual", inserted with `tenant`
     * (NUL-terminated, "" = no tenant) when the engine has never seen the
     * connector (a known connector keeps its tenant). Journaled and
     * published (state.blocked). *result as for remove; it may add
     * "already_blocked": true when it was manually blocked before. */
    crp_err (*block)(void *ctx, const char *id, size_t len, const char *tenant, const char *actor,
                     const char *reason, json_t **result);

    /* Engine statistics (docs/protocol.md section 2.6) as a JSON object. */
    crp_err (*stats)(void *ctx, json_t **stats);

    /* Journals a policy edit before the server applies it (durability:
     * policy edits survive a restart). An error refuses the edit with
     * `unavailable`. NULL: edits last until the process exits. */
    crp_err (*save_alert_policy)(void *ctx, const crp_alert_policy *policy, const char *actor);
} crp_admin_backend;

/* Starts the admin server.
 *
 * zctx: the ZeroMQ context (outlives the server). cfg: [admin] bind and
 * secret_key_file, and the identities (copied: reloads do not change the
 * server's identities; restart it for that). backend: copied; its ctx must
 * outlive the server. audit and alerts: must outlive the server; audit
 * NULL means no audit log (search answers `unavailable`), alerts NULL
 * means the alert policy verbs answer `unavailable`.
 *
 * The server key pair comes from secret_key_file (one line, 40 Z85
 * characters) and secret_key_file + ".pub"; both are created, mode 0600,
 * when the secret file is absent (crp_admin_key_load_or_create).
 *
 * Returns CRP_OK and *out, or an error with a sentence in errbuf: a bad
 * key file (named), a bind that failed (named), another ZAP handler in the
 * context, a libzmq without CURVE. Blocks on file I/O only. Call
 * crp_admin_server_stop from any one thread later. */
crp_err crp_admin_server_start(crp_admin_server **out, void *zctx, const crp_config *cfg,
                               const crp_admin_backend *backend, crp_audit *audit,
                               crp_alerts *alerts, char *errbuf, size_t errlen);

/* Stops both threads (a request being served is finished and answered
 * first), closes the sockets and frees the server. NULL-safe; sets *sp =
 * NULL. Blocks until the threads have exited. The ZAP endpoint is free
 * again when it returns, but libzmq closes tcp:// and ipc:// listeners in
 * the background (and an ipc:// listener unlinks its path when it does):
 * to bind the same endpoint again in this process, terminate the context
 * first. */
void crp_admin_server_stop(crp_admin_server **sp);

/* The server's public key (40 Z85 characters, NUL-terminated); valid until
 * stop. */
const char *crp_admin_server_public_key(const crp_admin_server *s);

/* Server counters (relaxed reads; statistics only). */
typedef struct crp_admin_stats {
    uint64_t requests;    /* requests answered */
    uint64_t ok;          /* answered ok */
    uint64_t bad_request; /* answered with each error code */
    uint64_t forbidden;
    uint64_t not_found;
    uint64_t conflict;
    uint64_t unavailable;
    uint64_t internal;
    uint64_t dropped;      /* messages with too many frames, never answered */
    uint64_t auth_ok;      /* handshakes accepted by the ZAP handler */
    uint64_t auth_refused; /* handshakes refused */
} crp_admin_stats;
void crp_admin_server_stats(const crp_admin_server *s, crp_admin_stats *out);

/* For the fuzz target (tests/fuzz/fuzz_admin.c) and tests only: runs one
 * request body through exactly what the server thread does with it --
 * identity by name, JSON parsing, arguments, tenant scope, role, the verb
 * against `backend`, the audit line -- without sockets, threads or keys.
 *
 * ids[0..n_ids) stand for the config's identities (borrowed for the call);
 * user_id is the ZAP "User-Id" (NULL: none, answered as an unknown
 * identity); body[0..size) is the request frame, any bytes. backend is
 * copied; audit and alerts may be NULL, as for crp_admin_server_start.
 * Returns the reply text (NUL-terminated JSON, malloc'd: the caller frees
 * it), or NULL when memory ran out. Blocks only on the audit log's file
 * I/O. Calls on the same backend, audit and alerts must not overlap, as on
 * the server thread. */
char *crp_admin_handle_for_fuzz(const crp_identity *ids, size_t n_ids,
                                const crp_admin_backend *backend, crp_audit *audit,
                                crp_alerts *alerts, const char *user_id, const void *body,
                                size_t size);

/* ---- key files -----------------------------------------------------------
 * A key file holds one line: the 40-character Z85 secret key (a trailing
 * newline is allowed, nothing else). Beside it, FILE.pub holds the public
 * key the same way. Both are mode 0600. These helpers are shared by the
 * server and the `connrep` CLI (keygen, --key, --server-key). */

#define CRP_Z85_KEY_SIZE (CRP_Z85_KEY_LEN + 1) /* with the NUL */

/* Whether s is exactly 40 characters of the Z85 alphabet that decode to a
 * 32-byte key. */
bool crp_admin_is_z85_key(const char *s);

/* Reads a secret key file and derives the public key. Refuses (CRP_BADFILE,
 * errbuf names the file and says why) a file that is not exactly 40 Z85
 * characters plus an optional newline, and one readable or writable by
 * group or others. CRP_NOTFOUND when it does not exist; CRP_IO otherwise. */
crp_err crp_admin_key_read(const char *path, char *secret, char *public_key, char *errbuf,
                           size_t errlen);

/* Creates a new key pair: path (secret) is created with O_EXCL and mode
 * 0600, so it is never readable by others even for a moment, written,
 * fsync'ed; then path.pub. CRP_CONFLICT when path exists (nothing is
 * overwritten). secret and public_key receive the keys (may be NULL). */
crp_err crp_admin_key_create(const char *path, char *secret, char *public_key, char *errbuf,
                             size_t errlen);

/* The server's variant: reads the key file, or creates the pair when it is
 * absent (creating missing parent directories, mode 0700); a missing or
 * stale .pub beside an existing secret is rewritten. *created tells which
 * (may be NULL). */
crp_err crp_admin_key_load_or_create(const char *path, char *secret, char *public_key,
                                     bool *created, char *errbuf, size_t errlen);

/* A public key given as 40 Z85 characters, or as the path of a file whose
 * content is one (a .pub file). CRP_BADFILE / CRP_NOTFOUND / CRP_IO with a
 * sentence in errbuf. */
crp_err crp_admin_public_key_resolve(const char *arg, char *public_key, char *errbuf,
                                     size_t errlen);

/* The client side, for the connrep CLI and ops tools: sends one request
 * body over CURVE (server's public key, this client's secret and public
 * key: 40-character Z85 each) and waits up to timeout_ms for the reply.
 * Returns CRP_OK with *reply (malloc'd, NUL-terminated; the caller frees
 * it), CRP_TIMEOUT (no answer: the engine is down or this key is not
 * authorised, since a refused CURVE handshake just never completes),
 * CRP_SYS (socket set-up or connect failed) or CRP_NOMEM; errbuf says why.
 * Blocks up to about twice timeout_ms; any thread; own ZeroMQ context. */
crp_err crp_admin_request(const char *endpoint, const char *server_key, const char *secret_key,
                          const char *public_key, int timeout_ms, const char *body, char **reply,
                          char *errbuf, size_t errlen);

#endif
