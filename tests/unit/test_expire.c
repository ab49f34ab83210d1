/* The byte splice behind supersedence expiry: amending the expired flag
 * and the source of packed content at the offsets upstream_expire_split()
 * finds must give exactly what packing the amended message gives. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "upstream/expire.h"
#include "check_run.h"

static uint8_t *pack(const Sitesync__UpdateContent *u, size_t *n)
{
	*n = sitesync__update_content__get_packed_size(u);
	uint8_t *p = malloc(*n ? *n : 1);
	ck_assert_ptr_nonnull(p);
	sitesync__update_content__pack(u, p);
	return p;
}

/* The C twin of UPSTREAM_CONTENT_SQL. */
static uint8_t *splice(const uint8_t *p, size_t n, const uint32_t sp[3], bool expired,
                       bool imported, size_t *out_n)
{
	static const uint8_t exp_true[] = { 0x88, 0x01, 0x01 };
	static const uint8_t src_imp[] = { 0x92, 0x01, 0x08, 'i', 'm', 'p', 'o', 'r', 't', 'e', 'd' };
	uint8_t *o = malloc(n + sizeof(exp_true) + sizeof(src_imp));
	ck_assert_ptr_nonnull(o);
	size_t k = 0;
	memcpy(o, p, sp[0]);
	k += sp[0];
	if (expired) {
		memcpy(o + k, exp_true, sizeof(exp_true));
		k += sizeof(exp_true);
	}
	if (imported) {
		memcpy(o + k, src_imp, sizeof(src_imp));
		k += sizeof(src_imp);
	} else {
		memcpy(o + k, p + sp[0] + sp[1], sp[2]);
		k += sp[2];
	}
	size_t rest = sp[0] + sp[1] + sp[2];
	memcpy(o + k, p + rest, n - rest);
	k += n - rest;
	*out_n = k;
	return o;
}

static void fill(Sitesync__UpdateContent *u, int variant)
{
	static char *products[] = { "Product A", "Product B" };
	static char *supersedes[] = { "0049d3a1-69ed-5952-bf56-d33a4e964f66" };
	sitesync__update_content__init(u);
	u->update_id = "3e2d46bf-29c8-54b7-8a98-bd550d353b4c";
	u->title = "A title";
	u->products = products;
	u->n_products = 2;
	u->supersedes = supersedes;
	u->n_supersedes = variant & 1 ? 1 : 0;
	u->release_date = "2020-01-02";
	/* Fields after source present or not, source set or empty. */
	u->original_xml = variant & 2 ? "<SoftwareDistributionPackage/>" : "";
	u->creation_date = variant & 4 ? "2020-01-01T00:00:00Z" : "";
	u->source = variant & 8 ? "upstream" : "";
}

START_TEST(splice_equals_pack)
{
	for (int variant = 0; variant < 16; variant++) {
		for (int from_exp = 0; from_exp < 2; from_exp++) {
			for (int to = 0; to < 4; to++) {
				bool to_exp = to & 1, to_imp = to & 2;
				Sitesync__UpdateContent u;
				fill(&u, variant);
				u.expired = from_exp;
				size_t n, m, want_n;
				uint8_t *p = pack(&u, &n);
				uint32_t sp[3];
				ck_assert(upstream_expire_split(p, n, sp));
				uint8_t *got = splice(p, n, sp, to_exp, to_imp, &m);
				u.expired = to_exp;
				if (to_imp)
					u.source = "imported";
				uint8_t *want = pack(&u, &want_n);
				ck_assert_msg(m == want_n && memcmp(got, want, m) == 0,
				              "variant %d expired %d -> %d imported %d", variant, from_exp,
				              to_exp, to_imp);
				free(p);
				free(got);
				free(want);
			}
		}
	}
}
END_TEST

/* The C splice a first sync uses before writing: same bytes as packing. */
START_TEST(flip_equals_pack)
{
	for (int variant = 0; variant < 16; variant++) {
		for (int from_exp = 0; from_exp < 2; from_exp++) {
			for (int to_exp = 0; to_exp < 2; to_exp++) {
				Sitesync__UpdateContent u;
				fill(&u, variant);
				u.expired = from_exp;
				size_t n, want_n;
				uint8_t *p = pack(&u, &n);
				uint32_t sp[3];
				ck_assert(upstream_expire_split(p, n, sp));
				uint8_t *got = malloc(n + 3);
				ck_assert_ptr_nonnull(got);
				size_t m = upstream_expire_flip(p, n, sp, to_exp, got);
				u.expired = to_exp;
				uint8_t *want = pack(&u, &want_n);
				ck_assert_msg(m == want_n && memcmp(got, want, m) == 0,
				              "variant %d expired %d -> %d", variant, from_exp, to_exp);
				free(p);
				free(got);
				free(want);
			}
		}
	}
}
END_TEST

START_TEST(split_refuses_what_it_cannot_splice)
{
	Sitesync__UpdateContent u;
	fill(&u, 15);
	u.expired = true;
	size_t n;
	uint8_t *p = pack(&u, &n);
	uint32_t sp[3];
	ck_assert(upstream_expire_split(p, n, sp));
	/* Truncated inside a field. */
	ck_assert(!upstream_expire_split(p, n - 1, sp));
	/* Fields out of order: expired (3 bytes at sp[0]) moved to the front. */
	uint8_t *q = malloc(n);
	ck_assert_ptr_nonnull(q);
	memcpy(q, p + sp[0], 3);
	memcpy(q + 3, p, sp[0]);
	memcpy(q + 3 + sp[0], p + sp[0] + 3, n - sp[0] - 3);
	ck_assert(!upstream_expire_split(q, n, sp));
	/* The expired field twice. */
	uint8_t *r = malloc(n + 3);
	ck_assert_ptr_nonnull(r);
	memcpy(r, p, sp[0] + 3);
	memcpy(r + sp[0] + 3, p + sp[0], n - sp[0]);
	ck_assert(!upstream_expire_split(r, n + 3, sp));
	free(p);
	free(q);
	free(r);
}
END_TEST

int main(void)
{
	return check_tests("expire", "core", 0,
		splice_equals_pack, flip_equals_pack,
		split_refuses_what_it_cannot_splice);
}
