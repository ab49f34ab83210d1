/*
 * Upstream catalog download with libcurl.
 *
 * One blocking call per sync, run on a worker thread. The body is written
 * to "<dest>.tmp" and renamed into place only after a complete, successful
 * transfer, so the catalog file the parser reads is always whole: either
 * the previous download or the new one.
 */
#include "upstream/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/log.h"

#define FETCH_MAX_REDIRS 5L
#define FETCH_MAX_BACKOFF 60u   /* seconds; caps 1, 2, 4, ... */
#define FETCH_STALL_SECS 60L

/* Per-attempt state the libcurl callbacks fill. */
typedef struct {
	FILE *out;
	uint64_t bytes;
	int write_errno;        /* set when writing the body failed */
	uint64_t max_bytes;     /* 0 = no limit */
	bool too_big;           /* the body passed max_bytes */
	char *etag;
	char *last_modified;
} fetch_state_t;

static pthread_once_t fetch_once_ctl = PTHREAD_ONCE_INIT;
static CURLcode fetch_global_rc = CURLE_FAILED_INIT;

static void fetch_global_init(void);
static char *fetch_header_value(const char *line, size_t len, const char *name);
static size_t fetch_write_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static size_t fetch_header_cb(char *ptr, size_t size, size_t nmemb, void *arg);
static bool fetch_transient(CURLcode rc);
static void fetch_state_clear(fetch_state_t *st);

/* curl_global_init is not thread-safe and must run once per process. */
static void fetch_global_init(void)
{
	fetch_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t fetch_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	fetch_state_t *st = arg;
	size_t n = size * nmemb;
	/* Counted after decompression: Accept-Encoding must not turn a few
	 * kB on the wire into a full disk. */
	if (st->max_bytes && st->bytes + n > st->max_bytes) {
		st->too_big = true;
		return 0;
	}
	if (fwrite(ptr, 1, n, st->out) != n) {
		st->write_errno = errno ? errno : EIO;
		return 0;       /* makes libcurl stop with CURLE_WRITE_ERROR */
	}
	st->bytes += n;
	return n;
}

/* Value of "Name: value" when the header line is `name`, else NULL. */
static char *fetch_header_value(const char *line, size_t len, const char *name)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	const char *v = line + nl + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
			   end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return strndup(v, (size_t)(end - v));
}

static size_t fetch_header_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	fetch_state_t *st = arg;
	size_t n = size * nmemb;
	char *v;
	/* A status line starts a new response (after a redirect): only the
	 * final response's validators count. */
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		free(st->etag);
		free(st->last_modified);
		st->etag = NULL;
		st->last_modified = NULL;
	} else if ((v = fetch_header_value(ptr, n, "ETag")) != NULL) {
		free(st->etag);
		st->etag = v;
	} else if ((v = fetch_header_value(ptr, n, "Last-Modified")) != NULL) {
		free(st->last_modified);
		st->last_modified = v;
	}
	return n;
}

/* Failures worth another attempt: the network or the server may recover.
 * TLS verification, bad URLs and local errors will not. */
static bool fetch_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static void fetch_state_clear(fetch_state_t *st)
{
	if (st->out != NULL)
		fclose(st->out);
	free(st->etag);
	free(st->last_modified);
	memset(st, 0, sizeof(*st));
}

CURLcode fetch_curl_shared(CURL *h, char *errbuf, const char *ca_file,
			   const char *proxy, long connect_timeout, long timeout)
{
	CURLcode rc = CURLE_OK;
	rc |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	rc |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	rc |= curl_easy_setopt(h, CURLOPT_USERAGENT, "sitesync/" "0.1");
	/* Catalogs are large XML: let the server compress them. */
	rc |= curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	if (ca_file != NULL)
		rc |= curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
	if (proxy != NULL)
		rc |= curl_easy_setopt(h, CURLOPT_PROXY, proxy);
	if (connect_timeout > 0)
		rc |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect_timeout);
	if (timeout > 0)
		rc |= curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout);
	/* Without an overall timeout a stalled server would hold the worker
	 * forever: give up (and retry) after a minute without progress. */
	rc |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, FETCH_STALL_SECS);
	return rc;
}

void fetch_result_clear(fetch_result_t *r)
{
	if (r == NULL)
		return;
	free(r->etag);
	free(r->last_modified);
	free(r->effective_url);
	memset(r, 0, sizeof(*r));
}

int fetch_to_file(const fetch_opts_t *o, const char *dest_path,
		  fetch_result_t *res, char *err, size_t errlen)
{
	int ret = SS_EOK;
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL, *tmp_h;
	char *tmp = NULL, *line = NULL;
	char errbuf[CURL_ERROR_SIZE];
	char shown[512];
	fetch_state_t st;
	long status = 0;
	bool done = false;

	memset(&st, 0, sizeof(st));
	memset(res, 0, sizeof(*res));
	if (o == NULL || o->url == NULL || *o->url == '\0' || dest_path == NULL) {
		ret = SS_EINVAL;
		ss_errf(err, errlen, "fetch: no URL or destination");
		goto fail;
	}
	log_url_redact(o->url, shown, sizeof(shown));
	pthread_once(&fetch_once_ctl, fetch_global_init);
	if (fetch_global_rc != CURLE_OK) {
		ret = SS_EFETCH;
		ss_errf(err, errlen, "libcurl initialisation failed: %s",
			  curl_easy_strerror(fetch_global_rc));
		goto fail;
	}
	if (asprintf(&tmp, "%s.tmp", dest_path) < 0) {
		tmp = NULL;
		ret = SS_ENOMEM;
		goto fail;
	}
	h = curl_easy_init();
	if (h == NULL) {
		ret = SS_ENOMEM;
		ss_errf(err, errlen, "cannot create a libcurl handle");
		goto fail;
	}

	/* Conditional GET: the server answers 304 when nothing changed. */
	if (!o->ignore_cache) {
		const char *names[2] = { "If-None-Match", "If-Modified-Since" };
		const char *vals[2] = { o->etag, o->last_modified };
		for (int i = 0; i < 2; i++) {
			if (vals[i] == NULL || *vals[i] == '\0')
				continue;
			if (asprintf(&line, "%s: %s", names[i], vals[i]) < 0) {
				line = NULL;
				ret = SS_ENOMEM;
				goto fail;
			}
			tmp_h = curl_slist_append(hdrs, line);
			free(line);
			line = NULL;
			if (tmp_h == NULL) {
				ret = SS_ENOMEM;
				goto fail;
			}
			hdrs = tmp_h;
		}
	}

	CURLcode rc = CURLE_OK;
	/* Any failing setopt leaves rc non-zero; which one is not useful to
	 * an operator, the libcurl build is. */
	rc |= curl_easy_setopt(h, CURLOPT_URL, o->url);
	rc |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file");
	/* https stays https: a redirect to http would hand the catalog (and
	 * any credentials) to whoever sits on the path. */
	bool secure = strncasecmp(o->url, "https://", 8) == 0;
	rc |= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, secure ? "https" : "http,https");
	rc |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	rc |= curl_easy_setopt(h, CURLOPT_MAXREDIRS, FETCH_MAX_REDIRS);
	rc |= fetch_curl_shared(h, errbuf,
				o->ca_file != NULL && *o->ca_file != '\0' ? o->ca_file : NULL,
				o->proxy != NULL && *o->proxy != '\0' ? o->proxy : NULL,
				o->connect_timeout, o->timeout);
	rc |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_write_cb);
	rc |= curl_easy_setopt(h, CURLOPT_WRITEDATA, &st);
	rc |= curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, fetch_header_cb);
	rc |= curl_easy_setopt(h, CURLOPT_HEADERDATA, &st);
	if (hdrs != NULL)
		rc |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	/* Refused early when the server announces a larger body; the write
	 * callback enforces it on what decompression really yields. */
	if (o->max_bytes)
		rc |= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
	if (rc != CURLE_OK) {
		ret = SS_EFETCH;
		ss_errf(err, errlen, "cannot configure libcurl for %s", shown);
		goto fail;
	}

	int retries = o->retries > 0 ? o->retries : 0;
	for (int attempt = 0; attempt <= retries && !done; attempt++) {
		if (attempt > 0) {
			unsigned wait = 1u << (attempt - 1 < 6 ? attempt - 1 : 6);
			sleep(wait < FETCH_MAX_BACKOFF ? wait : FETCH_MAX_BACKOFF);
		}
		fetch_state_clear(&st);
		st.max_bytes = o->max_bytes;
		st.out = fopen(tmp, "wb");
		if (st.out == NULL) {
			ret = -errno;
			ss_errf(err, errlen, "%s: %s", tmp, strerror(errno));
			goto fail;
		}
		errbuf[0] = '\0';
		rc = curl_easy_perform(h);
		if (st.write_errno == 0 && fflush(st.out) != 0)
			st.write_errno = errno;
		if (st.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
			ret = SS_ETOOBIG;
			ss_errf(err, errlen, "%s: the catalog exceeds %" PRIu64 " bytes "
				  "([upstream] max_catalog_mib)", shown, o->max_bytes);
			goto fail;
		}
		if (st.write_errno != 0) {
			ret = -st.write_errno;
			ss_errf(err, errlen, "%s: %s", tmp, strerror(st.write_errno));
			goto fail;
		}
		if (rc != CURLE_OK) {
			ret = SS_EFETCH;
			if (rc == CURLE_UNSUPPORTED_PROTOCOL && secure)
				ss_errf(err, errlen, "fetching %s: refused a redirect away from https (%s)",
					  shown, errbuf[0] ? errbuf : curl_easy_strerror(rc));
			else
				ss_errf(err, errlen, "fetching %s: %s", shown,
					  errbuf[0] ? errbuf : curl_easy_strerror(rc));
			done = !fetch_transient(rc);
			continue;
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		/* 0 is file://; an unfollowed 3xx other than 304 is as
		 * useless as an error. */
		if (status != 0 && status != 304 && (status < 200 || status >= 300)) {
			ret = SS_EFETCH;
			ss_errf(err, errlen, "HTTP %ld from %s", status, shown);
			/* The server may recover from a 5xx; a 4xx stays. */
			done = status < 500;
			continue;
		}
		ret = SS_EOK;
		done = true;
	}
	if (ret != SS_EOK)
		goto fail;

	res->http_status = status;
	const char *eff = NULL;
	if (curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK &&
	    eff != NULL)
		res->effective_url = strdup(eff);
	if (status == 304) {
		/* Unchanged: keep the old file and the validators we sent,
		 * unless the server refreshed them. */
		res->not_modified = true;
		res->etag = st.etag ? st.etag : (o->etag ? strdup(o->etag) : NULL);
		res->last_modified = st.last_modified ? st.last_modified :
			(o->last_modified ? strdup(o->last_modified) : NULL);
		st.etag = st.last_modified = NULL;
		goto fail;      /* cleanup only; ret is SS_EOK */
	}
	if (fsync(fileno(st.out)) != 0 && errno != EINVAL) {
		ret = -errno;
		ss_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	FILE *out = st.out;
	st.out = NULL;
	if (fclose(out) != 0) {
		ret = -errno;
		ss_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, dest_path) != 0) {
		ret = -errno;
		ss_errf(err, errlen, "renaming %s: %s", tmp, strerror(errno));
		goto fail;
	}
	res->bytes = st.bytes;
	res->etag = st.etag;
	res->last_modified = st.last_modified;
	st.etag = st.last_modified = NULL;
fail:
	fetch_state_clear(&st);
	if (tmp != NULL) {
		unlink(tmp);    /* gone after a rename; partial data otherwise */
		free(tmp);
	}
	curl_slist_free_all(hdrs);
	if (h != NULL)
		curl_easy_cleanup(h);
	if (ret != SS_EOK)
		fetch_result_clear(res);
	return ret;
}
