/*
 * Bundle file checks without a database: bundle_verify() must accept a
 * well-formed bundle and tell damaged, cut, foreign-format and non-bundle
 * files apart before anything is applied.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "proto/frame.h"
#include "proto/version.h"
#include "replication/bundle.h"
#include "catalog/stream.h"
#include "common/errcode.h"
#include "check_run.h"

#define LIMIT (1u << 20)

typedef struct {
	uint32_t format;
	bool no_header;
	int deletes;               /* ids in the one Batch frame */
} spec_t;

typedef struct {
	uint8_t *buf;
	size_t len;
	size_t end_at;             /* where the BundleEnd frame starts */
} image_t;

static char path[64];

static void add_frame(FILE *f, frame_t *fr)
{
	ck_assert_int_eq(stream_write_frame(f, fr, NULL), SS_EOK);
}

/* Header, PullStart, one Batch of deletions, PullDone, BundleEnd. */
static void build(const spec_t *s, image_t *img)
{
	char *mem = NULL;
	size_t memlen = 0;
	FILE *f = open_memstream(&mem, &memlen);
	ck_assert_ptr_nonnull(f);
	uint8_t hid[32], dg[32];
	memset(hid, 0xA5, sizeof(hid));
	memset(dg, 0x3C, sizeof(dg));
	frame_t fr = SITESYNC__FRAME__INIT;

	if (!s->no_header) {
		Sitesync__BundleHeader h = SITESYNC__BUNDLE_HEADER__INIT;
		h.format_version = s->format;
		h.source_site = "CAS";
		h.hierarchy_id.data = hid;
		h.hierarchy_id.len = sizeof(hid);
		h.from_version = 4;
		h.to_version = 5;
		h.digest.data = dg;
		h.digest.len = sizeof(dg);
		h.upserts = 0;
		h.deletes = (uint64_t)s->deletes;
		h.created_at = 1700000000;
		fr.msg_case = SITESYNC__FRAME__MSG_BUNDLE_HEADER;
		fr.bundle_header = &h;
		add_frame(f, &fr);
	}
	Sitesync__PullStart ps = SITESYNC__PULL_START__INIT;
	ps.from_version = 4;
	ps.to_version = 5;
	ps.deletes = (uint64_t)s->deletes;
	fr.msg_case = SITESYNC__FRAME__MSG_PULL_START;
	fr.pull_start = &ps;
	add_frame(f, &fr);

	Sitesync__Batch b = SITESYNC__BATCH__INIT;
	char **ids = calloc((size_t)s->deletes, sizeof(*ids));
	for (int i = 0; i < s->deletes; i++) {
		ids[i] = malloc(40);
		snprintf(ids[i], 40, "%08x-0000-4000-8000-%012x", i, i * 7);
	}
	b.n_deletes = (size_t)s->deletes;
	b.deletes = ids;
	fr.msg_case = SITESYNC__FRAME__MSG_BATCH;
	fr.batch = &b;
	add_frame(f, &fr);
	for (int i = 0; i < s->deletes; i++)
		free(ids[i]);
	free(ids);

	Sitesync__PullDone pd = SITESYNC__PULL_DONE__INIT;
	pd.version = 5;
	pd.digest.data = dg;
	pd.digest.len = sizeof(dg);
	fr.msg_case = SITESYNC__FRAME__MSG_PULL_DONE;
	fr.pull_done = &pd;
	add_frame(f, &fr);
	ck_assert_int_eq(fflush(f), 0);

	/* The checksum as the format defines it: SHA-256 of all bytes so far. */
	uint8_t sum[SHA256_DIGEST_LENGTH];
	SHA256((const uint8_t *)mem, memlen, sum);
	img->end_at = memlen;
	Sitesync__BundleEnd be = SITESYNC__BUNDLE_END__INIT;
	be.checksum.data = sum;
	be.checksum.len = sizeof(sum);
	fr.msg_case = SITESYNC__FRAME__MSG_BUNDLE_END;
	fr.bundle_end = &be;
	add_frame(f, &fr);
	ck_assert_int_eq(fclose(f), 0);
	img->buf = (uint8_t *)mem;
	img->len = memlen;
}

static void save(const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static int verify(bundle_info_t *info, char *err, size_t errlen)
{
	return bundle_verify(path, LIMIT, info, err, errlen);
}

static void setup(void)
{
	check_tmpfile(path, sizeof(path), "bundle");
}

static void teardown(void)
{
	unlink(path);
}

static const spec_t good = { .format = SS_BUNDLE_FORMAT, .deletes = 2000 };

START_TEST(good_bundle_passes)
{
	image_t img;
	build(&good, &img);
	save(img.buf, img.len);
	bundle_info_t info;
	char err[256];
	ck_assert_int_eq(verify(&info, err, sizeof(err)), SS_EOK);
	ck_assert_str_eq(info.source_site, "CAS");
	ck_assert_uint_eq(info.from, 4);
	ck_assert_uint_eq(info.to, 5);
	ck_assert_uint_eq(info.deletes, 2000);
	ck_assert_uint_eq(info.bytes, img.len);
	ck_assert_uint_eq(info.hierarchy_id[0], 0xA5);
	free(img.buf);
}
END_TEST

/* Save LEN bytes of BUF as the bundle and verify it: verify()'s answer. */
static int verify_saved(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	save(buf, len);
	bundle_info_t info;
	return verify(&info, err, errlen);
}

START_TEST(every_flipped_byte_is_caught)
{
	image_t img;
	build(&good, &img);
	char err[256];
	/* A stride through the whole file: header, batch, PullDone, checksum. */
	for (size_t at = 0; at < img.len; at += 97) {
		img.buf[at] ^= 0x20;
		ck_assert_msg(verify_saved(img.buf, img.len, err, sizeof(err)) != SS_EOK,
		              "byte %zu of %zu flipped and still accepted", at, img.len);
		img.buf[at] ^= 0x20;
	}
	free(img.buf);
}
END_TEST

START_TEST(middle_byte_is_a_checksum_mismatch)
{
	image_t img;
	build(&good, &img);
	img.buf[img.len / 2] ^= 0x01;
	char err[256];
	ck_assert_int_eq(verify_saved(img.buf, img.len, err, sizeof(err)), SS_ECHECKSUM);
	ck_assert_ptr_nonnull(strstr(err, "checksum mismatch"));
	free(img.buf);
}
END_TEST

START_TEST(cut_files_are_truncated)
{
	image_t img;
	build(&good, &img);
	char err[256];
	size_t cuts[] = { img.len - 1, img.end_at, img.len / 2, 2, 0 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		ck_assert_msg(verify_saved(img.buf, cuts[i], err, sizeof(err)) == SS_ETRUNC,
		              "cut at %zu of %zu: %s", cuts[i], img.len, err);
		ck_assert_ptr_nonnull(strstr(err, "truncated bundle"));
	}
	free(img.buf);
}
END_TEST

START_TEST(trailing_bytes_are_refused)
{
	image_t img;
	build(&good, &img);
	uint8_t *more = malloc(img.len + 16);
	memcpy(more, img.buf, img.len);
	memset(more + img.len, 0, 16);
	char err[256];
	ck_assert_int_ne(verify_saved(more, img.len + 16, err, sizeof(err)), SS_EOK);
	free(more);
	free(img.buf);
}
END_TEST

/* Build S, save it and verify it: verify()'s answer. */
static int verify_built(const spec_t *s, char *err, size_t errlen)
{
	image_t img;
	build(s, &img);
	int ret = verify_saved(img.buf, img.len, err, errlen);
	free(img.buf);
	return ret;
}

START_TEST(other_format_is_refused)
{
	spec_t s = good;
	s.format = SS_BUNDLE_FORMAT + 1;
	char err[256];
	ck_assert_int_eq(verify_built(&s, err, sizeof(err)), SS_EVERSION);
}
END_TEST

START_TEST(stream_without_header_is_not_a_bundle)
{
	spec_t s = good;
	s.no_header = true;
	char err[256];
	ck_assert_int_eq(verify_built(&s, err, sizeof(err)), SS_EMALF);

	const char *text = "this is not a bundle at all\n";
	ck_assert_int_eq(verify_saved((const uint8_t *)text, strlen(text), err, sizeof(err)), SS_EMALF);
}
END_TEST

START_TEST(missing_file)
{
	bundle_info_t info;
	char err[256];
	ck_assert_int_eq(bundle_verify("/nonexistent/x.bundle", LIMIT, &info, err, sizeof(err)),
	                 SS_ENOENT);
}
END_TEST

int main(void)
{
	return check_tests_fixture("bundle", "verify", 0, setup, teardown,
		good_bundle_passes, every_flipped_byte_is_caught,
		middle_byte_is_a_checksum_mismatch, cut_files_are_truncated,
		trailing_bytes_are_refused, other_format_is_refused,
		stream_without_header_is_not_a_bundle, missing_file);
}
