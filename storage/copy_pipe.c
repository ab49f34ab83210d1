/* COPY data sent from a thread of its own (a handoff whose consumer sends). */
#include "storage/copy_pipe.h"

#include <stdlib.h>

#include "common/errcode.h"
#include "storage/db.h"
#include "storage/handoff.h"

#define PIPE_BUFS 3
#define PIPE_BUF_BYTES ((1u << 20) + COPY_PIECE_BYTES)

struct copy_pipe {
	handoff_t *h;
	handoff_buf_t *cur;        /* the empty buffer cb gets next */
};

static int copy_pipe_send(void *arg, const handoff_buf_t *b, char *err, size_t errlen)
{
	PGconn *conn = arg;
	for (size_t off = 0; off < b->len; off += COPY_PIECE_BYTES) {
		size_t n = b->len - off < COPY_PIECE_BYTES ? b->len - off : COPY_PIECE_BYTES;
		if (PQputCopyData(conn, (const char *)b->buf + off, (int)n) != 1) {
			db_errcopy(PQerrorMessage(conn), err, errlen);
			return SS_EDB;
		}
	}
	return SS_EOK;
}

int copy_pipe_start(copy_pipe_t **out, PGconn *conn)
{
	*out = NULL;
	copy_pipe_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return SS_ENOMEM;
	int ret = handoff_start(&p->h, PIPE_BUFS, PIPE_BUF_BYTES, copy_pipe_send, conn, &p->cur);
	if (ret != SS_EOK) {
		free(p);
		return ret;
	}
	*out = p;
	return SS_EOK;
}

int copy_pipe_put(copy_pipe_t *p, copybuf_t *cb, size_t threshold, char *err, size_t errlen)
{
	if (cb->len == 0 || cb->len < threshold)
		return SS_EOK;
	/* Swap: the filled buffer goes out, an empty one comes back. */
	handoff_buf_t *b = p->cur;
	uint8_t *empty = b->buf;
	size_t empty_cap = b->cap;
	b->buf = (uint8_t *)cb->buf;
	b->len = cb->len;
	b->cap = cb->cap;
	cb->buf = (char *)empty;
	cb->cap = empty_cap;
	cb->len = 0;
	return handoff_push(p->h, &p->cur, err, errlen);
}

int copy_pipe_finish(copy_pipe_t *p, char *err, size_t errlen)
{
	if (p == NULL)
		return SS_EOK;
	int ret = handoff_finish(p->h, false, err, errlen);
	free(p);
	return ret;
}
