/* The id set a first sync uses to take the first package of each id. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/idset.h"
#include "check_run.h"

static void id_of(uint32_t n, uint8_t id[16])
{
	/* Ids alike but for a few bytes: slots must depend on all of them. */
	memset(id, 0xab, 16);
	memcpy(id + 12, &n, sizeof(n));
}

START_TEST(add_then_has)
{
	idset_t s;
	idset_init(&s);
	uint8_t id[16];
	ck_assert(!idset_has(&s, (const uint8_t *)"0123456789abcdef"));
	for (uint32_t i = 0; i < 100000; i += 2) {
		id_of(i, id);
		ck_assert_int_eq(idset_add(&s, id), 1);
	}
	ck_assert_uint_eq(s.count, 50000);
	for (uint32_t i = 0; i < 100000; i++) {
		id_of(i, id);
		ck_assert_msg(idset_has(&s, id) == (i % 2 == 0), "id %u", i);
	}
	/* Adding again finds it and changes nothing. */
	for (uint32_t i = 0; i < 100000; i += 2) {
		id_of(i, id);
		ck_assert_int_eq(idset_add(&s, id), 0);
	}
	ck_assert_uint_eq(s.count, 50000);
	ck_assert_uint_ge(s.cap, 2 * s.count);
	idset_clear(&s);
	ck_assert_uint_eq(s.count, 0);
	ck_assert(!idset_has(&s, id));
}
END_TEST

int main(void)
{
	return check_tests("idset", "core", 0,
		add_then_has);
}
