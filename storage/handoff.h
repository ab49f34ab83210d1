/*
 * Buffers handed from a producing thread to a consuming thread, in order.
 * The producer fills a buffer and pushes it, getting an empty one back
 * (waiting while all are queued); a thread of the handoff's own runs the
 * consumer on each, then returns it. A consumer error is sticky: later
 * buffers are dropped and every push reports it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint8_t *buf;
	size_t len, cap;
} handoff_buf_t;

/* Consumes one buffer; returns SS_EOK or an error with err set. */
typedef int (*handoff_fn)(void *arg, const handoff_buf_t *b, char *err, size_t errlen);

typedef struct handoff handoff_t;

/*!
 * \brief Start the consuming thread with \a n buffers of \a size bytes.
 * \param first  Output: the producer's first empty buffer.
 */
int handoff_start(handoff_t **out, int n, size_t size, handoff_fn fn, void *arg,
                  handoff_buf_t **first)
	__attribute__((warn_unused_result));

/*!
 * \brief Queue *cur for the consumer; *cur becomes an empty buffer.
 * \return SS_EOK, or the consumer's first error (message in err).
 */
int handoff_push(handoff_t *h, handoff_buf_t **cur, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Let the consumer finish what is queued (or drop it, \a abort),
 *        stop its thread and free everything.
 * \return SS_EOK, or the consumer's first error (message in err).
 */
int handoff_finish(handoff_t *h, bool abort, char *err, size_t errlen);
