/* File helpers shared by the journal and the snapshot writer (private to
 * core). Both go through a crp_io_ops table so tests can inject faults. */
#ifndef CRP_IO_PRIV_H
#define CRP_IO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "crp/journal.h"

/* Little-endian fields of the on-disk formats, byte by byte so they read
 * the same on any host and at any alignment. */
static inline void le_put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void le_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void le_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint16_t le_get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le_get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t le_get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Writes all of buf at off. A short write is continued (the disk may have
 * filled up in the middle, and the next call then says so); returns 0 or
 * -1 with errno. */
int crp_io_write_all(const crp_io_ops *io, int fd, const void *buf, size_t len, uint64_t off);

/* Makes a directory's entries durable. Returns NULL, or the name of the
 * call that failed (errno tells why), for the alarm's message. */
const char *crp_io_fsync_dir(const crp_io_ops *io, const char *dir);

#endif
