/* Configuration: defaults, validation errors, unknown keys. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "check_run.h"

static char *write_conf(const char *text)
{
	char *path = strdup("/tmp/ss-conf-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int load(const char *text, conf_t **c, char *err, size_t errlen)
{
	char *path = write_conf(text);
	int ret = conf_load(path, c, err, errlen);
	unlink(path);
	free(path);
	return ret;
}

/* BASE then REST loads; the conf (the caller frees it). */
static conf_t *loaded(const char *base, const char *rest)
{
	conf_t *c = NULL;
	char err[512] = "";
	char text[1024];
	snprintf(text, sizeof(text), "%s%s", base, rest);
	ck_assert_msg(load(text, &c, err, sizeof(err)) == SS_EOK, "%s", err);
	return c;
}

/* BASE then REST is refused (SS_ECONFIG, no conf) with the error WANT,
 * the whole of it when WHOLE, else within it. */
static void refused(const char *base, const char *rest, const char *want, bool whole)
{
	conf_t *c = NULL;
	char err[512] = "";
	char text[1024];
	snprintf(text, sizeof(text), "%s%s", base, rest);
	ck_assert_int_eq(load(text, &c, err, sizeof(err)), SS_ECONFIG);
	if (whole)
		ck_assert_str_eq(err, want);
	else
		ck_assert_msg(strstr(err, want) != NULL, "got: %s", err);
	ck_assert_ptr_null(c);
}

START_TEST(defaults_and_values)
{
	conf_t *c = NULL;
	char err[512] = "";
	int ret = load("[site]\ncode = P01\n[database]\nconninfo = dbname=x\n"
	               "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\ncode = CAS\n"
	               "[trust]\nallow_unsigned = true\n"
	               "[schedule]\nretry_minutes = 5\n", &c, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_str_eq(c->site_code, "P01");
	ck_assert_str_eq(c->parent_address, "127.0.0.1:7443");
	ck_assert_int_eq(c->retry_minutes, 5);
	ck_assert_int_eq(c->heartbeat_seconds, 10);
	ck_assert_int_eq(c->max_removal_percent, 50);
	ck_assert_int_eq(c->sync_history_rows, 10000);
	ck_assert_str_eq(c->parent_mode, "connected");
	ck_assert_str_eq(c->parent_code, "CAS");
	ck_assert(c->trust_allow_unsigned);
	ck_assert(!conf_is_top(c));
	conf_free(c);
}
END_TEST

START_TEST(rejects_bad_input)
{
	conf_t *c = NULL;
	char err[512];
	ck_assert_int_eq(load("[site]\ncode = p1\n[database]\nconninfo=x\n", &c, err, sizeof(err)),
	                 SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "3 upper-case"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\nbogus=1\n", &c, err, sizeof(err)),
	                 SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "unknown key 'bogus'"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "conninfo"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[listen]\naddress=:1\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "[tls]"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[schedule]\nretry_minutes=abc\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "retry_minutes"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[parent]\nmode=sometimes\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_int_eq(conf_load("/nonexistent/x.conf", &c, err, sizeof(err)), -ENOENT);
	/* The removal guard's share is a percentage; the sync history keeps
	 * at least a few rows. The edges themselves are accepted. */
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[upstream]\n"
	                      "max_removal_percent = 101\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "max_removal_percent must be 0 to 100"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[upstream]\n"
	                      "max_removal_percent = -1\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[status]\n"
	                      "sync_history_rows = 9\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "sync_history_rows must be >= 10"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[upstream]\n"
	                      "max_removal_percent = 100\n[status]\nsync_history_rows = 10\n",
	                      &c, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(c->max_removal_percent, 100);
	ck_assert_int_eq(c->pending_max, 32);
	conf_free(c);
	c = NULL;
	/* Refused sites remembered for child list: 0 to 1024. */
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[children]\n"
	                      "pending_max = 1025\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "pending_max must be 0 to 1024"));
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[children]\n"
	                      "pending_max = -1\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[children]\n"
	                      "pending_max = 1024\n", &c, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(c->pending_max, 1024);
	conf_free(c);
	c = NULL;
	/* Error messages a status row carries up (and taken from one): 0 to 16. */
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[status]\n"
	                      "relay_messages = 17\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_str_eq(err, "[status] relay_messages must be 0 to 16");
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[status]\n"
	                      "relay_messages = -1\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n", &c, err,
	                      sizeof(err)), SS_EOK);
	ck_assert_int_eq(c->relay_messages, 5);
	conf_free(c);
	c = NULL;
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[status]\n"
	                      "relay_messages = 16\n", &c, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(c->relay_messages, 16);
	conf_free(c);
	c = NULL;
}
END_TEST

/* Below the top: the parent is pinned by code, and signatures are checked
 * unless explicitly waived. */
#define CHILD_BASE "[site]\ncode = P01\n[database]\nconninfo=x\n[tls]\nca=/a\ncert=/b\nkey=/c\n"
START_TEST(child_pins_parent_and_trust)
{
	conf_t *c = NULL;
	char err[512];
	ck_assert_int_eq(load(CHILD_BASE "[parent]\naddress=h:1\n[trust]\nallow_unsigned=true\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_str_eq(err, "[parent] code is required when [parent] address is set: the site "
	                 "code of the parent this site accepts (its certificate's common name)");
	ck_assert_int_eq(load(CHILD_BASE "[parent]\naddress=h:1\ncode=cas\n[trust]\nallow_unsigned=1\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "[parent] code 'cas'"));
	ck_assert_int_eq(load(CHILD_BASE "[parent]\naddress=h:1\ncode=P01\n[trust]\nallow_unsigned=1\n",
	                      &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "this site's own code"));
	ck_assert_int_eq(load(CHILD_BASE "[parent]\naddress=h:1\ncode=CAS\n", &c, err, sizeof(err)),
	                 SS_ECONFIG);
	ck_assert_str_eq(err, "[trust] public_key is required below the top site (the hierarchy's "
	                 "Ed25519 public key); set [trust] allow_unsigned = true to run without "
	                 "checking catalog signatures");
	/* A disconnected site is below the top too. */
	ck_assert_int_eq(load(CHILD_BASE "[parent]\nmode=disconnected\n", &c, err, sizeof(err)),
	                 SS_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "[trust] public_key is required"));
	ck_assert_int_eq(load(CHILD_BASE "[parent]\naddress=h:1\ncode=CAS\n[trust]\npublic_key=/k\n",
	                      &c, err, sizeof(err)), SS_EOK);
	conf_free(c);
	/* Limits of issue 15: an entry limit below a frame's floor, no spool. */
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[upstream]\n"
	                      "max_entry_bytes = 1000\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_str_eq(err, "[upstream] max_entry_bytes must be >= 65536");
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[replication]\n"
	                      "spool_max_mb = 0\n", &c, err, sizeof(err)), SS_ECONFIG);
	ck_assert_str_eq(err, "[replication] spool_max_mb must be >= 1");
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n[replication]\n"
	                      "max_frame = 2097152\n[upstream]\nmax_entry_bytes = 4194304\n",
	                      &c, err, sizeof(err)), SS_EOK);
	ck_assert_uint_eq(conf_stream_frame_limit(c), 4194304 + 65536);
	ck_assert_int_eq(c->spool_max_mb, 4096);
	conf_free(c);
	/* The top needs neither. */
	ck_assert_int_eq(load("[site]\ncode = CAS\n[database]\nconninfo=x\n", &c, err, sizeof(err)),
	                 SS_EOK);
	conf_free(c);
}
END_TEST

/* [upstream] kind: each guard alone, everything else valid. */
START_TEST(upstream_kind)
{
	const char *base = "[site]\ncode = CAS\n[database]\nconninfo=x\n[upstream]\n";
	conf_t *c = loaded(base, "url = https://sws.update.microsoft.com\nkind = wsus\n");
	ck_assert_str_eq(c->upstream_kind, "wsus");
	conf_free(c);
	c = loaded(base, "url = file:///x.xml\n");
	ck_assert_str_eq(c->upstream_kind, "catalog");
	conf_free(c);
	refused(base, "url = https://h/\nkind = msupdate\n",
		"[upstream] kind must be 'catalog' or 'wsus', not 'msupdate'", true);
	refused(base, "url = https://h/\nkind = wsus\nmax_document = 65535\n",
		"[upstream] max_document must be at least 65536 bytes, not 65535", true);
	refused(base, "url = file:///x.xml\nkind = wsus\n",
		"kind = wsus needs an http:// or https:// url", false);
}
END_TEST

/* [source NAME]: each refusal alone, everything else valid. */
START_TEST(sources)
{
	const char *base = "[site]\ncode = CAS\n[database]\nconninfo=x\n";
	conf_t *c = loaded(base, "[upstream]\nurl = file:///a.xml\n[source vendor-1]\n"
		"url = https://v.example/c.cab\nca = /ca.pem\n");
	ck_assert_int_eq(c->n_sources, 1);
	ck_assert_str_eq(c->sources[0].name, "vendor-1");
	ck_assert_str_eq(c->sources[0].url, "https://v.example/c.cab");
	ck_assert_str_eq(c->sources[0].ca, "/ca.pem");
	ck_assert_ptr_null(c->sources[0].products);
	conf_free(c);
	/* Its own selection: trimmed, GUIDs lower case. */
	c = loaded(base, "[upstream]\nurl = file:///a.xml\n[source v]\nurl = file:///c.xml\n"
		"products = Adatum BIOS , Contoso Browser\n"
		"classifications = 0FA1201D-4330-4fa8-8ae9-b877473b6441,cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83\n"
		"languages = en, pt-BR\n");
	ck_assert_str_eq(c->sources[0].products, "Adatum BIOS,Contoso Browser");
	ck_assert_str_eq(c->sources[0].classifications,
		"0fa1201d-4330-4fa8-8ae9-b877473b6441,cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83");
	ck_assert_str_eq(c->sources[0].languages, "en,pt-BR");
	conf_free(c);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source v]\nurl = file:///c.xml\n"
		"products = Adatum BIOS,,Contoso\n",
		"[source v] products: an empty id in 'Adatum BIOS,,Contoso' (a comma-separated list)", false);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source v]\nurl = file:///c.xml\n"
		"classifications = Security Updates\n",
		"[source v] classifications: an id that is not a GUID in 'Security Updates'", false);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source v]\nurl = file:///c.xml\n"
		"languages = en;de\n",
		"[source v] languages: a code that is not a language (e.g. en, pt-BR) in 'en;de'", false);
	refused(base, "[source vendor]\nurl = file:///c.xml\n",
		"[source vendor] needs [upstream] url: it is merged into the upstream's catalog", true);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source vendor]\nurl = sitesync://h:1\n",
		"[source vendor] url must be an http://, https:// or file:// catalog", true);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source Vendor]\nurl = file:///c.xml\n",
		"[source Vendor]: a source name is 1-32 of a-z, 0-9, - and _", false);
	refused(base, "[upstream]\nurl = file:///a.xml\n[source vendor]\nurl = file:///c.xml\nkind = wsus\n",
		"unknown key 'kind' in section [source vendor] (url, ca, proxy, products, "
		"classifications, languages)", false);
}
END_TEST

START_TEST(site_codes)
{
	ck_assert(conf_site_code_valid("CAS"));
	ck_assert(conf_site_code_valid("P01"));
	ck_assert(!conf_site_code_valid("P0"));
	ck_assert(!conf_site_code_valid("P012"));
	ck_assert(!conf_site_code_valid("p01"));
	ck_assert(!conf_site_code_valid("P-1"));
	ck_assert(!conf_site_code_valid(NULL));
}
END_TEST


/* The hostile-peer limits: defaults, zero refused, the URL shown redacted. */
START_TEST(hostile_limits)
{
	conf_t *c = NULL;
	char err[256] = "";
	const char *base = "[site]\ncode = CAS\n[database]\nconninfo=x\n";
	char text[512];
	snprintf(text, sizeof(text), "%s[upstream]\nurl = https://user:pw@up.example/c.cab\n", base);
	ck_assert_msg(load(text, &c, err, sizeof(err)) == SS_EOK, "%s", err);
	ck_assert_int_eq(c->max_pending, 256);
	ck_assert_int_eq(c->max_pending_addr, 16);
	ck_assert_int_eq(c->handshake_timeout, 10);
	ck_assert_int_eq(c->upstream_max_mib, 1024);
	ck_assert_int_eq(c->http_max_header, 8192);
	ck_assert_int_eq(c->http_max_conns, 64);
	ck_assert_int_eq(c->refusal_log_seconds, 60);
	ck_assert_int_eq(c->messages_keep, 100000);
	ck_assert_str_eq(c->upstream_url_shown, "https://***@up.example/c.cab");
	conf_free(c);
	const char *bad[] = {
		"[listen]\nmax_pending = 0\n", "[listen]\nmax_pending_per_address = 0\n",
		"[listen]\nhandshake_timeout = 0\n", "[upstream]\nmax_catalog_mib = 0\n",
		"[http]\nmax_header_bytes = 100\n", "[http]\nmax_connections = 0\n",
		"[http]\ntimeout = 0\n", "[status]\nmessages_keep = 10\n",
		"[status]\nmessages_days = 0\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", base, bad[i]);
		c = NULL;
		ck_assert_msg(load(text, &c, err, sizeof(err)) == SS_ECONFIG, "accepted: %s", bad[i]);
		ck_assert_ptr_null(c);
	}
}
END_TEST

/* A reload keeps the running value of every key the table marks not
 * reloadable, names those that changed, and takes the others. */
START_TEST(reload_keeps_fixed_keys)
{
	conf_t *old = NULL, *nc = NULL;
	char err[512] = "", changed[256];
	int n = -1;
	ck_assert_int_eq(load("[site]\ncode = P01\n[database]\nconninfo = dbname=x\n"
	                      "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\ncode = CAS\n"
	                      "[trust]\nallow_unsigned = true\n[replication]\nworkers = 4\n"
	                      "[schedule]\nretry_minutes = 5\n", &old, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(load("[site]\ncode = P02\n[database]\nconninfo = dbname=x\n"
	                      "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\ncode = CAS\n"
	                      "[trust]\nallow_unsigned = true\n[replication]\nworkers = 2\n"
	                      "[schedule]\nretry_minutes = 9\n", &nc, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(conf_keep_fixed(nc, old, &n, changed, sizeof(changed)), SS_EOK);
	ck_assert_int_eq(n, 2);
	ck_assert_str_eq(changed, "[site] code, [replication] workers");
	ck_assert_str_eq(nc->site_code, "P01");
	ck_assert_int_eq(nc->workers, 4);
	ck_assert_int_eq(nc->retry_minutes, 9);         /* reloadable: the new value */
	ck_assert_str_eq(old->site_code, "P01");        /* a copy: old stays whole */
	ck_assert_int_eq(conf_keep_fixed(nc, old, &n, changed, sizeof(changed)), SS_EOK);
	ck_assert_int_eq(n, 0);
	ck_assert_str_eq(changed, "");
	conf_free(old);
	conf_free(nc);
}
END_TEST

int main(void)
{
	return check_tests("conf", "conf", 0,
		defaults_and_values, rejects_bad_input, child_pins_parent_and_trust,
		site_codes, upstream_kind, sources,
		hostile_limits, reload_keeps_fixed_keys);
}
