/* Fault-injecting I/O with a power-loss model; see io_inject.h. */
#include "io_inject.h"

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const fop_name[F_NOPS] = {"open", "write", "fsync", "fdatasync", "rename", "ftruncate"};

inj_state inj;

void inj_reset(void)
{
    memset(&inj, 0, sizeof inj);
}

void inj_arm(enum fop op, unsigned at, bool persistent, int err, bool partial)
{
    inj_reset();
    inj_rearm(op, at, persistent, err);
    inj.armed = at > 0;
    inj.partial = partial;
}

void inj_rearm(enum fop op, unsigned at, bool persistent, int err)
{
    memset(inj.calls, 0, sizeof inj.calls);
    inj.armed = true;
    inj.op = op;
    inj.at = at;
    inj.persistent = persistent;
    inj.err = err;
    inj.partial = false;
}

static bool inj_fail(enum fop op)
{
    unsigned n = ++inj.calls[op];
    if (!inj.armed || op != inj.op)
        return false;
    if (n == inj.at || (inj.persistent && n > inj.at)) {
        inj.failures++;
        errno = inj.err;
        return true;
    }
    return false;
}

static void note_synced(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return;
    for (unsigned i = 0; i < inj.nsynced; i++) {
        if (inj.synced[i].ino == sb.st_ino) {
            inj.synced[i].size = sb.st_size;
            return;
        }
    }
    cr_assert(inj.nsynced < INJ_FILES_MAX);
    inj.synced[inj.nsynced].ino = sb.st_ino;
    inj.synced[inj.nsynced].size = sb.st_size;
    inj.nsynced++;
}

static int i_open(const char *path, int flags, mode_t mode)
{
    return inj_fail(F_OPEN) ? -1 : open(path, flags, mode);
}

static ssize_t i_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (inj_fail(F_WRITE)) {
        /* Disk full in the middle of a write: half of it lands. */
        int e = errno;
        if (inj.partial && len > 1)
            cr_assert(eq(sz, (size_t)pwrite(fd, buf, len / 2, off), len / 2));
        errno = e;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

/* The data goes to the page cache only: the model, not the disk, decides
 * what a crash keeps, and the suites stay fast. */
static int i_fsync(int fd)
{
    if (inj_fail(F_FSYNC))
        return -1;
    note_synced(fd);
    return 0;
}

static int i_fdatasync(int fd)
{
    if (inj_fail(F_FDATASYNC))
        return -1;
    note_synced(fd);
    return 0;
}

static int i_rename(const char *from, const char *to)
{
    return inj_fail(F_RENAME) ? -1 : rename(from, to);
}

static int i_ftruncate(int fd, off_t len)
{
    return inj_fail(F_FTRUNCATE) ? -1 : ftruncate(fd, len);
}

const crp_io_ops inj_ops = {
    .open = i_open,
    .pwrite = i_pwrite,
    .fsync = i_fsync,
    .fdatasync = i_fdatasync,
    .rename = i_rename,
    .ftruncate = i_ftruncate,
};

void inj_crash_file(const char *path, unsigned *rng)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return;
    off_t keep = 0;
    for (unsigned k = 0; k < inj.nsynced; k++)
        if (inj.synced[k].ino == sb.st_ino)
            keep = inj.synced[k].size;
    if (sb.st_size > keep) {
        *rng = *rng * 1103515245u + 12345u;
        off_t extra = (off_t)((*rng >> 8) % (unsigned)(sb.st_size - keep + 1));
        cr_assert(eq(int, truncate(path, keep + extra), 0));
    }
}
