/* Signing and verifying status rows with the sites' certificate keys. */
#include "replication/rowsig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "common/conf.h"
#include "common/errcode.h"
#include "net/tls.h"

int rowsig_init(rowsig_t *r, const char *ca, const char *cert, const char *key,
                char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	X509 *x = tls_load_cert(cert);
	FILE *f = fopen(key, "r");
	if (f)
		r->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (f)
		fclose(f);
	r->store = X509_STORE_new();
	if (x == NULL || r->key == NULL || r->store == NULL ||
	    X509_STORE_load_file(r->store, ca) != 1) {
		snprintf(err, errlen, "cannot load the certificate, key or CA for signing status rows");
		X509_free(x);
		rowsig_clear(r);
		ERR_clear_error();
		return SS_ETLS;
	}
	int n = i2d_X509(x, NULL);
	r->cert_der = n > 0 ? malloc((size_t)n) : NULL;
	uint8_t *p = r->cert_der;
	if (r->cert_der == NULL || i2d_X509(x, &p) != n) {
		X509_free(x);
		rowsig_clear(r);
		return SS_ENOMEM;
	}
	r->cert_len = (size_t)n;
	X509_free(x);
	return SS_EOK;
}

void rowsig_clear(rowsig_t *r)
{
	free(r->cache);
	EVP_PKEY_free(r->key);
	free(r->cert_der);
	X509_STORE_free(r->store);
	memset(r, 0, sizeof(*r));
}

/* EC and RSA keys sign a SHA-256 digest; Ed25519 signs the message itself. */
static const EVP_MD *rowsig_md(EVP_PKEY *k)
{
	int id = EVP_PKEY_get_id(k);
	return (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
}

int rowsig_sign(const rowsig_t *r, const uint8_t *row, size_t len, Sitesync__SignedRow *out)
{
	sitesync__signed_row__init(out);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t slen = 0;
	int ret = SS_ESIG;
	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, rowsig_md(r->key), NULL, r->key) != 1 ||
	    EVP_DigestSign(ctx, NULL, &slen, row, len) != 1)
		goto out;
	out->signature.data = malloc(slen);
	out->row.data = malloc(len ? len : 1);
	out->cert.data = malloc(r->cert_len);
	if (!out->signature.data || !out->row.data || !out->cert.data) {
		ret = SS_ENOMEM;
		goto out;
	}
	if (EVP_DigestSign(ctx, out->signature.data, &slen, row, len) != 1)
		goto out;
	out->signature.len = slen;
	memcpy(out->row.data, row, len);
	out->row.len = len;
	memcpy(out->cert.data, r->cert_der, r->cert_len);
	out->cert.len = r->cert_len;
	ret = SS_EOK;
out:
	EVP_MD_CTX_free(ctx);
	if (ret != SS_EOK)
		rowsig_signed_clear(out);
	return ret;
}

void rowsig_signed_clear(Sitesync__SignedRow *s)
{
	free(s->row.data);
	free(s->signature.data);
	free(s->cert.data);
	sitesync__signed_row__init(s);
}

static rowsig_cached_t *rowsig_cache_slot(rowsig_cached_t *tab, size_t cap, const uint8_t h[32])
{
	uint64_t k;
	memcpy(&k, h, sizeof(k));
	for (size_t i = (size_t)k & (cap - 1);; i = (i + 1) & (cap - 1))
		if (!tab[i].used || memcmp(tab[i].hash, h, 32) == 0)
			return &tab[i];
}

/* Remember a verified certificate; growing past ROWSIG_CACHE_MAX starts
 * over instead (the cache is only a shortcut). */
static void rowsig_cache_add(rowsig_t *r, const uint8_t h[32], const char site[4])
{
	if (2 * (r->cache_n + 1) > r->cache_cap) {
		size_t cap = r->cache_cap ? 2 * r->cache_cap : ROWSIG_CACHE_MIN;
		if (cap > ROWSIG_CACHE_MAX)
			cap = ROWSIG_CACHE_MAX;
		rowsig_cached_t *tab = calloc(cap, sizeof(*tab));
		if (tab == NULL)
			return;
		size_t n = 0;
		for (size_t i = 0; cap > r->cache_cap && i < r->cache_cap; i++)
			if (r->cache[i].used) {
				*rowsig_cache_slot(tab, cap, r->cache[i].hash) = r->cache[i];
				n++;
			}
		free(r->cache);
		r->cache = tab;
		r->cache_cap = cap;
		r->cache_n = n;
	}
	rowsig_cached_t *e = rowsig_cache_slot(r->cache, r->cache_cap, h);
	if (!e->used)
		r->cache_n++;
	memcpy(e->hash, h, 32);
	memcpy(e->site, site, 4);
	e->used = true;
}

/* The site code a certificate proves, checking its chain once per certificate. */
static int rowsig_cert_site(rowsig_t *r, X509 *x, const uint8_t *der, size_t len, char site[4])
{
	uint8_t h[32];
	unsigned int hl = 0;
	EVP_Digest(der, len, h, &hl, EVP_sha256(), NULL);
	if (r->cache_cap > 0) {
		const rowsig_cached_t *e = rowsig_cache_slot(r->cache, r->cache_cap, h);
		if (e->used) {
			memcpy(site, e->site, 4);
			return SS_EOK;
		}
	}
	X509_STORE_CTX *sc = X509_STORE_CTX_new();
	int ok = sc && X509_STORE_CTX_init(sc, r->store, x, NULL) == 1 && X509_verify_cert(sc) == 1;
	X509_STORE_CTX_free(sc);
	char cn[64] = "";
	if (!ok || X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) < 0 ||
	    !conf_site_code_valid(cn))
		return SS_ESIG;
	memcpy(site, cn, 4);
	rowsig_cache_add(r, h, cn);
	return SS_EOK;
}

int rowsig_verify(rowsig_t *r, const Sitesync__SignedRow *s, Sitesync__SiteStatus **out,
                  char *err, size_t errlen)
{
	const uint8_t *p = s->cert.data;
	X509 *x = s->cert.len ? d2i_X509(NULL, &p, (long)s->cert.len) : NULL;
	EVP_MD_CTX *ctx = NULL;
	Sitesync__SiteStatus *row = NULL;
	char site[4];
	int ret = SS_ESIG;
	if (x == NULL) {
		snprintf(err, errlen, "row without a readable certificate");
		goto out;
	}
	if (rowsig_cert_site(r, x, s->cert.data, s->cert.len, site) != SS_EOK) {
		snprintf(err, errlen, "row certificate not issued by this hierarchy's CA");
		goto out;
	}
	EVP_PKEY *pub = X509_get0_pubkey(x);
	ctx = EVP_MD_CTX_new();
	if (pub == NULL || ctx == NULL ||
	    EVP_DigestVerifyInit(ctx, NULL, rowsig_md(pub), NULL, pub) != 1 ||
	    EVP_DigestVerify(ctx, s->signature.data, s->signature.len, s->row.data, s->row.len) != 1) {
		snprintf(err, errlen, "row signature of %s does not verify", site);
		goto out;
	}
	row = sitesync__site_status__unpack(NULL, s->row.len, s->row.data);
	if (row == NULL || strcmp(row->site, site) != 0) {
		snprintf(err, errlen, "row for %s signed with the certificate of %s",
		         row ? row->site : "?", site);
		goto out;
	}
	*out = row;
	row = NULL;
	ret = SS_EOK;
out:
	if (row)
		sitesync__site_status__free_unpacked(row, NULL);
	EVP_MD_CTX_free(ctx);
	X509_free(x);
	ERR_clear_error();
	return ret;
}
