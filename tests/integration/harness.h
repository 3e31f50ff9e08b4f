/* Integration-test harness: runs the real connrepd (build/bin/connrepd) on
 * ipc:// endpoints in a private temporary directory, and talks to it like
 * its clients do (feed PUSH, lookup/stats REQ, events SUB).
 *
 * Life cycle, meant for Criterion fixtures so the daemon is always stopped,
 * also when an assertion fails (.fini runs after a failed test):
 *
 *   crp_harness_init(&h);                     // .init: temp dir, defaults
 *   crp_harness_set(&h, "scoring", "malware", "1");   // optional overrides
 *   crp_harness_start(&h);                    // writes the config, spawns
 *                                             // --foreground, waits ready
 *   ...                                       // feed, stats, events
 *   crp_harness_fini(&h);                     // .fini: SIGTERM, wait, then
 *                                             // SIGKILL; removes everything
 *
 * The generated config: [engine] max_connectors 1024, shards 2, shm_name
 * "/crp-it-<pid>-<n>" (unique per harness), state_dir <dir>/state; feed,
 * lookup and events on ipc://<dir>/{feed,lookup,events}; [feed]
 * max_frame_bytes 64KiB; [alerts] enabled false (so that every published
 * event is a state change, which the event-counting suites rely on); no
 * admin endpoint until an identity is added (crp_harness_add_identity),
 * then ipc://<dir>/run/admin with the server key in state_dir/admin.key;
 * every other key at its default. crp_harness_set() overrides or adds any
 * key.
 *
 * Nothing here sleeps a fixed time: every wait polls with a deadline. The
 * daemon's stderr goes to h.log_path; on a failed start the harness copies
 * it to the test's stderr. The daemon gets SIGTERM if the test process dies
 * (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind.
 *
 * Functions returning int return 0 on success and -1 on failure (with a
 * line on stderr saying why). One harness per test; not thread-safe.
 */
#ifndef CRP_IT_HARNESS_H
#define CRP_IT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "crp/wire.h"

#define CRP_HARNESS_PATH_MAX   256
#define CRP_HARNESS_OVERRIDES  32
#define CRP_HARNESS_IDENTITIES 16

typedef struct crp_harness_override {
    char section[32];
    char key[64];
    char value[256];
} crp_harness_override;

/* An admin identity of the generated config, with its CURVE key pair. */
typedef struct crp_harness_identity {
    char name[65];
    char role[48];
    char tenant[65]; /* "*" or a tenant */
    char email[128]; /* "" for none */
    char public_key[41];
    char secret_key[41];
    /* The secret key file (mode 0600) with .pub beside it, for the
     * `connrep --key` option: <dir>/keys/<name>.key. */
    char key_path[CRP_HARNESS_PATH_MAX];
} crp_harness_identity;

typedef struct crp_harness {
    char dir[CRP_HARNESS_PATH_MAX]; /* the temp dir, removed by fini */
    char config_path[CRP_HARNESS_PATH_MAX];
    char log_path[CRP_HARNESS_PATH_MAX]; /* the daemon's stderr */
    char state_dir[CRP_HARNESS_PATH_MAX];
    char pid_path[CRP_HARNESS_PATH_MAX];
    char feed_path[CRP_HARNESS_PATH_MAX]; /* socket files */
    char lookup_path[CRP_HARNESS_PATH_MAX];
    char events_path[CRP_HARNESS_PATH_MAX];
    char admin_path[CRP_HARNESS_PATH_MAX];
    char feed_ep[CRP_HARNESS_PATH_MAX + 8]; /* "ipc://" + path */
    char lookup_ep[CRP_HARNESS_PATH_MAX + 8];
    char events_ep[CRP_HARNESS_PATH_MAX + 8];
    char admin_ep[CRP_HARNESS_PATH_MAX + 8];
    char server_key_path[CRP_HARNESS_PATH_MAX]; /* state_dir/admin.key.pub */
    char shm_name[64];
    crp_harness_override over[CRP_HARNESS_OVERRIDES];
    size_t n_over;
    crp_harness_identity ids[CRP_HARNESS_IDENTITIES];
    size_t n_ids;
    pid_t pid;        /* the --foreground daemon, 0 when none */
    pid_t daemon_pid; /* a detached daemon (crp_harness_start_detached) */
    void *zctx;
    void *push;           /* feed socket, created on first use */
    void *sub;            /* events socket, created by crp_harness_subscribe */
    uint64_t instance;    /* events instance id seen by the subscription */
    uint64_t last_seq;    /* the last sequence number received */
    unsigned sync_events; /* restrictions made to synchronise the subscription */
} crp_harness;

/* An event received on the events socket; crp_harness_event_fini frees. */
typedef struct crp_harness_event {
    char topic[64];
    uint64_t instance;
    uint64_t seq;
    json_t *body;
} crp_harness_event;

/* The daemon binary: $CONNREP_DAEMON when set, else build/bin/connrepd. */
const char *crp_harness_daemon_path(void);

int crp_harness_init(crp_harness *h);
/* Stops the daemon if it runs (SIGTERM, then SIGKILL after 10 s), closes
 * the sockets and removes the temp dir and the shm object. Idempotent. */
void crp_harness_fini(crp_harness *h);

/* Overrides (or adds) one key of the generated config; takes effect at the
 * next crp_harness_write_config / crp_harness_start. */
void crp_harness_set(crp_harness *h, const char *section, const char *key, const char *value);
int crp_harness_write_config(crp_harness *h);
/* Writes arbitrary text as the config file (for bad-file tests). */
int crp_harness_write_raw_config(crp_harness *h, const char *text);

/* Writes the config, starts `connrepd --config FILE --foreground` and
 * waits until the pid file exists and a CRS1 stats request is answered. */
int crp_harness_start(crp_harness *h);
/* The same without --foreground: the command must return 0 once the
 * detached daemon is ready; its pid is read from the pid file. */
int crp_harness_start_detached(crp_harness *h);
/* Sends sig to the daemon and waits (up to timeout_ms) for it to exit;
 * SIGKILL after that. Returns the exit status (0..255), 128 + signal when
 * killed by one, or -1 when there was no daemon. For a detached daemon the
 * status is 0 once its pid file is gone, -1 when it had to be killed. */
int crp_harness_stop(crp_harness *h, int sig, int timeout_ms);
/* Sends a signal without waiting. */
int crp_harness_signal(crp_harness *h, int sig);
bool crp_harness_running(crp_harness *h);

/* Runs the daemon binary with args (NULL-terminated) to completion,
 * capturing stdout and stderr (NUL-terminated, truncated to the caps).
 * Returns the exit status, or -1. */
int crp_harness_run(const char *const *args, char *out, size_t out_cap, char *err, size_t err_cap);

/* The admin CLI: $CONNREP_CLI when set, else build/bin/connrep. */
const char *crp_harness_cli_path(void);
/* Runs `connrep --config <the generated config> --key <name's key file>
 * args...` to completion, as crp_harness_run. name NULL: no --key. */
int crp_harness_run_cli(crp_harness *h, const char *name, const char *const *args, char *out,
                        size_t out_cap, char *err, size_t err_cap);

/* ---- admin ---- */

/* Adds an [identity NAME] section to the generated config with a new
 * CURVE key pair (role as spelled in the config, tenant "*" or a name,
 * email "" for none), and writes its key files for the CLI. The first
 * identity turns the admin endpoint on. Takes effect at the next start.
 * Returns the identity, or NULL. */
const crp_harness_identity *crp_harness_add_identity(crp_harness *h, const char *name,
                                                     const char *role, const char *tenant,
                                                     const char *email);
const crp_harness_identity *crp_harness_identity_get(const crp_harness *h, const char *name);

/* One admin request (a JSON text) as identity `name`, over a CURVE DEALER
 * socket with send/receive timeouts; the parsed reply object, or NULL when
 * there was no answer within timeout_ms (which is also how a refused
 * handshake looks). The caller json_decref()s it. */
json_t *crp_harness_admin(crp_harness *h, const char *name, const char *body, int timeout_ms);
/* The same with explicit client keys; public_key NULL: no CURVE at all. */
json_t *crp_harness_admin_keys(crp_harness *h, const char *public_key, const char *secret_key,
                               const char *body, int timeout_ms);

/* ---- feed ---- */

/* Sends one message (one frame) on the feed PUSH socket. */
int crp_harness_feed_raw(crp_harness *h, const void *frame, size_t len);
/* Builds a frame of n events and sends it. */
int crp_harness_feed(crp_harness *h, uint64_t producer, uint64_t seq, const crp_feed_event *ev,
                     size_t n);
/* n copies of one event for connector `id` (tenant "t1", ts_ms). */
int crp_harness_feed_same(crp_harness *h, const char *id, uint16_t verdict, uint16_t recipients,
                          uint64_t ts_ms, size_t n);

/* ---- stats and lookups ---- */

/* CRS1 on the lookup socket; the parsed JSON object, or NULL after
 * timeout_ms. The caller json_decref()s it. */
json_t *crp_harness_stats(crp_harness *h, int timeout_ms);
/* A counter of the stats; "a.b" reads key b of object a. -1 when absent. */
long long crp_harness_stat(json_t *stats, const char *path);
/* Polls the stats until counter `path` is >= at_least; returns the last
 * value read (or -1). */
long long crp_harness_wait_stat(crp_harness *h, const char *path, long long at_least,
                                int timeout_ms);

/* One CRQ1 lookup of one id (with the SMTP text flag). Fills *res; the
 * text, if any, is copied to text (NUL-terminated). */
int crp_harness_lookup(crp_harness *h, const char *id, crp_reply_result *res, char *text,
                       size_t text_cap);

/* ---- events ---- */

/* Connects a SUB socket to the events endpoint and makes sure the
 * subscription is live: it restricts throw-away connectors "sync-<n>" (3
 * malware events each, so the malware threshold must be at most 3) until
 * their events arrive, then consumes the rest of them (with [alerts]
 * enabled in the generated config, each restriction's alert event too).
 * Afterwards h->last_seq is the sequence of the last sync event and
 * h->instance the engine's instance id. */
int crp_harness_subscribe(crp_harness *h);
/* Receives the next event within timeout_ms; 0, or -1 on timeout or a
 * malformed message. Updates h->last_seq. */
int crp_harness_next_event(crp_harness *h, int timeout_ms, crp_harness_event *ev);
void crp_harness_event_fini(crp_harness_event *ev);

/* ---- the daemon's log ---- */

/* Prints the daemon's stats and log to stderr (for a failing test). */
void crp_harness_dump(crp_harness *h);

/* Polls the daemon's stderr log until it contains `text`. */
bool crp_harness_log_contains(crp_harness *h, const char *text, int timeout_ms);

/* Milliseconds since the epoch, for event timestamps. */
uint64_t crp_harness_now_ms(void);

#endif
