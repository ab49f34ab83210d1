/* [MS-WSUSSS] XML: SOAP walk, faults, blob decoding, update mapping, refusals. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "upstream/wsus_xml.h"
#include "check_run.h"

static char *slurp(const char *rel, size_t *len)
{
	char path[1024];
	const char *dir = getenv("SS_TEST_DATA");
	snprintf(path, sizeof(path), "%s/wsusss/%s", dir ? dir : "tests/data", rel);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

typedef struct {
	int idents;
	char *blob;            /* the compressed blob text, or the escaped one */
	bool compressed;
} seen_t;

static int seen_cb(void *arg, const char *path, const char *text, size_t len)
{
	seen_t *s = arg;
	if (text == NULL)
		return SS_EOK;
	size_t pl = strlen(path);
	if (pl >= 27 && strcmp(path + pl - 27, "NewRevisions/UpdateIdentity") == 0)
		s->idents++;
	if ((pl >= 23 && strcmp(path + pl - 23, "XmlUpdateBlobCompressed") == 0) ||
	    (pl >= 13 && strcmp(path + pl - 13, "XmlUpdateBlob") == 0)) {
		s->compressed = path[pl - 1] == 'd';
		s->blob = strndup(text, len);
	}
	return SS_EOK;
}

static void walk_file(const char *rel, seen_t *s, wsus_fault_t *f)
{
	size_t len;
	char *buf = slurp(rel, &len);
	char err[256] = "";
	memset(s, 0, sizeof(*s));
	int ret = wsus_xml_walk_memory(buf, len, 0, seen_cb, s, f, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s: %s", rel, err);
	free(buf);
}

START_TEST(faults)
{
	seen_t s;
	wsus_fault_t f;
	walk_file("000017/response.body", &s, &f);
	ck_assert(f.present);
	ck_assert_str_eq(f.code, "InternalServerError");
	ck_assert_str_eq(f.message, "");
	walk_file("000018/response.body", &s, &f);
	ck_assert_str_eq(f.code, "InvalidParameters");
	ck_assert_str_eq(f.message, "filter");
	walk_file("000019/response.body", &s, &f);
	ck_assert_str_eq(f.code, "InvalidCookie");
	walk_file("000009/response.body", &s, &f);
	ck_assert(!f.present);
	ck_assert_int_eq(s.idents, 30);
}
END_TEST

START_TEST(bundle_document)
{
	seen_t s;
	wsus_fault_t f;
	walk_file("000013/response.body", &s, &f);
	ck_assert(s.compressed && s.blob != NULL);
	char *xml = NULL;
	size_t len = 0;
	char err[256] = "";
	int ret = wsus_blob_decode(s.blob, strlen(s.blob), 0, &xml, &len, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert(strncmp(xml, "<upd:Update ", 12) == 0);
	static const char *const langs[] = { "de", "en" };
	wsus_update_t u;
	ret = wsus_update_parse(xml, len, langs, 2, &u, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_str_eq(u.u.update_id, "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe");
	ck_assert_int_eq(u.revision, 200);
	ck_assert_str_eq(u.u.kb_article, "2267602");
	ck_assert(strstr(u.u.title, "Sicherheitsinformationsupdate") != NULL ||
	          strstr(u.u.title, "KB2267602") != NULL);
	ck_assert_int_eq(u.u.n_bundled, 124);
	ck_assert_int_eq(u.n_bundled_ids, 124);
	ck_assert_int_eq(u.bundled_ids[0].revision, 200);
	ck_assert_int_eq(u.u.n_supersedes, 10);
	ck_assert_int_eq(u.n_cat_prereqs, 2);
	ck_assert_str_eq(u.cat_prereqs[0], "e0789628-ce08-4437-be74-2495b842f43b");
	ck_assert_int_eq(u.u.n_prerequisites, 4);
	ck_assert_str_eq(u.u.release_date, "2026-10-04T12:00:58Z");
	ck_assert(!u.u.expired);
	ck_assert_str_eq(u.u.original_xml, xml);
	wsus_update_clear(&u);
	free(xml);
	free(s.blob);
}
END_TEST

START_TEST(leaf_and_category)
{
	seen_t s;
	wsus_fault_t f;
	char err[256] = "";
	char *xml = NULL;
	size_t len = 0;
	wsus_update_t u;
	walk_file("000014/response.body", &s, &f);
	ck_assert_int_eq(wsus_blob_decode(s.blob, strlen(s.blob), 0, &xml, &len, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(wsus_update_parse(xml, len, NULL, 0, &u, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(u.u.n_files, 1);
	ck_assert_str_eq(u.u.files[0]->sha1, "h/W9BGlYUAaqXTp30cZi/SiV3c0=");
	ck_assert_str_eq(u.u.files[0]->sha256, "Amt0qymy5KsROiwIXm4QIIV75Ju4r+Cl28Pg8gaLXUA=");
	ck_assert_str_eq(u.u.files[0]->name, "AM_Delta.exe");
	ck_assert_int_eq(u.u.files[0]->size, 11606440);
	wsus_update_clear(&u);
	free(xml);
	free(s.blob);
	/* Upper-case GUIDs are the same id. */
	walk_file("000016/response.body", &s, &f);
	ck_assert_int_eq(wsus_blob_decode(s.blob, strlen(s.blob), 0, &xml, &len, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(wsus_update_parse(xml, len, NULL, 0, &u, err, sizeof(err)), SS_EOK);
	ck_assert_str_eq(u.u.update_id, "56309036-4c77-4dd9-951a-99ee9c246a94");
	ck_assert(u.is_category);
	ck_assert_str_eq(u.category_type, "Company");
	ck_assert_str_eq(u.u.title, "Microsoft");
	wsus_update_clear(&u);
	free(xml);
	free(s.blob);
	/* Uncompressed: entity-escaped XML comes out as the document. */
	walk_file("000015/response.body", &s, &f);
	ck_assert(!s.compressed);
	ck_assert(strncmp(s.blob, "<upd:Update ", 12) == 0);
	ck_assert_int_eq(wsus_update_parse(s.blob, strlen(s.blob), NULL, 0, &u, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(u.n_bundled_ids, 4);
	ck_assert_int_eq(u.u.n_prerequisites, 2);
	ck_assert_int_eq(u.n_req_prereqs, 0);    /* two AtLeastOne groups */
	wsus_update_clear(&u);
	free(s.blob);
}
END_TEST

START_TEST(dates_and_expiry)
{
	const char *doc = "<upd:Update xmlns:upd=\"http://schemas.microsoft.com/msus/2002/12/Update\">"
	                  "<upd:UpdateIdentity UpdateID=\"AAAAAAAA-0000-4000-8000-00000000000A\" "
	                  "RevisionNumber=\"7\" /><upd:Properties UpdateType=\"Software\" "
	                  "PublicationState=\"Expired\" CreationDate=\"2026-10-04T14:00:58.5+02:00\" "
	                  "MsrcSeverity=\"Critical\" /></upd:Update>";
	wsus_update_t u;
	char err[256] = "";
	ck_assert_int_eq(wsus_update_parse(doc, strlen(doc), NULL, 0, &u, err, sizeof(err)), SS_EOK);
	ck_assert_str_eq(u.u.update_id, "aaaaaaaa-0000-4000-8000-00000000000a");
	ck_assert_str_eq(u.u.release_date, "2026-10-04T12:00:58Z");
	ck_assert(u.u.expired);
	ck_assert_str_eq(u.u.severity, "Critical");
	wsus_update_clear(&u);
	/* A plain prerequisite after a category group is no category. */
	const char *pre = "<upd:Update xmlns:upd=\"u\"><upd:UpdateIdentity "
	                  "UpdateID=\"aaaaaaaa-0000-4000-8000-00000000000b\" RevisionNumber=\"1\"/>"
	                  "<upd:Relationships><upd:Prerequisites><upd:AtLeastOne IsCategory=\"true\">"
	                  "<upd:UpdateIdentity UpdateID=\"aaaaaaaa-0000-4000-8000-00000000000c\"/>"
	                  "</upd:AtLeastOne><upd:UpdateIdentity UpdateID=\"aaaaaaaa-0000-4000-8000-"
	                  "00000000000d\"/></upd:Prerequisites></upd:Relationships></upd:Update>";
	ck_assert_int_eq(wsus_update_parse(pre, strlen(pre), NULL, 0, &u, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(u.u.n_prerequisites, 2);
	ck_assert_int_eq(u.n_cat_prereqs, 1);
	ck_assert_str_eq(u.cat_prereqs[0], "aaaaaaaa-0000-4000-8000-00000000000c");
	/* Only the one directly under Prerequisites is required (wsus.c holds
	 * the update back without it); a group needs any one of its members. */
	ck_assert_int_eq(u.n_req_prereqs, 1);
	ck_assert_str_eq(u.req_prereqs[0], "aaaaaaaa-0000-4000-8000-00000000000d");
	wsus_update_clear(&u);
}
END_TEST

/* Each refusal alone, with its message. */
START_TEST(refusals)
{
	char err[256] = "";
	wsus_fault_t f;
	seen_t s = { 0 };
	const char *ent = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"b\">]>"
	                  "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
	                  "<soap:Body><X>&a;</X></soap:Body></soap:Envelope>";
	ck_assert_int_eq(wsus_xml_walk_memory(ent, strlen(ent), 0, seen_cb, &s, &f, err, sizeof(err)),
	                 SS_EXML);
	ck_assert_str_eq(err, "SOAP response declares or uses entities: refused");
	const char *nobody = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"/>";
	ck_assert_int_eq(wsus_xml_walk_memory(nobody, strlen(nobody), 0, seen_cb, &s, &f, err,
	                                      sizeof(err)), SS_EXML);
	ck_assert_str_eq(err, "not a SOAP response (no soap:Body)");
	char *xml = NULL;
	size_t len = 0;
	ck_assert_int_eq(wsus_blob_decode("TVN*RgAA", 8, 0, &xml, &len, err, sizeof(err)), SS_ECAB);
	ck_assert_str_eq(err, "compressed update blob: bad base64");
	ck_assert_int_eq(wsus_blob_decode("AAAAAAAA", 8, 0, &xml, &len, err, sizeof(err)), SS_ECAB);
	ck_assert_ptr_nonnull(strstr(err, "compressed update blob: not a cabinet"));
	/* Cabinets made with gcab: a member not named blob; an odd-length blob. */
	static const char *const cabs[] = { "unit/notblob.cab", "unit/oddblob.cab" };
	static const char *const want[] = {
		"compressed update blob: the cabinet has no member 'blob'",
		"compressed update blob: member 'blob' is not UTF-16LE text",
	};
	for (int i = 0; i < 2; i++) {
		size_t n;
		char *raw = slurp(cabs[i], &n);
		static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char *b64 = calloc(1, n * 2 + 8), *q = b64;
		for (size_t k = 0; k < n; k += 3) {
			uint32_t v = (uint32_t)(uint8_t)raw[k] << 16 |
			             (k + 1 < n ? (uint32_t)(uint8_t)raw[k + 1] << 8 : 0) |
			             (k + 2 < n ? (uint8_t)raw[k + 2] : 0);
			*q++ = t[v >> 18];
			*q++ = t[(v >> 12) & 63];
			*q++ = k + 1 < n ? t[(v >> 6) & 63] : '=';
			*q++ = k + 2 < n ? t[v & 63] : '=';
		}
		ck_assert_int_eq(wsus_blob_decode(b64, strlen(b64), 0, &xml, &len, err, sizeof(err)), SS_ECAB);
		ck_assert_str_eq(err, want[i]);
		ck_assert_ptr_null(xml);
		free(b64);
		free(raw);
	}
	/* [upstream] max_document: a text over it, a decoded blob over it. */
	size_t n13;
	char *r13 = slurp("000013/response.body", &n13);
	ck_assert_int_eq(wsus_xml_walk_memory(r13, n13, 1000, seen_cb, &s, &f, err, sizeof(err)),
	                 SS_EXML);
	ck_assert_str_eq(err, "an element's text is over 1000 bytes ([upstream] max_document)");
	free(r13);
	seen_t big;
	walk_file("000013/response.body", &big, &f);
	ck_assert_int_eq(wsus_blob_decode(big.blob, strlen(big.blob), 30000, &xml, &len, err,
	                                  sizeof(err)), SS_ETOOBIG);
	ck_assert_str_eq(err, "compressed update blob: member of 69570 bytes is over the limit "
	                 "([upstream] max_document)");
	ck_assert_ptr_null(xml);
	free(big.blob);
	free(s.blob);
	wsus_update_t u;
	const char *notupd = "<Other/>";
	ck_assert_int_eq(wsus_update_parse(notupd, strlen(notupd), NULL, 0, &u, err, sizeof(err)), SS_EXML);
	ck_assert_str_eq(err, "not an update document (root Other)");
	const char *badid = "<upd:Update xmlns:upd=\"u\"><upd:UpdateIdentity UpdateID=\"x\"/></upd:Update>";
	ck_assert_int_eq(wsus_update_parse(badid, strlen(badid), NULL, 0, &u, err, sizeof(err)), SS_EXML);
	ck_assert_str_eq(err, "update document: bad UpdateIdentity under Update");
}
END_TEST

int main(void)
{
	return check_tests("wsus_xml", "core", 0,
		faults, bundle_document, leaf_and_category, dates_and_expiry,
		refusals);
}
