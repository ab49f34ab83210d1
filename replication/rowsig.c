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

/* The site code a certificate proves, checking its chain once per certificate. */
static int rowsig_cert_site(rowsig_t *r, X509 *x, const uint8_t *der, size_t len, char site[4])
{
	uint8_t h[32];
	unsigned int hl = 0;
	EVP_Digest(der, len, h, &hl, EVP_sha256(), NULL);
	for (int i = 0; i < r->cache_n; i++) {
		if (memcmp(r->cache_hash[i], h, 32) == 0) {
			memcpy(site, r->cache_site[i], 4);
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
	int slot = r->cache_n < ROWSIG_CACHE ? r->cache_n++ : r->cache_next++ % ROWSIG_CACHE;
	memcpy(r->cache_hash[slot], h, 32);
	memcpy(r->cache_site[slot], cn, 4);
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
