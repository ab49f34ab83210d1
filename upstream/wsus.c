/* [MS-WSUSSS] client: the protocol sequence, faults, batches, records. */
#include "upstream/wsus.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "catalog/entry.h"
#include "common/errcode.h"
#include "common/log.h"
#include "upstream/fetch.h"
#include "upstream/idset.h"
#include "upstream/wsus_xml.h"

#define WSUS_NS "http://www.microsoft.com/SoftwareDistribution"
#define WSUS_DSS_NS WSUS_NS "/Server/DssAuthWebService"
#define WSUS_SYNC_PATH "ServerSyncWebService/ServerSyncWebService.asmx"
#define WSUS_PROTOCOL "1.20"
/* Our batch never exceeds this even if the server allows more. */
#define WSUS_BATCH_CAP 1000
#define WSUS_FAULT 1              /* internal: the answer was a SOAP fault */

typedef struct {
	wsus_ident_t ident;
	int32_t from;                 /* index of the entry that needed it, or -1 */
} want_t;

/* What a fetched update contributes to the bundle check: its members,
 * or (prereq) the updates it names as required prerequisites. */
typedef struct {
	uint8_t id[16];
	uint8_t (*members)[16];
	size_t n_members;
	bool prereq;
} bundle_t;

typedef wsus_catrec_t cat_t;

typedef struct {
	const wsus_opts_t *o;
	wsus_result_t *res;
	char *err;
	size_t errlen;
	CURL *h;
	char root[512];
	char shown[512];               /* root with credentials redacted, for messages */
	char *cookie;                 /* <Expiration/><EncryptedData/> as sent back */
	FILE *resp;                   /* response scratch file (unlinked) */
	size_t resp_bytes;            /* of the answer being received */
	bool resp_too_big;
	FILE *out;                    /* records */
	wsus_fault_t fault;
	long max_batch;
	/* categories */
	cat_t *cats;
	size_t n_cats, cap_cats;
	bool cats_sorted;
	/* updates */
	want_t *queue;
	size_t n_queue, cap_queue;
	idset_t queued;               /* ids queued or fetched */
	idset_t got;                  /* ids written (or kept) */
	idset_t bad;                  /* ids the upstream faulted on */
	idset_t kept;                 /* ids held and kept (res->keep) */
	bundle_t *bundles;
	size_t n_bundles;
	/* Per entry: its product and classification, for members that inherit. */
	char (*inherit)[2][37];
	size_t n_inherit, cap_inherit;
	char *tmpdir_path;
} wsus_t;

static void werr(wsus_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const wsus_held_t *held_find(const wsus_opts_t *o, const uint8_t id[16]);
static int keep_push(wsus_t *w, const uint8_t id[16]);

static void werr(wsus_t *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->err, w->errlen, fmt, ap);
	va_end(ap);
}

static void note(wsus_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line for the sync log; at most 64 KiB of them, then a count. */
static void note(wsus_t *w, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	size_t have = w->res->notes ? strlen(w->res->notes) : 0;
	if (have > 65536)
		return;
	char *n = realloc(w->res->notes, have + strlen(line) + 2);
	if (n == NULL)
		return;
	memcpy(n + have, line, strlen(line));
	n[have + strlen(line)] = '\n';
	n[have + strlen(line) + 1] = '\0';
	w->res->notes = n;
}

/* XML-escape for request bodies (ids, cookies, anchors come from the peer). */
static char *xml_esc(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == '&' ? 5 : (*p == '<' || *p == '>') ? 4 : *p == '"' ? 6 : 1;
	char *o = malloc(n + 1), *q = o;
	if (o == NULL)
		return NULL;
	for (const char *p = s; *p; p++) {
		const char *r = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" :
		                *p == '"' ? "&quot;" : NULL;
		if (r) {
			memcpy(q, r, strlen(r));
			q += strlen(r);
		} else {
			*q++ = *p;
		}
	}
	*q = '\0';
	return o;
}

/* ---- HTTP ---------------------------------------------------------------- */

static size_t resp_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	wsus_t *w = arg;
	size_t n = size * nmemb;
	/* One answer may not fill the disk: 8 documents' worth at most. */
	size_t cap = 8 * (w->o->max_document ? w->o->max_document : WSUS_MAX_TEXT);
	if (n > cap - w->resp_bytes) {
		w->resp_too_big = true;
		return 0;
	}
	w->resp_bytes += n;
	w->res->bytes += n;
	return fwrite(ptr, 1, n, w->resp);
}

static bool curl_transient(CURLcode rc)
{
	return rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
	       rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
	       rc == CURLE_PARTIAL_FILE || rc == CURLE_COULDNT_RESOLVE_HOST;
}

/*
 * POST one SOAP request; the answer is walked with \a cb. Returns SS_EOK,
 * WSUS_FAULT (w->fault filled), or an error. Timeouts and 5xx without a
 * SOAP fault are retried with backoff.
 */
static int wsus_post(wsus_t *w, const char *url, const char *action, const char *body,
                     wsus_xml_cb cb, void *arg)
{
	const wsus_opts_t *o = w->o;
	char errbuf[CURL_ERROR_SIZE];
	char shown[1024];             /* url in messages: no credentials */
	log_url_redact(url, shown, sizeof(shown));
	char soapaction[256];
	snprintf(soapaction, sizeof(soapaction), "SOAPAction: \"%s\"", action);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: text/xml; charset=utf-8");
	hdrs = curl_slist_append(hdrs, soapaction);
	if (hdrs == NULL)
		return SS_ENOMEM;
	int ret = SS_EFETCH;
	unsigned delay = o->backoff_ms ? o->backoff_ms : 1000;
	for (int attempt = 0; attempt <= o->retries; attempt++) {
		if (attempt > 0) {
			struct timespec ts = { delay / 1000, (long)(delay % 1000) * 1000000L };
			nanosleep(&ts, NULL);
			delay *= 2;
		}
		if (fflush(w->resp) != 0 || ftruncate(fileno(w->resp), 0) != 0 ||
		    fseek(w->resp, 0, SEEK_SET) != 0) {
			werr(w, "cannot reset the response scratch file: %s", strerror(errno));
			ret = SS_EIO;
			break;
		}
		errbuf[0] = '\0';
		w->err[0] = '\0';        /* only this attempt's error counts */
		w->resp_bytes = 0;
		w->resp_too_big = false;
		CURL *h = w->h;
		curl_easy_reset(h);
		CURLcode rc = CURLE_OK;
		rc |= curl_easy_setopt(h, CURLOPT_URL, url);
		rc |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		/* No redirects: a 3xx fails the request (so never https -> http). */
		rc |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		rc |= fetch_curl_shared(h, errbuf, o->ca_file, o->proxy,
					o->connect_timeout, o->timeout);
		rc |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
		rc |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		rc |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		rc |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
		rc |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, resp_write_cb);
		rc |= curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
		if (rc != CURLE_OK) {
			werr(w, "cannot set up the request to %s", shown);
			ret = SS_EFETCH;
			break;
		}
		rc = curl_easy_perform(h);
		if (rc == CURLE_WRITE_ERROR && w->resp_too_big) {
			werr(w, "%s: the answer is over %zu bytes (8 x [upstream] max_document)", shown,
			     8 * (o->max_document ? o->max_document : (size_t)WSUS_MAX_TEXT));
			ret = SS_ETOOBIG;
			break;
		}
		if (rc != CURLE_OK) {
			werr(w, "%s: %s", shown, errbuf[0] ? errbuf : curl_easy_strerror(rc));
			ret = SS_EFETCH;
			if (curl_transient(rc))
				continue;
			break;
		}
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (fflush(w->resp) != 0 || fseek(w->resp, 0, SEEK_SET) != 0) {
			ret = SS_EIO;
			break;
		}
		if (status != 200 && status != 500) {
			werr(w, "HTTP %ld from %s", status, shown);
			ret = SS_EFETCH;
			if (status >= 500)
				continue;
			break;
		}
		char xerr[256] = "";
		lseek(fileno(w->resp), 0, SEEK_SET);
		ret = wsus_xml_walk_fd(fileno(w->resp), w->o->max_document, cb, arg, &w->fault, xerr,
		                       sizeof(xerr));
		if (ret == SS_EOK && w->fault.present) {
			snprintf(w->res->last_fault, sizeof(w->res->last_fault), "%s%s%s", w->fault.code,
			         w->fault.message[0] ? ": " : "", w->fault.message);
			ret = WSUS_FAULT;
			break;
		}
		if (ret != SS_EOK && status == 500) {
			/* A 500 that is no SOAP fault: a server in trouble, retried. */
			werr(w, "HTTP 500 from %s", shown);
			ret = SS_EFETCH;
			continue;
		}
		/* The walker's own error; a callback's is in w->err already. */
		if (ret != SS_EOK && (xerr[0] || w->err[0] == '\0'))
			werr(w, "%s: %s", shown, xerr[0] ? xerr : ss_strerror(ret));
		break;
	}
	curl_slist_free_all(hdrs);
	return ret;
}

static int wsus_soap(wsus_t *w, const char *url, const char *ns, const char *op,
                     const char *params, bool cookie, wsus_xml_cb cb, void *arg)
{
	char action[200];
	snprintf(action, sizeof(action), "%s/%s", ns, op);
	char *body = NULL;
	if (asprintf(&body, "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope "
	             "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
	             "<%s xmlns=\"%s\">%s%s%s%s</%s></soap:Body></soap:Envelope>", op, ns,
	             cookie ? "<cookie>" : "", cookie && w->cookie ? w->cookie : "",
	             cookie ? "</cookie>" : "", params, op) < 0)
		return SS_ENOMEM;
	memset(&w->fault, 0, sizeof(w->fault));
	int ret = wsus_post(w, url, action, body, cb, arg);
	free(body);
	return ret;
}

/* ---- authentication ------------------------------------------------------ */

typedef struct {
	char plugin[64];
	char *service_url;
	char *cookie_data;
	char *expiration, *encrypted;
	long max_batch;
} auth_t;

static int dup_into(char **dst, const char *text)
{
	free(*dst);
	*dst = strdup(text);
	return *dst ? SS_EOK : SS_ENOMEM;
}

static bool path_ends(const char *path, const char *tail)
{
	size_t n = strlen(path), t = strlen(tail);
	return n >= t && strcmp(path + n - t, tail) == 0 && (n == t || path[n - t - 1] == '/');
}

static int auth_cb(void *arg, const char *path, const char *text, size_t len)
{
	(void)len;
	auth_t *a = arg;
	if (text == NULL)
		return SS_EOK;
	if (path_ends(path, "AuthPlugInInfo/PlugInID"))
		snprintf(a->plugin, sizeof(a->plugin), "%s", text);
	else if (path_ends(path, "AuthPlugInInfo/ServiceUrl") && strcmp(a->plugin, "DssTargeting") == 0)
		return dup_into(&a->service_url, text);
	else if (path_ends(path, "GetAuthorizationCookieResult/CookieData"))
		return dup_into(&a->cookie_data, text);
	else if (path_ends(path, "GetCookieResult/Expiration"))
		return dup_into(&a->expiration, text);
	else if (path_ends(path, "GetCookieResult/EncryptedData"))
		return dup_into(&a->encrypted, text);
	else if (path_ends(path, "GetConfigDataResult/MaxNumberOfUpdatesPerRequest"))
		a->max_batch = strtol(text, NULL, 10);
	return SS_EOK;
}

static void auth_clear(auth_t *a)
{
	free(a->service_url);
	free(a->cookie_data);
	free(a->expiration);
	free(a->encrypted);
	memset(a, 0, sizeof(*a));
}

/* ret, unless it is WSUS_FAULT: then the fault, as an error naming op. */
static int fault_error(wsus_t *w, int ret, const char *op)
{
	if (ret != WSUS_FAULT)
		return ret;
	werr(w, "%s: SOAP fault %s%s%s from %s", op, w->fault.code, w->fault.message[0] ? ": " : "",
	     w->fault.message, w->shown);
	return SS_EFETCH;
}

/* GetAuthConfig → DSS GetAuthorizationCookie → GetCookie. */
static int wsus_auth(wsus_t *w)
{
	auth_t a = { 0 };
	char url[1024], dss[1024];
	char *params = NULL, *e1 = NULL, *e2 = NULL;
	snprintf(url, sizeof(url), "%s/" WSUS_SYNC_PATH, w->root);
	int ret = wsus_soap(w, url, WSUS_NS, "GetAuthConfig", "", false, auth_cb, &a);
	ret = fault_error(w, ret, "GetAuthConfig");
	if (ret != SS_EOK)
		goto out;
	if (a.service_url == NULL) {
		werr(w, "GetAuthConfig: %s offers no DssTargeting authorization plug-in", w->shown);
		ret = SS_EFETCH;
		goto out;
	}
	/* The service URL is relative to the server root; an absolute one
	 * must stay on this server (never send our requests elsewhere). */
	if (strstr(a.service_url, "://") != NULL) {
		size_t rl = strlen(w->root);
		if (strncmp(a.service_url, w->root, rl) != 0 || a.service_url[rl] != '/') {
			char svc[512];
			werr(w, "GetAuthConfig: authorization service %.200s is not on %s",
			     log_url_redact(a.service_url, svc, sizeof(svc)), w->shown);
			ret = SS_EFETCH;
			goto out;
		}
		snprintf(dss, sizeof(dss), "%s", a.service_url);
	} else {
		snprintf(dss, sizeof(dss), "%s/%s", w->root,
		         a.service_url + (a.service_url[0] == '/' ? 1 : 0));
	}
	ret = wsus_soap(w, dss, WSUS_DSS_NS, "GetAuthorizationCookie",
	                "<accountName>sitesync</accountName>"
	                "<accountGuid>5175e7c5-0000-4000-8000-000000000000</accountGuid>",
	                false, auth_cb, &a);
	ret = fault_error(w, ret, "GetAuthorizationCookie");
	if (ret != SS_EOK)
		goto out;
	if (a.cookie_data == NULL) {
		werr(w, "GetAuthorizationCookie: no CookieData from %s", dss);
		ret = SS_EFETCH;
		goto out;
	}
	e1 = xml_esc(a.cookie_data);
	if (e1 == NULL || asprintf(&params, "<authCookies><AuthorizationCookie><PlugInId>DssTargeting"
	                           "</PlugInId><CookieData>%s</CookieData></AuthorizationCookie>"
	                           "</authCookies><protocolVersion>" WSUS_PROTOCOL "</protocolVersion>",
	                           e1) < 0) {
		params = NULL;
		ret = SS_ENOMEM;
		goto out;
	}
	ret = wsus_soap(w, url, WSUS_NS, "GetCookie", params, false, auth_cb, &a);
	ret = fault_error(w, ret, "GetCookie");
	if (ret != SS_EOK)
		goto out;
	if (a.encrypted == NULL) {
		werr(w, "GetCookie: no cookie from %s", w->shown);
		ret = SS_EFETCH;
		goto out;
	}
	free(e1);
	e1 = xml_esc(a.encrypted);
	e2 = xml_esc(a.expiration ? a.expiration : "");
	free(w->cookie);
	w->cookie = NULL;
	if (e1 == NULL || e2 == NULL ||
	    asprintf(&w->cookie, "<Expiration>%s</Expiration><EncryptedData>%s</EncryptedData>",
	             e2, e1) < 0) {
		w->cookie = NULL;
		ret = SS_ENOMEM;
	}
out:
	free(params);
	free(e1);
	free(e2);
	auth_clear(&a);
	return ret;
}

/* A protected call: InvalidCookie re-authenticates once and retries. */
static int wsus_call(wsus_t *w, const char *op, const char *params, wsus_xml_cb cb, void *arg,
                     void (*reset)(void *arg))
{
	char url[1024];
	snprintf(url, sizeof(url), "%s/" WSUS_SYNC_PATH, w->root);
	int ret = wsus_soap(w, url, WSUS_NS, op, params, true, cb, arg);
	if (ret == WSUS_FAULT && strcmp(w->fault.code, "InvalidCookie") == 0) {
		note(w, "%s: the upstream answered InvalidCookie; authenticating again", op);
		if ((ret = wsus_auth(w)) != SS_EOK)
			return ret;
		if (reset)
			reset(arg);
		ret = wsus_soap(w, url, WSUS_NS, op, params, true, cb, arg);
	}
	return ret;
}

/* ---- revision lists ------------------------------------------------------ */

typedef struct {
	wsus_ident_t *v;
	size_t n, cap;
	wsus_ident_t cur;
	char *anchor;
} idlist_t;

static int idlist_cb(void *arg, const char *path, const char *text, size_t len)
{
	(void)len;
	idlist_t *l = arg;
	if (text == NULL)
		return SS_EOK;
	if (path_ends(path, "GetRevisionIdListResult/Anchor"))
		return dup_into(&l->anchor, text);
	if (path_ends(path, "NewRevisions/UpdateIdentity/UpdateID")) {
		snprintf(l->cur.id, sizeof(l->cur.id), "%s", text);
		if (!wsus_guid_norm(l->cur.id))
			return SS_EXML;
	} else if (path_ends(path, "NewRevisions/UpdateIdentity/RevisionNumber")) {
		l->cur.revision = (uint32_t)strtoul(text, NULL, 10);
	} else if (path_ends(path, "NewRevisions/UpdateIdentity")) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 256;
			wsus_ident_t *nb = realloc(l->v, cap * sizeof(*nb));
			if (nb == NULL)
				return SS_ENOMEM;
			l->v = nb;
			l->cap = cap;
		}
		l->v[l->n++] = l->cur;
		memset(&l->cur, 0, sizeof(l->cur));
	}
	return SS_EOK;
}

static void idlist_reset(void *arg)
{
	idlist_t *l = arg;
	l->n = 0;
	free(l->anchor);
	l->anchor = NULL;
}

/* ---- update data --------------------------------------------------------- */

typedef struct {
	char *digest, *url;
} urlmap_t;

typedef struct {
	wsus_t *w;
	bool categories;              /* the category phase */
	char cur_id[37];
	uint32_t cur_rev;
	char *blob;                   /* UTF-8 XML of the current item */
	size_t blob_len;
	wsus_update_t *items;         /* this batch, mapped */
	size_t n_items;
	urlmap_t *urls;
	size_t n_urls;
	char cur_digest[128];
} data_t;

static void data_reset(void *arg)
{
	data_t *d = arg;
	for (size_t i = 0; i < d->n_items; i++)
		wsus_update_clear(&d->items[i]);
	free(d->items);
	d->items = NULL;
	d->n_items = 0;
	for (size_t i = 0; i < d->n_urls; i++) {
		free(d->urls[i].digest);
		free(d->urls[i].url);
	}
	free(d->urls);
	d->urls = NULL;
	d->n_urls = 0;
	free(d->blob);
	d->blob = NULL;
}

static int data_cb(void *arg, const char *path, const char *text, size_t len)
{
	data_t *d = arg;
	wsus_t *w = d->w;
	if (text == NULL)
		return SS_EOK;
	if (path_ends(path, "ServerSyncUpdateData/Id/UpdateID")) {
		snprintf(d->cur_id, sizeof(d->cur_id), "%s", text);
	} else if (path_ends(path, "ServerSyncUpdateData/Id/RevisionNumber")) {
		d->cur_rev = (uint32_t)strtoul(text, NULL, 10);
	} else if (path_ends(path, "ServerSyncUpdateData/XmlUpdateBlob")) {
		free(d->blob);
		d->blob = malloc(len + 1);
		if (d->blob == NULL)
			return SS_ENOMEM;
		memcpy(d->blob, text, len + 1);
		d->blob_len = len;
	} else if (path_ends(path, "ServerSyncUpdateData/XmlUpdateBlobCompressed")) {
		free(d->blob);
		d->blob = NULL;
		int ret = wsus_blob_decode(text, len, w->o->max_document, &d->blob, &d->blob_len,
		                           w->err, w->errlen);
		if (ret != SS_EOK) {
			size_t n = strlen(w->err);
			snprintf(w->err + n, w->errlen - n, " (update %.36s)", d->cur_id);
			return ret;
		}
	} else if (path_ends(path, "updates/ServerSyncUpdateData")) {
		if (d->blob == NULL) {
			werr(w, "GetUpdateData: update %.36s came without its document", d->cur_id);
			return SS_EXML;
		}
		wsus_update_t *nb = realloc(d->items, (d->n_items + 1) * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		d->items = nb;
		const char *const *langs = (const char *const *)w->o->languages;
		int ret = wsus_update_parse(d->blob, d->blob_len, langs, w->o->n_languages,
		                            &d->items[d->n_items], w->err, w->errlen);
		free(d->blob);
		d->blob = NULL;
		if (ret != SS_EOK) {
			size_t n = strlen(w->err);
			snprintf(w->err + n, w->errlen - n, " (update %.36s)", d->cur_id);
			return ret;
		}
		d->n_items++;
	} else if (path_ends(path, "ServerSyncUrlData/FileDigest")) {
		snprintf(d->cur_digest, sizeof(d->cur_digest), "%s", text);
	} else if (path_ends(path, "ServerSyncUrlData/MUUrl") && text[0]) {
		urlmap_t *nb = realloc(d->urls, (d->n_urls + 1) * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		d->urls = nb;
		nb[d->n_urls].digest = strdup(d->cur_digest);
		nb[d->n_urls].url = strdup(text);
		if (nb[d->n_urls].digest == NULL || nb[d->n_urls].url == NULL) {
			free(nb[d->n_urls].digest);
			free(nb[d->n_urls].url);
			return SS_ENOMEM;
		}
		d->n_urls++;
	}
	return SS_EOK;
}

static int cmp_cat(const void *a, const void *b)
{
	return strcmp(((const cat_t *)a)->id, ((const cat_t *)b)->id);
}

static cat_t *cat_find(wsus_t *w, const char *id)
{
	if (w->n_cats == 0)
		return NULL;
	if (!w->cats_sorted) {
		qsort(w->cats, w->n_cats, sizeof(cat_t), cmp_cat);
		w->cats_sorted = true;
	}
	cat_t key;
	snprintf(key.id, sizeof(key.id), "%s", id);
	return bsearch(&key, w->cats, w->n_cats, sizeof(cat_t), cmp_cat);
}

static int cat_grow(wsus_t *w)
{
	if (w->n_cats == w->cap_cats) {
		size_t cap = w->cap_cats ? 2 * w->cap_cats : 64;
		cat_t *nb = realloc(w->cats, cap * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		w->cats = nb;
		w->cap_cats = cap;
	}
	return SS_EOK;
}

/* A held category document, unchanged upstream. */
static int cat_copy(wsus_t *w, const cat_t *h)
{
	if (cat_grow(w) != SS_EOK)
		return SS_ENOMEM;
	cat_t *c = &w->cats[w->n_cats];
	*c = *h;
	if ((c->title = strdup(h->title)) == NULL)
		return SS_ENOMEM;
	w->n_cats++;
	w->cats_sorted = false;
	return SS_EOK;
}

static int cat_add(wsus_t *w, wsus_update_t *u)
{
	if (cat_grow(w) != SS_EOK)
		return SS_ENOMEM;
	cat_t *c = &w->cats[w->n_cats];
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", u->u.update_id);
	c->revision = u->revision;
	snprintf(c->type, sizeof(c->type), "%s",
	         strcmp(u->update_type, "Detectoid") == 0 ? "Detectoid" : u->category_type);
	c->title = strdup(u->u.title ? u->u.title : c->id);
	if (c->title == NULL)
		return SS_ENOMEM;
	if (u->n_cat_prereqs > 0)
		snprintf(c->parent, sizeof(c->parent), "%s", u->cat_prereqs[0]);
	else if (u->u.n_prerequisites > 0)
		snprintf(c->parent, sizeof(c->parent), "%s", u->u.prerequisites[0]);
	w->n_cats++;
	w->cats_sorted = false;
	return SS_EOK;
}

/* The vendor of a product: the Company up its parent chain. */
static const cat_t *cat_company(wsus_t *w, const cat_t *c)
{
	for (int i = 0; c != NULL && i < 8; i++) {
		if (strcmp(c->type, "Company") == 0)
			return c;
		c = c->parent[0] ? cat_find(w, c->parent) : NULL;
	}
	return NULL;
}

static int want_push(wsus_t *w, const wsus_ident_t *id, int32_t from)
{
	uint8_t b[16];
	entry_id_bytes(id->id, b);
	int added = idset_add(&w->queued, b);
	if (added <= 0)
		return added;
	if (w->n_queue == w->cap_queue) {
		size_t cap = w->cap_queue ? 2 * w->cap_queue : 256;
		want_t *nb = realloc(w->queue, cap * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		w->queue = nb;
		w->cap_queue = cap;
	}
	w->queue[w->n_queue].ident = *id;
	w->queue[w->n_queue].from = from;
	w->n_queue++;
	return SS_EOK;
}

static int write_record(wsus_t *w, const Sitesync__UpdateContent *u)
{
	size_t n = sitesync__update_content__get_packed_size(u);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf == NULL)
		return SS_ENOMEM;
	sitesync__update_content__pack(u, buf);
	uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	int ret = SS_EOK;
	if (n > UINT32_MAX || fwrite(hdr, 1, 4, w->out) != 4 || fwrite(buf, 1, n, w->out) != n) {
		werr(w, "cannot write the WSUS record file: %s", strerror(errno));
		ret = SS_EIO;
	}
	free(buf);
	return ret;
}

/* A new entry of w->bundles for update \a update_id with room for \a n
 * members (none counted yet); NULL when out of memory. */
static bundle_t *bundle_push(wsus_t *w, const char *update_id, size_t n)
{
	bundle_t *nb = realloc(w->bundles, (w->n_bundles + 1) * sizeof(*nb));
	if (nb == NULL)
		return NULL;
	w->bundles = nb;
	bundle_t *b = &nb[w->n_bundles];
	memset(b, 0, sizeof(*b));
	entry_id_bytes(update_id, b->id);
	if ((b->members = malloc(n * sizeof(*b->members))) == NULL)
		return NULL;
	w->n_bundles++;
	return b;
}

/*
 * The required prerequisites of a fetched update that are updates, not
 * categories or detectoids: documents name them without a revision, and
 * GetUpdateData needs one, so they can be had only as an update list
 * names them (or as held). hold_back() holds the update back when one
 * is missing, as for a bundle's member: a client cannot evaluate it.
 */
static int need_prereqs(wsus_t *w, const wsus_update_t *it)
{
	size_t n = 0;
	for (size_t i = 0; i < it->n_req_prereqs; i++)
		n += cat_find(w, it->req_prereqs[i]) == NULL;
	if (n == 0)
		return SS_EOK;
	bundle_t *b = bundle_push(w, it->u.update_id, n);
	if (b == NULL)
		return SS_ENOMEM;
	b->prereq = true;
	for (size_t i = 0; i < it->n_req_prereqs; i++)
		if (cat_find(w, it->req_prereqs[i]) == NULL)
			entry_id_bytes(it->req_prereqs[i], b->members[b->n_members++]);
	return SS_EOK;
}

/* One fetched update: sort its categories, queue what it needs, write it. */
static int take_update(wsus_t *w, data_t *d, wsus_update_t *it, int32_t from)
{
	Sitesync__UpdateContent *u = &it->u;
	u->upstream_revision = it->revision;
	u->update_type = it->update_type;
	/* File URLs come after the documents, keyed by SHA-1 digest. */
	for (size_t f = 0; f < u->n_files; f++)
		for (size_t k = 0; k < d->n_urls && u->files[f]->sha1; k++)
			if (strcmp(d->urls[k].digest, u->files[f]->sha1) == 0)
				u->files[f]->url = d->urls[k].url;
	char *prods[16];
	size_t np = 0;
	const char *cls = NULL, *vendor = NULL;
	int ret;
	for (size_t i = 0; i < u->n_prerequisites; i++) {
		const cat_t *c = cat_find(w, u->prerequisites[i]);
		if (c == NULL) {
			/* A prerequisite that is an update: documents name it without
			 * a revision, and GetUpdateData needs one, so it is fetched
			 * when a list names it; kept in the entry either way. */
			continue;
		}
		if (strcmp(c->type, "UpdateClassification") == 0 && cls == NULL)
			cls = c->id;
		else if ((strcmp(c->type, "Product") == 0 || strcmp(c->type, "ProductFamily") == 0) &&
		         np < 16) {
			prods[np++] = (char *)c->id;
			const cat_t *co = cat_company(w, c);
			if (co != NULL && vendor == NULL)
				vendor = co->title;
		}
	}
	/* A bundle member or prerequisite without categories of its own
	 * takes those of the update that needed it, so the selection keeps it. */
	size_t me = w->n_inherit;
	if (w->n_inherit == w->cap_inherit) {
		size_t cap = w->cap_inherit ? 2 * w->cap_inherit : 256;
		void *nb = realloc(w->inherit, cap * sizeof(*w->inherit));
		if (nb == NULL)
			return SS_ENOMEM;
		w->inherit = nb;
		w->cap_inherit = cap;
	}
	w->n_inherit++;
	if (from >= 0) {
		if (np == 0 && w->inherit[from][0][0])
			prods[np++] = w->inherit[from][0];
		if (cls == NULL && w->inherit[from][1][0])
			cls = w->inherit[from][1];
	}
	snprintf(w->inherit[me][0], 37, "%s", np ? prods[0] : "");
	snprintf(w->inherit[me][1], 37, "%s", cls ? cls : "");
	u->products = prods;
	u->n_products = np;
	u->classification = (char *)(cls ? cls : "");
	if (vendor == NULL && np > 0) {
		const cat_t *pc = cat_find(w, prods[0]);
		const cat_t *co = pc ? cat_company(w, pc) : NULL;
		vendor = co ? co->title : NULL;
	}
	u->vendor = (char *)(vendor ? vendor : "Microsoft");
	if ((ret = need_prereqs(w, it)) != SS_EOK)
		return ret;
	for (size_t i = 0; i < it->n_bundled_ids; i++) {
		uint8_t mb[16];
		entry_id_bytes(it->bundled_ids[i].id, mb);
		const wsus_held_t *h = held_find(w->o, mb);
		if (h != NULL && h->revision == it->bundled_ids[i].revision &&
		    !idset_has(&w->queued, mb))
			ret = keep_push(w, mb);
		else
			ret = want_push(w, &it->bundled_ids[i], (int32_t)me);
		if (ret < 0)
			return ret;
	}
	if (it->n_bundled_ids > 0) {
		bundle_t *b = bundle_push(w, u->update_id, it->n_bundled_ids);
		if (b == NULL)
			return SS_ENOMEM;
		for (size_t i = 0; i < it->n_bundled_ids; i++)
			entry_id_bytes(it->bundled_ids[i].id, b->members[i]);
		b->n_members = it->n_bundled_ids;
	}
	uint8_t idb[16];
	entry_id_bytes(u->update_id, idb);
	if (idset_add(&w->got, idb) < 0)
		return SS_ENOMEM;
	wsus_result_t *r = w->res;
	if (r->n_revs == r->cap_revs) {
		size_t cap = r->cap_revs ? 2 * r->cap_revs : 256;
		wsus_rev_t *nb = realloc(r->revs, cap * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		r->revs = nb;
		r->cap_revs = cap;
	}
	wsus_rev_t *rv = &r->revs[r->n_revs];
	snprintf(rv->id, sizeof(rv->id), "%s", u->update_id);
	rv->revision = it->revision;
	if ((rv->bundled = malloc(it->n_bundled_ids * 37 + 1)) == NULL)
		return SS_ENOMEM;
	rv->bundled[0] = '\0';
	for (size_t i = 0; i < it->n_bundled_ids; i++) {
		if (i)
			strcat(rv->bundled, ",");
		strcat(rv->bundled, it->bundled_ids[i].id);
	}
	r->n_revs++;
	ret = write_record(w, u);
	u->products = NULL;
	u->n_products = 0;
	u->classification = NULL;
	u->vendor = NULL;
	u->update_type = NULL;
	w->res->entries++;
	return ret;
}

/* GetUpdateData for queue[lo, hi); a faulting batch is split until the
 * ids it faults on stand alone, which are logged and skipped. */
static int fetch_range(wsus_t *w, bool categories, size_t lo, size_t hi)
{
	data_t d = { .w = w, .categories = categories };
	char *params = NULL;
	size_t cap = 64 + (hi - lo) * 140;
	params = malloc(cap);
	if (params == NULL)
		return SS_ENOMEM;
	size_t n = (size_t)snprintf(params, cap, "<updateIds>");
	for (size_t i = lo; i < hi; i++)
		n += (size_t)snprintf(params + n, cap - n, "<UpdateIdentity><UpdateID>%s</UpdateID>"
		                      "<RevisionNumber>%" PRIu32 "</RevisionNumber></UpdateIdentity>",
		                      w->queue[i].ident.id, w->queue[i].ident.revision);
	snprintf(params + n, cap - n, "</updateIds>");
	w->res->requested += hi - lo;
	int ret = wsus_call(w, "GetUpdateData", params, data_cb, &d, data_reset);
	free(params);
	if (ret == WSUS_FAULT) {
		data_reset(&d);
		if (hi - lo == 1) {
			const wsus_ident_t *id = &w->queue[lo].ident;
			note(w, "Skipped update %s revision %" PRIu32 ": the upstream faults on it (%s)",
			     id->id, id->revision, w->res->last_fault);
			uint8_t b[16];
			entry_id_bytes(id->id, b);
			w->res->skipped++;
			return idset_add(&w->bad, b) < 0 ? SS_ENOMEM : SS_EOK;
		}
		if (strcmp(w->fault.code, "InvalidCookie") == 0)
			return fault_error(w, ret, "GetUpdateData");
		size_t mid = lo + (hi - lo) / 2;
		ret = fetch_range(w, categories, lo, mid);
		if (ret == SS_EOK)
			ret = fetch_range(w, categories, mid, hi);
		return ret;
	}
	for (size_t i = 0; ret == SS_EOK && i < d.n_items; i++) {
		wsus_update_t *it = &d.items[i];
		if (categories) {
			if (it->is_category)
				ret = cat_add(w, it);
			continue;
		}
		/* Which queue entry asked for it: its inheritance. */
		int32_t from = -1;
		for (size_t k = lo; k < hi; k++)
			if (strcmp(w->queue[k].ident.id, it->u.update_id) == 0)
				from = w->queue[k].from;
		if (it->is_category)
			continue;
		ret = take_update(w, &d, it, from);
	}
	data_reset(&d);
	return ret;
}

static int fetch_queue(wsus_t *w, bool categories, size_t from)
{
	size_t batch = (size_t)(w->max_batch > 0 ? w->max_batch : 100);
	if (batch > WSUS_BATCH_CAP)
		batch = WSUS_BATCH_CAP;
	int ret = SS_EOK;
	/* The queue grows while it is worked (members, prerequisites). */
	for (size_t lo = from; ret == SS_EOK && lo < w->n_queue;) {
		size_t hi = lo + batch < w->n_queue ? lo + batch : w->n_queue;
		ret = fetch_range(w, categories, lo, hi);
		lo = hi;
	}
	return ret;
}

/* ---- the sequence -------------------------------------------------------- */

static int cmp_ident(const void *a, const void *b)
{
	const wsus_ident_t *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->revision > y->revision) - (x->revision < y->revision);
}

static int cmp_held(const void *a, const void *b)
{
	return memcmp(((const wsus_held_t *)a)->id, ((const wsus_held_t *)b)->id, 16);
}

static const wsus_held_t *held_find(const wsus_opts_t *o, const uint8_t id[16])
{
	wsus_held_t key;
	memcpy(key.id, id, 16);
	return o->n_held ? bsearch(&key, o->held, o->n_held, sizeof(key), cmp_held) : NULL;
}

/* A held entry (and, recursively, its held bundle members) is kept:
 * its stored content is staged again, nothing is fetched for it. */
static int keep_push(wsus_t *w, const uint8_t id[16])
{
	wsus_result_t *r = w->res;
	int added = idset_add(&w->kept, id);
	if (added <= 0)
		return added;
	if (idset_add(&w->queued, id) < 0)
		return SS_ENOMEM;
	uint8_t (*nb)[16] = realloc(r->keep, (r->n_keep + 1) * 16);
	if (nb == NULL)
		return SS_ENOMEM;
	memcpy(nb[r->n_keep++], id, 16);
	r->keep = nb;
	const wsus_held_t *h = held_find(w->o, id);
	for (size_t i = 0; h != NULL && i < h->n_members; i++) {
		if (idset_has(&w->queued, h->members[i]) || held_find(w->o, h->members[i]) == NULL)
			continue;
		int ret = keep_push(w, h->members[i]);
		if (ret < 0)
			return ret;
	}
	return SS_EOK;
}

static int cmp_id16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

bool wsus_keep_has(const wsus_result_t *r, const uint8_t id[16])
{
	return r->n_keep && bsearch(id, r->keep, r->n_keep, 16, cmp_id16) != NULL;
}

static int list_params(wsus_t *w, const char *anchor, bool delta, char **out)
{
	size_t cap = 256 + (w->o->n_products + w->o->n_classifications) * 120 +
	             (anchor ? 3 * strlen(anchor) : 0);
	char *p = malloc(cap);
	char *ea = anchor ? xml_esc(anchor) : NULL;
	if (p == NULL || (anchor && ea == NULL)) {
		free(p);
		free(ea);
		return SS_ENOMEM;
	}
	size_t n = (size_t)snprintf(p, cap, "<filter>");
	if (ea)
		n += (size_t)snprintf(p + n, cap - n, "<Anchor>%s</Anchor>", ea);
	n += (size_t)snprintf(p + n, cap - n, "<GetConfig>false</GetConfig><Categories>");
	for (size_t i = 0; i < w->o->n_products; i++)
		n += (size_t)snprintf(p + n, cap - n, "<IdAndDelta><Id>%.36s</Id><Delta>%s</Delta>"
		                      "</IdAndDelta>", w->o->products[i], delta ? "true" : "false");
	n += (size_t)snprintf(p + n, cap - n, "</Categories><Classifications>");
	for (size_t i = 0; i < w->o->n_classifications; i++)
		n += (size_t)snprintf(p + n, cap - n, "<IdAndDelta><Id>%.36s</Id><Delta>%s</Delta>"
		                      "</IdAndDelta>", w->o->classifications[i], delta ? "true" : "false");
	snprintf(p + n, cap - n, "</Classifications></filter>");
	free(ea);
	*out = p;
	return SS_EOK;
}

/*
 * A held-back update the site holds at an older revision keeps that one
 * (with its held members), as a delta keeps what did not change: the new
 * revision waits, the catalog loses nothing. Its new revision is not
 * remembered, so the next sync (a full list) asks for it again.
 */
static int keep_older(wsus_t *w, const idset_t *held)
{
	wsus_result_t *r = w->res;
	size_t before = r->n_keep;
	for (size_t i = 0; i < w->n_bundles; i++) {
		const uint8_t *id = w->bundles[i].id;
		if (!idset_has(held, id) || held_find(w->o, id) == NULL)
			continue;
		int ret = keep_push(w, id);
		if (ret < 0)
			return ret;
	}
	if (r->n_keep == before)
		return SS_EOK;
	qsort(r->keep, r->n_keep, 16, cmp_id16);
	size_t n = 0;
	for (size_t i = 0; i < r->n_revs; i++) {
		uint8_t b[16];
		entry_id_bytes(r->revs[i].id, b);
		if (idset_has(held, b) && wsus_keep_has(r, b)) {
			free(r->revs[i].bundled);
			continue;
		}
		r->revs[n++] = r->revs[i];
	}
	r->n_revs = n;
	return SS_EOK;
}

/* Hold back bundles whose members could not be had: rewrite the records
 * without them (the file is small next to the network time it took). */
static int hold_back(wsus_t *w, const char *tmp, const char *dest)
{
	idset_t held;
	idset_init(&held);
	int ret = SS_EOK;
	/* A member missing makes its bundle missing, which may hold back a
	 * bundle containing that one: repeat until nothing changes. */
	for (bool again = true; again;) {
		again = false;
		for (size_t i = 0; i < w->n_bundles; i++) {
			bundle_t *b = &w->bundles[i];
			if (idset_has(&held, b->id))
				continue;
			for (size_t k = 0; k < b->n_members; k++) {
				const uint8_t *m = b->members[k];
				if ((idset_has(&w->got, m) || idset_has(&w->kept, m)) && !idset_has(&held, m))
					continue;
				char bid[37], mid[37];
				entry_id_format(b->id, bid);
				entry_id_format(m, mid);
				if (b->prereq)
					note(w, "Held back update %s: its prerequisite %s could not be had (%s)",
					     bid, mid, idset_has(&w->bad, m) ? "the upstream faults on it" :
					     idset_has(&held, m) ? "held back itself" :
					     "no update list of the selection names it");
				else
					note(w, "Held back bundle %s: its member %s could not be had%s%s", bid, mid,
					     w->res->last_fault[0] ? " (last fault: " : "",
					     w->res->last_fault[0] ? w->res->last_fault : "");
				if (idset_add(&held, b->id) < 0) {
					ret = SS_ENOMEM;
					goto out;
				}
				if (b->prereq)
					w->res->held_prereq++;
				else
					w->res->held_back++;
				again = true;
				break;
			}
		}
	}
	if ((ret = keep_older(w, &held)) != SS_EOK)
		goto out;
	/* Nothing held back (the usual case): the records stand as written. */
	if (held.count == 0) {
		if (rename(tmp, dest) != 0) {
			werr(w, "cannot rename %s: %s", tmp, strerror(errno));
			ret = SS_EIO;
		}
		goto out;
	}
	FILE *in = fopen(tmp, "rb"), *out = fopen(dest, "wb");
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	if (in == NULL || out == NULL) {
		werr(w, "cannot rewrite the WSUS record file: %s", strerror(errno));
		ret = SS_EIO;
	}
	w->res->entries = 0;
	while (ret == SS_EOK && (ret = wsus_record_next(in, &buf, &cap, &len)) == SS_EOK) {
		Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, len, buf);
		if (u == NULL) {
			ret = SS_EMALF;
			break;
		}
		uint8_t id[16];
		entry_id_bytes(u->update_id, id);
		sitesync__update_content__free_unpacked(u, NULL);
		if (idset_has(&held, id))
			continue;
		uint8_t hdr[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
		                   (uint8_t)len };
		if (fwrite(hdr, 1, 4, out) != 4 || fwrite(buf, 1, len, out) != len) {
			ret = SS_EIO;
			break;
		}
		w->res->entries++;
	}
	if (ret == 1)
		ret = SS_EOK;
	if (out != NULL && fclose(out) != 0 && ret == SS_EOK)
		ret = SS_EIO;
	if (in != NULL)
		fclose(in);
	free(buf);
out:
	idset_clear(&held);
	return ret;
}

int wsus_record_next(FILE *f, uint8_t **buf, size_t *cap, size_t *len)
{
	uint8_t hdr[4];
	size_t n = fread(hdr, 1, 4, f);
	if (n == 0 && feof(f))
		return 1;
	if (n != 4)
		return ferror(f) ? SS_EIO : SS_EMALF;
	size_t l = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	if (l > *cap) {
		uint8_t *nb = realloc(*buf, l);
		if (nb == NULL)
			return SS_ENOMEM;
		*buf = nb;
		*cap = l;
	}
	if (fread(*buf, 1, l, f) != l)
		return ferror(f) ? SS_EIO : SS_EMALF;
	*len = l;
	return SS_EOK;
}

static int cat_export(wsus_t *w)
{
	wsus_result_t *r = w->res;
	r->cats = calloc(w->n_cats + 1, sizeof(*r->cats));
	if (r->cats == NULL)
		return SS_ENOMEM;
	for (size_t i = 0; i < w->n_cats; i++) {
		const cat_t *c = &w->cats[i];
		const char *kind = NULL;
		const char *parent = NULL;
		if (strcmp(c->type, "Company") == 0) {
			kind = "vendor";
		} else if (strcmp(c->type, "Product") == 0 || strcmp(c->type, "ProductFamily") == 0) {
			kind = "product";
			const cat_t *p = c->parent[0] ? cat_find(w, c->parent) : NULL;
			/* Grouping: a product under its family, a family under its vendor
			 * (vendors are stored by name, as catalog entries name them). */
			if (p != NULL)
				parent = strcmp(p->type, "Company") == 0 ? p->title : p->id;
		} else if (strcmp(c->type, "UpdateClassification") == 0) {
			kind = "classification";
		}
		if (kind == NULL)
			continue;
		wsus_category_t *o = &r->cats[r->n_cats];
		snprintf(o->kind, sizeof(o->kind), "%s", kind);
		o->id = strdup(strcmp(kind, "vendor") == 0 ? c->title : c->id);
		o->title = strdup(c->title);
		o->parent = parent ? strdup(parent) : NULL;
		r->n_cats++;
		if (o->id == NULL || o->title == NULL || (parent && o->parent == NULL))
			return SS_ENOMEM;
	}
	return SS_EOK;
}

int wsus_fetch(const wsus_opts_t *o, const char *dest, wsus_result_t *res,
               char *err, size_t errlen)
{
	wsus_t w = { .o = o, .res = res, .err = err, .errlen = errlen };
	idlist_t cl = { 0 }, ul = { 0 };
	char tmp[1024], rpath[1024];
	char *params = NULL;
	int ret = SS_EOK;
	memset(res, 0, sizeof(*res));
	idset_init(&w.queued);
	idset_init(&w.got);
	idset_init(&w.bad);
	idset_init(&w.kept);
	err[0] = '\0';
	snprintf(w.root, sizeof(w.root), "%s", o->url);
	size_t rl = strlen(w.root);
	while (rl > 0 && w.root[rl - 1] == '/')
		w.root[--rl] = '\0';
	log_url_redact(w.root, w.shown, sizeof(w.shown));
	snprintf(tmp, sizeof(tmp), "%s.all", dest);
	snprintf(rpath, sizeof(rpath), "%s/wsus.response.XXXXXX", o->state_dir);
	int fd = mkstemp(rpath);
	if (fd < 0) {
		werr(&w, "cannot create a scratch file in %s: %s", o->state_dir, strerror(errno));
		return SS_EIO;
	}
	unlink(rpath);
	w.resp = fdopen(fd, "w+");
	w.out = fopen(tmp, "wb");
	w.h = curl_easy_init();
	if (w.resp == NULL || w.out == NULL || w.h == NULL) {
		if (w.resp == NULL)
			close(fd);
		werr(&w, "cannot set up the WSUS fetch: %s", strerror(errno));
		ret = SS_EIO;
		goto out;
	}
	if ((ret = wsus_auth(&w)) != SS_EOK)
		goto out;
	/* GetConfigData: the batch limit. */
	auth_t cfg = { 0 };
	ret = wsus_call(&w, "GetConfigData", "", auth_cb, &cfg, NULL);
	w.max_batch = cfg.max_batch;
	auth_clear(&cfg);
	ret = fault_error(&w, ret, "GetConfigData");
	if (ret != SS_EOK)
		goto out;
	/* Categories: every one, newest revision of each. */
	ret = wsus_call(&w, "GetRevisionIdList", "<filter><GetConfig>true</GetConfig></filter>",
	                idlist_cb, &cl, idlist_reset);
	ret = fault_error(&w, ret, "GetRevisionIdList (categories)");
	if (ret != SS_EOK)
		goto out;
	if (cl.n > 0)
		qsort(cl.v, cl.n, sizeof(*cl.v), cmp_ident);
	for (size_t i = 0; i < cl.n; i++) {
		if (i + 1 < cl.n && strcmp(cl.v[i].id, cl.v[i + 1].id) == 0)
			continue;       /* sorted by revision: the last of an id is the newest */
		cat_t key;
		snprintf(key.id, sizeof(key.id), "%s", cl.v[i].id);
		const cat_t *hc = o->n_cats_held ? bsearch(&key, o->cats_held, o->n_cats_held,
		                                           sizeof(cat_t), cmp_cat) : NULL;
		if (hc != NULL && hc->revision == cl.v[i].revision) {
			if ((ret = cat_copy(&w, hc)) != SS_EOK)
				goto out;
			continue;
		}
		if ((ret = want_push(&w, &cl.v[i], -1)) < 0)
			goto out;
	}
	res->cats_requested = w.n_queue;
	if ((ret = fetch_queue(&w, true, 0)) != SS_EOK)
		goto out;
	res->requested = 0;
	if ((ret = cat_export(&w)) != SS_EOK)
		goto out;
	/* Updates: a product alone matches nothing, so both kinds are needed. */
	size_t first_update = w.n_queue;
	if (o->n_products > 0 && o->n_classifications > 0) {
		bool delta = o->anchor != NULL && o->anchor[0];
		if ((ret = list_params(&w, delta ? o->anchor : NULL, delta, &params)) != SS_EOK)
			goto out;
		ret = wsus_call(&w, "GetRevisionIdList", params, idlist_cb, &ul, idlist_reset);
		if (ret == WSUS_FAULT && delta && strcmp(w.fault.code, "InvalidParameters") == 0) {
			note(&w, "GetRevisionIdList: the upstream refused the anchor (%s); "
			     "asking for the full list", res->last_fault);
			free(params);
			params = NULL;
			delta = false;
			idlist_reset(&ul);
			if ((ret = list_params(&w, NULL, false, &params)) != SS_EOK)
				goto out;
			ret = wsus_call(&w, "GetRevisionIdList", params, idlist_cb, &ul, idlist_reset);
		}
		ret = fault_error(&w, ret, "GetRevisionIdList");
		if (ret != SS_EOK)
			goto out;
		res->delta = delta;
		res->anchor = ul.anchor;
		ul.anchor = NULL;
		if (ul.n > 0)
			qsort(ul.v, ul.n, sizeof(*ul.v), cmp_ident);
		idset_t listed;
		idset_init(&listed);
		for (size_t i = 0; ret == SS_EOK && i < ul.n; i++) {
			if (i + 1 < ul.n && strcmp(ul.v[i].id, ul.v[i + 1].id) == 0)
				continue;
			uint8_t b[16];
			entry_id_bytes(ul.v[i].id, b);
			if (idset_add(&listed, b) < 0) {
				ret = SS_ENOMEM;
				break;
			}
			const wsus_held_t *h = held_find(o, b);
			/* Held at this revision: kept, not fetched again. */
			if (h != NULL && h->revision == ul.v[i].revision) {
				if (!idset_has(&w.queued, b) && keep_push(&w, b) < 0)
					ret = SS_ENOMEM;
				continue;
			}
			if (want_push(&w, &ul.v[i], -1) < 0)
				ret = SS_ENOMEM;
		}
		/* A delta lists only what changed: the rest of what is held stays. */
		for (size_t i = 0; ret == SS_EOK && delta && i < o->n_held; i++)
			if (!idset_has(&listed, o->held[i].id) && !idset_has(&w.queued, o->held[i].id) &&
			    keep_push(&w, o->held[i].id) < 0)
				ret = SS_ENOMEM;
		idset_clear(&listed);
		if (ret != SS_EOK)
			goto out;
		if ((ret = fetch_queue(&w, false, first_update)) != SS_EOK)
			goto out;
		if (res->n_keep > 0)
			qsort(res->keep, res->n_keep, 16, cmp_id16);
	} else {
		note(&w, "No update list asked for: select at least one product and one "
		     "classification (a product alone matches nothing)");
	}
	if (fclose(w.out) != 0) {
		w.out = NULL;
		werr(&w, "cannot write the WSUS record file: %s", strerror(errno));
		ret = SS_EIO;
		goto out;
	}
	w.out = NULL;
	ret = hold_back(&w, tmp, dest);
	/* What was skipped or held back is not held: the next sync must list
	 * it again, which a delta from this anchor would not. */
	if (ret == SS_EOK && (res->skipped > 0 || res->held_back > 0 || res->held_prereq > 0)) {
		free(res->anchor);
		res->anchor = NULL;
	}
out:
	ret = fault_error(&w, ret, "GetUpdateData");
	if (w.out != NULL)
		fclose(w.out);
	unlink(tmp);
	if (w.resp != NULL)
		fclose(w.resp);
	if (w.h != NULL)
		curl_easy_cleanup(w.h);
	free(w.cookie);
	free(params);
	free(cl.v);
	free(cl.anchor);
	free(ul.v);
	free(ul.anchor);
	if (ret == SS_EOK) {
		res->catrecs = w.cats;         /* handed over, stored by the caller */
		res->n_catrecs = w.n_cats;
		w.cats = NULL;
		w.n_cats = 0;
	}
	for (size_t i = 0; i < w.n_cats; i++)
		free(w.cats[i].title);
	free(w.cats);
	free(w.queue);
	for (size_t i = 0; i < w.n_bundles; i++)
		free(w.bundles[i].members);
	free(w.bundles);
	free(w.inherit);
	idset_clear(&w.queued);
	idset_clear(&w.got);
	idset_clear(&w.bad);
	idset_clear(&w.kept);
	return ret;
}

void wsus_result_clear(wsus_result_t *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_cats; i++) {
		free(r->cats[i].id);
		free(r->cats[i].title);
		free(r->cats[i].parent);
	}
	free(r->cats);
	for (size_t i = 0; i < r->n_catrecs; i++)
		free(r->catrecs[i].title);
	free(r->catrecs);
	free(r->anchor);
	free(r->keep);
	for (size_t i = 0; i < r->n_revs; i++)
		free(r->revs[i].bundled);
	free(r->revs);
	free(r->notes);
	memset(r, 0, sizeof(*r));
}
