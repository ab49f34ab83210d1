/* Catalog digest: order independence, sensitivity, add/sub inverse. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/digest.h"
#include "check_run.h"

#define N 200

static void entry(int i, uint32_t *rev, char *buf, size_t len)
{
	*rev = (uint32_t)(i % 7 + 1);
	snprintf(buf, len, "update-%04d|title %d|product x", i, i * 31);
}

static void digest_of(const int *order, int n, digest_t *d)
{
	digest_zero(d);
	for (int k = 0; k < n; k++) {
		char buf[64];
		uint32_t rev;
		uint8_t h[SS_DIGEST_LEN];
		entry(order[k], &rev, buf, sizeof(buf));
		digest_entry_hash(rev, (const uint8_t *)buf, strlen(buf), h);
		digest_add(d, h);
	}
}

START_TEST(any_order_same_digest)
{
	int order[N];
	for (int i = 0; i < N; i++)
		order[i] = i;
	digest_t a, b;
	digest_of(order, N, &a);
	srand(42);
	for (int round = 0; round < 5; round++) {
		for (int i = N - 1; i > 0; i--) {
			int j = rand() % (i + 1);
			int t = order[i]; order[i] = order[j]; order[j] = t;
		}
		digest_of(order, N, &b);
		ck_assert(digest_equal(&a, &b));
	}
	digest_t zero;
	digest_zero(&zero);
	ck_assert(!digest_equal(&a, &zero));
}
END_TEST

START_TEST(any_field_change_changes_digest)
{
	const char *base = "update-0001|title|product x";
	uint8_t h1[SS_DIGEST_LEN], h2[SS_DIGEST_LEN];
	digest_entry_hash(1, (const uint8_t *)base, strlen(base), h1);
	/* Revision change. */
	digest_entry_hash(2, (const uint8_t *)base, strlen(base), h2);
	ck_assert(memcmp(h1, h2, SS_DIGEST_LEN) != 0);
	/* One byte of content changed. */
	char mod[64];
	strcpy(mod, base);
	mod[10] ^= 1;
	digest_entry_hash(1, (const uint8_t *)mod, strlen(mod), h2);
	ck_assert(memcmp(h1, h2, SS_DIGEST_LEN) != 0);

	digest_t a, b;
	digest_zero(&a);
	digest_zero(&b);
	digest_add(&a, h1);
	digest_add(&b, h2);
	ck_assert(!digest_equal(&a, &b));
}
END_TEST

START_TEST(duplicates_do_not_cancel)
{
	uint8_t h[SS_DIGEST_LEN];
	digest_entry_hash(1, (const uint8_t *)"x", 1, h);
	digest_t d, zero;
	digest_zero(&d);
	digest_zero(&zero);
	digest_add(&d, h);
	digest_add(&d, h);
	ck_assert(!digest_equal(&d, &zero));
}
END_TEST

START_TEST(sub_undoes_add_with_carries)
{
	digest_t d;
	memset(d.b, 0xff, sizeof(d.b));
	digest_t orig = d;
	uint8_t one[SS_DIGEST_LEN] = { 0 };
	one[SS_DIGEST_LEN - 1] = 1;
	digest_add(&d, one);      /* wraps to zero through every byte */
	digest_t zero;
	digest_zero(&zero);
	ck_assert(digest_equal(&d, &zero));
	digest_sub(&d, one);
	ck_assert(digest_equal(&d, &orig));
	char hex[65];
	digest_hex(&orig, hex);
	ck_assert_uint_eq(strlen(hex), 64);
	ck_assert(hex[0] == 'f' && hex[63] == 'f');
}
END_TEST

static Suite *digest_suite(void)
{
	Suite *s = suite_create("digest");
	TCase *tc = tcase_create("digest");
	tcase_add_test(tc, any_order_same_digest);
	tcase_add_test(tc, any_field_change_changes_digest);
	tcase_add_test(tc, duplicates_do_not_cancel);
	tcase_add_test(tc, sub_undoes_add_with_carries);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return check_run(digest_suite());
}
