/* Ed25519 signing and verification of catalog manifests. */
#include "catalog/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "common/errcode.h"

static EVP_PKEY *load_pem(const char *path, bool private_key, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot open %s", path);
		return NULL;
	}
	EVP_PKEY *k = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
	                          : PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
		snprintf(err, errlen, "%s is not an Ed25519 %s key in PEM", path,
		         private_key ? "private" : "public");
		EVP_PKEY_free(k);
		return NULL;
	}
	return k;
}

int manifest_keys_trust_raw(manifest_keys_t *k, const uint8_t *raw, size_t len)
{
	if (len != 32)
		return SS_EINVAL;
	for (int i = 0; i < k->n_trusted; i++) {
		uint8_t have[32];
		size_t n = sizeof(have);
		if (EVP_PKEY_get_raw_public_key(k->trusted[i], have, &n) == 1 && n == 32 &&
		    memcmp(have, raw, 32) == 0)
			return SS_EOK;
	}
	if (k->n_trusted >= MANIFEST_MAX_KEYS)
		return SS_EBUSY;
	EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, len);
	if (p == NULL)
		return SS_EINVAL;
	k->trusted[k->n_trusted++] = p;
	return SS_EOK;
}

int manifest_keys_load(manifest_keys_t *k, const char *sign_path, const char *pub_path,
                       const char *next_path, char *err, size_t errlen)
{
	memset(k, 0, sizeof(*k));
	if (sign_path && (k->sign_key = load_pem(sign_path, true, err, errlen)) == NULL)
		goto fail;
	if (pub_path) {
		EVP_PKEY *p = load_pem(pub_path, false, err, errlen);
		if (p == NULL)
			goto fail;
		k->trusted[k->n_trusted++] = p;
	}
	if (next_path) {
		EVP_PKEY *p = load_pem(next_path, false, err, errlen);
		size_t n = sizeof(k->next_key);
		if (p == NULL)
			goto fail;
		int ok = EVP_PKEY_get_raw_public_key(p, k->next_key, &n) == 1 && n == 32;
		EVP_PKEY_free(p);
		if (!ok) {
			snprintf(err, errlen, "cannot read %s", next_path);
			goto fail;
		}
		k->have_next_key = true;
	}
	return SS_EOK;
fail:
	manifest_keys_clear(k);
	return SS_ECONFIG;
}

void manifest_keys_clear(manifest_keys_t *k)
{
	EVP_PKEY_free(k->sign_key);
	for (int i = 0; i < k->n_trusted; i++)
		EVP_PKEY_free(k->trusted[i]);
	memset(k, 0, sizeof(*k));
}

int manifest_sign(const manifest_keys_t *k, const Sitesync__Manifest *m,
                  uint8_t **out, size_t *out_len, uint8_t **sig, size_t *sig_len)
{
	if (k->sign_key == NULL)
		return SS_EINVAL;
	size_t n = sitesync__manifest__get_packed_size(m);
	uint8_t *buf = malloc(n ? n : 1);
	uint8_t *s = malloc(64);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t slen = 64;
	int ret = SS_ESIG;
	if (buf == NULL || s == NULL || ctx == NULL)
		goto fail;
	sitesync__manifest__pack(m, buf);
	/* Ed25519 signs the message itself: no separate digest. */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->sign_key) != 1 ||
	    EVP_DigestSign(ctx, s, &slen, buf, n) != 1)
		goto fail;
	EVP_MD_CTX_free(ctx);
	*out = buf;
	*out_len = n;
	*sig = s;
	*sig_len = slen;
	return SS_EOK;
fail:
	EVP_MD_CTX_free(ctx);
	free(buf);
	free(s);
	return ret;
}

int manifest_verify(const manifest_keys_t *k, const uint8_t *m, size_t mlen,
                    const uint8_t *sig, size_t siglen, uint64_t version,
                    const uint8_t set_digest[32], uint64_t entries,
                    Sitesync__Manifest **out, char *err, size_t errlen)
{
	if (mlen == 0 || siglen == 0) {
		snprintf(err, errlen, "version %llu carries no signed manifest", (unsigned long long)version);
		return SS_ESIG;
	}
	bool good = false;
	for (int i = 0; i < k->n_trusted && !good; i++) {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->trusted[i]) == 1 &&
		    EVP_DigestVerify(ctx, sig, siglen, m, mlen) == 1)
			good = true;
		EVP_MD_CTX_free(ctx);
	}
	if (!good) {
		snprintf(err, errlen, "the manifest of version %llu is not signed by a trusted key",
		         (unsigned long long)version);
		return SS_ESIG;
	}
	Sitesync__Manifest *mf = sitesync__manifest__unpack(NULL, mlen, m);
	if (mf == NULL) {
		snprintf(err, errlen, "the signed manifest does not decode");
		return SS_ESIG;
	}
	/* The set digest, not the protocol-2 sum: a manifest without one was
	 * signed by a protocol-2 top and vouches only for a forgeable sum. */
	if (mf->version != version || mf->entries != entries || mf->set_digest.len != 32 ||
	    memcmp(mf->set_digest.data, set_digest, 32) != 0) {
		snprintf(err, errlen, "the data received does not match the signed manifest of version %llu "
		         "(altered on the way?)", (unsigned long long)version);
		sitesync__manifest__free_unpacked(mf, NULL);
		return SS_ESIG;
	}
	if (out)
		*out = mf;
	else
		sitesync__manifest__free_unpacked(mf, NULL);
	return SS_EOK;
}
