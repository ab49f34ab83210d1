/*
 * The catalog and administration commands of `sitesync`: child sites,
 * category selection, updates, where, history, export/import,
 * import-update and verify. Each sends one request and prints the reply,
 * either as JSON (--json) or as an aligned table.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"

/* Default wait for a reply; bulk work (export, import) waits without limit. */
#define CLI_TIMEOUT_MS 60000

/* Absolute form of a path given by the operator: the daemon has another
 * working directory. */
static char *cli_abspath(const char *path)
{
	char *abs = realpath(path, NULL);
	if (abs != NULL || path[0] == '/')
		return abs ? abs : strdup(path);
	char cwd[PATH_MAX];
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	size_t len = strlen(cwd) + strlen(path) + 2;
	abs = malloc(len);
	if (abs != NULL)
		snprintf(abs, len, "%s/%s", cwd, path);
	return abs;
}

/* ---- child ---- */

static void cli_child_list_print(const json_t *data)
{
	static const cli_column_t cols[] = {
		{ "SITE", "site" }, { "APPROVED", "approved_at" }, { "CONNECTED", "connected" },
		{ "LINK", "link" }, { "VERSION", "catalog_version" },
	};
	static const cli_column_t pcols[] = {
		{ "SITE", "site" }, { "ADDRESS", "address" }, { "LAST ATTEMPT", "last_attempt" },
		{ "FIRST ATTEMPT", "first_attempt" }, { "ATTEMPTS", "attempts" },
	};
	cli_print_rows(json_object_get(data, "children"), cols, sizeof(cols) / sizeof(cols[0]));
	const json_t *pending = json_object_get(data, "pending");
	if (json_array_size(pending) > 0) {
		printf("\nPending (tried to connect, not approved; approve with: sitesync child add "
		       "CODE):\n");
		cli_print_rows(pending, pcols, sizeof(pcols) / sizeof(pcols[0]));
	}
}

int cli_child_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	json_t *data = NULL;

	if (argc < 2)
		return cli_usage_error("child: add, remove or list expected");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
		return cli_cmd_help(cmd);
	int ret = cli_json_only(cmd, argc - 1, argv + 1, &json);
	if (ret >= 0)
		return ret;
	/* optind counts from argv + 1. */
	int pos = optind + 1;
	int npos = argc - pos;

	if (strcmp(sub, "list") == 0) {
		if (npos != 0)
			return cli_usage_error("child list: unexpected argument '%s'",
			                       argv[pos]);
		return cli_call_show(cli, "child.list", NULL, CLI_TIMEOUT_MS, json,
		                     cli_child_list_print);
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0)
		return cli_usage_error("child: unknown subcommand '%s'", sub);
	if (npos != 1)
		return cli_usage_error("child %s: one site code expected", sub);
	const char *code = argv[pos];
	if (!conf_site_code_valid(code))
		return cli_usage_error("child %s: '%s' is not a site code (3 upper-case letters or digits)",
		                       sub, code);
	bool add = strcmp(sub, "add") == 0;
	ret = cli_call(cli, add ? "child.add" : "child.remove",
	               json_pack("{s:s}", "site", code), CLI_TIMEOUT_MS, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json)
		cli_print_json(data);
	else
		printf(add ? "Child site %s approved.\n" : "Child site %s removed.\n",
		       code);
	json_decref(data);
	return CLI_EXIT_OK;
}

/* ---- products, classifications, languages ---- */

/* Says what the next sync takes: with nothing selected, every one. */
static void cli_category_synced_note(const json_t *data)
{
	const json_t *items = json_object_get(data, "items");
	const char *kind = json_string_value(json_object_get(data, "kind"));
	size_t i, selected = 0;
	const json_t *it;
	json_array_foreach(items, i, it)
		selected += json_is_true(json_object_get(it, "selected"));
	if (json_array_size(items) == 0)
		printf("No %ss known yet: the first sync from upstream lists them.\n",
		       kind ? kind : "item");
	else if (selected == 0)
		printf("\nNothing selected: all %zu %ss are synchronized.\n", json_array_size(items),
		       kind ? kind : "item");
	else
		printf("\n%zu of %zu %ss selected: only those are synchronized.\n", selected,
		       json_array_size(items), kind ? kind : "item");
}

static void cli_category_print(const json_t *data)
{
	static const cli_column_t cols[] = {
		{ "ID", "id" }, { "SELECTED", "selected" }, { "UPDATES", "updates" }, { "TITLE", "title" },
		{ "GROUP", "group" },
	};
	cli_print_rows(json_object_get(data, "items"), cols, sizeof(cols) / sizeof(cols[0]));
	cli_category_synced_note(data);
}

int cli_category_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	json_t *data = NULL;

	if (argc < 2)
		return cli_usage_error("%s: list, select or deselect expected",
		                       cmd->name);
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
		return cli_cmd_help(cmd);
	int ret = cli_json_only(cmd, argc - 1, argv + 1, &json);
	if (ret >= 0)
		return ret;
	int pos = optind + 1;

	if (strcmp(sub, "list") == 0) {
		if (pos < argc)
			return cli_usage_error("%s list: unexpected argument '%s'",
			                       cmd->name, argv[pos]);
		return cli_call_show(cli, "category.list",
		                     json_pack("{s:s}", "kind", cmd->kind), CLI_TIMEOUT_MS,
		                     json, cli_category_print);
	}
	bool select = strcmp(sub, "select") == 0;
	if (!select && strcmp(sub, "deselect") != 0)
		return cli_usage_error("%s: unknown subcommand '%s'", cmd->name, sub);
	if (pos >= argc)
		return cli_usage_error("%s %s: at least one ID expected", cmd->name, sub);
	json_t *ids = json_array();
	for (int i = pos; i < argc; i++)
		json_array_append_new(ids, json_string(argv[i]));
	ret = cli_call(cli, select ? "category.select" : "category.deselect",
	               json_pack("{s:s, s:o}", "kind", cmd->kind, "ids", ids),
	               CLI_TIMEOUT_MS, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json) {
		cli_print_json(data);
	} else {
		/* The ids as stored: a title or another case names its known id. */
		size_t i;
		json_t *id;
		printf("%s %s(s):", select ? "Selected" : "Deselected", cmd->kind);
		json_array_foreach(json_object_get(data, select ? "selected" : "deselected"), i, id)
			printf(" %s", json_string_value(id));
		printf(". The next sync applies the change.\n");
	}
	json_decref(data);
	return CLI_EXIT_OK;
}

/* ---- updates ---- */

/* Products arrive as an array of titles (or ids); show them joined. */
static void cli_join(const json_t *v, char *buf, size_t len)
{
	size_t i;
	const json_t *e;
	buf[0] = '\0';
	if (json_is_string(v)) {
		snprintf(buf, len, "%s", json_string_value(v));
		return;
	}
	json_array_foreach(v, i, e) {
		size_t n = strlen(buf);
		const char *s = json_string_value(e);
		char num[32];
		if (s == NULL && json_is_integer(e)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(e));
			s = num;
		}
		if (s != NULL && n < len)
			snprintf(buf + n, len - n, "%s%s", n ? ", " : "", s);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "-");
}

static void cli_updates_print(const json_t *data)
{
	/* Names, not ids; release times in UTC (the ids stay in --json). */
	static const cli_column_t cols[] = {
		{ "UPDATE_ID", "update_id" }, { "REV", "revision" },
		{ "CLASSIFICATION", "classification_title" }, { "VENDOR", "vendor" },
		{ "PRODUCTS", "products_text" }, { "SEVERITY", "severity" },
		{ "KB", "kb_article" }, { "RELEASED (UTC)", "release_date_utc" }, { "EXPIRED", "expired" },
		{ "TITLE", "title" },
	};
	static const cli_column_t vcols[] = {
		{ "CHANGE", "change" }, { "UPDATE_ID", "update_id" }, { "REV", "revision" },
		{ "CLASSIFICATION", "classification_title" }, { "VENDOR", "vendor" },
		{ "PRODUCTS", "products_text" }, { "SEVERITY", "severity" },
		{ "KB", "kb_article" }, { "RELEASED (UTC)", "release_date_utc" }, { "EXPIRED", "expired" },
		{ "TITLE", "title" },
	};
	const json_t *v = json_object_get(data, "version");
	const json_t *rows = json_object_get(data, "updates");
	if (v != NULL) {
		char at[64];
		printf("Version %" JSON_INTEGER_FORMAT " (committed here %s): %" JSON_INTEGER_FORMAT
		       " added, %" JSON_INTEGER_FORMAT " changed, %" JSON_INTEGER_FORMAT " removed, %"
		       JSON_INTEGER_FORMAT " expired%s\n\n",
		       json_integer_value(json_object_get(v, "version")), cli_cell(v, "at", at, sizeof(at)),
		       json_integer_value(json_object_get(v, "added")),
		       json_integer_value(json_object_get(v, "changed")),
		       json_integer_value(json_object_get(v, "removed")),
		       json_integer_value(json_object_get(v, "expired")),
		       json_is_true(json_object_get(v, "full_pull")) ? " (full snapshot)" : "");
	}
	if (json_array_size(rows) == 0) {
		printf("No matches.\n");
		return;
	}
	/* Our own copy, with the product names joined into one cell. */
	json_t *shown = json_deep_copy(rows);
	size_t i;
	json_t *row;
	json_array_foreach(shown, i, row) {
		char buf[1024];
		cli_join(json_object_get(row, "product_titles"), buf, sizeof(buf));
		json_object_set_new(row, "products_text", json_string(buf));
	}
	if (v != NULL)
		cli_print_rows(shown, vcols, sizeof(vcols) / sizeof(vcols[0]));
	else
		cli_print_rows(shown, cols, sizeof(cols) / sizeof(cols[0]));
	json_decref(shown);
}

static void cli_update_show_print(const json_t *u)
{
	static const char *const fields[][2] = {
		{ "update_id", "Update" }, { "revision", "Revision" },
		{ "title", "Title" }, { "vendor", "Vendor" },
		{ "classification_title", "Classification" },
		{ "severity", "Severity" }, { "kb_article", "KB article" },
		{ "release_date_utc", "Released (UTC)" }, { "expired", "Expired" },
		{ "source", "Source" },
	};
	char buf[4096];
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		printf("%-15s %s\n", fields[i][1],
		       cli_cell(u, fields[i][0], buf, sizeof(buf)));
	cli_join(json_object_get(u, "product_titles"), buf, sizeof(buf));
	printf("%-15s %s\n", "Products", buf);
	cli_join(json_object_get(u, "languages"), buf, sizeof(buf));
	printf("%-15s %s\n", "Languages", buf);
	cli_join(json_object_get(u, "supersedes"), buf, sizeof(buf));
	printf("%-15s %s\n", "Supersedes", buf);
	const char *desc = json_string_value(json_object_get(u, "description"));
	if (desc != NULL)
		printf("\nDescription:\n  %s\n", desc);

	const json_t *files = json_object_get(u, "files");
	if (json_array_size(files) > 0) {
		static const char *const headers[] = { "FILE", "SIZE", "SHA1", "URL" };
		cli_table_t *t = cli_table_new(4, headers);
		size_t i;
		const json_t *f;
		char b[4][48];
		json_array_foreach(files, i, f) {
			const char *cells[] = {
				cli_cell(f, "name", b[0], 48), cli_cell(f, "size", b[1], 48),
				cli_cell(f, "sha1", b[2], 48), cli_cell(f, "url", b[3], 48),
			};
			cli_table_add(t, cells, NULL);
		}
		printf("\n");
		cli_table_print(t, stdout, false);
	}
	if (json_is_string(json_object_get(u, "original_xml")))
		printf("\n(original XML: sitesync updates show ID --json)\n");
}

int cli_updates_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	enum { OPT_PRODUCT = 256, OPT_CLASS, OPT_SEVERITY, OPT_TEXT, OPT_LIMIT, OPT_VERSION };
	static const struct option opts[] = {
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "product", required_argument, NULL, OPT_PRODUCT },
		{ "classification", required_argument, NULL, OPT_CLASS },
		{ "severity", required_argument, NULL, OPT_SEVERITY },
		{ "text", required_argument, NULL, OPT_TEXT },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	json_t *args = NULL, *data = NULL;
	int ch, ret = CLI_EXIT_USAGE;

	if (argc < 2)
		return cli_usage_error("updates: list or show expected");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0)
		return cli_cmd_help(cmd);
	bool list = strcmp(sub, "list") == 0;
	if (!list && strcmp(sub, "show") != 0)
		return cli_usage_error("updates: unknown subcommand '%s'", sub);

	args = json_object();
	cli_getopt_reset();
	while ((ch = getopt_long(argc - 1, argv + 1, ":jh", opts, NULL)) != -1) {
		const char *key = NULL;
		switch (ch) {
		case 'j':
			json = true;
			continue;
		case 'h':
			ret = cli_cmd_help(cmd);
			goto out;
		case OPT_PRODUCT: key = "product"; break;
		case OPT_CLASS: key = "classification"; break;
		case OPT_SEVERITY: key = "severity"; break;
		case OPT_TEXT: key = "text"; break;
		case OPT_LIMIT: {
			long n;
			if (!list) {
				ret = cli_usage_error("updates show: --limit is for list");
				goto out;
			}
			if (!cli_parse_uint(optarg, &n) || n < 1) {
				ret = cli_usage_error("updates list: --limit needs a positive number, not '%s'",
				                      optarg);
				goto out;
			}
			json_object_set_new(args, "limit", json_integer(n));
			continue;
		}
		case OPT_VERSION: {
			long n;
			if (!list) {
				ret = cli_usage_error("updates show: --version is for list");
				goto out;
			}
			if (!cli_parse_uint(optarg, &n) || n < 1) {
				ret = cli_usage_error("updates list: --version needs a catalog version "
				                      "(a positive number), not '%s'", optarg);
				goto out;
			}
			json_object_set_new(args, "version", json_integer(n));
			continue;
		}
		default:
			ret = cli_bad_option(cmd, ch, argc - 1, argv + 1);
			goto out;
		}
		if (!list) {
			ret = cli_usage_error("updates show: filters are for list");
			goto out;
		}
		json_object_set_new(args, key, json_string(optarg));
	}
	int pos = optind + 1;
	if (list) {
		if (pos < argc) {
			ret = cli_usage_error("updates list: unexpected argument '%s'",
			                      argv[pos]);
			goto out;
		}
		ret = cli_call(cli, "updates.list", args, CLI_TIMEOUT_MS, &data);
		args = NULL;
		if (ret == CLI_EXIT_OK)
			ret = cli_show(data, json, cli_updates_print);
		goto out;
	}
	if (argc - pos != 1) {
		ret = cli_usage_error("updates show: one update id expected");
		goto out;
	}
	json_object_set_new(args, "id", json_string(argv[pos]));
	ret = cli_call(cli, "updates.show", args, CLI_TIMEOUT_MS, &data);
	args = NULL;
	if (ret == CLI_EXIT_OK)
		ret = cli_show(data, json, cli_update_show_print);
out:
	json_decref(args);
	return ret;
}

/* ---- where ---- */

static void cli_where_print(const json_t *data)
{
	const json_t *sites = json_object_get(data, "sites");
	size_t i, nhold = 0, nlack = 0;
	const json_t *row;
	char b[3][32];

	json_array_foreach(sites, i, row) {
		if (json_is_true(json_object_get(row, "holds")))
			nhold++;
		else
			nlack++;
	}
	printf("Update %s\n\n",
	       json_string_value(json_object_get(data, "update_id")) ?: "-");
	printf("Sites holding it (%zu):\n", nhold);
	static const char *const hold_h[] = { "  SITE", "REVISION", "VERSION" };
	cli_table_t *t = cli_table_new(3, hold_h);
	json_array_foreach(sites, i, row) {
		if (!json_is_true(json_object_get(row, "holds")))
			continue;
		char site[40];
		snprintf(site, sizeof(site), "  %s", cli_cell(row, "site", b[0], 32));
		const char *cells[] = {
			site, cli_cell(row, "revision", b[1], 32),
			cli_cell(row, "catalog_version", b[2], 32),
		};
		cli_table_add(t, cells, NULL);
	}
	cli_table_print(t, stdout, false);
	printf("\nSites lacking it (%zu):\n", nlack);
	static const char *const lack_h[] = { "  SITE", "VERSION" };
	t = cli_table_new(2, lack_h);
	json_array_foreach(sites, i, row) {
		if (json_is_true(json_object_get(row, "holds")))
			continue;
		char site[40];
		snprintf(site, sizeof(site), "  %s", cli_cell(row, "site", b[0], 32));
		const char *cells[] = {
			site, cli_cell(row, "catalog_version", b[2], 32),
		};
		cli_table_add(t, cells, NULL);
	}
	cli_table_print(t, stdout, false);
}

int cli_where_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	int ret = cli_json_only(cmd, argc, argv, &json);
	if (ret >= 0)
		return ret;
	if (argc - optind != 1)
		return cli_usage_error("where: one update id expected");
	return cli_call_show(cli, "where", json_pack("{s:s}", "id", argv[optind]),
	                     CLI_TIMEOUT_MS, json, cli_where_print);
}

/* ---- history ---- */

static void cli_history_print(const json_t *data)
{
	static const cli_column_t messages[] = {
		{ "AT", "at" }, { "SITE", "site" }, { "ID", "msg_id" }, { "SEVERITY", "severity" },
		{ "TEXT", "text" },
	};
	static const cli_column_t syncs[] = {
		{ "KIND", "kind" }, { "STARTED", "started_at" }, { "ENDED", "ended_at" },
		{ "RESULT", "result" }, { "FROM", "from_version" }, { "TO", "to_version" },
		{ "ADDED", "added" }, { "CHANGED", "changed" }, { "REMOVED", "removed" },
		{ "EXPIRED", "expired" }, { "DURATION", "duration_s" }, { "TRIGGER", "trigger" },
		{ "SOURCE", "source" }, { "ERROR", "error" }, { "BY-SOURCE", "by_source" },
	};
	printf("Status messages:\n");
	cli_print_rows(json_object_get(data, "messages"), messages,
	               sizeof(messages) / sizeof(messages[0]));
	printf("\nSyncs:\n");
	cli_print_rows(json_object_get(data, "syncs"), syncs, sizeof(syncs) / sizeof(syncs[0]));
}

int cli_history_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "limit", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false;
	long limit = 50;
	int ch;

	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, ":n:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			if (!cli_parse_uint(optarg, &limit) || limit < 1)
				return cli_usage_error("history: --limit needs a positive number, not '%s'",
				                       optarg);
			break;
		case 'j':
			json = true;
			break;
		default:
			return cli_other_option(cmd, ch, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("history: unexpected argument '%s'", argv[optind]);
	return cli_call_show(cli, "history", json_pack("{s:I}", "limit", (json_int_t)limit),
	                     CLI_TIMEOUT_MS, json, cli_history_print);
}

/* ---- export, import, import-update ---- */

int cli_export_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	enum { OPT_SINCE = 256 };
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = NULL;
	long since = -1;
	bool json = false;
	json_t *data = NULL;
	int ch;

	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, ":o:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'o':
			out = optarg;
			break;
		case OPT_SINCE:
			if (!cli_parse_uint(optarg, &since))
				return cli_usage_error("export: --since needs a catalog version, not '%s'",
				                       optarg);
			break;
		case 'j':
			json = true;
			break;
		default:
			return cli_other_option(cmd, ch, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("export: unexpected argument '%s'", argv[optind]);
	if (out == NULL || *out == '\0')
		return cli_usage_error("export: --out FILE is required");
	char *abs = cli_abspath(out);
	if (abs == NULL)
		return cli_fail("export: cannot resolve %s", out);
	json_t *args = json_pack("{s:s}", "out", abs);
	if (since >= 0)
		json_object_set_new(args, "since", json_integer(since));
	free(abs);
	int ret = cli_call(cli, "export", args, 0, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json) {
		cli_print_json(data);
	} else {
		char b[6][48];
		printf("Exported versions %s to %s into %s: %s upserts, %s deletes, %s bytes.\n",
		       cli_cell(data, "from_version", b[0], 48),
		       cli_cell(data, "to_version", b[1], 48),
		       cli_cell(data, "file", b[2], 48),
		       cli_cell(data, "upserts", b[3], 48),
		       cli_cell(data, "deletes", b[4], 48),
		       cli_cell(data, "bytes", b[5], 48));
		/* The operator asked for changes and got everything: say so. */
		if (json_is_true(json_object_get(data, "snapshot_fallback"))) {
			const char *note = json_string_value(json_object_get(data, "note"));
			printf("Full snapshot instead of the changes asked for%s%s\n",
			       note ? ": " : ".", note ? note : "");
		}
	}
	json_decref(data);
	return CLI_EXIT_OK;
}

int cli_import_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	json_t *data = NULL;
	int ret = cli_json_only(cmd, argc, argv, &json);
	if (ret >= 0)
		return ret;
	if (argc - optind != 1)
		return cli_usage_error("import: one bundle file expected");
	char *abs = cli_abspath(argv[optind]);
	if (abs == NULL)
		return cli_fail("import: cannot resolve %s", argv[optind]);
	ret = cli_call(cli, "import", json_pack("{s:s}", "file", abs), 0, &data);
	free(abs);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json) {
		cli_print_json(data);
	} else if (json_is_true(json_object_get(data, "nothing_to_do"))) {
		const char *note = json_string_value(json_object_get(data, "note"));
		printf("Nothing to do: %s.\n", note ? note : "the bundle was already applied");
	} else {
		char b[4][48];
		printf("Imported versions %s to %s: %s upserts, %s deletes.\n",
		       cli_cell(data, "from_version", b[0], 48),
		       cli_cell(data, "to_version", b[1], 48),
		       cli_cell(data, "upserts", b[2], 48),
		       cli_cell(data, "deletes", b[3], 48));
	}
	json_decref(data);
	return CLI_EXIT_OK;
}

/* 8-4-4-4-12 hex digits. */
static bool cli_uuid_valid(const char *s)
{
	static const int groups[] = { 8, 4, 4, 4, 12 };
	for (size_t g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++)
			if (!isxdigit((unsigned char)*s))
				return false;
		if (*s != (g == 4 ? '\0' : '-'))
			return false;
		s++;
	}
	return true;
}

int cli_import_update_cb(cli_t *cli, const cli_cmd_t *cmd, int argc,
                         char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "id", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *from = NULL, *id = NULL;
	bool json = false;
	json_t *data = NULL;
	int ch;

	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			from = optarg;
			break;
		case 'i':
			id = optarg;
			break;
		case 'j':
			json = true;
			break;
		default:
			return cli_other_option(cmd, ch, argc, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("import-update: unexpected argument '%s'",
		                       argv[optind]);
	if (from == NULL || id == NULL)
		return cli_usage_error("import-update: --from and --id are required");
	if (!cli_uuid_valid(id))
		return cli_usage_error("import-update: '%s' is not an update id (UUID)",
		                       id);
	/* URLs go as they are; files must make sense to the daemon. */
	char *src = strstr(from, "://") ? strdup(from) : cli_abspath(from);
	if (src == NULL)
		return cli_fail("import-update: cannot resolve %s", from);
	int ret = cli_call(cli, "import-update",
	                   json_pack("{s:s, s:s}", "from", src, "id", id), 0, &data);
	free(src);
	if (ret != CLI_EXIT_OK)
		return ret;
	if (json) {
		cli_print_json(data);
	} else {
		char b[3][48];
		printf("Imported update %s revision %s; catalog version %s.\n",
		       cli_cell(data, "update_id", b[0], 48),
		       cli_cell(data, "revision", b[1], 48),
		       cli_cell(data, "version", b[2], 48));
	}
	json_decref(data);
	return CLI_EXIT_OK;
}

/* ---- verify ---- */

int cli_verify_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	json_t *data = NULL;
	int ret = cli_json_only(cmd, argc, argv, &json);
	if (ret >= 0)
		return ret;
	if (optind < argc)
		return cli_usage_error("verify: unexpected argument '%s'", argv[optind]);
	ret = cli_call(cli, "verify", NULL, CLI_TIMEOUT_MS, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	bool equal = json_is_true(json_object_get(data, "equal"));
	char b[6][80];
	if (json) {
		cli_print_json(data);
	} else {
		printf("%-8s version %-8s digest %s\n", "local",
		       cli_cell(data, "version", b[0], 80),
		       cli_cell(data, "digest", b[1], 80));
		bool top = json_is_null(json_object_get(data, "parent")) ||
		           json_object_get(data, "parent") == NULL;
		if (!top)
			printf("%-8s version %-8s digest %s\n",
			       cli_cell(data, "parent", b[2], 80),
			       cli_cell(data, "parent_version", b[3], 80),
			       cli_cell(data, "parent_digest", b[4], 80));
		const char *mode = json_string_value(json_object_get(data, "mode"));
		if (equal && mode && strcmp(mode, "disconnected") == 0)
			printf("Disconnected site: no link to a parent to compare with; the catalog "
			       "matches its own digest. Compare the digest with the exporting site's.\n");
		else if (equal)
			printf(top ? "Top site: no parent to compare with; the catalog matches its own "
			       "digest.\n" : "Catalog equal to the parent's.\n");
	}
	const char *reason = json_string_value(json_object_get(data, "reason"));
	if (!equal && reason && strcmp(reason, "stored rows do not match the stored digest") == 0) {
		/* Not the parent's fault: the local rows drifted from the local
		 * digest, which the two lines above cannot show. */
		char r[3][80];
		ret = cli_fail("local rows do not match the local digest: %s rows recompute to %s, "
		               "stored digest is for %s entries",
		               cli_cell(data, "rows", r[0], 80),
		               cli_cell(data, "recomputed_digest", r[1], 80),
		               cli_cell(data, "entries", r[2], 80));
	} else if (!equal && reason && json_is_null(json_object_get(data, "parent"))) {
		ret = cli_fail("verify: %s", reason);
	} else if (!equal) {
		ret = cli_fail("catalog differs from parent %s%s%s",
		               cli_cell(data, "parent", b[5], 80), reason ? ": " : "",
		               reason ? reason : "");
	}
	json_decref(data);
	return ret;
}
