/* Shared pull-stream files, produced by a database worker. */
#include "replication/spool.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replication/site.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/db.h"

int spool_dir_prepare(site_t *d, char *err, size_t errlen)
{
	char dir[512];
	if (mkdir(d->conf->state_dir, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", d->conf->state_dir, strerror(errno));
		return -errno;
	}
	snprintf(dir, sizeof(dir), "%s/spool", d->conf->state_dir);
	if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	DIR *dh = opendir(dir);
	if (dh == NULL)
		return SS_EOK;
	struct dirent *de;
	while ((de = readdir(dh)) != NULL) {
		if (strstr(de->d_name, ".stream") == NULL)
			continue;
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(dh);
	return SS_EOK;
}

static void spool_destroy(site_t *d, spool_t *s)
{
	for (spool_t **pp = &d->spools; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	unlink(s->path);
	atomic_fetch_sub(&d->spool_bytes, s->prod.bytes);
	manifest_keys_clear(&s->keys);
	free(s);
}

static int spool_produce_work(PGconn *conn, void *arg)
{
	spool_t *s = arg;
	FILE *f = fopen(s->path, "wb");
	if (f == NULL) {
		snprintf(s->prod.err, sizeof(s->prod.err), "cannot write %s: %s", s->path, strerror(errno));
		return -errno;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	int ret = stream_produce(conn, &s->prod, f);
	if (fclose(f) != 0 && ret == SS_EOK)
		ret = SS_EIO;
	return ret;
}

static void spool_produce_done(int ret, void *arg)
{
	spool_t *s = arg;
	site_t *d = s->d;
	s->busy = false;
	s->ret = ret;
	s->state = ret == SS_EOK ? SPOOL_READY : SPOOL_FAILED;
	if (ret == SS_EOK)
		log_debug("produced stream %" PRIu64 "->%" PRIu64 "%s: %" PRIu64 " upserts, %" PRIu64
		          " deletes, %" PRIu64 " bytes", s->prod.from, s->prod.to,
		          s->prod.full ? " (snapshot)" : "", s->prod.upserts, s->prod.deletes, s->prod.bytes);
	else
		log_error("producing a pull stream from version %" PRIu64 " failed: %s", s->have, s->prod.err);
	s->refs++;      /* hold it while waiters are told */
	if (s->ready)
		s->ready(s, s->ready_arg);
	spool_put(d, s);
}

int spool_producing_unwanted(site_t *d)
{
	int n = 0;
	for (spool_t *s = d->spools; s; s = s->next)
		if (s->busy && s->refs <= 0)
			n++;
	return n;
}

uint64_t spool_readable(spool_t *s)
{
	if (s->state == SPOOL_READY)
		return s->prod.bytes;
	return s->state == SPOOL_PRODUCING ? atomic_load(&s->published) : 0;
}

/* Over the disk budget: delete finished streams no child is reading
 * (the current version's too; they are made again when asked). */
static void spool_trim(site_t *d)
{
	uint64_t limit = (uint64_t)d->conf->spool_max_mb << 20;
	spool_t *s = d->spools;
	while (s && atomic_load(&d->spool_bytes) >= limit) {
		spool_t *next = s->next;
		if (s->refs <= 0 && !s->busy)
			spool_destroy(d, s);
		s = next;
	}
}

spool_t *spool_get(site_t *d, uint64_t have, bool want_full,
                   spool_ready_cb ready, void *arg)
{
	/* A snapshot does not depend on `have`: one file for every ask, so
	 * claimed versions cannot multiply the full scans. From nothing it
	 * is a snapshot either way. */
	if (have == 0 || want_full) {
		have = 0;
		want_full = true;
	}
	for (spool_t *s = d->spools; s; s = s->next) {
		if (s->state != SPOOL_FAILED && s->at_version == d->version &&
		    s->have == have && s->want_full == want_full) {
			s->refs++;
			return s;
		}
	}
	spool_trim(d);
	spool_t *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	static const char *const kinds[] = { "delta", "full" };
	s->d = d;
	s->have = have;
	s->want_full = want_full;
	s->at_version = d->version;
	s->state = SPOOL_PRODUCING;
	s->ready = ready;
	s->ready_arg = arg;
	s->refs = 1;
	s->busy = true;
	s->prod.have = have;
	s->prod.want_full = want_full;
	s->prod.batch_entries = d->conf->batch_entries;
	/* Keep batches well inside the frame limit, and small enough that a
	 * child session's one-frame buffer stays modest. */
	s->prod.batch_bytes = (size_t)d->conf->max_frame / 4;
	if (s->prod.batch_bytes > (1u << 20))
		s->prod.batch_bytes = 1u << 20;
	manifest_keys_copy(&s->keys, &d->keys);
	s->prod.keys = &s->keys;
	snprintf(s->site, sizeof(s->site), "%s", d->conf->site_code);
	s->prod.site = s->site;
	s->prod.disk_used = &d->spool_bytes;
	s->prod.disk_limit = (uint64_t)d->conf->spool_max_mb << 20;
	atomic_init(&s->published, 0);
	s->prod.published = &s->published;
	/* Test hook for the compromised-relay test: never set in production. */
	const char *tamper = getenv("SITESYNC_TEST_TAMPER");
	s->prod.tamper = STREAM_TAMPER_NONE;
	if (tamper && !conf_is_top(d->conf))
		s->prod.tamper = strcmp(tamper, "batch") == 0 ? STREAM_TAMPER_BATCH :
		                 strcmp(tamper, "set") == 0 ? STREAM_TAMPER_SET : STREAM_TAMPER_NONE;
	snprintf(s->path, sizeof(s->path), "%s/spool/%s-%" PRIu64 "-%" PRIu64 ".stream",
	         d->conf->state_dir, kinds[want_full], have, d->version);
	s->next = d->spools;
	d->spools = s;
	if (db_submit(d->db, DB_BULK, spool_produce_work, spool_produce_done, s) != SS_EOK) {
		s->busy = false;
		s->state = SPOOL_FAILED;
		snprintf(s->prod.err, sizeof(s->prod.err), "out of memory");
	}
	return s;
}

void spool_put(site_t *d, spool_t *s)
{
	if (s == NULL)
		return;
	s->refs--;
	if (s->refs <= 0 && !s->busy &&
	    (s->state == SPOOL_FAILED || s->at_version != d->version))
		spool_destroy(d, s);
}

void spool_gc(site_t *d)
{
	spool_t *s = d->spools;
	while (s) {
		spool_t *next = s->next;
		if (s->refs <= 0 && !s->busy && s->at_version != d->version)
			spool_destroy(d, s);
		s = next;
	}
}

void spool_free_all(site_t *d)
{
	while (d->spools)
		spool_destroy(d, d->spools);
}
