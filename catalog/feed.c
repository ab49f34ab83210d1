/* A stream file read while it is written (see feed.h). */
#include "catalog/feed.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/errcode.h"

struct stream_feed {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* CLOCK_MONOTONIC */
	uint64_t published;
	bool ended;
	int aborted;            /* an SS_E* code once aborted */
};

int stream_feed_new(stream_feed_t **out, uint64_t published)
{
	stream_feed_t *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return SS_ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, &ca);
	pthread_condattr_destroy(&ca);
	f->published = published;
	*out = f;
	return SS_EOK;
}

void stream_feed_publish(stream_feed_t *f, uint64_t published)
{
	pthread_mutex_lock(&f->mu);
	if (published > f->published)
		f->published = published;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void stream_feed_end(stream_feed_t *f)
{
	pthread_mutex_lock(&f->mu);
	f->ended = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

void stream_feed_abort(stream_feed_t *f, int code)
{
	pthread_mutex_lock(&f->mu);
	if (f->aborted == 0)
		f->aborted = code ? code : SS_EIO;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

int stream_feed_aborted(stream_feed_t *f)
{
	pthread_mutex_lock(&f->mu);
	int a = f->aborted;
	pthread_mutex_unlock(&f->mu);
	return a;
}

int stream_feed_wait(stream_feed_t *f, uint64_t offset, int wait_seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += wait_seconds;
	int ret = 0;
	pthread_mutex_lock(&f->mu);
	while (f->aborted == 0 && f->published <= offset && !f->ended) {
		if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT) {
			ret = SS_ETIMEDOUT;
			break;
		}
	}
	if (f->aborted)
		ret = f->aborted;
	else if (ret == 0 && f->published <= offset)
		ret = 1;
	pthread_mutex_unlock(&f->mu);
	return ret;
}

void stream_feed_free(stream_feed_t *f)
{
	if (f == NULL)
		return;
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
