/* File helpers shared by the journal and the snapshot writer (private to
 * core). Both go through a crp_io_ops table so tests can inject faults. */
#ifndef CRP_IO_PRIV_H
#define CRP_IO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "crp/journal.h"

/* Writes all of buf at off. A short write is continued (the disk may have
 * filled up in the middle, and the next call then says so); returns 0 or
 * -1 with errno. */
int crp_io_write_all(const crp_io_ops *io, int fd, const void *buf, size_t len, uint64_t off);

/* Makes a directory's entries durable. Returns NULL, or the name of the
 * call that failed (errno tells why), for the alarm's message. */
const char *crp_io_fsync_dir(const crp_io_ops *io, const char *dir);

#endif
