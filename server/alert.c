/*
 * Alerts (DESIGN §4): watch the states status_json() reports for the whole
 * subtree and run the operator's command when a site turns "failed" or
 * "stale", or recovers from either; and when a site's certificate enters
 * the [status] cert_warning_days window, or leaves it (renewed).
 *
 *   tick (1 s) ──► reap finished commands (waitpid WNOHANG)
 *              └─► status_json() ──► per site: last state vs. now
 *                                     └─ into/out of failed|stale ──► spawn
 *
 * Rendering the same object the operators see keeps one definition of
 * "stale" (status.c); the alert can never disagree with `sitesync status`.
 */
#include "server/alert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "replication/status.h"
#include "server/daemon.h"
#include "common/errcode.h"
#include "common/log.h"

extern char **environ;

typedef struct {
	char site[4];
	char state[16];               /* last settled state, "" = none yet */
	signed char cert;             /* last cert_expiring: -1 none yet, 0, 1 */
	bool seen;                    /* present in the latest render */
} alert_site_t;

typedef struct {
	pid_t pid;
	char site[4];
	char state[16];
} alert_proc_t;

/* What changed: SITESYNC_EVENT. */
typedef enum { ALERT_STATE, ALERT_CERT_EXPIRING, ALERT_CERT_RENEWED } alert_event_t;

static const char *const alert_event_names[] = {
	[ALERT_STATE] = "state",
	[ALERT_CERT_EXPIRING] = "cert_expiring",
	[ALERT_CERT_RENEWED] = "cert_renewed",
};

struct alert_state {
	struct event *timer;
	time_t started;               /* daemon start, for the startup grace */
	alert_site_t *sites;
	size_t n_sites, cap_sites;
	alert_proc_t running[SS_ALERT_MAX_RUNNING];
	int n_running;
	uint64_t dropped;             /* alerts not run: too many at once */
};

static void alert_tick_cb(evutil_socket_t fd, short what, void *arg);

static bool bad_state(const char *state)
{
	return strcmp(state, "failed") == 0 || strcmp(state, "stale") == 0;
}

static void reap(struct alert_state *a)
{
	for (int i = 0; i < a->n_running;) {
		alert_proc_t *p = &a->running[i];
		int st = 0;
		pid_t r = waitpid(p->pid, &st, WNOHANG);
		if (r == 0) {
			i++;
			continue;
		}
		if (r < 0)
			log_warning("alert: lost track of command pid %d for %s (%s)",
			            (int)p->pid, p->site, strerror(errno));
		else if (WIFEXITED(st))
			log_notice("alert: command for %s (%s), pid %d, exited with status %d",
			           p->site, p->state, (int)p->pid, WEXITSTATUS(st));
		else if (WIFSIGNALED(st))
			log_warning("alert: command for %s (%s), pid %d, killed by signal %d",
			            p->site, p->state, (int)p->pid, WTERMSIG(st));
		/* Order does not matter: move the last one into the gap. */
		*p = a->running[--a->n_running];
	}
}

static int env_add(char **env, size_t *n, const char *name, const char *value)
{
	if (asprintf(&env[*n], "%s=%s", name, value ? value : "") < 0) {
		env[*n] = NULL;
		return SS_ENOMEM;
	}
	(*n)++;
	return SS_EOK;
}

/* Start the command for one change; never waits for it. */
static void spawn_alert(daemon_t *d, struct alert_state *a, const char *cmd,
                        const json_t *doc, const json_t *row, const char *prev,
                        alert_event_t ev)
{
	const char *site = json_string_value(json_object_get(row, "site"));
	const char *state = json_string_value(json_object_get(row, "state"));
	if (a->n_running >= SS_ALERT_MAX_RUNNING) {
		a->dropped++;
		log_warning("alert: %d commands still running, dropped the alert for %s "
		            "(%s -> %s); %" PRIu64 " dropped so far",
		            a->n_running, site, prev, state, a->dropped);
		return;
	}
	char num[3][32];
	snprintf(num[0], sizeof(num[0]), "%" JSON_INTEGER_FORMAT,
	         json_integer_value(json_object_get(row, "last_error_code")));
	snprintf(num[1], sizeof(num[1]), "%" JSON_INTEGER_FORMAT,
	         json_integer_value(json_object_get(row, "catalog_version")));
	snprintf(num[2], sizeof(num[2]), "%" JSON_INTEGER_FORMAT,
	         json_integer_value(json_object_get(doc, "top_version")));

	/* The daemon's environment minus any inherited SITESYNC_* (a command
	 * must never see a stale value), plus the ten variables of this alert. */
	size_t n_env = 0, n = 0;
	while (environ[n_env])
		n_env++;
	char **env = calloc(n_env + 11, sizeof(*env));
	size_t first_owned = 0;       /* env[first_owned..n) are ours to free */
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ok = false, attr_ok = false;
	if (env == NULL)
		goto fail;
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "SITESYNC_", 9) != 0)
			env[n++] = environ[i];
	first_owned = n;
	const char *err = json_string_value(json_object_get(row, "last_error"));
	if (env_add(env, &n, "SITESYNC_SITE", site) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_STATE", state) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_PREVIOUS_STATE", prev) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_ERROR", err) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_ERROR_CODE", num[0]) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_CATALOG_VERSION", num[1]) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_TOP_VERSION", num[2]) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_REPORTING_SITE", d->site.conf->site_code) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_EVENT", alert_event_names[ev]) != SS_EOK ||
	    env_add(env, &n, "SITESYNC_CERT_EXPIRES",
	            json_string_value(json_object_get(row, "cert_expires"))) != SS_EOK)
		goto fail;

	if (posix_spawn_file_actions_init(&fa) != 0)
		goto fail;
	fa_ok = true;
	/* stdin from /dev/null; stdout/stderr are the daemon's; no other
	 * descriptor (sockets, database connections) leaks into the command. */
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
	    posix_spawn_file_actions_addclosefrom_np(&fa, 3) != 0)
		goto fail;
	if (posix_spawnattr_init(&attr) != 0)
		goto fail;
	attr_ok = true;
	/* The daemon ignores SIGPIPE and handles TERM/INT/HUP; the command must
	 * start with ordinary dispositions and its own process group, so a ^C at
	 * the daemon's terminal does not reach it twice. */
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGCHLD);
	if (posix_spawnattr_setsigmask(&attr, &none) != 0 ||
	    posix_spawnattr_setsigdefault(&attr, &dfl) != 0 ||
	    posix_spawnattr_setpgroup(&attr, 0) != 0 ||
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
	                                    POSIX_SPAWN_SETPGROUP) != 0)
		goto fail;

	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	pid_t pid;
	int ret = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	if (ret != 0) {
		log_error("alert: cannot start /bin/sh for %s (%s -> %s): %s",
		          site, prev, state, strerror(ret));
		goto out;
	}
	alert_proc_t *p = &a->running[a->n_running++];
	p->pid = pid;
	snprintf(p->site, sizeof(p->site), "%s", site);
	snprintf(p->state, sizeof(p->state), "%s", state);
	/* Errors from libpq span lines; the log keeps one line per event. */
	char flat[160] = "";
	for (size_t i = 0; err && err[i] && i + 1 < sizeof(flat); i++)
		flat[i] = (unsigned char)err[i] < 0x20 ? ' ' : err[i];
	if (ev == ALERT_STATE)
		log_notice("alert: %s %s -> %s%s%s, running command (pid %d)", site, prev, state,
		           flat[0] ? ": " : "", flat, (int)pid);
	else
		log_notice("alert: %s %s (certificate expires %s), running command (pid %d)",
		           site, alert_event_names[ev],
		           json_string_value(json_object_get(row, "cert_expires")) ?: "?", (int)pid);
	goto out;
fail:
	log_error("alert: cannot prepare the command for %s (%s -> %s)", site, prev, state);
out:
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	for (size_t i = first_owned; env && i < n; i++)
		free(env[i]);
	free(env);
}

static alert_site_t *site_find(struct alert_state *a, const char *site)
{
	for (size_t i = 0; i < a->n_sites; i++)
		if (strcmp(a->sites[i].site, site) == 0)
			return &a->sites[i];
	return NULL;
}

static alert_site_t *site_add(struct alert_state *a, const char *site)
{
	if (a->n_sites == a->cap_sites) {
		size_t cap = a->cap_sites ? a->cap_sites * 2 : 16;
		alert_site_t *s = realloc(a->sites, cap * sizeof(*s));
		if (s == NULL)
			return NULL;
		a->sites = s;
		a->cap_sites = cap;
	}
	alert_site_t *s = &a->sites[a->n_sites++];
	memset(s, 0, sizeof(*s));
	s->cert = -1;
	snprintf(s->site, sizeof(s->site), "%s", site);
	return s;
}

/* A certificate entering the warning window is news once, and so is its
 * renewal; a site first seen with a fine certificate is not. */
static void observe_cert(daemon_t *d, struct alert_state *a, alert_site_t *s,
                         const char *cmd, const json_t *doc, const json_t *row)
{
	const json_t *flag = json_object_get(row, "cert_expiring");
	if (!json_is_boolean(flag))
		return;
	int now = json_is_true(flag) ? 1 : 0;
	int was = s->cert;
	s->cert = (signed char)now;
	if (now == was || (was < 0 && now == 0))
		return;
	const char *when = json_string_value(json_object_get(row, "cert_expires"));
	json_int_t left = json_integer_value(json_object_get(row, "cert_days_left"));
	if (now)
		site_message(&d->site, SS_MSG_CERT_EXPIRING, "warning",
		             "Certificate of site %s expires %s (%" JSON_INTEGER_FORMAT
		             " days left, warning window %d days)", s->site,
		             when ? when : "?", left, d->site.conf->cert_warning_days);
	else
		site_message(&d->site, SS_MSG_CERT_RENEWED, "info",
		             "Certificate of site %s renewed: expires %s", s->site,
		             when ? when : "?");
	if (cmd != NULL)
		spawn_alert(d, a, cmd, doc, row, s->state[0] ? s->state : "unknown",
		            now ? ALERT_CERT_EXPIRING : ALERT_CERT_RENEWED);
}

static void observe(daemon_t *d, struct alert_state *a)
{
	json_t *doc = status_json(&d->site);
	if (doc == NULL)
		return;
	const char *cmd = d->site.conf->alert_command;
	bool run = cmd != NULL && cmd[0] != '\0';
	for (size_t i = 0; i < a->n_sites; i++)
		a->sites[i].seen = false;
	size_t idx;
	json_t *row;
	json_array_foreach(json_object_get(doc, "sites"), idx, row) {
		const char *site = json_string_value(json_object_get(row, "site"));
		const char *state = json_string_value(json_object_get(row, "state"));
		if (site == NULL || state == NULL)
			continue;
		alert_site_t *s = site_find(a, site);
		if (s == NULL && (s = site_add(a, site)) == NULL)
			continue;
		s->seen = true;
		observe_cert(d, a, s, run ? cmd : NULL, doc, row);
		/* "syncing" is on the way to an outcome: failed -> syncing -> failed
		 * is one failure, failed -> syncing -> succeeded one recovery. */
		if (strcmp(state, "syncing") == 0 || strcmp(s->state, state) == 0)
			continue;
		bool was_bad = bad_state(s->state), is_bad = bad_state(state);
		/* First sight (startup, a new child): only trouble is news. */
		const char *prev = s->state[0] ? s->state : "unknown";
		/* Stale and recovered are this site's observations, so they go into
		 * its history; a failure is recorded by the failing site itself. */
		if (strcmp(state, "stale") == 0)
			site_message(&d->site, SS_MSG_SITE_STALE, "warning", "Site %s is stale (was %s)",
			             site, prev);
		else if (is_bad)
			log_info("alert: %s is now %s (was %s)", site, state, prev);
		else if (was_bad)
			site_message(&d->site, SS_MSG_SITE_RECOVERED, "info", "Site %s recovered: %s (was %s)",
			             site, state, prev);
		if (run && (is_bad || was_bad))
			spawn_alert(d, a, cmd, doc, row, prev, ALERT_STATE);
		snprintf(s->state, sizeof(s->state), "%s", state);
	}
	/* Sites gone from the view (child removed) are forgotten silently; if
	 * one comes back it is a first sighting again. */
	for (size_t i = 0; i < a->n_sites;) {
		if (a->sites[i].seen)
			i++;
		else
			a->sites[i] = a->sites[--a->n_sites];
	}
	json_decref(doc);
}

static void alert_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	daemon_t *d = arg;
	struct alert_state *a = d->alerts;
	reap(a);
	/* Stopping: links close one by one and every child would read as
	 * stale for a moment; that is not news. */
	if (d->sigterm_count > 0)
		return;
	/* Children connect within a heartbeat or two of our start; until then
	 * they read as stale, which would alert on every restart. */
	if (time(NULL) - a->started <= d->site.conf->heartbeat_timeout + 1)
		return;
	observe(d, a);
}

int alert_init(daemon_t *d)
{
	struct alert_state *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return SS_ENOMEM;
	a->started = time(NULL);
	a->timer = event_new(d->site.base, -1, EV_PERSIST, alert_tick_cb, d);
	struct timeval tv = { 1, 0 };
	if (a->timer == NULL || event_add(a->timer, &tv) != 0)
		goto fail;
	d->alerts = a;
	if (d->site.conf->alert_command && d->site.conf->alert_command[0])
		log_info("alert: command configured: %s", d->site.conf->alert_command);
	return SS_EOK;
fail:
	if (a->timer)
		event_free(a->timer);
	free(a);
	return SS_ENOMEM;
}

void alert_free(daemon_t *d)
{
	struct alert_state *a = d->alerts;
	if (a == NULL)
		return;
	if (a->timer)
		event_free(a->timer);
	reap(a);
	if (a->n_running > 0)
		log_notice("alert: %d command(s) still running at shutdown, not waiting",
		           a->n_running);
	free(a->sites);
	free(a);
	d->alerts = NULL;
}
