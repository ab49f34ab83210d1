/*
 * HTTP endpoint: /status, /metrics (checked with the Prometheus parser via
 * check_metrics.py), the dashboard, 404/405/503, and metrics rendering of
 * edge cases. Server and client share one event base.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "common/errcode.h"
#include "server/dashboard.h"
#include "server/http.h"
#include "check_run.h"

static const char fixture[] =
	"{\"site\": \"CAS\", \"top_version\": 42, \"generated_at\": \"2026-11-24T02:00:20Z\","
	" \"sites\": ["
	"  {\"site\": \"CAS\", \"parent\": null, \"state\": \"succeeded\","
	"   \"catalog_version\": 42, \"lag_versions\": 0, \"lag_seconds\": 0,"
	"   \"link\": null, \"last_sync_start\": \"2026-11-24T02:00:00Z\","
	"   \"last_sync_end\": \"2026-11-24T02:00:10Z\", \"last_error_code\": 0,"
	"   \"last_error\": null, \"next_retry\": null, \"consecutive_failures\": 0,"
	"   \"added\": 10, \"changed\": 3, \"removed\": 2, \"expired\": 5,"
	"   \"version\": \"0.1.0\", \"cert_expires\": \"2027-11-24T00:00:00Z\","
	"   \"cert_expiring\": false},"
	"  {\"site\": \"P01\", \"parent\": \"CAS\", \"state\": \"syncing\","
	"   \"catalog_version\": 41, \"lag_versions\": 1, \"lag_seconds\": 12.5,"
	"   \"link\": \"active\", \"last_sync_start\": \"2026-11-24T02:00:12Z\","
	"   \"last_sync_end\": \"2026-11-17T02:00:30Z\", \"last_error_code\": 0,"
	"   \"last_error\": null, \"next_retry\": null, \"consecutive_failures\": 0,"
	"   \"added\": 1, \"changed\": 0, \"removed\": 0, \"expired\": 0,"
	"   \"version\": \"0.1.0\", \"cert_expires\": null,"
	"   \"bytes_received\": 123456, \"last_success\": \"2026-11-17T02:00:30Z\"},"
	"  {\"site\": \"S01\", \"parent\": \"P01\", \"state\": \"failed\","
	"   \"catalog_version\": 40, \"lag_versions\": 2, \"lag_seconds\": 604800,"
	"   \"link\": \"down\", \"last_sync_start\": \"2026-11-24T01:00:00Z\","
	"   \"last_sync_end\": \"2026-11-24T01:00:05Z\", \"last_error_code\": 505,"
	"   \"last_error\": \"db said \\\"no\\\"\\nthen hung up\","
	"   \"next_retry\": \"2026-11-24T02:00:05Z\", \"consecutive_failures\": 3,"
	"   \"added\": 0, \"changed\": 0, \"removed\": 0, \"expired\": 0,"
	"   \"version\": \"0.1.0\", \"cert_expires\": \"2027-01-01T00:00:00Z\","
	"   \"cert_expiring\": true}"
	" ]}";

typedef struct {
	struct event_base *base;
	int code;      /* response code, -1 on connection failure */
	char *ctype;   /* Content-Type */
	char *allow;   /* Allow header */
	char *body;    /* NUL-terminated */
	size_t len;
} fetch_t;

static json_t *fixture_status_cb(void *arg)
{
	json_error_t jerr;
	json_t *j = json_loads(fixture, 0, &jerr);

	(void)arg;
	ck_assert_msg(j != NULL, "fixture: %s", jerr.text);
	return j;
}

static json_t *null_status_cb(void *arg)
{
	(void)arg;
	return NULL;
}

static void fetch_done_cb(struct evhttp_request *req, void *arg)
{
	fetch_t *f = arg;

	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		f->code = -1;
	} else {
		struct evkeyvalq *h = evhttp_request_get_input_headers(req);
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		const char *ct = evhttp_find_header(h, "Content-Type");
		const char *al = evhttp_find_header(h, "Allow");

		f->code = evhttp_request_get_response_code(req);
		f->ctype = ct ? strdup(ct) : NULL;
		f->allow = al ? strdup(al) : NULL;
		f->len = evbuffer_get_length(in);
		f->body = malloc(f->len + 1);
		evbuffer_remove(in, f->body, f->len);
		f->body[f->len] = '\0';
	}
	event_base_loopbreak(f->base);
}

static void fetch_clear(fetch_t *f)
{
	free(f->ctype);
	free(f->allow);
	free(f->body);
	memset(f, 0, sizeof(*f));
}

static fetch_t fetch(struct event_base *base, int port, enum evhttp_cmd_type cmd,
                     const char *path)
{
	fetch_t f = { .base = base, .code = 0 };
	struct evhttp_connection *conn;
	struct evhttp_request *req;

	conn = evhttp_connection_base_new(base, NULL, "127.0.0.1", (ev_uint16_t)port);
	ck_assert_ptr_nonnull(conn);
	req = evhttp_request_new(fetch_done_cb, &f);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
	ck_assert_int_eq(evhttp_make_request(conn, req, cmd, path), 0);
	event_base_dispatch(base);
	evhttp_connection_free(conn);
	ck_assert_msg(f.code != 0, "%s: no response", path);
	return f;
}

static http_t *start(struct event_base *base, http_status_cb cb)
{
	char err[256] = "";
	http_t *h = NULL;

	ck_assert_msg(http_start(base, "127.0.0.1:0", cb, NULL, &h, err, sizeof(err)) == SS_EOK,
	              "%s", err);
	ck_assert_int_gt(http_port(h), 0);
	return h;
}

/* Runs check_metrics.py on text; returns its exit status. */
static int check_metrics(const char *text, const char *args)
{
	const char *data = getenv("SS_TEST_DATA");
	char cmd[4096];
	FILE *p;
	int st;

	ck_assert_msg(data != NULL, "SS_TEST_DATA not set (run through meson test)");
	/*
	 * The Debian package installs the parser for the system interpreter,
	 * which a python3 earlier in PATH (pyenv, venv) may not see.
	 */
	snprintf(cmd, sizeof(cmd), "%s '%s/../unit/check_metrics.py' %s",
	         access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3",
	         data, args);
	p = popen(cmd, "w");
	ck_assert_ptr_nonnull(p);
	fputs(text, p);
	st = pclose(p);
	ck_assert_msg(WIFEXITED(st), "check_metrics.py did not exit normally");
	if (WEXITSTATUS(st) == 3)
		ck_abort_msg("the Prometheus parser is missing: install the Debian package "
		             "python3-prometheus-client");
	return WEXITSTATUS(st);
}

START_TEST(status_json)
{
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);
	fetch_t f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/status");
	json_t *want = fixture_status_cb(NULL), *got;
	json_error_t jerr;

	ck_assert_int_eq(f.code, 200);
	ck_assert_str_eq(f.ctype, "application/json");
	got = json_loads(f.body, 0, &jerr);
	ck_assert_msg(got != NULL, "/status is not JSON: %s", jerr.text);
	ck_assert(json_equal(got, want));
	json_decref(got);
	fetch_clear(&f);

	/* A query string does not change the route. */
	f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/status?x=1");
	ck_assert_int_eq(f.code, 200);
	fetch_clear(&f);

	/* HEAD: headers only. */
	f = fetch(base, http_port(h), EVHTTP_REQ_HEAD, "/status");
	ck_assert_int_eq(f.code, 200);
	ck_assert_str_eq(f.ctype, "application/json");
	ck_assert_uint_eq(f.len, 0);
	fetch_clear(&f);

	json_decref(want);
	http_free(h);
	event_base_free(base);
}
END_TEST

START_TEST(metrics_route)
{
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);
	fetch_t f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/metrics");

	ck_assert_int_eq(f.code, 200);
	ck_assert_str_eq(f.ctype, "text/plain; version=0.0.4; charset=utf-8");
	ck_assert_int_eq(check_metrics(f.body,
		"--sites CAS,P01,S01 "
		"--expect 'sitesync_top_version=42' "
		"--expect 'sitesync_catalog_version{site=\"CAS\"}=42' "
		"--expect 'sitesync_catalog_version{site=\"P01\"}=41' "
		"--expect 'sitesync_catalog_version{site=\"S01\"}=40' "
		"--expect 'sitesync_lag_versions{site=\"S01\"}=2' "
		"--expect 'sitesync_lag_seconds{site=\"P01\"}=12.5' "
		"--expect 'sitesync_state{site=\"CAS\",state=\"succeeded\"}=1' "
		"--expect 'sitesync_state{site=\"P01\",state=\"syncing\"}=1' "
		"--expect 'sitesync_state{site=\"S01\",state=\"failed\"}=1' "
		"--expect 'sitesync_state{site=\"S01\",state=\"succeeded\"}=0' "
		"--expect 'sitesync_link_up{site=\"CAS\"}=1' "
		"--expect 'sitesync_link_up{site=\"P01\"}=1' "
		"--expect 'sitesync_link_up{site=\"S01\"}=0' "
		"--expect 'sitesync_last_success_timestamp_seconds{site=\"CAS\"}=1795485610' "
		"--expect 'sitesync_last_success_timestamp_seconds{site=\"P01\"}=1794880830' "
		"--absent 'sitesync_last_success_timestamp_seconds{site=\"S01\"}' "
		"--expect 'sitesync_consecutive_failures{site=\"S01\"}=3' "
		"--expect 'sitesync_bytes_received_total{site=\"P01\"}=123456' "
		"--absent 'sitesync_bytes_received_total{site=\"CAS\"}' "
		"--expect 'sitesync_last_sync_added{site=\"CAS\"}=10' "
		"--expect 'sitesync_last_sync_changed{site=\"CAS\"}=3' "
		"--expect 'sitesync_last_sync_removed{site=\"CAS\"}=2' "
		"--expect 'sitesync_last_sync_expired{site=\"CAS\"}=5' "
		"--expect 'sitesync_cert_expiry_timestamp_seconds{site=\"S01\"}=1798761600' "
		"--expect 'sitesync_cert_expiring{site=\"CAS\"}=0' "
		"--expect 'sitesync_cert_expiring{site=\"S01\"}=1' "
		"--absent 'sitesync_cert_expiring{site=\"P01\"}'"), 0);
	/* Free text never becomes a label. */
	ck_assert_ptr_null(strstr(f.body, "hung up"));
	ck_assert_ptr_nonnull(strstr(f.body, "# TYPE sitesync_bytes_received_total counter\n"));
	ck_assert_ptr_nonnull(strstr(f.body, "# HELP sitesync_catalog_version "));
	fetch_clear(&f);

	http_free(h);
	event_base_free(base);
}
END_TEST

/* The checker itself must refuse broken text, or the test above proves nothing. */
START_TEST(checker_refuses)
{
	char *good;
	json_t *st = fixture_status_cb(NULL);

	good = http_metrics_render(st);
	ck_assert_int_eq(check_metrics(good, "--sites CAS,P01,S01"), 0);
	ck_assert_int_ne(check_metrics(good, "--sites CAS,P01"), 0);
	ck_assert_int_ne(check_metrics(good, "--expect 'sitesync_top_version=41'"), 0);
	ck_assert_int_ne(check_metrics("sitesync_top_version 1\n", ""), 0);
	ck_assert_int_ne(check_metrics("# HELP x y\n# TYPE x gauge\nx{site=\"a\"} 1\n"
	                               "# HELP z y\n# TYPE z gauge\nz{site=\"a\"} 1\n"
	                               "x{site=\"b\"} 1\n", ""), 0);
	ck_assert_int_ne(check_metrics("# HELP x y\n# TYPE x gauge\nx{site=\"a\n\"} 1\n", ""), 0);
	free(good);
	json_decref(st);
}
END_TEST

START_TEST(dashboard)
{
	static const char *const paths[] = { "/", "/index.html" };
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);

	for (int i = 0; i < 2; i++) {
		fetch_t f = fetch(base, http_port(h), EVHTTP_REQ_GET, paths[i]);

		ck_assert_int_eq(f.code, 200);
		ck_assert_str_eq(f.ctype, "text/html; charset=utf-8");
		ck_assert_ptr_nonnull(strstr(f.body, "<!DOCTYPE html>"));
		ck_assert_ptr_nonnull(strstr(f.body, "fetch('/status'"));
		ck_assert_ptr_nonnull(strstr(f.body, "setInterval(refresh, 2000)"));
		ck_assert_ptr_nonnull(strstr(f.body, "'data-site'"));
		ck_assert_ptr_nonnull(strstr(f.body, "'data-state'"));
		ck_assert_ptr_nonnull(strstr(f.body, "generated_at"));
		ck_assert_ptr_nonnull(strstr(f.body, ".st-succeeded .badge { background: #2e7d32"));
		ck_assert_ptr_nonnull(strstr(f.body, ".st-failed .badge { background: #c62828"));
		/* Self-contained: nothing loaded from elsewhere. */
		ck_assert_ptr_null(strstr(f.body, "http://"));
		ck_assert_ptr_null(strstr(f.body, "https://"));
		ck_assert_ptr_null(strstr(f.body, "src="));
		ck_assert_ptr_null(strstr(f.body, "<link"));
		fetch_clear(&f);
	}
	http_free(h);
	event_base_free(base);
}
END_TEST

/* When node is installed, the page's script must at least parse. */
START_TEST(dashboard_script_parses)
{
	const char *start = strstr(http_dashboard_html, "<script>");
	const char *end = strstr(http_dashboard_html, "</script>");
	char path[] = "/tmp/ss-dash-XXXXXX.js";
	char cmd[256];
	FILE *fp;
	int fd, st;

	if (system("command -v node >/dev/null 2>&1") != 0)
		return;  /* optional: no JavaScript engine here */
	ck_assert(start != NULL && end != NULL && end > start);
	start += strlen("<script>");
	fd = mkstemps(path, 3);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	fwrite(start, 1, (size_t)(end - start), fp);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "node --check '%s'", path);
	st = system(cmd);
	unlink(path);
	ck_assert_msg(st == 0, "dashboard JavaScript does not parse");
}
END_TEST

/*
 * Without a browser here, run the page's script in node against a small
 * stand-in for the DOM and fetch(), then list the rows it drew.
 */
static const char dom_stub[] =
	"'use strict';\n"
	"function El(tag) { this.tagName = tag; this.children = []; this.attrs = {};\n"
	"  this.style = {}; this.className = ''; this.textContent = ''; }\n"
	"El.prototype.appendChild = function (c) { this.children.push(c); return c; };\n"
	"El.prototype.removeChild = function (c) {\n"
	"  this.children.splice(this.children.indexOf(c), 1); return c; };\n"
	"Object.defineProperty(El.prototype, 'firstChild',\n"
	"  { get: function () { return this.children[0] || null; } });\n"
	"El.prototype.setAttribute = function (k, v) { this.attrs[k] = String(v); };\n"
	"El.prototype.removeAttribute = function (k) { delete this.attrs[k]; };\n"
	"var location = { hash: '' };\n"
	"var window = { addEventListener: function () {} };\n"
	"var ids = {};\n"
	"var document = {\n"
	"  getElementById: function (id) { return ids[id] || (ids[id] = new El('#' + id)); },\n"
	"  createElement: function (tag) { return new El(tag); } };\n"
	"var STATUS = require('fs').readFileSync(process.argv[2], 'utf8');\n"
	"var fetched = [];\n"
	"function fetch(url) { fetched.push(url);\n"
	"  return Promise.resolve({ ok: true, status: 200,\n"
	"    json: function () { return Promise.resolve(JSON.parse(STATUS)); } }); }\n"
	"var intervals = [];\n"
	"function setInterval(f, ms) { intervals.push(ms); }\n"
	"setTimeout(function () {\n"
	"  var out = ['fetch ' + fetched.join(','), 'every ' + intervals.join(','),\n"
	"    'generated ' + ids.generated.textContent, 'top ' + ids.top.textContent,\n"
"    'certs ' + ids.certs.textContent];\n"
	"  ids.sites.children.forEach(function (tr) {\n"
	"    out.push(tr.attrs['data-site'] + ' ' + tr.attrs['data-state'] + ' ' +\n"
	"      tr.className + ' ' + tr.children[0].style.paddingLeft + ' ' +\n"
	"      tr.children.length + ' ' + tr.children[5].textContent + ' | ' +\n"
"      tr.attrs['data-cert-expiring'] + ' ' + tr.children[6].textContent + ' ' +\n"
"      tr.children[6].className);\n"
	"  });\n"
	"  console.log(out.join('\\n'));\n"
	"}, 50);\n";

START_TEST(dashboard_renders)
{
	const char *start = strstr(http_dashboard_html, "<script>");
	const char *end = strstr(http_dashboard_html, "</script>");
	char js[] = "/tmp/ss-dash-XXXXXX.js", data[] = "/tmp/ss-status-XXXXXX.json";
	char cmd[512], out[4096];
	size_t n;
	FILE *fp;
	int fd;

	if (system("command -v node >/dev/null 2>&1") != 0)
		return;  /* optional: no JavaScript engine here */
	ck_assert(start != NULL && end != NULL);
	start += strlen("<script>");
	fd = mkstemps(js, 3);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	fputs(dom_stub, fp);
	fwrite(start, 1, (size_t)(end - start), fp);
	fclose(fp);
	fd = mkstemps(data, 5);
	ck_assert_int_ge(fd, 0);
	fp = fdopen(fd, "w");
	/* The children first: the tree must not depend on row order. */
	fputs("{\"site\":\"CAS\",\"top_version\":42,\"generated_at\":\"2026-11-24T02:00:20Z\","
	      "\"certs_expiring\":[{\"site\":\"S01\"},{\"site\":\"P02\"}],"
	      "\"sites\":[{\"site\":\"S01\",\"parent\":\"P01\",\"state\":\"failed\","
	      "\"catalog_version\":40,\"lag_versions\":2,\"link\":\"down\","
	      "\"last_error_code\":505,\"last_error\":\"db <b>down</b>\","
	      "\"cert_expires\":\"2026-12-01T00:00:00Z\",\"cert_expiring\":true,"
	      "\"cert_days_left\":6},"
	      "{\"site\":\"P02\",\"parent\":\"CAS\",\"state\":\"stale\",\"catalog_version\":39,"
	      "\"link\":\"disconnected\"},"
	      "{\"site\":\"P01\",\"parent\":\"CAS\",\"state\":\"syncing\",\"catalog_version\":41,"
	      "\"link\":\"active\"},"
	      "{\"site\":\"CAS\",\"parent\":null,\"state\":\"succeeded\",\"catalog_version\":42,"
	      "\"link\":null,\"cert_expires\":\"2028-02-29T12:00:00Z\",\"cert_expiring\":false,"
	      "\"cert_days_left\":826}]}", fp);
	fclose(fp);
	snprintf(cmd, sizeof(cmd), "node '%s' '%s'", js, data);
	fp = popen(cmd, "r");
	ck_assert_ptr_nonnull(fp);
	n = fread(out, 1, sizeof(out) - 1, fp);
	out[n] = '\0';
	ck_assert_int_eq(pclose(fp), 0);
	unlink(js);
	unlink(data);
	ck_assert_str_eq(out,
		"fetch /status\n"
		"every 2000\n"
		"generated 2026-11-24T02:00:20Z\n"
		"top 42\n"
		"certs \u00b7 certificates to renew: S01, P02\n"
		"CAS succeeded st-succeeded 0.8em 7  | false 2028-02-29 when\n"
		"P01 syncing st-syncing 2.4em 7  | false - when\n"
		"S01 failed st-failed 4.0em 7 505: db <b>down</b> | true 2026-12-01 (renew: 6 days left) when cert-warn\n"
		"P02 stale st-stale 2.4em 7  | false - when\n");
}
END_TEST

/* GET / carries the rows as HTML; text from remote sites is escaped. */
START_TEST(dashboard_server_side)
{
	json_error_t jerr;
	json_t *st = json_loads(
		"{\"site\":\"CAS\",\"top_version\":3,\"generated_at\":\"2026-11-24T02:00:20Z\","
		"\"sites\":[{\"site\":\"S01\",\"parent\":\"P01\",\"state\":\"stale\","
		"\"catalog_version\":2,\"lag_versions\":1,\"stale_reason\":\"link to P01 down\","
		"\"last_error\":\"<script>alert(1)</script>\",\"last_error_code\":505},"
		"{\"site\":\"CAS\",\"parent\":null,\"state\":\"succeeded\",\"catalog_version\":3},"
		"{\"site\":\"P01\",\"parent\":\"CAS\",\"state\":\"succeeded\",\"catalog_version\":3,"
		"\"link\":\"active\\\"><b>\"}],"
		"\"syncs\":[{\"kind\":\"upstream\",\"trigger\":\"manual\",\"result\":\"failed\","
		"\"source\":\"file:///x/<img src=x>\",\"from_version\":3,\"to_version\":3,"
		"\"error_code\":521,\"error\":\"a & b\",\"by_source\":\"upstream: 1 added, 0 changed, "
		"0 removed; v<1>: 0 added, 0 changed, 2 removed\"}]}", 0, &jerr);
	ck_assert_msg(st != NULL, "%s", jerr.text);
	char *page = dashboard_render(http_dashboard_html, st, NULL);
	ck_assert_ptr_nonnull(page);
	/* Depth-first: CAS, P01, S01. */
	const char *cas = strstr(page, "data-site=\"CAS\" data-state=\"succeeded\"");
	const char *p01 = strstr(page, "data-site=\"P01\"");
	const char *s01 = strstr(page, "data-site=\"S01\" data-state=\"stale\"");
	ck_assert(cas && p01 && s01 && cas < p01 && p01 < s01);
	ck_assert_ptr_nonnull(strstr(page, "505: &lt;script&gt;alert(1)&lt;/script&gt;; link to P01 down"));
	ck_assert_ptr_null(strstr(page, "<script>alert"));
	ck_assert_ptr_nonnull(strstr(page, "active&quot;&gt;&lt;b&gt;"));
	ck_assert_ptr_nonnull(strstr(page, "file:///x/&lt;img src=x&gt;"));
	ck_assert_ptr_nonnull(strstr(page, "521: a &amp; b"));
	ck_assert_ptr_nonnull(strstr(page, "upstream: 1 added, 0 changed, 0 removed; v&lt;1&gt;: 0 added, "
	                             "0 changed, 2 removed</td></tr>"));
	ck_assert_ptr_nonnull(strstr(page, "data-sync-trigger=\"manual\""));
	ck_assert_ptr_null(strstr(page, "<!--SITES-->"));
	/* No ?site=: the detail view is hidden and empty. */
	ck_assert_ptr_nonnull(strstr(page, "<section id=\"detail\" hidden>"));
	ck_assert_ptr_null(strstr(page, "data-field=\""));
	free(page);
	/* ?site=S01: its fields, syncs and messages, escaped like the rest. */
	json_t *row = json_array_get(json_object_get(st, "sites"), 0);
	json_object_set_new(row, "syncs", json_loads(
		"[{\"kind\":\"pull\",\"trigger\":\"parent\",\"result\":\"failed\","
		"\"started_at\":\"2026-11-24T02:00:00Z\",\"ended_at\":\"2026-11-24T02:00:07Z\","
		"\"duration_s\":7,\"source\":\"parent P01 (x)\",\"from_version\":2,"
		"\"to_version\":2,\"added\":4,\"changed\":3,\"removed\":2,\"expired\":1,"
		"\"error_code\":505,\"error\":\"<i>gone</i>\"}]", 0, &jerr));
	json_object_set_new(row, "messages", json_loads(
		"[{\"at\":\"2026-11-24T02:00:09Z\",\"site\":\"S01\",\"msg_id\":7142,"
		"\"severity\":\"error\",\"text\":\"Reload refused: <svg onload=x>\"}]", 0, &jerr));
	page = dashboard_render(http_dashboard_html, st, "S01");
	ck_assert_ptr_nonnull(page);
	ck_assert_ptr_nonnull(strstr(page, "<section id=\"detail\" data-detail-site=\"S01\">"));
	ck_assert_ptr_nonnull(strstr(page, "<span id=\"detail-site\">S01</span>"));
	ck_assert_ptr_nonnull(strstr(page, "<tr data-field=\"state\"><th>State</th><td>stale</td></tr>"));
	ck_assert_ptr_nonnull(strstr(page, "<tr data-field=\"parent\"><th>Parent</th><td>P01</td></tr>"));
	ck_assert_ptr_nonnull(strstr(page, "<tr data-field=\"link\"><th>Link</th><td>-</td></tr>"));
	ck_assert_ptr_nonnull(strstr(page, "<tr data-msg-id=\"7142\"><td class=\"when\">"
		"2026-11-24T02:00:09Z</td><td>7142</td><td>error</td><td class=\"err\">"
		"Reload refused: &lt;svg onload=x&gt;</td></tr>"));
	ck_assert_ptr_nonnull(strstr(page, "<td>4</td><td>3</td><td>2</td><td>1</td>"
		"<td class=\"err\">505: &lt;i&gt;gone&lt;/i&gt;</td>"));
	ck_assert_ptr_null(strstr(page, "<svg onload"));
	ck_assert_ptr_null(strstr(page, "<!--DETAIL"));
	free(page);
	/* A code not in the view, or none: hidden. */
	page = dashboard_render(http_dashboard_html, st, "ZZZ");
	ck_assert_ptr_nonnull(strstr(page, "<section id=\"detail\" hidden>"));
	free(page);
	json_decref(st);
	/* No status: the page, with empty tables. */
	page = dashboard_render(http_dashboard_html, NULL, NULL);
	ck_assert_ptr_nonnull(page);
	ck_assert_ptr_null(strstr(page, "<!--SYNCS-->"));
	ck_assert_ptr_null(strstr(page, "data-site=\""));
	free(page);
}
END_TEST

START_TEST(errors)
{
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);
	http_t *down = start(base, null_status_cb);
	fetch_t f;

	f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/nope");
	ck_assert_int_eq(f.code, 404);
	fetch_clear(&f);
	f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/status/extra");
	ck_assert_int_eq(f.code, 404);
	fetch_clear(&f);
	f = fetch(base, http_port(h), EVHTTP_REQ_POST, "/status");
	ck_assert_int_eq(f.code, 405);
	ck_assert_str_eq(f.allow, "GET, HEAD");
	fetch_clear(&f);
	f = fetch(base, http_port(h), EVHTTP_REQ_DELETE, "/");
	ck_assert_int_eq(f.code, 405);
	fetch_clear(&f);
	/* No status available: 503, but the page itself still loads. */
	f = fetch(base, http_port(down), EVHTTP_REQ_GET, "/metrics");
	ck_assert_int_eq(f.code, 503);
	fetch_clear(&f);
	f = fetch(base, http_port(down), EVHTTP_REQ_GET, "/");
	ck_assert_int_eq(f.code, 200);
	fetch_clear(&f);

	http_free(down);
	http_free(h);
	http_free(NULL);
	event_base_free(base);
}
END_TEST

START_TEST(listen_addresses)
{
	static const char *const bad[] = {
		"", "nonsense", "::1:80", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:8x",
		"[::1]80", ":80",
	};
	struct event_base *base = event_base_new();
	http_t *h = NULL, *h2 = NULL;
	char err[256], addr[64];
	int ret;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(http_start(base, bad[i], fixture_status_cb, NULL, &h, err,
		                         sizeof(err)) == SS_EINVAL, "'%s' accepted", bad[i]);
		ck_assert_ptr_nonnull(strstr(err, "HOST:PORT"));
	}
	h = start(base, fixture_status_cb);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_port(h));
	ck_assert_int_eq(http_start(base, addr, fixture_status_cb, NULL, &h2, err, sizeof(err)),
	                 SS_EIO);
	ck_assert_ptr_nonnull(strstr(err, addr));
	http_free(h);
	/* IPv6 loopback, where the host has it. */
	ret = http_start(base, "[::1]:0", fixture_status_cb, NULL, &h2, err, sizeof(err));
	ck_assert(ret == SS_EOK || ret == SS_EIO);
	if (ret == SS_EOK) {
		ck_assert_int_gt(http_port(h2), 0);
		http_free(h2);
	}
	event_base_free(base);
}
END_TEST

START_TEST(render_edge_cases)
{
	json_error_t jerr;
	json_t *st = json_loads(
		"{\"site\": \"P01\", \"top_version\": null, \"sites\": ["
		" {\"site\": \"P01\", \"parent\": \"CAS\", \"state\": \"idle\","
		"  \"catalog_version\": null, \"lag_versions\": null, \"lag_seconds\": null,"
		"  \"link\": null, \"last_sync_start\": null, \"last_sync_end\": null,"
		"  \"last_error_code\": 0, \"last_error\": null, \"consecutive_failures\": 0,"
		"  \"added\": null, \"changed\": null, \"removed\": null, \"expired\": null},"
		" {\"site\": \"TOP\", \"parent\": null, \"state\": \"succeeded\","
		"  \"catalog_version\": 7, \"link\": null,"
		"  \"last_sync_end\": \"2026-11-24T02:00:10.5+01:00\"},"
		" {\"site\": \"Q\\\"\\\\\\nX\", \"parent\": \"TOP\", \"state\": \"bogus\","
		"  \"catalog_version\": 1, \"link\": \"degraded\","
		"  \"last_error\": \"bad \\\"thing\\\"\\nhappened\\\\\"},"
		" {\"parent\": \"TOP\", \"state\": \"failed\", \"catalog_version\": 99}"
		"]}", 0, &jerr);
	char *text;

	ck_assert_msg(st != NULL, "%s", jerr.text);
	text = http_metrics_render(st);
	ck_assert_ptr_nonnull(text);
	/* Never synced: no version, no success time, state idle, link down. */
	ck_assert_ptr_null(strstr(text, "sitesync_catalog_version{site=\"P01\"}"));
	ck_assert_ptr_null(strstr(text, "sitesync_last_success_timestamp_seconds{site=\"P01\"}"));
	ck_assert_ptr_null(strstr(text, "sitesync_last_sync_added{site=\"P01\"}"));
	ck_assert_ptr_nonnull(strstr(text, "sitesync_state{site=\"P01\",state=\"idle\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "sitesync_link_up{site=\"P01\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(text, "sitesync_consecutive_failures{site=\"P01\"} 0\n"));
	ck_assert_ptr_null(strstr(text, "\nsitesync_top_version "));
	/* Top site: null link counts as up; last_sync_end with an offset. */
	ck_assert_ptr_nonnull(strstr(text, "sitesync_link_up{site=\"TOP\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text,
		"sitesync_last_success_timestamp_seconds{site=\"TOP\"} 1795482010.5\n"));
	/* Label escaping of the site code; the error text appears nowhere. */
	ck_assert_ptr_nonnull(strstr(text, "sitesync_catalog_version{site=\"Q\\\"\\\\\\nX\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "sitesync_link_up{site=\"Q\\\"\\\\\\nX\"} 0\n"));
	ck_assert_ptr_null(strstr(text, "happened"));
	ck_assert_ptr_null(strstr(text, "thing"));
	/* Unknown state: every one-hot sample 0. */
	ck_assert_ptr_nonnull(strstr(text, "sitesync_state{site=\"Q\\\"\\\\\\nX\",state=\"idle\"} 0\n"));
	ck_assert_ptr_null(strstr(text, "sitesync_state{site=\"Q\\\"\\\\\\nX\",state=\"idle\"} 1"));
	/* A row without a site code is skipped. */
	ck_assert_ptr_null(strstr(text, " 99\n"));
	ck_assert_int_eq(check_metrics(text,
		"--expect 'sitesync_catalog_version{site=\"Q\\\"\\\\\\nX\"}=1' "
		"--expect 'sitesync_link_up{site=\"TOP\"}=1'"), 0);
	free(text);
	json_decref(st);

	/* Empty tree and a non-object. */
	st = json_pack("{s:i, s:[]}", "top_version", 3, "sites");
	text = http_metrics_render(st);
	ck_assert_ptr_nonnull(strstr(text, "\nsitesync_top_version 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE sitesync_state gauge\n"));
	ck_assert_int_eq(check_metrics(text, "--expect 'sitesync_top_version=3'"), 0);
	free(text);
	json_decref(st);
	st = json_array();
	ck_assert_ptr_null(http_metrics_render(st));
	json_decref(st);
}
END_TEST

START_TEST(iso8601)
{
	double t;

	ck_assert_int_eq(http_parse_iso8601("2026-11-24T02:00:20Z", &t), SS_EOK);
	ck_assert(t == 1795485620.0);
	ck_assert_int_eq(http_parse_iso8601("2026-11-24T03:00:20+01:00", &t), SS_EOK);
	ck_assert(t == 1795485620.0);
	ck_assert_int_eq(http_parse_iso8601("2026-11-23T21:00:20.25-05:00", &t), SS_EOK);
	ck_assert(t == 1795485620.25);
	ck_assert_int_eq(http_parse_iso8601("2026-11-24T02:00:20", &t), SS_EINVAL);
	ck_assert_int_eq(http_parse_iso8601("2026-11-24T02:00:20Zjunk", &t), SS_EINVAL);
	ck_assert_int_eq(http_parse_iso8601("yesterday", &t), SS_EINVAL);
	ck_assert_int_eq(http_parse_iso8601(NULL, &t), SS_EINVAL);
}
END_TEST


/* Runs the server's loop for ms milliseconds. */
static void spin(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Bytes waiting on fd now; 0 at EOF, -1 when nothing has come yet. */
static ssize_t raw_read(int fd, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -1;
	if (n < 0)
		return 0;       /* reset: closed all the same */
	buf[n] = '\0';
	return n;
}

/* An endless request line or header is cut off at [http] max_header_bytes:
 * refused and closed, not buffered. */
START_TEST(header_flood_refused)
{
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);
	http_set_limits(h, 1024, 1024, 10, 8);
	int fd = raw_connect(http_port(h));
	char junk[4096];
	memset(junk, 'a', sizeof(junk));
	const char *head = "GET /status HTTP/1.1\r\nHost: x\r\nX-Flood: ";
	ck_assert_int_eq(send(fd, head, strlen(head), 0), (ssize_t)strlen(head));
	ssize_t sent = 0;
	for (int i = 0; i < 4; i++) {
		ssize_t n = send(fd, junk, sizeof(junk), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			sent += n;
		spin(base, 50);
	}
	ck_assert_int_gt(sent, 1024);
	spin(base, 200);
	/* Whatever evhttp answered (413 or nothing), the connection is over. */
	char buf[4096];
	ssize_t n;
	bool closed = false;
	for (int i = 0; i < 20 && !closed; i++) {
		while ((n = raw_read(fd, buf, sizeof(buf))) > 0)
			ck_assert_msg(strncmp(buf, "HTTP/1.1 2", 10) != 0, "answered: %s", buf);
		closed = n == 0;
		if (!closed)
			spin(base, 50);
	}
	ck_assert_msg(closed, "a request with %zd bytes of headers is still open", sent);
	close(fd);
	/* The server still answers others. */
	fetch_t f = fetch(base, http_port(h), EVHTTP_REQ_GET, "/status");
	ck_assert_int_eq(f.code, 200);
	fetch_clear(&f);
	http_free(h);
	event_base_free(base);
}
END_TEST

/* At [http] max_connections open connections accepting pauses; the next
 * client is served as soon as one of them closes. */
START_TEST(connection_cap)
{
	struct event_base *base = event_base_new();
	http_t *h = start(base, fixture_status_cb);
	http_set_limits(h, 8192, 1024, 10, 3);
	int idle[3];
	for (int i = 0; i < 3; i++)
		idle[i] = raw_connect(http_port(h));
	spin(base, 100);
	int fd = raw_connect(http_port(h));     /* the kernel queues it */
	const char *req = "GET /status HTTP/1.0\r\nHost: x\r\n\r\n";
	ck_assert_int_eq(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	spin(base, 300);
	char buf[8192];
	ck_assert_int_eq(raw_read(fd, buf, sizeof(buf)), -1);
	close(idle[0]);
	ssize_t n = -1;
	for (int i = 0; i < 40 && n < 0; i++) {
		spin(base, 50);
		n = raw_read(fd, buf, sizeof(buf));
	}
	ck_assert_msg((n > 0 && strncmp(buf, "HTTP/1.0 200", 12) == 0) ||
		      (n > 0 && strncmp(buf, "HTTP/1.1 200", 12) == 0), "got %zd: %s", n,
		      n > 0 ? buf : "");
	close(fd);
	close(idle[1]);
	close(idle[2]);
	spin(base, 50);
	http_free(h);
	event_base_free(base);
}
END_TEST

int main(void)
{
	return check_tests("http", "core", 30,
		status_json, metrics_route, checker_refuses,
		dashboard, dashboard_script_parses, dashboard_renders,
		dashboard_server_side, errors, listen_addresses,
		render_edge_cases, iso8601, header_flood_refused,
		connection_cap);
}
