/* What every unit suite shares: its main(), and scratch files. */
#pragma once

#include <check.h>
#include <stdbool.h>
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
 * the TESTS, NULL-ended, in a suite NAME; SETUP and TEARDOWN (either may
 * be NULL) run around each test (CHECKED) or once around the case. */
static inline Suite *check_suite(const char *name, const char *case_name,
	int timeout, SFun setup, SFun teardown, bool checked,
	const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(case_name);
	if (timeout > 0)
		tcase_set_timeout(tc, timeout);
	if ((setup != NULL || teardown != NULL) && checked)
		tcase_add_checked_fixture(tc, setup, teardown);
	else if (setup != NULL || teardown != NULL)
		tcase_add_unchecked_fixture(tc, setup, teardown);
	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
	return s;
}

#define CHECK_TESTS(...) (const TTest *const[]){ __VA_ARGS__, NULL }

/* main() of a suite of one case: check_tests("name", "case", 0, a, b). */
#define check_tests(name, case_name, timeout, ...) \
	check_run(check_suite(name, case_name, timeout, NULL, NULL, false, \
		CHECK_TESTS(__VA_ARGS__)))

/* The same with a fixture around each test. */
#define check_tests_fixture(name, case_name, timeout, setup, teardown, ...) \
	check_run(check_suite(name, case_name, timeout, setup, teardown, true, \
		CHECK_TESTS(__VA_ARGS__)))

/* The same with a fixture once around the whole case. */
#define check_tests_case_fixture(name, case_name, timeout, setup, teardown, ...) \
	check_run(check_suite(name, case_name, timeout, setup, teardown, false, \
		CHECK_TESTS(__VA_ARGS__)))
