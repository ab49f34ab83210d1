/*
 * Microsoft Update / WSUS as an upstream, over the WSUS server-to-server
 * protocol [MS-WSUSSS] (SOAP 1.1 over HTTP(S), libcurl). One fetch runs
 * the whole sequence:
 *
 *   GetAuthConfig ──> DSS GetAuthorizationCookie ──> GetCookie (1.20)
 *        │  (auth service URL relative to the server root)
 *        v
 *   GetConfigData (MaxNumberOfUpdatesPerRequest)
 *        v
 *   GetRevisionIdList GetConfig=true ──> GetUpdateData (categories)
 *        v
 *   GetRevisionIdList (selected products AND classifications; Delta
 *        │  with the stored anchor when there is one)
 *        v
 *   GetUpdateData in batches; bundle members are fetched too (the
 *   bundle names their revisions) ──> record file of catalog entries
 *
 * Faults: InvalidCookie re-authenticates and retries; a batch that faults
 * is split until the bad ids are isolated (logged, skipped); timeouts and
 * 5xx are retried with backoff; a bundle whose members cannot be had is
 * held back, naming the member, and so is an update whose required
 * prerequisite update no list gave (documents name it without the
 * revision GetUpdateData needs). Blocking: runs on a database worker.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/sitesync.pb-c.h"

/* A category as stored for `products list` / `classifications list`. */
typedef struct {
	char kind[16];        /* product | classification | vendor */
	char *id;             /* GUID; vendors: the company's title */
	char *title;
	char *parent;         /* product family / vendor, or NULL */
} wsus_category_t;

/* A category document as held (wsus_categories) and as seen. */
typedef struct {
	char id[37];
	uint32_t revision;
	char type[24];        /* Company, ProductFamily, Product, UpdateClassification, Detectoid */
	char *title;
	char parent[37];
} wsus_catrec_t;

/* A revision the site already holds from this upstream (deltas). */
typedef struct {
	uint8_t id[16];
	uint32_t revision;
	uint8_t (*members)[16];     /* its bundle members, kept along with it */
	size_t n_members;
} wsus_held_t;

typedef struct {
	const char *url;             /* server root, e.g. https://sws.update.microsoft.com */
	const char *ca_file;         /* CA bundle, NULL = system store */
	const char *proxy;
	long connect_timeout, timeout;
	const char *state_dir;       /* scratch files */
	char **products, **classifications, **languages;   /* the selection */
	size_t n_products, n_classifications, n_languages;
	const char *anchor;          /* last sync's anchor for this selection, or NULL */
	/* Revisions held (sorted by id): a delta re-fetches none of them. */
	const wsus_held_t *held;
	size_t n_held;
	/* Category documents held (sorted by id): fetched only when changed. */
	const wsus_catrec_t *cats_held;
	size_t n_cats_held;
	size_t max_document;         /* one blob / update document, bytes (0 = WSUS_MAX_TEXT);
	                              * one response: 8 times that */
	int retries;                 /* extra attempts on timeouts and 5xx */
	unsigned backoff_ms;         /* first retry delay, doubled each time */
} wsus_opts_t;

/* An update fetched this sync, for wsus_revisions. */
typedef struct {
	char id[37];
	uint32_t revision;
	char *bundled;               /* member ids, comma-separated ("" for none) */
} wsus_rev_t;

typedef struct {
	wsus_category_t *cats;
	size_t n_cats;
	wsus_catrec_t *catrecs;      /* every category document, to store */
	size_t n_catrecs;
	uint64_t cats_requested;     /* category documents asked for */
	uint64_t entries;            /* records written */
	uint64_t requested;          /* update ids asked for with GetUpdateData */
	uint64_t skipped;            /* ids the upstream faulted on, skipped */
	uint64_t held_back;          /* bundles not published (members missing) */
	uint64_t held_prereq;        /* updates not published (a prerequisite missing) */
	uint64_t bytes;              /* response bytes */
	bool delta;                  /* the update list was a delta */
	char *anchor;                /* the anchor to store for next time */
	/* Ids listed unchanged by a delta: keep the held entry (sorted). */
	uint8_t (*keep)[16];
	size_t n_keep;
	wsus_rev_t *revs;            /* every update written, in order */
	size_t n_revs, cap_revs;
	char *notes;                 /* lines for the sync log ('\n'-separated) */
	char last_fault[320];        /* "ErrorCode: Message" of the last fault seen */
} wsus_result_t;

/*!
 * \brief Run the sequence above and write every entry to \a dest as
 *        records (wsus_record_next()).
 * \return SS_EOK; SS_EFETCH for transfer errors and faults that could not
 *         be handled (err names the operation and the fault's ErrorCode
 *         and Message); SS_EXML / SS_ECAB for undecodable answers.
 */
int wsus_fetch(const wsus_opts_t *o, const char *dest, wsus_result_t *res,
               char *err, size_t errlen)
	__attribute__((warn_unused_result));

void wsus_result_clear(wsus_result_t *r);

/*!
 * \brief Read the next record of a file written by wsus_fetch().
 * \param buf, cap  A buffer grown as needed (caller frees *buf).
 * \param len  Output: the packed Sitesync__UpdateContent's length.
 * \return 1 at end of file, SS_EOK, or SS_EMALF / SS_EIO.
 */
int wsus_record_next(FILE *f, uint8_t **buf, size_t *cap, size_t *len)
	__attribute__((warn_unused_result));

/*! \brief True for a held revision list entry matching \a id (any revision). */
bool wsus_keep_has(const wsus_result_t *r, const uint8_t id[16]);
