/* connrepd: the connector reputation engine as a daemon.
 *
 *   connrepd [--config FILE] [--check-config] [--foreground] [--help]
 *
 * Loads the config (built-in defaults without --config), creates state_dir
 * and the directories of ipc:// endpoints, opens the audit log, creates the
 * alerts, starts the engine (table, feed, writers, events, with the audit
 * log and alerts as its sinks), the lookup server and the admin server (when
 * [admin] bind is set), and waits for signals:
 *   SIGTERM, SIGINT  graceful stop: the admin server first (no new changes),
 *                    then intake closed, queues drained, every transition
 *                    audited and published, sockets closed, ipc socket
 *                    files, shm object and pid file removed; then the alerts
 *                    (notify commands get up to 2 s) and the audit log;
 *                    exit status 0;
 *   SIGHUP           reload from the same file: thresholds, notify_command
 *                    and TenantAdmins e-mails, and the alert policy when the
 *                    file's [alerts] policy keys changed since the last load
 *                    (so an unchanged file does not undo set-alert-policy);
 *                    a bad file keeps the running config (logged). Admin
 *                    identities, endpoints and the audit switch need a
 *                    restart (logged when they differ).
 *
 * Signals are taken with a signalfd polled by the main thread: no work
 * happens in a signal handler, and every other thread has them blocked.
 *
 * Without --foreground the daemon detaches (double fork, setsid), sends
 * stdin and stdout to /dev/null and stderr to state_dir/connrepd.log, and
 * the command returns once the engine is up (0) or failed to start (1). It
 * does not chdir("/"): relative paths of the config are relative to the
 * directory it was started in. The pid file state_dir/connrepd.pid is
 * written once the engine is ready, in both modes.
 *
 * Exit status: 0 clean stop (or --help, or a good --check-config); 1 the
 * engine could not start; 2 bad command line or config file.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/admin.h"
#include "crp/admin_backend.h"
#include "crp/alerts.h"
#include "crp/audit.h"
#include "crp/config.h"
#include "crp/engine.h"
#if CONNREP_HAVE_LOOKUP
#include "crp/lookup_server.h"
#endif

#define PID_FILE "connrepd.pid"
#define LOG_FILE "connrepd.log"

static void usage(FILE *f)
{
    fprintf(f, "usage: connrepd [--config FILE] [--check-config] [--foreground] [--help]\n"
               "\n"
               "The connector reputation engine: scores connectors from the verdict feed,\n"
               "restricts compromised ones, answers lookups and publishes state changes.\n"
               "\n"
               "  --config FILE    INI config (default: built-in defaults, no file)\n"
               "  --check-config   print the effective config and exit (0 good, 2 bad)\n"
               "  --foreground     do not detach; log to stderr\n"
               "  --help           this text\n"
               "\n"
               "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads thresholds and alerts.\n");
}

/* ------------------------------------------------------------------------ */
/* Files and directories                                                     */
/* ------------------------------------------------------------------------ */

/* mkdir -p: creates every missing component of path. */
static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        buf[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Calls fn(path, arg) for the file path of every ipc:// endpoint of a
 * comma list that names a file (not "*" and not the abstract "@name"). */
static int each_ipc_path(const char *list, int (*fn)(const char *path, void *arg), void *arg)
{
    const char *p = list;
    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char ep[CRP_CONFIG_LIST_MAX];
        if (n < sizeof ep) {
            memcpy(ep, p, n);
            ep[n] = '\0';
            const char *path = ep + 6;
            if (strncmp(ep, "ipc://", 6) == 0 && path[0] != '\0' && path[0] != '@' &&
                strcmp(path, "*") != 0) {
                if (fn(path, arg) != 0)
                    return -1;
            }
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

static int make_parent_dir(const char *path, void *arg)
{
    const char **failed = arg;
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return 0; /* in the working directory, or in "/" */
    size_t n = (size_t)(slash - path);
    if (n >= sizeof dir)
        n = sizeof dir - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    if (mkdir_p(dir, 0755) != 0) {
        *failed = path;
        return -1;
    }
    return 0;
}

static int unlink_path(const char *path, void *arg)
{
    (void)arg;
    if (unlink(path) != 0 && errno != ENOENT)
        crp_log(CRP_LOG_WARN, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static bool make_dirs(const crp_config *cfg)
{
    const char *lists[] = {cfg->feed.bind, cfg->lookup.bind, cfg->events.bind, cfg->admin.bind};
    if (mkdir_p(cfg->engine.state_dir, 0750) != 0) {
        fprintf(stderr, "connrepd: cannot create state_dir %s: %s\n", cfg->engine.state_dir,
                strerror(errno));
        return false;
    }
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const char *failed = NULL;
        if (each_ipc_path(lists[i], make_parent_dir, &failed) != 0) {
            fprintf(stderr, "connrepd: cannot create the directory of %s: %s\n",
                    failed != NULL ? failed : "?", strerror(errno));
            return false;
        }
    }
    return true;
}

static bool state_path(char *buf, size_t cap, const crp_config *cfg, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", cfg->engine.state_dir, name);
    return n > 0 && (size_t)n < cap;
}

/* Another connrepd with the same state_dir is running if the pid file
 * names a live process. */
static bool pid_file_live(const char *path, long *pid_out)
{
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f == NULL)
        return false;
    bool got = fscanf(f, "%ld", &pid) == 1;
    fclose(f);
    *pid_out = pid;
    return got && pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* Written to a temporary name and renamed, so a reader never sees half. */
static bool write_pid_file(const char *path)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return false;
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    bool ok = write(fd, line, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok)
        unlink(tmp);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Detaching                                                                 */
/* ------------------------------------------------------------------------ */

/* Double fork: the command's process waits for a status byte from the
 * daemon (0 ready, 1 failed) and exits with it; the daemon gets a session
 * of its own and can never reacquire a terminal. Returns the write end of
 * the status pipe in the daemon; never returns in the other processes. */
static int detach(const char *log_path)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        fprintf(stderr, "connrepd: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "connrepd: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        unsigned char status = 1;
        close(pfd[1]);
        waitpid(pid, NULL, 0);
        while (read(pfd[0], &status, 1) < 0 && errno == EINTR)
            ;
        if (status != 0)
            fprintf(stderr, "connrepd: the engine did not start; see %s\n", log_path);
        _exit(status);
    }
    close(pfd[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);

    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (null < 0 || log < 0) {
        unsigned char status = 1;
        (void)write(pfd[1], &status, 1);
        _exit(1);
    }
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    close(null);
    close(log);
    return pfd[1];
}

static void report_ready(int *fd, unsigned char status)
{
    if (*fd < 0)
        return;
    while (write(*fd, &status, 1) < 0 && errno == EINTR)
        ;
    close(*fd);
    *fd = -1;
}

/* ------------------------------------------------------------------------ */
/* Reload                                                                    */
/* ------------------------------------------------------------------------ */

/* What a reload needs besides the file: the running parts, and what the
 * last load said about things only a restart or an explicit edit changes. */
typedef struct running {
    crp_engine *engine;
    crp_alerts *alerts;
    const crp_config *boot;       /* identities, for the restart warning */
    crp_alert_policy file_policy; /* the [alerts] policy of the last load */
} running;

static bool same_policy(const crp_alert_policy *a, const crp_alert_policy *b)
{
    return a->enabled == b->enabled && a->email == b->email && a->daily_limit == b->daily_limit &&
           strcmp(a->recipients, b->recipients) == 0;
}

static bool same_identities(const crp_config *a, const crp_config *b)
{
    if (a->n_identities != b->n_identities)
        return false;
    for (size_t i = 0; i < a->n_identities; i++) {
        const crp_identity *x = &a->identities[i], *y = &b->identities[i];
        if (strcmp(x->name, y->name) != 0 || strcmp(x->public_key, y->public_key) != 0 ||
            x->role != y->role || x->any_tenant != y->any_tenant ||
            strcmp(x->tenant, y->tenant) != 0)
            return false;
    }
    return true;
}

/* The [alerts] part of a reload. The policy is edited at run time with
 * set-alert-policy, so the file's policy keys are applied only when they
 * differ from the previous load's: an operator who edits the file and sends
 * SIGHUP gets the edit, and an unchanged file does not undo an admin's. */
static void reload_alerts(running *run, const crp_config *next)
{
    crp_alert_policy p;
    char why[512];

    if (run->alerts == NULL)
        return;
    if (crp_alerts_reconfigure(run->alerts, next) != CRP_OK)
        crp_log(CRP_LOG_ERROR, "reload: out of memory; notify_command and alert recipients "
                               "left as they were");
    crp_alert_policy_from_config(&p, next);
    if (same_policy(&p, &run->file_policy))
        return;
    if (crp_alerts_set_policy(run->alerts, &p, why, sizeof why) != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "reload: the [alerts] policy of the file was not applied: %s", why);
        return;
    }
    run->file_policy = p;
    crp_log(CRP_LOG_INFO,
            "reload: alert policy from the file: enabled=%s email=%s recipients=%s "
            "daily_limit=%u",
            p.enabled ? "on" : "off", p.email ? "on" : "off", p.recipients, p.daily_limit);
    /* Journaled like an admin's edit, so a restart keeps it. */
    crp_err err = crp_engine_save_alert_policy(run->engine, &p, "SIGHUP");
    if (err != CRP_OK)
        crp_log(CRP_LOG_WARN,
                "reload: the alert policy is applied but not yet durable (%s); the next "
                "snapshot that succeeds keeps it",
                crp_strerror(err));
}

static void reload(running *run, const char *config_path)
{
    if (config_path == NULL) {
        crp_log(CRP_LOG_INFO, "SIGHUP: running on built-in defaults; nothing to reload");
        return;
    }
    crp_config *next = malloc(sizeof *next);
    char err[1024];
    if (next == NULL) {
        crp_log(CRP_LOG_ERROR, "reload failed, keeping the running config: out of memory");
        return;
    }
    crp_log(CRP_LOG_INFO, "SIGHUP: reloading %s", config_path);
    if (crp_config_load(next, config_path, err, sizeof err) != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "reload failed, keeping the running config: %s", err);
    } else {
        crp_err e = crp_engine_reload(run->engine, next, err, sizeof err);
        if (e != CRP_OK) {
            crp_log(CRP_LOG_ERROR, "reload failed, keeping the running config: %s", err);
        } else {
            reload_alerts(run, next);
            if (!same_identities(run->boot, next))
                crp_log(CRP_LOG_WARN, "reload: [identity] sections changed; who may use the "
                                      "admin socket changes only after a restart");
        }
    }
    crp_config_fini(next);
    free(next);
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

/* The shared table asks for transparent huge pages, which the kernel grants
 * to shared memory only when shmem_enabled allows it; 4 KiB pages add a
 * page walk to most lookups (measured: p50 about 1.5 times slower). Say so
 * once at start, since only the machine's operator can change it. */
static void hint_shm_huge_pages(void)
{
    char buf[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    if (f == NULL)
        return;
    if (fgets(buf, sizeof buf, f) != NULL && strstr(buf, "[never]") != NULL)
        crp_log(CRP_LOG_INFO,
                "the shared-memory table gets 4 KiB pages: "
                "/sys/kernel/mm/transparent_hugepage/shmem_enabled is 'never'; "
                "'advise' makes lookups faster");
    fclose(f);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    bool check = false, foreground = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_path = a + 9;
        } else if (strcmp(a, "--check-config") == 0) {
            check = true;
        } else if (strcmp(a, "--foreground") == 0) {
            foreground = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "connrepd: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* About 20 KiB: on the heap rather than main's stack. */
    crp_config *cfg = malloc(sizeof *cfg);
    char err[1024];
    if (cfg == NULL) {
        fprintf(stderr, "connrepd: out of memory\n");
        return 1;
    }
    if (crp_config_load(cfg, config_path, err, sizeof err) != CRP_OK) {
        fprintf(stderr, "connrepd: %s\n", err);
        free(cfg);
        return 2;
    }
    if (check) {
        int rc = crp_config_dump(cfg, stdout) == 0 && fflush(stdout) == 0 ? 0 : 2;
        if (rc != 0)
            fprintf(stderr, "connrepd: cannot print the config: %s\n", strerror(errno));
        crp_config_fini(cfg);
        free(cfg);
        return rc;
    }

    if (!make_dirs(cfg)) {
        crp_config_fini(cfg);
        free(cfg);
        return 1;
    }
    char pid_path[PATH_MAX], log_path[PATH_MAX];
    if (!state_path(pid_path, sizeof pid_path, cfg, PID_FILE) ||
        !state_path(log_path, sizeof log_path, cfg, LOG_FILE)) {
        fprintf(stderr, "connrepd: state_dir is too long: %s\n", cfg->engine.state_dir);
        crp_config_fini(cfg);
        free(cfg);
        return 2;
    }
    long other = 0;
    if (pid_file_live(pid_path, &other)) {
        fprintf(stderr, "connrepd: already running as pid %ld (%s)\n", other, pid_path);
        crp_config_fini(cfg);
        free(cfg);
        return 1;
    }

    /* Detach before any thread exists: fork keeps only the calling one. */
    int ready_fd = foreground ? -1 : detach(log_path);

    /* Every thread created from here on inherits this mask, so the signals
     * reach only the signalfd below. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        crp_log(CRP_LOG_ERROR, "signalfd: %s", strerror(errno));
        report_ready(&ready_fd, 1);
        return 1;
    }

    crp_log(CRP_LOG_INFO, "connrepd starting, pid %ld, config %s", (long)getpid(),
            config_path != NULL ? config_path : "(built-in defaults)");
    int status = 1;
    void *zctx = zmq_ctx_new();
    crp_engine *engine = NULL;
    crp_audit *audit = NULL;
    crp_alerts *alerts = NULL;
    crp_admin_server *admin = NULL;
    crp_admin_engine admin_engine;
    running run = {.boot = cfg};
#if CONNREP_HAVE_LOOKUP
    crp_lookup_server *lookup = NULL;
#endif
    if (zctx == NULL) {
        crp_log(CRP_LOG_ERROR, "cannot create the ZeroMQ context: %s", zmq_strerror(errno));
        goto out;
    }
    /* The audit log and the alerts exist before the engine: its events
     * thread writes every transition to the one and hands restrictions to
     * the other from its first event on. */
    if (crp_audit_create_from_config(&audit, cfg, err, sizeof err) != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "cannot open the audit log: %s", err);
        goto out;
    }
    if (crp_alerts_create(&alerts, cfg, audit, err, sizeof err) != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "cannot set up the alerts: %s", err);
        goto out;
    }
    crp_engine_sinks sinks = {.audit = audit, .alerts = alerts, .persist = true};
    if (crp_engine_create_with(&engine, zctx, cfg, &sinks, err, sizeof err) != CRP_OK) {
        crp_log(CRP_LOG_ERROR, "cannot start the engine: %s", err);
        goto out;
    }
    run.engine = engine;
    run.alerts = alerts;
    crp_alert_policy_from_config(&run.file_policy, cfg);
    if (cfg->engine.shm_name[0] != '\0')
        hint_shm_huge_pages();
#if CONNREP_HAVE_LOOKUP
    if (cfg->lookup.bind[0] != '\0') {
        crp_err le =
            crp_lookup_server_start(&lookup, zctx, cfg->lookup.bind, crp_engine_table(engine),
                                    engine, CRP_LOOKUP_ENGINE_HOOKS);
        if (le != CRP_OK) {
            crp_log(CRP_LOG_ERROR, "cannot start the lookup server on %s: %s%s%s", cfg->lookup.bind,
                    crp_strerror(le), le == CRP_SYS ? ": " : "",
                    le == CRP_SYS ? zmq_strerror(errno) : "");
            goto out;
        }
    }
#else
    crp_log(CRP_LOG_WARN, "built without the lookup server: [lookup] bind is not served");
#endif
    /* The admin server comes last: its verbs need the engine running. */
    if (cfg->admin.bind[0] != '\0') {
        crp_admin_backend backend;
        crp_admin_engine_init(&admin_engine, engine, audit, &backend);
        if (crp_admin_server_start(&admin, zctx, cfg, &backend, audit, alerts, err, sizeof err) !=
            CRP_OK) {
            crp_log(CRP_LOG_ERROR, "cannot start the admin server: %s", err);
            goto out;
        }
        crp_log(CRP_LOG_INFO, "admin server on %s, %zu identit%s, server key %s.pub",
                cfg->admin.bind, cfg->n_identities, cfg->n_identities == 1 ? "y" : "ies",
                cfg->admin.secret_key_file);
    }
    if (!write_pid_file(pid_path)) {
        crp_log(CRP_LOG_ERROR, "cannot write %s: %s", pid_path, strerror(errno));
        goto out;
    }
    crp_log(CRP_LOG_INFO, "ready: feed %s, lookup %s, events %s, admin %s; audit log %s, alerts %s",
            cfg->feed.bind, cfg->lookup.bind, cfg->events.bind,
            cfg->admin.bind[0] != '\0' ? cfg->admin.bind : "(none)",
            cfg->audit.enabled ? "on" : "off", cfg->alerts.enabled ? "on" : "off");
    report_ready(&ready_fd, 0);

    for (;;) {
        zmq_pollitem_t item = {.socket = NULL, .fd = sfd, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            crp_log(CRP_LOG_ERROR, "poll: %s", zmq_strerror(errno));
            break;
        }
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof si);
        if (n != (ssize_t)sizeof si)
            continue;
        if (si.ssi_signo == SIGHUP) {
            reload(&run, config_path);
            continue;
        }
        crp_log(CRP_LOG_INFO, "%s: stopping", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    status = 0;

out:
    /* The admin server goes first, so no change arrives while the engine
     * drains (crp/admin.h). Intake stops and the queues drain while lookups
     * are still served, and the events thread audits and publishes every
     * transition; then the lookup server goes, and only then the table.
     * The alerts and the audit log outlive the events thread that uses
     * them; the context goes last. */
    crp_admin_server_stop(&admin);
    crp_engine_stop(engine);
#if CONNREP_HAVE_LOOKUP
    crp_lookup_server_stop(&lookup);
#endif
    crp_engine_destroy(&engine);
    crp_alerts_destroy(&alerts);
    crp_audit_destroy(&audit);
    if (zctx != NULL)
        zmq_ctx_term(zctx);
    /* ZeroMQ removes the socket files it bound; this also covers a stop
     * after a failed start. */
    if (status == 0) {
        each_ipc_path(cfg->feed.bind, unlink_path, NULL);
        each_ipc_path(cfg->lookup.bind, unlink_path, NULL);
        each_ipc_path(cfg->events.bind, unlink_path, NULL);
        each_ipc_path(cfg->admin.bind, unlink_path, NULL);
        unlink(pid_path);
        crp_log(CRP_LOG_INFO, "stopped");
    }
    report_ready(&ready_fd, 1);
    close(sfd);
    crp_config_fini(cfg);
    free(cfg);
    return status;
}
