/*
 * [MS-WSUSSS] XML: SOAP response walk, update blob decoding and the
 * mapping of an update document to a catalog entry. The SOAP walk reads
 * from a file through the libxml2 reader, so a response of any length is
 * never held whole; only one element's text (one blob) is.
 */
#include "upstream/wsus_xml.h"

#include <ctype.h>
#include <libxml/xmlreader.h>
#include <mspack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/errcode.h"

/* No network, no DTD loading, no entity substitution. HUGE lifts
 * libxml2's 10 MB text-node cap: real blobs exceed it, and max_text
 * ([upstream] max_document) is our own bound. A DOCTYPE is refused outright. */
#define WSUS_XML_OPTIONS (XML_PARSE_NONET | XML_PARSE_HUGE)
#define WSUS_PATH_MAX 1024
#define WSUS_DEPTH_MAX 64

static pthread_once_t wsus_init_once = PTHREAD_ONCE_INIT;

bool wsus_guid_norm(char *id)
{
	if (id == NULL || strlen(id) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = id[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
			continue;
		}
		if (!isxdigit((unsigned char)c))
			return false;
		id[i] = (char)tolower((unsigned char)c);
	}
	return true;
}

/* ---- SOAP walk ---------------------------------------------------------- */

typedef struct {
	wsus_xml_cb cb;
	void *arg;
	wsus_fault_t *fault;
	char path[WSUS_PATH_MAX];
	size_t plen[WSUS_DEPTH_MAX];  /* path length before each level */
	int depth;                    /* levels below soap:Body */
	bool in_body;
	char *txt;
	size_t tlen, tcap;
	size_t max_text;
	char *err;
	size_t errlen;
} walk_t;

static int walk_text(walk_t *w, const char *s)
{
	size_t n = strlen(s);
	if (n > w->max_text - w->tlen) {
		ss_errf(w->err, w->errlen, "an element's text is over %zu bytes ([upstream] max_document)",
		        w->max_text);
		return SS_EXML;
	}
	if (w->tlen + n + 1 > w->tcap) {
		size_t cap = w->tcap ? w->tcap : 256;
		while (cap < w->tlen + n + 1)
			cap *= 2;
		char *nb = realloc(w->txt, cap);
		if (nb == NULL)
			return SS_ENOMEM;
		w->txt = nb;
		w->tcap = cap;
	}
	memcpy(w->txt + w->tlen, s, n);
	w->tlen += n;
	w->txt[w->tlen] = '\0';
	return SS_EOK;
}

static bool walk_is_fault(const walk_t *w)
{
	return strncmp(w->path, "Fault", 5) == 0 && (w->path[5] == '\0' || w->path[5] == '/');
}

static int walk_end(walk_t *w)
{
	const char *text = w->txt != NULL && w->tlen > 0 ? w->txt : "";
	int ret = SS_EOK;
	if (walk_is_fault(w)) {
		wsus_fault_t *f = w->fault;
		if (strcmp(w->path, "Fault/detail/ErrorCode") == 0)
			snprintf(f->code, sizeof(f->code), "%s", text);
		else if (strcmp(w->path, "Fault/detail/Message") == 0)
			snprintf(f->message, sizeof(f->message), "%s", text);
		else if (strcmp(w->path, "Fault/faultstring") == 0 && f->code[0] == '\0')
			snprintf(f->code, sizeof(f->code), "%s", text);
	} else {
		ret = w->cb(w->arg, w->path, text, w->tlen);
	}
	w->tlen = 0;
	w->depth--;
	w->path[w->plen[w->depth]] = '\0';
	return ret;
}

static int walk_start(walk_t *w, const char *name)
{
	if (w->depth >= WSUS_DEPTH_MAX) {
		ss_errf(w->err, w->errlen, "SOAP response nested too deep");
		return SS_EXML;
	}
	size_t at = strlen(w->path);
	int n = snprintf(w->path + at, sizeof(w->path) - at, "%s%s", at ? "/" : "", name);
	if (n < 0 || (size_t)n >= sizeof(w->path) - at) {
		ss_errf(w->err, w->errlen, "SOAP response path too long");
		return SS_EXML;
	}
	w->plen[w->depth++] = at;
	w->tlen = 0;
	if (walk_is_fault(w)) {
		w->fault->present = true;
		return SS_EOK;
	}
	return w->cb(w->arg, w->path, NULL, 0);
}

static int walk_reader(xmlTextReaderPtr r, size_t max_text, wsus_xml_cb cb, void *arg,
                       wsus_fault_t *fault, char *err, size_t errlen)
{
	wsus_fault_t dummy;
	if (fault == NULL)
		fault = &dummy;
	memset(fault, 0, sizeof(*fault));
	walk_t w = { .cb = cb, .arg = arg, .fault = fault, .err = err, .errlen = errlen,
	             .max_text = max_text ? max_text : WSUS_MAX_TEXT };
	int ret = SS_EOK;
	bool seen_body = false;
	if (r == NULL) {
		ss_errf(err, errlen, "cannot create an XML reader");
		return SS_ENOMEM;
	}
	int rc;
	while (ret == SS_EOK && (rc = xmlTextReaderRead(r)) == 1) {
		int type = xmlTextReaderNodeType(r);
		const char *name = (const char *)xmlTextReaderConstLocalName(r);
		switch (type) {
		case XML_READER_TYPE_DOCUMENT_TYPE:
		case XML_READER_TYPE_ENTITY_REFERENCE:
			ss_errf(err, errlen, "SOAP response declares or uses entities: refused");
			ret = SS_EXML;
			break;
		case XML_READER_TYPE_ELEMENT: {
			bool empty = xmlTextReaderIsEmptyElement(r);
			if (!w.in_body) {
				if (xmlTextReaderDepth(r) == 1 && name && strcmp(name, "Body") == 0 && !empty) {
					w.in_body = true;
					seen_body = true;
				}
				break;
			}
			ret = walk_start(&w, name ? name : "");
			if (ret == SS_EOK && empty)
				ret = walk_end(&w);
			break;
		}
		case XML_READER_TYPE_TEXT:
		case XML_READER_TYPE_CDATA:
		case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
			if (w.in_body && w.depth > 0) {
				const char *v = (const char *)xmlTextReaderConstValue(r);
				if (v != NULL)
					ret = walk_text(&w, v);
			}
			break;
		case XML_READER_TYPE_END_ELEMENT:
			if (!w.in_body)
				break;
			if (w.depth == 0)
				w.in_body = false;
			else
				ret = walk_end(&w);
			break;
		default:
			break;
		}
	}
	if (ret == SS_EOK && rc != 0) {
		const xmlError *e = xmlGetLastError();
		ss_errf(err, errlen, "malformed SOAP response%s%s", e && e->message ? ": " : "",
		        e && e->message ? e->message : "");
		if (err != NULL) {
			size_t n = strlen(err);
			if (n > 0 && err[n - 1] == '\n')
				err[n - 1] = '\0';
		}
		ret = SS_EXML;
	}
	if (ret == SS_EOK && !seen_body) {
		ss_errf(err, errlen, "not a SOAP response (no soap:Body)");
		ret = SS_EXML;
	}
	xmlFreeTextReader(r);
	free(w.txt);
	return ret;
}

int wsus_xml_walk_fd(int fd, size_t max_text, wsus_xml_cb cb, void *arg, wsus_fault_t *fault,
                     char *err, size_t errlen)
{
	pthread_once(&wsus_init_once, xmlInitParser);
	return walk_reader(xmlReaderForFd(fd, NULL, NULL, WSUS_XML_OPTIONS), max_text, cb, arg,
	                   fault, err, errlen);
}

int wsus_xml_walk_memory(const char *buf, size_t len, size_t max_text, wsus_xml_cb cb,
                         void *arg, wsus_fault_t *fault, char *err, size_t errlen)
{
	pthread_once(&wsus_init_once, xmlInitParser);
	if (len > (size_t)INT32_MAX) {
		ss_errf(err, errlen, "SOAP response too large for a memory parse");
		return SS_EXML;
	}
	return walk_reader(xmlReaderForMemory(buf, (int)len, NULL, NULL, WSUS_XML_OPTIONS),
	                   max_text, cb, arg, fault, err, errlen);
}

/* ---- blob decoding ------------------------------------------------------ */

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Whitespace is skipped; '=' ends the data. */
static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *o = malloc(len / 4 * 3 + 3);
	if (o == NULL)
		return SS_ENOMEM;
	size_t n = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '=')
			break;
		if (isspace(c))
			continue;
		int v = b64_val(c);
		if (v < 0) {
			free(o);
			return SS_ECAB;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[n++] = (uint8_t)(acc >> bits);
		}
	}
	*out = o;
	*outlen = n;
	return SS_EOK;
}

/* libmspack over memory: a "file name" is the address of a memfile_t. */
typedef struct {
	uint8_t *buf;
	size_t len, cap;
	size_t limit;             /* writes beyond it fail */
} memfile_t;

typedef struct {
	memfile_t *f;
	size_t pos;
} memhandle_t;

static struct mspack_file *mem_open(struct mspack_system *sys, const char *name, int mode)
{
	(void)sys;
	memhandle_t *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->f = (memfile_t *)(uintptr_t)name;
	if (mode == MSPACK_SYS_OPEN_WRITE)
		h->f->len = 0;
	else if (mode != MSPACK_SYS_OPEN_READ) {
		free(h);
		return NULL;
	}
	return (struct mspack_file *)h;
}

static void mem_close(struct mspack_file *file)
{
	free(file);
}

static int mem_read(struct mspack_file *file, void *buf, int bytes)
{
	memhandle_t *h = (memhandle_t *)file;
	if (bytes < 0)
		return -1;
	size_t left = h->pos < h->f->len ? h->f->len - h->pos : 0;
	size_t n = (size_t)bytes < left ? (size_t)bytes : left;
	memcpy(buf, h->f->buf + h->pos, n);
	h->pos += n;
	return (int)n;
}

static int mem_write(struct mspack_file *file, void *buf, int bytes)
{
	memhandle_t *h = (memhandle_t *)file;
	memfile_t *f = h->f;
	if (bytes < 0 || (size_t)bytes > f->limit - f->len)
		return -1;
	if (f->len + (size_t)bytes > f->cap) {
		size_t cap = f->cap ? f->cap : 65536;
		while (cap < f->len + (size_t)bytes)
			cap *= 2;
		uint8_t *nb = realloc(f->buf, cap);
		if (nb == NULL)
			return -1;
		f->buf = nb;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, buf, (size_t)bytes);
	f->len += (size_t)bytes;
	h->pos = f->len;
	return bytes;
}

static int mem_seek(struct mspack_file *file, off_t offset, int mode)
{
	memhandle_t *h = (memhandle_t *)file;
	off_t base = mode == MSPACK_SYS_SEEK_START ? 0 : mode == MSPACK_SYS_SEEK_CUR ?
	             (off_t)h->pos : (off_t)h->f->len;
	off_t to = base + offset;
	if (to < 0 || (size_t)to > h->f->len)
		return -1;
	h->pos = (size_t)to;
	return 0;
}

static off_t mem_tell(struct mspack_file *file)
{
	return (off_t)((memhandle_t *)file)->pos;
}

static void mem_message(struct mspack_file *file, const char *format, ...)
{
	(void)file;
	(void)format;
}

static void *mem_alloc(struct mspack_system *sys, size_t bytes)
{
	(void)sys;
	return malloc(bytes);
}

static void mem_free(void *p)
{
	free(p);
}

static void mem_copy(void *src, void *dest, size_t bytes)
{
	memmove(dest, src, bytes);
}

static struct mspack_system mem_system = {
	mem_open, mem_close, mem_read, mem_write, mem_seek, mem_tell,
	mem_message, mem_alloc, mem_free, mem_copy, NULL
};

/* UTF-16LE (BOM optional) to NUL-terminated UTF-8; NUL and lone surrogates refused. */
static int utf16le_to_utf8(const uint8_t *in, size_t len, char **out, size_t *outlen)
{
	if (len % 2 != 0)
		return SS_ECAB;
	size_t i = 0;
	if (len >= 2 && in[0] == 0xff && in[1] == 0xfe)
		i = 2;
	char *o = malloc(len / 2 * 3 + 1);
	if (o == NULL)
		return SS_ENOMEM;
	size_t n = 0;
	while (i < len) {
		uint32_t c = (uint32_t)in[i] | (uint32_t)in[i + 1] << 8;
		i += 2;
		if (c >= 0xd800 && c <= 0xdbff) {
			if (i + 2 > len)
				goto bad;
			uint32_t lo = (uint32_t)in[i] | (uint32_t)in[i + 1] << 8;
			if (lo < 0xdc00 || lo > 0xdfff)
				goto bad;
			i += 2;
			c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
		} else if ((c >= 0xdc00 && c <= 0xdfff) || c == 0) {
			goto bad;
		}
		if (c < 0x80) {
			o[n++] = (char)c;
		} else if (c < 0x800) {
			o[n++] = (char)(0xc0 | c >> 6);
			o[n++] = (char)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			o[n++] = (char)(0xe0 | c >> 12);
			o[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
			o[n++] = (char)(0x80 | (c & 0x3f));
		} else {
			o[n++] = (char)(0xf0 | c >> 18);
			o[n++] = (char)(0x80 | ((c >> 12) & 0x3f));
			o[n++] = (char)(0x80 | ((c >> 6) & 0x3f));
			o[n++] = (char)(0x80 | (c & 0x3f));
		}
	}
	o[n] = '\0';
	*out = o;
	*outlen = n;
	return SS_EOK;
bad:
	free(o);
	return SS_ECAB;
}

int wsus_blob_decode(const char *b64, size_t len, size_t max_text, char **xml,
                     size_t *xml_len, char *err, size_t errlen)
{
	memfile_t cabf = { 0 }, outf = { 0 };
	struct mscab_decompressor *d = NULL;
	struct mscabd_cabinet *cab = NULL;
	*xml = NULL;
	*xml_len = 0;
	int ret = b64_decode(b64, len, &cabf.buf, &cabf.len);
	if (ret != SS_EOK) {
		ss_errf(err, errlen, "compressed update blob: bad base64");
		goto out;
	}
	cabf.cap = cabf.len;
	cabf.limit = cabf.len;
	/* UTF-16 to UTF-8: at most 3 bytes out per 2 in, at least 1 per 2. */
	outf.limit = 2 * (max_text ? max_text : WSUS_MAX_TEXT);
	d = mspack_create_cab_decompressor(&mem_system);
	if (d == NULL) {
		ret = SS_ENOMEM;
		goto out;
	}
	cab = d->open(d, (char *)(uintptr_t)&cabf);
	if (cab == NULL) {
		ss_errf(err, errlen, "compressed update blob: not a cabinet (libmspack error %d)",
		        d->last_error(d));
		ret = SS_ECAB;
		goto out;
	}
	struct mscabd_file *f = cab->files;
	while (f != NULL && strcmp(f->filename, "blob") != 0)
		f = f->next;
	if (f == NULL) {
		ss_errf(err, errlen, "compressed update blob: the cabinet has no member 'blob'");
		ret = SS_ECAB;
		goto out;
	}
	if (f->length > outf.limit) {
		ss_errf(err, errlen, "compressed update blob: member of %u bytes is over the limit "
		        "([upstream] max_document)", f->length);
		ret = SS_ETOOBIG;
		goto out;
	}
	if (d->extract(d, f, (char *)(uintptr_t)&outf) != MSPACK_ERR_OK) {
		ss_errf(err, errlen, "compressed update blob: decompression failed (libmspack error %d)",
		        d->last_error(d));
		ret = SS_ECAB;
		goto out;
	}
	ret = utf16le_to_utf8(outf.buf, outf.len, xml, xml_len);
	if (ret == SS_ECAB)
		ss_errf(err, errlen, "compressed update blob: member 'blob' is not UTF-16LE text");
out:
	if (cab != NULL)
		d->close(d, cab);
	if (d != NULL)
		mspack_destroy_cab_decompressor(d);
	free(cabf.buf);
	free(outf.buf);
	return ret;
}

/* ---- update documents --------------------------------------------------- */

char *wsus_update_own(wsus_update_t *w, char *s)
{
	if (s == NULL)
		return NULL;
	if (w->n_owned == w->cap_owned) {
		size_t cap = w->cap_owned ? 2 * w->cap_owned : 16;
		char **nb = realloc(w->owned, cap * sizeof(char *));
		if (nb == NULL) {
			free(s);
			return NULL;
		}
		w->owned = nb;
		w->cap_owned = cap;
	}
	w->owned[w->n_owned++] = s;
	return s;
}

static char *own_dup(wsus_update_t *w, const char *s)
{
	return s ? wsus_update_own(w, strdup(s)) : NULL;
}

/* Append to a string vector whose array the update owns. */
static int strv_push(wsus_update_t *w, char ***v, size_t *n, const char *s)
{
	char *c = own_dup(w, s);
	if (c == NULL)
		return SS_ENOMEM;
	char **nb = realloc(*v, (*n + 1) * sizeof(char *));
	if (nb == NULL)
		return SS_ENOMEM;
	nb[(*n)++] = c;
	*v = nb;
	return SS_EOK;
}

void wsus_update_clear(wsus_update_t *w)
{
	for (size_t i = 0; i < w->n_owned; i++)
		free(w->owned[i]);
	free(w->owned);
	free(w->u.supersedes);
	free(w->u.prerequisites);
	free(w->u.bundled);
	free(w->u.products);
	free(w->u.cve_ids);
	for (size_t i = 0; i < w->u.n_files; i++)
		free(w->files[i]);
	free(w->files);
	free(w->cat_prereqs);
	free(w->req_prereqs);
	free(w->bundled_ids);
	memset(w, 0, sizeof(*w));
}

/* "2026-10-04T12:00:58.381Z", "...+02:00", or no zone (taken as UTC) →
 * "2026-10-04T10:00:58Z"; anything else is kept as given. */
static char *date_utc(wsus_update_t *w, const char *s)
{
	int Y, M, D, h = 0, m = 0, sec = 0, used = 0;
	if (s == NULL)
		return NULL;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &used) != 6) {
		if (sscanf(s, "%4d-%2d-%2d%n", &Y, &M, &D, &used) != 3)
			return own_dup(w, s);
	}
	const char *p = s + used;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			;
	long off = 0;
	if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1])) {
		int oh = 0, om = 0;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1)
			return own_dup(w, s);
		off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
	}
	struct tm tm = { .tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
	                 .tm_hour = h, .tm_min = m, .tm_sec = sec };
	time_t t = timegm(&tm) - off;
	struct tm out;
	if (gmtime_r(&t, &out) == NULL)
		return own_dup(w, s);
	char buf[32];
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &out);
	return own_dup(w, buf);
}

typedef struct {
	char *lang, *title, *desc;
} loc_t;

typedef struct {
	wsus_update_t *w;
	xmlTextReaderPtr r;
	const char *names[8];        /* local names of the open elements, depth 0..7 */
	loc_t *locs;
	size_t nlocs;
	char *default_lang;
	bool at_least_one_cat;       /* inside Prerequisites/AtLeastOne IsCategory="true" */
	Sitesync__UpdateFile *file;  /* the File being read */
} upd_t;

static char *attr(xmlTextReaderPtr r, const char *name)
{
	return (char *)xmlTextReaderGetAttribute(r, (const xmlChar *)name);
}

static const char *parent(const upd_t *p, int depth, int up)
{
	int d = depth - up;
	return d >= 0 && d < 8 ? p->names[d] : "";
}

static int guid_attr(upd_t *p, const char *name, char out[37])
{
	char *v = attr(p->r, name);
	bool ok = v != NULL && strlen(v) == 36;
	if (ok) {
		memcpy(out, v, 37);
		ok = wsus_guid_norm(out);
	}
	xmlFree(v);
	return ok ? SS_EOK : SS_EXML;
}

static int upd_identity(upd_t *p, int depth)
{
	wsus_update_t *w = p->w;
	char id[37];
	const char *par = parent(p, depth, 1), *gpar = parent(p, depth, 2);
	if (guid_attr(p, "UpdateID", id) != SS_EOK)
		return SS_EXML;
	if (depth == 1) {
		char *rev = attr(p->r, "RevisionNumber");
		w->revision = rev ? (uint32_t)strtoul(rev, NULL, 10) : 0;
		xmlFree(rev);
		w->u.update_id = own_dup(w, id);
		return w->u.update_id ? SS_EOK : SS_ENOMEM;
	}
	if (strcmp(par, "SupersededUpdates") == 0)
		return strv_push(w, &w->u.supersedes, &w->u.n_supersedes, id);
	if (strcmp(par, "Prerequisites") == 0 ||
	    (strcmp(par, "AtLeastOne") == 0 && strcmp(gpar, "Prerequisites") == 0)) {
		int ret = strv_push(w, &w->u.prerequisites, &w->u.n_prerequisites, id);
		/* Only inside the AtLeastOne IsCategory="true" last opened. */
		if (ret == SS_EOK && p->at_least_one_cat && strcmp(par, "AtLeastOne") == 0)
			ret = strv_push(w, &w->cat_prereqs, &w->n_cat_prereqs, id);
		if (ret == SS_EOK && strcmp(par, "Prerequisites") == 0)
			ret = strv_push(w, &w->req_prereqs, &w->n_req_prereqs, id);
		return ret;
	}
	if (strcmp(gpar, "BundledUpdates") == 0 || strcmp(par, "BundledUpdates") == 0) {
		int ret = strv_push(w, &w->u.bundled, &w->u.n_bundled, id);
		if (ret != SS_EOK)
			return ret;
		wsus_ident_t *nb = realloc(w->bundled_ids, (w->n_bundled_ids + 1) * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		w->bundled_ids = nb;
		char *rev = attr(p->r, "RevisionNumber");
		memcpy(nb[w->n_bundled_ids].id, id, 37);
		nb[w->n_bundled_ids].revision = rev ? (uint32_t)strtoul(rev, NULL, 10) : 0;
		xmlFree(rev);
		w->n_bundled_ids++;
	}
	return SS_EOK;
}

static int upd_properties(upd_t *p)
{
	wsus_update_t *w = p->w;
	char *v = attr(p->r, "UpdateType");
	snprintf(w->update_type, sizeof(w->update_type), "%s", v ? v : "");
	xmlFree(v);
	w->is_category = strcmp(w->update_type, "Category") == 0 ||
	                 strcmp(w->update_type, "Detectoid") == 0;
	v = attr(p->r, "PublicationState");
	w->u.expired = v != NULL && strcasecmp(v, "Expired") == 0;
	xmlFree(v);
	v = attr(p->r, "CreationDate");
	if (v != NULL) {
		w->u.creation_date = date_utc(w, v);
		w->u.release_date = w->u.creation_date;
	}
	xmlFree(v);
	v = attr(p->r, "MsrcSeverity");
	if (v != NULL)
		w->u.severity = own_dup(w, v);
	xmlFree(v);
	v = attr(p->r, "DefaultPropertiesLanguage");
	if (v != NULL)
		p->default_lang = own_dup(w, v);
	xmlFree(v);
	return SS_EOK;
}

static int upd_file(upd_t *p)
{
	wsus_update_t *w = p->w;
	if (w->u.n_files == w->cap_files) {
		size_t cap = w->cap_files ? 2 * w->cap_files : 4;
		Sitesync__UpdateFile **nb = realloc(w->files, cap * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		w->files = nb;
		w->cap_files = cap;
	}
	Sitesync__UpdateFile *f = malloc(sizeof(*f));
	if (f == NULL)
		return SS_ENOMEM;
	sitesync__update_file__init(f);
	w->files[w->u.n_files++] = f;
	w->u.files = w->files;
	char *v = attr(p->r, "FileName");
	if (v)
		f->name = own_dup(w, v);
	xmlFree(v);
	v = attr(p->r, "Size");
	if (v)
		f->size = strtoull(v, NULL, 10);
	xmlFree(v);
	v = attr(p->r, "Modified");
	if (v)
		f->modified = date_utc(w, v);
	xmlFree(v);
	char *alg = attr(p->r, "DigestAlgorithm");
	v = attr(p->r, "Digest");
	if (v) {
		if (alg != NULL && strcasecmp(alg, "SHA256") == 0)
			f->sha256 = own_dup(w, v);
		else
			f->sha1 = own_dup(w, v);
	}
	xmlFree(v);
	xmlFree(alg);
	p->file = f;
	return SS_EOK;
}

/* The text of the current element (reads to its end). */
static char *upd_text(upd_t *p)
{
	xmlChar *t = xmlTextReaderReadString(p->r);
	char *c = own_dup(p->w, t ? (const char *)t : "");
	xmlFree(t);
	return c;
}

static int upd_element(upd_t *p, int depth, const char *name)
{
	wsus_update_t *w = p->w;
	const char *par = parent(p, depth, 1);
	if (strcmp(name, "UpdateIdentity") == 0)
		return upd_identity(p, depth);
	if (depth == 1 && strcmp(name, "Properties") == 0)
		return upd_properties(p);
	if (strcmp(par, "Properties") == 0) {
		if (strcmp(name, "KBArticleID") == 0)
			w->u.kb_article = upd_text(p);
		else if (strcmp(name, "SecurityBulletinID") == 0)
			w->u.security_bulletin = upd_text(p);
		else if (strcmp(name, "CveID") == 0) {
			char *c = upd_text(p);
			if (c != NULL) {
				char **nb = realloc(w->u.cve_ids, (w->u.n_cve_ids + 1) * sizeof(char *));
				if (nb == NULL)
					return SS_ENOMEM;
				nb[w->u.n_cve_ids++] = c;
				w->u.cve_ids = nb;
			}
		} else if (strcmp(name, "SupportUrl") == 0 && w->u.support_url == NULL)
			w->u.support_url = upd_text(p);
		return SS_EOK;
	}
	if (strcmp(name, "LocalizedProperties") == 0) {
		loc_t *nb = realloc(p->locs, (p->nlocs + 1) * sizeof(*nb));
		if (nb == NULL)
			return SS_ENOMEM;
		p->locs = nb;
		memset(&p->locs[p->nlocs++], 0, sizeof(loc_t));
		return SS_EOK;
	}
	if (strcmp(par, "LocalizedProperties") == 0 && p->nlocs > 0) {
		loc_t *l = &p->locs[p->nlocs - 1];
		if (strcmp(name, "Language") == 0)
			l->lang = upd_text(p);
		else if (strcmp(name, "Title") == 0)
			l->title = upd_text(p);
		else if (strcmp(name, "Description") == 0)
			l->desc = upd_text(p);
		else if (strcmp(name, "MoreInfoUrl") == 0 && w->u.more_info_url == NULL)
			w->u.more_info_url = upd_text(p);
		return SS_EOK;
	}
	if (strcmp(name, "AtLeastOne") == 0 && strcmp(par, "Prerequisites") == 0) {
		char *v = attr(p->r, "IsCategory");
		p->at_least_one_cat = v != NULL && strcasecmp(v, "true") == 0;
		xmlFree(v);
		return SS_EOK;
	}
	if (strcmp(name, "File") == 0 && strcmp(par, "Files") == 0)
		return upd_file(p);
	if (strcmp(name, "AdditionalDigest") == 0 && p->file != NULL) {
		char *alg = attr(p->r, "Algorithm");
		bool sha256 = alg != NULL && strcasecmp(alg, "SHA256") == 0;
		xmlFree(alg);
		if (sha256)
			p->file->sha256 = upd_text(p);
		return SS_EOK;
	}
	if (strcmp(name, "CategoryInformation") == 0) {
		char *v = attr(p->r, "CategoryType");
		snprintf(w->category_type, sizeof(w->category_type), "%s", v ? v : "");
		xmlFree(v);
	}
	return SS_EOK;
}

static void upd_pick_language(upd_t *p, const char *const *langs, size_t nlangs)
{
	loc_t *pick = NULL;
	for (size_t k = 0; k < nlangs && pick == NULL; k++)
		for (size_t i = 0; i < p->nlocs && pick == NULL; i++)
			if (p->locs[i].lang && strcasecmp(p->locs[i].lang, langs[k]) == 0)
				pick = &p->locs[i];
	for (size_t i = 0; i < p->nlocs && pick == NULL; i++)
		if (p->locs[i].lang && p->default_lang && strcasecmp(p->locs[i].lang, p->default_lang) == 0)
			pick = &p->locs[i];
	if (pick == NULL && p->nlocs > 0)
		pick = &p->locs[0];
	if (pick != NULL) {
		p->w->u.title = pick->title;
		p->w->u.description = pick->desc;
	}
}

int wsus_update_parse(const char *xml, size_t len, const char *const *langs, size_t nlangs,
                      wsus_update_t *out, char *err, size_t errlen)
{
	pthread_once(&wsus_init_once, xmlInitParser);
	memset(out, 0, sizeof(*out));
	sitesync__update_content__init(&out->u);
	upd_t p = { .w = out };
	int ret = SS_EOK;
	if (len > (size_t)INT32_MAX) {
		ss_errf(err, errlen, "update document too large");
		return SS_ETOOBIG;
	}
	p.r = xmlReaderForMemory(xml, (int)len, NULL, "UTF-8", WSUS_XML_OPTIONS);
	if (p.r == NULL)
		return SS_ENOMEM;
	int rc;
	while (ret == SS_EOK && (rc = xmlTextReaderRead(p.r)) == 1) {
		int type = xmlTextReaderNodeType(p.r);
		if (type == XML_READER_TYPE_DOCUMENT_TYPE || type == XML_READER_TYPE_ENTITY_REFERENCE) {
			ss_errf(err, errlen, "update document declares or uses entities: refused");
			ret = SS_EXML;
			break;
		}
		if (type != XML_READER_TYPE_ELEMENT)
			continue;
		int depth = xmlTextReaderDepth(p.r);
		const char *name = (const char *)xmlTextReaderConstLocalName(p.r);
		if (name == NULL)
			continue;
		if (depth == 0 && strcmp(name, "Update") != 0) {
			ss_errf(err, errlen, "not an update document (root %.40s)", name);
			ret = SS_EXML;
			break;
		}
		/* Local names are interned in the reader's dictionary: stable. */
		if (depth < 8)
			p.names[depth] = name;
		ret = upd_element(&p, depth, name);
		if (ret == SS_EXML)
			ss_errf(err, errlen, "update document: bad UpdateIdentity under %s",
			        parent(&p, depth, 1));
	}
	if (ret == SS_EOK && rc != 0) {
		ss_errf(err, errlen, "update document is not well-formed XML");
		ret = SS_EXML;
	}
	if (ret == SS_EOK && out->u.update_id == NULL) {
		ss_errf(err, errlen, "update document without an UpdateIdentity");
		ret = SS_EXML;
	}
	if (ret == SS_EOK) {
		upd_pick_language(&p, langs, nlangs);
		char *x = malloc(len + 1);
		if (x == NULL) {
			ret = SS_ENOMEM;
		} else {
			memcpy(x, xml, len);
			x[len] = '\0';
			out->u.original_xml = wsus_update_own(out, x);
			out->u.source = "upstream";
		}
	}
	xmlFreeTextReader(p.r);
	free(p.locs);
	if (ret != SS_EOK)
		wsus_update_clear(out);
	return ret;
}
