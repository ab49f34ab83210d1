/* Stream files: reading frames back, and where a resumed pull may continue. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/stream.h"
#include "common/errcode.h"
#include "check_run.h"

static char path[64];

static void tmp_setup(void)
{
	check_tmpfile(path, sizeof(path), "stream");
}

static void tmp_teardown(void)
{
	unlink(path);
}

/* A Ping whose nonce makes frames of different sizes. */
static uint64_t write_ping(FILE *f, uint64_t nonce, uint64_t *bytes)
{
	Sitesync__Ping ping = SITESYNC__PING__INIT;
	ping.nonce = nonce;
	frame_t fr = SITESYNC__FRAME__INIT;
	fr.msg_case = SITESYNC__FRAME__MSG_PING;
	fr.ping = &ping;
	uint64_t before = *bytes;
	ck_assert_int_eq(stream_write_frame(f, &fr, bytes), SS_EOK);
	return *bytes - before;
}

START_TEST(seek_only_to_frame_starts)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	uint64_t bytes = 0, starts[6];
	for (int i = 0; i < 6; i++) {
		starts[i] = bytes;
		write_ping(f, (uint64_t)1 << (i * 9), &bytes);
	}
	ck_assert_int_eq(fclose(f), 0);

	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	for (uint64_t off = 1; off < bytes; off++) {
		int at = -1;
		for (int i = 0; i < 6; i++)
			if (starts[i] == off)
				at = i;
		int ret = stream_seek_frame(f, off, 1024);
		if (at < 0) {
			ck_assert_msg(ret == SS_EMALF, "offset %llu is inside a frame", (unsigned long long)off);
			continue;
		}
		ck_assert_int_eq(ret, SS_EOK);
		/* The next frame read is the one that starts there. */
		uint8_t hdr[SS_FRAME_HDR];
		uint32_t body = 0;
		ck_assert_uint_eq(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
		ck_assert_int_eq(frame_header_parse(hdr, sizeof(hdr), 1024, &body), SS_EOK);
		uint8_t buf[64];
		ck_assert_uint_le(body, sizeof(buf));
		ck_assert_uint_eq(fread(buf, 1, body, f), body);
		frame_t *fr = NULL;
		ck_assert_int_eq(frame_decode(buf, body, &fr), SS_EOK);
		ck_assert_int_eq(fr->msg_case, SITESYNC__FRAME__MSG_PING);
		ck_assert_uint_eq(fr->ping->nonce, (uint64_t)1 << (at * 9));
		frame_free(fr);
	}
	ck_assert_int_eq(stream_seek_frame(f, bytes, 1024), SS_EOK);   /* the end */
	ck_assert_int_eq(stream_seek_frame(f, bytes + 3, 1024), SS_EMALF);
	fclose(f);
}
END_TEST

/* Offsets past 4 GiB: a sparse file of frames with ~1 GiB bodies (only
 * their headers are read) and a real frame at the end. */
START_TEST(seek_past_4gib)
{
	const uint32_t big = (1u << 30) - 7;
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	uint64_t off = 0;
	for (int i = 0; i < 5; i++) {
		uint8_t hdr[SS_FRAME_HDR];
		frame_header_write(hdr, big);
		ck_assert_int_eq(fseeko(f, (off_t)off, SEEK_SET), 0);
		ck_assert_uint_eq(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
		off += SS_FRAME_HDR + (uint64_t)big;
	}
	ck_assert_int_eq(fseeko(f, (off_t)off, SEEK_SET), 0);
	uint64_t bytes = off;
	write_ping(f, 77, &bytes);
	if (fclose(f) != 0) {
		/* No room even for a sparse file here: nothing to learn. */
		fprintf(stderr, "seek_past_4gib: cannot write a sparse 5 GiB file, skipped\n");
		return;
	}
	ck_assert_uint_gt(off, (uint64_t)1 << 32);

	stream_reader_t r;
	ck_assert_int_eq(stream_reader_open(&r, path, (size_t)big), SS_EOK);
	ck_assert_int_eq(stream_seek_frame(r.f, off, (size_t)big), SS_EOK);
	frame_t *fr = NULL;
	ck_assert_int_eq(stream_reader_next(&r, &fr), SS_EOK);
	ck_assert_int_eq(fr->msg_case, SITESYNC__FRAME__MSG_PING);
	ck_assert_uint_eq(fr->ping->nonce, 77);
	frame_free(fr);
	ck_assert_int_eq(stream_reader_next(&r, &fr), 1);
	/* Offsets that agree with the true one only in their low 32 bits. */
	ck_assert_int_eq(stream_seek_frame(r.f, off & 0xffffffffu, (size_t)big), SS_EMALF);
	ck_assert_int_eq(stream_seek_frame(r.f, off + ((uint64_t)1 << 32), (size_t)big), SS_EMALF);
	stream_reader_close(&r);
}
END_TEST

int main(void)
{
	return check_tests_fixture("stream", "file", 0, tmp_setup, tmp_teardown,
		seek_only_to_frame_starts, seek_past_4gib);
}
