/*
 * sitesyncd: one daemon per site. Startup order: configuration, logging,
 * database (migrations, catalog state), worker pool, TLS, listener,
 * control socket, HTTP, parent link, schedule, signals; then the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "server/conf.h"
#include "server/conn.h"
#include "server/ctl.h"
#include "server/ctl_cmds.h"
#include "server/daemon.h"
#include "server/errcode.h"
#include "server/http.h"
#include "server/log.h"
#include "server/tls.h"
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
	conn_t *c = conn_accept(d->base, d->tls_server, fd, sa, salen);
	if (c == NULL) {
		log_error("cannot accept a connection: out of memory");
		return;
	}
	conn_track(c, &d->live_conns);
	child_link_accept(d, c);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	log_error("accepting connections: %s", evutil_socket_error_to_string(err));
}

static json_t *daemon_http_status_cb(void *arg)
{
	return status_json(arg);
}

/* Configuration facts that need the database, read once at startup. */
static int load_state(daemon_t *d, char *err, size_t errlen)
{
	PGconn *conn = NULL;
	int ret = SS_EOK;
	/* The database may still be starting: give it a little time. */
	for (int attempt = 0; attempt < 10; attempt++) {
		ret = db_connect(d->conf->db_conninfo, &conn, err, errlen);
		if (ret == SS_EOK)
			break;
		log_warning("database not reachable yet (%s); retrying", err);
		sleep(1);
	}
	if (ret != SS_EOK)
		return ret;
	if ((ret = db_migrate(conn, err, errlen)) != SS_EOK)
		goto out;
	if ((ret = apply_read_state(conn, false, &d->version, &d->digest, &d->entries, err, errlen)) != SS_EOK)
		goto out;
	d->top_version = d->version;
	d->version_at = time(NULL);
	if (d->conf->children) {
		char *copy = strdup(d->conf->children), *save = NULL;
		for (char *t = copy ? strtok_r(copy, ", ", &save) : NULL; t; t = strtok_r(NULL, ", ", &save)) {
			const char *p[] = { t };
			if ((ret = db_execp(conn, "INSERT INTO children (site) VALUES ($1) ON CONFLICT DO NOTHING",
			                    1, p, err, errlen)) != SS_EOK)
				break;
		}
		free(copy);
		if (ret != SS_EOK)
			goto out;
	}
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
		if (manifest_keys_trust_raw(&d->keys, raw, 32) != SS_EOK)
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
out:
	PQfinish(conn);
	return ret;
}

static int setup_tls(daemon_t *d, char *err, size_t errlen)
{
	const conf_t *c = d->conf;
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
	if ((ret = tls_hierarchy_id(c->tls_ca, d->hierarchy_id, err, errlen)) != SS_EOK) {
		SSL_CTX_free(srv);
		SSL_CTX_free(cli);
		return ret;
	}
	/* Live connections keep their own reference to the old contexts. */
	SSL_CTX_free(d->tls_server);
	SSL_CTX_free(d->tls_client);
	d->tls_server = srv;
	d->tls_client = cli;
	d->cert_expires = tls_cert_expiry(c->tls_cert);
	time_t now = time(NULL);
	if (status_cert_expiring(d->cert_expires, now, c->cert_warning_days)) {
		int64_t left = ((int64_t)d->cert_expires - (int64_t)now) / 86400;
		if (d->cert_expires <= now)
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
	if (d->rowsig_ok)
		rowsig_clear(&d->rowsig);
	d->rowsig = rs;
	d->rowsig_ok = true;
	return SS_EOK;
}

static int setup_listener(daemon_t *d, char *err, size_t errlen)
{
	if (d->conf->listen_address == NULL)
		return SS_EOK;
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	if (evutil_parse_sockaddr_port(d->conf->listen_address, (struct sockaddr *)&ss, &sslen) != 0) {
		snprintf(err, errlen, "[listen] address '%s' is not HOST:PORT with a numeric host",
		         d->conf->listen_address);
		return SS_ECONFIG;
	}
	d->listener = evconnlistener_new_bind(d->base, accept_cb, d,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	                                      128, (struct sockaddr *)&ss, sslen);
	if (d->listener == NULL) {
		snprintf(err, errlen, "cannot listen on %s: %s", d->conf->listen_address, strerror(errno));
		return -errno;
	}
	evconnlistener_set_error_cb(d->listener, accept_error_cb);
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
	return apply_read_state(conn, false, &f->version, &f->digest, &f->entries, f->err, sizeof(f->err));
}

static void follow_done(int ret, void *arg)
{
	follow_job_t *f = arg;
	daemon_t *d = f->d;
	if (ret == SS_EOK && !d->active && f->version != d->version) {
		log_info("standby: the active writer committed version %" PRIu64, f->version);
		daemon_version_committed(d, f->version, &f->digest, f->entries, false);
	}
	free(f);
}

/* A standby serves children from the shared database: it must notice the
 * versions the active writer commits. */
static void follow_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_t *d = arg;
	if (d->active || d->db == NULL)
		return;
	follow_job_t *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return;
	f->d = d;
	if (db_submit(d->db, DB_QUICK, follow_work, follow_done, f) != SS_EOK)
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
		          "it can be taken again", d->conf->site_code);
		d->active = false;
		daemon_status_changed(d);
		return;
	}
	d->active = true;
	log_notice("this daemon is the active writer for site %s", d->conf->site_code);
	if (d->parent)
		parent_link_kick(d->parent);
	if (d->conf->parent_address && strcmp(d->conf->parent_mode, "connected") == 0 &&
	    d->parent == NULL && parent_link_start(d, &d->parent) != SS_EOK) {
		log_error("cannot start the parent link");
		d->exit_code = 2;
		event_base_loopbreak(d->base);
		return;
	}
	if (d->conf->schedule_cron && conf_is_top(d->conf) && d->schedule == NULL &&
	    topsync_schedule_arm(d, err, sizeof(err)) != SS_EOK) {
		log_error("[schedule] cron: %s", err);
		d->exit_code = 1;
		event_base_loopbreak(d->base);
		return;
	}
	daemon_status_changed(d);
}

/* SIGHUP: re-read the file; keep the old configuration if the new one is bad. */
static void reload(daemon_t *d)
{
	char err[512] = "";
	conf_t *nc = NULL;
	notify_systemd("RELOADING=1");
	if (conf_load(d->conf_path, &nc, err, sizeof(err)) != SS_EOK) {
		log_error("reload: %s; keeping the running configuration", err);
		notify_systemd("READY=1");
		return;
	}
	const conf_t *oc = d->conf;
	#define SAME(f) ((oc->f == NULL && nc->f == NULL) || (oc->f && nc->f && !strcmp(oc->f, nc->f)))
	if (!SAME(site_code) || !SAME(db_conninfo) || !SAME(listen_address) ||
	    !SAME(parent_address) || !SAME(control_socket) || !SAME(http_listen) || !SAME(state_dir)) {
		log_warning("reload: site code, database, listen, parent, control, http and state_dir "
		            "changes need a restart; they are ignored");
		free(nc->site_code); nc->site_code = strdup(oc->site_code);
	}
	#undef SAME
	conf_t *old = d->conf;
	d->conf = nc;
	if (setup_tls(d, err, sizeof(err)) != SS_EOK) {
		log_error("reload: %s; keeping the running configuration", err);
		d->conf = old;
		conf_free(nc);
		notify_systemd("READY=1");
		return;
	}
	/* Keys that cannot change at run time keep their old values. */
	char **keep[] = { &nc->db_conninfo, &nc->listen_address, &nc->parent_address,
	                  &nc->control_socket, &nc->http_listen, &nc->state_dir, &nc->parent_mode,
	                  &nc->parent_code };
	char **from[] = { &old->db_conninfo, &old->listen_address, &old->parent_address,
	                  &old->control_socket, &old->http_listen, &old->state_dir, &old->parent_mode,
	                  &old->parent_code };
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		free(*keep[i]);
		*keep[i] = *from[i];
		*from[i] = NULL;
	}
	nc->workers = old->workers;
	conf_free(old);
	/* Workers may be logging: only the threshold changes (the site code cannot). */
	log_set_level((ss_log_level_t)log_level_parse(nc->log_level));
	log_notice("configuration reloaded from %s", d->conf_path);
	notify_systemd("READY=1");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	daemon_t *d = arg;
	if (sig == SIGHUP) {
		reload(d);
		return;
	}
	if (++d->sigterm_count > 1) {
		log_warning("second stop signal: exiting at once");
		_exit(1);
	}
	log_notice("stopping (signal %d)", (int)sig);
	notify_systemd("STOPPING=1");
	event_base_loopbreak(d->base);
}

static void shutdown_daemon(daemon_t *d)
{
	if (d->listener)
		evconnlistener_free(d->listener);
	d->listener = NULL;
	ctl_free(d->ctl);
	d->ctl = NULL;
	http_free(d->http);
	d->http = NULL;
	child_link_free_all(d);
	parent_link_close(d->parent);
	/* Closing its session releases the lock for a standby. */
	writer_lock_free(d->wlock);
	d->wlock = NULL;
	if (d->follow_ev)
		event_free(d->follow_ev);
	d->follow_ev = NULL;
	/* Let closing connections flush and free themselves. */
	for (int i = 0; i < 40 && d->live_conns > 0; i++) {
		struct timeval tv = { 0, 50000 };
		event_base_loopexit(d->base, &tv);
		event_base_dispatch(d->base);
	}
	if (d->db) {
		db_pool_drain(d->db);
		db_pool_free(d->db);
		d->db = NULL;
	}
	parent_link_free(d->parent);
	d->parent = NULL;
	spool_free_all(d);
	status_table_free(d->subtree);
	topsync_free(d);
	alert_free(d);
	daemon_events_free(d);
	for (size_t i = 0; i < sizeof(d->sig_ev) / sizeof(d->sig_ev[0]); i++)
		if (d->sig_ev[i])
			event_free(d->sig_ev[i]);
	SSL_CTX_free(d->tls_server);
	SSL_CTX_free(d->tls_client);
	manifest_keys_clear(&d->keys);
	if (d->rowsig_ok)
		rowsig_clear(&d->rowsig);
	if (d->dns)
		evdns_base_free(d->dns, 0);
	free(d->approved);
	if (d->sync_log_fd >= 0)
		close(d->sync_log_fd);
	event_base_free(d->base);
	conf_free(d->conf);
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
	if (optind < argc) {
		fprintf(stderr, "sitesyncd: unexpected argument '%s'\nTry 'sitesyncd --help'.\n", argv[optind]);
		return 1;
	}

	daemon_t dd;
	memset(&dd, 0, sizeof(dd));
	daemon_t *d = &dd;
	d->sync_log_fd = -1;
	d->conf_path = conf_path;
	char err[512] = "";
	if (conf_load(conf_path, &d->conf, err, sizeof(err)) != SS_EOK) {
		fprintf(stderr, "sitesyncd: %s\n", err);
		return 1;
	}
	if (check_only) {
		int ret = setup_tls(d, err, sizeof(err));
		SSL_CTX_free(d->tls_server);
		SSL_CTX_free(d->tls_client);
		if (d->rowsig_ok)
			rowsig_clear(&d->rowsig);
		conf_free(d->conf);
		if (ret != SS_EOK) {
			fprintf(stderr, "sitesyncd: %s\n", err);
			return 1;
		}
		printf("configuration %s is valid\n", conf_path);
		return 0;
	}
	log_init(verbose ? SS_LOG_DEBUG : (ss_log_level_t)log_level_parse(d->conf->log_level),
	         d->conf->site_code);
	signal(SIGPIPE, SIG_IGN);
	int exit_code = 2;

	if (evthread_use_pthreads() != 0 || (d->base = event_base_new()) == NULL) {
		log_error("cannot create the event loop");
		conf_free(d->conf);
		return 2;
	}
	d->dns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (d->dns == NULL)
		d->dns = evdns_base_new(d->base, 0);
	d->subtree = status_table_new();
	if (d->subtree == NULL || daemon_events_init(d) != SS_EOK)
		goto out;
	if (d->conf->sync_log) {
		d->sync_log_fd = open(d->conf->sync_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (d->sync_log_fd < 0) {
			log_error("cannot open sync log %s: %s", d->conf->sync_log, strerror(errno));
			goto out;
		}
	}
	if (spool_dir_prepare(d, err, sizeof(err)) != SS_EOK) {
		log_error("%s", err);
		goto out;
	}
	if (manifest_keys_load(&d->keys, d->conf->trust_signing_key, d->conf->trust_public_key,
	                       d->conf->trust_next_key, err, sizeof(err)) != SS_EOK) {
		log_error("[trust]: %s", err);
		goto out;
	}
	if (d->keys.n_trusted == 0 && !conf_is_top(d->conf))
		log_warning("no [trust] public_key: catalog signatures are not verified at this site");
	if (load_state(d, err, sizeof(err)) != SS_EOK) {
		log_error("database: %s", err);
		goto out;
	}
	if (db_pool_new(d->base, d->conf->db_conninfo, d->conf->workers, &d->db) != SS_EOK) {
		log_error("cannot start database workers");
		goto out;
	}
	if (setup_tls(d, err, sizeof(err)) != SS_EOK || setup_listener(d, err, sizeof(err)) != SS_EOK) {
		log_error("%s", err);
		goto out;
	}
	if (ctl_start(d->base, d->conf->control_socket, &d->ctl, err, sizeof(err)) != SS_EOK) {
		log_error("control socket: %s", err);
		goto out;
	}
	if (ctl_cmds_register(d) != SS_EOK)
		goto out;
	if (d->conf->http_listen &&
	    http_start(d->base, d->conf->http_listen, daemon_http_status_cb, d, &d->http, err, sizeof(err)) != SS_EOK) {
		log_error("http: %s", err);
		goto out;
	}
	if (topsync_schedule_init(d, err, sizeof(err)) != SS_EOK) {
		log_error("[schedule] cron: %s", err);
		goto out;
	}
	/* The parent link and the schedule start once this daemon holds the lock. */
	if (writer_lock_start(d->base, d->conf->db_conninfo, writer_lock_cb_main, d, &d->wlock) != SS_EOK) {
		log_error("cannot start the writer lock");
		goto out;
	}
	d->follow_ev = event_new(d->base, -1, EV_PERSIST, follow_cb, d);
	struct timeval follow_tv = { 1, 0 };
	if (d->follow_ev == NULL || event_add(d->follow_ev, &follow_tv) != 0)
		goto out;
	if (alert_init(d) != SS_EOK) {
		log_error("cannot start alerts");
		goto out;
	}
	const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		d->sig_ev[i] = evsignal_new(d->base, sigs[i], signal_cb, d);
		if (d->sig_ev[i] == NULL || event_add(d->sig_ev[i], NULL) != 0)
			goto out;
	}
	log_notice("sitesyncd %s started: site %s, catalog version %" PRIu64 " (%" PRIu64 " entries)%s%s%s%s",
	           SS_SOFTWARE_VERSION, d->conf->site_code, d->version, d->entries,
	           d->conf->listen_address ? ", listening on " : "",
	           d->conf->listen_address ? d->conf->listen_address : "",
	           d->conf->parent_address ? ", parent " : (conf_is_top(d->conf) ? ", top site" : ", disconnected"),
	           d->conf->parent_address ? d->conf->parent_address : "");
	daemon_status_changed(d);
	notify_systemd("READY=1");
	event_base_dispatch(d->base);
	exit_code = d->exit_code;
out:
	shutdown_daemon(d);
	return exit_code;
}
