/* connrep wire codecs: the byte formats of the feed (verdict producers ->
 * engine) and of lookups (relay workers <-> engine), as specified in
 * docs/protocol.md.
 *
 * Everything here is a pure function over caller-owned memory. Nothing
 * allocates, nothing blocks, nothing touches a socket, and nothing keeps
 * state between calls, so every function may be called from any thread and
 * the decoders can be fuzzed directly.
 *
 * Decoders read at most `len` bytes from `buf`, never more, whatever the
 * bytes say; they validate the whole message before reporting success, and
 * the iterators that walk a message afterwards rely on that validation. Every
 * decoded pointer (connector id, tenant, SMTP text) points into the caller's
 * buffer and is valid only as long as that buffer is.
 *
 * Encoders write at most `cap` bytes and report 0 (or false) when the message
 * does not fit or a field is outside its range: they never produce a message
 * that the matching decoder would reject.
 *
 * All integers on the wire are little-endian and are read and written byte by
 * byte, so the codecs work on any host and with any buffer alignment.
 */
#ifndef CRP_WIRE_H
#define CRP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crp/err.h"

/* Limits shared by every message: a connector id is 1..255 bytes, a tenant
 * 0..64 bytes. */
#define CRP_WIRE_ID_MAX     255u
#define CRP_WIRE_TENANT_MAX 64u

/* ------------------------------------------------------------------------
 * Feed frames (docs/protocol.md section 1).
 * ------------------------------------------------------------------------ */

#define CRP_FEED_MAGIC       "CRF1"
#define CRP_FEED_VERSION     1u
#define CRP_FEED_HEADER_SIZE 28u
/* An event is this fixed part followed by the id and tenant bytes. */
#define CRP_FEED_EVENT_MIN_SIZE 14u
#define CRP_FEED_EVENT_MAX_SIZE (CRP_FEED_EVENT_MIN_SIZE + CRP_WIRE_ID_MAX + CRP_WIRE_TENANT_MAX)
#define CRP_FEED_COUNT_MAX      65535u
/* Default of `[feed] max_frame_bytes`. */
#define CRP_FEED_MAX_FRAME_DEFAULT (4u * 1024u * 1024u)

/* Verdict bits of an event; bits 6..15 are reserved and must be 0. */
#define CRP_FEED_VERDICT_SPAM     0x0001u
#define CRP_FEED_VERDICT_HC_SPAM  0x0002u
#define CRP_FEED_VERDICT_PHISH    0x0004u
#define CRP_FEED_VERDICT_HC_PHISH 0x0008u
#define CRP_FEED_VERDICT_MALWARE  0x0010u
#define CRP_FEED_VERDICT_BULK     0x0020u
#define CRP_FEED_VERDICT_MASK     0x003fu

/* Why a feed frame was rejected. The names are the wire-visible reason names
 * (stats keys, logs); the values index counter arrays of
 * CRP_FEED_REASON_LIMIT elements (element 0, CRP_FEED_OK, stays unused).
 * Which reason wins when several apply is fixed by crp_feed_decode(). */
#define CRP_FEED_REASON_MAP(X)                                                                     \
    X(BAD_MAGIC, bad_magic)                                                                        \
    X(BAD_VERSION, bad_version)                                                                    \
    X(TRUNCATED, truncated)                                                                        \
    X(TRAILING_BYTES, trailing_bytes)                                                              \
    X(BAD_COUNT, bad_count)                                                                        \
    X(BAD_ID_LENGTH, bad_id_length)                                                                \
    X(BAD_TENANT_LENGTH, bad_tenant_length)                                                        \
    X(BAD_RECIPIENTS, bad_recipients)                                                              \
    X(RESERVED_BITS, reserved_bits)                                                                \
    X(OVERSIZE, oversize)

/* clang-format off */
typedef enum crp_feed_reason {
    CRP_FEED_OK = 0,
#define CRP_FEED_REASON_ENUM(name, text) CRP_FEED_##name,
    CRP_FEED_REASON_MAP(CRP_FEED_REASON_ENUM)
#undef CRP_FEED_REASON_ENUM
    CRP_FEED_REASON_LIMIT /* one past the last reason */
} crp_feed_reason;
/* clang-format on */

/* Returns the reason's wire name ("bad_magic"), "ok" for CRP_FEED_OK and
 * "unknown" for any other value; never NULL, always a static string. */
const char *crp_feed_reason_name(int reason);

/* One event. Decoding: id and tenant point into the frame and are not
 * NUL-terminated. Encoding: the caller's fields, copied into the frame. */
typedef struct crp_feed_event {
    uint64_t ts_ms;      /* ms since the epoch; 0 = time of receipt */
    uint16_t verdict;    /* CRP_FEED_VERDICT_* bits */
    uint16_t recipients; /* 1..65535 */
    const char *id;      /* id_len bytes */
    size_t id_len;       /* 1..CRP_WIRE_ID_MAX */
    const char *tenant;  /* tenant_len bytes; may be NULL when tenant_len is 0 */
    size_t tenant_len;   /* 0..CRP_WIRE_TENANT_MAX */
} crp_feed_event;

/* A decoded frame header. Members ending in '_' are private. */
typedef struct crp_feed_header {
    uint64_t producer; /* 0 = anonymous */
    uint64_t seq;      /* 0 = unsequenced */
    uint32_t count;    /* number of events */
    const unsigned char *events_;
    size_t events_len_;
} crp_feed_header;

/* Walks the events of a successfully decoded frame. */
typedef struct crp_feed_iter {
    const unsigned char *p_;
    uint32_t left_;
} crp_feed_iter;

/* Validates the whole frame buf[0..len): header, every event, and that the
 * events end exactly at len. Returns CRP_FEED_OK or the first reason found,
 * checking in this order (docs/protocol.md, choice C1):
 *   oversize      len > max_frame_bytes (max_frame_bytes 0 = no limit)
 *   truncated     len < CRP_FEED_HEADER_SIZE
 *   bad_magic, bad_version,
 *   reserved_bits header flags != 0
 *   bad_count     count 0 or > 65535
 *   then each event in order: truncated (fixed part), reserved_bits
 *   (verdict), bad_recipients, bad_id_length, bad_tenant_length, truncated
 *   (id and tenant bytes);
 *   trailing_bytes after the last event.
 * Fills *hdr: on success entirely; on failure it is zeroed, except that
 * producer, seq and count are filled once a header with the right magic and
 * version has been read, so a rejection can be logged with its producer.
 * Allocates nothing; reads at most len bytes; buf may be NULL when len is 0. */
crp_feed_reason crp_feed_decode(const void *buf, size_t len, size_t max_frame_bytes,
                                crp_feed_header *hdr);

/* Starts a walk over the events of *hdr, which crp_feed_decode() must have
 * filled with success; after a failed decode the walk is empty. The frame
 * buffer must stay valid and unchanged during the walk. */
void crp_feed_iter_init(crp_feed_iter *it, const crp_feed_header *hdr);

/* Stores the next event in *ev and returns true, or returns false when all
 * `count` events have been returned. Does no validation: that was done by
 * crp_feed_decode(). */
bool crp_feed_next(crp_feed_iter *it, crp_feed_event *ev);

/* Writes the 28-byte frame header. Returns CRP_FEED_HEADER_SIZE, or 0 when
 * cap is too small or count is not 1..65535. */
size_t crp_feed_encode_header(void *buf, size_t cap, uint64_t producer, uint64_t seq,
                              uint32_t count);

/* Writes one event. Returns its size (CRP_FEED_EVENT_MIN_SIZE + id_len +
 * tenant_len), or 0 when it does not fit in cap or a field is out of range
 * (reserved verdict bits, recipients 0, id length not 1..255, tenant length
 * over 64, NULL id, NULL tenant with a non-zero length). */
size_t crp_feed_encode_event(void *buf, size_t cap, const crp_feed_event *ev);

/* Builds a frame in a caller's buffer without knowing the event count in
 * advance: init, add until it returns false or the batch is done, finish. */
typedef struct crp_feed_builder {
    unsigned char *buf_;
    size_t cap_;
    size_t len_;
    uint32_t count_;
} crp_feed_builder;

/* Starts a frame in buf. Returns false (and every later add fails) when cap
 * cannot hold a header. */
bool crp_feed_builder_init(crp_feed_builder *b, void *buf, size_t cap, uint64_t producer,
                           uint64_t seq);

/* Appends one event. Returns false, leaving the frame as it was, when the
 * event is invalid (as for crp_feed_encode_event()), does not fit, or the
 * frame already holds 65535 events. */
bool crp_feed_builder_add(crp_feed_builder *b, const crp_feed_event *ev);

/* Writes the event count into the header and returns the frame's length, or
 * 0 when the frame holds no event (a frame of 0 events is invalid). The
 * builder may be finished again after more adds. */
size_t crp_feed_builder_finish(crp_feed_builder *b);

/* ------------------------------------------------------------------------
 * Lookups (docs/protocol.md section 2).
 * ------------------------------------------------------------------------ */

#define CRP_LOOKUP_MAGIC       "CRQ1"
#define CRP_REPLY_MAGIC        "CRR1"
#define CRP_STATS_MAGIC        "CRS1"
#define CRP_LOOKUP_VERSION     1u
#define CRP_LOOKUP_HEADER_SIZE 14u
#define CRP_LOOKUP_COUNT_MAX   4096u
/* Largest valid request: every id 255 bytes. */
#define CRP_LOOKUP_REQ_MAX_SIZE                                                                    \
    (CRP_LOOKUP_HEADER_SIZE + CRP_LOOKUP_COUNT_MAX * (1u + CRP_WIRE_ID_MAX))
/* Request flag bit 0: include the SMTP text for restricted connectors. */
#define CRP_LOOKUP_FLAG_TEXT 0x0001u

#define CRP_REPLY_HEADER_SIZE     14u
#define CRP_REPLY_RESULT_MIN_SIZE 12u

/* The text a relay answers a restricted connector's message with. */
#define CRP_SMTP_TEXT     "550 5.7.711 Access denied, bad inbound connector. AS(2204)"
#define CRP_SMTP_TEXT_LEN (sizeof(CRP_SMTP_TEXT) - 1u)

/* Reply status, as on the wire. */
typedef enum crp_lookup_status {
    CRP_LOOKUP_OK = 0,
    CRP_LOOKUP_MALFORMED = 1,
    CRP_LOOKUP_OVERLOADED = 2,
    CRP_LOOKUP_UNSUPPORTED = 3,
} crp_lookup_status;

/* A decoded lookup request. Members ending in '_' are private. */
typedef struct crp_lookup_req {
    uint32_t request_id; /* echoed in the reply */
    uint16_t flags;      /* CRP_LOOKUP_FLAG_* (other bits are ignored) */
    uint16_t count;      /* number of ids, 1..4096 */
    const unsigned char *ids_;
    size_t ids_len_;
} crp_lookup_req;

typedef struct crp_lookup_iter {
    const unsigned char *p_;
    uint32_t left_;
} crp_lookup_iter;

/* One id to look up, for the client-side encoder. */
typedef struct crp_lookup_id {
    const char *id;
    size_t len; /* 1..255 */
} crp_lookup_id;

/* Validates the whole request buf[0..len) and returns the status the engine
 * answers with:
 *   CRP_LOOKUP_MALFORMED   len < 14 or bad magic; request_id is 0;
 *   CRP_LOOKUP_UNSUPPORTED version != 1; request_id is the 4 bytes at
 *                          offset 8, echoed;
 *   CRP_LOOKUP_MALFORMED   count 0 or > 4096, an id length 0, an id cut
 *                          short, or bytes after the last id; request_id and
 *                          flags are filled (the header was sound);
 *   CRP_LOOKUP_OK          *req entirely filled.
 * Never returns CRP_LOOKUP_OVERLOADED: that is the engine's decision. A stats
 * request ("CRS1") is not a lookup request; test it with
 * crp_lookup_is_stats() first. Allocates nothing; reads at most len bytes. */
crp_lookup_status crp_lookup_decode(const void *buf, size_t len, crp_lookup_req *req);

/* Starts a walk over the ids of *req; empty unless crp_lookup_decode()
 * returned CRP_LOOKUP_OK for it. */
void crp_lookup_iter_init(crp_lookup_iter *it, const crp_lookup_req *req);

/* Stores the next id (pointing into the request, not NUL-terminated) and
 * returns true, or returns false after the last. */
bool crp_lookup_next_id(crp_lookup_iter *it, const char **id, size_t *len);

/* Returns true when buf[0..len) is a stats request: exactly the 4 bytes
 * "CRS1". Reads at most len bytes. */
bool crp_lookup_is_stats(const void *buf, size_t len);

/* Client side: writes a request for ids[0..n). Returns its length, or 0 when
 * it does not fit in cap (CRP_LOOKUP_REQ_MAX_SIZE always suffices), n is not
 * 1..4096, flags does not fit 16 bits, or an id is NULL or not 1..255
 * bytes. */
size_t crp_lookup_encode_req(void *buf, size_t cap, unsigned flags, uint32_t request_id,
                             const crp_lookup_id *ids, size_t n);

/* Engine side: writes a reply into a caller's buffer. Members are private. */
typedef struct crp_reply_writer {
    unsigned char *buf_;
    size_t cap_;
    size_t len_;
    uint16_t status_;
    uint16_t count_;
} crp_reply_writer;

/* Returns the size of an ok reply with `count` results (count <= 4096), each
 * carrying CRP_SMTP_TEXT when with_text is true: a buffer of this size always
 * holds the reply. */
size_t crp_reply_max_size(size_t count, bool with_text);

/* Starts a reply with the given status (0..3) and request id. Returns false
 * (and every later call fails) when cap < 14 or status is out of range. A
 * reply with status != 0 takes no results: finish it directly. */
bool crp_reply_begin(crp_reply_writer *w, void *buf, size_t cap, int status, uint32_t request_id);

/* Appends one result. For state 2 (restricted) it writes reasons, since_ms
 * and text (NUL-terminated, or NULL for none; pass CRP_SMTP_TEXT when the
 * request had CRP_LOOKUP_FLAG_TEXT). For any other state it writes reasons
 * 0, since 0 and no text, whatever is passed, so a table verdict can be
 * passed as is. Returns false, writing nothing, when the status is not 0,
 * 4096 results are already written, state is not 0..3, reasons has bits
 * other than 0..5, the text is longer than 65535 bytes, or it does not fit. */
bool crp_reply_add(crp_reply_writer *w, int state, unsigned reasons, uint64_t since_ms,
                   const char *text);

/* Writes the result count into the header and returns the reply's length,
 * or 0 when begin failed or an ok reply holds no result. */
size_t crp_reply_finish(crp_reply_writer *w);

/* A decoded reply. Members ending in '_' are private. */
typedef struct crp_reply {
    uint16_t status;     /* crp_lookup_status */
    uint32_t request_id; /* as sent in the request */
    uint16_t count;      /* results; 0 when status != 0 */
    const unsigned char *results_;
    size_t results_len_;
} crp_reply;

/* One result of a reply; text points into the reply, not NUL-terminated. */
typedef struct crp_reply_result {
    uint8_t state;     /* 0 unknown, 1 active, 2 restricted, 3 probation */
    uint8_t reasons;   /* reason bits, as received */
    uint64_t since_ms; /* as received */
    const char *text;  /* text_len bytes; non-empty only for state 2 */
    size_t text_len;
} crp_reply_result;

typedef struct crp_reply_iter {
    const unsigned char *p_;
    uint32_t left_;
} crp_reply_iter;

/* Client side: validates the whole reply buf[0..len). Returns CRP_OK, or
 * CRP_PROTO when the magic or version is wrong, the status is not 0..3, the
 * count is not 1..4096 for status 0 or not 0 otherwise, a result has a state
 * over 3 or a text on a state other than 2, a result is cut short, or bytes
 * follow the last result. It does not know the request: the caller checks
 * that request_id and count match what it sent. Fills *rep (zeroed on
 * failure, except status and request_id once a sound header was read).
 * Allocates nothing; reads at most len bytes. */
crp_err crp_reply_decode(const void *buf, size_t len, crp_reply *rep);

/* Starts a walk over the results of *rep; empty unless crp_reply_decode()
 * returned CRP_OK for it. */
void crp_reply_iter_init(crp_reply_iter *it, const crp_reply *rep);

/* Stores the next result and returns true, or returns false after the last. */
bool crp_reply_next(crp_reply_iter *it, crp_reply_result *res);

#endif
