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
