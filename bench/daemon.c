/* A real connrepd for a scenario: see daemon.h.
 *
 * The approach is the integration-test harness's (tests/integration), not
 * its code: the bench links no test code. */
/* syscall(), prctl(), mkdtemp() and friends are outside plain POSIX. */
#define _GNU_SOURCE

#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "crp/wire.h"
#include "feedgen.h"

#define START_TIMEOUT_S 60.0
#define STOP_TIMEOUT_S  20.0
#define POLL_MS         5u
#define START_ATTEMPTS  3

static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- The daemon binary ---------------------------------------------------- */

const char *bench_daemon_binary(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("CONNREP_DAEMON");
    if (env != NULL && env[0] != '\0')
        return env;
    if (path[0] != '\0')
        return path;
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
    if (n <= 0) {
        snprintf(path, sizeof(path), "connrepd");
        return path;
    }
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(path, sizeof(path), "connrepd");
    else
        strcpy(slash + 1, "connrepd");
    return path;
}

/* ---- Removing the temp dir, from a signal handler too ---------------------- */

/* getdents64's record; glibc exposes no wrapper before 2.30 and none that
 * is async-signal-safe, so the system call is made directly. */
struct bench_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Removes the tree at `path` (depth-limited), with system calls only
 * (open, getdents64, unlinkat, close): async-signal-safe and allocation
 * free, so the abort handler can call it. */
static void bench_rm_tree_at(int parent, const char *name, int depth)
{
    if (depth > 8)
        return;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        (void)unlinkat(parent, name, 0);
        return;
    }
    _Alignas(8) char buf[4096];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            const struct bench_dirent64 *de = (const struct bench_dirent64 *)(buf + off);
            off += de->d_reclen;
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if (de->d_type == DT_DIR)
                bench_rm_tree_at(fd, de->d_name, depth + 1);
            else if (unlinkat(fd, de->d_name, 0) != 0 && errno == EISDIR)
                bench_rm_tree_at(fd, de->d_name, depth + 1);
        }
    }
    close(fd);
    (void)unlinkat(parent, name, AT_REMOVEDIR);
}

static void bench_rm_tree(const char *path)
{
    if (path[0] != '\0')
        bench_rm_tree_at(AT_FDCWD, path, 0);
}

/* ---- Abort: the daemons that run now --------------------------------------- */

#define LIVE_MAX 4
static bench_daemon *volatile live[LIVE_MAX];

/* Stops a daemon with async-signal-safe calls only. */
static void stop_hard(bench_daemon *d)
{
    pid_t pid = d->pid;
    if (pid > 0) {
        kill(pid, SIGTERM);
        int st;
        pid_t r = 0;
        for (int i = 0; i < (int)(STOP_TIMEOUT_S * 1000 / POLL_MS); i++) {
            r = waitpid(pid, &st, WNOHANG);
            if (r != 0)
                break;
            pause_ms(POLL_MS);
        }
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        d->pid = 0;
    }
    /* In case the daemon could not remove it itself (see bench_daemon_stop).
     * shm_unlink is unlink under /dev/shm: no allocation, no lock. */
    if (d->shm_name[0] != '\0')
        shm_unlink(d->shm_name);
    bench_rm_tree(d->dir);
}

static void bench_daemon_abort(int sig)
{
    (void)sig;
    for (int i = 0; i < LIVE_MAX; i++) {
        bench_daemon *d = live[i];
        if (d != NULL)
            stop_hard(d);
    }
}

static void live_add(bench_daemon *d)
{
    for (int i = 0; i < LIVE_MAX; i++) {
        if (live[i] == NULL) {
            live[i] = d;
            break;
        }
    }
    bench_on_abort(bench_daemon_abort);
}

static void live_remove(bench_daemon *d)
{
    bool any = false;
    for (int i = 0; i < LIVE_MAX; i++) {
        if (live[i] == d)
            live[i] = NULL;
        any |= live[i] != NULL;
    }
    if (!any)
        bench_on_abort(NULL);
}

/* ---- Set-up ---------------------------------------------------------------- */

/* dst = a + b + c; false when it does not fit. */
static bool fmt(char *dst, size_t cap, const char *a, const char *b, const char *c)
{
    int n = snprintf(dst, cap, "%s%s%s", a, b, c);
    return n > 0 && (size_t)n < cap;
}

bool bench_daemon_init(bench_daemon *d)
{
    static unsigned counter;
    memset(d, 0, sizeof(*d));
    d->exit_status = -1;
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 64)
        tmp = "/tmp";
    snprintf(d->dir, sizeof(d->dir), "%s/connrep-bench-XXXXXX", tmp);
    if (mkdtemp(d->dir) == NULL) {
        fprintf(stderr, "connrep-bench: mkdtemp %s: %s\n", d->dir, strerror(errno));
        d->dir[0] = '\0';
        return false;
    }
    if (!fmt(d->state_dir, sizeof(d->state_dir), "", d->dir, "/state") ||
        !fmt(d->config_path, sizeof(d->config_path), "", d->dir, "/connrepd.conf") ||
        !fmt(d->log_path, sizeof(d->log_path), "", d->dir, "/connrepd.stderr") ||
        !fmt(d->pid_path, sizeof(d->pid_path), "", d->state_dir, "/connrepd.pid") ||
        !fmt(d->feed_ep, sizeof(d->feed_ep), "ipc://", d->dir, "/feed") ||
        !fmt(d->lookup_ep, sizeof(d->lookup_ep), "ipc://", d->dir, "/lookup") ||
        !fmt(d->events_ep, sizeof(d->events_ep), "ipc://", d->dir, "/events")) {
        fprintf(stderr, "connrep-bench: temp dir path too long: %s\n", d->dir);
        bench_rm_tree(d->dir);
        d->dir[0] = '\0';
        return false;
    }
    snprintf(d->shm_name, sizeof(d->shm_name), "/crp-bench-%ld-%u", (long)getpid(), counter++);
    snprintf(d->shm_ep, sizeof(d->shm_ep), "shm:%s", d->shm_name);
    return true;
}

void bench_daemon_set(bench_daemon *d, const char *section, const char *key, const char *value)
{
    for (size_t i = 0; i < d->n_over; i++) {
        if (strcmp(d->over[i].section, section) == 0 && strcmp(d->over[i].key, key) == 0) {
            snprintf(d->over[i].value, sizeof(d->over[i].value), "%s", value);
            return;
        }
    }
    if (d->n_over == BENCH_DAEMON_OVERRIDES) {
        fprintf(stderr, "connrep-bench: too many config overrides; '%s' ignored\n", key);
        return;
    }
    bench_daemon_override *o = &d->over[d->n_over++];
    snprintf(o->section, sizeof(o->section), "%s", section);
    snprintf(o->key, sizeof(o->key), "%s", key);
    snprintf(o->value, sizeof(o->value), "%s", value);
}

/* A TCP port on 127.0.0.1 that is free now: bind port 0, read it, close. A
 * race with another process is possible; start retries with another. */
static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool write_config(bench_daemon *d, const bench_daemon_opts *o)
{
    char cap[32], shards[16], frame[32], lookup[BENCH_DAEMON_PATH_MAX + 80];
    char keyfile[BENCH_DAEMON_PATH_MAX + 32];
    snprintf(cap, sizeof(cap), "%" PRIu64, d->capacity);
    snprintf(shards, sizeof(shards), "%u", d->shards);
    snprintf(frame, sizeof(frame), "%" PRIu64 "B",
             o->max_frame_bytes ? o->max_frame_bytes : (uint64_t)4 << 20);
    snprintf(lookup, sizeof(lookup), "%s%s%s", d->lookup_ep, d->lookup_tcp_ep[0] ? "," : "",
             d->lookup_tcp_ep);
    snprintf(keyfile, sizeof(keyfile), "%s/admin.key", d->state_dir);
    struct kv {
        const char *section, *key, *value;
    } base[] = {
        {"engine", "max_connectors", cap},
        {"engine", "shm_name", d->shm_name},
        {"engine", "state_dir", d->state_dir},
        {"engine", "shards", shards},
        {"feed", "bind", d->feed_ep},
        {"feed", "max_frame_bytes", frame},
        {"lookup", "bind", lookup},
        {"events", "bind", d->events_ep},
        {"admin", "bind", ""},
        {"admin", "secret_key_file", keyfile},
    };
    static const char *const sections[] = {"engine", "feed",    "lookup", "events",
                                           "admin",  "scoring", "alerts", "audit"};
    FILE *f = fopen(d->config_path, "w");
    if (f == NULL) {
        fprintf(stderr, "connrep-bench: cannot write %s: %s\n", d->config_path, strerror(errno));
        return false;
    }
    fprintf(f, "; generated by connrep-bench\n");
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        fprintf(f, "\n[%s]\n", sections[s]);
        for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
            if (strcmp(base[i].section, sections[s]) != 0)
                continue;
            const char *v = base[i].value;
            for (size_t k = 0; k < d->n_over; k++) {
                if (strcmp(d->over[k].section, base[i].section) == 0 &&
                    strcmp(d->over[k].key, base[i].key) == 0)
                    v = d->over[k].value;
            }
            fprintf(f, "%s = %s\n", base[i].key, v);
        }
        for (size_t k = 0; k < d->n_over; k++) {
            bool in_base = false;
            for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
                in_base |= strcmp(base[i].section, d->over[k].section) == 0 &&
                           strcmp(base[i].key, d->over[k].key) == 0;
            if (!in_base && strcmp(d->over[k].section, sections[s]) == 0)
                fprintf(f, "%s = %s\n", d->over[k].key, d->over[k].value);
        }
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "connrep-bench: cannot write %s: %s\n", d->config_path, strerror(errno));
        return false;
    }
    return true;
}

static pid_t spawn(bench_daemon *d)
{
    const char *bin = bench_daemon_binary();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr,
                "connrep-bench: cannot run the daemon %s: %s (build the connrepd target, or "
                "set CONNREP_DAEMON)\n",
                bin, strerror(errno));
        return -1;
    }
    int logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        fprintf(stderr, "connrep-bench: cannot open %s: %s\n", d->log_path, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A bench that dies takes its daemon with it; a Ctrl-C at the
         * terminal reaches the bench only, which stops the daemon itself. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        /* The watchdog's timer is not inherited by fork, but be explicit. */
        alarm(0);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        char *argv[] = {(char *)bin, "--config", d->config_path, "--foreground", NULL};
        execv(bin, argv);
        _exit(127);
    }
    close(logfd);
    if (pid < 0)
        fprintf(stderr, "connrep-bench: fork: %s\n", strerror(errno));
    return pid;
}

bool bench_daemon_alive(bench_daemon *d)
{
    if (d->pid <= 0)
        return false;
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
        d->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        d->pid = 0;
        return false;
    }
    return true;
}

void bench_daemon_log_tail(const bench_daemon *d, int lines)
{
    FILE *f = fopen(d->log_path, "r");
    if (f == NULL)
        return;
    /* Two passes over a small file: count, then print the last lines. */
    char line[1024];
    long total = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        total++;
    rewind(f);
    long skip = total > lines ? total - lines : 0;
    fprintf(stderr, "connrep-bench: daemon log (%s), last %ld lines:\n", d->log_path, total - skip);
    for (long i = 0; fgets(line, sizeof(line), f) != NULL; i++) {
        if (i >= skip)
            fprintf(stderr, "  | %s", line);
    }
    fclose(f);
}

static bool wait_ready(bench_daemon *d)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)(START_TIMEOUT_S * 1e9);
    while (bench_now_ns() < deadline) {
        if (!bench_daemon_alive(d)) {
            fprintf(stderr, "connrep-bench: connrepd exited during start-up (status %d)\n",
                    d->exit_status);
            return false;
        }
        if (access(d->pid_path, F_OK) == 0) {
            char *s = bench_daemon_stats(d, 500);
            if (s != NULL) {
                free(s);
                return true;
            }
        }
        pause_ms(POLL_MS * 2);
    }
    fprintf(stderr, "connrep-bench: connrepd not ready after %.0f s\n", START_TIMEOUT_S);
    return false;
}

static void stats_close(bench_daemon *d)
{
    if (d->stats != NULL)
        zmq_close(d->stats);
    d->stats = NULL;
}

bool bench_daemon_start(bench_daemon *d, const bench_daemon_opts *o)
{
    d->capacity = 64;
    while (d->capacity < o->connectors)
        d->capacity <<= 1;
    d->shards = o->shards ? o->shards : 2;
    if (d->zctx == NULL && (d->zctx = zmq_ctx_new()) == NULL) {
        fprintf(stderr, "connrep-bench: zmq_ctx_new: %s\n", zmq_strerror(errno));
        return false;
    }
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        d->lookup_tcp_ep[0] = '\0';
        if (o->lookup_tcp) {
            int port = free_tcp_port();
            if (port <= 0) {
                fprintf(stderr, "connrep-bench: no free TCP port on 127.0.0.1\n");
                return false;
            }
            snprintf(d->lookup_tcp_ep, sizeof(d->lookup_tcp_ep), "tcp://127.0.0.1:%d", port);
        }
        if (!write_config(d, o))
            return false;
        d->pid = spawn(d);
        if (d->pid <= 0) {
            d->pid = 0;
            return false;
        }
        live_add(d);
        if (wait_ready(d))
            return true;
        bool port_race = o->lookup_tcp && !bench_daemon_alive(d) && d->exit_status == 1;
        bench_daemon_log_tail(d, 20);
        /* Stop it but keep the dir for the next attempt. */
        if (bench_daemon_alive(d)) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
            shm_unlink(d->shm_name);
            d->pid = 0;
        }
        live_remove(d);
        stats_close(d);
        if (!port_race)
            break;
        fprintf(stderr, "connrep-bench: retrying with another TCP port\n");
        unlink(d->log_path);
    }
    bench_daemon_stop(d);
    return false;
}

int bench_daemon_stop(bench_daemon *d)
{
    stats_close(d);
    if (d->pid > 0) {
        pid_t pid = d->pid;
        kill(pid, SIGTERM);
        uint64_t deadline = bench_now_ns() + (uint64_t)(STOP_TIMEOUT_S * 1e9);
        int st = 0;
        pid_t r;
        while ((r = waitpid(pid, &st, WNOHANG)) == 0 && bench_now_ns() < deadline)
            pause_ms(POLL_MS);
        if (r != pid) {
            fprintf(stderr, "connrep-bench: connrepd did not stop within %.0f s; killing it\n",
                    STOP_TIMEOUT_S);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            d->killed = true;
            shm_unlink(d->shm_name);
        }
        d->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        d->pid = 0;
        if (d->exit_status != 0)
            bench_daemon_log_tail(d, 20);
    }
    /* The daemon removes its shm object when it stops cleanly; one that died
     * (killed, crashed) leaves it. The name is this run's own, so removing
     * it can never take another engine's table. */
    if (d->shm_name[0] != '\0')
        shm_unlink(d->shm_name);
    live_remove(d);
    if (d->zctx != NULL)
        zmq_ctx_term(d->zctx);
    d->zctx = NULL;
    bench_rm_tree(d->dir);
    d->dir[0] = '\0';
    return d->exit_status;
}

/* ---- Stats ------------------------------------------------------------------ */

static void *stats_socket(bench_daemon *d)
{
    if (d->stats != NULL)
        return d->stats;
    void *s = zmq_socket(d->zctx, ZMQ_DEALER);
    if (s == NULL)
        return NULL;
    int zero = 0;
    (void)zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(s, d->lookup_ep) != 0) {
        zmq_close(s);
        return NULL;
    }
    d->stats = s;
    return s;
}

char *bench_daemon_stats(bench_daemon *d, int timeout_ms)
{
    void *s = stats_socket(d);
    if (s == NULL)
        return NULL;
    (void)zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof(timeout_ms));
    (void)zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    /* A DEALER without a delimiter: the reply is one frame (C6). */
    if (zmq_send(s, CRP_STATS_MAGIC, 4, 0) != 4) {
        stats_close(d);
        return NULL;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) < 0) {
        /* A late reply would answer the next request: start afresh. */
        zmq_msg_close(&m);
        stats_close(d);
        return NULL;
    }
    size_t n = zmq_msg_size(&m);
    const char *p = zmq_msg_data(&m);
    char *out = NULL;
    if (n >= 4 && memcmp(p, CRP_STATS_MAGIC, 4) == 0 && (out = malloc(n - 4 + 1)) != NULL) {
        memcpy(out, p + 4, n - 4);
        out[n - 4] = '\0';
    }
    zmq_msg_close(&m);
    return out;
}

/* Finds "key": in a JSON text, starting the search at p; returns the first
 * character after the colon (spaces skipped) or NULL. Good enough for the
 * daemon's flat, machine-written stats object, whose key names are unique
 * within their object. */
static const char *json_member(const char *p, const char *end, const char *key)
{
    size_t kl = strlen(key);
    while (p != NULL && p < end) {
        const char *q = strstr(p, key);
        if (q == NULL || q >= end)
            return NULL;
        if (q > p && q[-1] == '"' && q[kl] == '"') {
            const char *v = q + kl + 1;
            while (*v == ' ')
                v++;
            if (*v == ':') {
                v++;
                while (*v == ' ')
                    v++;
                return v;
            }
        }
        p = q + kl;
    }
    return NULL;
}

/* The end of the object that starts at `open` ('{'): strings in the stats
 * hold no braces except inside quotes, which are skipped. */
static const char *json_object_end(const char *open)
{
    int depth = 0;
    bool in_str = false;
    for (const char *p = open; *p != '\0'; p++) {
        if (in_str) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"')
            in_str = true;
        else if (*p == '{')
            depth++;
        else if (*p == '}' && --depth == 0)
            return p;
    }
    return NULL;
}

static bool json_u64_at(const char *v, uint64_t *out)
{
    if (v == NULL || *v < '0' || *v > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end == '.' || *end == 'e' || *end == 'E')
        return false;
    *out = x;
    return true;
}

bool bench_stats_get(const char *json, const char *key, uint64_t *out)
{
    if (json == NULL)
        return false;
    const char *end = json + strlen(json);
    const char *dot = strchr(key, '.');
    if (dot == NULL)
        return json_u64_at(json_member(json, end, key), out);
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)(dot - key), key);
    const char *obj = json_member(json, end, first);
    if (obj == NULL || *obj != '{')
        return false;
    const char *oend = json_object_end(obj);
    return oend != NULL && json_u64_at(json_member(obj, oend, dot + 1), out);
}

uint64_t bench_stats_sum(const char *json, const char *key)
{
    if (json == NULL)
        return 0;
    const char *obj = json_member(json, json + strlen(json), key);
    if (obj == NULL || *obj != '{')
        return 0;
    const char *oend = json_object_end(obj);
    uint64_t sum = 0;
    for (const char *p = obj + 1; p != NULL && p < oend;) {
        const char *colon = strchr(p, ':');
        if (colon == NULL || colon > oend)
            break;
        uint64_t v;
        const char *val = colon + 1;
        while (*val == ' ')
            val++;
        if (json_u64_at(val, &v))
            sum += v;
        p = strchr(val, ',');
        if (p != NULL)
            p++;
    }
    return sum;
}

bool bench_daemon_stat(bench_daemon *d, const char *key, uint64_t *out)
{
    char *s = bench_daemon_stats(d, 2000);
    bool ok = bench_stats_get(s, key, out);
    free(s);
    return ok;
}

bool bench_daemon_wait(bench_daemon *d, const char *key, uint64_t target, unsigned poll_ms,
                       double stall_s, double timeout_s, uint64_t *last, uint64_t *at_ns)
{
    uint64_t start = bench_now_ns();
    uint64_t deadline = start + (uint64_t)(timeout_s * 1e9);
    uint64_t changed = start, prev = UINT64_MAX;
    *last = 0;
    *at_ns = start;
    for (;;) {
        uint64_t v;
        bool ok = bench_daemon_stat(d, key, &v);
        uint64_t now = bench_now_ns();
        if (ok) {
            *last = v;
            *at_ns = now;
            if (v >= target)
                return true;
            if (v != prev) {
                prev = v;
                changed = now;
            }
        }
        if (now >= deadline || (double)(now - changed) / 1e9 >= stall_s)
            return false;
        if (!bench_daemon_alive(d))
            return false;
        pause_ms(poll_ms);
    }
}

bool bench_daemon_settle(bench_daemon *d, double quiet_s, double timeout_s, uint64_t *published,
                         double *seconds)
{
    uint64_t start = bench_now_ns(), changed = start;
    uint64_t deadline = start + (uint64_t)(timeout_s * 1e9);
    uint64_t prev = UINT64_MAX, report = start;
    *published = 0;
    for (;;) {
        uint64_t v;
        uint64_t now = bench_now_ns();
        if (bench_daemon_stat(d, "events_published", &v)) {
            *published = v;
            if (v != prev) {
                prev = v;
                changed = now;
            }
        }
        if ((double)(now - changed) / 1e9 >= quiet_s) {
            *seconds = (double)(changed - start) / 1e9;
            return true;
        }
        if (now >= deadline || !bench_daemon_alive(d)) {
            *seconds = (double)(now - start) / 1e9;
            return false;
        }
        if (now - report > 2000000000u) {
            report = now;
            bench_progress("waiting for the events thread: %" PRIu64 " state changes published",
                           *published);
        }
        pause_ms(20);
    }
}

/* ---- CPU time by thread ------------------------------------------------------ */

static bool read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return true;
}

static void cpu_add(bench_cpu *c, const char *name, uint64_t ns, uint64_t wait_ns)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->name[i], name) == 0) {
            c->ns[i] += ns;
            c->wait_ns[i] += wait_ns;
            return;
        }
    }
    if (c->n == BENCH_CPU_THREADS)
        return;
    snprintf(c->name[c->n], sizeof(c->name[c->n]), "%s", name);
    c->ns[c->n] = ns;
    c->wait_ns[c->n++] = wait_ns;
}

bool bench_cpu_read(pid_t pid, bench_cpu *out)
{
    char dir[64];
    memset(out, 0, sizeof(*out));
    if (pid == 0)
        snprintf(dir, sizeof(dir), "/proc/self/task");
    else
        snprintf(dir, sizeof(dir), "/proc/%ld/task", (long)pid);
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return false;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[64 + sizeof(de->d_name) + 16], comm[32], sched[128];
        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
        if (!read_small(path, comm, sizeof(comm)))
            continue;
        comm[strcspn(comm, "\n")] = '\0';
        snprintf(path, sizeof(path), "%s/%s/schedstat", dir, de->d_name);
        if (!read_small(path, sched, sizeof(sched)))
            continue;
        char *end;
        uint64_t on = strtoull(sched, &end, 10);
        uint64_t wait = strtoull(end, NULL, 10);
        cpu_add(out, comm, on, wait);
    }
    closedir(dp);
    return true;
}

void bench_cpu_add_delta(bench_cpu *acc, const bench_cpu *before, const bench_cpu *after)
{
    for (size_t i = 0; i < after->n; i++) {
        uint64_t was = 0, waited = 0;
        for (size_t k = 0; k < before->n; k++) {
            if (strcmp(before->name[k], after->name[i]) == 0) {
                was = before->ns[k];
                waited = before->wait_ns[k];
            }
        }
        cpu_add(acc, after->name[i], after->ns[i] > was ? after->ns[i] - was : 0,
                after->wait_ns[i] > waited ? after->wait_ns[i] - waited : 0);
    }
}

uint64_t bench_cpu_total(const bench_cpu *c)
{
    uint64_t t = 0;
    for (size_t i = 0; i < c->n; i++)
        t += c->ns[i];
    return t;
}

uint64_t bench_cpu_total_wait(const bench_cpu *c)
{
    uint64_t t = 0;
    for (size_t i = 0; i < c->n; i++)
        t += c->wait_ns[i];
    return t;
}

/* ---- Feeding ------------------------------------------------------------------ */

bool bench_push_send(void *sock, const void *buf, size_t len, bench_daemon *d)
{
    uint64_t give_up = bench_now_ns() + 30000000000u;
    for (;;) {
        if (zmq_send(sock, buf, len, 0) == (int)len)
            return true;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            fprintf(stderr, "connrep-bench: feed send: %s\n", zmq_strerror(errno));
            return false;
        }
        if ((d != NULL && !bench_daemon_alive(d)) || bench_now_ns() > give_up) {
            fprintf(stderr, "connrep-bench: the %s stopped taking frames\n",
                    d != NULL ? "engine" : "receiver");
            return false;
        }
    }
}

void *bench_daemon_feed_socket(bench_daemon *d)
{
    void *s = zmq_socket(d->zctx, ZMQ_PUSH);
    if (s == NULL)
        return NULL;
    int zero = 0, timeout = 1000;
    (void)zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    (void)zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof(timeout));
    if (zmq_connect(s, d->feed_ep) != 0) {
        fprintf(stderr, "connrep-bench: connect %s: %s\n", d->feed_ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

bool bench_daemon_fill(bench_daemon *d, bench_feedgen *g, uint64_t producer, uint64_t *seq,
                       uint64_t *events, double *seconds)
{
    size_t cap = bench_feedgen_frame_cap(g);
    unsigned char *buf = malloc(cap);
    void *sock = bench_daemon_feed_socket(d);
    bool ok = buf != NULL && sock != NULL;
    uint64_t applied0 = 0;
    if (ok && !bench_daemon_stat(d, "events_applied", &applied0)) {
        fprintf(stderr, "connrep-bench: the daemon does not answer stats requests\n");
        ok = false;
    }
    uint64_t cursor = 0, sent = 0, report = bench_now_ns();
    uint64_t t0 = bench_now_ns();
    uint32_t n;
    size_t len;
    while (ok && (len = bench_feedgen_fill(g, &cursor, buf, cap, producer, *seq, &n)) > 0) {
        (*seq)++;
        ok = bench_push_send(sock, buf, len, d);
        sent += n;
        if (bench_now_ns() - report > 1000000000u) {
            report = bench_now_ns();
            bench_progress("fill: %" PRIu64 " of %" PRIu64 " connectors sent", cursor,
                           g->o.connectors);
        }
    }
    free(buf);
    if (!ok) {
        if (sock != NULL)
            zmq_close(sock);
        return false;
    }
    uint64_t last = 0, at = 0;
    double timeout = 60.0 + (double)g->o.connectors / 50000.0;
    /* The socket stays open until everything arrived: with linger 0,
     * closing it would drop the frames still in its queue. */
    ok = bench_daemon_wait(d, "events_applied", applied0 + sent, 2, 15.0, timeout, &last, &at);
    zmq_close(sock);
    if (!ok) {
        fprintf(stderr,
                "connrep-bench: the engine applied %" PRIu64 " of the %" PRIu64 " fill events\n",
                last - applied0, sent);
        return false;
    }
    *events = sent;
    *seconds = (double)(at - t0) / 1e9;
    return true;
}
