/*
 * Sync history of this site (table sync_history): one row per upstream
 * sync, pull or import, written when it ends; read back at start so a
 * restart keeps the last sync's times, result and counts.
 */
#pragma once

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct site;

/*!
 * \brief Record the sync that just ended, from this site's status row
 * (start and end times, state, counts, error), asynchronously.
 * \param kind       "upstream", "pull" or "import"
 * \param unchanged  it succeeded without a new version
 * \param from, to   catalog versions before and after (to = from when unchanged
 *                   or failed)
 */
void synchist_record(struct site *d, const char *kind, bool unchanged, uint64_t from,
                     uint64_t to);

/*!
 * \brief synchist_record() for an upstream sync of several sources.
 * \param by_source  Each source's counts ("upstream: 3 added, 0 changed,
 *                   0 removed; dell: ..."), '' with one source.
 */
void synchist_record_sources(struct site *d, const char *kind, bool unchanged, uint64_t from,
                             uint64_t to, const char *by_source);

typedef void (*synchist_then_fn)(void *arg);

/*!
 * \brief synchist_record_sources(), then \p then once the row is written or
 * could not be: an answer sent from \p then ("import done") is never
 * followed by a `history` that lacks the row.
 */
void synchist_record_then(struct site *d, const char *kind, bool unchanged, uint64_t from,
                          uint64_t to, const char *by_source, synchist_then_fn then,
                          void *then_arg);

/*!
 * \brief At start: restore this site's status row (state, last start and
 * end, last success, counts, error, consecutive failures) from the newest
 * recorded syncs.
 */
int synchist_load(struct site *d, PGconn *conn, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief This site's newest syncs (newest first) as JSON rows, the same
 * fields `sitesync history --json` gives under "syncs".
 */
json_t *synchist_recent_json(const struct site *d);

/*!
 * \brief Microsecond UTC timestamp for a status message or sync row,
 * strictly increasing within this process, so rows sort in the order the
 * loop emitted them even when several database workers insert them.
 * \param buf  Output: "2026-11-24 02:00:20.123456+00"
 */
void synchist_stamp(char *buf, size_t len);
