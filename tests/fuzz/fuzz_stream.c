/*
 * libFuzzer target: stream files (catalog/stream.h). The input is
 * written to a temporary file and read back frame by frame until the end
 * or an error, as a child reads its stored pull stream or an import reads
 * a bundle.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/frame.h"
#include "catalog/stream.h"
#include "common/errcode.h"

static char fuzz_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_path[0] == '\0')
		snprintf(fuzz_path, sizeof(fuzz_path), "/tmp/ss-fuzz-stream-%ld",
		         (long)getpid());
	FILE *f = fopen(fuzz_path, "wb");
	if (f == NULL)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();

	stream_reader_t r;
	if (stream_reader_open(&r, fuzz_path, SS_FRAME_DEFAULT_LIMIT) != SS_EOK) {
		unlink(fuzz_path);
		return 0;
	}
	uint64_t last = 0;
	for (;;) {
		frame_t *fr = NULL;
		int ret = stream_reader_next(&r, &fr);
		if (ret != SS_EOK) {
			if (fr != NULL)
				abort();    /* an error must not hand out a frame */
			break;
		}
		size_t raw_len = 0;
		const uint8_t *raw = stream_reader_raw(&r, &raw_len);
		if (raw == NULL || raw_len < SS_FRAME_HDR || r.offset > size ||
		    r.offset <= last)
			abort();
		last = r.offset;
		(void)frame_msg_name(fr);
		frame_free(fr);
	}
	stream_reader_close(&r);
	unlink(fuzz_path);
	return 0;
}
