/* A real connrepd for a scenario to measure: started with a generated
 * config in a private temp dir, watched, and always stopped.
 *
 *   bench_daemon d;
 *   bench_daemon_init(&d);                   // temp dir, endpoints, defaults
 *   bench_daemon_set(&d, "scoring", "malware", "5");   // optional overrides
 *   bench_daemon_start(&d, &opts);           // config, spawn, wait ready
 *   ... bench_daemon_stats_u64(&d, "events_applied", &v) ...
 *   bench_daemon_stop(&d);                   // SIGTERM, wait, SIGKILL; rm dir
 *
 * The generated config: [engine] max_connectors the next power of two at
 * or above the connectors asked for (at least 64), shards as asked,
 * shm_name "/crp-bench-<pid>-<n>", state_dir <dir>/state; feed, lookup and
 * events on ipc://<dir>/{feed,lookup,events} (the lookup socket also on
 * tcp://127.0.0.1:<free port> when asked); no admin endpoint; every other
 * key at its built-in default unless overridden.
 *
 * The daemon is `connrepd` next to the connrep-bench executable (found
 * through /proc/self/exe), or $CONNREP_DAEMON. Its stderr goes to
 * <dir>/connrepd.stderr; a failed start prints the end of it. It runs in a
 * process group of its own (a Ctrl-C reaches the bench, which stops it in
 * order) and gets SIGTERM if the bench dies (PR_SET_PDEATHSIG). While it
 * runs it is registered with bench_on_abort(), so the watchdog and
 * SIGINT/SIGTERM stop it and remove the temp dir and the shm object too.
 *
 * Nothing here sleeps a fixed time: every wait polls with a deadline.
 * Functions are for the scenario's main thread only.
 */
#ifndef BENCH_DAEMON_H
#define BENCH_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_DAEMON_PATH_MAX  200
#define BENCH_DAEMON_OVERRIDES 16

typedef struct bench_daemon_opts {
    uint64_t connectors;      /* max_connectors = next power of two >= this */
    unsigned shards;          /* [engine] shards, a power of two */
    bool lookup_tcp;          /* also bind the lookup socket on 127.0.0.1 */
    uint64_t max_frame_bytes; /* [feed] max_frame_bytes; 0 = the default */
} bench_daemon_opts;

typedef struct bench_daemon_override {
    char section[32];
    char key[64];
    char value[128];
} bench_daemon_override;

typedef struct bench_daemon {
    char dir[BENCH_DAEMON_PATH_MAX]; /* the temp dir, removed by stop */
    char state_dir[BENCH_DAEMON_PATH_MAX + 8];
    char config_path[BENCH_DAEMON_PATH_MAX + 16];
    char log_path[BENCH_DAEMON_PATH_MAX + 16];
    char pid_path[BENCH_DAEMON_PATH_MAX + 24];
    char feed_ep[BENCH_DAEMON_PATH_MAX + 16]; /* ipc://<dir>/feed */
    char lookup_ep[BENCH_DAEMON_PATH_MAX + 16];
    char events_ep[BENCH_DAEMON_PATH_MAX + 16];
    char lookup_tcp_ep[48]; /* tcp://127.0.0.1:PORT, or "" */
    char shm_name[48];      /* /crp-bench-<pid>-<n> */
    char shm_ep[56];        /* shm:/crp-bench-<pid>-<n>, for connrep_open */
    uint64_t capacity;      /* max_connectors as configured */
    unsigned shards;
    pid_t pid;       /* 0 when not running */
    int exit_status; /* of the last stop: 0..255, 128 + signal, -1 */
    bool killed;     /* the last stop needed SIGKILL */
    bench_daemon_override over[BENCH_DAEMON_OVERRIDES];
    size_t n_over;
    void *zctx;  /* for the stats socket */
    void *stats; /* DEALER on the lookup socket, created on first use */
} bench_daemon;

/* The daemon binary: $CONNREP_DAEMON when set, else connrepd in the
 * directory of this executable. */
const char *bench_daemon_binary(void);

/* Creates the temp dir and names every path; no process yet. Returns false
 * (with a line on stderr) when the dir cannot be made. */
bool bench_daemon_init(bench_daemon *d);

/* Overrides (or adds) one key of the generated config. */
void bench_daemon_set(bench_daemon *d, const char *section, const char *key, const char *value);

/* Writes the config, starts `connrepd --config FILE --foreground` and waits
 * until its pid file exists and it answers a stats request (deadline
 * 60 s). A port taken by someone else between choosing and binding it is
 * retried with another. Returns false, the daemon stopped, on failure. */
bool bench_daemon_start(bench_daemon *d, const bench_daemon_opts *o);

/* Stops the daemon (SIGTERM; SIGKILL after 20 s), records its exit status,
 * closes the stats socket and removes the temp dir and, if the daemon could
 * not, the shm object. Idempotent. Returns exit_status. */
int bench_daemon_stop(bench_daemon *d);

/* True while the daemon process exists (reaps it when it died). */
bool bench_daemon_alive(bench_daemon *d);

/* The daemon's stats JSON (docs/protocol.md 2.6), NUL-terminated, from a
 * CRS1 request on the ipc lookup socket; NULL after timeout_ms. The caller
 * frees it. */
char *bench_daemon_stats(bench_daemon *d, int timeout_ms);

/* An integer member of a stats JSON text: `key` at the top level, or
 * "object.key" one level down. False when absent or not an integer. */
bool bench_stats_get(const char *json, const char *key, uint64_t *out);

/* The sum of the integer members of the object `key` (e.g.
 * "frames_rejected"); 0 when absent. */
uint64_t bench_stats_sum(const char *json, const char *key);

/* One fresh stats counter; false when the daemon did not answer in time. */
bool bench_daemon_stat(bench_daemon *d, const char *key, uint64_t *out);

/* Polls counter `key` every poll_ms until it is >= target, it has not
 * changed for `stall_s` seconds, or `timeout_s` passed. Stores the last
 * value read and the monotonic time (ns) of the poll that first saw it
 * reach the target (or of the last poll). True when the target was
 * reached. */
bool bench_daemon_wait(bench_daemon *d, const char *key, uint64_t target, unsigned poll_ms,
                       double stall_s, double timeout_s, uint64_t *last, uint64_t *at_ns);

/* Sends one message on a PUSH socket, waiting while the peer's queue is
 * full (the socket should have a ZMQ_SNDTIMEO, so the wait can notice):
 * gives up when the daemon d (if not NULL) died or nothing moved for 30 s.
 * Used by every scenario that feeds. */
bool bench_push_send(void *sock, const void *buf, size_t len, bench_daemon *d);

/* A PUSH socket of d's context connected to its feed (linger 0, send
 * timeout 1 s); NULL on failure. The caller closes it before stopping d. */
void *bench_daemon_feed_socket(bench_daemon *d);

struct bench_feedgen;

/* Pre-populates the engine with the generator's whole population (its
 * fill frames: docs in feedgen.h), as producer `producer` from sequence
 * *seq on (advanced), and waits until the daemon applied every event.
 * Stores the events sent and the seconds from the first send to the poll
 * that saw them applied. False (with a line on stderr) on failure. */
bool bench_daemon_fill(bench_daemon *d, struct bench_feedgen *g, uint64_t producer, uint64_t *seq,
                       uint64_t *events, double *seconds);

/* Waits until the daemon has published every state change so far: its
 * events_published counter has not moved for `quiet_s` seconds (polled
 * every 20 ms), or timeout_s passed. Stores the count and the seconds from
 * the call to the last change. A burst of restrictions (a fill) is
 * published, audited and logged by the events thread at its own pace; a
 * measurement should not run while it catches up. True when it settled. */
bool bench_daemon_settle(bench_daemon *d, double quiet_s, double timeout_s, uint64_t *published,
                         double *seconds);

/* Prints the last `lines` lines of the daemon's stderr to stderr. */
void bench_daemon_log_tail(const bench_daemon *d, int lines);

/* ---- CPU time of a process, by thread name ------------------------------- */

#define BENCH_CPU_THREADS 64

typedef struct bench_cpu {
    size_t n;
    char name[BENCH_CPU_THREADS][16]; /* comm, as the kernel keeps it */
    uint64_t ns[BENCH_CPU_THREADS];   /* time on a CPU, from schedstat */
    /* Time runnable but waiting for a CPU (schedstat's second field): a
     * thread that wanted to run while other processes had the cores. */
    uint64_t wait_ns[BENCH_CPU_THREADS];
} bench_cpu;

/* Reads the CPU time of every thread of pid (0 = this process), summed by
 * thread name. False when /proc cannot be read. */
bool bench_cpu_read(pid_t pid, bench_cpu *out);

/* Accumulates after - before into *acc (threads matched by name). */
void bench_cpu_add_delta(bench_cpu *acc, const bench_cpu *before, const bench_cpu *after);

/* The totals of *c, in ns: on a CPU, and waiting for one. */
uint64_t bench_cpu_total(const bench_cpu *c);
uint64_t bench_cpu_total_wait(const bench_cpu *c);

#endif
