/*
 * Monitoring endpoint on libevent's evhttp: /status (JSON), /metrics
 * (Prometheus text 0.0.4) and the dashboard page. The status object is
 * built by the caller's callback for every request, so this module keeps
 * no state of its own besides the listening socket.
 */
#include "server/http.h"
#include "server/dashboard.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "common/log.h"
#include "net/conn.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct http {
	struct evhttp *evh;                 /* owns the accepted connections */
	struct evhttp_bound_socket *sock;   /* the listening socket */
	http_status_cb cb;                  /* builds the status object */
	void *arg;                          /* for cb */
	int port;                           /* bound port */
	conn_listen_guard_t *guard;         /* pauses accepting: EMFILE, the cap */
	int conns;                          /* open connections, as of the last sweep */
	int max_conns;                      /* [http] max_connections */
	struct bufferevent **tracked;       /* each connection's, with our reference */
	int ntracked, captracked;
	struct event *sweep_ev;             /* once a second */
};

/* One per-site numeric gauge or counter read straight from a row field. */
typedef struct {
	const char *name;
	const char *type;
	const char *help;
	const char *field;
} site_metric_t;

static const char *const site_states[] = {
	"idle", "syncing", "succeeded", "failed", "stale", NULL,
};

static const site_metric_t plain_metrics[] = {
	{ "sitesync_catalog_version", "gauge",
	  "Catalog version held by the site.", "catalog_version" },
	{ "sitesync_lag_versions", "gauge",
	  "Catalog versions the site is behind the top site.", "lag_versions" },
	{ "sitesync_lag_seconds", "gauge",
	  "Seconds the site has been behind the top site.", "lag_seconds" },
	{ "sitesync_consecutive_failures", "gauge",
	  "Failed syncs in a row since the last success.", "consecutive_failures" },
	{ "sitesync_bytes_received_total", "counter",
	  "Bytes the site received from its parent or upstream.", "bytes_received" },
	{ "sitesync_last_sync_added", "gauge",
	  "Updates added by the last sync.", "added" },
	{ "sitesync_last_sync_changed", "gauge",
	  "Updates changed by the last sync.", "changed" },
	{ "sitesync_last_sync_removed", "gauge",
	  "Updates removed by the last sync.", "removed" },
	{ "sitesync_last_sync_expired", "gauge",
	  "Updates expired by the last sync.", "expired" },
};

static int parse_listen(const char *listen, char *host, size_t hostlen, int *port,
                        char *err, size_t errlen);
static void request_cb(struct evhttp_request *req, void *arg);
static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *ctype, const char *body, size_t len);
static void put_escaped_label(FILE *f, const char *s);
static void put_number(FILE *f, double v, bool integer, json_int_t iv);
static void put_site_sample(FILE *f, const char *name, const char *code, double v,
                            bool integer, json_int_t iv);
static bool json_sample_value(const json_t *v, double *d, bool *integer, json_int_t *iv);
static void put_family_header(FILE *f, const char *name, const char *type,
                              const char *help);
static const char *site_code(const json_t *row);

static int parse_listen(const char *listen, char *host, size_t hostlen, int *port,
                        char *err, size_t errlen)
{
	const char *colon, *hstart, *hend;
	char *end;
	long p;

	if (listen == NULL || *listen == '\0')
		goto bad;
	if (listen[0] == '[') {
		hstart = listen + 1;
		hend = strchr(hstart, ']');
		if (hend == NULL || hend[1] != ':')
			goto bad;
		colon = hend + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || memchr(listen, ':', (size_t)(colon - listen)) != NULL)
			goto bad;  /* bare IPv6 needs brackets */
		hstart = listen;
		hend = colon;
	}
	if (hend == hstart || (size_t)(hend - hstart) >= hostlen)
		goto bad;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
		goto bad;
	memcpy(host, hstart, (size_t)(hend - hstart));
	host[hend - hstart] = '\0';
	*port = (int)p;
	return SS_EOK;
bad:
	snprintf(err, errlen, "http listen address '%s': expected HOST:PORT or [IPv6]:PORT",
	         listen ? listen : "");
	return SS_EINVAL;
}

/*
 * libevent 2.1's evhttp has no connection cap and tells nobody when a
 * connection that never sent a request goes. So each connection's
 * bufferevent (made here, through evhttp_set_bevcb) is tracked with a
 * reference of ours: evhttp's bufferevent_free() clears its callbacks, and
 * a sweep (at each new connection and once a second) drops the ones so
 * freed. At the cap, accepting pauses: further clients wait in the
 * kernel's backlog, costing us nothing, until a sweep finds room.
 */
/* The one place the cap is applied. */
static void http_apply_cap(http_t *h)
{
	if (h->guard)
		conn_listen_guard_hold(h->guard, h->conns >= h->max_conns);
}

static void http_sweep(http_t *h)
{
	int n = 0;
	for (int i = 0; i < h->ntracked; i++) {
		struct bufferevent *bev = h->tracked[i];
		bufferevent_event_cb ecb = NULL;
		bufferevent_getcb(bev, NULL, NULL, &ecb, NULL);
		if (ecb == NULL) {
			bufferevent_decref(bev);    /* evhttp is done with it */
			continue;
		}
		h->tracked[n++] = bev;
	}
	h->ntracked = n;
	h->conns = n;
	http_apply_cap(h);
}

static void http_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	http_sweep(arg);
}

static struct bufferevent *http_bev_cb(struct event_base *base, void *arg)
{
	http_t *h = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	http_sweep(h);
	if (h->ntracked == h->captracked) {
		int cap = h->captracked ? h->captracked * 2 : 16;
		struct bufferevent **t = realloc(h->tracked, (size_t)cap * sizeof(*t));
		if (t == NULL)
			return bev;         /* untracked: the cap counts one less */
		h->tracked = t;
		h->captracked = cap;
	}
	bufferevent_incref(bev);
	h->tracked[h->ntracked++] = bev;
	h->conns = h->ntracked;
	http_apply_cap(h);
	return bev;
}

void http_set_limits(http_t *h, int max_header, int max_body, int timeout, int max_conns)
{
	evhttp_set_max_headers_size(h->evh, max_header);
	evhttp_set_max_body_size(h->evh, max_body);
	evhttp_set_timeout(h->evh, timeout);
	h->max_conns = max_conns;
	http_apply_cap(h);
}

int http_start(struct event_base *base, const char *listen, http_status_cb cb,
               void *arg, http_t **out, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256];
	int port, ret;
	http_t *h;

	ret = parse_listen(listen, host, sizeof(host), &port, err, errlen);
	if (ret != SS_EOK)
		return ret;
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return SS_ENOMEM;
	h->cb = cb;
	h->arg = arg;
	h->evh = evhttp_new(base);
	if (h->evh == NULL) {
		ret = SS_ENOMEM;
		snprintf(err, errlen, "http: cannot create the server");
		goto fail;
	}
	/* Let every method reach request_cb so it can answer 405, not 501. */
	evhttp_set_allowed_methods(h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	                           EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                           EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                           EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	/* Monitoring requests are small; keep slow clients from piling up.
	 * These are the defaults of the [http] keys (http_set_limits()). */
	http_set_limits(h, 8192, 4096, 10, 64);
	evhttp_set_bevcb(h->evh, http_bev_cb, h);
	evhttp_set_gencb(h->evh, request_cb, h);
	h->sock = evhttp_bind_socket_with_handle(h->evh, host, (ev_uint16_t)port);
	if (h->sock == NULL) {
		ret = SS_EIO;
		snprintf(err, errlen, "http: cannot listen on %s (address in use or not local)",
		         listen);
		goto fail;
	}
	h->guard = conn_listen_guard_new(base, evhttp_bound_socket_get_listener(h->sock), "http");
	h->sweep_ev = event_new(base, -1, EV_PERSIST, http_sweep_cb, h);
	struct timeval second = { 1, 0 };
	if (h->guard == NULL || h->sweep_ev == NULL || event_add(h->sweep_ev, &second) != 0) {
		ret = SS_ENOMEM;
		snprintf(err, errlen, "http: out of memory");
		goto fail;
	}
	h->port = -1;
	if (getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss,
	                &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	*out = h;
	return SS_EOK;
fail:
	http_free(h);
	return ret;
}

int http_port(const http_t *h)
{
	return h != NULL ? h->port : -1;
}

void http_free(http_t *h)
{
	if (h == NULL)
		return;
	if (h->sweep_ev != NULL)
		event_free(h->sweep_ev);
	/* evhttp_free closes the listener and every open connection. */
	if (h->evh != NULL)
		evhttp_free(h->evh);
	for (int i = 0; i < h->ntracked; i++)
		bufferevent_decref(h->tracked[i]);
	free(h->tracked);
	conn_listen_guard_free(h->guard);
	free(h);
}

/*
 * Sends a complete reply. For HEAD the body is left out but its length is
 * announced, as HTTP wants.
 */
static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *ctype, const char *body, size_t len)
{
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(hdrs, "Content-Type", ctype);
	evhttp_add_header(hdrs, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char clen[32];

		snprintf(clen, sizeof(clen), "%zu", len);
		evhttp_add_header(hdrs, "Content-Length", clen);
	} else {
		evbuffer_add(buf, body, len);
	}
	evhttp_send_reply(req, code, reason, buf);
	evbuffer_free(buf);
}

/* GET /?site=CODE: the site of the dashboard's detail view. Only that one
 * parameter with a well-formed site code counts; the rest is ignored. */
static bool http_detail_site(const struct evhttp_uri *uri, char out[4])
{
	const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (q == NULL || strncmp(q, "site=", 5) != 0 || strlen(q + 5) != 3)
		return false;
	memcpy(out, q + 5, 4);
	return conf_site_code_valid(out);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	http_t *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	json_t *status = NULL;
	char *body = NULL;

	if (path == NULL || *path == '\0')
		path = "/";
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		static const char msg[] = "method not allowed: this endpoint is read-only\n";

		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		reply_text(req, 405, "Method Not Allowed", "text/plain; charset=utf-8",
		           msg, sizeof(msg) - 1);
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
		/* Rendered with the rows first; the script then polls /status. */
		status = h->cb != NULL ? h->cb(h->arg) : NULL;
		char detail[4];
		body = dashboard_render(http_dashboard_html, status,
		                        http_detail_site(uri, detail) ? detail : NULL);
		json_decref(status);
		if (body == NULL) {
			evhttp_send_error(req, HTTP_INTERNAL, NULL);
			return;
		}
		reply_text(req, HTTP_OK, "OK", "text/html; charset=utf-8", body, strlen(body));
		free(body);
		return;
	}
	if (strcmp(path, "/status") != 0 && strcmp(path, "/metrics") != 0) {
		static const char msg[] = "not found; try /status, /metrics or /\n";

		reply_text(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8",
		           msg, sizeof(msg) - 1);
		return;
	}

	status = h->cb != NULL ? h->cb(h->arg) : NULL;
	if (status == NULL) {
		static const char msg[] = "status not available\n";

		reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8",
		           msg, sizeof(msg) - 1);
		return;
	}
	if (strcmp(path, "/status") == 0) {
		body = json_dumps(status, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
		if (body != NULL) {
			size_t len = strlen(body);

			/* A trailing newline is kinder to curl in a terminal. */
			char *nl = realloc(body, len + 2);

			if (nl != NULL) {
				body = nl;
				body[len++] = '\n';
				body[len] = '\0';
			}
			reply_text(req, HTTP_OK, "OK", "application/json", body, len);
		}
	} else {
		body = http_metrics_render(status);
		if (body != NULL)
			reply_text(req, HTTP_OK, "OK", METRICS_CONTENT_TYPE, body, strlen(body));
	}
	if (body == NULL) {
		log_warning("http: cannot render %s", path);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	}
	free(body);
	json_decref(status);
}

int http_parse_iso8601(const char *text, double *out)
{
	struct tm tm;
	const char *p;
	double frac = 0;
	long off = 0;

	if (text == NULL)
		return SS_EINVAL;
	memset(&tm, 0, sizeof(tm));
	p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p == NULL)
		return SS_EINVAL;
	if (*p == '.') {
		double scale = 0.1;

		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && p[1] >= '0' && p[1] <= '9' &&
	           p[2] >= '0' && p[2] <= '9' && p[3] == ':' &&
	           p[4] >= '0' && p[4] <= '9' && p[5] >= '0' && p[5] <= '9') {
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
		      ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (*p == '-')
			off = -off;
		p += 6;
	} else {
		return SS_EINVAL;  /* a time without a zone is ambiguous */
	}
	if (*p != '\0')
		return SS_EINVAL;
	*out = (double)timegm(&tm) - (double)off + frac;
	return SS_EOK;
}

/* Label values escape backslash, double quote and newline (format 0.0.4). */
static void put_escaped_label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void put_number(FILE *f, double v, bool integer, json_int_t iv)
{
	char buf[64];

	if (integer) {
		fprintf(f, "%" JSON_INTEGER_FORMAT, iv);
		return;
	}
	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	/* Shortest form that reads back exactly. */
	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	fputs(buf, f);
}

/* One sample of a per-site family: name{site="code"} value. */
static void put_site_sample(FILE *f, const char *name, const char *code, double v,
                            bool integer, json_int_t iv)
{
	fprintf(f, "%s{site=\"", name);
	put_escaped_label(f, code);
	fputs("\"} ", f);
	put_number(f, v, integer, iv);
	fputc('\n', f);
}

/* Numbers and booleans make samples; null, missing and text do not. */
static bool json_sample_value(const json_t *v, double *d, bool *integer, json_int_t *iv)
{
	if (json_is_integer(v)) {
		*integer = true;
		*iv = json_integer_value(v);
		*d = (double)*iv;
		return true;
	}
	if (json_is_real(v)) {
		*integer = false;
		*d = json_real_value(v);
		return true;
	}
	if (json_is_boolean(v)) {
		*integer = true;
		*iv = json_is_true(v) ? 1 : 0;
		*d = (double)*iv;
		return true;
	}
	return false;
}

static void put_family_header(FILE *f, const char *name, const char *type,
                              const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *site_code(const json_t *row)
{
	return json_string_value(json_object_get(row, "site"));
}

char *http_metrics_render(const json_t *status)
{
	const json_t *sites, *row;
	char *text = NULL;
	size_t len = 0, i;
	double d;
	bool integer;
	json_int_t iv;
	FILE *f;

	if (!json_is_object(status))
		return NULL;
	sites = json_object_get(status, "sites");
	if (!json_is_array(sites))
		sites = NULL;  /* an empty tree still renders top_version */
	f = open_memstream(&text, &len);
	if (f == NULL)
		return NULL;

	put_family_header(f, "sitesync_top_version", "gauge",
	                  "Catalog version of the top site, as known here.");
	if (json_sample_value(json_object_get(status, "top_version"), &d, &integer, &iv)) {
		fputs("sitesync_top_version ", f);
		put_number(f, d, integer, iv);
		fputc('\n', f);
	}

	for (size_t m = 0; m < sizeof(plain_metrics) / sizeof(plain_metrics[0]); m++) {
		const site_metric_t *sm = &plain_metrics[m];

		put_family_header(f, sm->name, sm->type, sm->help);
		json_array_foreach(sites, i, row) {
			const char *code = site_code(row);

			if (code == NULL ||
			    !json_sample_value(json_object_get(row, sm->field), &d, &integer, &iv))
				continue;
			put_site_sample(f, sm->name, code, d, integer, iv);
		}
	}

	/* One-hot, so a state change shows as a step in any graph. */
	put_family_header(f, "sitesync_state", "gauge",
	                  "Sync state of the site: 1 for the current state, 0 for the others.");
	json_array_foreach(sites, i, row) {
		const char *code = site_code(row);
		const char *state = json_string_value(json_object_get(row, "state"));

		if (code == NULL)
			continue;
		for (int s = 0; site_states[s] != NULL; s++) {
			fputs("sitesync_state{site=\"", f);
			put_escaped_label(f, code);
			fprintf(f, "\",state=\"%s\"} %d\n", site_states[s],
			        state != NULL && strcmp(state, site_states[s]) == 0);
		}
	}

	put_family_header(f, "sitesync_link_up", "gauge",
	                  "1 when the link to the parent is active (always 1 for the top site).");
	json_array_foreach(sites, i, row) {
		const char *code = site_code(row);
		const json_t *link = json_object_get(row, "link");
		const json_t *parent = json_object_get(row, "parent");
		int up;

		if (code == NULL)
			continue;
		if (link == NULL || json_is_null(link))
			up = parent == NULL || json_is_null(parent);
		else
			up = json_is_string(link) && strcmp(json_string_value(link), "active") == 0;
		fputs("sitesync_link_up{site=\"", f);
		put_escaped_label(f, code);
		fprintf(f, "\"} %d\n", up);
	}

	put_family_header(f, "sitesync_last_success_timestamp_seconds", "gauge",
	                  "Unix time the last successful sync of the site ended.");
	json_array_foreach(sites, i, row) {
		const char *code = site_code(row);
		const json_t *v = json_object_get(row, "last_success");
		const char *state = json_string_value(json_object_get(row, "state"));
		bool have;

		if (code == NULL)
			continue;
		/* Without last_success, the last end counts only if it succeeded. */
		if ((v == NULL || json_is_null(v)) && state != NULL &&
		    strcmp(state, "succeeded") == 0)
			v = json_object_get(row, "last_sync_end");
		have = json_sample_value(v, &d, &integer, &iv);
		if (!have && json_is_string(v) &&
		    http_parse_iso8601(json_string_value(v), &d) == SS_EOK) {
			have = true;
			integer = d == floor(d) && fabs(d) < 1e15;
			iv = (json_int_t)d;
		}
		if (!have)
			continue;
		put_site_sample(f, "sitesync_last_success_timestamp_seconds", code, d, integer, iv);
	}

	put_family_header(f, "sitesync_cert_expiry_timestamp_seconds", "gauge",
	                  "Unix time the site's certificate expires.");
	json_array_foreach(sites, i, row) {
		const char *code = site_code(row);
		const char *when = json_string_value(json_object_get(row, "cert_expires"));

		if (code == NULL || when == NULL || http_parse_iso8601(when, &d) != SS_EOK)
			continue;
		put_site_sample(f, "sitesync_cert_expiry_timestamp_seconds", code, d,
		                d == floor(d) && fabs(d) < 1e15, (json_int_t)d);
	}

	put_family_header(f, "sitesync_cert_expiring", "gauge",
	                  "1 when the site's certificate expires within [status] "
	                  "cert_warning_days (or has expired).");
	json_array_foreach(sites, i, row) {
		const char *code = site_code(row);
		const json_t *flag = json_object_get(row, "cert_expiring");

		if (code == NULL || !json_is_boolean(flag))
			continue;
		fputs("sitesync_cert_expiring{site=\"", f);
		put_escaped_label(f, code);
		fprintf(f, "\"} %d\n", json_is_true(flag) ? 1 : 0);
	}

	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
