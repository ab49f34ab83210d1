/*
 * sitesync:// upstreams: a top site that takes its catalog from a site of
 * another hierarchy (as a WSUS server syncs from an upstream WSUS server).
 * The top dials that site like a child, asks for a full snapshot and stores
 * the stream; upstream/sync.c then stages its entries like a catalog's, so
 * this hierarchy applies its own selection and makes its own versions.
 * Blocking: runs on a database worker.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct {
	const char *url;          /* sitesync://host:port */
	const char *ca_file;      /* the upstream hierarchy's CA */
	const char *cert_file;    /* our certificate there (CN = the code it approved) */
	const char *key_file;
	long timeout;             /* seconds without progress before giving up */
	int heartbeat;            /* seconds between Pings while waiting */
	size_t max_frame;
} remote_opts_t;

/*!
 * \brief Pull a full snapshot from the upstream site into \a dest (a
 * stream file: PullStart, Batch..., PullDone).
 * \param version  Output: the upstream's catalog version.
 * \param bytes    Output: stream size.
 */
int remote_fetch_snapshot(const remote_opts_t *o, const char *dest, uint64_t *version,
                          uint64_t *bytes, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief True for a sitesync:// URL. */
int remote_is_url(const char *url);
