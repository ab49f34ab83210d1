/*
 * `sitesync status` and `sitesync sync`: the hierarchy as a tree table
 * (the Configuration Manager "synchronization status" view on a terminal)
 * and a manual sync that can follow every site until it holds the new
 * catalog version.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* How long one status or sync request may take before we give up. */
#define CLI_STATUS_TIMEOUT_MS 30000

/* SGR colours of the states; idle (and anything unknown) stays plain. */
static const char *cli_state_colour(const char *state)
{
	if (state == NULL)
		return NULL;
	if (strcmp(state, "succeeded") == 0)
		return "32";
	if (strcmp(state, "syncing") == 0)
		return "36";
	if (strcmp(state, "failed") == 0)
		return "31";
	if (strcmp(state, "stale") == 0)
		return "33";
	return NULL;
}

/* "93%" of a site's running sync, when the daemon reports it. */
static bool cli_progress(const json_t *row, json_int_t *done, json_int_t *total)
{
	const json_t *d = json_object_get(row, "progress_done");
	const json_t *t = json_object_get(row, "progress_total");
	if (!json_is_integer(d) || !json_is_integer(t) || json_integer_value(t) <= 0)
		return false;
	*done = json_integer_value(d);
	*total = json_integer_value(t);
	return true;
}

static void cli_fmt_duration(char *buf, size_t len, json_int_t secs)
{
	if (secs < 60)
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT "s", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT "m", secs / 60);
	else if (secs < 86400)
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT "h%02" JSON_INTEGER_FORMAT "m",
		         secs / 3600, secs / 60 % 60);
	else
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT "d%02" JSON_INTEGER_FORMAT "h",
		         secs / 86400, secs / 3600 % 24);
}

/* One table row; prefix is the tree drawing in front of the site code. */
static void cli_status_row(cli_table_t *t, const json_t *row, const char *prefix)
{
	char site[256], state[64], behind[64], nbuf[32], tbuf[32];
	const char *st = json_string_value(json_object_get(row, "state"));
	json_int_t done, total;

	snprintf(site, sizeof(site), "%s%s", prefix,
	         cli_cell(row, "site", nbuf, sizeof(nbuf)));
	if (st != NULL && strcmp(st, "syncing") == 0 &&
	    cli_progress(row, &done, &total))
		snprintf(state, sizeof(state), "syncing %d%%",
		         (int)(done * 100 / total));
	else
		snprintf(state, sizeof(state), "%s", st ? st : "-");

	const json_t *lag = json_object_get(row, "lag_versions");
	json_int_t lag_s = json_integer_value(json_object_get(row, "lag_seconds"));
	if (!json_is_integer(lag))
		snprintf(behind, sizeof(behind), "-");
	else if (json_integer_value(lag) > 0 && lag_s > 0) {
		cli_fmt_duration(tbuf, sizeof(tbuf), lag_s);
		snprintf(behind, sizeof(behind), "%" JSON_INTEGER_FORMAT " (%s)",
		         json_integer_value(lag), tbuf);
	} else
		snprintf(behind, sizeof(behind), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(lag));

	/* A running sync has no end yet: show when it started. */
	const char *last = json_string_value(json_object_get(row, "last_sync_end"));
	if (last == NULL || (st != NULL && strcmp(st, "syncing") == 0 &&
	                     json_is_string(json_object_get(row, "last_sync_start"))))
		last = json_string_value(json_object_get(row, "last_sync_start"));

	char error[512] = "";
	const char *msg = json_string_value(json_object_get(row, "last_error"));
	json_int_t code = json_integer_value(json_object_get(row, "last_error_code"));
	const char *retry = json_string_value(json_object_get(row, "next_retry"));
	if (msg != NULL && code != 0)
		snprintf(error, sizeof(error), "%s (%" JSON_INTEGER_FORMAT ")", msg, code);
	else if (msg != NULL)
		snprintf(error, sizeof(error), "%s", msg);
	/* A stale row says why (link down, silent, behind since ...). */
	const char *why = json_string_value(json_object_get(row, "stale_reason"));
	if (why != NULL && error[0] == '\0')
		snprintf(error, sizeof(error), "%s", why);
	if (retry != NULL && st != NULL && strcmp(st, "failed") == 0) {
		size_t n = strlen(error);
		snprintf(error + n, sizeof(error) - n, "%sretry %s",
		         n ? "; " : "", retry);
	}

	const char *cells[] = {
		site, state,
		cli_cell(row, "catalog_version", nbuf, sizeof(nbuf)),
		behind,
		cli_cell(row, "link", tbuf, sizeof(tbuf)),
		last ? last : "-",
		error,
	};
	const char *colour[] = { NULL, cli_state_colour(st), NULL, NULL, NULL,
	                         NULL, NULL };
	cli_table_add(t, cells, colour);
}

typedef struct {
	const json_t *sites;
	size_t n;
	bool *done;
	cli_table_t *table;
	/* Rows with a parent, sorted by (parent, site): a site's children are
	 * one run found by bisection, so the table of 6,000 sites is not
	 * 6,000 scans of 6,000 rows. */
	size_t *by_parent;
	size_t n_by_parent;
} cli_tree_t;

static const char *cli_row_str(const json_t *sites, size_t i, const char *key)
{
	return json_string_value(json_object_get(json_array_get(sites, i), key));
}

static const json_t *cli_sort_sites;    /* qsort has no context argument */

static int cli_parent_cmp_cb(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(cli_row_str(cli_sort_sites, x, "parent"),
	               cli_row_str(cli_sort_sites, y, "parent"));
	if (c != 0)
		return c;
	const char *sx = cli_row_str(cli_sort_sites, x, "site");
	const char *sy = cli_row_str(cli_sort_sites, y, "site");
	return strcmp(sx ? sx : "", sy ? sy : "");
}

/*
 * Rows of the children of `parent`, depth first. `lead` carries, per
 * ancestor level, "│  " while that ancestor has siblings still to come and
 * blanks otherwise, so each branch lines up under its parent.
 */
static void cli_tree_children(cli_tree_t *tr, const char *parent,
                              const char *lead)
{
	size_t lo = 0, hi = tr->n_by_parent;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(cli_row_str(tr->sites, tr->by_parent[mid], "parent"), parent) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t nkids = 0, end = lo;
	while (end < tr->n_by_parent &&
	       strcmp(cli_row_str(tr->sites, tr->by_parent[end], "parent"), parent) == 0)
		end++;
	const json_t **kids = calloc(end > lo ? end - lo : 1, sizeof(*kids));
	if (kids == NULL)
		exit(CLI_EXIT_FAIL);
	/* Already sorted by site. */
	for (size_t k = lo; k < end; k++) {
		size_t i = tr->by_parent[k];
		if (!tr->done[i]) {
			tr->done[i] = true;  /* also stops cycles */
			kids[nkids++] = json_array_get(tr->sites, i);
		}
	}
	for (size_t k = 0; k < nkids; k++) {
		bool last = k + 1 == nkids;
		char prefix[512], next[512];
		snprintf(prefix, sizeof(prefix), "%s%s", lead, last ? "└─ " : "├─ ");
		snprintf(next, sizeof(next), "%s%s", lead, last ? "   " : "│  ");
		cli_status_row(tr->table, kids[k], prefix);
		const char *code = json_string_value(json_object_get(kids[k], "site"));
		if (code != NULL && strlen(next) < 400)
			cli_tree_children(tr, code, next);
	}
	free(kids);
}

static void cli_tree_root(cli_tree_t *tr, size_t i)
{
	const json_t *row = json_array_get(tr->sites, i);
	const char *code = json_string_value(json_object_get(row, "site"));
	tr->done[i] = true;
	cli_status_row(tr->table, row, "");
	if (code != NULL)
		cli_tree_children(tr, code, "");
}

/* The certificate roll-up under the table: nothing when all are fine. */
static void cli_status_certs(FILE *out, const json_t *status, bool colour)
{
	const json_t *list = json_object_get(status, "certs_expiring");
	size_t n = json_array_size(list);
	if (n == 0)
		return;
	json_int_t days = json_integer_value(json_object_get(status, "cert_warning_days"));
	fprintf(out, "\n%sCertificates to renew (expiring within %" JSON_INTEGER_FORMAT
	        " days):%s\n", colour ? "\033[33m" : "", days, colour ? "\033[0m" : "");
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(list, i);
		const char *site = json_string_value(json_object_get(e, "site"));
		const char *when = json_string_value(json_object_get(e, "cert_expires"));
		json_int_t left = json_integer_value(json_object_get(e, "cert_days_left"));
		if (when != NULL && left < 0)
			fprintf(out, "  %s  expired %s\n", site ? site : "?", when);
		else
			fprintf(out, "  %s  expires %s (%" JSON_INTEGER_FORMAT " day%s left)\n",
			        site ? site : "?", when ? when : "?", left, left == 1 ? "" : "s");
	}
}

/* Several sources: whose entries the newest upstream version added,
 * changed and removed (nothing with one source). */
static void cli_status_sources(FILE *out, const json_t *status)
{
	size_t i;
	const json_t *y;
	json_array_foreach(json_object_get(status, "syncs"), i, y) {
		const char *kind = json_string_value(json_object_get(y, "kind"));
		const char *result = json_string_value(json_object_get(y, "result"));
		if (kind == NULL || strcmp(kind, "upstream") != 0 || result == NULL ||
		    strcmp(result, "succeeded") != 0)
			continue;
		const char *by = json_string_value(json_object_get(y, "by_source"));
		if (by != NULL && by[0] != '\0')
			fprintf(out, "\nVersion %" JSON_INTEGER_FORMAT " by source: %s\n",
			        json_integer_value(json_object_get(y, "to_version")), by);
		return;
	}
}

void cli_status_render(FILE *out, const json_t *status, bool colour)
{
	static const char *const headers[] = {
		"SITE", "STATE", "VERSION", "BEHIND", "LINK", "LAST SYNC", "ERROR",
	};
	char nbuf[32];
	const char *self = json_string_value(json_object_get(status, "site"));
	const json_t *sites = json_object_get(status, "sites");
	cli_tree_t tr = {
		.sites = sites,
		.n = json_array_size(sites),
		.table = cli_table_new(7, headers),
	};

	tr.done = calloc(tr.n ? tr.n : 1, sizeof(*tr.done));
	tr.by_parent = calloc(tr.n ? tr.n : 1, sizeof(*tr.by_parent));
	if (tr.done == NULL || tr.by_parent == NULL)
		exit(CLI_EXIT_FAIL);
	for (size_t i = 0; i < tr.n; i++)
		if (cli_row_str(sites, i, "parent") != NULL)
			tr.by_parent[tr.n_by_parent++] = i;
	cli_sort_sites = sites;
	qsort(tr.by_parent, tr.n_by_parent, sizeof(*tr.by_parent), cli_parent_cmp_cb);
	fprintf(out, "Site %s, top version %s, generated %s\n\n",
	        self ? self : "-",
	        cli_cell(status, "top_version", nbuf, sizeof(nbuf)),
	        json_string_value(json_object_get(status, "generated_at")) ?: "-");

	/* This site first, then any row whose parent is not in the subtree
	 * (the parent of this site, or a row left over by the daemon). */
	for (size_t i = 0; i < tr.n; i++) {
		const char *code = json_string_value(
			json_object_get(json_array_get(sites, i), "site"));
		if (!tr.done[i] && self != NULL && code != NULL &&
		    strcmp(code, self) == 0)
			cli_tree_root(&tr, i);
	}
	for (size_t i = 0; i < tr.n; i++)
		if (!tr.done[i])
			cli_tree_root(&tr, i);
	cli_table_print(tr.table, out, colour);
	free(tr.done);
	free(tr.by_parent);
	cli_status_certs(out, status, colour);
	cli_status_sources(out, status);
}

static int cli_status_once(cli_t *cli, bool json)
{
	json_t *data = NULL;
	int ret = cli_call(cli, "status", NULL, CLI_STATUS_TIMEOUT_MS, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json)
		cli_print_json(data);
	else
		cli_status_render(stdout, data, cli->tty_out && !getenv("NO_COLOR"));
	json_decref(data);
	return CLI_EXIT_OK;
}

int cli_status_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "watch", no_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, watch = false;
	long secs = 2;
	int ch;

	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, ":jwh", opts, NULL)) != -1) {
		switch (ch) {
		case 'j':
			json = true;
			break;
		case 'w':
			watch = true;
			/* --watch takes an optional SECS as the next word. */
			if (optind < argc && argv[optind][0] != '-') {
				if (!cli_parse_uint(argv[optind], &secs) || secs < 1 ||
				    secs > 86400)
					return cli_usage_error("status: --watch needs a number of seconds (1-86400), not '%s'",
					                       argv[optind]);
				optind++;
			}
			break;
		default:
			return cli_other_option(cmd, ch, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("status: unexpected argument '%s'", argv[optind]);
	if (!watch)
		return cli_status_once(cli, json);

	for (;;) {
		if (cli->tty_out) {
			time_t now = time(NULL);
			char when[32];
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&now));
			printf("\033[H\033[2JEvery %lds: sitesync status%*s%s\n\n", secs,
			       20, "", when);
		}
		int ret = cli_status_once(cli, json);
		/* A daemon restart should not end a watch on a terminal. */
		if (ret != CLI_EXIT_OK && !cli->tty_out)
			return ret;
		if (!cli->tty_out)
			printf("\n");
		fflush(stdout);
		sleep((unsigned)secs);
	}
}

/* ---- sync ---- */

typedef struct {
	char site[16];
	char line[160];          /* last plain line printed for this site */
	json_int_t first_done;   /* progress seen first, for the ETA */
	time_t first_at;
} cli_seen_t;

typedef struct {
	cli_seen_t *seen;
	size_t nseen;
	int drawn;               /* lines of the last terminal redraw */
} cli_follow_t;

static cli_seen_t *cli_follow_site(cli_follow_t *f, const char *site)
{
	for (size_t i = 0; i < f->nseen; i++)
		if (strcmp(f->seen[i].site, site) == 0)
			return &f->seen[i];
	cli_seen_t *s = realloc(f->seen, (f->nseen + 1) * sizeof(*s));
	if (s == NULL)
		exit(CLI_EXIT_FAIL);
	f->seen = s;
	s = &f->seen[f->nseen++];
	memset(s, 0, sizeof(*s));
	snprintf(s->site, sizeof(s->site), "%s", site);
	s->first_done = -1;
	return s;
}

/* The plain progress text of one site: what changed is printed. */
static void cli_follow_text(const json_t *row, json_int_t top, char *buf,
                            size_t len)
{
	const char *st = json_string_value(json_object_get(row, "state"));
	json_int_t done, total;
	char nbuf[32];

	if (st != NULL && strcmp(st, "failed") == 0) {
		const char *err = json_string_value(json_object_get(row, "last_error"));
		snprintf(buf, len, "failed: %s", err ? err : "unknown error");
	} else if (st != NULL && strcmp(st, "syncing") == 0 &&
	           cli_progress(row, &done, &total)) {
		snprintf(buf, len, "processed %" JSON_INTEGER_FORMAT " of %"
		         JSON_INTEGER_FORMAT " items (%d%%)", done, total,
		         (int)(done * 100 / total));
	} else {
		const json_t *v = json_object_get(row, "catalog_version");
		snprintf(buf, len, "at version %s%s",
		         cli_cell(row, "catalog_version", nbuf, sizeof(nbuf)),
		         json_is_integer(v) && json_integer_value(v) == top ? "" :
		         st && strcmp(st, "syncing") == 0 ? " (syncing)" : "");
	}
}

static void cli_follow_draw(cli_follow_t *f, const json_t *status, bool tty)
{
	const json_t *sites = json_object_get(status, "sites");
	json_int_t top = json_integer_value(json_object_get(status, "top_version"));
	size_t i;
	const json_t *row;

	if (tty && f->drawn > 0)
		printf("\033[%dA", f->drawn);
	f->drawn = 0;
	json_array_foreach(sites, i, row) {
		const char *site = json_string_value(json_object_get(row, "site"));
		const char *st = json_string_value(json_object_get(row, "state"));
		char text[160];
		if (site == NULL)
			continue;
		cli_seen_t *s = cli_follow_site(f, site);
		cli_follow_text(row, top, text, sizeof(text));
		if (!tty) {
			if (strcmp(text, s->line) != 0)
				printf("%s: %s\n", site, text);
			snprintf(s->line, sizeof(s->line), "%s", text);
			continue;
		}
		/* Terminal: a bar per site, redrawn in place. */
		json_int_t done = 0, total = 0;
		const json_t *v = json_object_get(row, "catalog_version");
		bool at_top = json_is_integer(v) && json_integer_value(v) == top;
		bool syncing = st && strcmp(st, "syncing") == 0;
		char bar[32], eta[32] = "";
		int pct;
		if (syncing && cli_progress(row, &done, &total)) {
			time_t now = time(NULL);
			pct = (int)(done * 100 / total);
			if (s->first_done < 0 || done < s->first_done) {
				s->first_done = done;
				s->first_at = now;
			} else if (done > s->first_done && now > s->first_at) {
				double rate = (double)(done - s->first_done) /
				              (double)(now - s->first_at);
				long left = (long)((double)(total - done) / rate);
				snprintf(eta, sizeof(eta), ", ETA %02ld:%02ld:%02ld",
				         left / 3600, left / 60 % 60, left % 60);
			}
		} else {
			pct = at_top && !syncing ? 100 : 0;
		}
		int fill = pct * 20 / 100;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(20 - fill));
		bar[20] = '\0';
		const char *sgr = st && strcmp(st, "failed") == 0 ? "31" :
		                  at_top && !syncing ? "32" : syncing ? "36" : NULL;
		char open[16] = "";
		if (sgr != NULL)
			snprintf(open, sizeof(open), "\033[%sm", sgr);
		printf("\r\033[K%-5s [%s%s%s] %3d%%  %s%s\n", site, open, bar,
		       sgr ? "\033[0m" : "", pct, text, eta);
		f->drawn++;
	}
	/* Rows of sites that left the status since the last redraw. */
	if (tty)
		printf("\033[J");
	fflush(stdout);
}

static const json_t *cli_find_site(const json_t *status, const char *site)
{
	size_t i;
	const json_t *row;
	json_array_foreach(json_object_get(status, "sites"), i, row) {
		const char *s = json_string_value(json_object_get(row, "site"));
		if (s != NULL && site != NULL && strcmp(s, site) == 0)
			return row;
	}
	return NULL;
}

static bool cli_ask(const char *question, bool tty_out)
{
	char answer[32];
	/* With stdout redirected the question must still reach the operator. */
	FILE *out = tty_out ? stdout : stderr;
	fputs(question, out);
	fflush(out);
	if (fgets(answer, sizeof(answer), stdin) == NULL)
		return false;
	answer[strcspn(answer, "\r\n")] = '\0';
	return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

/* Name every failed site with its last error; returns how many. */
static size_t cli_report_failed(const json_t *status)
{
	size_t i, n = 0;
	const json_t *r;
	json_array_foreach(json_object_get(status, "sites"), i, r) {
		const char *st = json_string_value(json_object_get(r, "state"));
		if (st == NULL || strcmp(st, "failed") != 0)
			continue;
		const char *err = json_string_value(json_object_get(r, "last_error"));
		cli_fail("site %s failed: %s",
		         json_string_value(json_object_get(r, "site")) ?: "?",
		         err ? err : "unknown error");
		n++;
	}
	return n;
}

/* A site that cannot take the version now: silent, link down or behind
 * for long (stale), or disconnected by design (it imports bundles). */
static bool cli_site_unreachable(const json_t *r)
{
	const char *st = json_string_value(json_object_get(r, "state"));
	const char *link = json_string_value(json_object_get(r, "link"));
	return (st != NULL && strcmp(st, "stale") == 0) ||
	       (link != NULL && strcmp(link, "disconnected") == 0);
}

/* Sites not at the top version that sync --wait does not wait for; names
 * them in list with their state and version. */
static size_t cli_sites_unreachable(const json_t *status, json_int_t top, char *list,
                                    size_t len)
{
	size_t i, n = 0;
	const json_t *r;
	list[0] = '\0';
	json_array_foreach(json_object_get(status, "sites"), i, r) {
		const json_t *v = json_object_get(r, "catalog_version");
		const char *st = json_string_value(json_object_get(r, "state"));
		if (!cli_site_unreachable(r) || (st && strcmp(st, "failed") == 0) ||
		    (json_is_integer(v) && json_integer_value(v) == top))
			continue;
		size_t used = strlen(list);
		char nbuf[32];
		snprintf(list + used, len - used, "%s%s (%s, version %s)", used ? ", " : "",
		         json_string_value(json_object_get(r, "site")) ?: "?",
		         st && strcmp(st, "stale") == 0 ? "stale" : "disconnected",
		         cli_cell(r, "catalog_version", nbuf, sizeof(nbuf)));
		n++;
	}
	return n;
}

/* Sites neither at the top version nor failed nor unreachable; names them
 * in list. */
static size_t cli_sites_behind(const json_t *status, json_int_t top,
                               char *list, size_t len)
{
	size_t i, n = 0;
	const json_t *r;
	if (list != NULL && len > 0)
		list[0] = '\0';
	json_array_foreach(json_object_get(status, "sites"), i, r) {
		const char *st = json_string_value(json_object_get(r, "state"));
		const json_t *v = json_object_get(r, "catalog_version");
		if ((st != NULL && strcmp(st, "failed") == 0) || cli_site_unreachable(r) ||
		    (json_is_integer(v) && json_integer_value(v) == top))
			continue;
		if (list != NULL) {
			size_t used = strlen(list);
			char nbuf[32];
			snprintf(list + used, len - used, "%s%s (version %s)",
			         used ? ", " : "",
			         json_string_value(json_object_get(r, "site")) ?: "?",
			         cli_cell(r, "catalog_version", nbuf, sizeof(nbuf)));
		}
		n++;
	}
	return n;
}

/*
 * Follow a sync: first until the top site ends the sync started at `start`,
 * then until every site holds the top version or failed.
 */
static int cli_sync_follow(cli_t *cli, time_t start, long timeout)
{
	cli_follow_t f = { 0 };
	bool top_done = false;
	int ret = CLI_EXIT_FAIL;
	json_t *data = NULL;
	struct timespec half = { .tv_sec = 0, .tv_nsec = 500000000 };
	/* `start` is a whole second (to match the daemon's last_sync_start);
	 * the timeout counts from now, or --timeout 1 could end after 0.1 s. */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	for (;;) {
		json_decref(data);
		data = NULL;
		if (cli_call(cli, "status", NULL, CLI_STATUS_TIMEOUT_MS, &data) != CLI_EXIT_OK)
			goto out;
		const char *self = json_string_value(json_object_get(data, "site"));
		json_int_t top = json_integer_value(json_object_get(data, "top_version"));
		const json_t *row = cli_find_site(data, self);
		if (!top_done && row != NULL) {
			const char *st = json_string_value(json_object_get(row, "state"));
			time_t began = cli_parse_time(json_string_value(
				json_object_get(row, "last_sync_start")));
			top_done = st != NULL && strcmp(st, "syncing") != 0 &&
			           began >= start;
		}
		cli_follow_draw(&f, data, cli->tty_out);
		if (top_done && cli_sites_behind(data, top, NULL, 0) == 0) {
			/* Stale and disconnected sites would hold the wait until the
			 * timeout: name them and stop, with an exit status of its own. */
			char list[1024];
			size_t failed = cli_report_failed(data);
			size_t gone = cli_sites_unreachable(data, top, list, sizeof(list));
			if (gone > 0)
				fprintf(stderr, "sitesync: not waiting for %zu site(s) that cannot take "
				        "version %" JSON_INTEGER_FORMAT " now: %s\n", gone, top, list);
			if (failed == 0 && gone == 0) {
				printf("Every site holds version %" JSON_INTEGER_FORMAT ".\n",
				       top);
				ret = CLI_EXIT_OK;
			} else if (failed == 0) {
				printf("Every reachable site holds version %" JSON_INTEGER_FORMAT ".\n", top);
				ret = CLI_EXIT_UNREACHABLE;
			}
			goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec - (now.tv_nsec < t0.tv_nsec) >= timeout) {
			char list[1024];
			cli_report_failed(data);
			if (!top_done)
				cli_fail("timed out after %ld s waiting for %s to finish its sync",
				         timeout, self ? self : "the top site");
			else if (cli_sites_behind(data, top, list, sizeof(list)) > 0)
				cli_fail("timed out after %ld s; not at version %"
				         JSON_INTEGER_FORMAT " yet: %s", timeout, top, list);
			goto out;
		}
		nanosleep(&half, NULL);
	}
out:
	json_decref(data);
	free(f.seen);
	return ret;
}

int cli_sync_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	enum { OPT_FULL = 256, OPT_TIMEOUT, OPT_ALLOW };
	static const struct option opts[] = {
		{ "yes", no_argument, NULL, 'y' },
		{ "wait", no_argument, NULL, 'w' },
		{ "full", no_argument, NULL, OPT_FULL },
		{ "allow-removal", no_argument, NULL, OPT_ALLOW },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool yes = false, wait = false, full = false, allow = false;
	long timeout = 3600;
	int ch;

	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, ":ywh", opts, NULL)) != -1) {
		switch (ch) {
		case 'y':
			yes = true;
			break;
		case 'w':
			wait = true;
			break;
		case OPT_FULL:
			full = true;
			break;
		case OPT_ALLOW:
			allow = true;
			break;
		case OPT_TIMEOUT:
			if (!cli_parse_uint(optarg, &timeout) || timeout < 1)
				return cli_usage_error("sync: --timeout needs a number of seconds, not '%s'",
				                       optarg);
			break;
		default:
			return cli_other_option(cmd, ch, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("sync: unexpected argument '%s'", argv[optind]);
	if (cli->tty_in && !yes) {
		/* Say what a pending selection change will remove before asking. */
		json_t *pv = NULL;
		bool top = true;
		if (cli_call(cli, "sync.preview", json_object(), CLI_STATUS_TIMEOUT_MS, &pv) ==
		    CLI_EXIT_OK) {
			top = !json_is_false(json_object_get(pv, "top"));
			json_int_t gone = json_integer_value(json_object_get(pv, "would_remove"));
			json_int_t all = json_integer_value(json_object_get(pv, "entries"));
			if (gone > 0)
				printf("The current selection removes %lld of the %lld updates in the catalog "
				       "from every site.\n", (long long)gone, (long long)all);
		}
		json_decref(pv);
		if (!cli_ask(top ? "Start synchronization of software updates for the whole hierarchy "
		             "now? [y/N] " : "Pull the catalog from the parent site now? [y/N] ",
		             cli->tty_out)) {
			printf("Cancelled.\n");
			return CLI_EXIT_OK;
		}
	}

	/* Whole seconds, as the daemon reports them: a sync that starts in
	 * this second counts as ours. */
	time_t start = time(NULL);
	json_t *data = NULL;
	int ret = cli_call(cli, "sync", json_pack("{s:b, s:b}", "full", full, "allow_removal", allow),
	                   CLI_STATUS_TIMEOUT_MS, &data);
	if (ret != CLI_EXIT_OK) {
		json_decref(data);
		return ret;
	}
	if (json_is_true(json_object_get(data, "pull"))) {
		/* At a child: a pull from its parent. */
		const char *parent = json_string_value(json_object_get(data, "parent"));
		json_int_t pv = json_integer_value(json_object_get(data, "parent_version"));
		if (json_is_true(json_object_get(data, "up_to_date"))) {
			printf("This site already holds version %" JSON_INTEGER_FORMAT ", the version of "
			       "its parent %s: nothing to pull.\n", pv, parent ? parent : "?");
			json_decref(data);
			return CLI_EXIT_OK;
		}
		printf("Pull from parent %s started%s (the parent holds version %" JSON_INTEGER_FORMAT
		       ").\n", parent ? parent : "?", full ? " (full snapshot)" : "", pv);
	} else {
		printf("Synchronization started%s.\n", full ? " (full)" : "");
	}
	json_decref(data);
	if (!wait)
		return CLI_EXIT_OK;
	fflush(stdout);
	return cli_sync_follow(cli, start, timeout);
}
