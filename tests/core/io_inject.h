/* Fault-injecting I/O for the persistence tests (test_journal.c,
 * test_snapshot.c): crp_io_ops that fail the Nth call of one kind, once or
 * from then on, with a chosen errno, and a power-loss model.
 *
 * The model: fsync and fdatasync do not reach the disk; they record the
 * file's size (by inode) as its durable size. inj_crash_file() then cuts a
 * file back to that size plus a random prefix of the bytes written after
 * it, as a power loss may. Only file contents are modelled; renames count
 * as durable once they return.
 *
 * One global state, for single-threaded tests (Criterion runs each test in
 * its own process).
 */
#ifndef CRP_TEST_IO_INJECT_H
#define CRP_TEST_IO_INJECT_H

#include <stdbool.h>
#include <sys/types.h>

#include "crp/journal.h"

enum fop { F_OPEN, F_WRITE, F_FSYNC, F_FDATASYNC, F_RENAME, F_FTRUNCATE, F_NOPS };
extern const char *const fop_name[F_NOPS];

#define INJ_FILES_MAX 256u

typedef struct inj_state {
    bool armed;
    enum fop op;
    unsigned at; /* fail the at-th call of op (1-based) */
    bool persistent;
    int err;
    bool partial; /* a failing write first writes half its bytes */
    unsigned calls[F_NOPS];
    unsigned failures;
    struct {
        ino_t ino;
        off_t size;
    } synced[INJ_FILES_MAX];
    unsigned nsynced;
} inj_state;

extern inj_state inj;
extern const crp_io_ops inj_ops;

/* Nothing armed, nothing counted, nothing synced. */
void inj_reset(void);
/* Resets, then arms: the at-th call of op fails (and every later one when
 * persistent) with err; at 0 arms nothing. */
void inj_arm(enum fop op, unsigned at, bool persistent, int err, bool partial);
/* Arms another fault (whole writes), keeping the record of what was
 * synced; the call counts start again. */
void inj_rearm(enum fop op, unsigned at, bool persistent, int err);
/* Power loss for one file (absent: nothing): it keeps its synced bytes and
 * a random prefix of the rest. */
void inj_crash_file(const char *path, unsigned *rng);

#endif
