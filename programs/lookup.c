/* connrep-lookup: asks an engine whether connectors may relay, the way a
 * relay worker does, through libconnrep. Also the smallest example of the
 * client API:
 *
 *     connrep_client *c = connrep_open("ipc://./var/run/connrep/lookup", 1000);
 *     connrep_result r;
 *     if (connrep_lookup(c, id, strlen(id), &r) == 0 && r.state == CONNREP_STATE_RESTRICTED)
 *         reject_with(r.smtp_text);
 *     connrep_close(&c);
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connrep.h"

static const char *const state_names[] = {"unknown", "active", "restricted", "probation"};

static void usage(FILE *f)
{
    fprintf(f, "usage: connrep-lookup [--endpoint EP] [--timeout MS] ID...\n"
               "\n"
               "Looks connector ids up and prints, for each, whether it may relay and, when\n"
               "restricted, the SMTP reply a relay must give. Exit status: 0 all may relay,\n"
               "1 at least one is restricted, 2 usage, 3 the engine did not answer.\n"
               "\n"
               "  --endpoint EP   ipc://PATH, tcp://HOST:PORT or shm:/NAME\n"
               "                  (default ipc://./var/run/connrep/lookup)\n"
               "  --timeout MS    reply timeout for ipc/tcp (default 1000)\n"
               "  --help          this text\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = "ipc://./var/run/connrep/lookup";
    int timeout_ms = 1000;
    static const struct option opts[] = {{"endpoint", required_argument, NULL, 'e'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "e:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 't': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 600000) {
                fprintf(stderr, "connrep-lookup: --timeout: expected 1..600000 ms, got '%s'\n",
                        optarg);
                return 2;
            }
            timeout_ms = (int)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind == argc) {
        usage(stderr);
        return 2;
    }

    connrep_client *client = connrep_open(endpoint, timeout_ms);
    if (client == NULL) {
        perror("connrep-lookup: connrep_open");
        return 3;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        size_t len = strlen(argv[i]);
        if (len == 0 || len > CONNREP_ID_MAX) {
            fprintf(stderr, "connrep-lookup: '%s': an id is 1..%d bytes\n", argv[i],
                    CONNREP_ID_MAX);
            status = status ? status : 2;
            continue;
        }
        connrep_result r;
        int err = connrep_lookup(client, argv[i], len, &r);
        if (err != 0) {
            fprintf(stderr, "connrep-lookup: %s: %s\n", endpoint, connrep_strerror(err));
            status = 3;
            break;
        }
        const char *name = r.state >= 0 && r.state <= 3 ? state_names[r.state] : "?";
        if (r.state == CONNREP_STATE_RESTRICTED) {
            printf("%s\t%s\trefuse: %s\n", argv[i], name, r.smtp_text);
            status = status ? status : 1;
        } else {
            printf("%s\t%s\tallow\n", argv[i], name);
        }
    }
    connrep_close(&client);
    return status;
}
