/* The admin client side: one CURVE request and its reply, for the connrep
 * CLI and ops tools (see crp/admin.h). */
#include "crp/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

crp_err crp_admin_request(const char *endpoint, const char *server_key, const char *secret_key,
                          const char *public_key, int timeout_ms, const char *body, char **reply,
                          char *errbuf, size_t errlen)
{
    void *ctx = zmq_ctx_new(), *s = NULL;
    int zero = 0;
    crp_err err = CRP_SYS;
    zmq_msg_t m;

    *reply = NULL;
    if (ctx == NULL) {
        snprintf(errbuf, errlen, "cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        return CRP_SYS;
    }
    s = zmq_socket(ctx, ZMQ_DEALER);
    /* LINGER 0 and both timeouts: a refused CURVE handshake never completes,
     * and without them a send or the final close would wait forever. */
    if (s == NULL || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof(timeout_ms)) != 0 ||
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms)) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, CRP_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, public_key, CRP_Z85_KEY_LEN) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, secret_key, CRP_Z85_KEY_LEN) != 0) {
        snprintf(errbuf, errlen, "cannot set up the CURVE client socket: %s", zmq_strerror(errno));
        goto out_close;
    }
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(errbuf, errlen, "cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        goto out_close;
    }
    err = CRP_TIMEOUT;
    snprintf(errbuf, errlen,
             "no answer from %s within %d ms (engine down, or this key is not authorised)",
             endpoint, timeout_ms);
    if (zmq_send(s, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(s, body, strlen(body), 0) < 0)
        goto out_close;
    zmq_msg_init(&m);
    for (;;) {
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            goto out_close;
        }
        /* Skip the empty delimiter the server echoes back. */
        if (!zmq_msg_more(&m))
            break;
    }
    *reply = malloc(zmq_msg_size(&m) + 1);
    if (*reply != NULL) {
        memcpy(*reply, zmq_msg_data(&m), zmq_msg_size(&m));
        (*reply)[zmq_msg_size(&m)] = '\0';
        err = CRP_OK;
        if (errlen > 0)
            errbuf[0] = '\0';
    } else {
        err = CRP_NOMEM;
        snprintf(errbuf, errlen, "out of memory");
    }
    zmq_msg_close(&m);
out_close:
    if (s != NULL)
        zmq_close(s);
    zmq_ctx_term(ctx);
    return err;
}
