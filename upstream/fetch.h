/*
 * Download of the upstream catalog over http(s):// or file:// with libcurl
 * (DESIGN §2): TLS verification, proxy, timeouts, conditional GET and
 * retries with backoff. It blocks, so call it from a worker thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

typedef struct {
	const char *url;
	const char *ca_file;        /* CA bundle for https, NULL = system store */
	const char *proxy;          /* e.g. "http://proxy:3128", NULL = none set */
	long connect_timeout;       /* seconds, 0 = libcurl's default */
	long timeout;               /* whole transfer, seconds, 0 = none */
	const char *etag;           /* from the last download, or NULL */
	const char *last_modified;  /* from the last download, or NULL */
	bool ignore_cache;          /* fetch even if unchanged */
	int retries;                /* extra attempts after a transient failure */
	uint64_t max_bytes;         /* body bytes after decompression, 0 = no limit */
} fetch_opts_t;

typedef struct {
	bool not_modified;          /* 304: the destination was left alone */
	long http_status;           /* 0 for file:// */
	uint64_t bytes;             /* body bytes written */
	char *etag;                 /* malloc'd, NULL if none */
	char *last_modified;        /* malloc'd, NULL if none */
	char *effective_url;        /* malloc'd, after redirects */
} fetch_result_t;

/*!
 * \brief Download o->url into dest_path.
 *
 * The body goes to dest_path + ".tmp" and is renamed over dest_path only
 * when complete, so a failure never leaves a partial file. Connection
 * failures, timeouts and HTTP 5xx are retried o->retries times after
 * 1 s, 2 s, 4 s, ...; HTTP 4xx is not.
 *
 * \param o          Options; o->url is required.
 * \param dest_path  File to create or replace.
 * \param res        Output: status, validators for the next conditional
 *                   GET; release with fetch_result_clear().
 * \param err        Output: message on failure (may be NULL).
 * \param errlen     Size of err.
 *
 * An https URL is never redirected to anything but https (no downgrade),
 * and a body that grows past o->max_bytes once decompressed is refused
 * (a small compressed response must not fill the disk). Messages name the
 * URL with its credentials redacted (log_url_redact()).
 *
 * \return SS_EOK (also for 304, see res->not_modified); SS_EFETCH on
 *         transfer or HTTP errors ("HTTP 404 from <url>") and refused
 *         downgrades; SS_ETOOBIG past o->max_bytes; SS_EINVAL without a
 *         URL; -errno when the destination cannot be written.
 */
int fetch_to_file(const fetch_opts_t *o, const char *dest_path,
		  fetch_result_t *res, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief The settings every upstream request shares: peer and host
 * verification, no signals, \a errbuf (CURL_ERROR_SIZE) for libcurl's
 * message, our user agent, compressed bodies, the CA bundle (NULL: the
 * system store), the proxy (NULL: none set), the timeouts in seconds (0:
 * libcurl's default, none) and the one-minute stall limit.
 *
 * \return CURLE_OK, else the OR of the failing setopts' codes.
 */
CURLcode fetch_curl_shared(CURL *h, char *errbuf, const char *ca_file,
			   const char *proxy, long connect_timeout, long timeout);

/*!
 * \brief Free the strings of a result and zero it; accepts NULL.
 */
void fetch_result_clear(fetch_result_t *r);
