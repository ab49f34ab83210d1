/* The top site's catalog administration: `sitesync settings` (run-time
 * settings of the upstream sync) and `sitesync remove-update`. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* A settings change is one quick query; the daemon answers well within it. */
#define SETTINGS_TIMEOUT_MS 60000

static void settings_print(const json_t *data)
{
	static const cli_column_t cols[] = {
		{ "SETTING", "key" }, { "VALUE", "value" }, { "DEFAULT", "default" },
		{ "RANGE", "range" }, { "MEANING", "meaning" },
	};
	json_t *rows = json_deep_copy(json_object_get(data, "settings"));
	size_t i;
	json_t *o;
	json_array_foreach(rows, i, o) {
		char r[64];
		snprintf(r, sizeof(r), "%" JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT,
		         json_integer_value(json_object_get(o, "min")),
		         json_integer_value(json_object_get(o, "max")));
		json_object_set_new(o, "range", json_string(r));
	}
	cli_print_rows(rows, cols, sizeof(cols) / sizeof(cols[0]));
	json_decref(rows);
}

int cli_settings_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	json_t *data = NULL;
	/* Options before the subcommand only ("+"): a value may be negative. */
	int ret = cli_json_opts(cmd, "+:jh", argc, argv, &json);
	if (ret >= 0)
		return ret;
	/* After it, --json may still come anywhere. */
	char *rest[8];
	int n = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--help") == 0)
			return cli_cmd_help(cmd);
		else if (n < (int)(sizeof(rest) / sizeof(rest[0])))
			rest[n++] = argv[i];
		else
			return cli_usage_error("settings: too many arguments");
	}
	const char *sub = n > 0 ? rest[0] : "list";
	if (strcmp(sub, "list") == 0) {
		if (n > 1)
			return cli_usage_error("settings list: unexpected argument '%s'", rest[1]);
		ret = cli_call(cli, "settings.list", NULL, SETTINGS_TIMEOUT_MS, &data);
		if (ret != CLI_EXIT_OK)
			return ret;
		if (json)
			cli_print_json(data);
		else
			settings_print(data);
	} else if (strcmp(sub, "set") == 0) {
		if (n != 3)
			return cli_usage_error("settings set: a setting and a value expected");
		ret = cli_call(cli, "settings.set", json_pack("{s:s, s:s}", "key", rest[1],
		               "value", rest[2]), SETTINGS_TIMEOUT_MS, &data);
		if (ret != CLI_EXIT_OK)
			return ret;
		if (json)
			cli_print_json(data);
		else if (json_is_true(json_object_get(data, "changed")))
			printf("%s: %s -> %s (from the next sync on)\n",
			       json_string_value(json_object_get(data, "key")),
			       json_string_value(json_object_get(data, "old")),
			       json_string_value(json_object_get(data, "value")));
		else
			printf("%s is %s already: nothing changed\n",
			       json_string_value(json_object_get(data, "key")),
			       json_string_value(json_object_get(data, "value")));
	} else {
		return cli_usage_error("settings: unknown subcommand '%s'", sub);
	}
	json_decref(data);
	return CLI_EXIT_OK;
}

static void remove_update_print(const json_t *data)
{
	printf("Removed imported update %s revision %" JSON_INTEGER_FORMAT "; catalog version %"
	       JSON_INTEGER_FORMAT ".\n", json_string_value(json_object_get(data, "update_id")),
	       json_integer_value(json_object_get(data, "revision")),
	       json_integer_value(json_object_get(data, "version")));
}

/* `sitesync remove-update ID`: take a hand-imported update out of the catalog. */
int cli_remove_update_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	int ret = cli_json_only(cmd, argc, argv, &json);
	if (ret >= 0)
		return ret;
	if (argc - optind != 1)
		return cli_usage_error("remove-update: one update id expected");
	return cli_call_show(cli, "remove-update", json_pack("{s:s}", "id", argv[optind]), 0,
	                     json, remove_update_print);
}

static void reload_print(const json_t *data)
{
	const char *note = json_string_value(json_object_get(data, "note"));
	printf("Configuration reloaded from %s%s%s.\n",
	       json_string_value(json_object_get(data, "reloaded")),
	       note && note[0] ? "; " : "", note ? note : "");
}

/* `sitesync reload`: re-read the configuration and say whether it took
 * (systemd's ExecReload runs it, so `systemctl reload` reports a refusal). */
int cli_reload_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv)
{
	bool json = false;
	int ret = cli_json_only(cmd, argc, argv, &json);
	if (ret >= 0)
		return ret;
	if (optind < argc)
		return cli_usage_error("reload: unexpected argument '%s'", argv[optind]);
	/* The file may be what the daemon is about to refuse: it says why. */
	cli->lenient_conf = true;
	return cli_call_show(cli, "reload", NULL, 0, json, reload_print);
}
