/* Manifest keys: a worker's snapshot outlives what the loop does to the
 * daemon's keys (rotation appends, shutdown clears). */
#include <check.h>
#include <string.h>

#include <openssl/evp.h>

#include "catalog/manifest.h"
#include "common/errcode.h"
#include "check_run.h"

static EVP_PKEY *ed25519_new(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	ck_assert_ptr_nonnull(k);
	return k;
}

/* The public half as a trusted key, as manifest_keys_load() would hold it. */
static EVP_PKEY *public_of(EVP_PKEY *k)
{
	uint8_t raw[32];
	size_t n = sizeof(raw);
	ck_assert_int_eq(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
	EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, n);
	ck_assert_ptr_nonnull(p);
	return p;
}

START_TEST(copy_is_a_snapshot)
{
	manifest_keys_t src;
	memset(&src, 0, sizeof(src));
	src.sign_key = ed25519_new();
	src.trusted[src.n_trusted++] = public_of(src.sign_key);

	manifest_keys_t job;
	manifest_keys_copy(&job, &src);
	ck_assert_int_eq(job.n_trusted, 1);

	/* The loop trusts a rotated key, then shuts down: the job's keys stay. */
	EVP_PKEY *other = ed25519_new();
	uint8_t raw[32];
	size_t n = sizeof(raw);
	ck_assert_int_eq(EVP_PKEY_get_raw_public_key(other, raw, &n), 1);
	ck_assert_int_eq(manifest_keys_trust_raw(&src, raw, n), SS_EOK);
	ck_assert_int_eq(src.n_trusted, 2);
	ck_assert_int_eq(job.n_trusted, 1);
	manifest_keys_clear(&src);
	EVP_PKEY_free(other);

	Sitesync__Manifest m = SITESYNC__MANIFEST__INIT;
	uint8_t digest[32] = { 1, 2, 3 };
	m.site = "CAS";
	m.version = 7;
	m.digest.data = digest;
	m.digest.len = sizeof(digest);
	m.set_digest.data = digest;      /* protocol 3: what a verifier checks */
	m.set_digest.len = sizeof(digest);
	m.entries = 5;
	uint8_t *man = NULL, *sig = NULL;
	size_t man_len = 0, sig_len = 0;
	ck_assert_int_eq(manifest_sign(&job, &m, &man, &man_len, &sig, &sig_len), SS_EOK);
	char err[256] = "";
	ck_assert_int_eq(manifest_verify(&job, man, man_len, sig, sig_len, 7, digest, 5, NULL,
	                                 err, sizeof(err)), SS_EOK);
	free(man);
	free(sig);
	manifest_keys_clear(&job);
	ck_assert_ptr_null(job.sign_key);
	ck_assert_int_eq(job.n_trusted, 0);
}
END_TEST

int main(void)
{
	return check_tests("manifest", "keys", 0,
		copy_is_a_snapshot);
}
