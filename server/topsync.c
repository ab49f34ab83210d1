/* Driving upstream syncs at the top site: manual, scheduled, retried. */
#include "server/topsync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replication/child_link.h"
#include "replication/synchist.h"
#include "server/daemon.h"
#include "common/errcode.h"
#include "common/log.h"
#include "server/schedule.h"
#include "storage/db.h"
#include "upstream/remote.h"
#include "upstream/sync.h"

bool topsync_running(const daemon_t *d)
{
	return d->upstream != NULL;
}

/* WSUS upstreams: what the protocol exchange did, and what it skipped or held back. */
static void topsync_wsus_log(daemon_t *d, const upstream_job_t *job)
{
	const wsus_result_t *r = &job->wsus_res;
	site_synclog(&d->site, "WSUS: %zu categories (%" PRIu64 " documents asked for), %" PRIu64
	             " update documents asked for (%s list), "
	             "%" PRIu64 " held entries kept, %" PRIu64 " skipped, %" PRIu64 " bundles held back, "
	             "%" PRIu64 " updates held back for a prerequisite",
	             r->n_cats, r->cats_requested, r->requested, r->delta ? "delta" : "full", (uint64_t)r->n_keep,
	             r->skipped, r->held_back, r->held_prereq);
	for (const char *p = r->notes; p != NULL && *p;) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		site_synclog(&d->site, "WSUS: %.*s", n, p);
		p = nl ? nl + 1 : p + n;
	}
}

static void topsync_done(int ret, void *arg)
{
	upstream_job_t *job = arg;
	daemon_t *d = job->owner;
	sync_status_t *s = &d->site.self;
	time_t now = time(NULL);
	uint64_t from = d->site.version;
	s->last_end = now;
	if (job->wsus)
		topsync_wsus_log(d, job);
	if (ret == SS_EOK) {
		sync_status_succeeded(&d->site, s->added, s->changed, s->removed, s->expired, job->entries_seen);
		/* One line per phase, so an operator sees where time and entries went. */
		if (job->same_bytes) {
			site_synclog(&d->site, "Download: catalog not modified (same size and SHA-256 as at the "
			             "last sync, not parsed), version stays %" PRIu64, d->site.version);
		} else if (job->not_modified) {
			site_synclog(&d->site, "Download: catalog not modified (304), version stays %" PRIu64,
			             d->site.version);
		} else {
			char shown[512];
			log_url_redact(job->url, shown, sizeof(shown));
			if (upstream_file_path(job->url) != NULL)
				site_synclog(&d->site, "Download: reading the catalog from %s", shown);
			else
				site_synclog(&d->site, "Download: %" PRIu64 " bytes from %s", job->fetched_bytes,
				             shown);
			site_synclog(&d->site, "Parse: %" PRIu64 " entries in the catalog", job->entries_seen);
			if (job->n_sources > 0)
				site_synclog(&d->site, "Source upstream (%s): %" PRIu64 " entries", shown,
				             job->primary_entries);
			for (size_t i = 0; i < job->n_sources; i++) {
				char src_shown[512];
				log_url_redact(job->sources[i].url, src_shown, sizeof(src_shown));
				site_synclog(&d->site, "Source %s (%s): %" PRIu64 " entries", job->sources[i].name,
				             src_shown, job->sources[i].entries);
			}
			site_synclog(&d->site, "Filter: %" PRIu64 " of %" PRIu64 " entries selected",
			             job->selected, job->entries_seen);
			site_synclog(&d->site, "Diff: %" PRIu64 " added, %" PRIu64 " changed, %" PRIu64
			             " removed, %" PRIu64 " expired, %" PRIu64 " purged",
			             job->added, job->changed, job->removed, job->expired, job->purged);
			if (job->by_source[0])
				site_synclog(&d->site, "By source: %s", job->by_source);
			if (job->first_direct)
				site_synclog(&d->site, "Write: first sync into an empty catalog, entries written "
				             "as they were parsed");
			if (job->first_refused[0])
				log_warning("first sync: the entries written as parsed were rolled back and "
				            "the catalog staged instead (%s)", job->first_refused);
		}
		if (job->unchanged) {
			s->added = s->changed = s->removed = s->expired = 0;
			site_message(&d->site, SS_MSG_UNCHANGED, "info", "Catalog unchanged, version stays %" PRIu64,
			             d->site.version);
			/* An unchanged sync is still a sync that finished. */
			site_message(&d->site, SS_MSG_SYNC_DONE, "info", "Synced from upstream: catalog unchanged, "
			             "version stays %" PRIu64 ", 0 added, 0 changed, 0 removed, 0 expired",
			             d->site.version);
			if (job->full)
				child_link_notify_all(&d->site, true);
		} else {
			s->added = job->added;
			s->changed = job->changed;
			s->removed = job->removed;
			s->expired = job->expired;
			site_synclog(&d->site, "Updated %" PRIu64 " items (%" PRIu64 " added, %" PRIu64 " changed, %"
			             PRIu64 " removed, %" PRIu64 " expired), new catalog version is %" PRIu64,
			             job->added + job->changed + job->removed, job->added, job->changed,
			             job->removed, job->expired, job->version);
			site_message(&d->site, SS_MSG_SYNC_DONE, "info", "Synced from upstream: version %" PRIu64
			             ", %" PRIu64 " added, %" PRIu64 " changed, %" PRIu64 " removed, %"
			             PRIu64 " expired%s%s%s", job->version, job->added, job->changed,
			             job->removed, job->expired, job->by_source[0] ? " (" : "",
			             job->by_source, job->by_source[0] ? ")" : "");
			site_version_committed(&d->site, job->version, &job->digest, job->entries, job->full);
		}
		if (job->unchanged && !job->not_modified)
			site_synclog(&d->site, "Catalog unchanged, version stays %" PRIu64, d->site.version);
		site_synclog_time(&d->site, "Sync finished. ");
		synchist_record_sources(&d->site, "upstream", job->unchanged, from, d->site.version,
		                        job->by_source);
	} else {
		sync_status_failed(&d->site, ret, "%s", job->err);
		long delay = 60L * d->site.conf->retry_minutes;
		s->next_retry = now + delay;
		struct timeval tv = { delay, 0 };
		evtimer_add(d->retry_ev, &tv);
		site_synclog(&d->site, "Sync failed: %s. Will retry in %ld minutes", job->err, delay / 60);
		if (job->removal_refused)
			site_message(&d->site, SS_MSG_REMOVAL_REFUSED, "error", "Sync stopped before removing "
			             "entries: %s", job->err);
		site_message(&d->site, SS_MSG_SYNC_FAILED, "error", "Sync from upstream failed: %s (error %d)",
		             job->err, s->last_error_code);
		synchist_record(&d->site, "upstream", false, from, from);
	}
	upstream_job_free(job);
	d->upstream = NULL;
	site_status_changed(&d->site);
	if (d->sync_again) {
		bool full = d->sync_again_full, allow = d->sync_again_allow;
		d->sync_again = d->sync_again_full = d->sync_again_allow = false;
		char trigger[sizeof(d->sync_again_trigger)];
		snprintf(trigger, sizeof(trigger), "%s", d->sync_again_trigger);
		d->sync_again_trigger[0] = '\0';
		topsync_start_confirmed(d, full, allow, trigger[0] ? trigger : "manual");
	}
}

int topsync_start(daemon_t *d, bool full, const char *trigger)
{
	return topsync_start_confirmed(d, full, false, trigger);
}

int topsync_start_confirmed(daemon_t *d, bool full, bool allow_removal, const char *trigger)
{
	if (!conf_is_top(d->site.conf))
		return SS_ENOTTOP;
	if (d->site.conf->upstream_url == NULL)
		return SS_ECONFIG;
	if (!d->site.active)
		return SS_ELOCKED;
	if (d->upstream) {
		d->sync_again = true;
		d->sync_again_full |= full;
		d->sync_again_allow |= allow_removal;
		if (strcmp(trigger, "manual") == 0 || d->sync_again_trigger[0] == '\0')
			snprintf(d->sync_again_trigger, sizeof(d->sync_again_trigger), "%s", trigger);
		return SS_EOK;
	}
	upstream_job_t *job = calloc(1, sizeof(*job));
	if (job == NULL)
		return SS_ENOMEM;
	job->owner = d;
	const conf_t *c = d->site.conf;
	/* Own copies: a SIGHUP reload may free the configuration meanwhile. */
	job->url = strdup(c->upstream_url);
	job->ca_file = c->upstream_ca ? strdup(c->upstream_ca) : NULL;
	job->proxy = c->upstream_proxy ? strdup(c->upstream_proxy) : NULL;
	job->connect_timeout = c->upstream_connect_timeout;
	job->timeout = c->upstream_timeout;
	job->max_bytes = (uint64_t)c->upstream_max_mib * 1024 * 1024;
	job->state_dir = strdup(c->state_dir);
	/* sitesync:// upstreams: the certificate to present there, [tls]'s by default. */
	const char *cert = c->upstream_cert ? c->upstream_cert : c->tls_cert;
	const char *key = c->upstream_key ? c->upstream_key : c->tls_key;
	job->cert_file = cert ? strdup(cert) : NULL;
	job->key_file = key ? strdup(key) : NULL;
	job->heartbeat = c->heartbeat_seconds;
	job->max_frame = conf_stream_frame_limit(c);
	job->max_entry_bytes = (size_t)c->max_entry_bytes;
	if (job->ca_file == NULL && remote_is_url(c->upstream_url) && c->tls_ca)
		job->ca_file = strdup(c->tls_ca);
	if (job->url == NULL || job->state_dir == NULL) {
		upstream_job_free(job);
		return SS_ENOMEM;
	}
	job->full = full;
	job->wsus = strcmp(c->upstream_kind, "wsus") == 0;
	job->max_document = (size_t)c->upstream_max_document;
	for (size_t i = 0; i < c->n_sources && i < UPSTREAM_MAX_SOURCES; i++) {
		upstream_source_t *src = &job->sources[job->n_sources++];
		const conf_source_t *cs = &c->sources[i];
		src->name = strdup(cs->name);
		src->url = strdup(cs->url);
		src->ca_file = cs->ca ? strdup(cs->ca) : NULL;
		src->proxy = cs->proxy ? strdup(cs->proxy) : NULL;
		src->products = cs->products ? strdup(cs->products) : NULL;
		src->classifications = cs->classifications ? strdup(cs->classifications) : NULL;
		src->languages = cs->languages ? strdup(cs->languages) : NULL;
		if (src->name == NULL || src->url == NULL || (cs->ca && !src->ca_file) ||
		    (cs->proxy && !src->proxy) || (cs->products && !src->products) ||
		    (cs->classifications && !src->classifications) ||
		    (cs->languages && !src->languages)) {
			upstream_job_free(job);
			return SS_ENOMEM;
		}
	}
	/* Diagnostic knob (tests compare both ways of writing a first sync). */
	const char *staged = getenv("SITESYNC_INGEST_STAGED");
	job->staged_only = staged != NULL && strcmp(staged, "1") == 0;
	job->keep_versions = c->keep_versions;
	job->max_removal_percent = c->max_removal_percent;
	job->allow_removal = allow_removal;
	d->upstream = job;
	sync_status_t *s = &d->site.self;
	s->state = SITESYNC__SYNC_STATE__SYNC_SYNCING;
	s->last_start = time(NULL);
	s->progress_done = s->progress_total = 0;
	snprintf(s->trigger, sizeof(s->trigger), "%s", trigger);
	/* Shown in history, /status and the dashboard: credentials redacted. */
	snprintf(s->source, sizeof(s->source), "%s", c->upstream_url_shown ? c->upstream_url_shown : "");
	evtimer_del(d->retry_ev);
	site_synclog(&d->site, "Starting sync%s", full ? " (full)" : "");
	site_message(&d->site, SS_MSG_SYNC_STARTED, "info", "Sync from upstream %s started%s",
	             c->upstream_url_shown, full ? " (full)" : "");
	site_message(&d->site, SS_MSG_SYNC_FETCHING, "info", "Fetching the upstream catalog");
	if (db_submit(d->site.db, DB_BULK, upstream_sync_work, topsync_done, job) != SS_EOK) {
		d->upstream = NULL;
		upstream_job_free(job);
		return SS_ENOMEM;
	}
	site_status_changed(&d->site);
	return SS_EOK;
}

static void topsync_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_t *d = arg;
	log_notice("retrying the failed upstream sync");
	topsync_start(d, false, "retry");
}

static void topsync_arm(daemon_t *d);

static void topsync_schedule_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_t *d = arg;
	log_notice("scheduled upstream sync (%s)", d->site.conf->schedule_cron);
	topsync_start(d, false, "scheduled");
	topsync_arm(d);
}

static void topsync_arm(daemon_t *d)
{
	const schedule_t *sc = d->schedule;
	time_t now = time(NULL);
	time_t next = schedule_next(sc, now, d->site.conf->schedule_utc);
	if (next == (time_t)-1) {
		log_warning("schedule '%s' never fires", d->site.conf->schedule_cron);
		return;
	}
	d->next_run = next;
	struct timeval tv = { next - now, 0 };
	evtimer_add(d->schedule_ev, &tv);
}

int topsync_schedule_init(daemon_t *d, char *err, size_t errlen)
{
	d->retry_ev = evtimer_new(d->site.base, topsync_retry_cb, d);
	if (d->retry_ev == NULL)
		return SS_ENOMEM;
	/* Refuse a bad expression at startup, before any lock is held. */
	schedule_t check;
	if (d->site.conf->schedule_cron && conf_is_top(d->site.conf))
		return schedule_parse(d->site.conf->schedule_cron, &check, err, errlen);
	return SS_EOK;
}

/* Parse [schedule] cron into d->schedule and set the timer for its next run. */
static int schedule_start(daemon_t *d, char *err, size_t errlen)
{
	schedule_t *sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		return SS_ENOMEM;
	int ret = schedule_parse(d->site.conf->schedule_cron, sc, err, errlen);
	if (ret != SS_EOK) {
		free(sc);
		return ret;
	}
	d->schedule = sc;
	d->schedule_ev = evtimer_new(d->site.base, topsync_schedule_cb, d);
	if (d->schedule_ev == NULL)
		return SS_ENOMEM;
	topsync_arm(d);
	return SS_EOK;
}

static void schedule_stop(daemon_t *d)
{
	if (d->schedule_ev)
		event_free(d->schedule_ev);
	d->schedule_ev = NULL;
	free(d->schedule);
	d->schedule = NULL;
	d->next_run = 0;
}

int topsync_schedule_rearm(daemon_t *d, char *err, size_t errlen)
{
	schedule_stop(d);
	if (d->site.conf->schedule_cron == NULL || !conf_is_top(d->site.conf) || !d->site.active)
		return SS_EOK;
	int ret = schedule_start(d, err, errlen);
	if (ret != SS_EOK)
		schedule_stop(d);
	return ret;
}

int topsync_schedule_arm(daemon_t *d, char *err, size_t errlen)
{
	int ret = schedule_start(d, err, errlen);
	if (ret != SS_EOK)
		return ret;
	const schedule_t *sc = d->schedule;
	/* A run that fell due while the daemon was down runs now. */
	time_t missed = d->last_upstream_sync > 0 ?
		schedule_missed(sc, d->last_upstream_sync, time(NULL), d->site.conf->schedule_utc) : 0;
	if (missed > 0) {
		char when[32] = "?";
		struct tm tm;
		if (gmtime_r(&missed, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		log_notice("the scheduled sync of %s was missed while the daemon was down: running it now",
		           when);
		topsync_start(d, false, "scheduled");
	}
	return SS_EOK;
}

void topsync_free(daemon_t *d)
{
	if (d->retry_ev)
		event_free(d->retry_ev);
	schedule_stop(d);
	upstream_job_free(d->upstream);
	d->upstream = NULL;
}
