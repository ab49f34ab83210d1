/*
 * Internals shared by the files of the `sitesync` operator CLI: the command
 * table entry, the control-socket client and the output helpers (aligned
 * tables, JSON, messages with the CLI's exit status conventions).
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

/* Exit status of the CLI (DESIGN §9). */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_USAGE = 1,
	CLI_EXIT_FAIL = 2,
	CLI_EXIT_UNREACHABLE = 3,   /* sync --wait: stale or disconnected sites left out */
};

typedef struct {
	const char *conf_path;  /* -c, or the default */
	bool conf_given;        /* -c was on the command line */
	char *socket;           /* -s, or read from the configuration on demand */
	bool tty_in;            /* stdin is a terminal: may ask questions */
	bool tty_out;           /* stdout is a terminal: colours, redraws */
	bool lenient_conf;      /* find the socket even in a configuration the daemon refuses */
} cli_t;

typedef struct cli_cmd cli_cmd_t;

/* argv[0] is the command name; returns a CLI_EXIT_* status. */
typedef int (*cli_run_cb)(cli_t *cli, const cli_cmd_t *cmd, int argc,
                          char **argv);

struct cli_cmd {
	const char *name;
	cli_run_cb run;
	const char *usage;    /* argument synopsis after the name */
	const char *summary;  /* one line for the global help */
	const char *help;     /* option lines for COMMAND --help */
	const char *kind;     /* category kind, for products & co */
};

/*! \brief Print "Usage: sitesync NAME ..." and the option help to stdout. */
int cli_cmd_help(const cli_cmd_t *cmd);

/*!
 * \brief Report bad usage: "sitesync: MESSAGE" and the --help hint on stderr.
 * \return CLI_EXIT_USAGE.
 */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*!
 * \brief Report an operational failure: "sitesync: MESSAGE" on stderr.
 * \return CLI_EXIT_FAIL.
 */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*!
 * \brief Send one request to sitesyncd and wait for its reply.
 *
 * Failures (daemon unreachable, error reply, malformed reply) are printed.
 *
 * \param cli         CLI state (the socket is resolved on first use).
 * \param cmd         Command name, e.g. "child.add".
 * \param args        Arguments object, reference stolen; NULL sends {}.
 * \param timeout_ms  How long to wait for the reply, 0 = no limit.
 * \param data        Output: reply data (new reference), when not NULL.
 * \return CLI_EXIT_OK or CLI_EXIT_FAIL.
 */
int cli_call(cli_t *cli, const char *cmd, json_t *args, int timeout_ms,
             json_t **data);

/*! \brief Print a JSON value indented, followed by a newline, to stdout. */
void cli_print_json(const json_t *v);

/*!
 * \brief Reset getopt_long for a command's own options.
 *
 * Must be called before parsing argv of a command: the global options used
 * the same getopt state.
 */
void cli_getopt_reset(void);

/*!
 * \brief Report the option getopt_long refused.
 * \param ch  What getopt_long returned: '?' or ':' (optstring starts with ':').
 * \return CLI_EXIT_USAGE.
 */
int cli_bad_option(const cli_cmd_t *cmd, int ch, int argc, char **argv);

/*!
 * \brief Parse only --json/--help; positional words stay in argv[optind..].
 * \return -1 to go on, else an exit status.
 */
int cli_json_only(const cli_cmd_t *cmd, int argc, char **argv, bool *json);

/*! \brief cli_json_only() with another optstring ("+:jh": options first). */
int cli_json_opts(const cli_cmd_t *cmd, const char *optstring, int argc,
                  char **argv, bool *json);

/*!
 * \brief The end of a command's option switch: 'h' prints its help, anything
 * else is cli_bad_option().
 */
int cli_other_option(const cli_cmd_t *cmd, int ch, int argc, char **argv);

/*! \brief Print data as JSON or, through fn, as text; frees data; CLI_EXIT_OK. */
int cli_show(json_t *data, bool json, void (*fn)(const json_t *));

/*! \brief cli_call() and, when it succeeds, cli_show() of its answer. */
int cli_call_show(cli_t *cli, const char *name, json_t *args, int timeout_ms,
                  bool json, void (*fn)(const json_t *));

/*! \brief Parse a non-negative decimal integer; false when malformed. */
bool cli_parse_uint(const char *s, long *out);

/*! \brief Parse an ISO 8601 UTC time ("2026-11-24T02:00:20Z"); -1 if not. */
time_t cli_parse_time(const char *s);

/*!
 * \brief Text of a JSON scalar for a table cell: strings as they are,
 *        numbers in decimal, booleans as yes/no, null or missing as "-".
 * \param buf  Scratch space for numbers.
 */
const char *cli_cell(const json_t *obj, const char *key, char *buf,
                     size_t len);

/*! \brief Aligned text table; cells are copied. */
typedef struct cli_table cli_table_t;

/*! \brief New table with a header row of ncols column names. */
cli_table_t *cli_table_new(size_t ncols, const char *const *headers);

/*!
 * \brief Append one row.
 * \param cells   ncols strings (NULL = "-").
 * \param colour  ANSI SGR code per cell or NULL (only used when printing
 *                with colour).
 */
void cli_table_add(cli_table_t *t, const char *const *cells,
                   const char *const *colour);

/*! \brief Print with columns padded to their widest cell, then free. */
void cli_table_print(cli_table_t *t, FILE *out, bool colour);

/*! \brief A table column: its header and the JSON key of its cells. */
typedef struct {
	const char *header;
	const char *key;
} cli_column_t;

#define CLI_MAX_COLUMNS 16

/*!
 * \brief Print the objects of the JSON array \a rows as an aligned table,
 * one column per entry of \a cols (at most CLI_MAX_COLUMNS), cells as
 * cli_cell() renders them.
 */
void cli_print_rows(const json_t *rows, const cli_column_t *cols, size_t ncols);

/*! \brief Display width of UTF-8 text (one column per code point). */
size_t cli_text_width(const char *s);

/*
 * Commands (cli_status.c, cli_cmds.c). Each gets argv from the command name
 * on and returns a CLI_EXIT_* status.
 */
/*! \brief `status [--json] [--watch [SECS]]`: the subtree as a tree table. */
int cli_status_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `sync [--yes] [--wait] [--full] [--timeout SECS]`. */
int cli_sync_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `child add|remove CODE`, `child list [--json]`. */
int cli_child_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `products|classifications|languages list|select|deselect`. */
int cli_category_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `updates list [filters]`, `updates show ID`. */
int cli_updates_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `where UPDATE_ID`: sites holding and lacking an update. */
int cli_where_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `history [--limit N]`: status messages and syncs. */
int cli_history_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `settings [list] | set KEY VALUE` (cli_settings.c). */
int cli_settings_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `remove-update ID`: a hand-imported update out again (cli_settings.c). */
int cli_remove_update_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `reload`: the daemon re-reads its configuration; exit 2 when refused. */
int cli_reload_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `export --out FILE [--since V]`: write a bundle. */
int cli_export_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `import FILE`: apply a bundle at a disconnected site. */
int cli_import_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);
/*! \brief `import-update --from URL|FILE --id UUID`. */
int cli_import_update_cb(cli_t *cli, const cli_cmd_t *cmd, int argc,
                         char **argv);
/*! \brief `verify`: own digest against the parent's; 0 only when equal. */
int cli_verify_cb(cli_t *cli, const cli_cmd_t *cmd, int argc, char **argv);

/*!
 * \brief Render a status object (DESIGN §9) as the tree table.
 * \param colour  Colour the STATE column by state.
 */
void cli_status_render(FILE *out, const json_t *status, bool colour);
