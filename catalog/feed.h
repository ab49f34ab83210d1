/*
 * A stream file still being written: the pull's receiver (the event loop)
 * appends whole frames and publishes how far they reach; the apply (a
 * database worker) reads behind it, so a pull is applied while it arrives
 * (issue 17) instead of after it. The apply still commits only after
 * PullDone and every check, so a site is at H or V, never between.
 */
#pragma once

#include <stdint.h>

typedef struct stream_feed stream_feed_t;

/*! \brief A feed whose file already holds \p published bytes of whole frames. */
int stream_feed_new(stream_feed_t **out, uint64_t published)
	__attribute__((warn_unused_result));

/*! \brief Whole frames are stored (and flushed) up to byte \p published. */
void stream_feed_publish(stream_feed_t *f, uint64_t published);
/*! \brief No frame follows what is published. */
void stream_feed_end(stream_feed_t *f);
/*! \brief The stream will not be completed: the reader gets \p code. */
void stream_feed_abort(stream_feed_t *f, int code);
/*! \brief The code given to stream_feed_abort(), or 0. */
int stream_feed_aborted(stream_feed_t *f);

/*!
 * \brief Reader side: wait until a whole frame starts at \p offset, the
 * stream ended there, or it was aborted.
 * \param wait_seconds  longest wait for the next frame
 * \return 0 (a frame is there), 1 (ended at offset), the abort code, or
 *         SS_ETIMEDOUT.
 */
int stream_feed_wait(stream_feed_t *f, uint64_t offset, int wait_seconds);

void stream_feed_free(stream_feed_t *f);
