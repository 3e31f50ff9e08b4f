/* connrep: the admin command line (PROTOCOL.md sections 5 and 8,
 * docs/admin.md).
 *
 *   connrep [--config FILE] [--key FILE] [--server-key FILE|Z85]
 *           [--endpoint EP] [--json] [--timeout MS] VERB [args]
 *
 * Each verb is one JSON request over a CURVE-authenticated DEALER socket.
 * The client's key pair is FILE (secret) and FILE.pub (public), as written
 * by `connrep keygen --out FILE`; the endpoint and the server's public key
 * default from the engine's config ([admin] bind, secret_key_file + .pub).
 *
 * Exit status: 0 ok, 1 the engine answered with an error, 2 usage (or a bad
 * local file), 3 transport (no answer in time: engine down, or this key is
 * not authorised, which a refused CURVE handshake cannot tell apart).
 */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "crp/admin.h"
#include "crp/config.h"

enum { EXIT_OK = 0, EXIT_REPLY = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

#define DEFAULT_TIMEOUT_MS 5000

/* ------------------------------------------------------------------------ */
/* Verbs and their flags */

typedef enum flag_type {
    F_STR,   /* any text */
    F_ONOFF, /* on|off (also true/false, yes/no, 1/0) -> JSON boolean */
    F_INT,   /* decimal integer -> JSON integer */
} flag_type;

typedef struct flag_def {
    const char *flag; /* "--connector-id" */
    const char *key;  /* "connector_id" */
    flag_type type;
    bool required;
    const char *metavar;
    const char *help;
} flag_def;

typedef void (*printer_fn)(const json_t *result);

typedef struct verb_def {
    const char *name;
    const char *summary;
    const char *who;
    flag_def flags[7];
    printer_fn print;
} verb_def;

static void print_list_or_detail(const json_t *r);
static void print_detail(const json_t *r);
static void print_change(const json_t *r);
static void print_policy(const json_t *r);
static void print_audit(const json_t *r);
static void print_flat(const json_t *r);

static const verb_def verbs[] = {
    {"get-blocked-connector",
     "List the restricted connectors, or show one in detail.",
     "read roles",
     {{"--connector-id", "connector_id", F_STR, false, "ID", "show this connector in detail"}},
     print_list_or_detail},
    {"remove-blocked-connector",
     "Unblock a restricted connector (it enters probation).",
     "OrganizationManagement, SecurityAdministrator",
     {{"--connector-id", "connector_id", F_STR, true, "ID", "the connector to unblock"},
      {"--reason", "reason", F_STR, false, "TEXT", "why (kept in the audit log and the event)"}},
     print_change},
    {"block-connector",
     "Restrict a connector by hand.",
     "OrganizationManagement, SecurityAdministrator",
     {{"--connector-id", "connector_id", F_STR, true, "ID", "the connector to block"},
      {"--reason", "reason", F_STR, true, "TEXT", "why (kept in the audit log and the event)"},
      {"--tenant", "tenant", F_STR, false, "T",
       "tenant of a connector the engine has never seen (identities with tenant = * only)"}},
     print_change},
    {"get-connector",
     "Show one connector in any state: rules, values, thresholds, signals.",
     "read roles",
     {{"--connector-id", "connector_id", F_STR, true, "ID", "the connector"}},
     print_detail},
    {"get-alert-policy",
     "Show the alert policy \"Suspicious connector activity\".",
     "read roles",
     {{0}},
     print_policy},
    {"set-alert-policy",
     "Change the alert policy \"Suspicious connector activity\".",
     "OrganizationManagement, SecurityAdministrator with tenant = *",
     {{"--enabled", "enabled", F_ONOFF, false, "on|off", "raise alerts at all"},
      {"--email", "email", F_ONOFF, false, "on|off", "send e-mail notifications"},
      {"--recipients", "recipients", F_STR, false, "LIST",
       "TenantAdmins, or comma-separated addresses"},
      {"--daily-limit", "daily_limit", F_INT, false, "1..3",
       "notifications per connector per UTC day"}},
     print_policy},
    {"search-audit-log",
     "Search the audit log, newest first.",
     "read roles",
     {{"--connector-id", "connector_id", F_STR, false, "ID", "lines about this connector"},
      {"--actor", "actor", F_STR, false, "NAME", "lines by this identity (or engine)"},
      {"--action", "action", F_STR, false, "A",
       "this verb or transition (e.g. remove-blocked-connector, state.*)"},
      {"--since", "since", F_STR, false, "T", "RFC 3339 time, or a duration back from now (24h)"},
      {"--until", "until", F_STR, false, "T", "RFC 3339 time, or a duration back from now"},
      {"--limit", "limit", F_INT, false, "N", "at most N lines (default 100, max 10000)"}},
     print_audit},
    {"get-stats", "Show the engine's statistics.", "read roles", {{0}}, print_flat},
    {"whoami",
     "Show the identity, role and tenant scope of this key.",
     "any identity",
     {{0}},
     print_flat},
};

#define N_VERBS (sizeof(verbs) / sizeof(verbs[0]))

static const char *prog = "connrep";

static void usage_main(FILE *f)
{
    fprintf(f,
            "usage: connrep [OPTIONS] VERB [ARGS]\n"
            "       connrep keygen --out FILE\n"
            "       connrep VERB --help\n"
            "\n"
            "Administer the connrep engine: restricted connectors, alert policy, audit log.\n"
            "\n"
            "Options:\n"
            "  --config FILE        engine config for the defaults below (default:\n"
            "                       $CONNREP_CONFIG, else the built-in defaults)\n"
            "  --key FILE           this client's key: FILE secret, FILE.pub public\n"
            "                       (default: $CONNREP_KEY)\n"
            "  --server-key FILE|Z85  the engine's public key (default: the config's\n"
            "                       [admin] secret_key_file + .pub)\n"
            "  --endpoint EP        admin endpoint (default: the first [admin] bind)\n"
            "  --json               print the raw JSON result\n"
            "  --timeout MS         give up after MS milliseconds (default %d)\n"
            "  -h, --help           this help\n"
            "\n"
            "Verbs:\n",
            DEFAULT_TIMEOUT_MS);
    for (size_t i = 0; i < N_VERBS; i++)
        fprintf(f, "  %-26s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "  %-26s %s\n", "keygen", "Make a key pair (FILE secret, FILE.pub public).");
    fprintf(f, "\nExit status: 0 ok, 1 error reply, 2 usage, 3 no answer (transport).\n");
}

static void usage_verb(FILE *f, const verb_def *v)
{
    fprintf(f, "usage: connrep [OPTIONS] %s", v->name);
    for (size_t i = 0; v->flags[i].flag != NULL; i++)
        fprintf(f, v->flags[i].required ? " %s %s" : " [%s %s]", v->flags[i].flag,
                v->flags[i].metavar);
    fprintf(f, "\n\n%s\nAllowed to: %s.\n", v->summary, v->who);
    if (v->flags[0].flag != NULL)
        fprintf(f, "\n");
    for (size_t i = 0; v->flags[i].flag != NULL; i++) {
        char left[64];
        snprintf(left, sizeof(left), "%s %s", v->flags[i].flag, v->flags[i].metavar);
        fprintf(f, "  %-22s %s%s\n", left, v->flags[i].help,
                v->flags[i].required ? " (required)" : "");
    }
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(try 'connrep --help')\n");
    return EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Output */

/* Formats any JSON scalar for a table cell. */
static void cell_text(const json_t *v, char *out, size_t size)
{
    if (v == NULL || json_is_null(v)) {
        snprintf(out, size, "-");
    } else if (json_is_string(v)) {
        snprintf(out, size, "%s", json_string_length(v) > 0 ? json_string_value(v) : "-");
    } else if (json_is_integer(v)) {
        snprintf(out, size, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        /* Thresholds such as 10000 read better whole than as 1e+04. */
        if (d > -1e15 && d < 1e15 && (double)(long long)d == d)
            snprintf(out, size, "%lld", (long long)d);
        else
            snprintf(out, size, "%.4g", d);
    } else if (json_is_boolean(v)) {
        snprintf(out, size, "%s", json_is_true(v) ? "yes" : "no");
    } else if (json_is_array(v)) {
        size_t i, used = 0;
        json_t *e;
        out[0] = '\0';
        json_array_foreach(v, i, e)
        {
            char one[256];
            cell_text(e, one, sizeof(one));
            used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s%s",
                                     i ? "," : "", one);
            if (used >= size)
                break;
        }
        if (json_array_size(v) == 0)
            snprintf(out, size, "-");
    } else {
        char *s = json_dumps(v, JSON_COMPACT);
        snprintf(out, size, "%s", s ? s : "?");
        free(s);
    }
}

#define TABLE_MAX_COLS 10
#define CELL_MAX       300

typedef struct table {
    const char *head[TABLE_MAX_COLS];
    size_t ncols, nrows;
    char (*cells)[TABLE_MAX_COLS][CELL_MAX];
} table;

static void table_row(const char *const *cells, const size_t *w, size_t ncols)
{
    for (size_t c = 0; c + 1 < ncols; c++)
        printf("%-*s  ", (int)w[c], cells[c]);
    printf("%s\n", cells[ncols - 1]);
}

static void table_print(const table *t)
{
    size_t w[TABLE_MAX_COLS];

    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->head[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t l = strlen(t->cells[r][c]);
            if (l > w[c])
                w[c] = l;
        }
    }
    table_row(t->head, w, t->ncols);
    for (size_t r = 0; r < t->nrows; r++) {
        const char *row[TABLE_MAX_COLS];
        for (size_t c = 0; c < t->ncols; c++)
            row[c] = t->cells[r][c];
        table_row(row, w, t->ncols);
    }
}

static const json_t *get(const json_t *o, const char *k)
{
    return json_object_get(o, k);
}

static void print_list(const json_t *list)
{
    static const char *const figs[] = {"messages", "spam_ratio", "phish_ratio", "recipients_hour"};
    table t = {.head = {"ConnectorId", "Tenant", "State", "Reasons", "BlockedSince", "Messages",
                        "SpamRatio", "PhishRatio", "RcptHour"},
               .ncols = 9};
    size_t i;
    json_t *e;

    if (json_array_size(list) == 0) {
        printf("No restricted connectors.\n");
        return;
    }
    t.cells = calloc(json_array_size(list), sizeof(*t.cells));
    if (t.cells == NULL)
        return;
    json_array_foreach(list, i, e)
    {
        cell_text(get(e, "connector_id"), t.cells[i][0], CELL_MAX);
        cell_text(get(e, "tenant"), t.cells[i][1], CELL_MAX);
        cell_text(get(e, "state"), t.cells[i][2], CELL_MAX);
        cell_text(get(e, "reasons"), t.cells[i][3], CELL_MAX);
        cell_text(get(e, "since"), t.cells[i][4], CELL_MAX);
        for (size_t f = 0; f < 4; f++)
            cell_text(get(get(e, "figures"), figs[f]), t.cells[i][5 + f], CELL_MAX);
    }
    t.nrows = json_array_size(list);
    table_print(&t);
    printf("\n%zu restricted connector%s.\n", t.nrows, t.nrows == 1 ? "" : "s");
    free(t.cells);
}

/* Width of the key column of key/value output. */
static int kv_width = 16;

static void kv(const char *k, const json_t *v)
{
    char buf[1024];

    cell_text(v, buf, sizeof(buf));
    printf("%-*s  %s\n", kv_width, k, buf);
}

static void print_detail(const json_t *r)
{
    static const char *const head[][2] = {
        {"ConnectorId", "connector_id"}, {"Tenant", "tenant"}, {"State", "state"},
        {"Reasons", "reasons"},          {"Since", "since"},   {"LastEvent", "last_event"},
        {"EvaluatedAt", "evaluated_at"}};
    const json_t *rules = get(r, "rules"), *sig = get(r, "signals");

    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++) {
        if (get(r, head[i][1]) != NULL)
            kv(head[i][0], get(r, head[i][1]));
    }
    if (json_array_size(rules) > 0) {
        table t = {.head = {"Rule", "Threshold", "Now", "Tripped", "AtBlock", "ThresholdAtBlock",
                            "TrippedAtBlock"},
                   .ncols = 7};
        size_t i;
        json_t *e;
        t.cells = calloc(json_array_size(rules), sizeof(*t.cells));
        if (t.cells != NULL) {
            json_array_foreach(rules, i, e)
            {
                cell_text(get(e, "rule"), t.cells[i][0], CELL_MAX);
                cell_text(get(e, "threshold"), t.cells[i][1], CELL_MAX);
                cell_text(get(e, "value"), t.cells[i][2], CELL_MAX);
                cell_text(get(e, "tripped"), t.cells[i][3], CELL_MAX);
                cell_text(get(e, "value_at_block"), t.cells[i][4], CELL_MAX);
                cell_text(get(e, "threshold_at_block"), t.cells[i][5], CELL_MAX);
                cell_text(get(e, "tripped_at_block"), t.cells[i][6], CELL_MAX);
            }
            t.nrows = json_array_size(rules);
            printf("\n");
            table_print(&t);
            free(t.cells);
        }
    }
    if (json_is_object(sig)) {
        const char *k;
        json_t *v;
        printf("\nRecent signals (decayed counts):\n");
        json_object_foreach((json_t *)sig, k, v)
        {
            char buf[64];
            cell_text(v, buf, sizeof(buf));
            printf("  %-16s %s\n", k, buf);
        }
    }
    if (json_is_string(get(r, "advice")))
        printf("\n%s\n", json_string_value(get(r, "advice")));
    if (json_is_string(get(r, "unblock_command")))
        printf("Then unblock it with:\n  %s\n", json_string_value(get(r, "unblock_command")));
}

static void print_list_or_detail(const json_t *r)
{
    if (json_is_array(r))
        print_list(r);
    else
        print_detail(r);
}

/* Prints an object as "key  value" lines, nested objects as "a.b". */
static void print_flat_prefix(const char *prefix, const json_t *o)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)o, k, v)
    {
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", k);
        if (json_is_object(v))
            print_flat_prefix(name, v);
        else
            kv(name, v);
    }
}

/* The longest "a.b.c" key print_flat_prefix will print. */
static int flat_width(const char *prefix, const json_t *o)
{
    const char *k;
    json_t *v;
    int w = 0;

    json_object_foreach((json_t *)o, k, v)
    {
        char name[256];
        int n = snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", k);
        if (json_is_object(v))
            n = flat_width(name, v);
        if (n > w)
            w = n;
    }
    return w;
}

static void print_flat(const json_t *r)
{
    if (json_is_object(r)) {
        kv_width = flat_width("", r);
        print_flat_prefix("", r);
    } else {
        kv("result", r);
    }
}

static void print_change(const json_t *r)
{
    const char *id = json_string_value(get(r, "connector_id"));
    const char *state = json_string_value(get(r, "state"));

    if (id != NULL && state != NULL)
        printf("Connector %s is now %s.\n\n", id, state);
    print_flat(r);
}

static void print_policy(const json_t *r)
{
    static const char *const rows[][2] = {{"Name", "name"},
                                          {"Enabled", "enabled"},
                                          {"Email", "email"},
                                          {"Recipients", "recipients"},
                                          {"DailyLimit", "daily_limit"}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        kv(rows[i][0], get(r, rows[i][1]));
}

static void print_audit(const json_t *r)
{
    const json_t *entries = get(r, "entries");
    table t = {.head = {"Time", "Actor", "Role", "Tenant", "Verb", "Target", "Result", "Message"},
               .ncols = 8};
    size_t i;
    json_t *e;

    if (json_array_size(entries) == 0) {
        printf("No matching audit entries.\n");
        return;
    }
    t.cells = calloc(json_array_size(entries), sizeof(*t.cells));
    if (t.cells == NULL)
        return;
    json_array_foreach(entries, i, e)
    {
        static const char *const keys[] = {"time", "actor",  "role",  "tenant",
                                           "verb", "target", "result"};
        for (size_t c = 0; c < 7; c++)
            cell_text(get(e, keys[c]), t.cells[i][c], CELL_MAX);
        cell_text(get(e, "message") ? get(e, "message") : get(e, "reason"), t.cells[i][7],
                  CELL_MAX);
    }
    t.nrows = json_array_size(entries);
    table_print(&t);
    if (json_is_true(get(r, "more")))
        printf("\n(older entries left out: raise --limit or narrow the search)\n");
    free(t.cells);
}

/* ------------------------------------------------------------------------ */
/* Transport */

/* Sends one request and waits for its reply. Returns EXIT_OK with *reply
 * (malloc'd, NUL-terminated) or EXIT_TRANSPORT after printing why. */
static int exchange(const char *endpoint, const char *server_key, const char *sec, const char *pub,
                    int timeout_ms, const char *body, char **reply)
{
    char why[512];
    if (crp_admin_request(endpoint, server_key, sec, pub, timeout_ms, body, reply, why,
                          sizeof why) != CRP_OK) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return EXIT_TRANSPORT;
    }
    return EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* Main */

static crp_config cfg; /* about 20 KiB: static, not on the stack */

/* The endpoint a client should use for a bind endpoint: the first of the
 * list, with a wildcard address replaced by the loopback. */
static void endpoint_from_bind(const char *bind, char *out, size_t size)
{
    size_t len = strcspn(bind, ",");

    snprintf(out, size, "%.*s", (int)len, bind);
    if (strncmp(out, "tcp://*:", 8) == 0)
        snprintf(out, size, "tcp://127.0.0.1:%.*s", (int)(len - 8), bind + 8);
    else if (strncmp(out, "tcp://0.0.0.0:", 14) == 0)
        snprintf(out, size, "tcp://127.0.0.1:%.*s", (int)(len - 14), bind + 14);
    else if (strncmp(out, "tcp://[::]:", 11) == 0)
        snprintf(out, size, "tcp://[::1]:%.*s", (int)(len - 11), bind + 11);
}

static bool parse_onoff(const char *s, bool *out)
{
    static const char *const on[] = {"on", "true", "yes", "1"};
    static const char *const off[] = {"off", "false", "no", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, on[i]) == 0)
            return *out = true, true;
        if (strcmp(s, off[i]) == 0)
            return *out = false, true;
    }
    return false;
}

static bool parse_int(const char *s, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    return *s != '\0' && *end == '\0' && errno == 0;
}

/* Splits "--name=value" or "--name value". Returns the value or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        return "";
    return argv[++*i];
}

static int do_keygen(int argc, char **argv, int i)
{
    const char *out = NULL;
    char pub[CRP_Z85_KEY_SIZE], err[512];

    for (; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: connrep keygen --out FILE\n\n"
                   "Makes a CURVE key pair: FILE gets the secret key (mode 0600, never\n"
                   "overwritten), FILE.pub the public key, which is printed. Put the public key\n"
                   "in an [identity NAME] section of the engine's config.\n");
            return EXIT_OK;
        }
        if ((v = opt_value(argc, argv, &i, "--out")) != NULL)
            out = v;
        else
            return usage_error("keygen: unknown argument '%s'", argv[i]);
    }
    if (out == NULL || *out == '\0')
        return usage_error("keygen: --out FILE is required");
    if (crp_admin_key_create(out, NULL, pub, err, sizeof(err)) != CRP_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return EXIT_USAGE;
    }
    printf("%s\n", pub);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    const char *config = getenv("CONNREP_CONFIG"), *key = getenv("CONNREP_KEY");
    const char *server_key = NULL, *endpoint = NULL;
    bool json_out = false;
    long long timeout = DEFAULT_TIMEOUT_MS;
    const verb_def *verb = NULL;
    char err[1024], ep[CRP_CONFIG_LIST_MAX], skey_path[CRP_CONFIG_PATH_MAX + 8];
    char sec[CRP_Z85_KEY_SIZE], pub[CRP_Z85_KEY_SIZE], srv[CRP_Z85_KEY_SIZE];
    json_t *req, *rep, *result;
    char *body, *reply;
    int i, rc;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_main(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json_out = true;
        } else if ((v = opt_value(argc, argv, &i, "--config")) != NULL) {
            config = v;
        } else if ((v = opt_value(argc, argv, &i, "--key")) != NULL) {
            key = v;
        } else if ((v = opt_value(argc, argv, &i, "--server-key")) != NULL) {
            server_key = v;
        } else if ((v = opt_value(argc, argv, &i, "--endpoint")) != NULL) {
            endpoint = v;
        } else if ((v = opt_value(argc, argv, &i, "--timeout")) != NULL) {
            if (!parse_int(v, &timeout) || timeout < 1 || timeout > 3600000)
                return usage_error("--timeout: expected milliseconds 1..3600000, got '%s'", v);
        } else {
            return usage_error("unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "keygen") == 0)
        return do_keygen(argc, argv, i + 1);
    for (size_t k = 0; k < N_VERBS; k++) {
        if (strcmp(verbs[k].name, argv[i]) == 0)
            verb = &verbs[k];
    }
    if (verb == NULL)
        return usage_error("unknown verb '%s'", argv[i]);

    req = json_pack("{s:s}", "verb", verb->name);
    for (i++; i < argc; i++) {
        const flag_def *f = NULL;
        const char *v = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_verb(stdout, verb);
            json_decref(req);
            return EXIT_OK;
        }
        for (size_t k = 0; verb->flags[k].flag != NULL && f == NULL; k++) {
            int j = i;
            v = opt_value(argc, argv, &j, verb->flags[k].flag);
            if (v != NULL) {
                f = &verb->flags[k];
                i = j;
            }
        }
        if (f == NULL) {
            json_decref(req);
            return usage_error("%s: unknown argument '%s'", verb->name, argv[i]);
        }
        if (f->type == F_STR) {
            json_object_set_new(req, f->key, json_string(v));
            if (json_object_get(req, f->key) == NULL) {
                json_decref(req);
                return usage_error("%s: %s: not valid UTF-8", verb->name, f->flag);
            }
        } else if (f->type == F_ONOFF) {
            bool b;
            if (!parse_onoff(v, &b)) {
                json_decref(req);
                return usage_error("%s: %s: expected on or off, got '%s'", verb->name, f->flag, v);
            }
            json_object_set_new(req, f->key, json_boolean(b));
        } else {
            long long n;
            if (!parse_int(v, &n)) {
                json_decref(req);
                return usage_error("%s: %s: expected an integer, got '%s'", verb->name, f->flag, v);
            }
            json_object_set_new(req, f->key, json_integer(n));
        }
    }
    for (size_t k = 0; verb->flags[k].flag != NULL; k++) {
        if (verb->flags[k].required && json_object_get(req, verb->flags[k].key) == NULL) {
            json_decref(req);
            return usage_error("%s: %s %s is required", verb->name, verb->flags[k].flag,
                               verb->flags[k].metavar);
        }
    }

    if (crp_config_load(&cfg, config, err, sizeof(err)) != CRP_OK) {
        json_decref(req);
        fprintf(stderr, "%s: %s\n", prog, err);
        return EXIT_USAGE;
    }
    if (key == NULL || *key == '\0') {
        json_decref(req);
        return usage_error("no client key: pass --key FILE or set CONNREP_KEY (make one with "
                           "'connrep keygen --out FILE')");
    }
    if (crp_admin_key_read(key, sec, pub, err, sizeof(err)) != CRP_OK) {
        json_decref(req);
        fprintf(stderr, "%s: %s\n", prog, err);
        return EXIT_USAGE;
    }
    if (server_key == NULL) {
        snprintf(skey_path, sizeof(skey_path), "%s.pub", cfg.admin.secret_key_file);
        server_key = skey_path;
    }
    if (crp_admin_public_key_resolve(server_key, srv, err, sizeof(err)) != CRP_OK) {
        json_decref(req);
        fprintf(stderr, "%s: server key: %s\n", prog, err);
        return EXIT_USAGE;
    }
    if (endpoint == NULL) {
        endpoint_from_bind(cfg.admin.bind, ep, sizeof(ep));
        endpoint = ep;
    }
    crp_config_fini(&cfg);

    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return EXIT_USAGE;
    }
    rc = exchange(endpoint, srv, sec, pub, (int)timeout, body, &reply);
    free(body);
    if (rc != EXIT_OK)
        return rc;
    rep = json_loads(reply, 0, NULL);
    if (!json_is_object(rep) || !json_is_boolean(json_object_get(rep, "ok"))) {
        fprintf(stderr, "%s: malformed reply from %s\n", prog, endpoint);
        json_decref(rep);
        free(reply);
        return EXIT_TRANSPORT;
    }
    if (!json_is_true(json_object_get(rep, "ok"))) {
        const json_t *e = json_object_get(rep, "error");
        if (json_out) {
            char *s = json_dumps(e, JSON_INDENT(2));
            printf("%s\n", s ? s : "null");
            free(s);
        }
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        fprintf(stderr, "%s: %s: %s: %s\n", prog, verb->name, code ? code : "?", msg ? msg : "");
        json_decref(rep);
        free(reply);
        return EXIT_REPLY;
    }
    result = json_object_get(rep, "result");
    if (json_out) {
        /* As the engine sent them: nine significant digits. */
        char *s = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
        printf("%s\n", s ? s : "null");
        free(s);
    } else {
        verb->print(result);
    }
    json_decref(rep);
    free(reply);
    return EXIT_OK;
}
