/*
 * Unit tests of the control socket (server/ctl.c) and of the sitesync CLI
 * against it. A thread runs an event loop with a few test handlers: one
 * answering at once, one answering later from a timer, one holding the
 * request; raw clients then exercise the protocol and its failure cases,
 * and the built `sitesync` binary is run against the same socket.
 */
#include <check.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "server/ctl.h"
#include "common/errcode.h"
#include "check_run.h"

static char tmpdir[64];
static char sockpath[128];
static struct event_base *base;
static ctl_t *ctl;
static pthread_t loop_thread;
/* Only touched on the loop thread (handlers and timers). */
static int late_replies;
static int status_calls;
static ctl_req_t *held;

typedef struct {
	ctl_req_t *req;
	struct event *ev;
} late_t;

static void echo_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_reply(req, json_pack("{s:O}", "args", (json_t *)args));
}

static void late_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	late_t *l = arg;
	late_replies++;
	ctl_reply(l->req, json_pack("{s:b}", "late", 1));
	event_free(l->ev);
	free(l);
}

/* Answers 200 ms later, as a handler waiting for a database job would. */
static void later_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	late_t *l = calloc(1, sizeof(*l));
	struct timeval tv = { 0, 200000 };
	l->req = req;
	l->ev = evtimer_new(base, late_timer_cb, l);
	evtimer_add(l->ev, &tv);
}

static void hold_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	held = req;
}

static void stats_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	/* The asking connection itself is not counted. */
	ctl_reply(req, json_pack("{s:i, s:i}", "conns",
	                         (int)ctl_conn_count(ctl) - 1,
	                         "late", late_replies));
}

static void fail_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_reply_error(req, SS_EDB, "database is %s", "down");
}

static void stop_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	struct timeval tv = { 0, 50000 };
	ctl_reply(req, NULL);
	event_base_loopexit(base, &tv);
}

static void sync_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_reply(req, json_pack("{s:b}", "started", 1));
}

/*
 * A three-level hierarchy: CAS → P01 → S01 and CAS → P02. P02 syncs
 * through two status calls, then holds the top version; S01 failed.
 */
static void status_cb(ctl_req_t *req, const json_t *args, void *arg)
{
	int n = ++status_calls;
	bool p02_done = n >= 3;
	json_t *sites = json_pack(
		"[{s:s, s:n, s:s, s:i, s:i, s:i, s:n, s:s, s:s, s:i, s:n},"
		" {s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:i, s:n},"
		" {s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:i, s:s}]",
		"site", "CAS", "parent", "state", "succeeded",
		"catalog_version", 42, "lag_versions", 0, "lag_seconds", 0,
		"link", "last_sync_start", "2099-01-01T00:00:00Z",
		"last_sync_end", "2099-01-01T00:00:05Z", "last_error_code", 0,
		"last_error",
		"site", "P01", "parent", "CAS", "state", "succeeded",
		"catalog_version", 42, "lag_versions", 0, "lag_seconds", 0,
		"link", "active", "last_sync_start", "2099-01-01T00:00:06Z",
		"last_sync_end", "2099-01-01T00:00:07Z", "last_error_code", 0,
		"last_error",
		"site", "S01", "parent", "P01", "state", "failed",
		"catalog_version", 41, "lag_versions", 1, "lag_seconds", 3700,
		"link", "degraded", "last_sync_start", "2099-01-01T00:00:08Z",
		"last_sync_end", "2099-01-01T00:00:09Z", "last_error_code", 506,
		"last_error", "digest mismatch");
	json_t *p02 = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s}",
		"site", "P02", "parent", "CAS",
		"state", p02_done ? "succeeded" : "syncing",
		"catalog_version", p02_done ? 42 : 41,
		"lag_versions", p02_done ? 0 : 1, "lag_seconds", 0,
		"link", "active");
	if (!p02_done) {
		json_object_set_new(p02, "progress_done", json_integer(4 * n));
		json_object_set_new(p02, "progress_total", json_integer(8));
	}
	json_array_append_new(sites, p02);
	ctl_reply(req, json_pack("{s:s, s:i, s:s, s:o}", "site", "CAS",
	                         "top_version", 42, "generated_at",
	                         "2099-01-01T00:01:00Z", "sites", sites));
}

static void *loop_main(void *arg)
{
	event_base_dispatch(base);
	return NULL;
}

static void server_setup(void)
{
	char err[256];
	/* Fresh counters also when Check runs without fork (CK_FORK=no). */
	late_replies = 0;
	status_calls = 0;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/ss_ctl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	/* A missing parent directory is created by ctl_start(). */
	snprintf(sockpath, sizeof(sockpath), "%s/run/control.sock", tmpdir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	int ret = ctl_start(base, sockpath, &ctl, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "ctl_start: %s", err);
	ctl_set_timeout(ctl, 300);
	ck_assert_int_eq(ctl_register(ctl, "echo", echo_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "echo", echo_cb, NULL), SS_EEXIST);
	ck_assert_int_eq(ctl_register(ctl, "later", later_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "stats", stats_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "fail", fail_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "stop", stop_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "status", status_cb, NULL), SS_EOK);
	ck_assert_int_eq(ctl_register(ctl, "sync", sync_cb, NULL), SS_EOK);
	ck_assert_int_eq(pthread_create(&loop_thread, NULL, loop_main, NULL), 0);
}

/* Send raw bytes, read until the server closes; returns the reply text. */
static char *raw_exchange(const void *data, size_t len, bool half_close)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sockpath);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t off = 0;
	while (off < len) {
		/* The server may refuse an oversized request before reading it
		 * all: stop writing then, its answer is still there to read. */
		ssize_t n = send(fd, (const char *)data + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (half_close)
		shutdown(fd, SHUT_WR);
	size_t cap = 1 << 16, got = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap)
			break;
	}
	buf[got] = '\0';
	close(fd);
	return buf;
}

static json_t *request(const char *line)
{
	char *text = raw_exchange(line, strlen(line), false);
	json_error_t jerr;
	size_t len = strlen(text);
	ck_assert_msg(len > 0 && text[len - 1] == '\n',
	              "reply must be one line: '%s'", text);
	json_t *rep = json_loads(text, 0, &jerr);
	ck_assert_msg(rep != NULL, "bad reply '%s': %s", text, jerr.text);
	free(text);
	return rep;
}

static void server_teardown(void)
{
	json_decref(request("{\"cmd\":\"stop\"}\n"));
	pthread_join(loop_thread, NULL);
	ctl_free(ctl);
	ctl = NULL;
	event_base_free(base);
	base = NULL;
	struct stat st;
	ck_assert_int_ne(stat(sockpath, &st), 0);  /* ctl_free() unlinked it */
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	rmdir(dir);
	rmdir(tmpdir);
}

static void assert_error(json_t *rep, int code, const char *text)
{
	ck_assert(json_is_false(json_object_get(rep, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(rep, "code")), code);
	const char *err = json_string_value(json_object_get(rep, "error"));
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, text) != NULL, "error '%s' lacks '%s'", err, text);
	json_decref(rep);
}

START_TEST(test_request_reply)
{
	json_t *rep = request("{\"cmd\":\"echo\",\"args\":{\"x\":7}}\n");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_t *x = json_object_get(json_object_get(json_object_get(rep, "data"),
	                                            "args"), "x");
	ck_assert_int_eq(json_integer_value(x), 7);
	json_decref(rep);

	/* No args at all means {}. */
	rep = request("{\"cmd\":\"echo\"}\n");
	ck_assert(json_is_object(json_object_get(json_object_get(rep, "data"), "args")));
	json_decref(rep);

	assert_error(request("{\"cmd\":\"fail\"}\n"), SS_EDB, "database is down");

	struct stat st;
	ck_assert_int_eq(stat(sockpath, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run", tmpdir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0750);
}
END_TEST

START_TEST(test_unknown_and_malformed)
{
	assert_error(request("{\"cmd\":\"nosuch\",\"args\":{}}\n"), SS_EINVAL,
	             "unknown command 'nosuch'");
	assert_error(request("{not json\n"), SS_EMALF, "malformed");
	assert_error(request("[1,2]\n"), SS_EMALF, "malformed");
	assert_error(request("{\"args\":{}}\n"), SS_EMALF, "malformed");
	assert_error(request("{\"cmd\":\"echo\",\"args\":[1]}\n"), SS_EMALF, "args");
	assert_error(request("\n"), SS_EMALF, "malformed");
}
END_TEST

START_TEST(test_oversized)
{
	size_t len = CTL_MAX_REQUEST + 5000;
	char *big = malloc(len + 1);
	memset(big, ' ', len);
	memcpy(big, "{\"cmd\":\"echo\",\"args\":{\"x\":\"", 27);
	big[len - 1] = '\n';
	char *text = raw_exchange(big, len, false);
	json_t *rep = json_loads(text, 0, NULL);
	ck_assert_msg(rep != NULL, "no reply to an oversized request: '%s'", text);
	assert_error(rep, SS_ETOOBIG, "larger than");
	free(text);
	free(big);

	/* Just under the limit still works. */
	len = CTL_MAX_REQUEST;
	big = malloc(len + 2);
	memset(big, ' ', len);
	memcpy(big, "{\"cmd\":\"echo\"}", 14);
	big[len] = '\n';
	big[len + 1] = '\0';
	rep = request(big);
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	free(big);
}
END_TEST

START_TEST(test_late_reply)
{
	json_t *rep = request("{\"cmd\":\"later\"}\n");
	ck_assert(json_is_true(json_object_get(rep, "ok")));
	ck_assert(json_is_true(json_object_get(json_object_get(rep, "data"), "late")));
	json_decref(rep);
}
END_TEST

/* A client that leaves before its reply: the late reply is dropped, the
 * connection is released, the server goes on. */
START_TEST(test_client_gone)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sockpath);
	for (int i = 0; i < 3; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		const char *req = "{\"cmd\":\"later\"}\n";
		ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
		usleep(20000);
		close(fd);
	}
	json_t *stats = NULL;
	for (int tries = 0; tries < 50; tries++) {
		usleep(100000);
		json_decref(stats);
		stats = request("{\"cmd\":\"stats\"}\n");
		json_t *d = json_object_get(stats, "data");
		if (json_integer_value(json_object_get(d, "late")) == 3 &&
		    json_integer_value(json_object_get(d, "conns")) == 0)
			break;
	}
	json_t *d = json_object_get(stats, "data");
	ck_assert_int_eq(json_integer_value(json_object_get(d, "late")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(d, "conns")), 0);
	json_decref(stats);
}
END_TEST

START_TEST(test_idle_timeout_and_half_close)
{
	/* Silent client: closed after the (300 ms) idle timeout. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char *text = raw_exchange("", 0, false);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_str_eq(text, "");
	ck_assert(t1.tv_sec - t0.tv_sec < 3);
	free(text);

	/* Request without newline, ended by shutdown(SHUT_WR) (nc, socat). */
	const char *req = "{\"cmd\":\"echo\",\"args\":{\"y\":1}}";
	text = raw_exchange(req, strlen(req), true);
	json_t *rep = json_loads(text, 0, NULL);
	ck_assert_msg(json_is_true(json_object_get(rep, "ok")), "got '%s'", text);
	json_decref(rep);
	free(text);
}
END_TEST

/* Starting on a live socket is refused, a stale one is replaced, and a
 * file that is not a socket is left alone. */
START_TEST(test_start_checks)
{
	char err[256];
	ctl_t *other = NULL;
	struct event_base *b = event_base_new();
	ck_assert_int_eq(ctl_start(b, sockpath, &other, err, sizeof(err)), SS_EBUSY);
	ck_assert_ptr_null(other);
	ck_assert_ptr_nonnull(strstr(err, "another sitesyncd"));

	char path[160];
	snprintf(path, sizeof(path), "%s/stale.sock", tmpdir);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);  /* a socket file nobody listens on */
	ck_assert_int_eq(ctl_start(b, path, &other, err, sizeof(err)), SS_EOK);
	ctl_free(other);
	ck_assert_int_ne(access(path, F_OK), 0);

	int f = open(path, O_CREAT | O_WRONLY, 0600);
	close(f);
	other = NULL;
	ck_assert_int_eq(ctl_start(b, path, &other, err, sizeof(err)), SS_EEXIST);
	ck_assert_int_eq(access(path, F_OK), 0);
	unlink(path);

	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(ctl_start(b, longp, &other, err, sizeof(err)), SS_EINVAL);
	ctl_free(NULL);
	event_base_free(b);
}
END_TEST

/* ctl_free() with a request a handler still holds: answering it later
 * only frees it. Runs its own loop on this thread. */
START_TEST(test_free_with_pending)
{
	char err[256], dir[64], path[128];
	ctl_t *c = NULL;
	snprintf(dir, sizeof(dir), "/tmp/ss_ctl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	struct event_base *b = event_base_new();
	ck_assert_int_eq(ctl_start(b, path, &c, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(ctl_register(c, "hold", hold_cb, NULL), SS_EOK);

	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	const char *req = "{\"cmd\":\"hold\"}\n";
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	held = NULL;
	for (int i = 0; i < 100 && held == NULL; i++)
		event_base_loop(b, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_ptr_nonnull(held);
	ck_assert_str_eq(ctl_req_cmd(held), "hold");
	ck_assert_int_eq(ctl_conn_count(c), 1);

	ctl_free(c);
	ctl_reply(held, json_pack("{s:i}", "dropped", 1));
	held = NULL;
	/* libevent closes the socket from a finalizer, which the base runs
	 * when it is freed (or on its next iteration). */
	event_base_free(b);
	char buf[16];
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 0);  /* closed, no reply */
	close(fd);
	rmdir(dir);
}
END_TEST

/* ---- the sitesync binary ---- */

static char cli_path[PATH_MAX];

/* The CLI is built at <builddir>/cli/sitesync, this test at
 * <builddir>/tests/unit/test_ctl. */
static void find_cli(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert(n > 0);
	self[n] = '\0';
	snprintf(cli_path, sizeof(cli_path), "%s/../../cli/sitesync",
	         dirname(self));
	ck_assert_msg(access(cli_path, X_OK) == 0, "no CLI at %s", cli_path);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, (cap *= 2) + 1);
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

/* Run sitesync with argv (NULL-terminated, without argv[0]); stdin is
 * /dev/null, stdout and stderr are captured. With stop_ms, SIGTERM ends it
 * after that long (for --watch). Returns the exit status, or 128 + signal. */
static int run_cli_for(const char *const *args, unsigned stop_ms, char **out,
                       char **err)
{
	char opath[128], epath[128];
	const char *argv[32] = { "sitesync" };
	size_t n = 1;
	for (; args[n - 1] != NULL && n < 31; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	find_cli();
	snprintf(opath, sizeof(opath), "%s/out", tmpdir);
	snprintf(epath, sizeof(epath), "%s/err", tmpdir);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int o = open(opath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
		int e = open(epath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
		dup2(in, 0);
		dup2(o, 1);
		dup2(e, 2);
		execv(cli_path, (char *const *)argv);
		_exit(127);
	}
	int status;
	if (stop_ms > 0) {
		usleep(stop_ms * 1000);
		kill(pid, SIGTERM);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	*out = slurp(opath);
	*err = slurp(epath);
	unlink(opath);
	unlink(epath);
	if (stop_ms > 0 && WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	ck_assert_msg(WIFEXITED(status), "sitesync died");
	return WEXITSTATUS(status);
}

static int run_cli(const char *const *args, char **out, char **err)
{
	return run_cli_for(args, 0, out, err);
}

START_TEST(test_cli_basics)
{
	char *out, *err;

	const char *help[] = { "--help", NULL };
	ck_assert_int_eq(run_cli(help, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out, "Usage: sitesync"));
	ck_assert_str_eq(err, "");
	free(out), free(err);

	const char *cmd_help[] = { "-s", sockpath, "sync", "--help", NULL };
	ck_assert_int_eq(run_cli(cmd_help, &out, &err), 0);
	ck_assert_ptr_nonnull(strstr(out, "--wait"));
	free(out), free(err);

	const char *json[] = { "-s", sockpath, "status", "--json", NULL };
	ck_assert_int_eq(run_cli(json, &out, &err), 0);
	json_t *st = json_loads(out, 0, NULL);
	ck_assert_ptr_nonnull(st);
	ck_assert_str_eq(json_string_value(json_object_get(st, "site")), "CAS");
	ck_assert_int_eq(json_array_size(json_object_get(st, "sites")), 4);
	json_decref(st);
	free(out), free(err);

	const char *bad_code[] = { "-s", sockpath, "child", "add", "p01", NULL };
	ck_assert_int_eq(run_cli(bad_code, &out, &err), 1);
	/* A usage error points at the command's own help. */
	ck_assert_ptr_nonnull(strstr(err, "Try 'sitesync child --help'."));
	free(out), free(err);

	const char *bad_opt[] = { "-s", sockpath, "status", "--bogus", NULL };
	ck_assert_int_eq(run_cli(bad_opt, &out, &err), 1);
	ck_assert_ptr_nonnull(strstr(err, "Try 'sitesync status --help'."));
	free(out), free(err);

	const char *bad_cmd[] = { "-s", sockpath, "nosuch", NULL };
	ck_assert_int_eq(run_cli(bad_cmd, &out, &err), 1);
	ck_assert_ptr_nonnull(strstr(err, "Try 'sitesync --help'."));
	free(out), free(err);

	/* Not registered in this server: the error reply is shown, exit 2. */
	const char *unknown[] = { "-s", sockpath, "child", "add", "P01", NULL };
	ck_assert_int_eq(run_cli(unknown, &out, &err), 2);
	ck_assert_str_eq(err, "sitesync: unknown command 'child.add'\n");
	free(out), free(err);

	char nowhere[160];
	snprintf(nowhere, sizeof(nowhere), "%s/none.sock", tmpdir);
	const char *unreachable[] = { "-s", nowhere, "status", NULL };
	ck_assert_int_eq(run_cli(unreachable, &out, &err), 2);
	ck_assert_ptr_nonnull(strstr(err, "sitesync: cannot reach sitesyncd at "));
	ck_assert_ptr_nonnull(strstr(err, nowhere));
	free(out), free(err);
}
END_TEST

/* Every command's --help: the option descriptions (and -h, --help) start
 * in one column, and --json is in the usage line of each command that
 * accepts it. */
START_TEST(test_cli_help_columns)
{
	static const char *const cmds[] = {
		"status", "sync", "child", "products", "classifications", "languages", "updates",
		"where", "history", "export", "import", "import-update", "verify",
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char *out, *err;
		const char *args[] = { cmds[i], "--help", NULL };
		ck_assert_int_eq(run_cli(args, &out, &err), 0);
		const char *nl = strchr(out, '\n');
		ck_assert_ptr_nonnull(nl);
		bool json_ok = strcmp(cmds[i], "sync") == 0;
		if (!json_ok)
			ck_assert_msg(memmem(out, (size_t)(nl - out), "--json", 6) != NULL,
			              "%s: --json missing from the usage line", cmds[i]);
		/* Option lines follow the summary's blank line. */
		const char *p = strstr(out, "\n\n");
		p = p ? strstr(p + 2, "\n\n") : NULL;
		ck_assert_msg(p != NULL, "%s: no option block", cmds[i]);
		int lines = 0;
		for (p += 2; *p; p = strchr(p, '\n') + 1) {
			size_t len = strcspn(p, "\n");
			ck_assert_msg(len > 24 && p[22] == ' ' && p[23] != ' ',
			              "%s: option line out of column: '%.*s'", cmds[i], (int)len, p);
			lines++;
			if (p[len] == '\0')
				break;
		}
		ck_assert_int_ge(lines, 1);
		free(out), free(err);
	}
}
END_TEST

/* Find the line of the table whose SITE column is `site` (tree drawing
 * included). */
static const char *find_line(const char *text, const char *site)
{
	size_t len = strlen(site);
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, site, len) == 0 && p[len] == ' ')
			return p;
	return NULL;
}

START_TEST(test_cli_status_tree)
{
	char *out, *err;
	const char *args[] = { "-s", sockpath, "status", NULL };
	ck_assert_int_eq(run_cli(args, &out, &err), 0);
	ck_assert_msg(strchr(out, '\033') == NULL, "colour on a pipe:\n%s", out);

	const char *hdr = find_line(out, "SITE");
	const char *cas = find_line(out, "CAS");
	const char *p01 = find_line(out, "├─ P01");
	const char *s01 = find_line(out, "│  └─ S01");
	const char *p02 = find_line(out, "└─ P02");
	ck_assert_msg(hdr && cas && p01 && s01 && p02, "tree not drawn:\n%s", out);
	ck_assert(hdr < cas && cas < p01 && p01 < s01 && s01 < p02);

	/* Columns line up: STATE starts at the same column on every row
	 * (box-drawing characters count as one column each). */
	const char *state_hdr = strstr(hdr, "STATE");
	size_t col = (size_t)(state_hdr - hdr);
	const char *p = strstr(s01, "failed");
	size_t chars = 0;
	for (const char *q = s01; q < p; q++)
		if (((unsigned char)*q & 0xC0) != 0x80)
			chars++;
	ck_assert_int_eq(chars, col);
	ck_assert_ptr_nonnull(strstr(s01, "digest mismatch (506)"));
	ck_assert_ptr_nonnull(strstr(s01, "1 (1h01m)"));
	/* P02 is half-way through its sync. */
	ck_assert_ptr_nonnull(strstr(p02, "syncing 50%"));
	free(out), free(err);
}
END_TEST

/* --watch on a pipe: plain tables repeated, no screen clearing. */
START_TEST(test_cli_status_watch)
{
	char *out, *err;
	const char *args[] = { "-s", sockpath, "status", "--watch", "1", NULL };
	ck_assert_int_eq(run_cli_for(args, 1600, &out, &err), 128 + SIGTERM);
	ck_assert_msg(strchr(out, '\033') == NULL, "escape codes on a pipe");
	const char *first = strstr(out, "Site CAS, top version 42");
	ck_assert_ptr_nonnull(first);
	ck_assert_msg(strstr(first + 1, "Site CAS, top version 42") != NULL,
	              "one table only:\n%s", out);
	free(out), free(err);

	const char *bad[] = { "-s", sockpath, "status", "--watch", "0", NULL };
	ck_assert_int_eq(run_cli(bad, &out, &err), 1);
	free(out), free(err);
}
END_TEST

/* sync --wait follows progress with plain lines on a pipe and fails
 * because S01 failed. */
START_TEST(test_cli_sync_wait)
{
	char *out, *err;
	const char *args[] = { "-s", sockpath, "sync", "--wait", "--timeout", "20", NULL };
	ck_assert_int_eq(run_cli(args, &out, &err), 2);
	ck_assert_msg(strstr(out, "P02: processed 4 of 8 items (50%)\n") != NULL, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "P02: at version 42\n"));
	ck_assert_ptr_nonnull(strstr(out, "S01: failed: digest mismatch\n"));
	/* Lines repeat only on change. */
	const char *first = strstr(out, "CAS: at version 42\n");
	ck_assert_ptr_nonnull(first);
	ck_assert_ptr_null(strstr(first + 1, "CAS: at version 42\n"));
	ck_assert_ptr_nonnull(strstr(err, "site S01 failed: digest mismatch"));
	free(out), free(err);
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("protocol");
	tcase_add_checked_fixture(tc, server_setup, server_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_request_reply);
	tcase_add_test(tc, test_unknown_and_malformed);
	tcase_add_test(tc, test_oversized);
	tcase_add_test(tc, test_late_reply);
	tcase_add_test(tc, test_client_gone);
	tcase_add_test(tc, test_idle_timeout_and_half_close);
	tcase_add_test(tc, test_start_checks);
	suite_add_tcase(s, tc);

	tc = tcase_create("lifetime");
	tcase_add_test(tc, test_free_with_pending);
	suite_add_tcase(s, tc);

	tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, server_setup, server_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_cli_basics);
	tcase_add_test(tc, test_cli_help_columns);
	tcase_add_test(tc, test_cli_status_tree);
	tcase_add_test(tc, test_cli_status_watch);
	tcase_add_test(tc, test_cli_sync_wait);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Clients leave before their replies on purpose. */
	signal(SIGPIPE, SIG_IGN);
	return check_run(ctl_suite());
}
