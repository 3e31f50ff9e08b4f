/* libFuzzer target: the config loader (crp_config_load), fed the input as
 * the content of the file. The loader only takes a path, so the input is
 * written to a memfd once per run and loaded through /proc/self/fd/N: no
 * disk, and nothing left behind when the fuzzer is killed.
 *
 * Checked on every input, besides what the sanitizers catch:
 *  - the result is CRP_OK or CRP_CONFIG (CRP_NOMEM is not expected at these
 *    sizes), and an error leaves the defaults, no identities, and a message
 *    that names the file;
 *  - a loaded configuration dumps (crp_config_dump), and the dump loads back
 *    to a configuration whose dump is the same text: the round trip that
 *    `connrepd --check-config` promises;
 *  - identities are well formed (names, keys, roles, tenants in range).
 * The scalar parsers (durations, sizes) also get the first line of the
 * input directly.
 */
#define _GNU_SOURCE /* memfd_create */

#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crp/config.h"

#include "fuzz.h"

static int fd_in = -1, fd_dump = -1;
static char path_in[64], path_dump[64];
/* About 20 KiB each: static rather than on the stack. */
static crp_config cfg, again, defaults;

static int open_memfd(const char *name, char *path, size_t pathlen)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0) {
        perror("fuzz_config: memfd_create");
        abort();
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd_in = open_memfd("crp_fuzz_config", path_in, sizeof(path_in));
    fd_dump = open_memfd("crp_fuzz_config_dump", path_dump, sizeof(path_dump));
    crp_config_defaults(&defaults);
    return 0;
}

static void put(int fd, const void *data, size_t size)
{
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
}

/* Dumps c into memory and returns the text (malloc'd) and its length. */
static char *dump(const crp_config *c, size_t *len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);

    CHECK(f != NULL);
    CHECK(crp_config_dump(c, f) == 0);
    CHECK(fclose(f) == 0);
    *len = n;
    return text;
}

static void check_identities(const crp_config *c)
{
    CHECK(c->n_identities <= c->identities_cap);
    for (size_t i = 0; i < c->n_identities; i++) {
        const crp_identity *id = &c->identities[i];
        size_t n = strnlen(id->name, sizeof(id->name));
        CHECK(n >= 1 && n < sizeof(id->name));
        CHECK(strnlen(id->public_key, sizeof(id->public_key)) == CRP_Z85_KEY_LEN);
        CHECK((unsigned)id->role <= CRP_ROLE_VIEW_ONLY_ORGANIZATION_MANAGEMENT);
        CHECK(strnlen(id->tenant, sizeof(id->tenant)) < sizeof(id->tenant));
        CHECK(strnlen(id->email, sizeof(id->email)) < sizeof(id->email));
        CHECK(crp_config_identity_by_key(c, id->public_key_bin) != NULL);
    }
}

/* The scalar parsers on the first line, as a C string. */
static void check_scalars(const uint8_t *data, size_t size)
{
    char s[128];
    size_t n = 0;
    uint64_t v;

    while (n < size && n < sizeof(s) - 1 && data[n] != '\n' && data[n] != '\0')
        n++;
    memcpy(s, data, n);
    s[n] = '\0';
    if (crp_config_parse_duration(s, &v) == CRP_OK && v == 0)
        CHECK(s[0] == '0');
    (void)crp_config_parse_size(s, &v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512], err2[512];
    char *text, *text2;
    size_t len, len2;
    crp_err r;

    check_scalars(data, size);
    put(fd_in, data, size);
    r = crp_config_load(&cfg, path_in, err, sizeof(err));
    CHECK(r == CRP_OK || r == CRP_CONFIG);
    if (r != CRP_OK) {
        /* Nothing half-applied: the defaults, no identities. */
        CHECK(cfg.identities == NULL && cfg.n_identities == 0);
        CHECK(cfg.engine.max_connectors == defaults.engine.max_connectors);
        CHECK(strcmp(cfg.engine.state_dir, defaults.engine.state_dir) == 0);
        CHECK(strncmp(err, path_in, strlen(path_in)) == 0);
        crp_config_fini(&cfg);
        return 0;
    }
    check_identities(&cfg);

    /* The round trip: dump, load the dump, dump again. */
    text = dump(&cfg, &len);
    put(fd_dump, text, len);
    r = crp_config_load(&again, path_dump, err2, sizeof(err2));
    if (r != CRP_OK) {
        fprintf(stderr, "fuzz_config: the dump does not load back: %s\n--- dump:\n%s", err2, text);
        abort();
    }
    CHECK(again.n_identities == cfg.n_identities);
    text2 = dump(&again, &len2);
    if (len != len2 || memcmp(text, text2, len) != 0) {
        fprintf(stderr,
                "fuzz_config: the dump changes on a round trip\n--- first:\n%s"
                "--- second:\n%s",
                text, text2);
        abort();
    }
    free(text);
    free(text2);
    crp_config_fini(&again);
    crp_config_fini(&cfg);
    return 0;
}
