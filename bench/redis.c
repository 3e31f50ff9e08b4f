/* mkdtemp and prctl are outside plain POSIX. */
#define _DEFAULT_SOURCE

#include "redis.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifdef BENCH_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

const char *bench_redis_binary(void)
{
    const char *env = getenv("REDIS_SERVER");
    return env != NULL && *env != '\0' ? env : "redis-server";
}

/* Whether `name` (a path, or a name looked up on $PATH) is executable. */
static bool bench_redis_found(const char *name)
{
    if (strchr(name, '/') != NULL)
        return access(name, X_OK) == 0;
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    char buf[512];
    while (*path != '\0') {
        size_t len = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, name);
        if (access(buf, X_OK) == 0)
            return true;
        path += len + (path[len] == ':');
    }
    return false;
}

const char *bench_hiredis_version(void)
{
#ifdef BENCH_HAVE_HIREDIS
#define BENCH_STR2(x) #x
#define BENCH_STR(x)  BENCH_STR2(x)
    return BENCH_STR(HIREDIS_MAJOR) "." BENCH_STR(HIREDIS_MINOR) "." BENCH_STR(HIREDIS_PATCH);
#else
    return "none";
#endif
}

bool bench_redis_available(char *why, size_t len)
{
#ifndef BENCH_HAVE_HIREDIS
    snprintf(why, len,
             "connrep-bench was built without hiredis (install libhiredis-dev and "
             "rebuild)");
    return false;
#else
    if (!bench_redis_found(bench_redis_binary())) {
        snprintf(why, len, "%s not found (apt-get install -y redis-server)", bench_redis_binary());
        return false;
    }
    snprintf(why, len, "ok");
    return true;
#endif
}

static void bench_redis_rmdir(bench_redis *r)
{
    if (r->dir[0] == '\0')
        return;
    char path[192];
    static const char *const files[] = {"redis.sock", "redis.log", "dump.rdb"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", r->dir, files[i]);
        (void)unlink(path);
    }
    (void)rmdir(r->dir);
    r->dir[0] = '\0';
}

void bench_redis_stop(bench_redis *r)
{
#ifdef BENCH_HAVE_HIREDIS
    if (r->ctx != NULL)
        redisFree(r->ctx);
#endif
    r->ctx = NULL;
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        uint64_t give_up = bench_now_ns() + 5000000000u;
        int st;
        while (waitpid(r->pid, &st, WNOHANG) == 0) {
            if (bench_now_ns() > give_up) {
                kill(r->pid, SIGKILL);
                (void)waitpid(r->pid, &st, 0);
                break;
            }
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        r->pid = 0;
    }
    bench_redis_rmdir(r);
}

#ifdef BENCH_HAVE_HIREDIS

static void bench_redis_version(bench_redis *r)
{
    redisReply *rep = redisCommand(r->ctx, "INFO server");
    if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
        const char *v = strstr(rep->str, "redis_version:");
        if (v != NULL) {
            v += strlen("redis_version:");
            snprintf(r->version, sizeof(r->version), "%.*s", (int)strcspn(v, "\r\n"), v);
        }
    }
    freeReplyObject(rep);
}

bool bench_redis_start(bench_redis *r)
{
    memset(r, 0, sizeof(*r));
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof(r->dir), "%s/crp-bench-redis-XXXXXX",
             tmp != NULL && *tmp != '\0' && strlen(tmp) < 64 ? tmp : "/tmp");
    if (mkdtemp(r->dir) == NULL) {
        fprintf(stderr, "connrep-bench: redis: mkdtemp: %s\n", strerror(errno));
        r->dir[0] = '\0';
        return false;
    }
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    snprintf(r->log, sizeof(r->log), "%s/redis.log", r->dir);
    const char *bin = bench_redis_binary();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "connrep-bench: redis: fork: %s\n", strerror(errno));
        bench_redis_stop(r);
        return false;
    }
    if (pid == 0) {
        /* The child: dies with the bench, its output in the log. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        char *const args[] = {
            (char *)bin, "--port",      "0",  "--unixsocket", r->sock,   "--unixsocketperm",
            "700",       "--save",      "",   "--appendonly", "no",      "--dir",
            r->dir,      "--daemonize", "no", "--loglevel",   "warning", NULL};
        execvp(bin, args);
        _exit(127);
    }
    r->pid = pid;
    uint64_t give_up = bench_now_ns() + 10000000000u;
    for (;;) {
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            r->pid = 0;
            fprintf(stderr, "connrep-bench: redis: %s exited at start (log %s)\n", bin, r->log);
            bench_redis_stop(r);
            return false;
        }
        redisContext *c = redisConnectUnix(r->sock);
        if (c != NULL && c->err == 0) {
            redisReply *rep = redisCommand(c, "PING");
            bool up = rep != NULL && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            if (up) {
                r->ctx = c;
                break;
            }
        }
        if (c != NULL)
            redisFree(c);
        if (bench_now_ns() > give_up) {
            fprintf(stderr, "connrep-bench: redis: no answer on %s after 10 s\n", r->sock);
            bench_redis_stop(r);
            return false;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    bench_redis_version(r);
    return true;
}

/* Reads `n` replies; false on a connection error or an error reply. */
static bool bench_redis_drain(bench_redis *r, unsigned n, const char *what)
{
    redisContext *c = r->ctx;
    for (unsigned k = 0; k < n; k++) {
        void *v = NULL;
        if (redisGetReply(c, &v) != REDIS_OK || v == NULL) {
            fprintf(stderr, "connrep-bench: redis: %s: %s\n", what, c->errstr);
            return false;
        }
        redisReply *rep = v;
        bool bad = rep->type == REDIS_REPLY_ERROR;
        if (bad)
            fprintf(stderr, "connrep-bench: redis: %s: %s\n", what, rep->str);
        freeReplyObject(rep);
        if (bad)
            return false;
    }
    return true;
}

bool bench_redis_fill(bench_redis *r, const char *ids, uint64_t n, const uint8_t *states)
{
    const unsigned depth = 1000;
    for (uint64_t i = 0; i < n;) {
        unsigned k = 0;
        for (; k < depth && i < n; k++, i++) {
            char v = (char)('0' + states[i]);
            redisAppendCommand(r->ctx, "SET %b %b", ids + i * BENCH_GUID_LEN,
                               (size_t)BENCH_GUID_LEN, &v, (size_t)1);
        }
        if (!bench_redis_drain(r, k, "SET"))
            return false;
    }
    return true;
}

bool bench_redis_run(bench_redis *r, const char *cmd, const char *ids, const uint32_t *order,
                     uint64_t n, uint64_t *cursor, unsigned depth, double seconds,
                     bench_hist *calls, uint64_t *ops, uint64_t *ns)
{
    char fmt[16];
    snprintf(fmt, sizeof(fmt), "%s %%b", cmd);
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9), t1;
    do {
        uint64_t t0 = bench_now_ns();
        for (unsigned k = 0; k < depth; k++) {
            uint32_t i = order[*cursor];
            if (++*cursor == n)
                *cursor = 0;
            redisAppendCommand(r->ctx, fmt, ids + (size_t)i * BENCH_GUID_LEN,
                               (size_t)BENCH_GUID_LEN);
        }
        if (!bench_redis_drain(r, depth, cmd))
            return false;
        t1 = bench_now_ns();
        bench_hist_record(calls, (t1 - t0) * 1000u);
        *ops += depth;
        *ns += t1 - t0;
    } while (t1 < end);
    return true;
}

#else /* no hiredis */

bool bench_redis_start(bench_redis *r)
{
    memset(r, 0, sizeof(*r));
    fprintf(stderr, "connrep-bench: built without hiredis\n");
    return false;
}

bool bench_redis_fill(bench_redis *r, const char *ids, uint64_t n, const uint8_t *states)
{
    (void)r, (void)ids, (void)n, (void)states;
    return false;
}

bool bench_redis_run(bench_redis *r, const char *cmd, const char *ids, const uint32_t *order,
                     uint64_t n, uint64_t *cursor, unsigned depth, double seconds,
                     bench_hist *calls, uint64_t *ops, uint64_t *ns)
{
    (void)r, (void)cmd, (void)ids, (void)order, (void)n, (void)cursor, (void)depth;
    (void)seconds, (void)calls, (void)ops, (void)ns;
    return false;
}

#endif

void bench_redis_acc_init(bench_redis_acc *a, const char *cmd, unsigned depth)
{
    memset(a, 0, sizeof(*a));
    a->cmd = cmd;
    a->depth = depth;
    bench_hist_init(&a->calls);
}

bool bench_redis_round(bench_redis *r, bench_redis_acc *a, const char *ids, const uint32_t *order,
                       uint64_t n, uint64_t *cursor, double seconds)
{
    bench_hist *h = malloc(sizeof(*h));
    if (h == NULL)
        return false;
    bench_hist_init(h);
    bool ok =
        bench_redis_run(r, a->cmd, ids, order, n, cursor, a->depth, seconds, h, &a->ops, &a->ns);
    if (ok) {
        double ps = bench_hist_quantile(h, 0.5);
        double rate = ps > 0 ? (double)a->depth * 1e12 / ps : 0;
        if (rate > a->best_per_s)
            a->best_per_s = rate;
        bench_hist_merge(&a->calls, h);
        ps = bench_hist_quantile(&a->calls, 0.5);
        a->median_per_s = ps > 0 ? (double)a->depth * 1e12 / ps : 0;
    }
    free(h);
    return ok;
}
