/* mmap's MAP_ANONYMOUS and madvise's MADV_HUGEPAGE are outside plain POSIX;
 * the build defines _POSIX_C_SOURCE, which hides them unless asked. */
#define _DEFAULT_SOURCE

#include "bench.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hist.h"

/* ---- Options ------------------------------------------------------------ */

void bench_common_init(bench_common *c, double seconds)
{
    memset(c, 0, sizeof(*c));
    c->seconds = seconds;
    c->seed = 1;
    c->max_seconds = 600;
}

/* The common options, as a table over *c, so parsing and help treat them
 * exactly like a scenario's own. */
#define BENCH_COMMON_OPTS 6
static void bench_common_opts(bench_common *c, bench_opt out[BENCH_COMMON_OPTS])
{
    const bench_opt opts[BENCH_COMMON_OPTS] = {
        {"seconds", BENCH_OPT_DOUBLE, &c->seconds, "S",
         c->seconds_help ? c->seconds_help : "length of each timed phase", 0.01, 3600},
        {"seed", BENCH_OPT_U64, &c->seed, "X", "seed of every PRNG (ids, key order, table)", 0,
         1.8e19},
        {"json", BENCH_OPT_FLAG, &c->json, NULL, "print one JSON object on stdout", 0, 0},
        {"quiet", BENCH_OPT_FLAG, &c->quiet, NULL, "no progress lines on stderr", 0, 0},
        {"max-seconds", BENCH_OPT_DOUBLE, &c->max_seconds, "T",
         c->max_seconds_help ? c->max_seconds_help
                             : "watchdog: abort the whole run after T seconds",
         1, 86400},
        {"help", BENCH_OPT_FLAG, &c->help, NULL, "this help", 0, 0},
    };
    memcpy(out, opts, sizeof(opts));
}

/* Parses a u64 with an optional k/M/G suffix (powers of 1000), so
 * `--connectors 10M` reads naturally. */
static bool bench_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s)
        return false;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1000u;
    else if (*end == 'M')
        mul = 1000000u;
    else if (*end == 'G')
        mul = 1000000000u;
    if (mul != 1)
        end++;
    if (*end != '\0' || (v != 0 && UINT64_MAX / v < mul))
        return false;
    *out = (uint64_t)v * mul;
    return true;
}

static bool bench_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static const bench_opt *bench_opt_find(const bench_opt *a, size_t na, const bench_opt *b, size_t nb,
                                       const char *name, size_t len)
{
    for (size_t i = 0; i < na + nb; i++) {
        const bench_opt *o = i < na ? &a[i] : &b[i - na];
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

bool bench_opts_parse(bench_common *c, const bench_opt *opts, size_t n, int argc, char **argv)
{
    bench_opt common[BENCH_COMMON_OPTS];
    bench_common_opts(c, common);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "connrep-bench %s: unexpected argument '%s'\n", argv[0], a);
            return false;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const bench_opt *o = bench_opt_find(common, BENCH_COMMON_OPTS, opts, n, name, len);
        if (o == NULL) {
            fprintf(stderr, "connrep-bench %s: unknown option '%s' (try --help)\n", argv[0], a);
            return false;
        }
        if (o->kind == BENCH_OPT_FLAG) {
            if (eq != NULL) {
                fprintf(stderr, "connrep-bench %s: --%s takes no value\n", argv[0], o->name);
                return false;
            }
            *(bool *)o->value = true;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "connrep-bench %s: --%s needs a value\n", argv[0], o->name);
                return false;
            }
            val = argv[++i];
        }
        if (o->kind == BENCH_OPT_STR) {
            if (*val == '\0') {
                fprintf(stderr, "connrep-bench %s: --%s needs a non-empty value\n", argv[0],
                        o->name);
                return false;
            }
            *(const char **)o->value = val;
            continue;
        }
        bool ok;
        double as_double;
        if (o->kind == BENCH_OPT_U64) {
            uint64_t v = 0;
            ok = bench_parse_u64(val, &v);
            as_double = (double)v;
            if (ok)
                *(uint64_t *)o->value = v;
        } else {
            double v = 0;
            ok = bench_parse_double(val, &v);
            as_double = v;
            if (ok)
                *(double *)o->value = v;
        }
        if (!ok || as_double < o->min || as_double > o->max) {
            fprintf(stderr, "connrep-bench %s: bad value '%s' for --%s (allowed %g..%g)\n", argv[0],
                    val, o->name, o->min, o->max);
            return false;
        }
    }
    return true;
}

static void bench_opt_usage_line(FILE *f, const bench_opt *o)
{
    char left[64];
    if (o->arg != NULL)
        snprintf(left, sizeof(left), "--%s %s", o->name, o->arg);
    else
        snprintf(left, sizeof(left), "--%s", o->name);
    fprintf(f, "  %-22s %s", left, o->help);
    /* A help text that states its own default. */
    bool says_default = strstr(o->help, "(default") != NULL;
    switch (says_default ? BENCH_OPT_FLAG : o->kind) {
    case BENCH_OPT_U64:
        fprintf(f, " (default %" PRIu64 ")", *(const uint64_t *)o->value);
        break;
    case BENCH_OPT_DOUBLE:
        fprintf(f, " (default %g)", *(const double *)o->value);
        break;
    case BENCH_OPT_STR: {
        const char *v = *(const char *const *)o->value;
        if (v != NULL)
            fprintf(f, " (default %s)", v);
        break;
    }
    case BENCH_OPT_FLAG:
        break;
    }
    fputc('\n', f);
}

void bench_opts_usage(FILE *f, const char *scenario, const char *description, bench_common *c,
                      const bench_opt *opts, size_t n)
{
    bench_opt common[BENCH_COMMON_OPTS];
    bench_common_opts(c, common);
    fprintf(f, "usage: connrep-bench %s [options]\n\n%s\n\noptions:\n", scenario, description);
    for (size_t i = 0; i < n; i++)
        bench_opt_usage_line(f, &opts[i]);
    for (size_t i = 0; i < BENCH_COMMON_OPTS; i++)
        bench_opt_usage_line(f, &common[i]);
}

/* ---- Watchdog and progress ---------------------------------------------- */

/* The registered cleanup; read by signal handlers, so a plain pointer
 * written before the handlers can run with it (registration happens on the
 * main thread, between phases). */
static void (*volatile bench_abort_fn)(int sig);

static void bench_watchdog_fire(int sig)
{
    (void)sig;
    /* Only async-signal-safe calls here: write, the cleanup, _exit. */
    static const char msg[] = "connrep-bench: watchdog expired (--max-seconds), aborting\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
    void (*fn)(int) = bench_abort_fn;
    if (fn != NULL)
        fn(SIGALRM);
    _exit(BENCH_EXIT_WATCHDOG);
}

static void bench_interrupted(int sig)
{
    static const char msg[] = "connrep-bench: interrupted, cleaning up\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
    void (*fn)(int) = bench_abort_fn;
    if (fn != NULL)
        fn(sig);
    _exit(128 + sig);
}

void bench_on_abort(void (*fn)(int sig))
{
    static bool installed;
    bench_abort_fn = fn;
    if (fn == NULL || installed)
        return;
    installed = true;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = bench_interrupted;
    /* No second signal while the cleanup runs: it would start it again. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaddset(&sa.sa_mask, SIGALRM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void bench_watchdog_arm(double seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = bench_watchdog_fire;
    /* Ctrl-C during the watchdog's cleanup must not start a second one. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it;
    memset(&it, 0, sizeof(it));
    it.it_value.tv_sec = (time_t)seconds;
    it.it_value.tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6);
    setitimer(ITIMER_REAL, &it, NULL);
}

static bool bench_quiet;
static uint64_t bench_start_ns;

void bench_progress_quiet(bool quiet)
{
    bench_quiet = quiet;
}

void bench_progress(const char *fmt, ...)
{
    if (bench_start_ns == 0)
        bench_start_ns = bench_now_ns();
    if (bench_quiet)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%7.2fs] %s\n", (double)(bench_now_ns() - bench_start_ns) / 1e9, line);
}

/* ---- Clocks -------------------------------------------------------------- */

double bench_clock_overhead_ns(void)
{
    /* The histogram is 30 KiB: too big for the stack of a helper that a
     * scenario may call from deep inside its own frames. */
    bench_hist *h = malloc(sizeof(*h));
    if (h == NULL)
        return 0.0;
    bench_hist_init(h);
    for (int i = 0; i < 200000; i++) {
        uint64_t t0 = bench_now_ns();
        uint64_t t1 = bench_now_ns();
        bench_hist_record(h, (t1 - t0) * 1000u);
    }
    double ns = bench_hist_quantile(h, 0.5) / 1000.0;
    free(h);
    return ns;
}

/* ---- Small statistics ------------------------------------------------------ */

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* ---- Ids ----------------------------------------------------------------- */

void bench_guid(uint64_t seed, uint64_t i, char out[BENCH_GUID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = bench_mix64(seed ^ bench_mix64(i));
    uint64_t b = bench_mix64(a ^ i);
    unsigned char raw[16];
    for (int k = 0; k < 8; k++) {
        raw[k] = (unsigned char)(a >> (8 * k));
        raw[8 + k] = (unsigned char)(b >> (8 * k));
    }
    raw[6] = (unsigned char)((raw[6] & 0x0fu) | 0x40u); /* version 4 */
    raw[8] = (unsigned char)((raw[8] & 0x3fu) | 0x80u); /* RFC 4122 variant */
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        if (k == 4 || k == 6 || k == 8 || k == 10)
            out[o++] = '-';
        out[o++] = hex[raw[k] >> 4];
        out[o++] = hex[raw[k] & 0x0fu];
    }
}

size_t bench_tenant_name(uint64_t t, char *buf, size_t len)
{
    int n = snprintf(buf, len, "tenant-%03" PRIu64 ".onmicrosoft.com", t);
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : len - 1;
}

uint64_t bench_tenant_of(uint64_t seed, uint64_t i, uint64_t tenants)
{
    return bench_below(bench_mix64(seed ^ (i * 0x2545f4914f6cdd1du)), tenants);
}

/* ---- Memory -------------------------------------------------------------- */

#define BENCH_HUGE (2u << 20)

void *bench_map(size_t bytes, bool hugepages)
{
    size_t len = (bytes + BENCH_HUGE - 1) & ~(size_t)(BENCH_HUGE - 1);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Advice, not a requirement: with THP off the buffer simply stays on
     * 4 KiB pages and the JSON reports how much became huge. */
    (void)madvise(p, len, hugepages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return p;
}

void bench_unmap(void *p, size_t bytes)
{
    if (p == NULL)
        return;
    size_t len = (bytes + BENCH_HUGE - 1) & ~(size_t)(BENCH_HUGE - 1);
    munmap(p, len);
}

bool bench_smaps(const void *addr, uint64_t *rss, uint64_t *anon_huge)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (f == NULL)
        return false;
    char line[512];
    bool inside = false;
    bool found = false;
    uintptr_t a = (uintptr_t)addr;
    *rss = 0;
    *anon_huge = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        unsigned long long kb;
        /* A mapping header starts with "lo-hi "; its fields follow. */
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (inside)
                break;
            inside = a >= lo && a < hi;
            found |= inside;
            continue;
        }
        if (!inside)
            continue;
        if (sscanf(line, "Rss: %llu kB", &kb) == 1)
            *rss = kb * 1024u;
        else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
            *anon_huge = kb * 1024u;
        else if (sscanf(line, "ShmemPmdMapped: %llu kB", &kb) == 1)
            *anon_huge += kb * 1024u;
    }
    fclose(f);
    return found;
}

/* ---- Machine facts ------------------------------------------------------- */

/* Reads the first line of a small sysfs/procfs file, without the newline. */
static bool bench_read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

static uint64_t bench_l3_bytes(void)
{
    char path[96], buf[64];
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!bench_read_line(path, buf, sizeof(buf)))
            break;
        if (strcmp(buf, "3") != 0)
            continue;
        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!bench_read_line(path, buf, sizeof(buf)))
            break;
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (*end == 'K')
            v *= 1024u;
        else if (*end == 'M')
            v *= 1024u * 1024u;
        return v;
    }
    return 0;
}

static void bench_damon(char *out, size_t len)
{
    static const char dir[] = "/sys/kernel/mm/damon/admin/kdamonds";
    char path[160], n[16], state[16], ops[16], action[32];
    snprintf(out, len, "unknown");
    snprintf(path, sizeof(path), "%s/nr_kdamonds", dir);
    if (!bench_read_line(path, n, sizeof(n)))
        return;
    if (strcmp(n, "0") == 0) {
        snprintf(out, len, "off");
        return;
    }
    snprintf(path, sizeof(path), "%s/0/state", dir);
    if (!bench_read_line(path, state, sizeof(state)))
        snprintf(state, sizeof(state), "?");
    snprintf(path, sizeof(path), "%s/0/contexts/0/operations", dir);
    if (!bench_read_line(path, ops, sizeof(ops)))
        snprintf(ops, sizeof(ops), "?");
    snprintf(path, sizeof(path), "%s/0/contexts/0/schemes/0/action", dir);
    if (!bench_read_line(path, action, sizeof(action)))
        snprintf(action, sizeof(action), "none");
    snprintf(out, len, "%s %s %s", state, ops, action);
}

void bench_machine_get(bench_machine *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->cpu_model, sizeof(m->cpu_model), "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) != 0)
                continue;
            const char *colon = strchr(line, ':');
            if (colon == NULL)
                continue;
            colon++;
            while (*colon == ' ' || *colon == '\t')
                colon++;
            snprintf(m->cpu_model, sizeof(m->cpu_model), "%s", colon);
            m->cpu_model[strcspn(m->cpu_model, "\n")] = '\0';
            break;
        }
        fclose(f);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (unsigned)n : 0;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof(m->kernel), "%s", u.release);
    m->l3_bytes = bench_l3_bytes();
    if (!bench_read_line("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                         m->clocksource, sizeof(m->clocksource)))
        snprintf(m->clocksource, sizeof(m->clocksource), "unknown");
    bench_damon(m->damon, sizeof(m->damon));
    /* The file reads like "always [madvise] never": keep the bracketed mode. */
    char thp[128];
    snprintf(m->thp, sizeof(m->thp), "unknown");
    if (bench_read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp))) {
        char *lb = strchr(thp, '[');
        char *rb = lb ? strchr(lb, ']') : NULL;
        if (lb != NULL && rb != NULL) {
            *rb = '\0';
            snprintf(m->thp, sizeof(m->thp), "%s", lb + 1);
        }
    }
}

/* ---- JSON ---------------------------------------------------------------- */

void bench_json_begin(bench_json *j, FILE *f)
{
    j->f = f;
    j->first = true;
    fputc('{', f);
}

void bench_json_end(bench_json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

static void bench_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void bench_json_key(bench_json *j, const char *key)
{
    if (!j->first)
        fputc(',', j->f);
    j->first = false;
    bench_json_string(j->f, key);
    fputc(':', j->f);
}

void bench_json_str(bench_json *j, const char *key, const char *value)
{
    bench_json_key(j, key);
    bench_json_string(j->f, value);
}

void bench_json_u64(bench_json *j, const char *key, uint64_t value)
{
    bench_json_key(j, key);
    fprintf(j->f, "%" PRIu64, value);
}

void bench_json_bool(bench_json *j, const char *key, bool value)
{
    bench_json_key(j, key);
    fputs(value ? "true" : "false", j->f);
}

void bench_json_num(bench_json *j, const char *key, double value, int decimals)
{
    bench_json_key(j, key);
    if (!isfinite(value))
        fputs("null", j->f);
    else
        fprintf(j->f, "%.*f", decimals, value);
}

void bench_json_nums(bench_json *j, const char *key, const double *v, size_t n, int decimals)
{
    bench_json_key(j, key);
    fputc('[', j->f);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fputc(',', j->f);
        if (!isfinite(v[i]))
            fputs("null", j->f);
        else
            fprintf(j->f, "%.*f", decimals, v[i]);
    }
    fputc(']', j->f);
}

void bench_json_object_begin(bench_json *j, const char *key)
{
    bench_json_key(j, key);
    fputc('{', j->f);
    j->first = true;
}

void bench_json_object_end(bench_json *j)
{
    fputc('}', j->f);
    /* The object just closed was a member of the enclosing one. */
    j->first = false;
}

void bench_json_machine(bench_json *j, const bench_machine *m)
{
    bench_json_str(j, "cpu_model", m->cpu_model);
    bench_json_u64(j, "cores", m->cores);
    bench_json_str(j, "kernel", m->kernel);
    bench_json_u64(j, "l3_bytes", m->l3_bytes);
    bench_json_str(j, "clocksource", m->clocksource);
    bench_json_str(j, "thp", m->thp);
    bench_json_str(j, "damon", m->damon);
}
