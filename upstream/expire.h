/*
 * Supersedence expiry and purge at the top site (DESIGN §2), run by the
 * upstream sync inside its transaction, between the selection and the
 * diff. Expiry lives inside the packed UpdateContent, so an entry whose
 * expired flag (or imported source) must change gets new content bytes:
 * the diff then sees it as changed and it gets a new revision like any
 * other change. The new bytes are spliced in SQL (UPSTREAM_CONTENT_SQL)
 * from byte offsets recorded at staging, so no row is read back.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/sync.h"

/*
 * The packed UpdateContent an entry of ss_sel s (staged as ss_up p) must
 * carry. Fields are packed in field-number order, so the expired flag
 * (field 17, absent when false) and the source (field 18) sit together
 * at byte p.cut: p.exp_len and p.src_len bytes long as staged. Entries
 * not to be amended (s.fix false) keep their bytes untouched.
 * UPSTREAM_SPLICE_SQL(c) amends the bytes c instead of p.content: a
 * first sync writes entries straight into updates and amends them there.
 */
#define UPSTREAM_SPLICE_SQL(c) \
	"CASE WHEN s.fix THEN substr(" c ", 1, p.cut) " \
	"|| CASE WHEN s.expired THEN '\\x880101'::bytea ELSE ''::bytea END " \
	"|| CASE WHEN s.source <> p.source THEN '\\x920108696d706f72746564'::bytea " \
	"   ELSE substr(" c ", p.cut + p.exp_len + 1, p.src_len) END " \
	"|| substr(" c ", p.cut + p.exp_len + p.src_len + 1) ELSE " c " END"
#define UPSTREAM_CONTENT_SQL UPSTREAM_SPLICE_SQL("p.content")

/*!
 * \brief Locate the expired (17) and source (18) fields of a packed
 * UpdateContent for UPSTREAM_CONTENT_SQL.
 *
 * \param out  Output: [0] offset of the first field numbered 17 or more,
 *             [1] bytes of field 17 there (0 if absent), [2] bytes of
 *             field 18 after it (0 if absent).
 * \return false if the bytes are malformed or not in field order with
 *         fields 17 and 18 at most once (then pack the message anew).
 */
bool upstream_expire_split(const uint8_t *p, size_t n, uint32_t out[3]);

/*!
 * \brief Set the expired flag of packed content in C, as
 *        UPSTREAM_CONTENT_SQL does in SQL (source kept).
 *
 * \param sp   upstream_expire_split() of \a p.
 * \param out  At least n + 3 bytes.
 * \return Bytes written to \a out.
 */
size_t upstream_expire_flip(const uint8_t *p, size_t n, const uint32_t sp[3], bool expired,
                            uint8_t *out);

/*!
 * \brief Build the temporary table ss_sel from ss_pick (the selected
 * entries: update_id, seq, release_date, supersedes, expired, source as
 * staged in ss_up) and settle expiry and purge on it.
 *
 * ss_sel has update_id, seq (its row in ss_up), expired and source (what
 * the entry must say) and fix (they differ from its staged content).
 *
 * Settings (table `settings`): 'supersede_expire_months' (default 0 =
 * expire at once, -1 = never) and 'purge_expired_days' (default 0 =
 * never purge). An entry of ss_sel whose id is in the supersedes list of
 * another selected entry released at least N months ago becomes expired.
 * Entries that are imported keep source = imported. Entries expired (as
 * first seen by this site) longer than the purge setting leave ss_sel, so
 * the diff removes them and they stay out while they remain expired
 * upstream.
 *
 * \param job  Output: job->expired (newly expired), job->purged.
 * \return SS_EOK, or an error with job->err set.
 */
int upstream_expire_settle(PGconn *conn, upstream_job_t *job)
	__attribute__((warn_unused_result));
