/* Buffers from a producing thread to a consuming one. */
#include "storage/handoff.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/errcode.h"

#define HANDOFF_MAX 8

struct handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	handoff_buf_t bufs[HANDOFF_MAX];
	handoff_buf_t *queue[HANDOFF_MAX];   /* filled, in order */
	size_t head, nqueue;
	handoff_buf_t *spare[HANDOFF_MAX];
	size_t nspare;
	int n;
	bool eof, abort;
	int err;                             /* the consumer's first error */
	char errmsg[256];
	handoff_fn fn;
	void *arg;
	pthread_t thread;
};

static void *handoff_main(void *arg)
{
	handoff_t *h = arg;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->nqueue == 0 && !h->eof)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->nqueue == 0)
			break;
		handoff_buf_t *b = h->queue[h->head];
		h->head = (h->head + 1) % HANDOFF_MAX;
		h->nqueue--;
		bool skip = h->err != SS_EOK || h->abort;
		pthread_mutex_unlock(&h->mu);
		int ret = skip ? SS_EOK : h->fn(h->arg, b, h->errmsg, sizeof(h->errmsg));
		pthread_mutex_lock(&h->mu);
		if (ret != SS_EOK && h->err == SS_EOK)
			h->err = ret;
		b->len = 0;
		h->spare[h->nspare++] = b;
		pthread_cond_broadcast(&h->cv);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void handoff_free(handoff_t *h)
{
	for (int i = 0; i < h->n; i++)
		free(h->bufs[i].buf);
	free(h);
}

int handoff_start(handoff_t **out, int n, size_t size, handoff_fn fn, void *arg,
                  handoff_buf_t **first)
{
	*out = NULL;
	*first = NULL;
	if (n < 2 || n > HANDOFF_MAX)
		return SS_EINVAL;
	handoff_t *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return SS_ENOMEM;
	h->n = n;
	h->fn = fn;
	h->arg = arg;
	for (int i = 0; i < n; i++) {
		h->bufs[i].buf = malloc(size);
		if (h->bufs[i].buf == NULL)
			goto fail;
		h->bufs[i].cap = size;
		h->spare[h->nspare++] = &h->bufs[i];
	}
	if (pthread_mutex_init(&h->mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&h->cv, NULL) != 0) {
		pthread_mutex_destroy(&h->mu);
		goto fail;
	}
	if (pthread_create(&h->thread, NULL, handoff_main, h) != 0) {
		pthread_cond_destroy(&h->cv);
		pthread_mutex_destroy(&h->mu);
		goto fail;
	}
	*first = h->spare[--h->nspare];
	*out = h;
	return SS_EOK;
fail:
	handoff_free(h);
	return SS_ENOMEM;
}

int handoff_push(handoff_t *h, handoff_buf_t **cur, char *err, size_t errlen)
{
	pthread_mutex_lock(&h->mu);
	h->queue[(h->head + h->nqueue) % HANDOFF_MAX] = *cur;
	h->nqueue++;
	pthread_cond_broadcast(&h->cv);
	while (h->nspare == 0)
		pthread_cond_wait(&h->cv, &h->mu);
	*cur = h->spare[--h->nspare];
	int ret = h->err;
	if (ret != SS_EOK && err != NULL)
		snprintf(err, errlen, "%s", h->errmsg);
	pthread_mutex_unlock(&h->mu);
	return ret;
}

int handoff_finish(handoff_t *h, bool abort, char *err, size_t errlen)
{
	if (h == NULL)
		return SS_EOK;
	pthread_mutex_lock(&h->mu);
	h->eof = true;
	h->abort = abort;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	int ret = h->err;
	if (ret != SS_EOK && err != NULL)
		snprintf(err, errlen, "%s", h->errmsg);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	handoff_free(h);
	return ret;
}
