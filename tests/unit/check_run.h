/* What every unit suite shares: its main(), and scratch files. */
#pragma once

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Run the suite; exit non-zero on a failure. */
static inline int check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* An empty file /tmp/ss-test-TAG-XXXXXX; its name in path. */
static inline void check_tmpfile(char *path, size_t len, const char *tag)
{
	snprintf(path, len, "/tmp/ss-test-%s-XXXXXX", tag);
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

/* One case CASE_NAME (timeout in seconds, 0 keeps check's default) of
 * the TESTS, NULL-ended, in a suite NAME. */
static inline Suite *check_suite(const char *name, const char *case_name,
	int timeout, const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(case_name);
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
	return s;
}

/* main() of a suite of one case: check_tests("name", "case", 0, a, b). */
#define check_tests(name, case_name, timeout, ...) \
	check_run(check_suite(name, case_name, timeout, \
		(const TTest *const[]){ __VA_ARGS__, NULL }))
