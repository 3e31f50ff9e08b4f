/* connrep configuration: the INI file of PROTOCOL.md section 6.
 *
 * Every key has a built-in default (the values printed in PROTOCOL.md), so
 * the engine runs with no file at all. A file only overrides keys; any
 * mistake in it (unknown section or key, bad value, a key set twice) is an
 * error naming the file, the line and the key, and nothing is half-applied.
 *
 * Value syntax:
 *   durations  integer or decimal with a unit ms, s, m, h, d ("500ms", "1.5h");
 *              a bare zero means off; stored as milliseconds (fields *_ms).
 *   sizes      integer with an optional unit B, KiB, MiB, GiB; stored as bytes.
 *   numbers    digits with an optional fraction ("20", "0.5"); no sign, no
 *              exponent.
 *   booleans   true/false, on/off, yes/no, 1/0, in any letter case.
 *   lists      comma-separated; blanks around the commas are dropped, so the
 *              stored form is "a,b,c" (empty string = empty list).
 *   comments   ';' (or '#') at the start of a line, or ';' after whitespace
 *              anywhere; a ';' glued to a value is part of it.
 *
 * Memory: a crp_config is a plain struct of fixed-size fields (about 20 KiB;
 * embed it or allocate it, but mind small thread stacks). The only heap
 * allocation is the identity array, released by crp_config_fini().
 *
 * Threads: loading touches no shared state except one process-wide option of
 * libinih, set once (see config.c), so different threads may load different
 * structs at the same time. A loaded struct is read-only data: any number of
 * threads may read it while nobody modifies or finalizes it.
 */
#ifndef CRP_CONFIG_H
#define CRP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "crp/err.h"

/* Buffer sizes, terminating NUL included: a value may hold one byte less. */
#define CRP_CONFIG_LIST_MAX     1024u /* endpoint lists, alert recipients */
#define CRP_CONFIG_PATH_MAX     4096u /* state_dir, secret_key_file */
#define CRP_CONFIG_COMMAND_MAX  4096u /* notify_command */
#define CRP_CONFIG_SHM_NAME_MAX 256u  /* "/name": NAME_MAX (255) bytes at most */
#define CRP_CONFIG_NAME_MAX     65u   /* identity names: 1..64 bytes */
#define CRP_CONFIG_TENANT_MAX   65u   /* tenants: 0..64 bytes, as on the wire */
#define CRP_CONFIG_EMAIL_MAX    255u  /* e-mail addresses: 254 bytes (RFC 5321) */
/* The longest line a file may have, newline excluded. */
#define CRP_CONFIG_LINE_MAX 16384u

#define CRP_Z85_KEY_LEN 40u /* a CURVE key in Z85 text */
#define CRP_KEY_BYTES   32u /* the same key in binary */

/* [scoring] action: what a tripped rule does. */
typedef enum crp_action {
    CRP_ACTION_RESTRICT = 0,       /* restrict until released */
    CRP_ACTION_RESTRICT_TODAY = 1, /* restrict until the end of the UTC day */
    CRP_ACTION_ALERT_ONLY = 2,     /* alert, never restrict */
} crp_action;

/* Admin roles (PROTOCOL.md section 5). The first two may change state; the
 * others only read. */
typedef enum crp_role {
    CRP_ROLE_ORGANIZATION_MANAGEMENT = 0,
    CRP_ROLE_SECURITY_ADMINISTRATOR = 1,
    CRP_ROLE_GLOBAL_READER = 2,
    CRP_ROLE_SECURITY_READER = 3,
    CRP_ROLE_VIEW_ONLY_ORGANIZATION_MANAGEMENT = 4,
} crp_role;

/* One [identity NAME] section: an admin client's CURVE key and its rights.
 * Names use A-Z a-z 0-9 and . _ - @ + only. */
typedef struct crp_identity {
    char name[CRP_CONFIG_NAME_MAX];
    char public_key[CRP_Z85_KEY_LEN + 1];  /* Z85 text, as in the file */
    uint8_t public_key_bin[CRP_KEY_BYTES]; /* the same key decoded, for ZAP */
    crp_role role;
    bool any_tenant;                    /* tenant = *: every tenant */
    char tenant[CRP_CONFIG_TENANT_MAX]; /* the scope when !any_tenant ("" allowed) */
    char email[CRP_CONFIG_EMAIL_MAX];   /* "" when not given */
} crp_identity;

/* The whole configuration. Defaults are those of PROTOCOL.md section 6. */
typedef struct crp_config {
    struct {
        uint64_t max_connectors;                /* power of two, 64..2^30; 1048576 */
        char shm_name[CRP_CONFIG_SHM_NAME_MAX]; /* "" = none; else "/x", one '/'; "/connrep" */
        char state_dir[CRP_CONFIG_PATH_MAX];    /* non-empty; "./var/lib/connrep" */
        unsigned shards;                        /* writer threads, power of two 1..64; 2 */
        uint64_t snapshot_every_ms;             /* 0 = off; 5 min */
    } engine;
    struct {
        char bind[CRP_CONFIG_LIST_MAX];    /* "ipc://./var/run/connrep/feed" */
        char connect[CRP_CONFIG_LIST_MAX]; /* PUB producers to subscribe to; "" */
        uint64_t max_frame_bytes;          /* 64 B..256 MiB; 4 MiB */
    } feed;
    struct {
        char bind[CRP_CONFIG_LIST_MAX]; /* "ipc://./var/run/connrep/lookup" */
    } lookup;
    struct {
        char bind[CRP_CONFIG_LIST_MAX]; /* "ipc://./var/run/connrep/events" */
    } events;
    struct {
        char bind[CRP_CONFIG_LIST_MAX];            /* "ipc://./var/run/connrep/admin" */
        char secret_key_file[CRP_CONFIG_PATH_MAX]; /* "./var/lib/connrep/admin.key" */
    } admin;
    struct {
        uint64_t half_life_ms;          /* > 0; 1h */
        double min_messages;            /* >= 0; 20 */
        double spam_ratio;              /* (0, 1]; 0.5 */
        double phish_ratio;             /* (0, 1]; 0.1 */
        double high_confidence_phish;   /* > 0; 3 */
        double malware;                 /* > 0; 3 */
        uint64_t recipients_per_hour;   /* 1..2^53; 10000 */
        uint64_t recipients_per_day;    /* >= recipients_per_hour, <= 2^53; 100000 */
        crp_action action;              /* restrict */
        uint64_t auto_release_after_ms; /* 0 = only an admin releases; 0 */
        uint64_t probation_ms;          /* 0 = no probation; 24h */
        double probation_factor;        /* (0, 1]; 0.5 */
    } scoring;
    struct {
        bool enabled;                         /* true; needs audit.enabled */
        bool email;                           /* true */
        char recipients[CRP_CONFIG_LIST_MAX]; /* "TenantAdmins" or addresses; "TenantAdmins" */
        unsigned daily_limit;                 /* 1..3 per connector per UTC day; 3 */
        char notify_command[CRP_CONFIG_COMMAND_MAX]; /* /bin/sh -c; "" = none */
    } alerts;
    struct {
        bool enabled; /* true */
    } audit;
    crp_identity *identities; /* in file order; owned by the struct */
    size_t n_identities;
    size_t identities_cap; /* private: allocated length */
} crp_config;

/* Fills *cfg with the built-in defaults and no identities. Overwrites the
 * struct without freeing anything: call it on fresh or finalized memory. */
void crp_config_defaults(crp_config *cfg);

/* Loads a configuration: defaults first, then the file at `path` on top.
 * `path` NULL means "no file": *cfg gets the defaults and CRP_OK.
 * Returns CRP_OK, CRP_CONFIG (bad file or value; errbuf says where and why,
 * e.g. "connrep.conf:12: [scoring] half_life: expected a duration ..., got
 * '10'"), or CRP_NOMEM. On any error *cfg holds the defaults and no
 * identities. *cfg must not hold identities on entry (its previous content is
 * overwritten, not freed): to keep an old configuration when a reload fails,
 * load into a second struct and swap on success. errbuf may be NULL; the
 * message is truncated to errlen. Blocks on file I/O; any thread, one call
 * per struct at a time. */
crp_err crp_config_load(crp_config *cfg, const char *path, char *errbuf, size_t errlen);

/* A plausible mailbox, as [identity] email and [alerts] recipients take
 * it: something, '@', something; no blanks, commas, semicolons or control
 * characters. Deliverability is the mail system's business. */
bool crp_config_is_email(const char *s, size_t n);

/* Frees the identity array and empties it; the other fields stay valid.
 * NULL-safe, idempotent. */
void crp_config_fini(crp_config *cfg);

/* Writes the effective configuration in INI form, every key of every section
 * and one [identity NAME] section per identity, such that loading the output
 * gives an equal configuration (used by `connrepd --check-config`). Returns 0,
 * or -1 with errno set: the write failed, or EINVAL if a field was changed
 * in memory to a value the file syntax cannot carry (a line break, or ';'
 * after whitespace). Does not flush or close f. */
int crp_config_dump(const crp_config *cfg, FILE *f);

/* Parses a duration as in the file ("500ms", "30s", "1.5h", "7d", "0").
 * Returns CRP_OK and *ms, or CRP_INVAL (no unit on a non-zero number, not a
 * whole number of milliseconds, overflow, sign, blanks, trailing bytes) with
 * *ms untouched. Pure function, any thread. */
crp_err crp_config_parse_duration(const char *s, uint64_t *ms);

/* Parses a size as in the file ("4MiB", "65536", "512B"). Returns CRP_OK and
 * *bytes, or CRP_INVAL (as above) with *bytes untouched. Any thread. */
crp_err crp_config_parse_size(const char *s, uint64_t *bytes);

/* The identity whose public key is `key` (CRP_KEY_BYTES binary bytes, as a
 * ZAP request carries it), or NULL. The pointer lives as long as *cfg is
 * neither finalized nor changed. Read-only; any thread. */
const crp_identity *crp_config_identity_by_key(const crp_config *cfg, const uint8_t *key);

/* The spelling used in the file ("SecurityAdministrator", "restrict_today");
 * static strings, "?" for an out-of-range value. */
const char *crp_role_name(crp_role role);
const char *crp_action_name(crp_action action);

#endif
