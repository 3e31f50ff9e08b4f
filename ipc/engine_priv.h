/* Private to the engine runtime (engine.c, feed.c, events.c): the threads,
 * the messages they pass over inproc:// and the counters they share.
 *
 * Threads and the sockets each one owns (sockets are created and bound by
 * crp_engine_create in the creating thread, then handed over when the
 * owning thread starts; pthread_create is the full barrier ZeroMQ asks for
 * when a socket changes threads):
 *
 *   feed      PULL (binds [feed] bind), SUB (connects [feed] connect),
 *             one PUSH per writer, and the read end of a stop pipe
 *   writer i  PULL data (inproc .../w<i>), ROUTER control (inproc .../c<i>),
 *             PUSH to the events thread
 *   events    PULL notes (inproc .../ev), PUB (binds [events] bind)
 *
 * Control requests come from short-lived REQ sockets that belong to the
 * calling thread (crp_engine_block and friends), so any thread may call them.
 *
 * Shutdown is a pipeline flush: the feed thread closes its intake, sends an
 * empty message down every writer's data pipe (after everything it sent
 * before, since a pipe is FIFO) and exits; a writer that reads the empty
 * message has applied every batch, sends an empty message to the events
 * thread and exits; the events thread exits after one empty message per
 * writer, having published every transition.
 */
#ifndef CRP_ENGINE_PRIV_H
#define CRP_ENGINE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crp/config.h"
#include "crp/engine.h"
#include "crp/journal.h"
#include "crp/scoring.h"
#include "crp/table.h"
#include "crp/wire.h"

/* ThreadSanitizer cannot see the synchronisation inside libzmq (it is not
 * instrumented), so a buffer one thread fills and hands to another inside a
 * ZeroMQ message looks like a race to it. The sender releases and the
 * receiver acquires the buffer's address around the hand-off to tell it
 * what libzmq's pipes guarantee. No code in other builds. */
#if defined(__SANITIZE_THREAD__)
#define CRP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CRP_TSAN 1
#endif
#endif
#ifdef CRP_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define crp_handoff_send(p) __tsan_release(p)
#define crp_handoff_recv(p) __tsan_acquire(p)
#else
#define crp_handoff_send(p) ((void)(p))
#define crp_handoff_recv(p) ((void)(p))
#endif

/* Longest inproc endpoint name we build ("inproc://crp-engine-<ptr>-w63"). */
#define CRP_INPROC_MAX 64u

/* Control replies are awaited this long; a writer answers in microseconds,
 * so only a stopped or wedged engine ever reaches it. */
#define CRP_CTL_TIMEOUT_MS 10000

/* Counters written by the feed, events and lookup threads and read by
 * crp_engine_stats_json. Every one is a relaxed atomic: statistics only,
 * no other memory is published through them. Each group sits on its own
 * cache lines so that one thread's increments do not slow another's. */
typedef struct crp_counters {
    /* Feed thread. */
    _Alignas(64) _Atomic uint64_t frames_applied;            /* statistics only */
    _Atomic uint64_t frames_rejected[CRP_FEED_REASON_LIMIT]; /* statistics only */
    _Atomic uint64_t seq_gap;                                /* statistics only */
    _Atomic uint64_t seq_repeat;                             /* statistics only */
    _Atomic uint64_t feed_backpressure;                      /* statistics only */
    _Atomic uint64_t feed_multipart;                         /* statistics only */
    _Atomic uint64_t producers_tracked;                      /* statistics only */
    _Atomic uint64_t producers_evicted;                      /* statistics only */
    /* Events thread. */
    _Alignas(64) _Atomic uint64_t events_published; /* statistics only */
    _Atomic uint64_t instance_id;                   /* statistics only (set once) */
    _Atomic uint64_t journal_failed;                /* statistics only: 1 while failed */
    _Atomic uint64_t journal_errors;                /* statistics only */
    _Atomic uint64_t journal_records;               /* statistics only */
    _Atomic uint64_t journal_commits;               /* statistics only */
    _Atomic uint64_t snapshots;                     /* statistics only */
    _Atomic uint64_t snapshot_errors;               /* statistics only */
    _Atomic uint64_t snapshot_last_ms;              /* statistics only: duration */
    _Atomic uint64_t events_held;                   /* statistics only: held back now */
    _Atomic uint64_t events_held_dropped;           /* statistics only */
    /* Lookup server thread(s). */
    _Alignas(64) _Atomic uint64_t lookups; /* statistics only */
    /* Control callers. */
    _Alignas(64) _Atomic uint64_t config_reloads; /* statistics only */
} crp_counters;

/* A transition on its way from a writer to the events thread, sent by value
 * over inproc (same process, same binary: no encoding needed). The strings
 * are NUL-terminated copies; id and tenant also carry their lengths since
 * they may contain NUL bytes. */
enum crp_note_what {
    CRP_NOTE_TRANSITION = 0, /* from a writer: tr and the fields below */
    CRP_NOTE_POLICY = 1,     /* an alert-policy edit (crp_engine_save_alert_policy):
                                policy and actor only */
};

typedef struct crp_note {
    crp_transition tr;
    uint64_t wseq;           /* the sender's note number, from 1 (crp_durable) */
    unsigned writer;         /* the sender: a shard writer, or CRP_NOTE_POLICY_SENDER */
    uint8_t what;            /* enum crp_note_what */
    crp_alert_policy policy; /* CRP_NOTE_POLICY */
    /* The entry after the change, for the journal's STATE record (since_ms
     * below is the event's "since", which differs for an ACTIVE entry). */
    uint8_t state;
    uint8_t reasons;
    bool until_midnight;
    uint64_t entry_since_ms;
    uint64_t since_ms;     /* the connector's since after the change */
    uint64_t probation_ms; /* the policy's probation when it happened */
    uint8_t id_len;
    uint8_t tenant_len;
    char id[CRP_ID_MAX + 1];
    char tenant[CRP_TENANT_MAX + 1];
    char actor[CRP_CONFIG_NAME_MAX];          /* "engine" or an identity name */
    char comment[CRP_ENGINE_COMMENT_MAX + 1]; /* an admin's free text; "" none */
} crp_note;

/* Control requests, sent by value from a caller's REQ socket to the ROUTER
 * of the writer that owns the key (or of the events thread). */
enum crp_ctl_op {
    CRP_CTL_BLOCK = 1,
    CRP_CTL_REMOVE = 2,
    CRP_CTL_POLICY = 3, /* writers: replace the policy */
    CRP_CTL_GET = 4,
};

typedef struct crp_ctl_req {
    uint32_t op; /* enum crp_ctl_op */
    uint8_t id_len;
    uint8_t tenant_len;
    char id[CRP_ID_MAX];
    char tenant[CRP_TENANT_MAX];
    char actor[CRP_CONFIG_NAME_MAX];
    char comment[CRP_ENGINE_COMMENT_MAX + 1];
    crp_policy policy;
} crp_ctl_req;

typedef struct crp_ctl_rep {
    int32_t err;       /* crp_err */
    uint64_t note_seq; /* the note the change was sent as; 0 = none */
    crp_transition tr;
    crp_engine_detail detail;
} crp_ctl_rep;

/* ---- logging helpers ---------------------------------------------------- */

/* Copies len bytes of untrusted text into dst (cap bytes, NUL-terminated),
 * escaping anything that is not printable ASCII as \xNN so a connector id
 * cannot forge log lines. Truncates with "..." when it does not fit. */
void crp_log_escape(char *dst, size_t cap, const void *src, size_t len);

/* ---- feed thread (feed.c) ----------------------------------------------- */

typedef struct crp_feed crp_feed;

typedef struct crp_feed_opts {
    void *zctx;
    const char *bind;    /* comma list; "" none */
    const char *connect; /* comma list; "" none */
    uint64_t max_frame_bytes;
    const crp_table *table; /* for keys and shards */
    unsigned shards;
    char (*writer_data)[CRP_INPROC_MAX]; /* shards endpoint names */
    int batch_hwm;                       /* per-writer queue depth, in batches */
    crp_counters *counters;
} crp_feed_opts;

/* Creates the feed's sockets (binds and connects); no thread yet. On error
 * writes a sentence to errbuf. */
crp_err crp_feed_create(crp_feed **out, const crp_feed_opts *opts, char *errbuf, size_t errlen);
/* Starts the feed thread, which owns the sockets from then on. */
crp_err crp_feed_start(crp_feed *f);
/* Stops intake and flushes the writers' pipes (see the top of this file);
 * joins the thread. Safe on a feed that was never started. */
void crp_feed_stop(crp_feed *f);
void crp_feed_destroy(crp_feed **fp);

/* Alert-policy edits reach the events thread as notes too, in order with
 * the transitions, from a sender numbered after the shard writers: its
 * index in crp_note.writer and crp_durable is the engine's shard count. */
#define CRP_NOTE_POLICY_SENDER(shards) (shards)

/* ---- durability (events.c) ------------------------------------------------
 *
 * How a control call learns that the journal commit covering its change
 * succeeded. Each writer numbers its notes (crp_note.wseq, from 1) and a
 * control reply carries the number of the note it sent; the events thread
 * raises processed[w] after each batch, and durable[w] after each
 * successful commit (or a rotation that healed a failed journal, which
 * carries every record appended before it). The caller waits on the
 * condition variable until durable[w] reaches its number (acknowledged), or
 * processed[w] does while the journal is failed (not durable: CRP_IO).
 * A mutex rather than atomics: the waiter must not miss the wake-up between
 * its check and its sleep, and it runs only for admin verbs. */
typedef struct crp_durable {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned writers;
    uint64_t *processed; /* per writer; guarded by mu */
    uint64_t *durable;   /* per writer; guarded by mu */
    bool failed;         /* the journal is failed; guarded by mu */
    bool stopped;        /* the events thread has exited; guarded by mu */
} crp_durable;

/* Waits until the writer's note number seq is durable: CRP_OK, CRP_IO when
 * the journal failed before it was, CRP_TIMEOUT after timeout_ms or when
 * the events thread stopped first. */
crp_err crp_durable_wait(crp_durable *d, unsigned writer, uint64_t seq, unsigned timeout_ms);

/* ---- events thread (events.c) ------------------------------------------- */

typedef struct crp_events crp_events;

typedef struct crp_events_opts {
    void *zctx;
    const char *bind;           /* [events] bind, comma list; "" none */
    const char *notes_endpoint; /* inproc PULL the writers push to */
    unsigned writers;           /* empty messages to wait for at stop */
    crp_engine_sinks sinks;     /* audit log and alerts; either may be NULL */
    crp_counters *counters;
    /* Persistence; journal NULL = none. The events thread takes the open
     * journal over (it appends, commits, snapshots and rotates, and closes
     * it when it exits); the table is read for snapshots. */
    crp_journal *journal;
    const crp_table *table;
    const char *state_dir;
    uint64_t snapshot_every_ms; /* 0 = only at a clean stop */
    const crp_io_ops *io;
    crp_durable *durable; /* writers + 1 senders: the last one is the policy's */
} crp_events_opts;

crp_err crp_events_create(crp_events **out, const crp_events_opts *opts, char *errbuf,
                          size_t errlen);
crp_err crp_events_start(crp_events *ev);
/* Joins the thread; it exits once every writer has said it is done, so
 * call it after the writers were told to stop. */
void crp_events_join(crp_events *ev);
void crp_events_destroy(crp_events **evp);

/* ---- shared helpers (engine.c) ------------------------------------------ */

/* pthread_create with every signal blocked in the new thread (signals are
 * the daemon's main thread's business) and a name for debuggers (at most
 * 15 characters). Returns 0 or an errno value. */
int crp_thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name);

/* Binds (or connects) sock to every endpoint of a comma list. On failure
 * writes "what 'endpoint': reason" to errbuf and returns CRP_SYS. */
crp_err crp_zmq_bind_list(void *sock, const char *list, bool connect, const char *what,
                          char *errbuf, size_t errlen);

/* Sends a request to a control ROUTER and waits for the reply, with a
 * short-lived REQ socket of the calling thread. CRP_TIMEOUT when nobody
 * answered within CRP_CTL_TIMEOUT_MS. */
crp_err crp_ctl_call(void *zctx, const char *endpoint, const crp_ctl_req *req, crp_ctl_rep *rep);

/* Receives one request on a control ROUTER ([routing id][""][body]) into
 * *req and keeps the routing id in rid/rid_len; returns false when the
 * message was not a well-formed request (it is then dropped). */
bool crp_ctl_recv(void *router, crp_ctl_req *req, unsigned char *rid, size_t *rid_len);
/* Sends the reply to the request received with crp_ctl_recv. */
void crp_ctl_reply(void *router, const unsigned char *rid, size_t rid_len, const crp_ctl_rep *rep);

#endif
