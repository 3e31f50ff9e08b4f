/* Snapshots: the whole connector table (states and scores) in one file,
 * written without stopping the writers, so that a restart is "load the
 * snapshot, replay the journal after it".
 *
 * Files in the state directory (the journal's are in crp/journal.h):
 *
 *   snapshot.tmp   being written
 *   snapshot       the newest complete snapshot
 *   snapshot.prev  the one before it
 *
 * Writing: snapshot.tmp is written and fsynced; `snapshot` is renamed to
 * `snapshot.prev` and the directory fsynced; snapshot.tmp is renamed to
 * `snapshot` and the directory fsynced again. A crash at any point leaves
 * either the old pair, or `snapshot.prev` alone (the caller then falls back
 * to it), or the new pair — never a half-written `snapshot`. Only after
 * crp_snapshot_write() returned CRP_OK may the caller rotate the journal
 * (crp_journal_rotate with the same covered sequence); the journal keeps
 * every record after `snapshot.prev`'s sequence in journal.prev + journal,
 * so falling back to `snapshot.prev` and replaying more journal works.
 *
 * Start-up:
 *
 *   err = crp_snapshot_load(t, dir, CRP_SNAPSHOT_CURRENT, &seq, ...);
 *   if (err == CRP_BADFILE || err == CRP_NOTFOUND)     // log errbuf
 *       err = crp_snapshot_load(t, dir, CRP_SNAPSHOT_PREVIOUS, &seq, ...);
 *   if (err == CRP_NOTFOUND)                          // first start
 *       seq = 0, err = CRP_OK;
 *   then crp_journal_open() with from_seq = seq.
 *
 * A load validates the whole file (size, header, every block's checksum,
 * every record's fields, the body checksum) before it changes the table,
 * so a CRP_BADFILE leaves the table untouched and the fallback can load into
 * the same table. After a fallback, the next snapshot demotes the corrupt
 * `snapshot` to `snapshot.prev`; copy it away first if it is to be studied.
 *
 * Consistency. The snapshot is fuzzy: it walks the table with
 * crp_table_next while writers run, so each record is consistent on its own
 * and reflects at least every change up to the covered sequence (which the
 * caller read from crp_journal_last_seq() before the walk, after applying
 * those changes to the table). Changes made during the walk may or may not
 * be in it; journal records carry absolute states, so replaying everything
 * after the covered sequence converges. A connector moved by eviction during
 * the walk can appear twice; the later copy wins and is counted.
 *
 * Format, little-endian:
 *
 *   header, 64 bytes: magic u64 "CRPSNAP1", version u32, header length
 *     u32 (64), covered sequence u64, record count u64, body length u64,
 *     created_ms u64, body checksum u64 (XXH3-64 of everything after the
 *     header), header checksum u64 (XXH3-64 of the 56 bytes before it)
 *   body: sections, each a 16-byte section header (length u32, count u32,
 *     XXH3-64 of the section's bytes seeded with count << 32 | length) and
 *     `length` bytes. The first section is the caller's extra blob (count
 *     0); every later one is a block of `count` records, at most 64 KiB.
 *   record: state u8, reasons u8, flags u8 (bit 0 dirty, bit 1
 *     until_midnight), id_len u8, tenant_len u8, since_ms u64, last_ms
 *     u64, the 36-byte scoring payload (opaque, host order), id, tenant.
 *
 * Ids are stored as text and hashed again on load, so a snapshot loads into
 * a table with a different seed (the seed is random per start).
 *
 * Threads. Write: any thread, concurrently with the shard writers; it
 * blocks on disk I/O. Load: the caller must be the only writer of every
 * shard while it runs (it uses crp_table_upsert_sw and crp_table_store_sw
 * for all of them), i.e. call it before the writers start.
 */
#ifndef CRP_SNAPSHOT_H
#define CRP_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "crp/err.h"
#include "crp/journal.h"
#include "crp/table.h"

#define CRP_SNAPSHOT_FILE "snapshot"
#define CRP_SNAPSHOT_PREV "snapshot.prev"
#define CRP_SNAPSHOT_TMP  "snapshot.tmp"

/* The largest extra blob (the alert policy and similar state). */
#define CRP_SNAPSHOT_EXTRA_MAX (16u << 20)

typedef enum crp_snapshot_which {
    CRP_SNAPSHOT_CURRENT = 0,  /* `snapshot` */
    CRP_SNAPSHOT_PREVIOUS = 1, /* `snapshot.prev` */
} crp_snapshot_which;

typedef struct crp_snapshot_info {
    uint64_t covered_seq;
    uint64_t records;    /* records in the file */
    uint64_t duplicates; /* load: records whose connector was already loaded */
    uint64_t dropped;    /* load: clean ACTIVE connectors the table had no room for */
    uint64_t bytes;      /* size of the file */
    uint64_t created_ms; /* wall-clock time the write began */
} crp_snapshot_info;

/* Writes a snapshot of t, covering journal sequence covered_seq, with the
 * caller's extra blob (0..CRP_SNAPSHOT_EXTRA_MAX bytes, may be NULL when
 * extra_len is 0), through io (NULL = crp_io_posix()). Fills *info when not
 * NULL.
 *
 * Returns CRP_OK once `snapshot` is the new file and the directory is
 * fsynced; CRP_IO (errbuf names the file and the failed call) when any
 * write, fsync or rename failed — the caller must then not rotate the
 * journal; snapshot.tmp is removed; CRP_INVAL; CRP_NOMEM. Blocks. */
crp_err crp_snapshot_write(const crp_table *t, const char *dir, uint64_t covered_seq,
                           const void *extra, size_t extra_len, const crp_io_ops *io,
                           crp_snapshot_info *info, char *errbuf, size_t errlen);

/* Validates the chosen snapshot file completely, then upserts every record
 * into t (which should be empty) — first those the table never evicts
 * (restricted, probation, dirty), then the clean ACTIVE ones, of which
 * those the table has no room for are dropped (info->dropped): the table
 * has a new seed, so entries cluster differently than they did when the
 * file was written — and returns the covered sequence, and the
 * extra blob in *extra (malloc'd, the caller frees it; NULL when empty; pass
 * extra = NULL to ignore it).
 *
 * Returns CRP_OK; CRP_NOTFOUND when the file does not exist; CRP_BADFILE
 * with errbuf naming the file and the byte offset of the damage (the table
 * is untouched); CRP_IO on a read error; or the table's error (CRP_FULL,
 * CRP_IDS_FULL, CRP_TENANTS_FULL) when t cannot hold the records it must
 * keep — t is
 * then partly loaded and should be destroyed. Caller: the only writer of t.
 */
crp_err crp_snapshot_load(crp_table *t, const char *dir, crp_snapshot_which which,
                          uint64_t *covered_seq, void **extra, size_t *extra_len,
                          crp_snapshot_info *info, char *errbuf, size_t errlen);

#endif
