/*
 * sitesyncd: one daemon per site. Startup order: configuration, logging,
 * database (migrations, catalog state), worker pool, TLS, listener,
 * control socket, HTTP, parent link, schedule, signals; then the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "proto/version.h"
#include "replication/apply.h"
#include "replication/child_link.h"
#include "replication/parent_link.h"
#include "replication/spool.h"
#include "replication/status.h"
#include "server/alert.h"
#include "common/conf.h"
#include "net/conn.h"
#include "server/ctl.h"
#include "server/ctl_cmds.h"
#include "server/daemon.h"
#include "common/errcode.h"
#include "server/http.h"
#include "server/schedule.h"
#include "common/log.h"
#include "net/tls.h"
#include "replication/synchist.h"
#include "server/topsync.h"
#include "storage/db.h"
#include "storage/writer_lock.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: sitesyncd [-c FILE] [--check-config] [-v]\n"
		"\n"
		"The sitesync daemon: replicates software-update metadata between the\n"
		"sites of a hierarchy. Runs in the foreground and logs to stderr.\n"
		"\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"      --check-config  validate the configuration (and certificates) and exit\n"
		"  -v, --verbose       log at debug level\n"
		"  -h, --help          show this help and exit\n"
		"  -V, --version       show the version and exit\n"
		"\n"
		"Exit status: 0 success, 1 usage or configuration error, 2 operational failure.\n",
		SS_DEFAULT_CONF);
}

/* systemd readiness, without linking libsystemd. */
static void notify_systemd(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	ssize_t w = sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa, len);
	(void)w;
	close(fd);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	daemon_t *d = arg;
	char host[64] = "?";
	if (sa->sa_family == AF_INET)
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
	/* Before Hello nobody is known: a cap on all such connections and one
	 * per address, closed before any TLS work or memory is spent. */
	int same = 0;
	int pending = child_link_pending(&d->site, host, &same);
	if (pending >= d->site.conf->max_pending || same >= d->site.conf->max_pending_addr) {
		evutil_closesocket(fd);
		d->pending_refused++;
		unsigned long skipped = 0;
		if (log_rate_allow(&d->pending_rate, d->site.conf->refusal_log_seconds, &skipped))
			log_warning("refusing a connection from %s: %d connections before Hello "
			            "([listen] max_pending %d), %d from this address "
			            "(max_pending_per_address %d); %lu more refused since the last line",
			            host, pending, d->site.conf->max_pending, same, d->site.conf->max_pending_addr,
			            skipped);
		return;
	}
	conn_t *c = conn_accept(d->site.base, d->tls_server, fd, sa, salen);
	if (c == NULL) {
		log_error("cannot accept a connection: out of memory");
		return;
	}
	conn_track(c, &d->site.live_conns);
	child_link_accept(&d->site, c, host);
}

static json_t *daemon_http_status_cb(void *arg)
{
	return ctl_cmds_status_json(arg);
}

/* [children] approved (at start and on reload): add the listed codes to the
 * children table. Additive: a code taken off the list stays approved until
 * `sitesync child remove`. */
static int approve_listed(PGconn *conn, const char *list, char *err, size_t errlen)
{
	if (list == NULL)
		return SS_EOK;
	int ret = SS_EOK;
	char *copy = strdup(list), *save = NULL;
	if (copy == NULL)
		return SS_ENOMEM;
	for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
		const char *p[] = { t };
		if ((ret = db_execp(conn, "INSERT INTO children (site) VALUES ($1) ON CONFLICT DO NOTHING",
		                    1, p, err, errlen)) != SS_EOK)
			break;
	}
	free(copy);
	return ret;
}

/* Configuration facts that need the database, read once at startup. */
static int load_state(daemon_t *d, char *err, size_t errlen)
{
	PGconn *conn = NULL;
	int ret = SS_EOK;
	/* The database may still be starting: give it a little time. */
	for (int attempt = 0; attempt < 10; attempt++) {
		ret = db_connect(d->site.conf->db_conninfo, &conn, err, errlen);
		if (ret == SS_EOK)
			break;
		log_warning("database not reachable yet (%s); retrying", err);
		sleep(1);
	}
	if (ret != SS_EOK)
		return ret;
	if ((ret = db_migrate(conn, err, errlen)) != SS_EOK)
		goto out;
	state_upgrade_t up;
	if ((ret = state_lthash_upgrade(conn, conf_is_top(d->site.conf), d->site.conf->keep_versions, &up,
	                                err, errlen)) != SS_EOK)
		goto out;
	if (up.computed)
		log_notice("computed the catalog's LtHash set digest from its rows at version %" PRIu64
		           " (schema migration 005)", up.version);
	if (up.sum_mismatch)
		log_warning("the stored rows do not give the stored catalog digest: run 'sitesync verify' "
		            "and repair this site");
	if (up.bumped)
		log_notice("recorded version %" PRIu64 " (no changes) so that the manifest sites relay "
		           "carries the set digest (protocol 3)", up.version + 1);
	if ((ret = state_read(conn, false, &d->site.version, &d->site.digest, &d->site.entries, err, errlen)) != SS_EOK)
		goto out;
	d->site.top_version = d->site.version;
	/* When the held version was committed, not when we started: status's
	 * lag and the dashboard's propagation chart measure from it. */
	char vbuf[24];
	snprintf(vbuf, sizeof(vbuf), "%" PRIu64, d->site.version);
	const char *vp[] = { vbuf };
	uint64_t committed = 0;
	if ((ret = db_query_u64(conn, "SELECT coalesce(floor(max(extract(epoch FROM created_at)))::bigint, 0) "
	                        "FROM catalog_versions WHERE version = $1::bigint",
	                        1, vp, &committed, 1, err, errlen)) != SS_EOK)
		goto out;
	d->site.version_at = committed > 0 ? (time_t)committed : time(NULL);
	/* The last versions' commit times, for the propagation chart across restarts. */
	PGresult *vr = NULL;
	char nbuf[16];
	snprintf(nbuf, sizeof(nbuf), "%d", STATUS_PROP_VERSIONS);
	const char *np[] = { nbuf };
	if ((ret = db_query(conn, "SELECT version, floor(extract(epoch FROM created_at))::bigint FROM "
	                    "(SELECT version, created_at FROM catalog_versions WHERE version > 0 "
	                    "ORDER BY version DESC LIMIT $1::int) v ORDER BY version",
	                    1, np, &vr, err, errlen)) != SS_EOK)
		goto out;
	for (int i = 0; i < PQntuples(vr); i++)
		status_reached_note(&d->site.subtree->own, strtoull(PQgetvalue(vr, i, 0), NULL, 10),
		                    strtoll(PQgetvalue(vr, i, 1), NULL, 10));
	PQclear(vr);
	if ((ret = approve_listed(conn, d->site.conf->children, err, errlen)) != SS_EOK)
		goto out;
	if ((ret = ctl_cmds_load_children(d, conn, err, errlen)) != SS_EOK)
		goto out;
	/* Keys announced by earlier manifests (rotation) stay trusted. */
	PGresult *kr = NULL;
	if ((ret = db_query(conn, "SELECT value FROM settings WHERE key LIKE 'trusted\\_key\\_%'",
	                    0, NULL, &kr, err, errlen)) != SS_EOK)
		goto out;
	for (int i = 0; i < PQntuples(kr); i++) {
		uint8_t raw[32];
		const char *hex = PQgetvalue(kr, i, 0);
		if (strlen(hex) != 64)
			continue;
		for (int j = 0; j < 32; j++)
			sscanf(hex + 2 * j, "%2hhx", &raw[j]);
		if (manifest_keys_trust_raw(&d->site.keys, raw, 32) != SS_EOK)
			log_warning("cannot trust announced key %s", hex);
	}
	PQclear(kr);
	PGresult *r = NULL;
	if ((ret = db_query(conn, "SELECT value FROM settings WHERE key = 'last_upstream_sync'",
	                    0, NULL, &r, err, errlen)) != SS_EOK)
		goto out;
	if (PQntuples(r) == 1)
		d->last_upstream_sync = (time_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	/* The last sync survives a restart (status, dashboard, metrics). */
	ret = synchist_load(&d->site, conn, err, errlen);
out:
	PQfinish(conn);
	return ret;
}

static int setup_tls(daemon_t *d, char *err, size_t errlen)
{
	const conf_t *c = d->site.conf;
	if (!c->tls_ca || !c->tls_cert || !c->tls_key)
		return SS_EOK;
	char site[4];
	int ret = tls_cert_site(c->tls_cert, site, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (strcmp(site, c->site_code) != 0) {
		snprintf(err, errlen, "certificate %s is for site %s, but [site] code is %s",
		         c->tls_cert, site, c->site_code);
		return SS_ECONFIG;
	}
	SSL_CTX *srv = NULL, *cli = NULL;
	if ((ret = tls_ctx_new(c->tls_ca, c->tls_cert, c->tls_key, 1, &srv, err, errlen)) != SS_EOK)
		return ret;
	if ((ret = tls_ctx_new(c->tls_ca, c->tls_cert, c->tls_key, 0, &cli, err, errlen)) != SS_EOK) {
		SSL_CTX_free(srv);
		return ret;
	}
	if ((ret = tls_hierarchy_id(c->tls_ca, d->site.hierarchy_id, err, errlen)) != SS_EOK) {
		SSL_CTX_free(srv);
		SSL_CTX_free(cli);
		return ret;
	}
	/* Live connections keep their own reference to the old contexts. */
	SSL_CTX_free(d->tls_server);
	SSL_CTX_free(d->site.tls_client);
	d->tls_server = srv;
	d->site.tls_client = cli;
	d->site.cert_expires = tls_cert_expiry(c->tls_cert);
	time_t now = time(NULL);
	if (status_cert_expiring(d->site.cert_expires, now, c->cert_warning_days)) {
		int64_t left = ((int64_t)d->site.cert_expires - (int64_t)now) / 86400;
		if (d->site.cert_expires <= now)
			log_warning("certificate %s has EXPIRED; renew it (sitesync-certs renew) "
			            "and reload with SIGHUP", c->tls_cert);
		else
			log_warning("certificate %s expires in %" PRId64 " day(s), within the "
			            "%d-day warning window; renew it (sitesync-certs renew) and "
			            "reload with SIGHUP", c->tls_cert, left, c->cert_warning_days);
	}
	/* Status rows are signed with the same certificate's key. */
	rowsig_t rs;
	if ((ret = rowsig_init(&rs, c->tls_ca, c->tls_cert, c->tls_key, err, errlen)) != SS_EOK)
		return ret;
	if (d->site.rowsig_ok)
		rowsig_clear(&d->site.rowsig);
	d->site.rowsig = rs;
	d->site.rowsig_ok = true;
	return SS_EOK;
}

static int setup_listener(daemon_t *d, char *err, size_t errlen)
{
	if (d->site.conf->listen_address == NULL)
		return SS_EOK;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	if (evutil_parse_sockaddr_port(d->site.conf->listen_address, (struct sockaddr *)&ss, &sslen) != 0) {
		snprintf(err, errlen, "[listen] address '%s' is not HOST:PORT with a numeric host",
		         d->site.conf->listen_address);
		return SS_ECONFIG;
	}
	d->listener = evconnlistener_new_bind(d->site.base, accept_cb, d,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	                                      128, (struct sockaddr *)&ss, sslen);
	if (d->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", d->site.conf->listen_address, strerror(errno));
		return -errno;
	}
	d->listen_guard = conn_listen_guard_new(d->site.base, d->listener, "replication listener");
	if (d->listen_guard == NULL) {
		snprintf(err, errlen, "out of memory");
		return SS_ENOMEM;
	}
	return SS_EOK;
}

typedef struct {
	daemon_t *d;
	uint64_t version;
	digest_t digest;
	uint64_t entries;
	char err[256];
} follow_job_t;

static int follow_work(PGconn *conn, void *arg)
{
	follow_job_t *f = arg;
	return state_read(conn, false, &f->version, &f->digest, &f->entries, f->err, sizeof(f->err));
}

static void follow_done(int ret, void *arg)
{
	follow_job_t *f = arg;
	daemon_t *d = f->d;
	if (ret == SS_EOK && !d->site.active && f->version != d->site.version) {
		log_info("standby: the active writer committed version %" PRIu64, f->version);
		site_version_committed(&d->site, f->version, &f->digest, f->entries, false);
	}
	free(f);
}

/* A standby serves children from the shared database: it must notice the
 * versions the active writer commits. */
static void follow_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_t *d = arg;
	if (d->site.active || d->site.db == NULL)
		return;
	follow_job_t *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return;
	f->d = d;
	if (db_submit(d->site.db, DB_QUICK, follow_work, follow_done, f) != SS_EOK)
		free(f);
}

static void writer_lock_cb_main(writer_lock_event_t ev, void *arg)
{
	daemon_t *d = arg;
	char err[512] = "";
	if (ev == WRITER_LOCK_LOST) {
		/* Another daemon may hold the lock by now: stop starting writes and
		 * stand by; the lock thread takes it again when it can. A write
		 * already running is fenced by its own transaction's version check. */
		log_error("lost the writer lock for site %s (database session gone): standing by until "
		          "it can be taken again", d->site.conf->site_code);
		d->site.active = false;
		site_status_changed(&d->site);
		return;
	}
	d->site.active = true;
	log_notice("this daemon is the active writer for site %s", d->site.conf->site_code);
	if (d->site.parent)
		parent_link_kick(d->site.parent);
	if (d->site.conf->parent_address && strcmp(d->site.conf->parent_mode, "connected") == 0 &&
	    d->site.parent == NULL && parent_link_start(&d->site, &d->site.parent) != SS_EOK) {
		log_error("cannot start the parent link");
		d->exit_code = 2;
		event_base_loopbreak(d->site.base);
		return;
	}
	if (d->site.conf->schedule_cron && conf_is_top(d->site.conf) && d->schedule == NULL &&
	    topsync_schedule_arm(d, err, sizeof(err)) != SS_EOK) {
		log_error("[schedule] cron: %s", err);
		d->exit_code = 1;
		event_base_loopbreak(d->site.base);
		return;
	}
	site_status_changed(&d->site);
}

/* A reload's [children] approved: stored on a worker, listed on the loop. */
typedef struct {
	daemon_t *d;
	char *list;
	char (*sites)[4];
	size_t n;
	char err[256];
} approve_job_t;

static int approve_work(PGconn *conn, void *arg)
{
	approve_job_t *j = arg;
	PGresult *r = NULL;
	int ret = approve_listed(conn, j->list, j->err, sizeof(j->err));
	if (ret == SS_EOK)
		ret = db_query(conn, "SELECT site FROM children ORDER BY site", 0, NULL, &r,
		               j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->n = (size_t)PQntuples(r);
	j->sites = calloc(j->n + 1, sizeof(*j->sites));
	for (size_t i = 0; j->sites && i < j->n; i++)
		snprintf(j->sites[i], 4, "%s", PQgetvalue(r, (int)i, 0));
	PQclear(r);
	return j->sites ? SS_EOK : SS_ENOMEM;
}

static void approve_done(int ret, void *arg)
{
	approve_job_t *j = arg;
	if (ret == SS_EOK)
		ret = site_set_approved(&j->d->site, j->sites, j->n);
	if (ret == SS_EOK) {
		log_notice("reload: [children] approved stored; %zu approved children", j->n);
		site_status_changed(&j->d->site);
	} else {
		log_error("reload: [children] approved: %s", j->err[0] ? j->err : ss_strerror(ret));
	}
	free(j->list);
	free(j->sites);
	free(j);
}

static void approve_reloaded(daemon_t *d)
{
	approve_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL || (j->list = strdup(d->site.conf->children)) == NULL) {
		free(j);
		log_error("reload: [children] approved: out of memory");
		return;
	}
	j->d = d;
	if (db_submit(d->site.db, DB_QUICK, approve_work, approve_done, j) != SS_EOK) {
		log_error("reload: [children] approved: cannot queue the database job");
		free(j->list);
		free(j);
	}
}

static bool same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* SIGHUP: re-read the file; keep the old configuration if the new one is
 * bad. Keys the table (common/conf.c) marks not reloadable keep their
 * running values; the others take effect here. */
static int reload(daemon_t *d, char *out, size_t outlen)
{
	char err[512] = "";
	conf_t *nc = NULL;
	notify_systemd("RELOADING=1");
	if (conf_load(d->conf_path, &nc, err, sizeof(err)) != SS_EOK) {
		nc = NULL;
		goto keep_old;
	}
	conf_t *old = d->site.conf;
	char fixed[512];
	int n_fixed = 0;
	schedule_t check;
	if (conf_keep_fixed(nc, old, &n_fixed, fixed, sizeof(fixed)) != SS_EOK) {
		snprintf(err, sizeof(err), "out of memory");
		goto keep_old;
	}
	/* Refused as at startup: a schedule that does not parse. */
	if (nc->schedule_cron && conf_is_top(nc) &&
	    schedule_parse(nc->schedule_cron, &check, err, sizeof(err)) != SS_EOK)
		goto keep_old;
	d->site.conf = nc;
	if (setup_tls(d, err, sizeof(err)) != SS_EOK) {
		d->site.conf = old;
		goto keep_old;
	}
	out[0] = '\0';
	if (n_fixed > 0) {
		log_warning("reload: %s: changes need a restart; they are ignored", fixed);
		snprintf(out, outlen, "%s: changes need a restart; they are ignored", fixed);
	}
	/* Workers may be logging: only the threshold changes (the site code cannot). */
	log_set_level((ss_log_level_t)log_level_parse(nc->log_level));
	conn_set_quiet(nc->refusal_log_seconds);
	if (!same_str(nc->schedule_cron, old->schedule_cron) || nc->schedule_utc != old->schedule_utc) {
		if (topsync_schedule_rearm(d, err, sizeof(err)) != SS_EOK)
			log_error("reload: [schedule] cron: %s", err);
		else
			log_notice("reload: [schedule] cron is now %s", nc->schedule_cron ? nc->schedule_cron : "unset");
	}
	if (nc->children && !same_str(nc->children, old->children))
		approve_reloaded(d);
	conf_free(old);
	log_notice("configuration reloaded from %s", d->conf_path);
	site_message(&d->site, SS_MSG_RELOADED, "info", "Configuration reloaded from %s%s%s",
	             d->conf_path, out[0] ? "; " : "", out);
	notify_systemd("READY=1");
	return SS_EOK;
keep_old:
	/* Said where operators look (history, alerts' messages), not only in the log. */
	log_error("reload: %s; keeping the running configuration", err);
	site_message(&d->site, SS_MSG_RELOAD_REFUSED, "error", "Reload of %s refused: %s; the "
	             "running configuration is kept", d->conf_path, err);
	snprintf(out, outlen, "%s", err);
	conf_free(nc);
	notify_systemd("READY=1");
	return SS_ECONFIG;
}

/* Control command "reload": the SIGHUP reload, answered when done, so
 * `sitesync reload` (systemd's ExecReload) reports a refusal. */
static void cmd_reload(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	char msg[600];
	if (reload(d, msg, sizeof(msg)) != SS_EOK) {
		ctl_reply_error(req, SS_ECONFIG, "reload refused: %s; the running configuration is "
		                "kept", msg);
		return;
	}
	ctl_reply(req, json_pack("{s:s, s:s}", "reloaded", d->conf_path, "note", msg));
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	daemon_t *d = arg;
	if (sig == SIGHUP) {
		char msg[600];
		(void)reload(d, msg, sizeof(msg));
		return;
	}
	if (++d->sigterm_count > 1) {
		log_warning("second stop signal: exiting at once");
		_exit(1);
	}
	log_notice("stopping (signal %d)", (int)sig);
	notify_systemd("STOPPING=1");
	event_base_loopbreak(d->site.base);
}

static void shutdown_daemon(daemon_t *d)
{
	if (d->listener)
		evconnlistener_free(d->listener);
	d->listener = NULL;
	conn_listen_guard_free(d->listen_guard);
	d->listen_guard = NULL;
	ctl_free(d->ctl);
	d->ctl = NULL;
	http_free(d->http);
	d->http = NULL;
	child_link_free_all(&d->site);
	parent_link_close(d->site.parent);
	/* Closing its session releases the lock for a standby. */
	writer_lock_free(d->wlock);
	d->wlock = NULL;
	if (d->follow_ev)
		event_free(d->follow_ev);
	d->follow_ev = NULL;
	/* Let closing connections flush and free themselves. */
	for (int i = 0; i < 40 && d->site.live_conns > 0; i++) {
		struct timeval tv = { 0, 50000 };
		event_base_loopexit(d->site.base, &tv);
		event_base_dispatch(d->site.base);
	}
	if (d->site.db) {
		db_pool_drain(d->site.db);
		db_pool_free(d->site.db);
		d->site.db = NULL;
	}
	parent_link_free(d->site.parent);
	d->site.parent = NULL;
	spool_free_all(&d->site);
	status_table_free(d->site.subtree);
	topsync_free(d);
	alert_free(d);
	site_events_free(&d->site);
	daemon_events_free(d);
	for (size_t i = 0; i < sizeof(d->sig_ev) / sizeof(d->sig_ev[0]); i++)
		if (d->sig_ev[i])
			event_free(d->sig_ev[i]);
	SSL_CTX_free(d->tls_server);
	SSL_CTX_free(d->site.tls_client);
	manifest_keys_clear(&d->site.keys);
	if (d->site.rowsig_ok)
		rowsig_clear(&d->site.rowsig);
	if (d->site.dns)
		evdns_base_free(d->site.dns, 0);
	free(d->site.approved);
	if (d->site.sync_log_fd >= 0)
		close(d->site.sync_log_fd);
	event_base_free(d->site.base);
	conf_free(d->site.conf);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = SS_DEFAULT_CONF;
	bool check_only = false, verbose = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:vhV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': conf_path = optarg; break;
		case 'C': check_only = true; break;
		case 'v': verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 'V':
			printf("sitesyncd %s (protocol %d; libevent %s, %s, jansson %s, libpq %d)\n",
			       SS_SOFTWARE_VERSION, SS_PROTO_VERSION, event_get_version(),
			       OpenSSL_version(OPENSSL_VERSION), JANSSON_VERSION, PQlibVersion());
			return 0;
		default:
			fprintf(stderr, "Try 'sitesyncd --help'.\n");
			return 1;
		}
	}
	/* Pull streams pass through a fresh ~1 MiB buffer per frame (the
	 * spool reader's on a parent, libevent's pullup on a child). glibc's
	 * adaptive default maps or grows-and-trims the heap for each one: the
	 * page faults doubled a full pull's transfer time (bench figure 1).
	 * Keep such buffers on a heap that stays; what is larger is rare and
	 * still goes back to the system at once. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	if (optind < argc) {
		fprintf(stderr, "sitesyncd: unexpected argument '%s'\nTry 'sitesyncd --help'.\n", argv[optind]);
		return 1;
	}

	daemon_t dd;
	memset(&dd, 0, sizeof(dd));
	daemon_t *d = &dd;
	d->site.sync_log_fd = -1;
	d->conf_path = conf_path;
	char err[512] = "";
	if (conf_load(conf_path, &d->site.conf, err, sizeof(err)) != SS_EOK) {
		fprintf(stderr, "sitesyncd: %s\n", err);
		return 1;
	}
	if (check_only) {
		int ret = setup_tls(d, err, sizeof(err));
		SSL_CTX_free(d->tls_server);
		SSL_CTX_free(d->site.tls_client);
		if (d->site.rowsig_ok)
			rowsig_clear(&d->site.rowsig);
		conf_free(d->site.conf);
		if (ret != SS_EOK) {
			fprintf(stderr, "sitesyncd: %s\n", err);
			return 1;
		}
		printf("configuration %s is valid\n", conf_path);
		return 0;
	}
	log_init(verbose ? SS_LOG_DEBUG : (ss_log_level_t)log_level_parse(d->site.conf->log_level),
	         d->site.conf->site_code);
	conn_set_quiet(d->site.conf->refusal_log_seconds);
	signal(SIGPIPE, SIG_IGN);
	int exit_code = 2;

	if (evthread_use_pthreads() != 0 || (d->site.base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		conf_free(d->site.conf);
		return 2;
	}
	d->site.dns = evdns_base_new(d->site.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (d->site.dns == NULL)
		d->site.dns = evdns_base_new(d->site.base, 0);
	d->site.subtree = status_table_new();
	daemon_subscribe(d);
	if (d->site.subtree == NULL || site_events_init(&d->site) != SS_EOK ||
	    daemon_events_init(d) != SS_EOK)
		goto out;
	if (d->site.conf->sync_log) {
		d->site.sync_log_fd = open(d->site.conf->sync_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (d->site.sync_log_fd < 0) {
			log_error("cannot open sync log %s: %s", d->site.conf->sync_log, strerror(errno));
			goto out;
		}
	}
	if (spool_dir_prepare(&d->site, err, sizeof(err)) != SS_EOK) {
		log_error("%s", err);
		goto out;
	}
	if (manifest_keys_load(&d->site.keys, d->site.conf->trust_signing_key, d->site.conf->trust_public_key,
	                       d->site.conf->trust_next_key, err, sizeof(err)) != SS_EOK) {
		log_error("[trust]: %s", err);
		goto out;
	}
	if (d->site.keys.n_trusted == 0 && !conf_is_top(d->site.conf))
		log_warning("no [trust] public_key: catalog signatures are not verified at this site");
	if (load_state(d, err, sizeof(err)) != SS_EOK) {
		log_error("database: %s", err);
		goto out;
	}
	if (db_pool_new(d->site.base, d->site.conf->db_conninfo, d->site.conf->workers, &d->site.db) != SS_EOK) {
		log_error("cannot start database workers");
		goto out;
	}
	if (setup_tls(d, err, sizeof(err)) != SS_EOK || setup_listener(d, err, sizeof(err)) != SS_EOK) {
		log_error("%s", err);
		goto out;
	}
	if (ctl_start(d->site.base, d->site.conf->control_socket, &d->ctl, err, sizeof(err)) != SS_EOK) {
		log_error("control socket: %s", err);
		goto out;
	}
	if (ctl_cmds_register(d) != SS_EOK ||
	    ctl_register(d->ctl, "reload", cmd_reload, d) != SS_EOK)
		goto out;
	if (d->site.conf->http_listen &&
	    http_start(d->site.base, d->site.conf->http_listen, daemon_http_status_cb, d, &d->http, err, sizeof(err)) != SS_EOK) {
		log_error("http: %s", err);
		goto out;
	}
	if (d->http)
		http_set_limits(d->http, d->site.conf->http_max_header, d->site.conf->http_max_body,
		                d->site.conf->http_timeout, d->site.conf->http_max_conns);
	if (topsync_schedule_init(d, err, sizeof(err)) != SS_EOK) {
		log_error("[schedule] cron: %s", err);
		goto out;
	}
	/* The parent link and the schedule start once this daemon holds the lock. */
	if (writer_lock_start(d->site.base, d->site.conf->db_conninfo, writer_lock_cb_main, d, &d->wlock) != SS_EOK) {
		log_error("cannot start the writer lock");
		goto out;
	}
	d->follow_ev = event_new(d->site.base, -1, EV_PERSIST, follow_cb, d);
	struct timeval follow_tv = { 1, 0 };
	if (d->follow_ev == NULL || event_add(d->follow_ev, &follow_tv) != 0)
		goto out;
	if (alert_init(d) != SS_EOK) {
		log_error("cannot start alerts");
		goto out;
	}
	const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d->sig_ev[i] = evsignal_new(d->site.base, sigs[i], signal_cb, d);
		if (d->sig_ev[i] == NULL || event_add(d->sig_ev[i], NULL) != 0)
			goto out;
	}
	log_notice("sitesyncd %s started: site %s, catalog version %" PRIu64 " (%" PRIu64 " entries)%s%s%s%s",
	           SS_SOFTWARE_VERSION, d->site.conf->site_code, d->site.version, d->site.entries,
	           d->site.conf->listen_address ? ", listening on " : "",
	           d->site.conf->listen_address ? d->site.conf->listen_address : "",
	           d->site.conf->parent_address ? ", parent " : (conf_is_top(d->site.conf) ? ", top site" : ", disconnected"),
	           d->site.conf->parent_address ? d->site.conf->parent_address : "");
	site_status_changed(&d->site);
	notify_systemd("READY=1");
	event_base_dispatch(d->site.base);
	exit_code = d->exit_code;
out:
	shutdown_daemon(d);
	return exit_code;
}
