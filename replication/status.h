/*
 * Status of this site and its subtree (DESIGN §4). Each child reports its
 * own row and its subtree's rows; a parent keeps the latest row per site,
 * accepting rows only for sites below the child that sent them, and relays
 * everything upwards parents-first.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "proto/sitesync.pb-c.h"

struct site;

/* Versions a site was seen to commit, and when (its version_reached_at),
 * newest first: the dashboard's propagation of the last versions. Kept
 * in memory from the reports since this daemon started. */
#define STATUS_PROP_VERSIONS 10
typedef struct {
	uint64_t version;
	int64_t at;                     /* unix seconds at that site */
} status_reached_t;
typedef struct {
	status_reached_t v[STATUS_PROP_VERSIONS];
	size_t n;
} status_reached_list_t;

/* Site codes are 3 of [A-Z0-9] (conf_site_code_valid): a table of 36^3
 * slots finds any row at once, so a report, a view or a relay costs the
 * rows it touches, not a walk of the whole subtree per row. */
#define STATUS_CODES (36 * 36 * 36)

typedef struct status_row {
	struct status_row *next;
	struct status_row *kid;         /* scratch of status_report_build() */
	char site[4];
	char via[4];                    /* child that reported it */
	Sitesync__SiteStatus *row;      /* owned deep copy */
	Sitesync__SignedRow signed_row; /* as its site signed it (owned), relayed as is */
	time_t received_at;
	status_reached_list_t reached;  /* versions this row's site committed */
} status_row_t;

typedef struct status_table {
	status_row_t *head;
	status_row_t **index;           /* STATUS_CODES slots, by status_code_index() */
	status_reached_list_t own;      /* this site's committed versions */
} status_table_t;

/*! \brief Note that version \a v was committed at \a at (once per version). */
void status_reached_note(status_reached_list_t *l, uint64_t v, int64_t at);

status_table_t *status_table_new(void);
void status_table_free(status_table_t *t);

/*! \brief Slot of a site code in STATUS_CODES, -1 if it is not a site code. */
int status_code_index(const char *site);

/*! \brief Row of \a site, or NULL. */
status_row_t *status_table_find(status_table_t *t, const char *site);

/*!
 * \brief Take the rows of a child's report. The first row must be the
 * child's own; every other row's parent must be a site already accepted
 * from this report. Rows for sites owned by another connected child are
 * refused.
 * Signed rows are verified first (certificate from the hierarchy's CA,
 * its common name the row's site, signature); unsigned rows (protocol 1)
 * are taken only for the child's own row.
 * A signed row byte for byte the one stored is not verified again: it
 * was when stored.
 * \param refused  Output: how many rows were refused (first refused site
 *                 code copied into \a first_refused, the reason into why).
 * \param changed  Output: whether the subtree changed in more than the
 *                 times of the reports (reported_at, link_last_seen):
 *                 a row added, dropped or saying something new.
 * \return rows accepted.
 */
int status_accept_report(struct site *d, const char *child,
                         const Sitesync__StatusReport *rep, int *refused,
                         char first_refused[4], char *why, size_t whylen, bool *changed);

/*!
 * \brief Forget \a child and every row reported through it (the operator
 * removed it): the next report upwards no longer carries them, so the
 * sites above drop them too.
 */
void status_forget_child(struct site *d, const char *child);

/*! \brief Fill this site's own row (strings point into \a d; do not free). */
void status_fill_self(struct site *d, Sitesync__SiteStatus *row);

/*!
 * \brief Build a StatusReport: own row, then the subtree parents-first.
 * \param wire  also fill `signed` (own row signed now, others as received)
 *              for sending; `rows` is always filled for local use.
 * Free with status_report_clear().
 */
void status_report_build(struct site *d, Sitesync__StatusReport *rep, bool wire);
void status_report_clear(Sitesync__StatusReport *rep);

/*! \brief The DESIGN §9 status object (new reference). */
json_t *status_json(struct site *d);

/*! \brief "idle", "syncing", ... */
const char *status_state_name(Sitesync__SyncState s);
const char *status_link_name(Sitesync__LinkState l);

/*! \brief ISO 8601 UTC ("2026-11-24T02:00:20Z") or JSON null for 0. */
json_t *status_time_json(time_t t);

/*!
 * \brief Whether a certificate expiring at `expires` is inside the warning
 * window of `warn_days` at `now` (an expired one is); false when the
 * expiry is unknown (0) or the window is off (warn_days <= 0).
 */
bool status_cert_expiring(time_t expires, time_t now, int warn_days);
