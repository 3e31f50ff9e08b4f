/* The engine's lookup server: one thread that owns one ROUTER socket bound
 * to every `[lookup] bind` endpoint and answers lookup requests
 * (docs/protocol.md section 2) from the connector table.
 *
 * Requests are judged in the order of choice C4, answered with the envelope
 * of choice C6 (every frame before the body echoed byte for byte, then one
 * reply frame), from crp_table_lookup(): wait-free, so a lookup never waits
 * behind feed or scoring work; the server shares no lock with anyone. `CRS1`
 * is answered with "CRS1" and the engine's statistics JSON (C7), to which
 * the server adds its own lookup_malformed, lookup_unsupported and
 * lookup_dropped counters.
 *
 * The server never answers status 2 (overloaded): it has no queue, every
 * request is looked up as it is read. Under a flood, ZeroMQ's own
 * high-water marks push back on the peers.
 *
 * Hot path: the server allocates nothing per request. A request body is
 * decoded where ZeroMQ received it, envelope frames are sent back by moving
 * the received messages, and the reply is encoded straight into the message
 * ZeroMQ sends (its exact size is known after the lookups), so there is no
 * copy of either. libzmq itself allocates a message body for replies over
 * 33 bytes, as it does for every message it receives.
 */
#ifndef CRP_LOOKUP_SERVER_H
#define CRP_LOOKUP_SERVER_H

#include <stdint.h>

#include "crp/err.h"
#include "crp/table.h"

/* The engine (crp/engine.h); the server only passes it back to the hooks,
 * so it does not depend on the engine module. */
typedef struct crp_engine crp_engine;

typedef struct crp_lookup_server crp_lookup_server;

/* Frames a request may carry before its body, the routing id included
 * (choice C6 promises at least 8). A message with more frames is dropped
 * without a reply. */
#define CRP_LOOKUP_ENVELOPE_MAX 16u

/* How the server reaches the engine's statistics. Both are called on the
 * server thread. The engine passes CRP_LOOKUP_ENGINE_HOOKS. */
typedef struct crp_lookup_hooks {
    /* Returns the statistics JSON object text (section 2.6), which the
     * server frees with free(), or NULL (out of memory). NULL hook: the
     * stats reply holds the server's counters only. */
    char *(*stats_json)(const crp_engine *e);
    /* Adds n to the engine's `lookups` counter; called once per answered
     * request with its id count, so the stats always include every lookup
     * answered before them. NULL hook: not counted. */
    void (*count_lookups)(crp_engine *e, uint64_t n);
} crp_lookup_hooks;

/* The engine's hooks; needs crp/engine.h at the point of use. */
#define CRP_LOOKUP_ENGINE_HOOKS                                                                    \
    (&(const crp_lookup_hooks){.stats_json = crp_engine_stats_json,                                \
                               .count_lookups = crp_engine_count_lookups})

/* The server's own counters (statistics only, read with relaxed loads). */
typedef struct crp_lookup_server_stats {
    uint64_t requests;    /* messages answered, stats requests included */
    uint64_t lookups;     /* ids looked up (status 0 replies) */
    uint64_t stats;       /* CRS1 requests answered */
    uint64_t malformed;   /* answered with status 1 */
    uint64_t unsupported; /* answered with status 3 */
    uint64_t dropped;     /* dropped unanswered: too many frames, or out of memory */
} crp_lookup_server_stats;

/* Creates the ROUTER socket in `zmq_ctx`, sets ZMQ_MAXMSGSIZE to the largest
 * valid request (CRP_LOOKUP_REQ_MAX_SIZE) and ZMQ_LINGER 0, binds it to every
 * endpoint of `binds` (comma-separated, blanks around commas ignored; ipc://
 * and tcp://) and to a private inproc:// endpoint used to stop it, and
 * starts the server thread, which owns the socket from then
 * on (pthread_create is the full barrier ZeroMQ requires for the hand-over).
 * The thread runs with every signal blocked.
 *
 * `t` must stay mapped until the server is stopped. `stats_source` is passed
 * to the hooks (may be NULL, as may hooks). Returns CRP_OK and *out; CRP_INVAL
 * when binds holds no endpoint or one ZeroMQ rejects as invalid; CRP_SYS with
 * errno when a bind or the thread fails (EADDRINUSE, ENOENT for a missing
 * ipc directory, ...); CRP_NOMEM. Nothing is left bound on failure. Blocks
 * only for the binds. */
crp_err crp_lookup_server_start(crp_lookup_server **out, void *zmq_ctx, const char *binds,
                                const crp_table *t, crp_engine *stats_source,
                                const crp_lookup_hooks *hooks);

/* Stops the thread (a flag, then a wake-up message through the server's
 * private inproc endpoint; the thread sleeps in a blocking receive, it
 * never spins), which closes its socket, dropping unsent replies, and
 * frees the server. Call it before zmq_ctx_term(): the socket
 * belongs to the context. If the context was shut down first
 * (zmq_ctx_shutdown), the thread has already left on ETERM and this only
 * joins and frees. Any one thread; not concurrently with itself. NULL-safe;
 * sets *s to NULL. */
void crp_lookup_server_stop(crp_lookup_server **s);

/* Copies the server's counters; any thread. */
void crp_lookup_server_stats_get(const crp_lookup_server *s, crp_lookup_server_stats *out);

#endif
