/*
 * Several sources in one sync ([source NAME], docs/upstream.md): which
 * stage rows each source brought, its own selection, and whose entries a
 * version added, changed and removed. The [upstream] catalog is the
 * source named "upstream"; the others follow it in the stage, so a
 * source is a range of the stage's seq. The top remembers the owner of
 * each entry (table update_sources) while sources are configured, so an
 * entry that leaves every catalog is counted against the one that
 * brought it.
 */
#pragma once

#include <libpq-fe.h>

#include "upstream/sync.h"

/*!
 * \brief Create the temporary table ss_srcs (name, seq range, its own
 * products / classifications / languages or NULL) from \a job, after
 * staging: the selection (sync.c) reads it. Call inside the sync's
 * transaction.
 */
int sources_stage_table(PGconn *conn, upstream_job_t *job)
	__attribute__((warn_unused_result));

/*!
 * \brief After the diff was committed (ss_diff, ss_sel, ss_srcs present):
 * count each source's added, changed and removed entries into
 * job->by_source (with sources configured, or while update_sources still
 * names some), and bring update_sources up to date: the owner of every
 * selected entry, or nothing once [upstream] is alone.
 */
int sources_settle(PGconn *conn, upstream_job_t *job)
	__attribute__((warn_unused_result));
