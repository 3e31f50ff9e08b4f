/* Scenario "all": every scenario in turn (briefly with --quick), one JSON
 * object or one summary table, and with --report DIR a report.md with PNG
 * plots made by gnuplot:
 *
 *   latency.png     lookup latency (p50, p99, p99.9, open loop) against the
 *                   offered lookup rate, from `mixed`;
 *   throughput.png  table lookups/s and updates/s (and the rwlock baseline)
 *                   against the table size, from the `table` runs;
 *   redis.png       lookups/s of connrep's paths against Redis GET and INCR,
 *                   unpipelined and 64 deep, from `lookup` and `table`.
 *
 * The scenarios run as child processes (all.h says why).
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "all.h"
#include "bench.h"
#include "connrep.h"
#include "redis.h"
#include "scenarios.h"
#include "zbase.h"

#define ALL_ARGS_MAX 32

typedef struct all_run {
    const char *key;
    const char *quick; /* arguments of the quick run; NULL: not in quick runs */
    const char *full;
} all_run;

/* The runs, in order. The table sizes are the x axis of throughput.png. */
static const all_run all_runs[] = {
    {"table_1e4", "table --connectors 10000 --seconds 0.4 --rounds 2 --events 65536",
     "table --connectors 10000"},
    {"table_1e5", "table --connectors 100000 --seconds 0.4 --rounds 2 --events 65536",
     "table --connectors 100000"},
    {"table_1e6", NULL, "table --connectors 1000000"},
    {"ingest", "ingest --connectors 10000 --seconds 1", "ingest"},
    {"lookup", "lookup --connectors 10000 --seconds 0.4 --rounds 2", "lookup"},
    {"mixed",
     "mixed --connectors 10000 --seconds 0.5 --steps 3 --lookups-per-s 6000 --events-per-s 20000",
     "mixed --steps 6 --lookups-per-s 30000 --events-per-s 100000"},
    {"flood", "flood --connectors 4096 --seconds 0.5", "flood"},
};
#define ALL_NRUNS (sizeof(all_runs) / sizeof(all_runs[0]))

double bench_jnum(const json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *v = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL;
         tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    if (json_is_true(v))
        return 1;
    if (json_is_false(v))
        return 0;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Runs this executable with `args` (space-separated) and --json --quiet
 * --seed, and returns its stdout (the caller frees it), or NULL with the
 * reason in why. */
static char *all_child(const char *args, uint64_t seed, char *why, size_t len)
{
    char line[512], seedarg[32];
    snprintf(line, sizeof(line), "%s", args);
    snprintf(seedarg, sizeof(seedarg), "--seed=%" PRIu64, seed);
    char *argv[ALL_ARGS_MAX + 5];
    size_t argc = 0;
    argv[argc++] = "/proc/self/exe";
    for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok != NULL && argc < ALL_ARGS_MAX;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    argv[argc++] = "--json";
    argv[argc++] = "--quiet";
    argv[argc++] = seedarg;
    argv[argc] = NULL;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        snprintf(why, len, "readlink /proc/self/exe: %s", strerror(errno));
        return NULL;
    }
    exe[n] = '\0';
    argv[0] = exe;
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(why, len, "pipe: %s", strerror(errno));
        return NULL;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        snprintf(why, len, "fork: %s", strerror(errno));
        return NULL;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        /* /proc/self/exe, not the path: a rebuild may have replaced the
         * file since this process started, and the new one may differ. */
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 16, used = 0;
    char *out = malloc(cap);
    for (;;) {
        if (out != NULL && used + 4096 > cap) {
            char *bigger = realloc(out, cap * 2);
            if (bigger == NULL) {
                free(out);
                out = NULL;
            } else {
                out = bigger;
                cap *= 2;
            }
        }
        char sink[4096];
        ssize_t r = read(fd[0], out != NULL ? out + used : sink, 4096);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (out != NULL)
            used += (size_t)r;
    }
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out == NULL) {
        snprintf(why, len, "out of memory");
        return NULL;
    }
    out[used] = '\0';
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, len, "exit status %d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        free(out);
        return NULL;
    }
    return out;
}

json_t *bench_all_run(bool quick, uint64_t seed, unsigned *failed)
{
    json_t *all = json_object();
    if (all == NULL)
        return NULL;
    *failed = 0;
    for (size_t i = 0; i < ALL_NRUNS; i++) {
        const char *args = quick ? all_runs[i].quick : all_runs[i].full;
        if (args == NULL)
            continue;
        bench_progress("all: %s (connrep-bench %s)", all_runs[i].key, args);
        char why[128];
        uint64_t t0 = bench_now_ns();
        char *out = all_child(args, seed, why, sizeof(why));
        json_t *v = NULL;
        if (out != NULL) {
            json_error_t err;
            v = json_loads(out, 0, &err);
            if (v == NULL)
                snprintf(why, sizeof(why), "not JSON: %.100s", err.text);
            free(out);
        }
        if (v == NULL) {
            (*failed)++;
            fprintf(stderr, "connrep-bench all: %s failed: %s\n", all_runs[i].key, why);
            v = json_pack("{s:s, s:s}", "error", why, "args", args);
        }
        bench_progress("all: %s done in %.1f s", all_runs[i].key,
                       (double)(bench_now_ns() - t0) / 1e9);
        json_object_set_new(all, all_runs[i].key, v);
    }
    return all;
}

/* ---- Report ------------------------------------------------------------------------- */

static FILE *all_open(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fprintf(stderr, "connrep-bench all: %s: %s\n", path, strerror(errno));
    return f;
}

/* Runs gnuplot on DIR/NAME.gp, in DIR. False (said on stderr) when it is
 * not installed or fails. */
static bool all_gnuplot(const char *dir, const char *name)
{
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        char gp[256];
        snprintf(gp, sizeof(gp), "%s.gp", name);
        if (chdir(dir) != 0)
            _exit(126);
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        fprintf(stderr,
                "connrep-bench all: gnuplot not found (apt-get install -y gnuplot-nox): "
                "no %s.png\n",
                name);
        return false;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void all_plot_latency(const char *dir, const json_t *all)
{
    const json_t *steps = json_object_get(json_object_get(all, "mixed"), "steps");
    const json_t *off = json_object_get(steps, "offered_lookups_per_s");
    FILE *f = all_open(dir, "latency.dat");
    if (f == NULL || !json_is_array(off)) {
        if (f != NULL)
            fclose(f);
        return;
    }
    static const char *const cols[] = {"achieved_lookups_per_s", "p50_us", "p99_us", "p999_us",
                                       "service_p99_us"};
    fprintf(f, "# offered achieved p50_us p99_us p999_us service_p99_us\n");
    for (size_t i = 0; i < json_array_size(off); i++) {
        fprintf(f, "%g", json_number_value(json_array_get(off, i)));
        for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++)
            fprintf(f, " %g",
                    json_number_value(json_array_get(json_object_get(steps, cols[c]), i)));
        fputc('\n', f);
    }
    fclose(f);
    f = all_open(dir, "latency.gp");
    if (f == NULL)
        return;
    fprintf(f,
            "set terminal pngcairo size 800,500\nset output 'latency.png'\n"
            "set title 'mixed: lookup latency vs offered load (open loop, feed at %.0f "
            "events/s)'\n"
            "set xlabel 'offered lookups/s'\nset ylabel 'latency, us'\nset logscale y\n"
            "set key top left\nset grid\n"
            "plot 'latency.dat' u 1:3 w lp t 'p50', '' u 1:4 w lp t 'p99', "
            "'' u 1:5 w lp t 'p99.9', '' u 1:6 w lp dt 2 t 'p99 service time (closed-loop "
            "view)'\n",
            bench_jnum(all, "mixed.feed_offered_events_per_s"));
    fclose(f);
    all_gnuplot(dir, "latency");
}

static void all_plot_throughput(const char *dir, const json_t *all)
{
    FILE *f = all_open(dir, "throughput.dat");
    if (f == NULL)
        return;
    fprintf(f, "# connectors lookups_per_s updates_per_s baseline_lookups_per_s redis_get_per_s\n");
    for (size_t i = 0; i < ALL_NRUNS; i++) {
        if (strncmp(all_runs[i].key, "table_", 6) != 0)
            continue;
        const json_t *t = json_object_get(all, all_runs[i].key);
        double n = bench_jnum(t, "connectors");
        if (isnan(n))
            continue;
        fprintf(f, "%g %g %g %g %g\n", n, bench_jnum(t, "lookups_per_s"),
                bench_jnum(t, "updates_per_s"), bench_jnum(t, "baseline_lookups_per_s"),
                bench_jnum(t, "redis.get_per_s"));
    }
    fclose(f);
    f = all_open(dir, "throughput.gp");
    if (f == NULL)
        return;
    fprintf(f, "set terminal pngcairo size 800,500\nset output 'throughput.png'\n"
               "set title 'table: one thread, in process, vs table size'\n"
               "set xlabel 'connectors'\nset ylabel 'operations/s'\nset logscale xy\n"
               "set key bottom left\nset grid\n"
               "plot 'throughput.dat' u 1:2 w lp t 'lookups', '' u 1:3 w lp t 'updates (scoring)', "
               "'' u 1:4 w lp t 'rwlock hash baseline lookups', '' u 1:5 w lp t 'Redis GET "
               "(unix socket)'\n");
    fclose(f);
    all_gnuplot(dir, "throughput");
}

static void all_plot_redis(const char *dir, const json_t *all)
{
    const json_t *l = json_object_get(all, "lookup");
    if (bench_jnum(l, "redis.skipped") != 0)
        return;
    FILE *f = all_open(dir, "redis.dat");
    if (f == NULL)
        return;
    const struct {
        const char *label, *path;
    } rows[] = {
        {"\"in-process (shm)\"", "redis.inproc_lookups_per_s"},
        {"\"shm batched\"", "shm.batched_lookups_per_s"},
        {"\"ipc batched\"", "ipc.batched_lookups_per_s"},
        {"\"tcp batched\"", "tcp.batched_lookups_per_s"},
        {"\"Redis GET x64\"", "redis.get_pipe64_per_s"},
        {"\"Redis INCR x64\"", "redis.incr_pipe64_per_s"},
        {"\"Redis GET\"", "redis.get_per_s"},
        {"\"Redis INCR\"", "redis.incr_per_s"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        fprintf(f, "%zu %s %g\n", i, rows[i].label, bench_jnum(l, rows[i].path));
    fclose(f);
    f = all_open(dir, "redis.gp");
    if (f == NULL)
        return;
    fprintf(f, "set terminal pngcairo size 800,500\nset output 'redis.png'\n"
               "set title 'lookups/s, one client thread: connrep vs Redis (same run)'\n"
               "set ylabel 'operations/s'\nset logscale y\nset style fill solid 0.6\n"
               "set boxwidth 0.7\nset xtics rotate by -30\nset grid ytics\nunset key\n"
               "plot 'redis.dat' u 1:3:xtic(2) w boxes\n");
    fclose(f);
    all_gnuplot(dir, "redis");
}

static void all_report_md(const char *dir, const json_t *all, bool quick)
{
    FILE *f = all_open(dir, "report.md");
    if (f == NULL)
        return;
    const json_t *l = json_object_get(all, "lookup");
    const json_t *m = json_object_get(all, "machine");
    fprintf(f, "# connrep-bench report%s\n\n", quick ? " (quick run: figures are indicative)" : "");
    fprintf(f, "Machine: %s, %g cores, kernel %s; ZeroMQ %s, hiredis %s, Redis %s.\n\n",
            json_string_value(json_object_get(m, "cpu_model")), bench_jnum(m, "cores"),
            json_string_value(json_object_get(m, "kernel")), bench_zmq_version(),
            bench_hiredis_version(),
            json_is_string(json_object_get(json_object_get(l, "redis"), "version"))
                ? json_string_value(json_object_get(json_object_get(l, "redis"), "version"))
                : "not run");
    fprintf(f, "| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n");
    fprintf(f, "| ingest, events/s applied | %.0f | %.0f (raw PUSH/PULL) | %.2f |\n",
            bench_jnum(all, "ingest.events_per_s"), bench_jnum(all, "ingest.baseline_events_per_s"),
            bench_jnum(all, "ingest.ratio"));
    fprintf(f, "| ipc lookup p50, us | %.1f | %.1f (raw echo) | %.2f |\n",
            bench_jnum(l, "ipc.p50_us"), bench_jnum(l, "ipc.baseline_p50_us"),
            bench_jnum(l, "ipc.ratio_p50"));
    fprintf(f, "| shm lookup p50, us | %.3f | %.3f (DRAM miss) | %.2f |\n",
            bench_jnum(l, "shm.p50_us"), bench_jnum(l, "shm.dram_ns") / 1e3,
            bench_jnum(l, "shm.ratio_p50_vs_dram"));
    fprintf(f, "| in-process lookups/s | %.0f | %.0f (Redis GET) | %.0fx (target >= 50x) |\n",
            bench_jnum(l, "redis.inproc_lookups_per_s"), bench_jnum(l, "redis.get_per_s"),
            bench_jnum(l, "redis.inproc_vs_get"));
    fprintf(f, "| ipc batched lookups/s | %.0f | %.0f (Redis GET) | %.1fx (target >= 10x) |\n",
            bench_jnum(l, "ipc.batched_lookups_per_s"), bench_jnum(l, "redis.get_per_s"),
            bench_jnum(l, "redis.ipc_batched_vs_get"));
    fprintf(f, "| ipc batched lookups/s | %.0f | %.0f (Redis GET x64) | %.2fx (target > 1) |\n",
            bench_jnum(l, "ipc.batched_lookups_per_s"), bench_jnum(l, "redis.get_pipe64_per_s"),
            bench_jnum(l, "redis.ipc_batched_vs_get_pipe64"));
    fprintf(f, "| flood: restricted kept | %.0f of %.0f | | shed %.0f |\n",
            bench_jnum(all, "flood.restricted_preserved"),
            bench_jnum(all, "flood.restricted_checked"), bench_jnum(all, "flood.shed"));
    fprintf(f, "\n![latency vs offered load](latency.png)\n\n"
               "![throughput vs table size](throughput.png)\n\n"
               "![connrep vs Redis](redis.png)\n\n"
               "Every figure is in all.json; docs/capacity.md explains how to read them.\n");
    fclose(f);
}

static bool all_report(const char *dir, const json_t *all, bool quick)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "connrep-bench all: mkdir %s: %s\n", dir, strerror(errno));
        return false;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/all.json", dir);
    if (json_dump_file(all, path, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "connrep-bench all: cannot write %s\n", path);
        return false;
    }
    all_plot_latency(dir, all);
    all_plot_throughput(dir, all);
    all_plot_redis(dir, all);
    all_report_md(dir, all, quick);
    return true;
}

/* ---- The scenario ---------------------------------------------------------------------- */

static void all_human(const json_t *all)
{
    const json_t *l = json_object_get(all, "lookup");
    printf("connrep-bench all\n");
    for (size_t i = 0; i < ALL_NRUNS; i++) {
        const json_t *t = json_object_get(all, all_runs[i].key);
        if (strncmp(all_runs[i].key, "table_", 6) == 0 && t != NULL)
            printf("%-10s %8.0f connectors: %6.2fM lookups/s, %6.2fM updates/s, %.0f B/connector\n",
                   all_runs[i].key, bench_jnum(t, "connectors"),
                   bench_jnum(t, "lookups_per_s") / 1e6, bench_jnum(t, "updates_per_s") / 1e6,
                   bench_jnum(t, "bytes_per_connector"));
    }
    printf("ingest     %.0f events/s applied (raw PUSH/PULL %.0f)\n",
           bench_jnum(all, "ingest.events_per_s"), bench_jnum(all, "ingest.baseline_events_per_s"));
    printf("lookup     ipc p50 %.1f us, batched %.0f/s; shm p50 %.3f us\n",
           bench_jnum(l, "ipc.p50_us"), bench_jnum(l, "ipc.batched_lookups_per_s"),
           bench_jnum(l, "shm.p50_us"));
    printf("redis      GET %.0f/s, GET x64 %.0f/s: in-process %.0fx, ipc batched %.1fx and %.2fx\n",
           bench_jnum(l, "redis.get_per_s"), bench_jnum(l, "redis.get_pipe64_per_s"),
           bench_jnum(l, "redis.inproc_vs_get"), bench_jnum(l, "redis.ipc_batched_vs_get"),
           bench_jnum(l, "redis.ipc_batched_vs_get_pipe64"));
    printf("mixed      offered %.0f/s achieved %.0f/s: p50 %.1f us p99 %.1f us p99.9 %.1f us\n",
           bench_jnum(all, "mixed.offered_lookups_per_s"),
           bench_jnum(all, "mixed.achieved_lookups_per_s"), bench_jnum(all, "mixed.p50_us"),
           bench_jnum(all, "mixed.p99_us"), bench_jnum(all, "mixed.p999_us"));
    printf("flood      shed %.0f, restricted kept %.0f of %.0f, lookup p99 %.1f us (quiet %.1f)\n",
           bench_jnum(all, "flood.shed"), bench_jnum(all, "flood.restricted_preserved"),
           bench_jnum(all, "flood.restricted_checked"), bench_jnum(all, "flood.flood.p99_us"),
           bench_jnum(all, "flood.quiet.p99_us"));
}

static int all_main(int argc, char **argv)
{
    bench_common c;
    bench_common_init(&c, 0);
    c.seconds_help = "unused: each run has its own (default -)";
    c.max_seconds = 3600;
    bool quick = false;
    const char *report = NULL;
    const bench_opt opts[] = {
        {"quick", BENCH_OPT_FLAG, &quick, NULL, "every scenario briefly (about a minute)", 0, 0},
        {"report", BENCH_OPT_STR, &report, "DIR",
         "write all.json, report.md and PNG plots (gnuplot) into DIR", 0, 0},
    };
    const size_t nopts = sizeof(opts) / sizeof(opts[0]);
    if (!bench_opts_parse(&c, opts, nopts, argc, argv))
        return BENCH_EXIT_USAGE;
    if (c.help) {
        bench_opts_usage(stdout, "all",
                         "Runs every scenario in turn (table at several sizes, ingest, lookup\n"
                         "with the Redis baseline, mixed, flood), each as a child process with\n"
                         "its own watchdog, and prints their results as one JSON object (--json)\n"
                         "or a summary table. --report DIR adds report.md and PNG plots.",
                         &c, opts, nopts);
        return BENCH_EXIT_OK;
    }
    bench_progress_quiet(c.quiet);
    bench_watchdog_arm(c.max_seconds);
    uint64_t t0 = bench_now_ns();
    unsigned failed = 0;
    json_t *all = bench_all_run(quick, c.seed, &failed);
    if (all == NULL)
        return BENCH_EXIT_FAIL;
    bench_machine m;
    bench_machine_get(&m);
    json_t *mj = json_pack("{s:s, s:i, s:s, s:I, s:s, s:s}", "cpu_model", m.cpu_model, "cores",
                           (int)m.cores, "kernel", m.kernel, "l3_bytes", (json_int_t)m.l3_bytes,
                           "thp", m.thp, "clocksource", m.clocksource);
    char ver[16];
    snprintf(ver, sizeof(ver), "%d.%d", CONNREP_VERSION_MAJOR, CONNREP_VERSION_MINOR);
    json_t *vj = json_pack("{s:s, s:s, s:s, s:s}", "connrep", ver, "zmq", bench_zmq_version(),
                           "hiredis", bench_hiredis_version(), "jansson", JANSSON_VERSION);
    json_object_set_new(all, "machine", mj);
    json_object_set_new(all, "versions", vj);
    json_object_set_new(all, "scenario", json_string("all"));
    json_object_set_new(all, "quick", json_boolean(quick));
    json_object_set_new(all, "failed", json_integer(failed));
    json_object_set_new(all, "run_s", json_real((double)(bench_now_ns() - t0) / 1e9));
    bool ok = failed == 0;
    if (report != NULL)
        ok &= all_report(report, all, quick);
    if (c.json) {
        char *text = json_dumps(all, JSON_COMPACT);
        if (text != NULL)
            puts(text);
        free(text);
    } else {
        all_human(all);
        printf("machine: %s, %u cores, kernel %s; ZeroMQ %s, hiredis %s\n", m.cpu_model, m.cores,
               m.kernel, bench_zmq_version(), bench_hiredis_version());
        if (report != NULL)
            printf("report: %s/report.md\n", report);
    }
    json_decref(all);
    return ok ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;
}

const bench_scenario bench_scenario_all = {
    .name = "all",
    .summary = "every scenario in turn (--quick: briefly); --report DIR: report.md and plots",
    .run = all_main,
};
