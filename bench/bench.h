/* Shared machinery of connrep-bench: the scenario registry, option parsing,
 * clocks, a fixed-seed PRNG, the JSON writer, machine facts and progress
 * lines. A scenario is one source file with one `bench_scenario` and is
 * listed in main.c; everything it needs in common lives here.
 *
 * Output contract (every scenario): with --json, exactly one JSON object on
 * stdout; otherwise a short human table on stdout. Progress lines always go
 * to stderr (unless --quiet). Every run is bounded in time: phases by
 * --seconds, the whole run by --max-seconds (a watchdog alarm).
 *
 * Exit status: 0 success, 1 the run failed, 2 bad usage, 3 watchdog expired.
 */
#ifndef BENCH_H
#define BENCH_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define BENCH_EXIT_OK       0
#define BENCH_EXIT_FAIL     1
#define BENCH_EXIT_USAGE    2
#define BENCH_EXIT_WATCHDOG 3

#define BENCH_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* ---- Scenarios ---------------------------------------------------------- */

typedef struct bench_scenario {
    const char *name;    /* the first argument: `connrep-bench NAME ...` */
    const char *summary; /* one line for `connrep-bench --help` */
    /* Runs with the arguments after the name (argv[0] is the name) and
     * returns an exit status. Handles its own --help. */
    int (*run)(int argc, char **argv);
} bench_scenario;

/* ---- Options ------------------------------------------------------------ */

enum bench_opt_kind {
    BENCH_OPT_FLAG,   /* bool, no argument */
    BENCH_OPT_U64,    /* uint64_t; accepts k, M, G suffixes (powers of 1000) */
    BENCH_OPT_DOUBLE, /* double */
    BENCH_OPT_STR,    /* const char *, pointing into argv (or the default) */
};

typedef struct bench_opt {
    const char *name; /* without the leading "--" */
    enum bench_opt_kind kind;
    void *value;      /* bool *, uint64_t *, double * or const char **, holding the default */
    const char *arg;  /* placeholder shown in the help, e.g. "N" */
    const char *help; /* one line */
    double min;       /* accepted range, inclusive (ignored for flags) */
    double max;
} bench_opt;

/* Options every scenario takes. */
typedef struct bench_common {
    bool json;
    bool quiet;
    bool help;
    double seconds;     /* per timed phase */
    uint64_t seed;      /* fixed seed of every PRNG in the run */
    double max_seconds; /* watchdog for the whole run */
    /* Help texts of --seconds and --max-seconds when a scenario means
     * something else by them; NULL: the usual. A help text that contains
     * "(default" is printed as is, without the default value. */
    const char *seconds_help;
    const char *max_seconds_help;
} bench_common;

/* Sets the defaults of the common options. */
void bench_common_init(bench_common *c, double seconds);

/* Parses argv[1..argc-1] (argv[0] is the scenario name) against the
 * common options and the scenario's own. `--name value` and `--name=value`
 * both work. On an error prints a message to stderr and returns false. */
bool bench_opts_parse(bench_common *c, const bench_opt *opts, size_t n, int argc, char **argv);

/* Prints a scenario's usage: synopsis, description, then every option
 * with its default. */
void bench_opts_usage(FILE *f, const char *scenario, const char *description, bench_common *c,
                      const bench_opt *opts, size_t n);

/* ---- Watchdog and progress ---------------------------------------------- */

/* Arms a process-wide alarm: after `seconds` the run prints a message and
 * exits with BENCH_EXIT_WATCHDOG, so no run can hang a CI job. */
void bench_watchdog_arm(double seconds);

/* Progress on stderr with the time since the run started; silenced by
 * bench_progress_quiet(true). */
void bench_progress(const char *fmt, ...) BENCH_PRINTF(1, 2);
void bench_progress_quiet(bool quiet);

/* Registers the cleanup of a run that owns something outside the process
 * (a daemon it started, a temp dir): the watchdog, and SIGINT, SIGTERM and
 * SIGHUP (handlers installed by the first registration), call fn(signal)
 * before the process exits, with 3 (watchdog) or 128 + signal. fn runs in a
 * signal handler: async-signal-safe calls only. NULL unregisters. One
 * cleanup at a time. */
void bench_on_abort(void (*fn)(int sig));

/* ---- Clocks -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. The vDSO reads the TSC with an ordering
 * fence, so a pair of these around an operation measures that operation
 * plus a roughly constant overhead (see bench_clock_overhead_ns). */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The median cost of two back-to-back bench_now_ns() calls, in ns,
 * measured now: what an individually timed operation should subtract. */
double bench_clock_overhead_ns(void);

/* ---- Small statistics ------------------------------------------------------ */

/* a / b, or NaN (JSON null) when b is not positive. */
static inline double bench_ratio(double a, double b)
{
    return b > 0 ? a / b : (double)NAN;
}

/* The median of v[0..n) (sorts v in place); NaN when n is 0. */
double bench_median(double *v, size_t n);

/* ---- PRNG ---------------------------------------------------------------- */

/* SplitMix64: tiny, fast and good enough for choosing keys; every stream in
 * the bench derives from --seed so runs are repeatable. */
static inline uint64_t bench_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static inline uint64_t bench_rand(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15u;
    uint64_t x = *state;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* A uniform value in [0, n) for n < 2^32 (multiply-shift, no division). */
static inline uint64_t bench_below(uint64_t r, uint64_t n)
{
    return ((r >> 32) * n) >> 32;
}

/* Connector number i's id: a version-4 GUID in lowercase text, 36 bytes,
 * not NUL-terminated, a pure function of (seed, i). */
#define BENCH_GUID_LEN 36u
void bench_guid(uint64_t seed, uint64_t i, char out[BENCH_GUID_LEN]);

/* Tenant number t's name: a handful of distinct, realistic-length names
 * ("tenant-007.onmicrosoft.com"). Returns its length (at most
 * len - 1; written NUL-terminated). */
size_t bench_tenant_name(uint64_t t, char *buf, size_t len);

/* Connector i's tenant among `tenants`: spread by a hash so it does not
 * follow i, and a pure function of (seed, i). */
uint64_t bench_tenant_of(uint64_t seed, uint64_t i, uint64_t tenants);

/* ---- Memory -------------------------------------------------------------- */

/* An anonymous private mapping of `bytes` (rounded up to 2 MiB), asking for
 * transparent huge pages when `hugepages`. NULL on failure (errno set). */
void *bench_map(size_t bytes, bool hugepages);
void bench_unmap(void *p, size_t bytes);

/* From /proc/self/smaps: the resident and the huge-page bytes of the
 * mapping that contains `addr`. False if it cannot be read. */
bool bench_smaps(const void *addr, uint64_t *rss, uint64_t *anon_huge);

/* ---- Machine facts ------------------------------------------------------- */

typedef struct bench_machine {
    char cpu_model[128];
    unsigned cores;
    char kernel[128];
    uint64_t l3_bytes; /* 0 if unknown */
    char clocksource[32];
    char thp[32]; /* transparent_hugepage/enabled: the selected mode */
    /* DAMON's first kdamond: "off", or its state, operations and first
     * scheme's action (e.g. "on paddr pageout"), since a pageout scheme
     * scans and may split the memory being measured. */
    char damon[64];
} bench_machine;

void bench_machine_get(bench_machine *m);

/* ---- JSON ---------------------------------------------------------------- */

/* A flat JSON object writer: one key per call, commas handled. */
typedef struct bench_json {
    FILE *f;
    bool first;
} bench_json;

void bench_json_begin(bench_json *j, FILE *f);
void bench_json_end(bench_json *j);
void bench_json_str(bench_json *j, const char *key, const char *value);
void bench_json_u64(bench_json *j, const char *key, uint64_t value);
void bench_json_bool(bench_json *j, const char *key, bool value);
/* A number with `decimals` digits after the point; NaN and infinities
 * become null (JSON has no spelling for them). */
void bench_json_num(bench_json *j, const char *key, double value, int decimals);
/* An array of numbers, each as bench_json_num. */
void bench_json_nums(bench_json *j, const char *key, const double *v, size_t n, int decimals);
/* A nested object under `key`: members go into it until
 * bench_json_object_end(). Nests to any depth. */
void bench_json_object_begin(bench_json *j, const char *key);
void bench_json_object_end(bench_json *j);
/* The machine facts as cpu_model, cores, kernel, l3_bytes, clocksource,
 * thp, damon. */
void bench_json_machine(bench_json *j, const bench_machine *m);

#endif
