/* libconnrep: "may this connector relay?" for relay workers.
 *
 * One small API; the endpoint given to connrep_open() picks the path:
 *
 *   ipc://PATH, tcp://HOST:PORT  lookups over ZeroMQ to a connrepd lookup
 *                                socket (docs/protocol.md section 2);
 *   shm:/NAME                    lookups in the engine's connector table,
 *                                mapped read-only from the POSIX shared-memory
 *                                object /NAME (section 3): no system call, no
 *                                lock, no waiting for the engine.
 *
 * Both paths give the same answers. A relay refuses a message with
 * result.smtp_text when result.state is CONNREP_STATE_RESTRICTED and accepts it
 * otherwise; what it does when a call fails (a negative return) is its policy.
 *
 * Threads. A client is used by one thread at a time (its ZeroMQ socket, and
 * the shm mapping it may swap, belong to whoever calls it); open one client
 * per worker thread. Different clients are independent.
 *
 * What the library does not do: it starts no threads of its own (a ZeroMQ
 * client has libzmq's I/O and reaper threads, and only those), installs no
 * signal handlers, replaces no allocator and never exits the process. A
 * shm client allocates only in connrep_open() and when it re-attaches to a
 * restarted engine's table.
 *
 * Link with `pkg-config --cflags --libs connrep`.
 */
#ifndef CONNREP_H
#define CONNREP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CONNREP_API __attribute__((visibility("default")))
#else
#define CONNREP_API
#endif

#define CONNREP_VERSION_MAJOR 1
#define CONNREP_VERSION_MINOR 0

/* The text a relay answers a restricted connector's message with (58 bytes). */
#define CONNREP_SMTP_TEXT "550 5.7.711 Access denied, bad inbound connector. AS(2204)"

/* Limits of the protocol: an id is 1..255 bytes; one request carries at most
 * 4096 ids (connrep_lookup_batch() splits larger batches itself). */
#define CONNREP_ID_MAX    255
#define CONNREP_BATCH_MAX 4096

/* The default wait for a reply, used when connrep_open() gets timeout_ms <= 0. */
#define CONNREP_DEFAULT_TIMEOUT_MS 1000

/* Connector states, as on the wire. */
enum connrep_state {
    CONNREP_STATE_UNKNOWN = 0,    /* never seen, or no longer held: allow */
    CONNREP_STATE_ACTIVE = 1,     /* allow */
    CONNREP_STATE_RESTRICTED = 2, /* refuse with smtp_text */
    CONNREP_STATE_PROBATION = 3,  /* recently unblocked: allow */
};

/* Reason bits of a restriction, as on the wire. */
enum connrep_reason {
    CONNREP_REASON_SPAM_RATIO = 1u << 0,
    CONNREP_REASON_PHISH_RATIO = 1u << 1,
    CONNREP_REASON_HC_PHISH = 1u << 2,
    CONNREP_REASON_MALWARE = 1u << 3,
    CONNREP_REASON_SENDING_LIMIT = 1u << 4,
    CONNREP_REASON_MANUAL = 1u << 5,
};

/* Error codes: every function returning int returns 0 or one of these
 * (negative). One X-macro, so names, texts and values cannot drift apart. */
#define CONNREP_ERR_MAP(X)                                                                         \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ETIMEOUT, -2, "timed out waiting for the engine's reply")                                    \
    X(EUNAVAIL, -3, "engine unavailable (not connected, or its shared table is gone)")             \
    X(EPROTO, -4, "malformed reply from the engine")                                               \
    X(EOVERLOAD, -5, "engine overloaded, retry later")                                             \
    X(EREJECTED, -6, "engine rejected the request (malformed or unsupported version)")             \
    X(ENOMEM, -7, "out of memory")                                                                 \
    X(ESYS, -8, "system or ZeroMQ call failed (see errno)")

enum connrep_err {
#define CONNREP_ERR_ENUM(name, value, text) CONNREP_##name = (value),
    CONNREP_ERR_MAP(CONNREP_ERR_ENUM)
#undef CONNREP_ERR_ENUM
};

typedef struct connrep_client connrep_client;

typedef struct connrep_id {
    const char *id; /* id bytes, not necessarily NUL-terminated */
    size_t len;     /* 1..255 */
} connrep_id;

typedef struct connrep_result {
    int state;             /* enum connrep_state */
    unsigned reasons;      /* enum connrep_reason bits; 0 unless restricted */
    uint64_t since_ms;     /* restricted since, ms since the epoch; 0 unless restricted */
    const char *smtp_text; /* CONNREP_SMTP_TEXT (a static string) when restricted, else NULL */
} connrep_result;

/* Opens a client for `endpoint` (see the top of this file).
 *
 * timeout_ms bounds every wait for one reply of a ZeroMQ client (<= 0: the
 * default, CONNREP_DEFAULT_TIMEOUT_MS); a shm client never waits and ignores
 * it. A ZeroMQ client connects in the background, so opening succeeds
 * whether or not the engine runs yet; lookups report CONNREP_EUNAVAIL while
 * no connection is up. A shm client maps the table now.
 *
 * Returns the client, or NULL with errno set: EINVAL (unknown scheme, bad
 * name), ENOENT (no such shm object: the engine does not run), EPROTO (the
 * object is not a connector table of this library's layout), ENOMEM, or the
 * errno of the failing system or ZeroMQ call. Blocks only for those calls. */
CONNREP_API connrep_client *connrep_open(const char *endpoint, int timeout_ms);

/* Looks up one connector id (1..255 bytes) and fills *out.
 *
 * Returns 0, or a negative connrep_err: CONNREP_EINVAL (bad arguments),
 * CONNREP_EUNAVAIL, CONNREP_ETIMEOUT, CONNREP_EOVERLOAD, CONNREP_EPROTO,
 * CONNREP_EREJECTED. On error *out says "unknown" (state 0).
 *
 * A shm lookup is wait-free: one atomic load notices a replaced table, then
 * a hash and a probe of the shared table. When the engine that owns the
 * table stopped or restarted, the client maps the new engine's table (this
 * one lookup makes system calls), or answers CONNREP_EUNAVAIL until one
 * exists. A ZeroMQ lookup blocks for at most the client's timeout; after a
 * timeout the client discards that request's late reply and reconnects. */
CONNREP_API int connrep_lookup(connrep_client *c, const char *id, size_t len, connrep_result *out);

/* Looks up ids[0..n) and fills out[0..n) in the same order; n may exceed
 * CONNREP_BATCH_MAX (the ZeroMQ path then sends several requests, a few in
 * flight at a time). n == 0 returns 0. Returns as connrep_lookup(); on error
 * every out[i] says "unknown", even those a partial answer had filled. */
CONNREP_API int connrep_lookup_batch(connrep_client *c, const connrep_id *ids, size_t n,
                                     connrep_result *out);

/* Closes the client: closes its socket and ZeroMQ context (pending requests
 * are dropped, nothing lingers) or unmaps its table. NULL-safe; sets *c to
 * NULL. */
CONNREP_API void connrep_close(connrep_client **c);

/* Returns a static message for a connrep_err value; never NULL. */
CONNREP_API const char *connrep_strerror(int err);
/* Returns the symbolic name ("CONNREP_ETIMEOUT"); never NULL. */
CONNREP_API const char *connrep_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif
