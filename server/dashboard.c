/* Server-side first render of the dashboard: the same rows the page's
 * JavaScript draws (render() in dashboard.html), from the status object. */
#include "server/dashboard.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATES[] = { "idle", "syncing", "succeeded", "failed", "stale" };

/* Remote sites write errors and names: never trust them as markup. */
static void put_esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void put_cell(FILE *f, const char *cls, const char *text)
{
	fputs(cls ? "<td class=\"" : "<td>", f);
	if (cls) {
		put_esc(f, cls);
		fputs("\">", f);
	}
	put_esc(f, text);
	fputs("</td>", f);
}

static void put_site_row(FILE *f, const json_t *s, int depth)
{
	const char *state = str(s, "state");
	const char *cls = "idle";
	for (size_t i = 0; state && i < sizeof(STATES) / sizeof(STATES[0]); i++)
		if (strcmp(state, STATES[i]) == 0)
			cls = STATES[i];
	fputs("<tr data-site=\"", f);
	put_esc(f, str(s, "site"));
	fputs("\" data-state=\"", f);
	put_esc(f, state ? state : "");
	fprintf(f, "\" data-cert-expiring=\"%s\" class=\"st-%s\">",
	        json_is_true(json_object_get(s, "cert_expiring")) ? "true" : "false", cls);
	fprintf(f, "<td class=\"site\" style=\"padding-left: %.1fem\">", 0.8 + 1.6 * depth);
	fputs(depth > 0 ? "\xe2\x94\x94 " : "", f);
	fputs("<a href=\"?site=", f);
	put_esc(f, str(s, "site"));
	fputs("\">", f);
	put_esc(f, str(s, "site"));
	fputs("</a></td><td><span class=\"badge\">", f);
	put_esc(f, state ? state : "");
	fputs("</span></td>", f);
	char buf[160];
	json_int_t lag = json_integer_value(json_object_get(s, "lag_versions"));
	json_int_t lag_s = json_integer_value(json_object_get(s, "lag_seconds"));
	snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
	         json_integer_value(json_object_get(s, "catalog_version")));
	fputs("<td>", f);
	put_esc(f, buf);
	if (lag > 0) {
		if (lag_s > 0)
			snprintf(buf, sizeof(buf), " (behind %" JSON_INTEGER_FORMAT ", %"
			         JSON_INTEGER_FORMAT " s)", lag, lag_s);
		else
			snprintf(buf, sizeof(buf), " (behind %" JSON_INTEGER_FORMAT ")", lag);
		fputs("<span class=\"lag\">", f);
		put_esc(f, buf);
		fputs("</span>", f);
	}
	fputs("</td>", f);
	const char *link = str(s, "link");
	put_cell(f, NULL, link ? link : (str(s, "parent") ? "?" : "top"));
	put_cell(f, "when", str(s, "last_sync_end") ? str(s, "last_sync_end") : "never");
	char err[640] = "";
	json_int_t code = json_integer_value(json_object_get(s, "last_error_code"));
	if (code)
		snprintf(err, sizeof(err), "%" JSON_INTEGER_FORMAT ": %s", code,
		         str(s, "last_error") ? str(s, "last_error") : "");
	else if (str(s, "last_error"))
		snprintf(err, sizeof(err), "%s", str(s, "last_error"));
	if (str(s, "stale_reason")) {
		size_t n = strlen(err);
		snprintf(err + n, sizeof(err) - n, "%s%s", n ? "; " : "", str(s, "stale_reason"));
	}
	put_cell(f, "err", err);
	const char *cert = str(s, "cert_expires");
	snprintf(buf, sizeof(buf), "%.10s", cert ? cert : "-");
	put_cell(f, json_is_true(json_object_get(s, "cert_expiring")) ? "when cert-warn" : "when",
	         buf);
	fputs("</tr>\n", f);
}

/* Depth-first, children sorted by code: the order the script draws. */
static void put_subtree(FILE *f, const json_t *sites, const char *parent, int depth,
                        char *seen)
{
	size_t n = json_array_size(sites);
	for (;;) {
		const json_t *best = NULL;
		size_t bi = 0;
		for (size_t i = 0; i < n; i++) {
			const json_t *s = json_array_get(sites, i);
			const char *p = str(s, "parent"), *code = str(s, "site");
			if (seen[i] || code == NULL || p == NULL || strcmp(p, parent) != 0 ||
			    strcmp(code, parent) == 0)
				continue;
			if (best == NULL || strcmp(code, str(best, "site")) < 0) {
				best = s;
				bi = i;
			}
		}
		if (best == NULL)
			return;
		seen[bi] = 1;
		put_site_row(f, best, depth);
		if (depth < 32)
			put_subtree(f, sites, str(best, "site"), depth + 1, seen);
	}
}

static void put_sites(FILE *f, const json_t *sites)
{
	size_t n = json_array_size(sites);
	char *seen = calloc(n ? n : 1, 1);
	if (seen == NULL)
		return;
	/* Roots: no parent, or a parent not in the view (this site first). */
	for (size_t i = 0; i < n; i++) {
		const json_t *s = json_array_get(sites, i);
		const char *p = str(s, "parent");
		bool root = p == NULL;
		if (!root) {
			root = true;
			for (size_t k = 0; k < n && root; k++)
				if (str(json_array_get(sites, k), "site") &&
				    strcmp(str(json_array_get(sites, k), "site"), p) == 0 && k != i)
					root = false;
		}
		if (!root || seen[i])
			continue;
		seen[i] = 1;
		put_site_row(f, s, 0);
		if (str(s, "site"))
			put_subtree(f, sites, str(s, "site"), 1, seen);
	}
	for (size_t i = 0; i < n; i++)
		if (!seen[i])
			put_site_row(f, json_array_get(sites, i), 0);
	free(seen);
}

static void put_syncs(FILE *f, const json_t *syncs)
{
	size_t i;
	const json_t *y;
	json_array_foreach(syncs, i, y) {
		char buf[128];
		fputs("<tr data-sync-result=\"", f);
		put_esc(f, str(y, "result"));
		fputs("\" data-sync-trigger=\"", f);
		put_esc(f, str(y, "trigger"));
		fputs(str(y, "result") && strcmp(str(y, "result"), "failed") == 0 ?
		      "\" class=\"sy-failed\">" : "\">", f);
		put_cell(f, "when", str(y, "started_at"));
		put_cell(f, "when", str(y, "ended_at"));
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT " s",
		         json_integer_value(json_object_get(y, "duration_s")));
		put_cell(f, NULL, buf);
		put_cell(f, NULL, str(y, "kind"));
		put_cell(f, NULL, str(y, "trigger"));
		put_cell(f, "err", str(y, "source"));
		put_cell(f, NULL, str(y, "result"));
		json_int_t from = json_integer_value(json_object_get(y, "from_version"));
		json_int_t to = json_integer_value(json_object_get(y, "to_version"));
		if (from == to)
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, to);
		else
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT " \xe2\x86\x92 %"
			         JSON_INTEGER_FORMAT, from, to);
		put_cell(f, NULL, buf);
		static const char *const counts[] = { "added", "changed", "removed", "expired" };
		for (size_t k = 0; k < 4; k++) {
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(y, counts[k])));
			put_cell(f, NULL, buf);
		}
		char err[320] = "";
		json_int_t code = json_integer_value(json_object_get(y, "error_code"));
		if (code)
			snprintf(err, sizeof(err), "%" JSON_INTEGER_FORMAT ": %s", code,
			         str(y, "error") ? str(y, "error") : "");
		put_cell(f, "err", err);
		/* Several sources: each one's counts (null otherwise). */
		put_cell(f, "err", str(y, "by_source") ? str(y, "by_source") : "");
		fputs("</tr>\n", f);
	}
}

/* The detail view's fields, as DETAIL in dashboard.html lists them. */
static const char *const DETAIL[][2] = {
	{ "state", "State" }, { "stale_reason", "Stale because" }, { "parent", "Parent" },
	{ "sync_source", "Syncs from" }, { "catalog_version", "Catalog version" },
	{ "lag_versions", "Behind (versions)" }, { "lag_seconds", "Behind (seconds)" },
	{ "link", "Link" }, { "link_last_seen", "Link last seen" },
	{ "last_sync_start", "Last sync start" }, { "last_sync_end", "Last sync end" },
	{ "last_success", "Last success" }, { "added", "Added" }, { "changed", "Changed" },
	{ "removed", "Removed" }, { "expired", "Expired" }, { "last_error_code", "Last error code" },
	{ "last_error", "Last error" }, { "consecutive_failures", "Consecutive failures" },
	{ "next_retry", "Next retry" }, { "version", "Software" },
	{ "cert_expires", "Certificate expires" }, { "cert_days_left", "Certificate days left" },
	{ "reported_at", "Reported at" },
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* One value as the script's cell() shows it: "-" for nothing. */
static void put_value_cell(FILE *f, const char *cls, const json_t *v)
{
	char buf[32];
	const char *text = "-";
	if (json_is_string(v) && json_string_length(v) > 0)
		text = json_string_value(v);
	else if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		text = buf;
	} else if (json_is_boolean(v))
		text = json_is_true(v) ? "true" : "false";
	put_cell(f, cls, text);
}

static void put_detail_rows(FILE *f, const json_t *s)
{
	static const char *const times[] = { "_at", "_start", "_end", "_success", "_seen",
	                                     "_retry", "_expires" };
	for (size_t i = 0; i < sizeof(DETAIL) / sizeof(DETAIL[0]); i++) {
		bool when = false;
		for (size_t k = 0; k < sizeof(times) / sizeof(times[0]); k++)
			when = when || ends_with(DETAIL[i][0], times[k]);
		fprintf(f, "<tr data-field=\"%s\"><th>%s</th>", DETAIL[i][0], DETAIL[i][1]);
		put_value_cell(f, when ? "when" : NULL, json_object_get(s, DETAIL[i][0]));
		fputs("</tr>\n", f);
	}
}

/* The site's error messages, newest first. */
static void put_messages(FILE *f, const json_t *msgs)
{
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		char id[24];
		snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_object_get(m, "msg_id")));
		fputs("<tr data-msg-id=\"", f);
		put_esc(f, id);
		fputs("\">", f);
		put_cell(f, "when", str(m, "at"));
		put_cell(f, NULL, id);
		put_cell(f, NULL, str(m, "severity"));
		put_cell(f, "err", str(m, "text"));
		fputs("</tr>\n", f);
	}
}

static const json_t *find_site(const json_t *status, const char *code)
{
	size_t i;
	const json_t *s;
	if (code == NULL)
		return NULL;
	json_array_foreach(json_object_get(status, "sites"), i, s)
		if (str(s, "site") && strcmp(str(s, "site"), code) == 0)
			return s;
	return NULL;
}

char *dashboard_render(const char *tmpl, const json_t *status, const char *detail)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (f == NULL)
		return NULL;
	static const char *const markers[] = { "<!--SITES-->", "<!--SYNCS-->", "<!--SITE-->",
	                                       "<!--GENERATED-->", "<!--TOP-->",
	                                       "<!--DETAIL-ATTRS-->", "<!--DETAIL-SITE-->",
	                                       "<!--DETAIL-ROWS-->", "<!--DETAIL-SYNCS-->",
	                                       "<!--DETAIL-MSGS-->" };
	const json_t *site = status ? find_site(status, detail) : NULL;
	const char *p = tmpl;
	for (;;) {
		const char *next = NULL;
		size_t which = 0;
		for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
			const char *m = strstr(p, markers[i]);
			if (m && (next == NULL || m < next)) {
				next = m;
				which = i;
			}
		}
		if (next == NULL) {
			fputs(p, f);
			break;
		}
		fwrite(p, 1, (size_t)(next - p), f);
		p = next + strlen(markers[which]);
		if (which == 5) {
			/* Hidden unless ?site= names a site of the view. */
			if (site == NULL) {
				fputs(" hidden", f);
				continue;
			}
			fputs(" data-detail-site=\"", f);
			put_esc(f, str(site, "site"));
			fputs("\"", f);
			continue;
		}
		if (status == NULL || (which > 5 && site == NULL))
			continue;
		char buf[32];
		switch (which) {
		case 0: put_sites(f, json_object_get(status, "sites")); break;
		case 1: put_syncs(f, json_object_get(status, "syncs")); break;
		case 2: put_esc(f, str(status, "site")); break;
		case 3: put_esc(f, str(status, "generated_at")); break;
		case 6: put_esc(f, str(site, "site")); break;
		case 7: put_detail_rows(f, site); break;
		case 8: put_syncs(f, json_object_get(site, "syncs")); break;
		case 9: put_messages(f, json_object_get(site, "messages")); break;
		default:
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(status, "top_version")));
			fputs(buf, f);
		}
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}
