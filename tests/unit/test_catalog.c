/* Catalog parser and cabinet extraction: field mapping, encodings, single
 * .sdp files, cabinets with trailing signatures, malformed and hostile
 * documents, and bounded memory on large catalogs. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/errcode.h"
#include "upstream/cab.h"
#include "upstream/catalog.h"
#include "check_run.h"

#define MAX_ENTRIES 64

/* The catalog (smc) and package (sdp) namespaces, each in its .../sms/...
 * and .../wsus/... form (DESIGN §2). */
#define NS_BASE_SMS "http://schemas.microsoft.com/sms/2005/04/CorporatePublishing/"
#define NS_BASE_WSUS "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/"
#define NS_SMC_SMS NS_BASE_SMS "SystemsManagementCatalog.xsd"
#define NS_SMC_WSUS NS_BASE_WSUS "SystemsManagementCatalog.xsd"
#define NS_SDP_SMS NS_BASE_SMS "SoftwareDistributionPackage.xsd"
#define NS_SDP_WSUS NS_BASE_WSUS "SoftwareDistributionPackage.xsd"

/* Entries are only valid during the callback: keep packed copies. */
typedef struct {
	size_t n;
	uint8_t *packed[MAX_ENTRIES];
	size_t len[MAX_ENTRIES];
	uint64_t seen;
	uint64_t stop_after;   /* 0 = never */
} collect_t;

static int collect_cb(const Sitesync__UpdateContent *u, void *arg)
{
	collect_t *c = arg;
	c->seen++;
	if (c->n < MAX_ENTRIES) {
		size_t len = sitesync__update_content__get_packed_size(u);
		c->packed[c->n] = malloc(len ? len : 1);
		ck_assert_ptr_nonnull(c->packed[c->n]);
		sitesync__update_content__pack(u, c->packed[c->n]);
		c->len[c->n] = len;
		c->n++;
	}
	if (c->stop_after != 0 && c->seen >= c->stop_after)
		return SS_EINVAL;
	return SS_EOK;
}

static void collect_free(collect_t *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->packed[i]);
	memset(c, 0, sizeof(*c));
}

static Sitesync__UpdateContent *entry(collect_t *c, size_t i)
{
	ck_assert_uint_lt(i, c->n);
	Sitesync__UpdateContent *u =
		sitesync__update_content__unpack(NULL, c->len[i], c->packed[i]);
	ck_assert_ptr_nonnull(u);
	return u;
}

static const char *data_dir(void)
{
	const char *d = getenv("SS_TEST_DATA");
	ck_assert_msg(d != NULL, "SS_TEST_DATA is not set");
	return d;
}

static char *data_path(const char *name)
{
	char *p;
	ck_assert_int_ge(asprintf(&p, "%s/catalog/%s", data_dir(), name), 0);
	return p;
}

static char *tmp_dir(void)
{
	char *d = strdup("/tmp/ss-catalog-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

static void rm_rf(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Run the generator; returns the entry count it reports on stderr. */
static long gen(const char *args, const char *out)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "python3 '%s/../gen_catalog.py' %s %s%s 2>&1 >/dev/null",
		 data_dir(), args, out ? "--out " : "", out ? out : "");
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char line[256] = "";
	long n = -1;
	while (fgets(line, sizeof(line), p) != NULL)
		sscanf(line, "gen_catalog: %ld entries", &n);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_int_ge(n, 0);
	return n;
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

START_TEST(sample_fields)
{
	char *path = data_path("sample.xml");
	collect_t c = { 0 };
	catalog_stats_t st;
	char err[256] = "";
	int ret = catalog_parse_file(path, collect_cb, &c, &st, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_uint_gt(st.bytes, 5000);
	ck_assert_uint_eq(c.n, 3);

	Sitesync__UpdateContent *u = entry(&c, 0);
	ck_assert_str_eq(u->update_id, "6f2c1a9e-0b7d-4c55-9a3e-1d2b3c4d5e6f");
	/* English wins over the German block before it; the duplicate
	 * English block does not replace the first. */
	ck_assert_str_eq(u->title, "Contoso Browser 118.0.5993.88 (x64) security update");
	ck_assert_str_eq(u->description,
			 "Fixes CVE-2023-5472 & CVE-2023-5473 in the renderer.");
	ck_assert_str_eq(u->vendor, "Contoso Ltd");
	ck_assert_uint_eq(u->n_products, 2);
	ck_assert_str_eq(u->products[0], "Contoso Browser");
	ck_assert_str_eq(u->products[1], "Contoso Browser Enterprise");
	ck_assert_str_eq(u->classification, "0fa1201d-4330-4fa8-8ae9-b877473b6441");
	ck_assert_uint_eq(u->n_languages, 2);
	ck_assert_str_eq(u->languages[0], "de");
	ck_assert_str_eq(u->languages[1], "en");
	ck_assert_str_eq(u->severity, "Critical");
	ck_assert_str_eq(u->kb_article, "5031234");
	ck_assert_str_eq(u->security_bulletin, "CSA-2023-042");
	ck_assert_uint_eq(u->n_cve_ids, 2);
	ck_assert_str_eq(u->cve_ids[0], "CVE-2023-5472");
	ck_assert_str_eq(u->cve_ids[1], "CVE-2023-5473");
	ck_assert_str_eq(u->release_date, "2024-03-12T08:15:00Z");
	ck_assert_str_eq(u->creation_date, "2024-03-12T08:15:00Z");
	ck_assert_uint_eq(u->n_supersedes, 2);
	ck_assert_str_eq(u->supersedes[0], "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9");
	/* Points outside the catalog: kept. */
	ck_assert_str_eq(u->supersedes[1], "b7e1d2c3-0000-4000-8000-00000000beef");
	ck_assert_uint_eq(u->n_prerequisites, 3);
	ck_assert_str_eq(u->prerequisites[0], "11111111-2222-4333-8444-555555555555");
	ck_assert_str_eq(u->prerequisites[1], "66666666-7777-4888-9999-aaaaaaaaaaaa");
	ck_assert_str_eq(u->prerequisites[2], "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff");
	ck_assert_uint_eq(u->n_bundled, 1);
	ck_assert_str_eq(u->bundled[0], "12345678-1234-4234-8234-123456789abc");
	ck_assert_uint_eq(u->n_files, 2);
	ck_assert_str_eq(u->files[0]->name, "browser_setup.exe");
	ck_assert_uint_eq(u->files[0]->size, 104857600);
	ck_assert_str_eq(u->files[0]->sha1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
	ck_assert_str_eq(u->files[0]->sha256, "");
	ck_assert_str_eq(u->files[0]->modified, "2024-03-11T22:00:00");
	ck_assert_str_eq(u->files[0]->url,
			 "https://downloads.contoso.example/browser/118.0.5993.88/browser_setup.exe");
	ck_assert_str_eq(u->files[1]->name, "browser_setup.cab");
	ck_assert_uint_eq(u->files[1]->size, 2048);
	ck_assert(!u->expired);
	ck_assert_str_eq(u->source, "upstream");
	ck_assert_str_eq(u->more_info_url, "https://support.contoso.example/kb/5031234");
	ck_assert_str_eq(u->support_url, "https://support.contoso.example/");
	ck_assert_ptr_nonnull(strstr(u->original_xml, "<bar:FileVersion"));
	ck_assert_ptr_nonnull(strstr(u->original_xml, "cmd:CommandLineInstallerData"));

	/* The stored fragment stands on its own: namespaces travel with it,
	 * and parsing it again gives the same entry. */
	collect_t again = { 0 };
	ret = catalog_parse_memory(u->original_xml, strlen(u->original_xml),
				   collect_cb, &again, NULL, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(again.n, 1);
	Sitesync__UpdateContent *v = entry(&again, 0);
	ck_assert_str_eq(v->update_id, u->update_id);
	ck_assert_str_eq(v->title, u->title);
	ck_assert_uint_eq(v->n_files, 2);
	ck_assert_uint_eq(v->n_prerequisites, 3);
	sitesync__update_content__free_unpacked(v, NULL);
	collect_free(&again);
	sitesync__update_content__free_unpacked(u, NULL);

	/* Prefixes redeclared per element, a French-only package, a
	 * classification given by name and a date with an offset. */
	u = entry(&c, 1);
	ck_assert_str_eq(u->update_id, "0a1b2c3d-4e5f-4071-8293-a4b5c6d7e8f9");
	ck_assert_str_eq(u->title, "Fabrikam Office Suite 16.0.1 mise à jour");
	ck_assert_str_eq(u->vendor, "Fabrikam Inc");
	ck_assert_str_eq(u->release_date, "2023-11-02T10:00:00");
	ck_assert_uint_eq(u->n_products, 1);
	ck_assert_str_eq(u->classification, "Updates");
	ck_assert_str_eq(u->severity, "");
	ck_assert_str_eq(u->kb_article, "sp94728");
	ck_assert_uint_eq(u->n_languages, 1);
	ck_assert_str_eq(u->languages[0], "fr");
	ck_assert_uint_eq(u->n_files, 1);
	ck_assert_str_eq(u->files[0]->modified, "2023-11-01T09:37:31+02:00");
	ck_assert_uint_eq(u->files[0]->size, 57251704);
	ck_assert_uint_eq(u->n_supersedes, 0);
	ck_assert_ptr_nonnull(strstr(u->original_xml, "xmlns:x="));
	sitesync__update_content__free_unpacked(u, NULL);

	/* Minimal package: no English, no files, an unknown element kept
	 * in the original XML. */
	u = entry(&c, 2);
	ck_assert_str_eq(u->update_id, "c0ffee00-1234-4abc-8def-0123456789ab");
	ck_assert_str_eq(u->title, "Adatum BIOS 1.2.3");
	ck_assert_str_eq(u->description, "Nur deutsch.");
	ck_assert_str_eq(u->release_date, "2022-01-31");
	ck_assert_uint_eq(u->n_products, 0);
	ck_assert_uint_eq(u->n_files, 0);
	ck_assert_str_eq(u->more_info_url, "");
	ck_assert_ptr_nonnull(strstr(u->original_xml,
				     "<sdp:Unknown keep=\"me\">vendor extension</sdp:Unknown>"));
	sitesync__update_content__free_unpacked(u, NULL);

	collect_free(&c);
	free(path);
}
END_TEST

START_TEST(single_sdp)
{
	char *path = data_path("single.sdp");
	collect_t c = { 0 };
	char err[256] = "";
	int ret = catalog_parse_file(path, collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(c.n, 1);
	Sitesync__UpdateContent *u = entry(&c, 0);
	ck_assert_str_eq(u->update_id, "00004850-0000-0000-5350-000000094728");
	ck_assert_str_eq(u->title, "Synaptics HD audio driver [8.65.296.0.A3]");
	ck_assert_str_eq(u->vendor, "HP Business Clients");
	ck_assert_str_eq(u->severity, "Low");
	ck_assert_str_eq(u->classification, "Updates");
	ck_assert_uint_eq(u->n_supersedes, 1);
	ck_assert_uint_eq(u->n_files, 1);
	ck_assert_str_eq(u->files[0]->sha1, "dzismAZBcZ33vdj/7kekAp6yO9o=");
	ck_assert_ptr_nonnull(strstr(u->original_xml, "<lar:And>"));
	sitesync__update_content__free_unpacked(u, NULL);
	collect_free(&c);
	free(path);
}
END_TEST

/* The same catalog as UTF-8, UTF-8 with BOM and CRLF (HP), and UTF-16LE
 * with and without BOM (Dell) yields byte-identical entries. */
START_TEST(encodings_agree)
{
	static const char *variants[] = {
		"", "--bom --crlf", "--encoding utf-16 --bom", "--encoding utf-16",
	};
	char *dir = tmp_dir();
	collect_t ref = { 0 };
	for (size_t k = 0; k < sizeof(variants) / sizeof(variants[0]); k++) {
		char out[256], args[128];
		snprintf(out, sizeof(out), "%s/v%zu.xml", dir, k);
		snprintf(args, sizeof(args), "--entries 40 --seed 7 %s", variants[k]);
		ck_assert_int_eq(gen(args, out), 40);
		collect_t c = { 0 };
		char err[256] = "";
		int ret = catalog_parse_file(out, collect_cb, &c, NULL, err, sizeof(err));
		ck_assert_msg(ret == SS_EOK, "%s: %s", variants[k], err);
		ck_assert_uint_eq(c.n, 40);
		if (k == 0) {
			ref = c;
			continue;
		}
		for (size_t i = 0; i < c.n; i++) {
			ck_assert_uint_eq(c.len[i], ref.len[i]);
			ck_assert_msg(memcmp(c.packed[i], ref.packed[i], c.len[i]) == 0,
				      "entry %zu differs with %s", i, variants[k]);
		}
		collect_free(&c);
	}
	collect_free(&ref);
	rm_rf(dir);
	free(dir);
}
END_TEST

static int count_cb(const Sitesync__UpdateContent *u, void *arg)
{
	uint64_t *n = arg;
	ck_assert_int_eq(strlen(u->update_id), 36);
	ck_assert(u->title[0] != '\0');
	ck_assert(u->n_files >= 1 && u->n_files <= 3);
	(*n)++;
	return SS_EOK;
}

START_TEST(generated_counts)
{
	char *dir = tmp_dir();
	char out[256];
	snprintf(out, sizeof(out), "%s/r3.xml", dir);
	long want = gen("--entries 600 --round 3 --seed 3", out);
	ck_assert_int_gt(want, 550);
	uint64_t n = 0;
	catalog_stats_t st;
	char err[256] = "";
	int ret = catalog_parse_file(out, count_cb, &n, &st, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(n, (uint64_t)want);
	ck_assert_uint_eq(st.entries, (uint64_t)want);

	/* One .sdp file per package parses to one entry each. */
	char sdp[256], args[300];
	snprintf(sdp, sizeof(sdp), "%s/sdp", dir);
	snprintf(args, sizeof(args), "--entries 5 --sdp-dir %s", sdp);
	ck_assert_int_eq(gen(args, NULL), 5);
	DIR *d = opendir(sdp);
	ck_assert_ptr_nonnull(d);
	struct dirent *de;
	int files = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[600];
		snprintf(p, sizeof(p), "%s/%s", sdp, de->d_name);
		n = 0;
		ret = catalog_parse_file(p, count_cb, &n, NULL, err, sizeof(err));
		ck_assert_msg(ret == SS_EOK, "%s", err);
		ck_assert_uint_eq(n, 1);
		files++;
	}
	closedir(d);
	ck_assert_int_eq(files, 5);
	rm_rf(dir);
	free(dir);
}
END_TEST

/* id + hash of the packed entry, to compare two rounds of a catalog. */
typedef struct {
	char id[37];
	uint64_t h;
} idhash_t;

typedef struct {
	idhash_t *v;
	size_t n, cap;
} idhash_vec_t;

static int idhash_cb(const Sitesync__UpdateContent *u, void *arg)
{
	idhash_vec_t *vec = arg;
	if (vec->n == vec->cap) {
		vec->cap = vec->cap ? vec->cap * 2 : 1024;
		vec->v = realloc(vec->v, vec->cap * sizeof(*vec->v));
		ck_assert_ptr_nonnull(vec->v);
	}
	idhash_t *e = &vec->v[vec->n++];
	snprintf(e->id, sizeof(e->id), "%s", u->update_id);
	/* FNV-1a over the title, description and files is enough to tell a
	 * changed entry from an unchanged one. */
	uint64_t h = 1469598103934665603ULL;
	const char *parts[2] = { u->title, u->description };
	for (int k = 0; k < 2; k++)
		for (const char *p = parts[k]; *p; p++)
			h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	for (size_t i = 0; i < u->n_files; i++)
		for (const char *p = u->files[i]->sha1; *p; p++)
			h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	e->h = h;
	return SS_EOK;
}

static int idhash_cmp(const void *a, const void *b)
{
	return strcmp(((const idhash_t *)a)->id, ((const idhash_t *)b)->id);
}

/* Round 2 of a catalog differs from round 1 by the generator's churn:
 * about 1% changed, 0.5% removed, 0.5% added; the same round twice is
 * identical. */
START_TEST(generated_rounds)
{
	char *dir = tmp_dir();
	char r1[256], r2[256];
	snprintf(r1, sizeof(r1), "%s/r1.xml", dir);
	snprintf(r2, sizeof(r2), "%s/r2.xml", dir);
	gen("--entries 4000 --seed 9", r1);
	gen("--entries 4000 --seed 9 --round 2", r2);
	idhash_vec_t a = { 0 }, b = { 0 };
	char err[256] = "";
	ck_assert_int_eq(catalog_parse_file(r1, idhash_cb, &a, NULL, err, sizeof(err)), SS_EOK);
	ck_assert_int_eq(catalog_parse_file(r2, idhash_cb, &b, NULL, err, sizeof(err)), SS_EOK);
	qsort(a.v, a.n, sizeof(*a.v), idhash_cmp);
	qsort(b.v, b.n, sizeof(*b.v), idhash_cmp);
	size_t i = 0, j = 0, removed = 0, added = 0, changed = 0;
	while (i < a.n || j < b.n) {
		int c = i == a.n ? 1 : j == b.n ? -1 : strcmp(a.v[i].id, b.v[j].id);
		if (c < 0) {
			removed++;
			i++;
		} else if (c > 0) {
			added++;
			j++;
		} else {
			changed += a.v[i].h != b.v[j].h;
			i++;
			j++;
		}
	}
	ck_assert_msg(removed >= 5 && removed <= 40, "removed %zu", removed);
	ck_assert_msg(added >= 5 && added <= 40, "added %zu", added);
	ck_assert_msg(changed >= 15 && changed <= 80, "changed %zu", changed);

	/* Deterministic: regenerating round 2 gives the same bytes. */
	char again[256], cmd[600];
	snprintf(again, sizeof(again), "%s/r2b.xml", dir);
	gen("--entries 4000 --seed 9 --round 2", again);
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", r2, again);
	ck_assert_int_eq(system(cmd), 0);
	free(a.v);
	free(b.v);
	rm_rf(dir);
	free(dir);
}
END_TEST

static int count_entries_in(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

START_TEST(cabinet_with_signature)
{
	if (system("gcab --version >/dev/null 2>&1") != 0) {
		fprintf(stderr, "SKIP cabinet_with_signature: gcab is not installed\n");
		return;
	}
	char *dir = tmp_dir();
	char xml[256], cab[256], cmd[1024], tmpdir[256];
	snprintf(xml, sizeof(xml), "%s/catalog.xml", dir);
	snprintf(cab, sizeof(cab), "%s/catalog.cab", dir);
	long want = gen("--entries 120 --seed 5", xml);
	snprintf(cmd, sizeof(cmd), "cd '%s' && gcab -c -z catalog.cab catalog.xml && "
		 "head -c 4096 /dev/urandom >> catalog.cab", dir);
	ck_assert_int_eq(system(cmd), 0);

	/* The extracted copy goes under $TMPDIR and must not stay there. */
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", dir);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	setenv("TMPDIR", tmpdir, 1);
	uint64_t n = 0;
	char err[256] = "";
	int ret = catalog_parse_file(cab, count_cb, &n, NULL, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(n, (uint64_t)want);
	ck_assert_int_eq(count_entries_in(tmpdir), 0);

	/* cab_extract_first on its own gives back the catalog bytes. */
	char out[256];
	snprintf(out, sizeof(out), "%s/out.xml", dir);
	ck_assert_int_eq(cab_extract_first(cab, out, 0, err, sizeof(err)), SS_EOK);
	size_t a, b;
	char *x1 = read_file(xml, &a), *x2 = read_file(out, &b);
	ck_assert_uint_eq(a, b);
	ck_assert(memcmp(x1, x2, a) == 0);
	free(x1);
	free(x2);

	/* A member that would extract past the limit is refused before a byte
	 * is written, through the parser too, and no scratch file stays. */
	char big[256];
	snprintf(big, sizeof(big), "%s/big.xml", dir);
	ck_assert_int_eq(cab_extract_first(cab, big, a - 1, err, sizeof(err)), SS_ETOOBIG);
	ck_assert_msg(strstr(err, "max_catalog_mib") != NULL, "%s", err);
	struct stat sb;
	ck_assert_int_ne(stat(big, &sb), 0);
	ck_assert_int_eq(cab_extract_first(cab, big, a, err, sizeof(err)), SS_EOK);
	n = 0;
	ret = catalog_parse_file_max(cab, a - 1, count_cb, &n, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_ETOOBIG);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(count_entries_in(tmpdir), 0);

	/* Without an .xml member the largest file is the catalog. */
	snprintf(cmd, sizeof(cmd), "cd '%s' && cp catalog.xml catalog.dat && "
		 "echo hello > readme.txt && gcab -c -z other.cab readme.txt catalog.dat",
		 dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(out, sizeof(out), "%s/other.cab", dir);
	n = 0;
	ret = catalog_parse_file(out, count_cb, &n, NULL, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(n, (uint64_t)want);

	/* A cabinet header followed by garbage. */
	char bad[256];
	snprintf(bad, sizeof(bad), "%s/bad.cab", dir);
	write_file(bad, "MSCF\0\0\0\0garbage garbage garbage", 31);
	ret = catalog_parse_file(bad, count_cb, &n, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_ECAB);
	ck_assert_int_eq(count_entries_in(tmpdir), 0);
	unsetenv("TMPDIR");

	ck_assert_int_eq(cab_extract_first("/nonexistent.cab", out, 0, err, sizeof(err)),
			 SS_ENOENT);
	rm_rf(dir);
	free(dir);
}
END_TEST

START_TEST(truncated_and_malformed)
{
	char *path = data_path("sample.xml");
	size_t len;
	char *buf = read_file(path, &len);
	char *dir = tmp_dir();
	char cut[256];
	snprintf(cut, sizeof(cut), "%s/catalog.xml", dir);
	write_file(cut, buf, len / 2);

	collect_t c = { 0 };
	char err[256] = "";
	int ret = catalog_parse_file(cut, collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);
	/* "<file>:<line>: <what>" */
	ck_assert_msg(strncmp(err, cut, strlen(cut)) == 0 && err[strlen(cut)] == ':',
		      "unexpected message: %s", err);
	collect_free(&c);

	ret = catalog_parse_memory(buf, len / 2, collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);
	collect_free(&c);

	const char *bad = "<?xml version=\"1.0\"?>\n"
		"<smc:SystemsManagementCatalog xmlns:smc=\"" NS_SMC_SMS "\">\n"
		"<smc:SoftwareDistributionPackage></smc:Oops>\n"
		"</smc:SystemsManagementCatalog>\n";
	ret = catalog_parse_memory(bad, strlen(bad), collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);
	ck_assert_msg(strstr(err, ":3:") != NULL, "no line number: %s", err);
	ck_assert_uint_eq(c.n, 0);

	const char *noid = "<smc:SystemsManagementCatalog xmlns:smc=\"" NS_SMC_SMS "\">"
		"<smc:SoftwareDistributionPackage><smc:Properties PackageID=\"not-a-uuid\"/>"
		"</smc:SoftwareDistributionPackage></smc:SystemsManagementCatalog>";
	ret = catalog_parse_memory(noid, strlen(noid), collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);
	ck_assert_ptr_nonnull(strstr(err, "PackageID"));

	ret = catalog_parse_memory("", 0, collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);

	const char *other = "<rss><channel/></rss>";
	ret = catalog_parse_memory(other, strlen(other), collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EXML);

	ck_assert_int_eq(catalog_parse_file("/nonexistent/catalog.xml", collect_cb, &c,
					    NULL, err, sizeof(err)), SS_ENOENT);

	/* The callback's error stops the parse and comes back. */
	c.stop_after = 1;
	ret = catalog_parse_file(path, collect_cb, &c, NULL, err, sizeof(err));
	ck_assert_int_eq(ret, SS_EINVAL);
	ck_assert_uint_eq(c.seen, 1);
	collect_free(&c);

	free(buf);
	rm_rf(dir);
	free(dir);
	free(path);
}
END_TEST

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST(hostile_entities)
{
	static const char *files[] = { "billion_laughs.xml", "xxe.xml" };
	for (size_t k = 0; k < 2; k++) {
		char *path = data_path(files[k]);
		collect_t c = { 0 };
		char err[256] = "";
		double t0 = now();
		int ret = catalog_parse_file(path, collect_cb, &c, NULL, err, sizeof(err));
		ck_assert_double_lt(now() - t0, 1.0);
		ck_assert_int_eq(ret, SS_EXML);
		ck_assert_msg(strstr(err, "entity declarations are refused") != NULL,
			      "%s: %s", files[k], err);
		ck_assert_uint_eq(c.n, 0);

		size_t len;
		char *buf = read_file(path, &len);
		ret = catalog_parse_memory(buf, len, collect_cb, &c, NULL, err, sizeof(err));
		ck_assert_int_eq(ret, SS_EXML);
		ck_assert_ptr_nonnull(strstr(err, "entity declarations are refused"));
		free(buf);
		free(path);
	}
	/* The same refusal in a UTF-16 document. */
	const char *x = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>"
		"<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>";
	size_t n = strlen(x);
	char *w = calloc(2 * n + 2, 1);
	w[0] = (char)0xff;
	w[1] = (char)0xfe;
	for (size_t i = 0; i < n; i++)
		w[2 + 2 * i] = x[i];
	collect_t c = { 0 };
	char err[256] = "";
	ck_assert_int_eq(catalog_parse_memory(w, 2 * n + 2, collect_cb, &c, NULL,
					      err, sizeof(err)), SS_EXML);
	ck_assert_ptr_nonnull(strstr(err, "entity declarations are refused"));
	free(w);
}
END_TEST

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	ck_assert_ptr_nonnull(f);
	char line[256];
	long kb = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int bytes_cb(const Sitesync__UpdateContent *u, void *arg)
{
	uint64_t *n = arg;
	*n += strlen(u->original_xml);
	return SS_EOK;
}

/* A ~40 MB catalog must parse in roughly one package's worth of memory. */
START_TEST(memory_bounded)
{
	char *dir = tmp_dir();
	char out[256];
	snprintf(out, sizeof(out), "%s/big.xml", dir);
	long want = gen("--entries 14000 --seed 11", out);
	struct stat sb;
	ck_assert_int_eq(stat(out, &sb), 0);
	ck_assert_int_gt(sb.st_size, 30L * 1024 * 1024);

	long before = vm_hwm_kb();
	uint64_t total = 0;
	catalog_stats_t st;
	char err[256] = "";
	int ret = catalog_parse_file(out, bytes_cb, &total, &st, err, sizeof(err));
	long after = vm_hwm_kb();
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(st.entries, (uint64_t)want);
	ck_assert_uint_eq(st.bytes, (uint64_t)sb.st_size);
	ck_assert_uint_gt(total, (uint64_t)sb.st_size / 2);
#ifdef __SANITIZE_ADDRESS__
	/* ASan keeps freed memory in quarantine: RSS says nothing there. */
	(void)before;
	(void)after;
#else
	ck_assert_msg(after - before < 20 * 1024,
		      "peak RSS grew by %ld kB parsing %ld bytes",
		      after - before, (long)sb.st_size);
#endif
	rm_rf(dir);
	free(dir);
}
END_TEST

/* One package of `desc` bytes of description, after a small one. */
static void write_big_package(const char *path, size_t desc)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<smc:SystemsManagementCatalog "
	      "xmlns:smc=\"http://schemas.microsoft.com/sms/2005/04/CorporatePublishing/"
	      "SystemsManagementCatalog.xsd\" xmlns:sdp=\"http://schemas.microsoft.com/wsus/2005/"
	      "04/CorporatePublishing/SoftwareDistributionPackage.xsd\">\n", f);
	const char *ids[] = { "11111111-0000-4000-8000-000000000001",
	                      "22222222-0000-4000-8000-000000000002" };
	for (int k = 0; k < 2; k++) {
		fprintf(f, "<smc:SoftwareDistributionPackage><sdp:Properties PackageID=\"%s\" "
		        "VendorName=\"V\"><sdp:ProductName>P</sdp:ProductName></sdp:Properties>"
		        "<sdp:LocalizedProperties><sdp:Language>en</sdp:Language><sdp:Title>T"
		        "</sdp:Title><sdp:Description>", ids[k]);
		for (size_t i = 0; k == 1 && i < desc; i++)
			fputc('a' + (int)(i % 26), f);
		fputs("</sdp:Description></sdp:LocalizedProperties>"
		      "</smc:SoftwareDistributionPackage>\n", f);
	}
	fputs("</smc:SystemsManagementCatalog>\n", f);
	ck_assert_int_eq(fclose(f), 0);
}

/* A package past the bound stops the parse while it is read, naming it,
 * in memory proportional to the bound, not to the package. */
START_TEST(package_bounded)
{
	char path[64];
	check_tmpfile(path, sizeof(path), "bigpkg");
	write_big_package(path, 9u << 20);
	collect_t c = { 0 };
	char err[256] = "";
	long before = vm_hwm_kb();
	int ret = catalog_parse_file_limit(path, 1u << 20, collect_cb, &c, NULL, err, sizeof(err));
	long after = vm_hwm_kb();
	ck_assert_int_eq(ret, SS_ETOOBIG);
	ck_assert_msg(strstr(err, "package 22222222-0000-4000-8000-000000000002 is larger than "
	                     "[upstream] max_entry_bytes allows") != NULL, "%s", err);
	ck_assert_uint_eq(c.n, 1);      /* the small one came first */
#ifndef __SANITIZE_ADDRESS__
	ck_assert_msg(after - before < 16 * 1024, "peak RSS grew by %ld kB", after - before);
#else
	(void)before;
	(void)after;
#endif
	collect_free(&c);
	/* Under the bound, or without one, the same file parses whole. */
	collect_t all = { 0 };
	ck_assert_int_eq(catalog_parse_file_limit(path, 16u << 20, collect_cb, &all, NULL, err,
	                                          sizeof(err)), SS_EOK);
	ck_assert_uint_eq(all.n, 2);
	collect_free(&all);
	unlink(path);
}
END_TEST

/* One catalog with the given root and package namespaces; its single
 * package carries id `id` in the package namespace. */
static int parse_ns(const char *smc, const char *sdp, const char *extra, collect_t *c,
		    char *err, size_t errlen)
{
	char *doc = NULL;
	ck_assert_int_ge(asprintf(&doc,
		"<smc:SystemsManagementCatalog xmlns:smc=\"%s\" xmlns:sdp=\"%s\" xmlns:evil=\"urn:evil\">"
		"<smc:SoftwareDistributionPackage>"
		"<sdp:Properties PackageID=\"6F2C1A9E-0B7D-4C55-9A3E-1D2B3C4D5E6F\" VendorName=\"Contoso\"/>"
		"<sdp:LocalizedProperties><sdp:Language>en</sdp:Language>"
		"<sdp:Title>Real title</sdp:Title></sdp:LocalizedProperties>"
		"%s"
		"</smc:SoftwareDistributionPackage></smc:SystemsManagementCatalog>",
		smc, sdp, extra), 0);
	int ret = catalog_parse_memory(doc, strlen(doc), collect_cb, c, NULL, err, errlen);
	free(doc);
	return ret;
}

/* Both published forms of each namespace are the catalog's, in any mix. */
START_TEST(namespaces_both_forms)
{
	const char *smc[] = { NS_SMC_SMS, NS_SMC_WSUS };
	const char *sdp[] = { NS_SDP_SMS, NS_SDP_WSUS };
	for (int i = 0; i < 2; i++) {
		for (int j = 0; j < 2; j++) {
			collect_t c = { 0 };
			char err[256] = "";
			int ret = parse_ns(smc[i], sdp[j], "", &c, err, sizeof(err));
			ck_assert_msg(ret == SS_EOK, "%s / %s: %s", smc[i], sdp[j], err);
			ck_assert_uint_eq(c.n, 1);
			Sitesync__UpdateContent *u = entry(&c, 0);
			ck_assert_str_eq(u->update_id, "6f2c1a9e-0b7d-4c55-9a3e-1d2b3c4d5e6f");
			ck_assert_str_eq(u->title, "Real title");
			ck_assert_str_eq(u->vendor, "Contoso");
			sitesync__update_content__free_unpacked(u, NULL);
			collect_free(&c);
		}
	}
	/* A single .sdp file: the package is the root, in the wsus form. */
	const char *single = "<p:SoftwareDistributionPackage xmlns:p=\"" NS_SDP_WSUS "\">"
		"<p:Properties PackageID=\"00004850-0000-0000-5350-000000094728\"/>"
		"</p:SoftwareDistributionPackage>";
	collect_t c = { 0 };
	char err[256] = "";
	ck_assert_int_eq(catalog_parse_memory(single, strlen(single), collect_cb, &c, NULL,
					      err, sizeof(err)), SS_EOK);
	ck_assert_uint_eq(c.n, 1);
	collect_free(&c);
}
END_TEST

/* Same local names in a foreign namespace are not ours: they neither
 * override a field nor count as a package or a catalog. */
START_TEST(namespaces_foreign_ignored)
{
	collect_t c = { 0 };
	char err[256] = "";
	/* A foreign Properties after ours must not replace the id; a foreign
	 * LocalizedProperties must not replace the title. */
	int ret = parse_ns(NS_SMC_SMS, NS_SDP_WSUS,
		"<evil:Properties PackageID=\"11111111-1111-4111-8111-111111111111\" VendorName=\"Evil\"/>"
		"<evil:LocalizedProperties><evil:Language>en</evil:Language>"
		"<evil:Title>Forged</evil:Title></evil:LocalizedProperties>"
		"<sdp:SupersededPackages><evil:PackageID>22222222-2222-4222-8222-222222222222"
		"</evil:PackageID></sdp:SupersededPackages>",
		&c, err, sizeof(err));
	ck_assert_msg(ret == SS_EOK, "%s", err);
	ck_assert_uint_eq(c.n, 1);
	Sitesync__UpdateContent *u = entry(&c, 0);
	ck_assert_str_eq(u->update_id, "6f2c1a9e-0b7d-4c55-9a3e-1d2b3c4d5e6f");
	ck_assert_str_eq(u->title, "Real title");
	ck_assert_str_eq(u->vendor, "Contoso");
	ck_assert_uint_eq(u->n_supersedes, 0);
	/* ...but it is kept in the original XML. */
	ck_assert_ptr_nonnull(strstr(u->original_xml, "Forged"));
	sitesync__update_content__free_unpacked(u, NULL);
	collect_free(&c);

	/* A package element of a foreign namespace is not a package. */
	const char *pkg = "<smc:SystemsManagementCatalog xmlns:smc=\"" NS_SMC_SMS "\" "
		"xmlns:sdp=\"" NS_SDP_SMS "\" xmlns:evil=\"urn:evil\">"
		"<evil:SoftwareDistributionPackage><sdp:Properties "
		"PackageID=\"11111111-1111-4111-8111-111111111111\"/></evil:SoftwareDistributionPackage>"
		"</smc:SystemsManagementCatalog>";
	ck_assert_int_eq(catalog_parse_memory(pkg, strlen(pkg), collect_cb, &c, NULL, err,
					      sizeof(err)), SS_EOK);
	ck_assert_uint_eq(c.n, 0);
	collect_free(&c);

	/* A root of a foreign namespace (or of none) is refused, by name. */
	const char *roots[] = {
		"<x:SystemsManagementCatalog xmlns:x=\"http://schemas.microsoft.com/sms/2005/04/"
		"CorporatePublishing/Other.xsd\"/>",
		"<SystemsManagementCatalog/>",
		"<x:SoftwareDistributionPackage xmlns:x=\"http://example.org/wsus/2005/04/"
		"CorporatePublishing/SoftwareDistributionPackage.xsd\"/>",
	};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		err[0] = '\0';
		ret = catalog_parse_memory(roots[i], strlen(roots[i]), collect_cb, &c, NULL, err,
					   sizeof(err));
		ck_assert_int_eq(ret, SS_EXML);
		ck_assert_msg(strstr(err, "namespace") != NULL, "%s", err);
		ck_assert_uint_eq(c.n, 0);
	}
}
END_TEST

int main(void)
{
	return check_tests("catalog", "parse", 120,
		sample_fields, single_sdp, encodings_agree, generated_counts,
		generated_rounds, cabinet_with_signature,
		truncated_and_malformed, hostile_entities, memory_bounded,
		package_bounded, namespaces_both_forms,
		namespaces_foreign_ignored);
}
