/* Frame codec: header parsing limits, round trips, malformed bodies. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "common/errcode.h"
#include "check_run.h"

START_TEST(header_incomplete_vs_malformed)
{
	uint8_t hdr[4] = { 0, 0, 1, 0 };
	uint32_t body = 0;
	ck_assert_int_eq(frame_header_parse(hdr, 0, 1024, &body), SS_EAGAIN);
	ck_assert_int_eq(frame_header_parse(hdr, 3, 1024, &body), SS_EAGAIN);
	ck_assert_int_eq(frame_header_parse(hdr, 4, 1024, &body), SS_EOK);
	ck_assert_uint_eq(body, 256);
	ck_assert_int_eq(frame_header_parse(hdr, 4, 255, &body), SS_ETOOBIG);
	uint8_t zero[4] = { 0 };
	ck_assert_int_eq(frame_header_parse(zero, 4, 1024, &body), SS_EMALF);
	uint8_t huge[4] = { 0xff, 0xff, 0xff, 0xff };
	ck_assert_int_eq(frame_header_parse(huge, 4, SS_FRAME_DEFAULT_LIMIT, &body),
	                 SS_ETOOBIG);
}
END_TEST

START_TEST(hello_round_trip)
{
	Sitesync__Hello hello = SITESYNC__HELLO__INIT;
	hello.protocol_version = 7;
	hello.site = "P01";
	hello.catalog_version = 123456789012ULL;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_HELLO;
	f.hello = &hello;

	uint8_t *buf = NULL;
	size_t len = 0;
	ck_assert_int_eq(frame_encode(&f, &buf, &len), SS_EOK);
	ck_assert_uint_eq(len, frame_encoded_size(&f));

	uint32_t body = 0;
	ck_assert_int_eq(frame_header_parse(buf, len, 1024, &body), SS_EOK);
	ck_assert_uint_eq(body + SS_FRAME_HDR, len);

	frame_t *out = NULL;
	ck_assert_int_eq(frame_decode(buf + SS_FRAME_HDR, body, &out), SS_EOK);
	ck_assert_int_eq(out->msg_case, SITESYNC__FRAME__MSG_HELLO);
	ck_assert_str_eq(out->hello->site, "P01");
	ck_assert_uint_eq(out->hello->catalog_version, 123456789012ULL);
	ck_assert_str_eq(frame_msg_name(out), "Hello");
	frame_free(out);
	free(buf);
}
END_TEST

START_TEST(garbage_is_malformed)
{
	frame_t *out = NULL;
	const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	ck_assert_int_eq(frame_decode(junk, sizeof(junk), &out), SS_EMALF);
	ck_assert_ptr_null(out);
	/* A valid protobuf with an unknown field only: no message set. */
	/* Field 99, varint: tag bytes 0x98 0x06. */
	const uint8_t unknown[] = { 0x98, 0x06, 0x01 };
	ck_assert_int_eq(frame_decode(unknown, sizeof(unknown), &out), SS_EMALF);
	/* A field-0 tag written as an overlong varint inside PullRequest: the
	 * fuzzer's find, which would not survive re-encoding. */
	const uint8_t field0[] = { 0x1a, 0x03, 0x80, 0x00, 0x00 };
	ck_assert_int_eq(frame_decode(field0, sizeof(field0), &out), SS_EMALF);
	/* Truncated length-delimited field. */
	const uint8_t trunc[] = { (1 << 3) | 2, 0x10, 0x08 };
	ck_assert_int_eq(frame_decode(trunc, sizeof(trunc), &out), SS_EMALF);
}
END_TEST

int main(void)
{
	return check_tests("frame", "codec", 0,
		header_incomplete_vs_malformed, hello_round_trip,
		garbage_is_malformed);
}
