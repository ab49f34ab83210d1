/*
 * libFuzzer target: the frame codec (proto/frame.h). The input is taken as
 * bytes received on a link: parse the header, decode the body, and if it
 * decodes, re-encode it and decode that again (the codec must accept what
 * it produces).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "common/errcode.h"

static void fuzz_frame_body(const uint8_t *body, size_t len)
{
	frame_t *f = NULL;
	if (frame_decode(body, len, &f) != SS_EOK || f == NULL)
		return;
	(void)frame_msg_name(f);
	uint8_t *out = NULL;
	size_t out_len = 0;
	if (frame_encode(f, &out, &out_len) == SS_EOK) {
		uint32_t blen = 0;
		if (out_len != frame_encoded_size(f))
			abort();
		if (frame_header_parse(out, out_len, SIZE_MAX, &blen) != SS_EOK ||
		    (size_t)blen + SS_FRAME_HDR != out_len)
			abort();
		frame_t *again = NULL;
		if (frame_decode(out + SS_FRAME_HDR, blen, &again) != SS_EOK)
			abort();
		frame_free(again);
		free(out);
	}
	frame_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* As a link reads: frames one after another, under both limits. */
	const size_t limits[] = { SS_FRAME_PREAUTH_LIMIT, SS_FRAME_DEFAULT_LIMIT };
	for (size_t l = 0; l < 2; l++) {
		size_t off = 0;
		while (off < size) {
			uint32_t body = 0;
			int ret = frame_header_parse(data + off, size - off, limits[l], &body);
			if (ret != SS_EOK)
				break;
			if (body > limits[l])
				abort();    /* the header check let an oversize frame by */
			if (size - off - SS_FRAME_HDR < body)
				break;      /* the rest has not arrived */
			fuzz_frame_body(data + off + SS_FRAME_HDR, body);
			off += SS_FRAME_HDR + body;
		}
	}
	/* The whole input as one body. */
	fuzz_frame_body(data, size);
	return 0;
}
