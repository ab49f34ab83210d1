/* Daemon log: control characters a peer or an upstream supplies are
 * escaped, so one call is one line and no line can be forged. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "check_run.h"

START_TEST(escape_controls)
{
	char out[64];
	ck_assert_str_eq(log_escape("plain text, ü and \\ stay", out, sizeof(out)),
			 "plain text, ü and \\ stay");
	ck_assert_str_eq(log_escape("a\nb\rc\td\x1b[31m\x7f", out, sizeof(out)),
			 "a\\x0ab\\x0dc\\x09d\\x1b[31m\\x7f");
	/* U+0085 NEL in UTF-8 is a line break to some viewers. */
	ck_assert_str_eq(log_escape("x\xc2\x85y\xc2\xa0z", out, sizeof(out)),
			 "x\\xc2\\x85y\xc2\xa0z");
	/* Truncation never cuts an escape in half and always terminates. */
	ck_assert_str_eq(log_escape("ab\ncd", out, 6), "ab");
	ck_assert_str_eq(log_escape("ab\ncd", out, 7), "ab\\x0a");
	ck_assert_str_eq(log_escape(NULL, out, sizeof(out)), "");
}
END_TEST

/* What log_msg() writes for a message carrying a forged line. */
START_TEST(log_line_not_forged)
{
	char path[] = "/tmp/ss-log-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	int saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	log_init(SS_LOG_INFO, "CAS");
	log_warning("child P01: reports error 1: %s",
		    "x\n2026-01-01T00:00:00.000Z CAS info: [3] Child site P09 connected");
	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[4096];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	/* Exactly one line, ending the write. */
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + n - 1);
	ck_assert_ptr_nonnull(strstr(buf, "error 1: x\\x0a2026-01-01T"));
}
END_TEST

int main(void)
{
	return check_tests("log", "escape", 0,
		escape_controls, log_line_not_forged);
}
