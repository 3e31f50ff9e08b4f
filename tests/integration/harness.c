/* Integration-test harness: see harness.h. */
#define _DEFAULT_SOURCE
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#ifndef CONNREP_BIN_DIR
#error "CONNREP_BIN_DIR must name the directory of connrepd"
#endif

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS  10000
#define POLL_EVERY_MS    10

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("harness: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *crp_harness_daemon_path(void)
{
    /* CONNREP_DAEMON runs another build's daemon (a ThreadSanitizer one,
     * say) under these tests. */
    const char *env = getenv("CONNREP_DAEMON");
    return env != NULL && env[0] != '\0' ? env : CONNREP_BIN_DIR "/connrepd";
}

uint64_t crp_harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits a polling interval; used only between checks of a condition. */
static void pause_poll(void)
{
    (void)poll(NULL, 0, POLL_EVERY_MS);
}

static void set_int(void *sock, int opt, int v)
{
    (void)zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* dst = a + sep + b; -1 when it does not fit. */
static int fmt_path(char *dst, size_t cap, const char *a, const char *sep, const char *b)
{
    int n = snprintf(dst, cap, "%s%s%s", a, sep, b);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Set-up and tear-down                                                      */
/* ------------------------------------------------------------------------ */

int crp_harness_init(crp_harness *h)
{
    static unsigned counter;
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "/tmp/crp-it-XXXXXX");
    if (mkdtemp(h->dir) == NULL) {
        note("mkdtemp: %s", strerror(errno));
        h->dir[0] = '\0';
        return -1;
    }
    if (fmt_path(h->config_path, sizeof h->config_path, h->dir, "/", "connrepd.conf") ||
        fmt_path(h->log_path, sizeof h->log_path, h->dir, "/", "connrepd.stderr") ||
        fmt_path(h->state_dir, sizeof h->state_dir, h->dir, "/", "state") ||
        fmt_path(h->pid_path, sizeof h->pid_path, h->state_dir, "/", "connrepd.pid") ||
        fmt_path(h->feed_path, sizeof h->feed_path, h->dir, "/", "run/feed") ||
        fmt_path(h->lookup_path, sizeof h->lookup_path, h->dir, "/", "run/lookup") ||
        fmt_path(h->events_path, sizeof h->events_path, h->dir, "/", "run/events") ||
        fmt_path(h->admin_path, sizeof h->admin_path, h->dir, "/", "run/admin") ||
        fmt_path(h->server_key_path, sizeof h->server_key_path, h->state_dir, "/",
                 "admin.key.pub") ||
        fmt_path(h->feed_ep, sizeof h->feed_ep, "ipc://", "", h->feed_path) ||
        fmt_path(h->lookup_ep, sizeof h->lookup_ep, "ipc://", "", h->lookup_path) ||
        fmt_path(h->events_ep, sizeof h->events_ep, "ipc://", "", h->events_path) ||
        fmt_path(h->admin_ep, sizeof h->admin_ep, "ipc://", "", h->admin_path)) {
        note("temp dir path too long: %s", h->dir);
        return -1;
    }
    snprintf(h->shm_name, sizeof h->shm_name, "/crp-it-%ld-%u", (long)getpid(), counter++);
    h->zctx = zmq_ctx_new();
    return h->zctx != NULL ? 0 : -1;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[CRP_HARNESS_PATH_MAX * 2];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

void crp_harness_fini(crp_harness *h)
{
    if (h->pid > 0 || h->daemon_pid > 0)
        crp_harness_stop(h, SIGTERM, STOP_TIMEOUT_MS);
    if (h->push != NULL)
        zmq_close(h->push);
    if (h->sub != NULL)
        zmq_close(h->sub);
    h->push = h->sub = NULL;
    if (h->zctx != NULL)
        zmq_ctx_term(h->zctx);
    h->zctx = NULL;
    if (h->shm_name[0] != '\0')
        shm_unlink(h->shm_name); /* only left behind by a daemon we killed */
    if (h->dir[0] != '\0')
        remove_tree(h->dir);
    h->dir[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Config                                                                    */
/* ------------------------------------------------------------------------ */

void crp_harness_set(crp_harness *h, const char *section, const char *key, const char *value)
{
    for (size_t i = 0; i < h->n_over; i++) {
        if (strcmp(h->over[i].section, section) == 0 && strcmp(h->over[i].key, key) == 0) {
            snprintf(h->over[i].value, sizeof h->over[i].value, "%s", value);
            return;
        }
    }
    if (h->n_over == CRP_HARNESS_OVERRIDES) {
        note("too many overrides");
        return;
    }
    crp_harness_override *o = &h->over[h->n_over++];
    snprintf(o->section, sizeof o->section, "%s", section);
    snprintf(o->key, sizeof o->key, "%s", key);
    snprintf(o->value, sizeof o->value, "%s", value);
}

static const crp_harness_override *find_over(const crp_harness *h, const char *section,
                                             const char *key)
{
    for (size_t i = 0; i < h->n_over; i++) {
        if (strcmp(h->over[i].section, section) == 0 && strcmp(h->over[i].key, key) == 0)
            return &h->over[i];
    }
    return NULL;
}

int crp_harness_write_config(crp_harness *h)
{
    struct kv {
        const char *section, *key;
        char value[CRP_HARNESS_PATH_MAX + 16];
    } base[] = {
        {"engine", "max_connectors", "1024"},
        {"engine", "shm_name", ""},
        {"engine", "state_dir", ""},
        {"engine", "shards", "2"},
        {"feed", "bind", ""},
        {"feed", "max_frame_bytes", "64KiB"},
        {"lookup", "bind", ""},
        {"events", "bind", ""},
        {"admin", "bind", ""},
        {"admin", "secret_key_file", ""},
        {"scoring", "half_life", "1h"},
        {"alerts", "enabled", "false"},
    };
    snprintf(base[1].value, sizeof base[1].value, "%s", h->shm_name);
    snprintf(base[2].value, sizeof base[2].value, "%s", h->state_dir);
    snprintf(base[4].value, sizeof base[4].value, "%s", h->feed_ep);
    snprintf(base[6].value, sizeof base[6].value, "%s", h->lookup_ep);
    snprintf(base[7].value, sizeof base[7].value, "%s", h->events_ep);
    snprintf(base[9].value, sizeof base[9].value, "%s/admin.key", h->state_dir);
    if (h->n_ids > 0)
        snprintf(base[8].value, sizeof base[8].value, "%s", h->admin_ep);
    static const char *const sections[] = {"engine", "feed",    "lookup", "events",
                                           "admin",  "scoring", "alerts", "audit"};
    FILE *f = fopen(h->config_path, "w");
    if (f == NULL) {
        note("cannot write %s: %s", h->config_path, strerror(errno));
        return -1;
    }
    fprintf(f, "; generated by the integration-test harness\n");
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        fprintf(f, "\n[%s]\n", sections[s]);
        for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
            if (strcmp(base[i].section, sections[s]) != 0)
                continue;
            const crp_harness_override *o = find_over(h, base[i].section, base[i].key);
            fprintf(f, "%s = %s\n", base[i].key, o != NULL ? o->value : base[i].value);
        }
        for (size_t i = 0; i < h->n_over; i++) {
            bool in_base = false;
            for (size_t j = 0; j < sizeof base / sizeof base[0]; j++)
                in_base |= strcmp(base[j].section, h->over[i].section) == 0 &&
                           strcmp(base[j].key, h->over[i].key) == 0;
            if (!in_base && strcmp(h->over[i].section, sections[s]) == 0)
                fprintf(f, "%s = %s\n", h->over[i].key, h->over[i].value);
        }
    }
    for (size_t i = 0; i < h->n_ids; i++) {
        const crp_harness_identity *id = &h->ids[i];
        fprintf(f, "\n[identity %s]\npublic_key = %s\nrole = %s\ntenant = %s\n", id->name,
                id->public_key, id->role, id->tenant);
        if (id->email[0] != '\0')
            fprintf(f, "email = %s\n", id->email);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int crp_harness_write_raw_config(crp_harness *h, const char *text)
{
    FILE *f = fopen(h->config_path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Processes                                                                 */
/* ------------------------------------------------------------------------ */

static void dump_log(const crp_harness *h)
{
    FILE *f = fopen(h->log_path, "r");
    char line[1024];
    if (f == NULL)
        return;
    note("daemon log (%s):", h->log_path);
    while (fgets(line, sizeof line, f) != NULL)
        fprintf(stderr, "  | %s", line);
    fclose(f);
}

/* In a forked child, before exec: default signal dispositions and an empty
 * mask, whatever the test runner set. */
static void child_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
}

static pid_t spawn(crp_harness *h, bool foreground)
{
    const char *bin = crp_harness_daemon_path();
    char *argv[] = {(char *)bin, "--config", h->config_path, "--foreground", NULL};
    if (!foreground)
        argv[3] = NULL;
    int logfd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        note("cannot open %s: %s", h->log_path, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* A test process that dies takes its daemon with it. */
        if (foreground) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(127);
        }
        child_signals();
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        execv(bin, argv);
        _exit(127);
    }
    close(logfd);
    if (pid < 0)
        note("fork: %s", strerror(errno));
    return pid;
}

static long read_pid_file(const crp_harness *h)
{
    FILE *f = fopen(h->pid_path, "r");
    long pid = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return pid;
}

static int wait_ready(crp_harness *h)
{
    uint64_t deadline = mono_ms() + START_TIMEOUT_MS;
    while (mono_ms() < deadline) {
        if (h->pid > 0) {
            int st;
            if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
                note("connrepd exited during start-up (status %d)",
                     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                h->pid = 0;
                dump_log(h);
                return -1;
            }
        }
        if (read_pid_file(h) > 0) {
            json_t *s = crp_harness_stats(h, 500);
            if (s != NULL) {
                json_decref(s);
                return 0;
            }
        }
        pause_poll();
    }
    note("connrepd not ready after %d ms", START_TIMEOUT_MS);
    dump_log(h);
    return -1;
}

int crp_harness_start(crp_harness *h)
{
    if (crp_harness_write_config(h) != 0)
        return -1;
    h->pid = spawn(h, true);
    if (h->pid <= 0) {
        h->pid = 0;
        return -1;
    }
    return wait_ready(h);
}

int crp_harness_start_detached(crp_harness *h)
{
    if (crp_harness_write_config(h) != 0)
        return -1;
    pid_t pid = spawn(h, false);
    if (pid <= 0)
        return -1;
    /* The command returns once the detached daemon reported ready. */
    uint64_t deadline = mono_ms() + START_TIMEOUT_MS;
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && mono_ms() < deadline)
        pause_poll();
    if (r != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        note("connrepd (detaching) did not return");
        dump_log(h);
        return -1;
    }
    h->daemon_pid = (pid_t)read_pid_file(h);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || h->daemon_pid <= 0) {
        note("connrepd (detaching) failed: status %d, pid file %ld",
             WIFEXITED(st) ? WEXITSTATUS(st) : -1, (long)h->daemon_pid);
        dump_log(h);
        return -1;
    }
    return 0;
}

bool crp_harness_running(crp_harness *h)
{
    if (h->pid > 0) {
        int st;
        return waitpid(h->pid, &st, WNOHANG) == 0;
    }
    return h->daemon_pid > 0 && kill(h->daemon_pid, 0) == 0;
}

int crp_harness_signal(crp_harness *h, int sig)
{
    pid_t pid = h->pid > 0 ? h->pid : h->daemon_pid;
    return pid > 0 ? kill(pid, sig) : -1;
}

int crp_harness_stop(crp_harness *h, int sig, int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    int st = 0;
    if (h->pid > 0) {
        pid_t pid = h->pid;
        kill(pid, sig);
        pid_t r;
        while ((r = waitpid(pid, &st, WNOHANG)) == 0 && mono_ms() < deadline)
            pause_poll();
        if (r != pid) {
            note("connrepd did not stop within %d ms; killing it", timeout_ms);
            dump_log(h);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        h->pid = 0;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (h->daemon_pid > 0) {
        /* Not our child: it is gone when it has removed its pid file. */
        pid_t pid = h->daemon_pid;
        h->daemon_pid = 0;
        kill(pid, sig);
        while (access(h->pid_path, F_OK) == 0 && mono_ms() < deadline)
            pause_poll();
        if (access(h->pid_path, F_OK) == 0) {
            note("detached connrepd did not stop within %d ms; killing it", timeout_ms);
            kill(pid, SIGKILL);
            return -1;
        }
        return 0;
    }
    return -1;
}

/* Reads whatever is available from fd into buf (NUL-terminated). */
static bool slurp(int fd, char *buf, size_t cap, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0)
        return false;
    size_t room = cap > *len + 1 ? cap - *len - 1 : 0;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(buf + *len, tmp, take);
    *len += take;
    buf[*len] = '\0';
    return true;
}

/* Runs argv (argv[0] a path) to completion, capturing its output. */
static int run_argv(char **argv, char *out, size_t out_cap, char *err, size_t err_cap)
{
    int po[2], pe[2];
    if (pipe(po) != 0 || pipe(pe) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        child_signals();
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        close(po[0]);
        close(pe[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    size_t ol = 0, el = 0;
    out[0] = err[0] = '\0';
    bool oo = true, eo = true;
    uint64_t deadline = mono_ms() + STOP_TIMEOUT_MS;
    while ((oo || eo) && mono_ms() < deadline) {
        struct pollfd p[2] = {{.fd = oo ? po[0] : -1, .events = POLLIN},
                              {.fd = eo ? pe[0] : -1, .events = POLLIN}};
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            oo = slurp(po[0], out, out_cap, &ol);
        if (p[1].revents)
            eo = slurp(pe[0], err, err_cap, &el);
    }
    close(po[0]);
    close(pe[0]);
    if (pid < 0)
        return -1;
    int st;
    if (oo || eo)
        kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int crp_harness_run(const char *const *args, char *out, size_t out_cap, char *err, size_t err_cap)
{
    char *argv[32];
    size_t n = 0;
    argv[n++] = (char *)crp_harness_daemon_path();
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return run_argv(argv, out, out_cap, err, err_cap);
}

const char *crp_harness_cli_path(void)
{
    const char *env = getenv("CONNREP_CLI");
    return env != NULL && env[0] != '\0' ? env : CONNREP_BIN_DIR "/connrep";
}

int crp_harness_run_cli(crp_harness *h, const char *name, const char *const *args, char *out,
                        size_t out_cap, char *err, size_t err_cap)
{
    char *argv[40];
    size_t n = 0;
    const crp_harness_identity *id = name != NULL ? crp_harness_identity_get(h, name) : NULL;
    if (name != NULL && id == NULL) {
        note("no identity %s", name);
        return -1;
    }
    argv[n++] = (char *)crp_harness_cli_path();
    argv[n++] = "--config";
    argv[n++] = h->config_path;
    if (id != NULL) {
        argv[n++] = "--key";
        argv[n++] = (char *)id->key_path;
    }
    for (size_t i = 0; args[i] != NULL && n < 39; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return run_argv(argv, out, out_cap, err, err_cap);
}

/* ------------------------------------------------------------------------ */
/* Feed                                                                      */
/* ------------------------------------------------------------------------ */

int crp_harness_feed_raw(crp_harness *h, const void *frame, size_t len)
{
    if (h->push == NULL) {
        h->push = zmq_socket(h->zctx, ZMQ_PUSH);
        if (h->push == NULL)
            return -1;
        set_int(h->push, ZMQ_LINGER, 0);
        set_int(h->push, ZMQ_SNDTIMEO, 5000);
        if (zmq_connect(h->push, h->feed_ep) != 0) {
            note("connect %s: %s", h->feed_ep, zmq_strerror(errno));
            return -1;
        }
    }
    if (zmq_send(h->push, frame, len, 0) != (int)len) {
        note("feed send: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

int crp_harness_feed(crp_harness *h, uint64_t producer, uint64_t seq, const crp_feed_event *ev,
                     size_t n)
{
    size_t cap = CRP_FEED_HEADER_SIZE + n * CRP_FEED_EVENT_MAX_SIZE;
    unsigned char *buf = malloc(cap);
    crp_feed_builder b;
    int rc = -1;
    if (buf == NULL)
        return -1;
    if (crp_feed_builder_init(&b, buf, cap, producer, seq)) {
        size_t i;
        for (i = 0; i < n && crp_feed_builder_add(&b, &ev[i]); i++)
            ;
        size_t len = crp_feed_builder_finish(&b);
        if (i == n && len > 0)
            rc = crp_harness_feed_raw(h, buf, len);
        else
            note("cannot build a frame of %zu events", n);
    }
    free(buf);
    return rc;
}

int crp_harness_feed_same(crp_harness *h, const char *id, uint16_t verdict, uint16_t recipients,
                          uint64_t ts_ms, size_t n)
{
    crp_feed_event *ev = calloc(n, sizeof *ev);
    if (ev == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        ev[i] = (crp_feed_event){.ts_ms = ts_ms,
                                 .verdict = verdict,
                                 .recipients = recipients,
                                 .id = id,
                                 .id_len = strlen(id),
                                 .tenant = "t1",
                                 .tenant_len = 2};
    }
    int rc = crp_harness_feed(h, 0, 0, ev, n);
    free(ev);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Requests on the lookup socket                                             */
/* ------------------------------------------------------------------------ */

/* Sends one request and returns the reply frame, or -1 after timeout_ms. */
static int request(crp_harness *h, const void *req, size_t len, zmq_msg_t *reply, int timeout_ms)
{
    void *s = zmq_socket(h->zctx, ZMQ_REQ);
    int rc = -1;
    if (s == NULL)
        return -1;
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDTIMEO, timeout_ms);
    set_int(s, ZMQ_RCVTIMEO, timeout_ms);
    zmq_msg_init(reply);
    if (zmq_connect(s, h->lookup_ep) == 0 && zmq_send(s, req, len, 0) == (int)len &&
        zmq_msg_recv(reply, s, 0) >= 0)
        rc = 0;
    zmq_close(s);
    if (rc != 0)
        zmq_msg_close(reply);
    return rc;
}

json_t *crp_harness_stats(crp_harness *h, int timeout_ms)
{
    zmq_msg_t m;
    if (request(h, "CRS1", 4, &m, timeout_ms) != 0)
        return NULL;
    json_t *j = NULL;
    const char *d = zmq_msg_data(&m);
    size_t n = zmq_msg_size(&m);
    if (n >= 4 && memcmp(d, "CRS1", 4) == 0) {
        json_error_t e;
        j = json_loadb(d + 4, n - 4, 0, &e);
        if (j != NULL && !json_is_object(j)) {
            json_decref(j);
            j = NULL;
        }
    }
    zmq_msg_close(&m);
    return j;
}

long long crp_harness_stat(json_t *stats, const char *path)
{
    char first[64];
    const char *dot = strchr(path, '.');
    json_t *v;
    if (stats == NULL)
        return -1;
    if (dot != NULL) {
        snprintf(first, sizeof first, "%.*s", (int)(dot - path), path);
        v = json_object_get(json_object_get(stats, first), dot + 1);
    } else {
        v = json_object_get(stats, path);
    }
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

long long crp_harness_wait_stat(crp_harness *h, const char *path, long long at_least,
                                int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    long long v = -1;
    for (;;) {
        json_t *s = crp_harness_stats(h, 1000);
        v = crp_harness_stat(s, path);
        json_decref(s);
        if (v >= at_least || mono_ms() >= deadline)
            return v;
        pause_poll();
    }
}

int crp_harness_lookup(crp_harness *h, const char *id, crp_reply_result *res, char *text,
                       size_t text_cap)
{
    unsigned char req[CRP_LOOKUP_HEADER_SIZE + 1 + CRP_WIRE_ID_MAX];
    crp_lookup_id one = {.id = id, .len = strlen(id)};
    size_t len = crp_lookup_encode_req(req, sizeof req, CRP_LOOKUP_FLAG_TEXT, 77, &one, 1);
    zmq_msg_t m;
    crp_reply rep;
    crp_reply_iter it;
    int rc = -1;
    if (len == 0 || request(h, req, len, &m, 2000) != 0)
        return -1;
    if (crp_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &rep) == CRP_OK && rep.status == 0 &&
        rep.request_id == 77 && rep.count == 1) {
        crp_reply_iter_init(&it, &rep);
        if (crp_reply_next(&it, res)) {
            if (text != NULL && text_cap > 0) {
                size_t n = res->text_len < text_cap - 1 ? res->text_len : text_cap - 1;
                memcpy(text, res->text, n);
                text[n] = '\0';
            }
            res->text = NULL; /* it pointed into the reply */
            rc = 0;
        }
    }
    zmq_msg_close(&m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */
/* ------------------------------------------------------------------------ */

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

int crp_harness_next_event(crp_harness *h, int timeout_ms, crp_harness_event *ev)
{
    memset(ev, 0, sizeof *ev);
    zmq_pollitem_t it = {.socket = h->sub, .events = ZMQ_POLLIN};
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = mono_ms();
        long left = now < deadline ? (long)(deadline - now) : 0;
        int rc = zmq_poll(&it, 1, left);
        if (rc > 0)
            break;
        if (rc == 0 || errno != EINTR)
            return -1;
    }
    zmq_msg_t f[3];
    int n = 0, more = 1;
    bool ok = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, h->sub, 0) < 0) {
            zmq_msg_close(&m);
            ok = false;
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 3)
            f[n++] = m;
        else {
            zmq_msg_close(&m);
            ok = false;
        }
    }
    if (ok && n == 3 && zmq_msg_size(&f[1]) == 16 && zmq_msg_size(&f[0]) < sizeof ev->topic) {
        memcpy(ev->topic, zmq_msg_data(&f[0]), zmq_msg_size(&f[0]));
        ev->instance = get_le64(zmq_msg_data(&f[1]));
        ev->seq = get_le64((const unsigned char *)zmq_msg_data(&f[1]) + 8);
        json_error_t e;
        ev->body = json_loadb(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), 0, &e);
        if (ev->body == NULL)
            note("event body is not JSON: %s", e.text);
    } else {
        note("malformed event: %d frames", n);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    if (ev->body == NULL)
        return -1;
    h->instance = ev->instance;
    h->last_seq = ev->seq;
    return 0;
}

void crp_harness_event_fini(crp_harness_event *ev)
{
    json_decref(ev->body);
    ev->body = NULL;
}

/* A config boolean that says yes (the file syntax ignores letter case). */
static bool config_true(const char *v)
{
    static const char *const yes[] = {"true", "on", "yes", "1"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return true;
    }
    return false;
}

int crp_harness_subscribe(crp_harness *h)
{
    h->sub = zmq_socket(h->zctx, ZMQ_SUB);
    if (h->sub == NULL)
        return -1;
    set_int(h->sub, ZMQ_LINGER, 0);
    (void)zmq_setsockopt(h->sub, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(h->sub, h->events_ep) != 0)
        return -1;
    /* A subscription becomes live some time after the connect (the "slow
     * joiner"): restrict throw-away connectors until one's event arrives.
     * Called right after start, these are the only events, numbered from 1,
     * so the subscription is in step once the event numbered sync_events
     * arrived. */
    /* With the alert policy on, each restriction publishes two events: the
     * state change and its alert. */
    const crp_harness_override *alerts = find_over(h, "alerts", "enabled");
    uint64_t per = alerts != NULL && config_true(alerts->value) ? 2 : 1;
    uint64_t deadline = mono_ms() + START_TIMEOUT_MS;
    crp_harness_event ev;
    while (mono_ms() < deadline) {
        char id[32];
        snprintf(id, sizeof id, "sync-%u", h->sync_events);
        if (crp_harness_feed_same(h, id, CRP_FEED_VERDICT_MALWARE, 1, 0, 3) != 0)
            return -1;
        h->sync_events++;
        if (crp_harness_next_event(h, 100, &ev) != 0)
            continue;
        for (;;) {
            uint64_t seq = ev.seq;
            crp_harness_event_fini(&ev);
            if (seq >= per * h->sync_events)
                return 0;
            if (crp_harness_next_event(h, 5000, &ev) != 0)
                break;
        }
        note("sync events stopped arriving");
        return -1;
    }
    note("the events subscription never became live");
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Admin                                                                     */
/* ------------------------------------------------------------------------ */

/* Writes "key\n" to path with mode 0600 (as `connrep keygen` does). */
static int write_key(const char *path, const char *key)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    char line[48];
    int n = snprintf(line, sizeof line, "%s\n", key);
    bool ok = write(fd, line, (size_t)n) == n;
    return close(fd) == 0 && ok ? 0 : -1;
}

const crp_harness_identity *crp_harness_add_identity(crp_harness *h, const char *name,
                                                     const char *role, const char *tenant,
                                                     const char *email)
{
    if (h->n_ids == CRP_HARNESS_IDENTITIES) {
        note("too many identities");
        return NULL;
    }
    crp_harness_identity *id = &h->ids[h->n_ids];
    memset(id, 0, sizeof *id);
    snprintf(id->name, sizeof id->name, "%s", name);
    snprintf(id->role, sizeof id->role, "%s", role);
    snprintf(id->tenant, sizeof id->tenant, "%s", tenant);
    snprintf(id->email, sizeof id->email, "%s", email != NULL ? email : "");
    if (zmq_curve_keypair(id->public_key, id->secret_key) != 0) {
        note("zmq_curve_keypair: %s (libzmq without CURVE?)", zmq_strerror(errno));
        return NULL;
    }
    char dir[CRP_HARNESS_PATH_MAX], pub[CRP_HARNESS_PATH_MAX + 8];
    if (fmt_path(dir, sizeof dir, h->dir, "/", "keys") != 0 ||
        (mkdir(dir, 0700) != 0 && errno != EEXIST) ||
        snprintf(id->key_path, sizeof id->key_path, "%s/%s.key", dir, name) >=
            (int)sizeof id->key_path) {
        note("cannot make the key directory %s", dir);
        return NULL;
    }
    snprintf(pub, sizeof pub, "%s.pub", id->key_path);
    if (write_key(id->key_path, id->secret_key) != 0 || write_key(pub, id->public_key) != 0) {
        note("cannot write %s: %s", id->key_path, strerror(errno));
        return NULL;
    }
    h->n_ids++;
    return id;
}

const crp_harness_identity *crp_harness_identity_get(const crp_harness *h, const char *name)
{
    for (size_t i = 0; i < h->n_ids; i++) {
        if (strcmp(h->ids[i].name, name) == 0)
            return &h->ids[i];
    }
    return NULL;
}

/* The engine's public key, from the .pub file it wrote beside its secret. */
static int server_key(const crp_harness *h, char key[41])
{
    FILE *f = fopen(h->server_key_path, "r");
    char line[64] = "";
    if (f == NULL) {
        note("cannot read %s: %s", h->server_key_path, strerror(errno));
        return -1;
    }
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (!got || strlen(line) != 40) {
        note("%s: not a key", h->server_key_path);
        return -1;
    }
    memcpy(key, line, 41);
    return 0;
}

json_t *crp_harness_admin_keys(crp_harness *h, const char *public_key, const char *secret_key,
                               const char *body, int timeout_ms)
{
    char skey[41];
    void *s;
    json_t *reply = NULL;

    if (public_key != NULL && server_key(h, skey) != 0)
        return NULL;
    s = zmq_socket(h->zctx, ZMQ_DEALER);
    if (s == NULL)
        return NULL;
    /* Without the timeouts and LINGER 0 a refused handshake blocks the
     * send, and the close, forever (PROTOCOL.md section 5). */
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_SNDTIMEO, timeout_ms);
    set_int(s, ZMQ_RCVTIMEO, timeout_ms);
    if (public_key != NULL && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, skey, 40) != 0 ||
                               zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, public_key, 40) != 0 ||
                               zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret_key, 40) != 0)) {
        note("cannot set the CURVE keys: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (zmq_connect(s, h->admin_ep) != 0 || zmq_send(s, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(s, body, strlen(body), 0) < 0) {
        zmq_close(s);
        return NULL;
    }
    /* The reply is [""] [body]: the delimiter echoed, then the JSON. */
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
        if (zmq_msg_recv(&m, s, 0) < 0)
            break;
        if (!zmq_msg_more(&m)) {
            json_error_t e;
            reply = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, &e);
            if (!json_is_object(reply)) {
                note("admin reply is not a JSON object: %.*s", (int)zmq_msg_size(&m),
                     (const char *)zmq_msg_data(&m));
                json_decref(reply);
                reply = NULL;
            }
            break;
        }
    }
    zmq_msg_close(&m);
    zmq_close(s);
    return reply;
}

json_t *crp_harness_admin(crp_harness *h, const char *name, const char *body, int timeout_ms)
{
    const crp_harness_identity *id = crp_harness_identity_get(h, name);
    if (id == NULL) {
        note("no identity %s", name);
        return NULL;
    }
    return crp_harness_admin_keys(h, id->public_key, id->secret_key, body, timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Log                                                                       */
/* ------------------------------------------------------------------------ */

void crp_harness_dump(crp_harness *h)
{
    json_t *s = crp_harness_stats(h, 1000);
    char *text = s != NULL ? json_dumps(s, JSON_COMPACT) : NULL;
    note("stats: %s", text != NULL ? text : "(no answer)");
    free(text);
    json_decref(s);
    dump_log(h);
}

bool crp_harness_log_contains(crp_harness *h, const char *text, int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        FILE *f = fopen(h->log_path, "r");
        bool found = false;
        if (f != NULL) {
            char line[4096];
            while (!found && fgets(line, sizeof line, f) != NULL)
                found = strstr(line, text) != NULL;
            fclose(f);
        }
        if (found)
            return true;
        if (mono_ms() >= deadline)
            return false;
        pause_poll();
    }
}
