/* Configuration key table, INI parsing and validation. */
#include "common/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "common/errcode.h"
#include "common/log.h"

typedef enum { CF_STR, CF_INT, CF_BOOL } conf_type_t;

typedef struct {
	const char *section;
	const char *key;
	conf_type_t type;
	size_t offset;
	const char *def;          /* default as text, NULL = unset */
	bool reloadable;          /* SIGHUP may change it */
} conf_key_t;

#define K(sec, key, type, field, def, rl) \
	{ sec, key, type, offsetof(conf_t, field), def, rl }

static const conf_key_t conf_keys[] = {
	K("site", "code", CF_STR, site_code, NULL, false),
	K("site", "state_dir", CF_STR, state_dir, "/var/lib/sitesync", false),
	K("database", "conninfo", CF_STR, db_conninfo, NULL, false),
	K("tls", "ca", CF_STR, tls_ca, NULL, true),
	K("tls", "cert", CF_STR, tls_cert, NULL, true),
	K("tls", "key", CF_STR, tls_key, NULL, true),
	K("listen", "address", CF_STR, listen_address, NULL, false),
	K("listen", "max_pending", CF_INT, max_pending, "256", true),
	K("listen", "max_pending_per_address", CF_INT, max_pending_addr, "16", true),
	K("listen", "handshake_timeout", CF_INT, handshake_timeout, "10", true),
	K("parent", "address", CF_STR, parent_address, NULL, false),
	K("parent", "mode", CF_STR, parent_mode, "connected", false),
	K("parent", "code", CF_STR, parent_code, NULL, false),
	K("upstream", "url", CF_STR, upstream_url, NULL, true),
	K("upstream", "kind", CF_STR, upstream_kind, "catalog", true),
	K("upstream", "max_document", CF_INT, upstream_max_document, "134217728", true),
	K("upstream", "ca", CF_STR, upstream_ca, NULL, true),
	K("upstream", "proxy", CF_STR, upstream_proxy, NULL, true),
	K("upstream", "cert", CF_STR, upstream_cert, NULL, true),
	K("upstream", "key", CF_STR, upstream_key, NULL, true),
	K("upstream", "connect_timeout", CF_INT, upstream_connect_timeout, "30", true),
	K("upstream", "timeout", CF_INT, upstream_timeout, "600", true),
	K("upstream", "max_entry_bytes", CF_INT, max_entry_bytes, "67108864", true),
	K("upstream", "max_removal_percent", CF_INT, max_removal_percent, "50", true),
	K("upstream", "max_catalog_mib", CF_INT, upstream_max_mib, "1024", true),
	K("schedule", "cron", CF_STR, schedule_cron, NULL, true),
	K("schedule", "utc", CF_BOOL, schedule_utc, "false", true),
	K("schedule", "retry_minutes", CF_INT, retry_minutes, "60", true),
	K("http", "listen", CF_STR, http_listen, NULL, false),
	K("http", "max_header_bytes", CF_INT, http_max_header, "8192", false),
	K("http", "max_body_bytes", CF_INT, http_max_body, "4096", false),
	K("http", "timeout", CF_INT, http_timeout, "10", false),
	K("http", "max_connections", CF_INT, http_max_conns, "64", false),
	K("control", "socket", CF_STR, control_socket, "/run/sitesync/control.sock", false),
	K("log", "sync_log", CF_STR, sync_log, NULL, true),
	K("log", "level", CF_STR, log_level, "info", true),
	K("replication", "heartbeat_seconds", CF_INT, heartbeat_seconds, "10", true),
	K("replication", "heartbeat_timeout", CF_INT, heartbeat_timeout, "30", true),
	K("replication", "poll_seconds", CF_INT, poll_seconds, "60", true),
	K("replication", "max_frame", CF_INT, max_frame, "16777216", true),
	K("replication", "batch_entries", CF_INT, batch_entries, "1000", true),
	K("replication", "workers", CF_INT, workers, "4", false),
	K("replication", "reconnect_max", CF_INT, reconnect_max, "60", true),
	K("replication", "keep_versions", CF_INT, keep_versions, "100", true),
	K("replication", "max_concurrent_pulls", CF_INT, max_pulls, "16", true),
	K("replication", "spool_max_mb", CF_INT, spool_max_mb, "4096", true),
	K("replication", "rate_limit_kib", CF_INT, rate_limit_kib, "0", true),
	K("replication", "request_wave", CF_INT, wave_size, "25", true),
	K("replication", "request_wave_ms", CF_INT, wave_ms, "100", true),
	K("replication", "apply_while_receiving", CF_BOOL, apply_receiving, "false", true),
	K("replication", "serve_while_producing", CF_BOOL, serve_producing, "true", true),
	K("status", "stale_seconds", CF_INT, stale_seconds, "3600", true),
	K("status", "cert_warning_days", CF_INT, cert_warning_days, "30", true),
	K("status", "sync_history_rows", CF_INT, sync_history_rows, "10000", true),
	K("status", "refusal_log_seconds", CF_INT, refusal_log_seconds, "60", true),
	K("status", "messages_keep", CF_INT, messages_keep, "100000", true),
	K("status", "messages_days", CF_INT, messages_days, "90", true),
	K("status", "relay_messages", CF_INT, relay_messages, "5", true),
	K("alerts", "command", CF_STR, alert_command, NULL, true),
	K("children", "approved", CF_STR, children, NULL, true),
	K("children", "pending_max", CF_INT, pending_max, "32", true),
	K("trust", "signing_key", CF_STR, trust_signing_key, NULL, false),
	K("trust", "public_key", CF_STR, trust_public_key, NULL, false),
	K("trust", "next_public_key", CF_STR, trust_next_key, NULL, false),
	K("trust", "allow_unsigned", CF_BOOL, trust_allow_unsigned, "false", false),
};

#define N_KEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

typedef struct {
	conf_t *conf;
	char *err;
	size_t errlen;
	int failed;
} conf_parse_t;

static int conf_set(conf_t *c, const conf_key_t *k, const char *value,
                    char *err, size_t errlen)
{
	char *base = (char *)c;
	switch (k->type) {
	case CF_STR: {
		char **dst = (char **)(base + k->offset);
		free(*dst);
		*dst = strdup(value);
		if (*dst == NULL)
			return SS_ENOMEM;
		return SS_EOK;
	}
	case CF_INT: {
		char *end = NULL;
		errno = 0;
		long v = strtol(value, &end, 10);
		if (errno || end == value || *end != '\0' || v < 0 || v > 2147483647L) {
			snprintf(err, errlen, "[%s] %s: '%s' is not a non-negative integer",
			         k->section, k->key, value);
			return SS_ECONFIG;
		}
		*(int *)(base + k->offset) = (int)v;
		return SS_EOK;
	}
	case CF_BOOL: {
		bool *dst = (bool *)(base + k->offset);
		if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") ||
		    !strcmp(value, "1") || !strcasecmp(value, "on"))
			*dst = true;
		else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
		         !strcmp(value, "0") || !strcasecmp(value, "off"))
			*dst = false;
		else {
			snprintf(err, errlen, "[%s] %s: '%s' is not a boolean",
			         k->section, k->key, value);
			return SS_ECONFIG;
		}
		return SS_EOK;
	}
	}
	return SS_EINVAL;
}

static bool conf_guid(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool conf_language(const char *s, size_t n)
{
	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

/*
 * A [source] selection key: a comma-separated list of category ids as
 * `products list` (and the like) shows them, each trimmed, none empty;
 * classifications are GUIDs (stored lower case, as upstream ids are
 * compared), languages codes such as en or pt-BR. Returns the list
 * rejoined without blanks, or NULL with err set.
 */
static char *conf_source_ids(const char *sname, const char *key, const char *value,
                             char *err, size_t errlen)
{
	size_t len = strlen(value);
	char *out = malloc(len + 1);
	if (out == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t o = 0, count = 0;
	const char *p = value;
	for (;;) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && isspace((unsigned char)*p))
			p++;
		const char *e = end;
		while (e > p && isspace((unsigned char)e[-1]))
			e--;
		size_t n = (size_t)(e - p);
		const char *why = n == 0 ? "an empty id" : n > 200 ? "an id over 200 characters" :
		                  ++count > CONF_SOURCE_MAX_IDS ? "more than 256 ids" :
		                  strcmp(key, "classifications") == 0 && !conf_guid(p, n) ?
		                  "an id that is not a GUID" :
		                  strcmp(key, "languages") == 0 && !conf_language(p, n) ?
		                  "a code that is not a language (e.g. en, pt-BR)" : NULL;
		if (why != NULL) {
			snprintf(err, errlen, "[source %s] %s: %s in '%.80s' (a comma-separated list)",
			         sname, key, why, value);
			free(out);
			return NULL;
		}
		if (o > 0)
			out[o++] = ',';
		for (size_t i = 0; i < n; i++)
			out[o++] = strcmp(key, "classifications") == 0 ?
			           (char)tolower((unsigned char)p[i]) : p[i];
		if (*end == '\0')
			break;
		p = end + 1;
	}
	out[o] = '\0';
	return out;
}

/* [source NAME] key = value: further catalogs of the top site. */
static int conf_source_key(conf_parse_t *p, const char *sname, const char *name,
                           const char *value)
{
	conf_t *c = p->conf;
	size_t n = strlen(sname);
	bool ok = n > 0 && n <= 32;
	for (size_t i = 0; ok && i < n; i++)
		ok = (sname[i] >= 'a' && sname[i] <= 'z') || (sname[i] >= '0' && sname[i] <= '9') ||
		     sname[i] == '-' || sname[i] == '_';
	if (!ok || strcmp(sname, "upstream") == 0) {
		snprintf(p->err, p->errlen, "[source %s]: a source name is 1-32 of a-z, 0-9, - and _ "
		         "(and not 'upstream')", sname);
		p->failed = SS_ECONFIG;
		return 0;
	}
	conf_source_t *src = NULL;
	for (size_t i = 0; i < c->n_sources; i++)
		if (strcmp(c->sources[i].name, sname) == 0)
			src = &c->sources[i];
	if (src == NULL) {
		if (c->n_sources == CONF_MAX_SOURCES) {
			snprintf(p->err, p->errlen, "at most %d [source NAME] sections", CONF_MAX_SOURCES);
			p->failed = SS_ECONFIG;
			return 0;
		}
		src = &c->sources[c->n_sources++];
		if ((src->name = strdup(sname)) == NULL) {
			p->failed = SS_ENOMEM;
			return 0;
		}
	}
	char **dst = !strcmp(name, "url") ? &src->url : !strcmp(name, "ca") ? &src->ca :
	             !strcmp(name, "proxy") ? &src->proxy : NULL;
	char **sel = !strcmp(name, "products") ? &src->products :
	             !strcmp(name, "classifications") ? &src->classifications :
	             !strcmp(name, "languages") ? &src->languages : NULL;
	if (sel != NULL) {
		char *ids = conf_source_ids(sname, name, value, p->err, p->errlen);
		if (ids == NULL) {
			p->failed = SS_ECONFIG;
			return 0;
		}
		free(*sel);
		*sel = ids;
		return 1;
	}
	if (dst == NULL) {
		snprintf(p->err, p->errlen, "unknown key '%s' in section [source %s] (url, ca, proxy, "
		         "products, classifications, languages)", name, sname);
		p->failed = SS_ECONFIG;
		return 0;
	}
	free(*dst);
	if ((*dst = strdup(value)) == NULL) {
		p->failed = SS_ENOMEM;
		return 0;
	}
	return 1;
}

static int conf_ini_cb(void *user, const char *section, const char *name,
                       const char *value)
{
	conf_parse_t *p = user;
	if (p->failed)
		return 0;
	if (strncmp(section, "source ", 7) == 0)
		return conf_source_key(p, section + 7, name, value);
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].key, name) == 0) {
			int ret = conf_set(p->conf, &conf_keys[i], value, p->err, p->errlen);
			if (ret != SS_EOK) {
				if (ret == SS_ENOMEM)
					snprintf(p->err, p->errlen, "out of memory");
				p->failed = ret;
				return 0;
			}
			return 1;
		}
	}
	snprintf(p->err, p->errlen, "unknown key '%s' in section [%s]", name, section);
	p->failed = SS_ECONFIG;
	return 0;
}

bool conf_site_code_valid(const char *code)
{
	if (code == NULL || strlen(code) != 3)
		return false;
	for (int i = 0; i < 3; i++)
		if (!(isupper((unsigned char)code[i]) || isdigit((unsigned char)code[i])))
			return false;
	return true;
}

/* An entry's Batch: its id, revision and the message and frame headers. */
#define CONF_ENTRY_FRAME_SLACK (64u * 1024u)

size_t conf_stream_frame_limit(const conf_t *c)
{
	size_t entry = (size_t)c->max_entry_bytes + CONF_ENTRY_FRAME_SLACK;
	return entry > (size_t)c->max_frame ? entry : (size_t)c->max_frame;
}

bool conf_is_top(const conf_t *c)
{
	return c->parent_address == NULL &&
	       strcmp(c->parent_mode, "disconnected") != 0;
}

int conf_validate(const conf_t *c, char *err, size_t errlen)
{
	if (c->site_code == NULL) {
		snprintf(err, errlen, "[site] code is required");
		return SS_ECONFIG;
	}
	if (!conf_site_code_valid(c->site_code)) {
		snprintf(err, errlen, "[site] code '%s' must be 3 upper-case letters or digits",
		         c->site_code);
		return SS_ECONFIG;
	}
	if (c->db_conninfo == NULL) {
		snprintf(err, errlen, "[database] conninfo is required");
		return SS_ECONFIG;
	}
	if (strcmp(c->parent_mode, "connected") != 0 &&
	    strcmp(c->parent_mode, "disconnected") != 0) {
		snprintf(err, errlen, "[parent] mode must be 'connected' or 'disconnected', not '%s'",
		         c->parent_mode);
		return SS_ECONFIG;
	}
	if (strcmp(c->parent_mode, "connected") == 0 && c->parent_address &&
	    c->upstream_url) {
		snprintf(err, errlen, "[upstream] url is for the top site only; this site has a [parent]");
		return SS_ECONFIG;
	}
	if (strcmp(c->upstream_kind, "catalog") != 0 && strcmp(c->upstream_kind, "wsus") != 0) {
		snprintf(err, errlen, "[upstream] kind must be 'catalog' or 'wsus', not '%s'",
		         c->upstream_kind);
		return SS_ECONFIG;
	}
	if (strcmp(c->upstream_kind, "wsus") == 0 && c->upstream_url &&
	    strncmp(c->upstream_url, "http://", 7) != 0 && strncmp(c->upstream_url, "https://", 8) != 0) {
		snprintf(err, errlen, "[upstream] kind = wsus needs an http:// or https:// url "
		         "(the server root, e.g. https://sws.update.microsoft.com)");
		return SS_ECONFIG;
	}
	for (size_t i = 0; i < c->n_sources; i++) {
		const conf_source_t *src = &c->sources[i];
		if (c->upstream_url == NULL) {
			snprintf(err, errlen, "[source %s] needs [upstream] url: it is merged into the "
			         "upstream's catalog", src->name);
			return SS_ECONFIG;
		}
		if (src->url == NULL || (strncmp(src->url, "http://", 7) != 0 &&
		                         strncmp(src->url, "https://", 8) != 0 &&
		                         strncmp(src->url, "file://", 7) != 0)) {
			snprintf(err, errlen, "[source %s] url must be an http://, https:// or file:// "
			         "catalog", src->name);
			return SS_ECONFIG;
		}
	}
	if (c->upstream_max_document < 65536) {
		snprintf(err, errlen, "[upstream] max_document must be at least 65536 bytes, not %d",
		         c->upstream_max_document);
		return SS_ECONFIG;
	}
	bool disconnected = strcmp(c->parent_mode, "disconnected") == 0;
	if ((c->listen_address || c->parent_address || disconnected) &&
	    (!c->tls_ca || !c->tls_cert || !c->tls_key)) {
		/* A disconnected site needs the CA too: it tells its hierarchy's bundles. */
		snprintf(err, errlen, "[tls] ca, cert and key are required when [listen] or [parent] is set "
		         "or [parent] mode is disconnected");
		return SS_ECONFIG;
	}
	if (log_level_valid(c->log_level) == false) {
		snprintf(err, errlen, "[log] level '%s' must be error, warning, notice, info or debug",
		         c->log_level);
		return SS_ECONFIG;
	}
	if (c->heartbeat_seconds < 1 || c->heartbeat_timeout <= c->heartbeat_seconds) {
		snprintf(err, errlen, "[replication] heartbeat_timeout must exceed heartbeat_seconds (>= 1)");
		return SS_ECONFIG;
	}
	if (c->max_entry_bytes < 65536) {
		snprintf(err, errlen, "[upstream] max_entry_bytes must be >= 65536");
		return SS_ECONFIG;
	}
	if (c->spool_max_mb < 1) {
		snprintf(err, errlen, "[replication] spool_max_mb must be >= 1");
		return SS_ECONFIG;
	}
	if (c->max_pulls < 1 || c->wave_size < 1) {
		snprintf(err, errlen, "[replication] max_concurrent_pulls and request_wave must be >= 1");
		return SS_ECONFIG;
	}
	if (c->max_frame < 65536 || c->batch_entries < 1 || c->workers < 2 ||
	    c->poll_seconds < 1 || c->reconnect_max < 1) {
		snprintf(err, errlen, "[replication] max_frame >= 65536, batch_entries >= 1, workers >= 2, poll_seconds and reconnect_max >= 1");
		return SS_ECONFIG;
	}
	/* A child pins its parent: any site of the hierarchy holds a valid
	 * certificate, so the address alone does not say who answers there. */
	if (c->parent_address && strcmp(c->parent_mode, "connected") == 0 && c->parent_code == NULL) {
		snprintf(err, errlen, "[parent] code is required when [parent] address is set: the site "
		         "code of the parent this site accepts (its certificate's common name)");
		return SS_ECONFIG;
	}
	if (c->parent_code && !conf_site_code_valid(c->parent_code)) {
		snprintf(err, errlen, "[parent] code '%s' must be 3 upper-case letters or digits",
		         c->parent_code);
		return SS_ECONFIG;
	}
	if (c->parent_code && c->site_code && strcmp(c->parent_code, c->site_code) == 0) {
		snprintf(err, errlen, "[parent] code '%s' is this site's own code", c->parent_code);
		return SS_ECONFIG;
	}
	if (!conf_is_top(c) && c->trust_public_key == NULL && !c->trust_allow_unsigned) {
		snprintf(err, errlen, "[trust] public_key is required below the top site (the "
		         "hierarchy's Ed25519 public key); set [trust] allow_unsigned = true to run "
		         "without checking catalog signatures");
		return SS_ECONFIG;
	}
	if (c->sync_history_rows < 10) {
		snprintf(err, errlen, "[status] sync_history_rows must be >= 10");
		return SS_ECONFIG;
	}
	if (c->relay_messages < 0 || c->relay_messages > 16) {
		snprintf(err, errlen, "[status] relay_messages must be 0 to 16");
		return SS_ECONFIG;
	}
	if (c->pending_max < 0 || c->pending_max > 1024) {
		snprintf(err, errlen, "[children] pending_max must be 0 to 1024");
		return SS_ECONFIG;
	}
	if (c->max_removal_percent < 0 || c->max_removal_percent > 100) {
		snprintf(err, errlen, "[upstream] max_removal_percent must be 0 to 100");
		return SS_ECONFIG;
	}
	if (c->max_pending < 1 || c->max_pending_addr < 1 || c->handshake_timeout < 1) {
		snprintf(err, errlen, "[listen] max_pending, max_pending_per_address and handshake_timeout must be >= 1");
		return SS_ECONFIG;
	}
	if (c->upstream_max_mib < 1 || c->http_max_header < 1024 || c->http_max_body < 0 ||
	    c->http_timeout < 1 || c->http_max_conns < 1) {
		snprintf(err, errlen, "[upstream] max_catalog_mib >= 1, [http] max_header_bytes >= 1024, "
		         "timeout and max_connections >= 1");
		return SS_ECONFIG;
	}
	if (c->messages_keep < 100 || c->messages_days < 1) {
		snprintf(err, errlen, "[status] messages_keep >= 100 and messages_days >= 1");
		return SS_ECONFIG;
	}
	if (c->trust_signing_key && !conf_is_top(c)) {
		snprintf(err, errlen, "[trust] signing_key belongs to the top site only");
		return SS_ECONFIG;
	}
	if (c->children) {
		char *copy = strdup(c->children);
		if (copy == NULL)
			return SS_ENOMEM;
		char *save = NULL;
		int ret = SS_EOK;
		for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			if (!conf_site_code_valid(t)) {
				snprintf(err, errlen, "[children] approved: '%s' is not a site code", t);
				ret = SS_ECONFIG;
				break;
			}
		}
		free(copy);
		return ret;
	}
	return SS_EOK;
}

int conf_keep_fixed(conf_t *nc, const conf_t *old, int *n_changed, char *changed, size_t len)
{
	int n = 0;
	size_t used = 0;
	if (len > 0)
		changed[0] = '\0';
	for (size_t i = 0; i < N_KEYS; i++) {
		const conf_key_t *k = &conf_keys[i];
		if (k->reloadable)
			continue;
		char *nf = (char *)nc + k->offset;
		const char *of = (const char *)old + k->offset;
		bool same;
		switch (k->type) {
		case CF_STR: {
			char **ns = (char **)nf;
			char *const *os = (char *const *)of;
			same = (*ns == NULL && *os == NULL) || (*ns && *os && strcmp(*ns, *os) == 0);
			if (same)
				break;
			/* A copy, so \a old stays whole if the reload fails later. */
			char *v = *os ? strdup(*os) : NULL;
			if (*os && v == NULL)
				return SS_ENOMEM;
			free(*ns);
			*ns = v;
			break;
		}
		case CF_INT:
			same = *(int *)nf == *(const int *)of;
			*(int *)nf = *(const int *)of;
			break;
		default:
			same = *(bool *)nf == *(const bool *)of;
			*(bool *)nf = *(const bool *)of;
			break;
		}
		if (same)
			continue;
		n++;
		if (used < len) {
			int w = snprintf(changed + used, len - used, "%s[%s] %s", used ? ", " : "",
			                 k->section, k->key);
			used += w > 0 ? (size_t)w : 0;
		}
	}
	*n_changed = n;
	return SS_EOK;
}

void conf_free(conf_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < N_KEYS; i++)
		if (conf_keys[i].type == CF_STR)
			free(*(char **)((char *)c + conf_keys[i].offset));
	for (size_t i = 0; i < c->n_sources; i++) {
		free(c->sources[i].name);
		free(c->sources[i].url);
		free(c->sources[i].ca);
		free(c->sources[i].proxy);
		free(c->sources[i].products);
		free(c->sources[i].classifications);
		free(c->sources[i].languages);
	}
	free(c->upstream_url_shown);
	free(c);
}

static int conf_load_mode(const char *path, conf_t **out, char *err, size_t errlen, bool lenient);

int conf_load(const char *path, conf_t **out, char *err, size_t errlen)
{
	return conf_load_mode(path, out, err, errlen, false);
}

int conf_load_lenient(const char *path, conf_t **out, char *err, size_t errlen)
{
	return conf_load_mode(path, out, err, errlen, true);
}

static int conf_load_mode(const char *path, conf_t **out, char *err, size_t errlen, bool lenient)
{
	conf_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return SS_ENOMEM;
	int ret = SS_EOK;
	for (size_t i = 0; i < N_KEYS; i++) {
		if (conf_keys[i].def == NULL)
			continue;
		ret = conf_set(c, &conf_keys[i], conf_keys[i].def, err, errlen);
		if (ret != SS_EOK)
			goto fail;
	}
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	conf_parse_t p = { .conf = c, .err = err, .errlen = errlen };
	int line = ini_parse_file(f, conf_ini_cb, &p);
	fclose(f);
	if (lenient) {
		*out = c;   /* whatever parsed: enough to find the control socket */
		return SS_EOK;
	}
	if (p.failed) {
		ret = p.failed;
		if (line > 0) {
			char tmp[512];
			snprintf(tmp, sizeof(tmp), "%s:%d: %s", path, line, err);
			snprintf(err, errlen, "%s", tmp);
		}
		goto fail;
	}
	if (line != 0) {
		snprintf(err, errlen, "%s:%d: syntax error", path, line);
		ret = SS_ECONFIG;
		goto fail;
	}
	ret = conf_validate(c, err, errlen);
	if (ret != SS_EOK)
		goto fail;
	if (c->upstream_url) {
		/* What the log, the history and /status show of the URL. */
		char shown[1024];
		c->upstream_url_shown = strdup(log_url_redact(c->upstream_url, shown, sizeof(shown)));
		if (c->upstream_url_shown == NULL) {
			ret = SS_ENOMEM;
			goto fail;
		}
	}
	*out = c;
	return SS_EOK;
fail:
	conf_free(c);
	return ret;
}

void conf_print_keys(void)
{
	for (size_t i = 0; i < N_KEYS; i++)
		printf("%s.%s\n", conf_keys[i].section, conf_keys[i].key);
}
