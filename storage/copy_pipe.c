/* COPY data sent from a thread of its own. */
#include "storage/copy_pipe.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errcode.h"
#include "storage/db.h"

/* Below the socket buffer, so PostgreSQL reads while the rest goes out. */
#define PIPE_PIECE (64u << 10)
#define PIPE_BUFS 3

typedef struct {
	char *buf;
	size_t len, cap;
} pipe_buf_t;

struct copy_pipe {
	PGconn *conn;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pipe_buf_t bufs[PIPE_BUFS];
	pipe_buf_t *queue[PIPE_BUFS];   /* filled, in order */
	size_t head, nqueue;
	pipe_buf_t *spare[PIPE_BUFS];
	size_t nspare;
	bool eof;
	int err;                        /* first send error, sticky */
	char errmsg[256];
	pthread_t thread;
};

static void *copy_pipe_main(void *arg)
{
	copy_pipe_t *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->nqueue == 0 && !p->eof)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->nqueue == 0)
			break;
		pipe_buf_t *b = p->queue[p->head];
		p->head = (p->head + 1) % PIPE_BUFS;
		p->nqueue--;
		bool skip = p->err != SS_EOK;
		pthread_mutex_unlock(&p->mu);
		int ret = SS_EOK;
		for (size_t off = 0; !skip && off < b->len; off += PIPE_PIECE) {
			size_t n = b->len - off < PIPE_PIECE ? b->len - off : PIPE_PIECE;
			if (PQputCopyData(p->conn, b->buf + off, (int)n) != 1) {
				db_errcopy(PQerrorMessage(p->conn), p->errmsg, sizeof(p->errmsg));
				ret = SS_EDB;
				break;
			}
		}
		pthread_mutex_lock(&p->mu);
		if (ret != SS_EOK && p->err == SS_EOK)
			p->err = ret;
		b->len = 0;
		p->spare[p->nspare++] = b;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int copy_pipe_start(copy_pipe_t **out, PGconn *conn)
{
	*out = NULL;
	copy_pipe_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return SS_ENOMEM;
	p->conn = conn;
	for (int i = 0; i < PIPE_BUFS; i++)
		p->spare[p->nspare++] = &p->bufs[i];
	if (pthread_mutex_init(&p->mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&p->cv, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		goto fail;
	}
	if (pthread_create(&p->thread, NULL, copy_pipe_main, p) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		goto fail;
	}
	*out = p;
	return SS_EOK;
fail:
	free(p);
	return SS_ENOMEM;
}

int copy_pipe_put(copy_pipe_t *p, copybuf_t *cb, size_t threshold, char *err, size_t errlen)
{
	if (cb->len == 0 || cb->len < threshold)
		return SS_EOK;
	pthread_mutex_lock(&p->mu);
	while (p->nspare == 0)
		pthread_cond_wait(&p->cv, &p->mu);
	pipe_buf_t *b = p->spare[--p->nspare];
	/* Swap: the filled buffer goes out, an empty one comes back. */
	pipe_buf_t full = { cb->buf, cb->len, cb->cap };
	cb->buf = b->buf;
	cb->len = 0;
	cb->cap = b->cap;
	*b = full;
	p->queue[(p->head + p->nqueue) % PIPE_BUFS] = b;
	p->nqueue++;
	pthread_cond_broadcast(&p->cv);
	int ret = p->err;
	if (ret != SS_EOK && err != NULL)
		snprintf(err, errlen, "%s", p->errmsg);
	pthread_mutex_unlock(&p->mu);
	return ret;
}

int copy_pipe_finish(copy_pipe_t *p, char *err, size_t errlen)
{
	if (p == NULL)
		return SS_EOK;
	pthread_mutex_lock(&p->mu);
	p->eof = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	int ret = p->err;
	if (ret != SS_EOK && err != NULL)
		snprintf(err, errlen, "%s", p->errmsg);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	for (int i = 0; i < PIPE_BUFS; i++)
		free(p->bufs[i].buf);
	free(p);
	return ret;
}
