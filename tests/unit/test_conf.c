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

START_TEST(defaults_and_values)
{
	conf_t *c = NULL;
	char err[512] = "";
	int ret = load("[site]\ncode = P01\n[database]\nconninfo = dbname=x\n"
	               "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\n"
	               "[schedule]\nretry_minutes = 5\n", &c, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_str_eq(c->site_code, "P01");
	ck_assert_str_eq(c->parent_address, "127.0.0.1:7443");
	ck_assert_int_eq(c->retry_minutes, 5);
	ck_assert_int_eq(c->heartbeat_seconds, 10);
	ck_assert_int_eq(c->max_removal_percent, 50);
	ck_assert_int_eq(c->sync_history_rows, 10000);
	ck_assert_str_eq(c->parent_mode, "connected");
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

/* A reload keeps the running value of every key the table marks not
 * reloadable, names those that changed, and takes the others. */
START_TEST(reload_keeps_fixed_keys)
{
	conf_t *old = NULL, *nc = NULL;
	char err[512] = "", changed[256];
	int n = -1;
	ck_assert_int_eq(load("[site]\ncode = P01\n[database]\nconninfo = dbname=x\n"
	                      "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\n"
	                      "[replication]\nworkers = 4\n"
	                      "[schedule]\nretry_minutes = 5\n", &old, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(load("[site]\ncode = P02\n[database]\nconninfo = dbname=x\n"
	                      "[tls]\nca=/a\ncert=/b\nkey=/c\n[parent]\naddress = 127.0.0.1:7443\n"
	                      "[replication]\nworkers = 2\n"
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

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("conf");
	tcase_add_test(tc, defaults_and_values);
	tcase_add_test(tc, rejects_bad_input);
	tcase_add_test(tc, site_codes);
	tcase_add_test(tc, reload_keeps_fixed_keys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(conf_suite());
}
