/* The journal: an append-only file of checksummed records, one per state
 * change that must survive a crash (restrict, unblock, manual block,
 * release, probation end, alert-policy edit).
 *
 * Contract. A change is durable once crp_journal_commit() has returned
 * CRP_OK for it; the engine acknowledges a change to an admin, or publishes
 * it on the events socket, only after that. Appends are buffered in memory
 * and a commit writes and fdatasyncs all of them at once (group commit), so
 * the loss window on power failure is "everything appended since the last
 * successful commit" — and none of that was acknowledged.
 *
 * Records carry the connector's state after the change (absolute, not a
 * delta), so replaying a record whose effect a snapshot already holds is
 * harmless: replay over a snapshot taken while writers ran converges on
 * the same state.
 *
 * Failure. A failed write, fdatasync, fsync or rename marks the journal
 * failed: the call returns CRP_IO, and every later append and commit returns
 * CRP_IO without touching the file. The journal never retries an fsync on
 * the same data (after a failed fsync the kernel may have dropped the dirty
 * pages and a second fsync can succeed without writing them). It recovers
 * only through crp_journal_rotate() after a successful snapshot, which
 * writes a fresh file. crp_journal_failed(), crp_journal_errno() and
 * crp_journal_stats_get() expose the state for the alarm (log line, stats
 * counter, event).
 *
 * Files in the state directory (see also crp/snapshot.h):
 *
 *   journal        the current segment; appended to
 *   journal.prev   the segment before it, kept until the next rotation
 *   journal.tmp    a segment being built by a rotation
 *   snapshot       the newest snapshot, covering journal sequence S
 *   snapshot.prev  the snapshot before it, covering P <= S
 *
 * Every record has a sequence number, one counter across all segments,
 * starting at 1. A segment starts with a header naming its base: the first
 * record in it has exactly that sequence, and the following ones are
 * consecutive. A rotation after a snapshot covering C starts the new segment
 * at min(C, last durable sequence) + 1 and copies into it every record the
 * old segment holds from there on (those appended while the snapshot was
 * being written, and, after a failure, the batch that failed). Hence:
 *
 *   - `journal` alone holds every record after `snapshot`'s sequence S, and
 *   - `journal.prev` followed by `journal` holds every record after
 *     `snapshot.prev`'s sequence P, without a hole,
 *
 * so a start-up that finds `snapshot` corrupt can load `snapshot.prev` and
 * replay more journal. crp_journal_open() decides by itself whether it needs
 * `journal.prev` (only when `journal`'s base is above from_seq + 1) and
 * refuses with CRP_BADFILE, naming the missing sequence range, when the two
 * segments do not reach back to from_seq: it never replays across a hole.
 *
 * The snapshot and the rotation must happen in that order: write the
 * snapshot (crp_snapshot_write returns CRP_OK), then crp_journal_rotate()
 * with the same covered sequence. A crash between the two is harmless.
 *
 * Record format, little-endian. Header, 25 bytes:
 *   magic u32 "CRPR", length u32 (payload bytes), checksum u64, sequence
 *   u64, type u8
 * The checksum is XXH3-64 of bytes [16, 25 + length) (sequence, type,
 * payload) seeded with (length << 32 | magic), so it covers every byte of
 * the record except itself.
 *
 * Threads. A journal belongs to one thread at a time; no function here is
 * safe to call concurrently on the same journal. All of them may block on
 * disk I/O. The module starts no threads.
 */
#ifndef CRP_JOURNAL_H
#define CRP_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crp/err.h"
#include "crp/table.h"

#define CRP_JOURNAL_FILE "journal"
#define CRP_JOURNAL_PREV "journal.prev"
#define CRP_JOURNAL_TMP  "journal.tmp"

#define CRP_JOURNAL_ACTOR_MAX   64u
#define CRP_JOURNAL_COMMENT_MAX 1024u
/* The largest POLICY payload accepted; a length above the largest valid
 * record marks a header as garbage without reading further. */
#define CRP_JOURNAL_POLICY_MAX (1u << 20)

/* ------------------------------------------------------------------------ */
/* Injectable I/O                                                            */
/* ------------------------------------------------------------------------ */

/* The calls through which the journal and the snapshot change the disk.
 * Production uses crp_io_posix(); tests substitute functions that fail on
 * the Nth call with ENOSPC or EIO, once or from then on. Each member has
 * the POSIX function's contract (return value, errno). Reads are not
 * injected: a read error is reported like any other, and the interesting
 * failures are the ones that lose writes. */
typedef struct crp_io_ops {
    int (*open)(const char *path, int flags, mode_t mode);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*fsync)(int fd);     /* new files, directories */
    int (*fdatasync)(int fd); /* journal commits */
    int (*rename)(const char *from, const char *to);
    int (*ftruncate)(int fd, off_t len);
} crp_io_ops;

/* The real system calls. Static storage; never NULL. */
const crp_io_ops *crp_io_posix(void);

/* ------------------------------------------------------------------------ */
/* Records                                                                   */
/* ------------------------------------------------------------------------ */

enum crp_journal_type {
    CRP_JOURNAL_STATE = 1,  /* a connector's state change */
    CRP_JOURNAL_POLICY = 2, /* opaque bytes, e.g. the alert policy as JSON */
};

/* A connector's state after a change. The strings are not NUL-terminated.
 * On append they are borrowed for the duration of the call; on replay they
 * point into the journal's read buffer and are valid only during the
 * callback. */
typedef struct crp_journal_state {
    const char *id; /* 1..CRP_ID_MAX bytes */
    uint8_t id_len;
    uint8_t tenant_len; /* 0..CRP_TENANT_MAX */
    const char *tenant;
    uint8_t state;   /* enum crp_state after the change */
    uint8_t reasons; /* enum crp_reason bits after the change */
    uint8_t kind;    /* enum crp_transition_kind (crp/scoring.h) */
    bool until_midnight;
    uint64_t since_ms;    /* the entry's since_ms after the change */
    uint64_t at_ms;       /* when the change took effect */
    const char *actor;    /* who: an admin identity, or "engine"; may be empty */
    uint8_t actor_len;    /* 0..CRP_JOURNAL_ACTOR_MAX */
    uint16_t comment_len; /* 0..CRP_JOURNAL_COMMENT_MAX */
    const char *comment;
} crp_journal_state;

typedef struct crp_journal_rec {
    uint64_t seq; /* ignored by append (it assigns one); set on replay */
    uint8_t type; /* enum crp_journal_type; selects the member below */
    crp_journal_state state;
    const void *policy; /* POLICY: 0..CRP_JOURNAL_POLICY_MAX bytes */
    uint32_t policy_len;
} crp_journal_rec;

/* Called by crp_journal_open() for every record after from_seq, in
 * sequence order. Returning anything but CRP_OK stops the open with that
 * error. */
typedef crp_err crp_journal_replay_fn(void *ctx, const crp_journal_rec *rec);

/* ------------------------------------------------------------------------ */
/* Journal                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct crp_journal crp_journal;

typedef struct crp_journal_opts {
    /* The covered sequence of the snapshot the caller loaded (0 with no
     * snapshot): records up to it are skipped, every later one replayed. */
    uint64_t from_seq;
    crp_journal_replay_fn *replay; /* may be NULL */
    void *ctx;
    const crp_io_ops *io; /* NULL = crp_io_posix() */
} crp_journal_opts;

typedef struct crp_journal_stats {
    uint64_t last_seq;      /* last sequence appended (0 = none ever) */
    uint64_t durable_seq;   /* last sequence known to be on disk */
    uint64_t segment_base;  /* first sequence of the current segment */
    uint64_t segment_bytes; /* durable size of the current segment */
    uint64_t pending;       /* records appended but not yet committed */
    uint64_t replayed;      /* records delivered by open */
    uint64_t tail_cut;      /* bytes of torn tail cut off by open */
    uint64_t appended;
    uint64_t commits;       /* successful commits that wrote something */
    uint64_t bytes_written; /* by successful commits */
    uint64_t rotations;     /* successful rotations */
    uint64_t io_errors;     /* failed writes, syncs, renames and opens */
    bool failed;
    int failed_errno;      /* errno of the failure that marked it failed */
    const char *failed_op; /* "write", "fdatasync", ...; "" when healthy */
} crp_journal_stats;

/* Opens (or, in an empty directory with from_seq 0, creates) the journal
 * in `dir`, validates it, and replays through opts->replay every record
 * with a sequence above opts->from_seq, in order, reading journal.prev
 * first when journal alone does not reach back that far.
 *
 *  - A torn last record (short, or failing its checksum with no valid
 *    record after it) is cut off with ftruncate and fsync; the call returns
 *    CRP_OK with a warning in errbuf naming the file and the offset. The
 *    caller logs a non-empty errbuf. A torn tail in journal.prev is
 *    reported but left in place (the file is never written again).
 *  - A record that fails its checksum while a valid record follows it, a
 *    sequence out of order, a bad segment header, or a hole between the
 *    snapshot's sequence and the journal returns CRP_BADFILE with errbuf
 *    naming the file and the byte offset; nothing is truncated.
 *  - A journal.tmp left by an interrupted rotation is completed (renamed to
 *    journal) when journal is missing, and removed otherwise.
 *  - When from_seq is beyond every record in journal (the snapshot got
 *    ahead of a failed journal), a new segment based at from_seq + 1 is
 *    started, so sequences never repeat.
 *  - A write-side failure after validation (cutting the tail, creating the
 *    first segment, starting that new segment) does not stop the open: it
 *    returns CRP_OK with the journal already failed and errbuf saying why,
 *    so the engine serves lookups and raises the alarm; the rotation after
 *    the next snapshot repairs it.
 *
 * Returns CRP_OK and *out; CRP_BADFILE; CRP_IO when the journal cannot be
 * opened or read (errbuf says which call failed and why); CRP_NOMEM;
 * CRP_INVAL; or the replay callback's error. Blocks on disk I/O. The caller
 * owns the journal. */
crp_err crp_journal_open(crp_journal **out, const char *dir, const crp_journal_opts *opts,
                         char *errbuf, size_t errlen);

/* Closes the file and frees the journal. Records appended but not
 * committed are dropped, exactly as a crash would drop them. NULL-safe;
 * sets *jp = NULL. */
void crp_journal_close(crp_journal **jp);

/* Encodes rec into the commit buffer and assigns it the next sequence
 * (*seq, when not NULL). Nothing reaches the disk until the next commit.
 * Returns CRP_OK; CRP_INVAL for a bad type or a field over its limit
 * (nothing is buffered); CRP_IO when the journal has failed; CRP_NOMEM. */
crp_err crp_journal_append(crp_journal *j, const crp_journal_rec *rec, uint64_t *seq);

/* Writes every record appended since the last commit and fdatasyncs the
 * file. CRP_OK means all of them are on disk. CRP_IO means none of them
 * may be acknowledged: the journal is failed from now on. A commit with
 * nothing appended returns CRP_OK (or CRP_IO when failed) without I/O. */
crp_err crp_journal_commit(crp_journal *j);

/* Starts a new segment after a snapshot covering `covered_seq` has been
 * written successfully: builds journal.tmp (header, then every record from
 * min(covered_seq, durable) + 1 on, including appended ones not yet
 * committed), fsyncs it, renames journal to journal.prev, fsyncs the
 * directory, renames journal.tmp to journal and fsyncs the directory again.
 *
 * On CRP_OK every record appended so far is durable (as after a commit) and
 * a failed journal is healthy again. On CRP_IO the journal is failed (also
 * when it was healthy: a half-done rotation must not be appended to); the
 * files on disk are still a consistent set, and a later rotation after the
 * next snapshot retries. CRP_INVAL when covered_seq is beyond the last
 * appended sequence or before the current segment's base. Blocks. */
crp_err crp_journal_rotate(crp_journal *j, uint64_t covered_seq);

/* The state an alarm needs. Cheap; no I/O. */
bool crp_journal_failed(const crp_journal *j);
int crp_journal_errno(const crp_journal *j); /* 0 when healthy */
/* The last sequence appended (0 when none ever was). A snapshot's covered
 * sequence is this value, read before the snapshot walks the table, by the
 * thread that appends, after the changes it covers were applied to the
 * table. */
uint64_t crp_journal_last_seq(const crp_journal *j);
/* A sentence naming the file, the call and the errno of the failure that
 * marked the journal failed, for the alarm's log line; "" when healthy. */
const char *crp_journal_error(const crp_journal *j);
void crp_journal_stats_get(const crp_journal *j, crp_journal_stats *out);

#endif
