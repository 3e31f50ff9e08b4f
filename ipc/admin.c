/* The admin server (see crp/admin.h): a ZAP handler thread and a server
 * thread, plus the key-file helpers shared with the CLI.
 *
 * Socket ownership: crp_admin_server_start creates and binds every socket
 * on the caller's thread, so that every error (bad key, bind failure,
 * another ZAP handler) is reported synchronously, and then hands each one
 * to the thread that will own it for good. pthread_create is a full memory
 * barrier, which is what ZeroMQ requires to migrate a socket between
 * threads; the starting thread never touches them again.
 *
 * Authorization order for every request (PROTOCOL.md section 5):
 *   1. identity: the "User-Id" property of the message (our ZAP reply);
 *   2. the body: a JSON object with a known string "verb" and only that
 *      verb's arguments, of the right types (else bad_request);
 *   3. the tenant scope of the connector it names, if any (not_found,
 *      with the same message as for an unknown connector, so a scoped
 *      identity cannot even learn that another tenant's connector exists);
 *   4. the role (forbidden);
 *   5. the verb itself; then the audit line; then the reply.
 */
#define _DEFAULT_SOURCE /* O_CLOEXEC, fsync on older libcs */

#include "crp/admin.h"
#include "crp/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "crp/clock.h"

/* A draft constant in libzmq 4.3's header, stable in the library. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* Refused handshakes audited per minute; the rest are only counted, so a
 * flood of unknown keys cannot fill the disk through the audit log. */
#define AUTH_AUDIT_PER_MINUTE 60u

/* Numbers the control endpoints of each server: an address (%p) could be
 * reused by the next server while the old endpoint is still registered. */
static atomic_uint server_seq;

static const char z85_alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

struct crp_admin_server {
    void *zctx;
    void *router;  /* owned by the server thread */
    void *zap;     /* owned by the ZAP thread */
    void *ctl_srv; /* stop signal of the server thread (PAIR, owned by it) */
    void *ctl_zap; /* stop signal of the ZAP thread (PAIR, owned by it) */
    char ctl_srv_ep[64];
    char ctl_zap_ep[64];
    pthread_t th_srv, th_zap;
    bool srv_started, zap_started;

    crp_identity *ids; /* copy of the config's identities */
    size_t n_ids;
    crp_admin_backend be;
    crp_audit *audit;
    crp_alerts *alerts;
    char public_key[CRP_Z85_KEY_SIZE];

    /* ZAP thread only: audit rate limit of refused handshakes. */
    uint64_t auth_minute;
    unsigned auth_audited;

    /* Statistics only: relaxed atomics. */
    _Atomic uint64_t n_requests, n_ok, n_bad_request, n_forbidden, n_not_found, n_conflict,
        n_unavailable, n_internal, n_dropped, n_auth_ok, n_auth_refused;
};

/* ------------------------------------------------------------------------ */
/* Key files */

bool crp_admin_is_z85_key(const char *s)
{
    uint8_t bin[CRP_KEY_BYTES];

    if (s == NULL || strlen(s) != CRP_Z85_KEY_LEN)
        return false;
    for (size_t i = 0; i < CRP_Z85_KEY_LEN; i++) {
        if (strchr(z85_alphabet, s[i]) == NULL)
            return false;
    }
    return zmq_z85_decode(bin, s) != NULL;
}

/* Reads a one-line key file into key[41]. `secret`: also refuse modes that
 * let group or others in. */
static crp_err read_key_text(const char *path, char *key, bool secret, char *errbuf, size_t errlen)
{
    char buf[128];
    struct stat st;
    ssize_t n;
    size_t len;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        crp_errbuf_printf(errbuf, errlen, "%s: cannot open key file: %s", path, strerror(e));
        return e == ENOENT ? CRP_NOTFOUND : CRP_IO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        crp_errbuf_printf(errbuf, errlen, "%s: not a regular file", path);
        close(fd);
        return CRP_BADFILE;
    }
    if (secret && (st.st_mode & 077) != 0) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: secret key file is accessible by group or others (mode %04o); run "
                          "'chmod 600 %s'",
                          path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return CRP_BADFILE;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        crp_errbuf_printf(errbuf, errlen, "%s: cannot read key file: %s", path, strerror(errno));
        return CRP_IO;
    }
    len = (size_t)n;
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if (!crp_admin_is_z85_key(buf)) {
        crp_errbuf_printf(
            errbuf, errlen,
            "%s: not a key file: expected one line of exactly %u Z85 characters (a CURVE "
            "key, as 'connrep keygen' writes), got %zu bytes",
            path, CRP_Z85_KEY_LEN, (size_t)n);
        return CRP_BADFILE;
    }
    memcpy(key, buf, CRP_Z85_KEY_SIZE);
    return CRP_OK;
}

crp_err crp_admin_key_read(const char *path, char *secret, char *public_key, char *errbuf,
                           size_t errlen)
{
    char sec[CRP_Z85_KEY_SIZE], pub[CRP_Z85_KEY_SIZE];
    crp_err err = read_key_text(path, sec, true, errbuf, errlen);

    if (err != CRP_OK)
        return err;
    if (zmq_curve_public(pub, sec) != 0) {
        crp_errbuf_printf(errbuf, errlen,
                          "%s: cannot derive the public key: %s (libzmq without CURVE?)", path,
                          zmq_strerror(errno));
        return CRP_BADFILE;
    }
    if (secret != NULL)
        memcpy(secret, sec, sizeof(sec));
    if (public_key != NULL)
        memcpy(public_key, pub, sizeof(pub));
    return CRP_OK;
}

/* Writes "key\n" to a new file created with `flags` and mode 0600. */
static crp_err write_key_file(const char *path, const char *key, int flags, char *errbuf,
                              size_t errlen)
{
    char line[CRP_Z85_KEY_SIZE + 1];
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | flags, 0600);
    size_t off = 0;

    if (fd < 0) {
        int e = errno;
        crp_errbuf_printf(errbuf, errlen, "%s: cannot create key file: %s", path, strerror(e));
        return e == EEXIST ? CRP_CONFLICT : CRP_IO;
    }
    /* open() applies the umask, which can only remove bits; make it exactly
     * 0600 in case the umask removed the owner's too. */
    if (fchmod(fd, 0600) != 0)
        goto out_fail;
    snprintf(line, sizeof(line), "%s\n", key);
    while (off < CRP_Z85_KEY_LEN + 1) {
        ssize_t w = write(fd, line + off, CRP_Z85_KEY_LEN + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out_fail;
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        goto out_fail;
    close(fd);
    return CRP_OK;
out_fail:
    crp_errbuf_printf(errbuf, errlen, "%s: cannot write key file: %s", path, strerror(errno));
    close(fd);
    unlink(path);
    return CRP_IO;
}

static crp_err pub_path(const char *path, char *out, size_t size, char *errbuf, size_t errlen)
{
    if ((size_t)snprintf(out, size, "%s.pub", path) >= size) {
        crp_errbuf_printf(errbuf, errlen, "%s: path too long", path);
        return CRP_INVAL;
    }
    return CRP_OK;
}

crp_err crp_admin_key_create(const char *path, char *secret, char *public_key, char *errbuf,
                             size_t errlen)
{
    char sec[CRP_Z85_KEY_SIZE], pub[CRP_Z85_KEY_SIZE], ppath[CRP_CONFIG_PATH_MAX + 8];
    crp_err err;

    if (pub_path(path, ppath, sizeof(ppath), errbuf, errlen) != CRP_OK)
        return CRP_INVAL;
    if (zmq_curve_keypair(pub, sec) != 0) {
        crp_errbuf_printf(errbuf, errlen,
                          "cannot make a CURVE key pair: %s (libzmq without CURVE?)",
                          zmq_strerror(errno));
        return CRP_SYS;
    }
    /* O_EXCL with mode 0600 at creation: the secret is never readable by
     * anyone else, not even between open() and a chmod(). */
    err = write_key_file(path, sec, O_EXCL, errbuf, errlen);
    if (err != CRP_OK)
        return err;
    unlink(ppath);
    err = write_key_file(ppath, pub, O_EXCL, errbuf, errlen);
    if (err != CRP_OK) {
        unlink(path);
        return err;
    }
    if (secret != NULL)
        memcpy(secret, sec, sizeof(sec));
    if (public_key != NULL)
        memcpy(public_key, pub, sizeof(pub));
    return CRP_OK;
}

static int mkdir_parents(const char *path)
{
    char buf[CRP_CONFIG_PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

crp_err crp_admin_key_load_or_create(const char *path, char *secret, char *public_key,
                                     bool *created, char *errbuf, size_t errlen)
{
    char sec[CRP_Z85_KEY_SIZE], pub[CRP_Z85_KEY_SIZE], old[CRP_Z85_KEY_SIZE];
    char ppath[CRP_CONFIG_PATH_MAX + 8];
    crp_err err;

    if (created != NULL)
        *created = false;
    if (path == NULL || *path == '\0') {
        crp_errbuf_printf(errbuf, errlen, "[admin] secret_key_file is empty");
        return CRP_INVAL;
    }
    if (pub_path(path, ppath, sizeof(ppath), errbuf, errlen) != CRP_OK)
        return CRP_INVAL;
    err = crp_admin_key_read(path, sec, pub, errbuf, errlen);
    if (err == CRP_NOTFOUND) {
        mkdir_parents(path);
        err = crp_admin_key_create(path, sec, pub, errbuf, errlen);
        if (err == CRP_CONFLICT) /* created by someone else meanwhile */
            err = crp_admin_key_read(path, sec, pub, errbuf, errlen);
        else if (err == CRP_OK && created != NULL)
            *created = true;
    }
    if (err != CRP_OK)
        return err;
    /* A crash between the two files, or an operator's mistake, can leave
     * the .pub missing or wrong; clients read it, so repair it. */
    if (read_key_text(ppath, old, false, NULL, 0) != CRP_OK || strcmp(old, pub) != 0) {
        char tmp[CRP_CONFIG_PATH_MAX + 16];
        snprintf(tmp, sizeof(tmp), "%s.tmp", ppath);
        unlink(tmp);
        if (write_key_file(tmp, pub, O_EXCL, errbuf, errlen) != CRP_OK || rename(tmp, ppath) != 0) {
            unlink(tmp);
            crp_errbuf_printf(errbuf, errlen, "%s: cannot write the public key file", ppath);
            return CRP_IO;
        }
    }
    if (secret != NULL)
        memcpy(secret, sec, sizeof(sec));
    if (public_key != NULL)
        memcpy(public_key, pub, sizeof(pub));
    return CRP_OK;
}

crp_err crp_admin_public_key_resolve(const char *arg, char *public_key, char *errbuf, size_t errlen)
{
    if (arg == NULL || *arg == '\0') {
        crp_errbuf_printf(errbuf, errlen, "no server public key given");
        return CRP_INVAL;
    }
    if (crp_admin_is_z85_key(arg) && access(arg, F_OK) != 0) {
        memcpy(public_key, arg, CRP_Z85_KEY_SIZE);
        return CRP_OK;
    }
    return read_key_text(arg, public_key, false, errbuf, errlen);
}

/* ------------------------------------------------------------------------ */
/* Requests */

typedef struct req {
    crp_admin_server *s;
    const crp_identity *who; /* NULL: unknown User-Id */
    json_t *body;
    const char *verb;
    char target[CRP_ID_MAX + 1];
    bool has_target;
    char tenant[CRP_CONFIG_TENANT_MAX]; /* the audit line's tenant, when known */
    bool has_tenant;
    const char *reason;
    json_t *details;  /* owned: the audit line's details */
    const char *code; /* NULL: ok */
    char message[600];
    json_t *result; /* owned */
} req;

static bool fail(req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(req *r, const char *code, const char *fmt, ...)
{
    va_list ap;

    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return false;
}

static bool is_change_role(crp_role role)
{
    return role == CRP_ROLE_ORGANIZATION_MANAGEMENT || role == CRP_ROLE_SECURITY_ADMINISTRATOR;
}

static bool require_change(req *r)
{
    if (is_change_role(r->who->role))
        return true;
    return fail(r, "forbidden", "role %s may not use %s (read-only role)",
                crp_role_name(r->who->role), r->verb);
}

/* Maps a backend error to a reply. */
static bool backend_fail(req *r, crp_err err, const char *what)
{
    switch (err) {
    case CRP_NOTFOUND:
        return fail(r, "not_found", "connector '%s' not found", r->target);
    case CRP_CONFLICT:
        return fail(r, "conflict", "%s: %s", what, crp_strerror(err));
    case CRP_INVAL:
        return fail(r, "bad_request", "%s: %s", what, crp_strerror(err));
    case CRP_IO:
        /* The journal failed: the change is in the table (lookups see it)
         * but was not acknowledged as durable (docs/reliability.md). */
        return fail(r, "unavailable", "%s: applied but not acknowledged as durable: %s", what,
                    crp_strerror(err));
    case CRP_TIMEOUT:
    case CRP_BUSY:
    case CRP_FULL:
    case CRP_IDS_FULL:
    case CRP_TENANTS_FULL:
        return fail(r, "unavailable", "%s: %s", what, crp_strerror(err));
    default:
        return fail(r, "internal", "%s: %s", what, crp_strerror(err));
    }
}

/* Optional string argument. Returns false (bad_request) on a wrong type or
 * length; *out NULL when absent. */
static bool arg_str(req *r, const char *key, size_t minlen, size_t maxlen, const char **out,
                    size_t *len)
{
    json_t *v = json_object_get(r->body, key);
    size_t n;

    *out = NULL;
    if (len != NULL)
        *len = 0;
    if (v == NULL)
        return true;
    if (!json_is_string(v))
        return fail(r, "bad_request", "%s: expected a string", key);
    n = json_string_length(v);
    if (n < minlen || n > maxlen)
        return fail(r, "bad_request", "%s: expected %zu to %zu bytes, got %zu", key, minlen, maxlen,
                    n);
    *out = json_string_value(v);
    if (len != NULL)
        *len = n;
    return true;
}

/* The connector_id argument; records it as the audit target. */
static bool arg_id(req *r, bool required, const char **id, size_t *len)
{
    if (!arg_str(r, "connector_id", 1, CRP_ID_MAX, id, len))
        return false;
    if (*id == NULL)
        return required ? fail(r, "bad_request", "connector_id: required") : true;
    memcpy(r->target, *id, *len + 1);
    r->has_target = true;
    return true;
}

static bool scope_covers(const crp_identity *who, const char *tenant)
{
    return who->any_tenant || strcmp(who->tenant, tenant) == 0;
}

/* Applies the caller's scope to a connector. Returns true with *known and
 * tenant[] filled when the connector is unknown (known false) or in scope;
 * false with not_found (identical to an unknown connector's answer) when it
 * is outside the scope, or another error. */
static bool check_scope(req *r, const char *id, size_t len, char *tenant, bool *known)
{
    crp_err err;

    *known = false;
    tenant[0] = '\0';
    if (r->s->be.tenant_of == NULL)
        return fail(r, "unavailable", "the engine is not available");
    err = r->s->be.tenant_of(r->s->be.ctx, id, len, tenant);
    tenant[CRP_CONFIG_TENANT_MAX - 1] = '\0';
    if (err == CRP_NOTFOUND)
        return true;
    if (err != CRP_OK)
        return backend_fail(r, err, "tenant lookup");
    if (!scope_covers(r->who, tenant))
        return fail(r, "not_found", "connector '%s' not found", r->target);
    *known = true;
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    r->has_tenant = true;
    return true;
}

/* Re-checks the tenant a backend reply carries (the connector might have
 * been evicted and re-created by another tenant's traffic in between). */
static bool reply_in_scope(req *r, const json_t *o)
{
    const char *t = json_string_value(json_object_get(o, "tenant"));
    return t == NULL || scope_covers(r->who, t);
}

/* The CLI command that unblocks `id`, with the id quoted for a POSIX
 * shell when it holds anything but plain characters. */
static json_t *unblock_command(const char *id)
{
    static const char prefix[] = "connrep remove-blocked-connector --connector-id ";
    char buf[sizeof(prefix) + 4 * CRP_ID_MAX + 3];
    size_t n = sizeof(prefix) - 1;
    bool plain = *id != '\0';

    memcpy(buf, prefix, n);
    for (const char *p = id; *p != '\0' && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("._:@{}+=,/-", *p) != NULL;
    if (!plain)
        buf[n++] = '\'';
    for (const char *p = id; *p != '\0'; p++) {
        if (!plain && *p == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *p;
        }
    }
    if (!plain)
        buf[n++] = '\'';
    return json_stringn(buf, n);
}

static bool verb_detail(req *r, bool blocked_only)
{
    const char *id;
    size_t len;
    char tenant[CRP_CONFIG_TENANT_MAX];
    bool known;
    json_t *d = NULL;
    const char *state;
    crp_err err;

    if (!arg_id(r, !blocked_only, &id, &len))
        return false;
    if (id == NULL) {
        /* get-blocked-connector without an id: the list. */
        json_t *list = NULL, *out;
        size_t i;
        json_t *e;
        crp_admin_scope sc = {r->who->any_tenant, r->who->tenant};
        if (r->s->be.list_restricted == NULL)
            return fail(r, "unavailable", "the engine is not available");
        err = r->s->be.list_restricted(r->s->be.ctx, &sc, &list);
        if (err != CRP_OK) {
            json_decref(list);
            return backend_fail(r, err, "list");
        }
        out = json_array();
        json_array_foreach(list, i, e)
        {
            if (json_is_object(e) && json_is_string(json_object_get(e, "tenant")) &&
                reply_in_scope(r, e))
                json_array_append(out, e);
        }
        json_decref(list);
        r->result = out;
        return true;
    }
    if (!check_scope(r, id, len, tenant, &known))
        return false;
    if (!known)
        return fail(r, "not_found", "connector '%s' not found", r->target);
    if (r->s->be.describe == NULL)
        return fail(r, "unavailable", "the engine is not available");
    err = r->s->be.describe(r->s->be.ctx, id, len, &d);
    if (err != CRP_OK) {
        json_decref(d);
        return backend_fail(r, err, "describe");
    }
    if (!json_is_object(d) || !reply_in_scope(r, d)) {
        json_decref(d);
        return fail(r, "not_found", "connector '%s' not found", r->target);
    }
    state = json_string_value(json_object_get(d, "state"));
    if (blocked_only && (state == NULL || strcmp(state, "restricted") != 0)) {
        json_decref(d);
        return fail(r, "not_found",
                    "connector '%s' is not restricted (get-connector shows its state)", r->target);
    }
    if (state != NULL && strcmp(state, "restricted") == 0) {
        json_object_set_new(d, "advice", json_string(CRP_ADMIN_ADVICE));
        json_object_set_new(d, "unblock_command", unblock_command(r->target));
    }
    r->result = d;
    return true;
}

static bool verb_get_blocked(req *r)
{
    return verb_detail(r, true);
}

static bool verb_get_connector(req *r)
{
    return verb_detail(r, false);
}

static bool audit_ready_for_change(req *r)
{
    if (!crp_audit_healthy(r->s->audit))
        return fail(r, "unavailable",
                    "the audit log cannot be written; changes are refused until it can");
    return true;
}

static bool verb_remove(req *r)
{
    const char *id, *reason;
    size_t len;
    char tenant[CRP_CONFIG_TENANT_MAX];
    bool known;
    json_t *res = NULL;
    crp_err err;

    if (!arg_id(r, true, &id, &len) ||
        !arg_str(r, "reason", 0, CRP_ADMIN_REASON_MAX, &reason, NULL))
        return false;
    r->reason = reason;
    if (!check_scope(r, id, len, tenant, &known))
        return false;
    if (!known)
        return fail(r, "not_found", "connector '%s' not found", r->target);
    if (!require_change(r) || !audit_ready_for_change(r))
        return false;
    if (r->s->be.remove == NULL)
        return fail(r, "unavailable", "the engine is not available");
    err = r->s->be.remove(r->s->be.ctx, id, len, r->who->name, reason, &res);
    if (err == CRP_CONFLICT) {
        json_decref(res);
        return fail(r, "conflict", "connector '%s' is not restricted", r->target);
    }
    if (err != CRP_OK) {
        json_decref(res);
        return backend_fail(r, err, "remove");
    }
    r->result = res != NULL ? res : json_pack("{s:s}", "connector_id", r->target);
    return true;
}

static bool verb_block(req *r)
{
    const char *id, *reason, *targ;
    size_t len, tlen;
    char tenant[CRP_CONFIG_TENANT_MAX];
    bool known;
    json_t *res = NULL;
    crp_err err;

    if (!arg_id(r, true, &id, &len) ||
        !arg_str(r, "reason", 1, CRP_ADMIN_REASON_MAX, &reason, NULL) ||
        !arg_str(r, "tenant", 0, CRP_TENANT_MAX, &targ, &tlen))
        return false;
    if (reason == NULL)
        return fail(r, "bad_request", "reason: required (why is the connector blocked?)");
    r->reason = reason;
    if (!check_scope(r, id, len, tenant, &known))
        return false;
    if (known) {
        if (targ != NULL && strcmp(targ, tenant) != 0)
            return fail(r, "conflict", "connector '%s' belongs to another tenant than '%s'",
                        r->target, targ);
    } else if (!r->who->any_tenant) {
        /* A tenant-scoped identity blocks a new connector in its own
         * tenant, and only there. */
        if (targ != NULL && strcmp(targ, r->who->tenant) != 0)
            return fail(r, "forbidden", "identity '%s' may only block connectors of its own tenant",
                        r->who->name);
        snprintf(tenant, sizeof(tenant), "%s", r->who->tenant);
    } else {
        snprintf(tenant, sizeof(tenant), "%s", targ != NULL ? targ : "");
    }
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    r->has_tenant = true;
    if (!require_change(r) || !audit_ready_for_change(r))
        return false;
    if (r->s->be.block == NULL)
        return fail(r, "unavailable", "the engine is not available");
    err = r->s->be.block(r->s->be.ctx, id, len, tenant, r->who->name, reason, &res);
    if (err != CRP_OK) {
        json_decref(res);
        return backend_fail(r, err, "block");
    }
    r->result = res != NULL ? res : json_pack("{s:s}", "connector_id", r->target);
    return true;
}

static bool verb_get_policy(req *r)
{
    crp_alert_policy p;

    if (r->s->alerts == NULL)
        return fail(r, "unavailable", "alerts are not available in this engine");
    crp_alerts_get_policy(r->s->alerts, &p);
    r->result = crp_alert_policy_json(&p);
    return true;
}

static bool verb_set_policy(req *r)
{
    json_t *enabled = json_object_get(r->body, "enabled");
    json_t *email = json_object_get(r->body, "email");
    json_t *rcpt = json_object_get(r->body, "recipients");
    json_t *limit = json_object_get(r->body, "daily_limit");
    crp_alert_policy p;
    char why[256];
    crp_err err;

    if (enabled != NULL && !json_is_boolean(enabled))
        return fail(r, "bad_request", "enabled: expected true or false");
    if (email != NULL && !json_is_boolean(email))
        return fail(r, "bad_request", "email: expected true or false");
    if (limit != NULL && !json_is_integer(limit))
        return fail(r, "bad_request", "daily_limit: expected an integer 1..3");
    if (rcpt != NULL && !json_is_string(rcpt) && !json_is_array(rcpt))
        return fail(r, "bad_request",
                    "recipients: expected \"TenantAdmins\", a comma-separated string or an array "
                    "of addresses");
    if (!require_change(r))
        return false;
    if (!r->who->any_tenant)
        return fail(r, "forbidden",
                    "the alert policy applies to every tenant: only an identity with tenant = * "
                    "may change it");
    if (r->s->alerts == NULL)
        return fail(r, "unavailable", "alerts are not available in this engine");
    crp_alerts_get_policy(r->s->alerts, &p);
    if (enabled != NULL)
        p.enabled = json_is_true(enabled);
    if (email != NULL)
        p.email = json_is_true(email);
    if (limit != NULL) {
        json_int_t v = json_integer_value(limit);
        p.daily_limit = v >= 1 && v <= 3 ? (unsigned)v : 0;
    }
    if (json_is_string(rcpt)) {
        if (json_string_length(rcpt) >= sizeof(p.recipients))
            return fail(r, "bad_request", "recipients: too long");
        snprintf(p.recipients, sizeof(p.recipients), "%s", json_string_value(rcpt));
    } else if (json_is_array(rcpt)) {
        size_t i, used = 0;
        json_t *v;
        p.recipients[0] = '\0';
        json_array_foreach(rcpt, i, v)
        {
            size_t n = json_string_length(v);
            if (!json_is_string(v))
                return fail(r, "bad_request", "recipients: expected strings");
            if (used + n + 2 >= sizeof(p.recipients))
                return fail(r, "bad_request", "recipients: too long");
            used += (size_t)snprintf(p.recipients + used, sizeof(p.recipients) - used, "%s%s",
                                     used ? "," : "", json_string_value(v));
        }
    }
    err = crp_alert_policy_normalize(&p, why, sizeof(why));
    if (err != CRP_OK)
        return fail(r, "bad_request", "%s", why);
    if (p.enabled && !crp_audit_enabled(r->s->audit))
        return fail(r, "conflict",
                    "alerts need the audit log: turn on the audit log ([audit] enabled = true) "
                    "before you turn on the alert policy");
    if (!audit_ready_for_change(r))
        return false;
    if (r->s->be.save_alert_policy != NULL) {
        err = r->s->be.save_alert_policy(r->s->be.ctx, &p, r->who->name);
        if (err == CRP_IO)
            return fail(r, "unavailable",
                        "the policy is applied but not acknowledged as durable: the journal "
                        "failed (see the alarm.journal event); it becomes durable with the next "
                        "snapshot that succeeds");
        if (err != CRP_OK)
            return fail(r, "unavailable", "the policy could not be saved: %s", crp_strerror(err));
    }
    err = crp_alerts_set_policy(r->s->alerts, &p, why, sizeof(why));
    if (err == CRP_CONFLICT)
        return fail(r, "conflict", "%s", why);
    if (err != CRP_OK)
        return fail(r, "bad_request", "%s", why);
    r->result = crp_alert_policy_json(&p);
    r->details = crp_alert_policy_json(&p);
    return true;
}

static bool verb_search(req *r)
{
    const char *id, *actor, *action, *since, *until;
    size_t idlen;
    json_t *limit = json_object_get(r->body, "limit");
    crp_audit_query q = {0};
    uint64_t now = crp_clock_ms();
    json_t *entries = NULL;
    bool more = false;
    crp_err err;

    if (!arg_str(r, "connector_id", 1, CRP_ID_MAX, &id, &idlen) ||
        !arg_str(r, "actor", 1, 64, &actor, NULL) || !arg_str(r, "action", 1, 64, &action, NULL) ||
        !arg_str(r, "since", 1, 64, &since, NULL) || !arg_str(r, "until", 1, 64, &until, NULL))
        return false;
    if (limit != NULL && (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
                          json_integer_value(limit) > CRP_AUDIT_LIMIT_MAX))
        return fail(r, "bad_request", "limit: expected an integer 1..%u", CRP_AUDIT_LIMIT_MAX);
    if (since != NULL && crp_time_parse(since, now, &q.since_ms) != CRP_OK)
        return fail(r, "bad_request",
                    "since: expected an RFC 3339 time (2024-05-01T12:00:00Z) or a duration "
                    "(24h), got '%s'",
                    since);
    if (until != NULL && crp_time_parse(until, now, &q.until_ms) != CRP_OK)
        return fail(r, "bad_request",
                    "until: expected an RFC 3339 time (2024-05-01T12:00:00Z) or a duration "
                    "(24h), got '%s'",
                    until);
    if (!crp_audit_enabled(r->s->audit))
        return fail(r, "unavailable", "the audit log is turned off ([audit] enabled = false)");
    q.connector_id = id;
    q.actor = actor;
    q.action = action;
    q.limit = limit != NULL ? (size_t)json_integer_value(limit) : CRP_AUDIT_LIMIT_DEFAULT;
    q.any_tenant = r->who->any_tenant;
    q.tenant = r->who->tenant;
    err = crp_audit_search(r->s->audit, &q, &entries, &more);
    if (err != CRP_OK)
        return fail(r, "internal", "audit search: %s", crp_strerror(err));
    r->result = json_pack("{s:o, s:I, s:b}", "entries", entries, "count",
                          (json_int_t)json_array_size(entries), "more", more);
    return true;
}

static json_t *server_stats_json(const crp_admin_server *s)
{
    crp_admin_stats st;

    crp_admin_server_stats(s, &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests",
                     (json_int_t)st.requests, "ok", (json_int_t)st.ok, "bad_request",
                     (json_int_t)st.bad_request, "forbidden", (json_int_t)st.forbidden, "not_found",
                     (json_int_t)st.not_found, "conflict", (json_int_t)st.conflict, "unavailable",
                     (json_int_t)st.unavailable, "internal", (json_int_t)st.internal, "dropped",
                     (json_int_t)st.dropped, "auth_ok", (json_int_t)st.auth_ok, "auth_refused",
                     (json_int_t)st.auth_refused);
}

static bool verb_stats(req *r)
{
    json_t *out, *engine = NULL;

    if (!r->who->any_tenant) {
        /* Engine-wide numbers describe every tenant; a scoped identity gets
         * its own tenant's count instead. */
        crp_admin_scope sc = {false, r->who->tenant};
        json_t *list = NULL;
        crp_err err;
        if (r->s->be.list_restricted == NULL)
            return fail(r, "unavailable", "the engine is not available");
        err = r->s->be.list_restricted(r->s->be.ctx, &sc, &list);
        if (err != CRP_OK) {
            json_decref(list);
            return backend_fail(r, err, "list");
        }
        size_t n = 0, i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            if (reply_in_scope(r, e))
                n++;
        }
        json_decref(list);
        r->result = json_pack("{s:s, s:I}", "tenant", r->who->tenant, "restricted", (json_int_t)n);
        return true;
    }
    if (r->s->be.stats != NULL && r->s->be.stats(r->s->be.ctx, &engine) != CRP_OK) {
        json_decref(engine);
        engine = NULL;
    }
    out = json_object();
    json_object_set_new(out, "engine", engine != NULL ? engine : json_null());
    json_object_set_new(out, "admin", server_stats_json(r->s));
    if (r->s->alerts != NULL) {
        crp_alerts_stats a;
        crp_alerts_stats_get(r->s->alerts, &a);
        json_object_set_new(
            out, "alerts",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "raised",
                      (json_int_t)a.raised, "notified", (json_int_t)a.notified, "suppressed",
                      (json_int_t)a.suppressed, "untracked", (json_int_t)a.untracked,
                      "no_recipients", (json_int_t)a.no_recipients, "spawned",
                      (json_int_t)a.spawned, "spawn_failed", (json_int_t)a.spawn_failed,
                      "command_failed", (json_int_t)a.command_failed, "command_ok",
                      (json_int_t)a.command_ok, "running", (json_int_t)a.running));
    }
    if (r->s->audit != NULL) {
        crp_audit_stats a;
        crp_audit_stats_get(r->s->audit, &a);
        json_object_set_new(out, "audit",
                            json_pack("{s:b, s:b, s:I, s:I}", "enabled",
                                      crp_audit_enabled(r->s->audit), "healthy",
                                      crp_audit_healthy(r->s->audit), "lines", (json_int_t)a.lines,
                                      "errors", (json_int_t)a.errors));
    }
    r->result = out;
    return true;
}

typedef bool (*verb_fn)(req *r);

typedef struct verb_def {
    const char *name;
    bool change; /* needs a change role */
    const char *args[7];
    verb_fn fn;
} verb_def;

static bool verb_whoami(req *r);

static const verb_def verbs[] = {
    {"get-blocked-connector", false, {"connector_id"}, verb_get_blocked},
    {"remove-blocked-connector", true, {"connector_id", "reason"}, verb_remove},
    {"block-connector", true, {"connector_id", "reason", "tenant"}, verb_block},
    {"get-connector", false, {"connector_id"}, verb_get_connector},
    {"get-alert-policy", false, {NULL}, verb_get_policy},
    {"set-alert-policy", true, {"enabled", "email", "recipients", "daily_limit"}, verb_set_policy},
    {"search-audit-log",
     false,
     {"connector_id", "actor", "action", "since", "until", "limit"},
     verb_search},
    {"get-stats", false, {NULL}, verb_stats},
    {"whoami", false, {NULL}, verb_whoami},
};

static bool verb_whoami(req *r)
{
    json_t *allowed = json_array();
    bool change = is_change_role(r->who->role);

    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        /* The alert policy is global: a scoped identity cannot change it. */
        bool global_only = strcmp(verbs[i].name, "set-alert-policy") == 0;
        if (!verbs[i].change || (change && (!global_only || r->who->any_tenant)))
            json_array_append_new(allowed, json_string(verbs[i].name));
    }
    r->result =
        json_pack("{s:s, s:s, s:s, s:b, s:o}", "name", r->who->name, "role",
                  crp_role_name(r->who->role), "tenant", r->who->any_tenant ? "*" : r->who->tenant,
                  "may_change", change, "verbs", allowed);
    return true;
}

static const crp_identity *identity_by_name(const crp_admin_server *s, const char *name)
{
    for (size_t i = 0; name != NULL && i < s->n_ids; i++) {
        if (strcmp(s->ids[i].name, name) == 0)
            return &s->ids[i];
    }
    return NULL;
}

static void dispatch(req *r, const void *data, size_t size)
{
    json_error_t jerr;
    const verb_def *def = NULL;
    const char *key;
    json_t *v;

    if (r->who == NULL) {
        fail(r, "forbidden", "unknown identity");
        return;
    }
    r->body = json_loadb(data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (r->body == NULL) {
        fail(r, "bad_request", "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
             jerr.text);
        return;
    }
    if (!json_is_object(r->body)) {
        fail(r, "bad_request", "the request must be a JSON object");
        return;
    }
    r->verb = json_string_value(json_object_get(r->body, "verb"));
    if (r->verb == NULL) {
        fail(r, "bad_request", "verb: required, a string");
        return;
    }
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strcmp(verbs[i].name, r->verb) == 0)
            def = &verbs[i];
    }
    if (def == NULL) {
        fail(r, "bad_request", "unknown verb '%.64s'", r->verb);
        return;
    }
    json_object_foreach(r->body, key, v)
    {
        bool ok = strcmp(key, "verb") == 0;
        for (size_t i = 0; !ok && i < 7 && def->args[i] != NULL; i++)
            ok = strcmp(def->args[i], key) == 0;
        if (!ok) {
            fail(r, "bad_request", "%s: unknown argument '%.64s'", def->name, key);
            return;
        }
    }
    /* Each verb checks its arguments, then the scope of the connector it
     * names, then the role (require_change) before it changes anything. */
    def->fn(r);
}

/* Handles one request body from identity `user_id`; returns the reply text
 * (malloc'd). Writes the audit line before returning. */
static char *handle(crp_admin_server *s, const char *user_id, const void *data, size_t size)
{
    req r = {.s = s};
    crp_audit_request line = {0};
    json_t *reply;
    char *text;
    const char *scope;

    r.who = identity_by_name(s, user_id);
    dispatch(&r, data, size);

    scope = r.who == NULL ? NULL : r.who->any_tenant ? "*" : r.who->tenant;
    line.actor = r.who != NULL ? r.who->name : (user_id != NULL ? user_id : "?");
    line.role = r.who != NULL ? crp_role_name(r.who->role) : NULL;
    line.scope = scope;
    line.tenant = r.has_tenant ? r.tenant : scope;
    line.verb = r.verb;
    line.target = r.has_target ? r.target : NULL;
    line.result = r.code != NULL ? r.code : "ok";
    line.message = r.code != NULL ? r.message : NULL;
    line.reason = r.reason;
    line.details = r.details;
    if (crp_audit_request_line(s->audit, &line) != CRP_OK)
        crp_log(CRP_LOG_WARN, "admin: cannot write the audit line of %s by %s",
                r.verb ? r.verb : "?", line.actor);

    /* Statistics only: relaxed. */
    atomic_fetch_add_explicit(&s->n_requests, 1, memory_order_relaxed);
    if (r.code == NULL)
        atomic_fetch_add_explicit(&s->n_ok, 1, memory_order_relaxed);
    else if (strcmp(r.code, "bad_request") == 0)
        atomic_fetch_add_explicit(&s->n_bad_request, 1, memory_order_relaxed);
    else if (strcmp(r.code, "forbidden") == 0)
        atomic_fetch_add_explicit(&s->n_forbidden, 1, memory_order_relaxed);
    else if (strcmp(r.code, "not_found") == 0)
        atomic_fetch_add_explicit(&s->n_not_found, 1, memory_order_relaxed);
    else if (strcmp(r.code, "conflict") == 0)
        atomic_fetch_add_explicit(&s->n_conflict, 1, memory_order_relaxed);
    else if (strcmp(r.code, "unavailable") == 0)
        atomic_fetch_add_explicit(&s->n_unavailable, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&s->n_internal, 1, memory_order_relaxed);

    if (r.code == NULL)
        reply = json_pack("{s:b, s:O}", "ok", 1, "result", r.result ? r.result : json_null());
    else
        reply = json_pack("{s:b, s:{s:s, s:o}}", "ok", 0, "error", "code", r.code, "message",
                          crp_json_bytes(r.message, strlen(r.message)));
    /* Nine significant digits, as in the events: 0.1 stays 0.1. */
    text = reply != NULL ? json_dumps(reply, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(reply);
    json_decref(r.result);
    json_decref(r.details);
    json_decref(r.body);
    if (text == NULL)
        text = strdup("{\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of "
                      "memory\"}}");
    return text;
}

/* The request path of the server thread without a socket (see crp/admin.h).
 * A throwaway server struct carries what handle() reads: the identities,
 * the backend, the audit log and the alerts; its counters start at zero on
 * every call. */
char *crp_admin_handle_for_fuzz(const crp_identity *ids, size_t n_ids,
                                const crp_admin_backend *backend, crp_audit *audit,
                                crp_alerts *alerts, const char *user_id, const void *body,
                                size_t size)
{
    crp_admin_server *s = calloc(1, sizeof(*s));
    char *reply;

    if (s == NULL)
        return NULL;
    /* handle() only reads the identities; the cast keeps the struct's type. */
    s->ids = (crp_identity *)ids;
    s->n_ids = n_ids;
    s->be = *backend;
    s->audit = audit;
    s->alerts = alerts;
    reply = handle(s, user_id, body, size);
    free(s);
    return reply;
}

/* ------------------------------------------------------------------------ */
/* Threads */

/* Reads every frame of one message from sock without blocking, keeping
 * the first max in parts (initialised; the caller closes *n of them) and
 * discarding the rest. Returns false when a receive failed. *overflow says
 * whether frames were discarded. */
static bool recv_frames(void *sock, zmq_msg_t *parts, size_t max, size_t *n, bool *overflow)
{
    *n = 0;
    *overflow = false;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return false;
        }
        int more = zmq_msg_more(&m);
        if (*n < max) {
            zmq_msg_init(&parts[*n]);
            zmq_msg_move(&parts[*n], &m);
            (*n)++;
        } else {
            *overflow = true;
        }
        zmq_msg_close(&m);
        if (!more)
            return true;
    }
}

static void *server_main(void *arg)
{
    crp_admin_server *s = arg;
    zmq_msg_t parts[CRP_ADMIN_ENVELOPE_MAX + 1];

    for (;;) {
        zmq_pollitem_t items[2] = {{s->router, 0, ZMQ_POLLIN, 0}, {s->ctl_srv, 0, ZMQ_POLLIN, 0}};
        size_t n = 0;
        bool overflow = false, failed = false;

        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        failed = !recv_frames(s->router, parts, CRP_ADMIN_ENVELOPE_MAX + 1, &n, &overflow);
        if (!failed && !overflow && n >= 2) {
            zmq_msg_t *body = &parts[n - 1];
            /* The identity comes from our own ZAP reply, attached by libzmq
             * to every message of the connection; the peer cannot set it. */
            const char *user_id = zmq_msg_gets(body, "User-Id");
            char *reply = handle(s, user_id, zmq_msg_data(body), zmq_msg_size(body));
            for (size_t i = 0; i + 1 < n; i++)
                zmq_msg_send(&parts[i], s->router, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(s->router, reply, strlen(reply), ZMQ_DONTWAIT);
            free(reply);
        } else if (n > 0) {
            /* Statistics only: relaxed. */
            atomic_fetch_add_explicit(&s->n_dropped, 1, memory_order_relaxed);
        }
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
    /* Unbinding an inproc endpoint is synchronous, closing is not: unbind
     * first, so a server started right after this one can bind it. */
    zmq_unbind(s->ctl_srv, s->ctl_srv_ep);
    zmq_close(s->router);
    zmq_close(s->ctl_srv);
    return NULL;
}

static bool frame_is(zmq_msg_t *m, const char *s)
{
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Audits a refused handshake, at most AUTH_AUDIT_PER_MINUTE a minute. */
static void audit_refusal(crp_admin_server *s, const char *why, const char *key_z85,
                          const char *address)
{
    uint64_t minute = crp_clock_ms() / 60000u;
    json_t *o;

    if (minute != s->auth_minute) {
        s->auth_minute = minute;
        s->auth_audited = 0;
    }
    if (++s->auth_audited > AUTH_AUDIT_PER_MINUTE)
        return;
    o = json_object();
    json_object_set_new(o, "kind", json_string("auth"));
    json_object_set_new(o, "actor", json_string("?"));
    json_object_set_new(o, "role", json_null());
    json_object_set_new(o, "tenant", json_string("*"));
    json_object_set_new(o, "verb", json_string("auth.refused"));
    json_object_set_new(o, "target", json_null());
    json_object_set_new(o, "result", json_string("forbidden"));
    json_object_set_new(o, "message", json_string(why));
    json_object_set_new(o, "details",
                        json_pack("{s:s, s:s}", "public_key", key_z85, "address", address));
    crp_audit_append(s->audit, o);
    json_decref(o);
}

static void zap_handle(crp_admin_server *s, zmq_msg_t *f, size_t n)
{
    const crp_identity *id = NULL;
    const char *status = "400", *text = "unknown client key", *user = "";
    char key_z85[CRP_Z85_KEY_SIZE] = "", address[128] = "";

    /* RFC 27: version, request id, domain, address, identity, mechanism,
     * credentials... */
    if (n < 6 || !frame_is(&f[0], "1.0")) {
        text = "malformed ZAP request";
    } else if (!frame_is(&f[2], CRP_ADMIN_ZAP_DOMAIN)) {
        text = "unknown ZAP domain";
    } else if (!frame_is(&f[5], "CURVE") || n < 7 || zmq_msg_size(&f[6]) != CRP_KEY_BYTES) {
        text = "CURVE required";
    } else {
        zmq_z85_encode(key_z85, zmq_msg_data(&f[6]), CRP_KEY_BYTES);
        for (size_t i = 0; i < s->n_ids && id == NULL; i++) {
            if (memcmp(s->ids[i].public_key_bin, zmq_msg_data(&f[6]), CRP_KEY_BYTES) == 0)
                id = &s->ids[i];
        }
        if (id != NULL) {
            status = "200";
            text = "OK";
            user = id->name;
        }
    }
    if (n >= 4) {
        size_t al =
            zmq_msg_size(&f[3]) < sizeof(address) - 1 ? zmq_msg_size(&f[3]) : sizeof(address) - 1;
        memcpy(address, zmq_msg_data(&f[3]), al);
        address[al] = '\0';
    }
    /* Statistics only: relaxed. */
    if (id != NULL) {
        atomic_fetch_add_explicit(&s->n_auth_ok, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&s->n_auth_refused, 1, memory_order_relaxed);
        audit_refusal(s, text, key_z85, address);
    }
    zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(s->zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(s->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(s->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(s->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(s->zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(s->zap, "", 0, 0);
}

static void *zap_main(void *arg)
{
    crp_admin_server *s = arg;
    zmq_msg_t f[10];

    for (;;) {
        zmq_pollitem_t items[2] = {{s->zap, 0, ZMQ_POLLIN, 0}, {s->ctl_zap, 0, ZMQ_POLLIN, 0}};
        size_t n = 0;
        bool overflow, failed;

        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        /* Frames past the ten ZAP defines are ignored (zap_handle checks
         * the count it needs). */
        failed = !recv_frames(s->zap, f, 10, &n, &overflow);
        /* A REP socket must answer every request it read, even a malformed
         * one, or it stops reading. */
        if (!failed)
            zap_handle(s, f, n);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    /* As above: release the ZAP endpoint now, not when libzmq gets to it,
     * so the next server in this context can bind it. */
    zmq_unbind(s->zap, ZAP_ENDPOINT);
    zmq_unbind(s->ctl_zap, s->ctl_zap_ep);
    zmq_close(s->zap);
    zmq_close(s->ctl_zap);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

static void *new_socket(crp_admin_server *s, int type)
{
    void *z = zmq_socket(s->zctx, type);
    int zero = 0;

    if (z != NULL)
        zmq_setsockopt(z, ZMQ_LINGER, &zero, sizeof(zero));
    return z;
}

static void signal_stop(void *zctx, const char *ep)
{
    void *p = zmq_socket(zctx, ZMQ_PAIR);
    int zero = 0;

    if (p == NULL)
        return;
    zmq_setsockopt(p, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(p, ep) == 0)
        zmq_send(p, "", 0, 0);
    zmq_close(p);
}

/* Binds every endpoint of a comma-separated list, creating the directory
 * of ipc:// paths. */
static crp_err bind_all(void *sock, const char *list, char *errbuf, size_t errlen)
{
    char ep[CRP_CONFIG_LIST_MAX];

    if (*list == '\0') {
        crp_errbuf_printf(errbuf, errlen, "[admin] bind is empty");
        return CRP_CONFIG;
    }
    for (const char *p = list; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        memcpy(ep, p, len);
        ep[len] = '\0';
        if (strncmp(ep, "ipc://", 6) == 0)
            mkdir_parents(ep + 6);
        if (zmq_bind(sock, ep) != 0) {
            crp_errbuf_printf(errbuf, errlen, "[admin] bind: cannot bind %s: %s", ep,
                              zmq_strerror(errno));
            return CRP_IO;
        }
        p += len + (comma != NULL);
    }
    return CRP_OK;
}

crp_err crp_admin_server_start(crp_admin_server **out, void *zctx, const crp_config *cfg,
                               const crp_admin_backend *backend, crp_audit *audit,
                               crp_alerts *alerts, char *errbuf, size_t errlen)
{
    crp_admin_server *s;
    char secret[CRP_Z85_KEY_SIZE];
    int one = 1, maxmsg = (int)CRP_ADMIN_MAX_REQUEST;
    crp_err err;

    *out = NULL;
    if (!zmq_has("curve")) {
        crp_errbuf_printf(errbuf, errlen, "admin: this libzmq has no CURVE support");
        return CRP_SYS;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CRP_NOMEM;
    s->zctx = zctx;
    s->be = *backend;
    s->audit = audit;
    s->alerts = alerts;
    if (cfg->n_identities > 0) {
        s->ids = calloc(cfg->n_identities, sizeof(*s->ids));
        if (s->ids == NULL) {
            free(s);
            return CRP_NOMEM;
        }
        memcpy(s->ids, cfg->identities, cfg->n_identities * sizeof(*s->ids));
        s->n_ids = cfg->n_identities;
    }
    err = crp_admin_key_load_or_create(cfg->admin.secret_key_file, secret, s->public_key, NULL,
                                       errbuf, errlen);
    if (err != CRP_OK)
        goto out_free;

    /* The ZAP handler is bound before the ROUTER exists and closed after it
     * is gone, so no handshake is ever without it (and with
     * ZMQ_ZAP_ENFORCE_DOMAIN one would fail rather than pass). */
    err = CRP_IO;
    s->zap = new_socket(s, ZMQ_REP);
    if (s->zap == NULL || zmq_bind(s->zap, ZAP_ENDPOINT) != 0) {
        crp_errbuf_printf(
            errbuf, errlen,
            "admin: cannot bind the ZAP handler on %s: %s (another one in this context?)",
            ZAP_ENDPOINT, zmq_strerror(errno));
        goto out_close;
    }
    {
        /* Relaxed: only uniqueness matters. */
        unsigned seq = atomic_fetch_add_explicit(&server_seq, 1, memory_order_relaxed);
        snprintf(s->ctl_srv_ep, sizeof(s->ctl_srv_ep), "inproc://crp-admin-srv-%u", seq);
        snprintf(s->ctl_zap_ep, sizeof(s->ctl_zap_ep), "inproc://crp-admin-zap-%u", seq);
    }
    s->ctl_srv = new_socket(s, ZMQ_PAIR);
    s->ctl_zap = new_socket(s, ZMQ_PAIR);
    if (s->ctl_srv == NULL || s->ctl_zap == NULL || zmq_bind(s->ctl_srv, s->ctl_srv_ep) != 0 ||
        zmq_bind(s->ctl_zap, s->ctl_zap_ep) != 0) {
        crp_errbuf_printf(errbuf, errlen, "admin: cannot create control sockets: %s",
                          zmq_strerror(errno));
        goto out_close;
    }
    s->router = new_socket(s, ZMQ_ROUTER);
    if (s->router == NULL || zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, secret, CRP_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, CRP_ADMIN_ZAP_DOMAIN,
                       strlen(CRP_ADMIN_ZAP_DOMAIN)) != 0 ||
        zmq_setsockopt(s->router, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &(int64_t){maxmsg}, sizeof(int64_t)) != 0) {
        crp_errbuf_printf(errbuf, errlen, "admin: cannot set up the CURVE server socket: %s",
                          zmq_strerror(errno));
        goto out_close;
    }
    explicit_bzero(secret, sizeof(secret));
    err = bind_all(s->router, cfg->admin.bind, errbuf, errlen);
    if (err != CRP_OK)
        goto out_close;

    if (pthread_create(&s->th_zap, NULL, zap_main, s) != 0) {
        crp_errbuf_printf(errbuf, errlen, "admin: cannot start the ZAP thread");
        err = CRP_SYS;
        goto out_close;
    }
    s->zap_started = true;
    if (pthread_create(&s->th_srv, NULL, server_main, s) != 0) {
        crp_errbuf_printf(errbuf, errlen, "admin: cannot start the server thread");
        err = CRP_SYS;
        goto out_stop;
    }
    s->srv_started = true;
    *out = s;
    return CRP_OK;

out_stop:
    /* The server thread never ran: its sockets are still ours to close. */
    zmq_close(s->router);
    zmq_close(s->ctl_srv);
    crp_admin_server_stop(&s);
    return err;
out_close:
    explicit_bzero(secret, sizeof(secret));
    if (s->zap != NULL)
        zmq_unbind(s->zap, ZAP_ENDPOINT);
    if (s->router != NULL)
        zmq_close(s->router);
    if (s->ctl_srv != NULL)
        zmq_close(s->ctl_srv);
    if (s->ctl_zap != NULL)
        zmq_close(s->ctl_zap);
    if (s->zap != NULL)
        zmq_close(s->zap);
out_free:
    free(s->ids);
    free(s);
    return err;
}

void crp_admin_server_stop(crp_admin_server **sp)
{
    crp_admin_server *s;

    if (sp == NULL || *sp == NULL)
        return;
    s = *sp;
    /* The ROUTER goes first, then the ZAP handler: there is never a moment
     * with a CURVE socket and no handler. */
    if (s->srv_started) {
        signal_stop(s->zctx, s->ctl_srv_ep);
        pthread_join(s->th_srv, NULL);
    }
    if (s->zap_started) {
        signal_stop(s->zctx, s->ctl_zap_ep);
        pthread_join(s->th_zap, NULL);
    }
    free(s->ids);
    free(s);
    *sp = NULL;
}

const char *crp_admin_server_public_key(const crp_admin_server *s)
{
    return s->public_key;
}

void crp_admin_server_stats(const crp_admin_server *s, crp_admin_stats *out)
{
#define LOAD(f) atomic_load_explicit(&((crp_admin_server *)s)->f, memory_order_relaxed)
    /* Statistics only: relaxed loads. */
    out->requests = LOAD(n_requests);
    out->ok = LOAD(n_ok);
    out->bad_request = LOAD(n_bad_request);
    out->forbidden = LOAD(n_forbidden);
    out->not_found = LOAD(n_not_found);
    out->conflict = LOAD(n_conflict);
    out->unavailable = LOAD(n_unavailable);
    out->internal = LOAD(n_internal);
    out->dropped = LOAD(n_dropped);
    out->auth_ok = LOAD(n_auth_ok);
    out->auth_refused = LOAD(n_auth_refused);
#undef LOAD
}
