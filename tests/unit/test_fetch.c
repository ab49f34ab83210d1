/* Catalog download against a real local HTTP(S) server (http_fixture.py):
 * plain and TLS transfers, CA checks, HTTP errors, conditional GET, retries
 * and the never-a-partial-file rule. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/log.h"
#include "upstream/fetch.h"
#include "check_run.h"

static char g_dir[64];          /* scratch: www/, pki/, downloads */
static pid_t g_server = -1;
static int g_server_stdin = -1; /* closing it stops the fixture */
static int g_http_port, g_https_port;

static const char g_body[] =
	"<?xml version=\"1.0\"?>\n<smc:SystemsManagementCatalog "
	"xmlns:smc=\"http://schemas.microsoft.com/sms/2005/04/CorporatePublishing/"
	"SystemsManagementCatalog.xsd\"/>\n";

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Throwaway CA and a server certificate for 127.0.0.1, plus an unrelated
 * CA that must not be accepted. */
static void make_pki(void)
{
	sh("set -e; cd '%s/pki'; "
	   "for ca in ca other; do openssl req -x509 -newkey ec "
	   "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $ca.key "
	   "-out $ca.crt -days 2 -subj \"/CN=sitesync test $ca\" 2>/dev/null; done; "
	   "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
	   "-nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null; "
	   "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
	   "extendedKeyUsage=serverAuth\\n' > ext.cnf; "
	   "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key "
	   "-CAcreateserial -days 2 -out srv.crt -extfile ext.cnf 2>/dev/null",
	   g_dir);
}

static void start_server(void)
{
	int in[2], out[2];
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	char fixture[512], www[128], cert[128], key[128];
	snprintf(fixture, sizeof(fixture), "%s/../unit/http_fixture.py",
		 getenv("SS_TEST_DATA"));
	snprintf(www, sizeof(www), "%s/www", g_dir);
	snprintf(cert, sizeof(cert), "%s/pki/srv.crt", g_dir);
	snprintf(key, sizeof(key), "%s/pki/srv.key", g_dir);
	g_server = fork();
	ck_assert_int_ge(g_server, 0);
	if (g_server == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execlp("python3", "python3", fixture, "--dir", www, "--cert", cert,
		       "--key", key, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	g_server_stdin = in[1];
	FILE *f = fdopen(out[0], "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d %d", &g_http_port, &g_https_port), 2);
	fclose(f);
	ck_assert_int_gt(g_http_port, 0);
	ck_assert_int_gt(g_https_port, 0);
}

static void setup(void)
{
	/* A proxy from the environment would swallow loopback requests. */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	setenv("no_proxy", "127.0.0.1,localhost", 1);
	ck_assert_ptr_nonnull(getenv("SS_TEST_DATA"));
	snprintf(g_dir, sizeof(g_dir), "/tmp/ss-fetch-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(g_dir));
	sh("mkdir '%s/www' '%s/pki'", g_dir, g_dir);
	char path[256];
	snprintf(path, sizeof(path), "%s/www/catalog.xml", g_dir);
	write_file(path, g_body);
	make_pki();
	start_server();
}

static void teardown(void)
{
	if (g_server_stdin >= 0)
		close(g_server_stdin);
	if (g_server > 0) {
		kill(g_server, SIGTERM);
		waitpid(g_server, NULL, 0);
	}
	sh("rm -rf '%s'", g_dir);
}

static char *url(bool tls, const char *path)
{
	static char buf[4][256];
	static int k;
	char *u = buf[k++ % 4];
	snprintf(u, 256, "%s://127.0.0.1:%d%s", tls ? "https" : "http",
		 tls ? g_https_port : g_http_port, path);
	return u;
}

static char *dest(const char *name)
{
	static char buf[4][256];
	static int k;
	char *d = buf[k++ % 4];
	snprintf(d, 256, "%s/%s", g_dir, name);
	return d;
}

static bool no_tmp_left(const char *d)
{
	char t[300];
	snprintf(t, sizeof(t), "%s.tmp", d);
	return !exists(t);
}

/* Fetching o into NAME succeeds: HTTP 200 and the fixture's body. */
static void fetch_ok(const fetch_opts_t *o, const char *name)
{
	fetch_result_t r;
	char err[256] = "";
	char *d = dest(name);
	int ret = fetch_to_file(o, d, &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_int_eq(r.http_status, 200);
	ck_assert_str_eq(slurp(d), g_body);
	fetch_result_clear(&r);
}

START_TEST(plain_download)
{
	fetch_opts_t o = { .url = url(false, "/catalog.xml"), .timeout = 20 };
	fetch_result_t r;
	char err[256] = "";
	char *d = dest("a.xml");
	int ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert(!r.not_modified);
	ck_assert_int_eq(r.http_status, 200);
	ck_assert_uint_eq(r.bytes, strlen(g_body));
	ck_assert_str_eq(slurp(d), g_body);
	ck_assert_ptr_nonnull(r.etag);
	ck_assert_int_eq(r.etag[0], '"');
	ck_assert_ptr_nonnull(r.last_modified);
	ck_assert_str_eq(r.effective_url, o.url);
	ck_assert(no_tmp_left(d));
	fetch_result_clear(&r);
	fetch_result_clear(&r);         /* idempotent */
	fetch_result_clear(NULL);

	/* Redirects are followed; the final URL is reported. */
	o.url = url(false, "/redirect/catalog.xml");
	ret = fetch_to_file(&o, dest("b.xml"), &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_str_eq(r.effective_url, url(false, "/catalog.xml"));
	fetch_result_clear(&r);

	/* file:// goes through libcurl too. */
	char fu[300];
	snprintf(fu, sizeof(fu), "file://%s/www/catalog.xml", g_dir);
	o.url = fu;
	d = dest("c.xml");
	ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_str_eq(slurp(d), g_body);
	fetch_result_clear(&r);
}
END_TEST

/* The fixture doubles as a forward proxy; the host name cannot resolve,
 * so success means the request went through the proxy. */
START_TEST(through_proxy)
{
	char proxy[64];
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", g_http_port);
	fetch_opts_t o = { .url = "http://catalog.example.invalid/catalog.xml",
			   .proxy = proxy, .timeout = 20 };
	fetch_ok(&o, "proxied.xml");
}
END_TEST

START_TEST(http_404_is_an_error)
{
	fetch_opts_t o = { .url = url(false, "/missing.xml"), .retries = 3 };
	fetch_result_t r;
	char err[256] = "", want[300];
	char *d = dest("missing.xml");
	double t0 = now();
	int ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	/* No retry on 4xx: it would take at least 7 s of backoff. */
	ck_assert_double_lt(now() - t0, 1.0);
	ck_assert_int_eq(ret, SS_EFETCH);
	snprintf(want, sizeof(want), "HTTP 404 from %s", o.url);
	ck_assert_str_eq(err, want);
	ck_assert(!exists(d));
	ck_assert(no_tmp_left(d));
	ck_assert_ptr_null(r.etag);
}
END_TEST

START_TEST(conditional_get)
{
	fetch_opts_t o = { .url = url(false, "/catalog.xml") };
	fetch_result_t r1, r2;
	char err[256] = "";
	char *d = dest("cond.xml");
	ck_assert_int_eq(fetch_to_file(&o, d, &r1, err, sizeof(err)), SS_EOK);

	/* Mark the local copy: a 304 must leave it exactly as it is. */
	write_file(d, "local copy");
	o.etag = r1.etag;
	o.last_modified = r1.last_modified;
	int ret = fetch_to_file(&o, d, &r2, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert(r2.not_modified);
	ck_assert_int_eq(r2.http_status, 304);
	ck_assert_str_eq(r2.etag, r1.etag);
	ck_assert_str_eq(slurp(d), "local copy");
	ck_assert(no_tmp_left(d));
	fetch_result_clear(&r2);

	/* ignore_cache sends no validators: a full download. */
	o.ignore_cache = true;
	ret = fetch_to_file(&o, d, &r2, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert(!r2.not_modified);
	ck_assert_int_eq(r2.http_status, 200);
	ck_assert_str_eq(slurp(d), g_body);
	fetch_result_clear(&r2);

	/* A stale ETag gets the new content. */
	o.ignore_cache = false;
	o.etag = "\"stale\"";
	o.last_modified = NULL;
	write_file(d, "local copy");
	ret = fetch_to_file(&o, d, &r2, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert(!r2.not_modified);
	ck_assert_str_eq(slurp(d), g_body);
	fetch_result_clear(&r2);
	fetch_result_clear(&r1);
}
END_TEST

START_TEST(https_with_ca)
{
	char ca[256];
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", g_dir);
	fetch_opts_t o = { .url = url(true, "/catalog.xml"), .ca_file = ca,
			   .connect_timeout = 10, .timeout = 20 };
	fetch_ok(&o, "tls.xml");
}
END_TEST

/* Fetching O into D is refused (SS_EFETCH) with an error holding WANT,
 * and nothing is written; the seconds it took. R is the result. */
static double fetch_refused(const fetch_opts_t *o, const char *d, fetch_result_t *r,
			    char *err, size_t errlen, const char *want)
{
	double t0 = now();
	int ret = fetch_to_file(o, d, r, err, errlen);
	double took = now() - t0;
	ck_assert_int_eq(ret, SS_EFETCH);
	ck_assert_msg(strstr(err, want) != NULL, "%s", err);
	ck_assert(!exists(d));
	ck_assert(no_tmp_left(d));
	return took;
}

START_TEST(https_wrong_ca_refused)
{
	char other[256];
	snprintf(other, sizeof(other), "%s/pki/other.crt", g_dir);
	fetch_opts_t o = { .url = url(true, "/catalog.xml"), .ca_file = other,
			   .connect_timeout = 10, .timeout = 20, .retries = 2 };
	fetch_result_t r;
	char err[256] = "";
	char *d = dest("tls-bad.xml");
	double took = fetch_refused(&o, d, &r, err, sizeof(err), "certificate");
	/* A verification failure is not transient: no backoff. */
	ck_assert_double_lt(took, 1.0);

	/* Nor does the system store know our throwaway CA. */
	o.ca_file = NULL;
	ck_assert_int_eq(fetch_to_file(&o, d, &r, err, sizeof(err)), SS_EFETCH);
	ck_assert(!exists(d));
}
END_TEST

START_TEST(retry_after_500)
{
	fetch_opts_t o = { .url = url(false, "/flaky/catalog.xml"), .retries = 2 };
	fetch_result_t r;
	char err[256] = "";
	char *d = dest("flaky.xml");
	double t0 = now();
	int ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	double took = now() - t0;
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_double_ge(took, 1.0);         /* one backoff of 1 s */
	ck_assert_double_lt(took, 10.0);
	ck_assert_int_eq(r.http_status, 200);
	ck_assert_str_eq(slurp(d), g_body);
	fetch_result_clear(&r);

	/* Without retries the 500 is the answer. */
	o.url = url(false, "/flaky/again.xml");
	o.retries = 0;
	d = dest("flaky2.xml");
	ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EFETCH);
	ck_assert_ptr_nonnull(strstr(err, "HTTP 500 from"));
	ck_assert(!exists(d));
}
END_TEST

START_TEST(connection_refused_retries)
{
	/* A port nobody listens on: bind, note it, close. */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	char u[128];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/catalog.xml", ntohs(a.sin_port));
	fetch_opts_t o = { .url = u, .retries = 1, .connect_timeout = 5 };
	fetch_result_t r;
	char err[256] = "";
	double t0 = now();
	int ret = fetch_to_file(&o, dest("refused.xml"), &r, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EFETCH);
	ck_assert_double_ge(now() - t0, 1.0);
	ck_assert_ptr_nonnull(strstr(err, u));

	fetch_opts_t none = { 0 };
	ck_assert_int_eq(fetch_to_file(&none, dest("x"), &r, err, sizeof(err)),
			 SS_EINVAL);
}
END_TEST

/* https never turns into http on a redirect: the catalog and any
 * credentials would travel in the clear. Nothing is written. */
START_TEST(https_downgrade_refused)
{
	char ca[256];
	snprintf(ca, sizeof(ca), "%s/pki/ca.crt", g_dir);
	fetch_opts_t o = { .url = url(true, "/downgrade/catalog.xml"), .ca_file = ca,
			   .connect_timeout = 10, .timeout = 20, .retries = 2 };
	fetch_result_t r;
	char err[256] = "";
	char *d = dest("downgrade.xml");
	fetch_refused(&o, d, &r, err, sizeof(err), "refused a redirect away from https");
	/* An https to https redirect is still followed. */
	o.url = url(true, "/redirect/catalog.xml");
	int ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	fetch_result_clear(&r);
}
END_TEST

/* A 4 MiB body compressed to a few kB: the limit counts what decompression
 * yields, so it is refused and nothing stays on the disk. */
START_TEST(decompression_bounded)
{
	fetch_opts_t o = { .url = url(false, "/gzip/4194304"), .timeout = 20,
			   .max_bytes = 1024 * 1024 };
	fetch_result_t r;
	char err[256] = "";
	char *d = dest("bomb.xml");
	int ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_int_eq(ret, SS_ETOOBIG);
	ck_assert_msg(strstr(err, "max_catalog_mib") != NULL, "%s", err);
	ck_assert(!exists(d));
	ck_assert(no_tmp_left(d));
	/* Under the limit the same answer is whole. */
	o.max_bytes = 8 * 1024 * 1024;
	ret = fetch_to_file(&o, d, &r, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(r.bytes, 4194304);
	fetch_result_clear(&r);
}
END_TEST

/* Credentials in a URL never reach a message. */
START_TEST(url_credentials_redacted)
{
	char out[256];
	ck_assert_str_eq(log_url_redact("https://user:s3cr@t@host.example:8443/a@b?c=d@e", out,
					  sizeof(out)), "https://***@host.example:8443/a@b?c=d@e");
	ck_assert_str_eq(log_url_redact("https://host.example/cat.cab", out, sizeof(out)),
			 "https://host.example/cat.cab");
	ck_assert_str_eq(log_url_redact("file:///srv/cat.xml", out, sizeof(out)),
			 "file:///srv/cat.xml");
	ck_assert_str_eq(log_url_redact(NULL, out, sizeof(out)), "");
	/* ...nor an error message. */
	char u[256];
	snprintf(u, sizeof(u), "http://admin:hunter2@127.0.0.1:%d/missing.xml", g_http_port);
	fetch_opts_t o = { .url = u };
	fetch_result_t r;
	char err[256] = "";
	ck_assert_int_eq(fetch_to_file(&o, dest("m.xml"), &r, err, sizeof(err)), SS_EFETCH);
	ck_assert_msg(strstr(err, "hunter2") == NULL && strstr(err, "***@127.0.0.1") != NULL,
		      "%s", err);
}
END_TEST

int main(void)
{
	return check_tests_case_fixture("fetch", "http", 60, setup, teardown,
		plain_download, through_proxy, http_404_is_an_error,
		conditional_get, https_with_ca, https_wrong_ca_refused,
		retry_after_500, connection_refused_retries,
		https_downgrade_refused, decompression_bounded,
		url_credentials_redacted);
}
