/*
 * Streaming catalog parser (DESIGN §2).
 *
 * The libxml2 text reader walks the document; when it stands on a
 * SoftwareDistributionPackage start tag we expand just that element into
 * a small tree, map it to a Sitesync__UpdateContent, serialize it as the
 * entry's original XML, hand it to the caller and step past it. The reader
 * frees the nodes it has passed, so memory stays bounded by one package
 * whatever the catalog's size.
 *
 * Elements are matched by namespace URI and local name, never by prefix:
 * catalogs qualify them with smc:/sdp: prefixes, single .sdp files
 * differently, and some vendors redeclare prefixes on every element. The
 * catalog and package namespaces are published under both a .../sms/...
 * and a .../wsus/... path; both are accepted, anything else is foreign
 * (kept in the original XML, never mapped).
 *
 * Catalogs come from the internet, so the parser never loads anything over
 * the network, never loads a DTD and never substitutes entities; a document
 * that declares entities at all is refused before parsing starts (that is
 * how billion-laughs and external-entity payloads are stopped cheaply).
 */
#include "upstream/catalog.h"

#include <ctype.h>
#include <fcntl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlreader.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errcode.h"
#include "upstream/cab.h"

/* Reader options: no network, no DTD, no entity substitution, and no
 * XML_PARSE_HUGE so libxml2's own size limits stay in force. COMPACT keeps
 * short text nodes inside the node structure (less memory per package). */
#define CAT_XML_OPTIONS (XML_PARSE_NONET | XML_PARSE_COMPACT)

/* Bytes looked at before parsing to find entity declarations. */
#define CAT_PROLOG_MAX (1024 * 1024)

#define CAT_PKG "SoftwareDistributionPackage"
#define CAT_ROOT "SystemsManagementCatalog"

typedef struct {
	char **v;
	size_t n, cap;
} cat_strv_t;

/* One package being mapped. Every string it points to is in `owned`. */
typedef struct {
	Sitesync__UpdateContent u;
	cat_strv_t owned;
	cat_strv_t products, languages, cves, supersedes, prereqs, bundled;
	Sitesync__UpdateFile *files;
	Sitesync__UpdateFile **file_ptrs;
	size_t nfiles, capfiles;
	bool title_is_en;      /* title/description came from Language "en" */
	bool have_localized;
	bool oom;              /* an allocation failed; checked once at the end */
} cat_pkg_t;

/* One parse run. */
typedef struct {
	const char *name;      /* shown in messages */
	catalog_entry_cb cb;
	void *arg;
	catalog_stats_t stats;
	char *err;
	size_t errlen;
	bool have_xml_error;   /* err already holds libxml2's first error */
	/* The reader gives up its document once asked for it: ours to free. */
	xmlDocPtr doc;
} cat_ctx_t;

/* libxml2's global state must be set up once, before worker threads race
 * to do it lazily. */
static pthread_once_t cat_init_once = PTHREAD_ONCE_INIT;

static void cat_err(cat_ctx_t *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void cat_xml_error_cb(void *arg, xmlErrorPtr e);
static int cat_prolog_check(const unsigned char *p, size_t n);
static char *cat_dup(cat_pkg_t *p, const char *s, size_t n);
static char *cat_trimmed(cat_pkg_t *p, xmlChar *x);
static char *cat_attr(cat_pkg_t *p, xmlNodePtr node, const char *name);
static char *cat_text(cat_pkg_t *p, xmlNodePtr node);
static void cat_strv_push(cat_pkg_t *p, cat_strv_t *v, char *s);
static bool cat_is_part(xmlNodePtr n, const char *name);
static bool cat_ns_ours(const xmlChar *href);
static bool cat_is_uuid(const char *s);
static void cat_lower(char *s);
static void cat_collect_ids(cat_pkg_t *p, xmlNodePtr node, cat_strv_t *v);
static void cat_properties(cat_pkg_t *p, xmlNodePtr node);
static void cat_localized(cat_pkg_t *p, xmlNodePtr node);
static void cat_update_data(cat_pkg_t *p, xmlNodePtr node);
static void cat_installable(cat_pkg_t *p, xmlNodePtr node);
static void cat_pkg_clear(cat_pkg_t *p);
static void cat_own_namespaces(xmlNodePtr node);
static int cat_package(cat_ctx_t *c, xmlNodePtr node);
static bool cat_declares_entities(cat_ctx_t *c, xmlTextReaderPtr r);
static int cat_run(cat_ctx_t *c, xmlTextReaderPtr r);
static int cat_parse_reader(cat_ctx_t *c, xmlTextReaderPtr r,
			    catalog_stats_t *stats);
static int cat_parse_xml_file(const char *path, const char *name,
			      catalog_entry_cb cb, void *arg,
			      catalog_stats_t *stats, char *err, size_t errlen);

static void cat_err(cat_ctx_t *c, const char *fmt, ...)
{
	if (c->err == NULL || c->errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
}

/* Keep libxml2's first error, with its line, as the message returned. */
static void cat_xml_error_cb(void *arg, xmlErrorPtr e)
{
	cat_ctx_t *c = arg;
	if (e == NULL || e->level < XML_ERR_ERROR || c->have_xml_error)
		return;
	c->have_xml_error = true;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", e->message ? e->message : "error");
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	cat_err(c, "%s:%d: %s", c->name, e->line, msg);
}

/*
 * Look through the prolog (everything before the root element) for an
 * entity declaration inside a DOCTYPE. Works on an ASCII view of the bytes
 * so UTF-16 catalogs are checked too.
 * Returns 1 when entities are declared, 0 when the root element was
 * reached without any, -1 when the prefix ended before that.
 */
static int cat_prolog_check(const unsigned char *raw, size_t rawlen)
{
	size_t step = 1, off = 0;
	if (rawlen >= 2 && ((raw[0] == 0xff && raw[1] == 0xfe) ||
			    (raw[0] == '<' && raw[1] == 0))) {
		step = 2;       /* UTF-16LE: low byte first */
		off = raw[0] == 0xff ? 2 : 0;
	} else if (rawlen >= 2 && ((raw[0] == 0xfe && raw[1] == 0xff) ||
				   (raw[0] == 0 && raw[1] == '<'))) {
		step = 2;       /* UTF-16BE: take the low byte */
		off = raw[0] == 0xfe ? 3 : 1;
	} else if (rawlen >= 3 && raw[0] == 0xef && raw[1] == 0xbb &&
		   raw[2] == 0xbf) {
		off = 3;
	}
	size_t n = rawlen > off ? (rawlen - off) / step : 0;
	char *p = malloc(n + 1);
	if (p == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		size_t k = off + i * step;
		bool hi_zero = step == 1 ||
			(off % 2 == 0 ? raw[k + 1] == 0 : raw[k - 1] == 0);
		/* Non-ASCII code units cannot start markup: blank them. */
		p[i] = (hi_zero && raw[k] != 0 && raw[k] < 0x80) ?
			(char)raw[k] : '.';
	}
	p[n] = '\0';

	int ret = -1;
	size_t i = 0;
	while (i < n) {
		char *lt = memchr(p + i, '<', n - i);
		if (lt == NULL)
			break;
		i = (size_t)(lt - p);
		if (strncmp(lt, "<?", 2) == 0 || strncmp(lt, "<!--", 4) == 0) {
			const char *end = strstr(lt + 2, lt[1] == '?' ? "?>" : "-->");
			if (end == NULL)
				break;
			i = (size_t)(end - p) + 2;
			continue;
		}
		if (strncmp(lt, "<!DOCTYPE", 9) != 0) {
			ret = 0;        /* the root element: prolog is clean */
			break;
		}
		/* Walk the DOCTYPE to its closing '>', minding quotes, the
		 * internal subset and comments inside it. */
		bool subset = false, done = false;
		char quote = 0;
		for (i += 9; i < n && !done; i++) {
			char ch = p[i];
			if (quote) {
				if (ch == quote)
					quote = 0;
			} else if (ch == '"' || ch == '\'') {
				quote = ch;
			} else if (ch == '[') {
				subset = true;
			} else if (ch == ']') {
				subset = false;
			} else if (ch == '>' && !subset) {
				done = true;
			} else if (subset && strncmp(p + i, "<!--", 4) == 0) {
				const char *end = strstr(p + i + 4, "-->");
				if (end == NULL)
					break;
				i = (size_t)(end - p) + 2;
			} else if (subset && strncmp(p + i, "<!ENTITY", 8) == 0) {
				ret = 1;
				goto out;
			}
		}
		if (!done)
			break;
	}
out:
	free(p);
	return ret;
}

static char *cat_dup(cat_pkg_t *p, const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d == NULL) {
		p->oom = true;
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	cat_strv_push(p, &p->owned, d);
	if (p->oom)
		return NULL;
	return d;
}

/* Trimmed copy of an xmlChar string, owned by the package. */
static char *cat_trimmed(cat_pkg_t *p, xmlChar *x)
{
	if (x == NULL)
		return NULL;
	const char *s = (const char *)x;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	char *d = cat_dup(p, s, n);
	xmlFree(x);
	return d;
}

static char *cat_attr(cat_pkg_t *p, xmlNodePtr node, const char *name)
{
	return cat_trimmed(p, xmlGetProp(node, (const xmlChar *)name));
}

static char *cat_text(cat_pkg_t *p, xmlNodePtr node)
{
	return cat_trimmed(p, xmlNodeGetContent(node));
}

static void cat_strv_push(cat_pkg_t *p, cat_strv_t *v, char *s)
{
	if (s == NULL)
		return;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 4;
		char **nv = realloc(v->v, cap * sizeof(*nv));
		if (nv == NULL) {
			p->oom = true;
			if (v == &p->owned)
				free(s);        /* nothing else will */
			return;
		}
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = s;
}

/* The two published forms of the SDP namespaces (DESIGN §2). */
static const char *const cat_ns_forms[] = {
	"http://schemas.microsoft.com/sms/2005/04/CorporatePublishing/",
	"http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/",
};

static bool cat_ns_is(const xmlChar *href, const char *schema)
{
	if (href == NULL)
		return false;
	for (size_t i = 0; i < sizeof(cat_ns_forms) / sizeof(cat_ns_forms[0]); i++) {
		size_t n = strlen(cat_ns_forms[i]);
		if (strncmp((const char *)href, cat_ns_forms[i], n) == 0 &&
		    strcmp((const char *)href + n, schema) == 0)
			return true;
	}
	return false;
}

/* The catalog namespace (smc) or the package namespace (sdp). */
static bool cat_ns_ours(const xmlChar *href)
{
	return cat_ns_is(href, "SoftwareDistributionPackage.xsd") ||
	       cat_ns_is(href, "SystemsManagementCatalog.xsd");
}

/* An element of ours with this local name: a same-named element of a
 * foreign namespace must not stand in for it (it could override an id). */
static bool cat_is_part(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE &&
	       strcmp((const char *)n->name, name) == 0 &&
	       n->ns != NULL && cat_ns_ours(n->ns->href);
}

static bool cat_is_uuid(const char *s)
{
	if (s == NULL || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static void cat_lower(char *s)
{
	for (; s != NULL && *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Every PackageID below node, at any depth: prerequisite lists nest them
 * in And/Or groups. Ids are kept even when they are not in this catalog. */
static void cat_collect_ids(cat_pkg_t *p, xmlNodePtr node, cat_strv_t *v)
{
	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (cat_is_part(n, "PackageID")) {
			char *id = cat_text(p, n);
			if (id == NULL || *id == '\0')
				continue;
			if (cat_is_uuid(id))
				cat_lower(id);
			cat_strv_push(p, v, id);
		} else {
			cat_collect_ids(p, n, v);
		}
	}
}

static void cat_properties(cat_pkg_t *p, xmlNodePtr node)
{
	char *s;
	if ((s = cat_attr(p, node, "PackageID")) != NULL)
		p->u.update_id = s;
	if ((s = cat_attr(p, node, "CreationDate")) != NULL) {
		/* Catalogs carry no separate release date. */
		p->u.creation_date = s;
		p->u.release_date = s;
	}
	if ((s = cat_attr(p, node, "VendorName")) != NULL)
		p->u.vendor = s;
	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (cat_is_part(n, "ProductName")) {
			cat_strv_push(p, &p->products, cat_text(p, n));
		} else if (cat_is_part(n, "MoreInfoUrl")) {
			if ((s = cat_text(p, n)) != NULL)
				p->u.more_info_url = s;
		} else if (cat_is_part(n, "SupportUrl")) {
			if ((s = cat_text(p, n)) != NULL)
				p->u.support_url = s;
		}
	}
}

static void cat_localized(cat_pkg_t *p, xmlNodePtr node)
{
	char *lang = NULL, *title = NULL, *desc = NULL;
	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (cat_is_part(n, "Language"))
			lang = cat_text(p, n);
		else if (cat_is_part(n, "Title"))
			title = cat_text(p, n);
		else if (cat_is_part(n, "Description"))
			desc = cat_text(p, n);
	}
	if (lang != NULL && *lang != '\0') {
		bool seen = false;
		for (size_t i = 0; i < p->languages.n; i++)
			seen |= strcasecmp(p->languages.v[i], lang) == 0;
		if (!seen)
			cat_strv_push(p, &p->languages, lang);
	}
	/* English wins; otherwise the first block seen. A repeated "en"
	 * block does not replace the first one. */
	bool is_en = lang != NULL && strcasecmp(lang, "en") == 0;
	if (!p->have_localized || (is_en && !p->title_is_en)) {
		p->have_localized = true;
		p->title_is_en = is_en;
		p->u.title = title ? title : (char *)protobuf_c_empty_string;
		p->u.description = desc ? desc : (char *)protobuf_c_empty_string;
	}
}

static void cat_update_data(cat_pkg_t *p, xmlNodePtr node)
{
	char *s;
	if ((s = cat_attr(p, node, "MsrcSeverity")) != NULL)
		p->u.severity = s;
	if ((s = cat_attr(p, node, "UpdateClassification")) != NULL)
		p->u.classification = s;
	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (cat_is_part(n, "KBArticleID")) {
			if ((s = cat_text(p, n)) != NULL)
				p->u.kb_article = s;
		} else if (cat_is_part(n, "SecurityBulletinID")) {
			if ((s = cat_text(p, n)) != NULL)
				p->u.security_bulletin = s;
		} else if (cat_is_part(n, "CveID")) {
			cat_strv_push(p, &p->cves, cat_text(p, n));
		}
	}
}

static void cat_installable(cat_pkg_t *p, xmlNodePtr node)
{
	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (!cat_is_part(n, "OriginFile"))
			continue;
		if (p->nfiles == p->capfiles) {
			size_t cap = p->capfiles ? p->capfiles * 2 : 2;
			Sitesync__UpdateFile *nf =
				realloc(p->files, cap * sizeof(*nf));
			if (nf == NULL) {
				p->oom = true;
				return;
			}
			p->files = nf;
			p->capfiles = cap;
		}
		Sitesync__UpdateFile *f = &p->files[p->nfiles++];
		sitesync__update_file__init(f);
		char *s;
		if ((s = cat_attr(p, n, "FileName")) != NULL)
			f->name = s;
		if ((s = cat_attr(p, n, "Digest")) != NULL)
			f->sha1 = s;
		if ((s = cat_attr(p, n, "OriginUri")) != NULL)
			f->url = s;
		if ((s = cat_attr(p, n, "Modified")) != NULL)
			f->modified = s;
		if ((s = cat_attr(p, n, "Size")) != NULL)
			f->size = strtoull(s, NULL, 10);
	}
}

static void cat_pkg_clear(cat_pkg_t *p)
{
	for (size_t i = 0; i < p->owned.n; i++)
		free(p->owned.v[i]);
	free(p->owned.v);
	free(p->products.v);
	free(p->languages.v);
	free(p->cves.v);
	free(p->supersedes.v);
	free(p->prereqs.v);
	free(p->bundled.v);
	free(p->files);
	free(p->file_ptrs);
}

/*
 * Make the package element carry every namespace in scope, so its
 * serialized form stands on its own once cut out of the catalog (the
 * prefixes are usually declared on the catalog root).
 */
static void cat_own_namespaces(xmlNodePtr node)
{
	xmlNsPtr *all = xmlGetNsList(node->doc, node);
	for (size_t k = 0; all != NULL && all[k] != NULL; k++) {
		bool declared = false;
		for (xmlNsPtr d = node->nsDef; d != NULL && !declared; d = d->next)
			declared = xmlStrEqual(d->prefix, all[k]->prefix);
		if (!declared)
			xmlNewNs(node, all[k]->href, all[k]->prefix);
	}
	xmlFree(all);
}

static int cat_package(cat_ctx_t *c, xmlNodePtr node)
{
	int ret = SS_EOK;
	xmlBufferPtr buf = NULL;
	cat_pkg_t p;
	memset(&p, 0, sizeof(p));
	sitesync__update_content__init(&p.u);
	p.u.source = "upstream";
	p.u.expired = false;

	for (xmlNodePtr n = node->children; n != NULL; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (cat_is_part(n, "Properties"))
			cat_properties(&p, n);
		else if (cat_is_part(n, "LocalizedProperties"))
			cat_localized(&p, n);
		else if (cat_is_part(n, "UpdateSpecificData"))
			cat_update_data(&p, n);
		else if (cat_is_part(n, "SupersededPackages"))
			cat_collect_ids(&p, n, &p.supersedes);
		else if (cat_is_part(n, "PrerequisitePackages"))
			cat_collect_ids(&p, n, &p.prereqs);
		else if (cat_is_part(n, "BundledPackages"))
			cat_collect_ids(&p, n, &p.bundled);
		else if (cat_is_part(n, "InstallableItem"))
			cat_installable(&p, n);
	}
	if (p.oom) {
		ret = SS_ENOMEM;
		cat_err(c, "%s: out of memory", c->name);
		goto fail;
	}
	/* The id keys everything downstream; a package without a usable
	 * one would poison the catalog, so the whole catalog is refused. */
	if (!cat_is_uuid(p.u.update_id)) {
		ret = SS_EXML;
		cat_err(c, "%s:%ld: package without a valid PackageID (%s)",
			c->name, xmlGetLineNo(node),
			*p.u.update_id ? p.u.update_id : "missing");
		goto fail;
	}
	cat_lower(p.u.update_id);

	cat_own_namespaces(node);
	buf = xmlBufferCreate();
	if (buf == NULL || xmlNodeDump(buf, node->doc, node, 0, 0) < 0) {
		ret = SS_ENOMEM;
		cat_err(c, "%s: cannot serialize package %s", c->name,
			p.u.update_id);
		goto fail;
	}
	p.u.original_xml = (char *)xmlBufferContent(buf);

	if (p.nfiles > 0) {
		p.file_ptrs = malloc(p.nfiles * sizeof(*p.file_ptrs));
		if (p.file_ptrs == NULL) {
			ret = SS_ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < p.nfiles; i++)
			p.file_ptrs[i] = &p.files[i];
	}
	p.u.n_files = p.nfiles;
	p.u.files = p.file_ptrs;
	p.u.n_products = p.products.n;
	p.u.products = p.products.v;
	p.u.n_languages = p.languages.n;
	p.u.languages = p.languages.v;
	p.u.n_cve_ids = p.cves.n;
	p.u.cve_ids = p.cves.v;
	p.u.n_supersedes = p.supersedes.n;
	p.u.supersedes = p.supersedes.v;
	p.u.n_prerequisites = p.prereqs.n;
	p.u.prerequisites = p.prereqs.v;
	p.u.n_bundled = p.bundled.n;
	p.u.bundled = p.bundled.v;

	ret = c->cb(&p.u, c->arg);
	if (ret != SS_EOK) {
		cat_err(c, "%s:%ld: stopped at package %s (%s)", c->name,
			xmlGetLineNo(node), p.u.update_id, ss_strerror(ret));
		goto fail;
	}
	c->stats.entries++;
fail:
	if (buf != NULL)
		xmlBufferFree(buf);
	cat_pkg_clear(&p);
	return ret;
}

static bool cat_declares_entities(cat_ctx_t *c, xmlTextReaderPtr r)
{
	xmlDocPtr doc = xmlTextReaderCurrentDoc(r);
	c->doc = doc;
	if (doc == NULL)
		return false;
	xmlDtdPtr dtds[2] = { doc->intSubset, doc->extSubset };
	for (int i = 0; i < 2; i++) {
		if (dtds[i] != NULL &&
		    (dtds[i]->entities != NULL || dtds[i]->pentities != NULL))
			return true;
	}
	return false;
}

static int cat_run(cat_ctx_t *c, xmlTextReaderPtr r)
{
	int ret = SS_EOK;
	bool seen_root = false;

	xmlTextReaderSetStructuredErrorHandler(r, cat_xml_error_cb, c);
	int rc = xmlTextReaderRead(r);
	while (rc == 1) {
		int type = xmlTextReaderNodeType(r);
		/* Second line of defence behind cat_prolog_check(): the
		 * internal subset is complete once the root element shows. */
		if (type == XML_READER_TYPE_ENTITY_REFERENCE ||
		    ((type == XML_READER_TYPE_DOCUMENT_TYPE ||
		      (!seen_root && type == XML_READER_TYPE_ELEMENT)) &&
		     cat_declares_entities(c, r))) {
			ret = SS_EXML;
			cat_err(c, "%s:%d: entity declarations are refused",
				c->name, xmlTextReaderGetParserLineNumber(r));
			goto fail;
		}
		if (type != XML_READER_TYPE_ELEMENT) {
			rc = xmlTextReaderRead(r);
			continue;
		}
		const char *local = (const char *)xmlTextReaderConstLocalName(r);
		int depth = xmlTextReaderDepth(r);
		const xmlChar *uri = xmlTextReaderConstNamespaceUri(r);
		bool ours = cat_ns_ours(uri);
		bool is_pkg = ours && local != NULL && strcmp(local, CAT_PKG) == 0;
		if (!seen_root) {
			seen_root = true;
			if (!is_pkg && (!ours || local == NULL || strcmp(local, CAT_ROOT) != 0)) {
				ret = SS_EXML;
				cat_err(c, "%s:%d: root element <%s> (namespace %s) is neither %s nor %s "
					"of the SDP catalog namespaces",
					c->name, xmlTextReaderGetParserLineNumber(r),
					local ? local : "?", uri ? (const char *)uri : "none",
					CAT_ROOT, CAT_PKG);
				goto fail;
			}
		}
		if (!is_pkg || depth > 1) {
			rc = xmlTextReaderRead(r);
			continue;
		}
		xmlNodePtr node = xmlTextReaderExpand(r);
		if (node == NULL) {
			rc = -1;
			break;
		}
		ret = cat_package(c, node);
		if (ret != SS_EOK)
			goto fail;
		rc = xmlTextReaderNext(r);
	}
	if (rc < 0) {
		ret = SS_EXML;
		if (!c->have_xml_error)
			cat_err(c, "%s:%d: malformed XML", c->name,
				xmlTextReaderGetParserLineNumber(r));
		goto fail;
	}
	if (!seen_root) {
		ret = SS_EXML;
		cat_err(c, "%s: no root element", c->name);
		goto fail;
	}
fail:
	return ret;
}

static int cat_parse_reader(cat_ctx_t *c, xmlTextReaderPtr r,
			    catalog_stats_t *stats)
{
	int ret;
	if (r == NULL) {
		cat_err(c, "%s: cannot create XML reader", c->name);
		ret = SS_ENOMEM;
		goto fail;
	}
	ret = cat_run(c, r);
fail:
	if (r != NULL)
		xmlFreeTextReader(r);
	if (c->doc != NULL)
		xmlFreeDoc(c->doc);
	c->doc = NULL;
	if (stats != NULL)
		*stats = c->stats;
	return ret;
}

int catalog_parse_memory(const char *buf, size_t len, catalog_entry_cb cb,
			 void *arg, catalog_stats_t *stats, char *err,
			 size_t errlen)
{
	cat_ctx_t c = { .name = "(memory)", .cb = cb, .arg = arg,
			.err = err, .errlen = errlen };
	pthread_once(&cat_init_once, xmlInitParser);
	c.stats.bytes = len;
	if (len > INT32_MAX) {
		cat_err(&c, "%s: catalog too large for a memory parse", c.name);
		return SS_EXML;
	}
	size_t scan = len < CAT_PROLOG_MAX ? len : CAT_PROLOG_MAX;
	if (cat_prolog_check((const unsigned char *)buf, scan) == 1) {
		cat_err(&c, "%s: entity declarations are refused", c.name);
		if (stats != NULL)
			*stats = c.stats;
		return SS_EXML;
	}
	xmlTextReaderPtr r = xmlReaderForMemory(buf, (int)len, NULL, NULL,
						CAT_XML_OPTIONS);
	return cat_parse_reader(&c, r, stats);
}

/* Parse an XML file; `name` is what messages call it. */
static int cat_parse_xml_file(const char *path, const char *name,
			      catalog_entry_cb cb, void *arg,
			      catalog_stats_t *stats, char *err, size_t errlen)
{
	int ret = SS_EOK;
	cat_ctx_t c = { .name = name, .cb = cb, .arg = arg,
			.err = err, .errlen = errlen };
	unsigned char *head = NULL;
	pthread_once(&cat_init_once, xmlInitParser);
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (f == NULL || fstat(fileno(f), &st) != 0) {
		ret = -errno;
		cat_err(&c, "%s: %s", name, strerror(errno));
		goto fail;
	}
	c.stats.bytes = (uint64_t)st.st_size;
	head = malloc(CAT_PROLOG_MAX);
	if (head == NULL) {
		ret = SS_ENOMEM;
		goto fail;
	}
	size_t n = fread(head, 1, CAT_PROLOG_MAX, f);
	if (ferror(f)) {
		ret = SS_EIO;
		cat_err(&c, "%s: read error", name);
		goto fail;
	}
	if (cat_prolog_check(head, n) == 1) {
		ret = SS_EXML;
		cat_err(&c, "%s: entity declarations are refused", name);
		goto fail;
	}
	free(head);
	head = NULL;
	if (lseek(fileno(f), 0, SEEK_SET) != 0) {
		ret = -errno;
		cat_err(&c, "%s: %s", name, strerror(errno));
		goto fail;
	}

	/* From our own descriptor rather than xmlReaderForFile(): libxml2
	 * would otherwise treat the name as a URI and transparently
	 * gunzip, neither of which a catalog needs (a gzip bomb would get
	 * past every size check). */
	xmlTextReaderPtr r = xmlReaderForFd(fileno(f), NULL, NULL,
					    CAT_XML_OPTIONS);
	ret = cat_parse_reader(&c, r, stats);
	fclose(f);
	return ret;
fail:
	free(head);
	if (f != NULL)
		fclose(f);
	if (stats != NULL)
		*stats = c.stats;
	return ret;
}

int catalog_parse_file(const char *path, catalog_entry_cb cb, void *arg,
		       catalog_stats_t *stats, char *err, size_t errlen)
{
	return catalog_parse_file_max(path, 0, cb, arg, stats, err, errlen);
}

int catalog_parse_file_max(const char *path, uint64_t max_bytes, catalog_entry_cb cb, void *arg,
		       catalog_stats_t *stats, char *err, size_t errlen)
{
	int ret = SS_EOK;
	char *tmp = NULL;
	char magic[4] = { 0 };
	if (stats != NULL)
		memset(stats, 0, sizeof(*stats));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	ssize_t got = read(fd, magic, sizeof(magic));
	close(fd);
	if (got != (ssize_t)sizeof(magic) || memcmp(magic, "MSCF", 4) != 0)
		return cat_parse_xml_file(path, path, cb, arg, stats, err,
					  errlen);

	/* A cabinet: extract the catalog next to nothing else of ours, parse
	 * it, and never leave the extracted copy behind. */
	const char *dir = getenv("TMPDIR");
	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if (asprintf(&tmp, "%s/sitesync-catalog-XXXXXX", dir) < 0) {
		tmp = NULL;
		ret = SS_ENOMEM;
		goto fail;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	close(fd);
	ret = cab_extract_first(path, tmp, max_bytes, err, errlen);
	if (ret != SS_EOK)
		goto fail;
	ret = cat_parse_xml_file(tmp, path, cb, arg, stats, err, errlen);
fail:
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	return ret;
}
