/*
 * Frame codec: a 4-byte big-endian length followed by one packed Frame.
 * Pure functions, no I/O, so the codec is unit-tested and fuzzed alone.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "proto/sitesync.pb-c.h"

#define SS_FRAME_HDR 4u
#define SS_FRAME_DEFAULT_LIMIT (16u * 1024u * 1024u)
/* Before a peer has said Hello it has no business sending big frames. */
#define SS_FRAME_PREAUTH_LIMIT (64u * 1024u)

typedef Sitesync__Frame frame_t;

/*!
 * \brief Read a frame header from the first bytes of a buffer.
 *
 * \param buf    Bytes received so far.
 * \param len    How many.
 * \param limit  Largest body accepted.
 * \param body   Output: body length.
 *
 * \return SS_EOK, SS_EAGAIN if fewer than 4 bytes, SS_ETOOBIG over the
 *         limit, SS_EMALF for an empty body.
 */
int frame_header_parse(const uint8_t *buf, size_t len, size_t limit,
                       uint32_t *body) __attribute__((warn_unused_result));

/*! \brief Write the 4-byte header for a body of \a body_len bytes. */
void frame_header_write(uint8_t out[SS_FRAME_HDR], uint32_t body_len);

/*!
 * \brief Decode one frame body.
 *
 * \param out  Output: decoded frame, free with frame_free().
 * \return SS_EOK, or SS_EMALF if undecodable or no message is set.
 */
int frame_decode(const uint8_t *body, size_t len, frame_t **out)
	__attribute__((warn_unused_result));

/*!
 * \brief Encode a frame with its header into a new buffer.
 *
 * \param out      Output: malloc'd header + body, caller frees.
 * \param out_len  Output: total length.
 */
int frame_encode(const frame_t *f, uint8_t **out, size_t *out_len)
	__attribute__((warn_unused_result));

/*! \brief Encoded size including the header. */
size_t frame_encoded_size(const frame_t *f);

/*! \brief Encode into caller storage of frame_encoded_size() bytes. */
void frame_encode_to(const frame_t *f, uint8_t *out);

void frame_free(frame_t *f);

/*! \brief Name of the message a frame carries, for logs. */
const char *frame_msg_name(const frame_t *f);
