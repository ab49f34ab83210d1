/* The buffer queue between the stage's parser and writer threads and
 * behind the COPY sender: order, a sticky consumer error, abort. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "storage/handoff.h"
#include "check_run.h"

typedef struct {
	int seen[64];          /* first byte of each buffer consumed, in order */
	int n;
	int calls;
	int fail_at;           /* consume fails on this call only (-1: never) */
} sink_t;

static int sink_take(void *arg, const handoff_buf_t *b, char *err, size_t errlen)
{
	sink_t *k = arg;
	ck_assert_uint_eq(b->len, 100);
	if (k->calls++ == k->fail_at) {
		snprintf(err, errlen, "sink refused buffer %d", k->n);
		return SS_EDB;
	}
	k->seen[k->n++] = b->buf[0];
	return SS_EOK;
}

static void fill(handoff_buf_t *b, int v)
{
	memset(b->buf, v, 100);
	b->len = 100;
}

START_TEST(in_order)
{
	sink_t k = { .fail_at = -1 };
	handoff_t *h = NULL;
	handoff_buf_t *cur = NULL;
	ck_assert_int_eq(handoff_start(&h, 3, 128, sink_take, &k, &cur), SS_EOK);
	for (int i = 0; i < 40; i++) {
		fill(cur, i);
		ck_assert_int_eq(handoff_push(h, &cur, NULL, 0), SS_EOK);
		ck_assert_uint_eq(cur->len, 0);
	}
	ck_assert_int_eq(handoff_finish(h, false, NULL, 0), SS_EOK);
	ck_assert_int_eq(k.n, 40);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(k.seen[i], i);
}
END_TEST

START_TEST(error_is_sticky)
{
	sink_t k = { .fail_at = 5 };
	handoff_t *h = NULL;
	handoff_buf_t *cur = NULL;
	ck_assert_int_eq(handoff_start(&h, 2, 128, sink_take, &k, &cur), SS_EOK);
	char err[64] = "";
	int ret = SS_EOK, pushed = 0;
	/* The producer learns of the error on a later push and stops. */
	while (ret == SS_EOK && pushed < 60) {
		fill(cur, pushed++);
		ret = handoff_push(h, &cur, err, sizeof(err));
	}
	ck_assert_int_eq(ret, SS_EDB);
	ck_assert_str_eq(err, "sink refused buffer 5");
	char fin[64] = "";
	ck_assert_int_eq(handoff_finish(h, false, fin, sizeof(fin)), SS_EDB);
	ck_assert_str_eq(fin, "sink refused buffer 5");
	/* Nothing after the failed buffer was consumed, though the sink would
	 * have taken it. */
	ck_assert_int_eq(k.n, 5);
	ck_assert_int_eq(k.calls, 6);
	ck_assert_int_lt(pushed, 60);
}
END_TEST

START_TEST(abort_drops_the_queue)
{
	sink_t k = { .fail_at = -1 };
	handoff_t *h = NULL;
	handoff_buf_t *cur = NULL;
	ck_assert_int_eq(handoff_start(&h, 4, 128, sink_take, &k, &cur), SS_EOK);
	fill(cur, 1);
	ck_assert_int_eq(handoff_push(h, &cur, NULL, 0), SS_EOK);
	ck_assert_int_eq(handoff_finish(h, true, NULL, 0), SS_EOK);
	/* At most what the consumer had taken before the abort. */
	ck_assert_int_le(k.n, 1);
	ck_assert_int_eq(handoff_start(&h, 1, 128, sink_take, &k, &cur), SS_EINVAL);
	ck_assert_ptr_null(h);
}
END_TEST

int main(void)
{
	return check_tests("handoff", "core", 0,
		in_order, error_is_sticky, abort_drops_the_queue);
}
