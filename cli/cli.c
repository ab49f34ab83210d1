/*
 * sitesync: the operator CLI. It parses the global options, picks the
 * command from a table and talks to the local sitesyncd over the control
 * socket (server/ctl.h): one JSON request line, one JSON reply line.
 * Commands live in cli_status.c (status, sync) and cli_cmds.c (the rest).
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "proto/version.h"
#include "common/conf.h"
#include "common/errcode.h"

#define CLI_DEFAULT_SOCKET "/run/sitesync/control.sock"
/* Replies such as `updates list` can be large, but not unbounded. */
#define CLI_MAX_REPLY (256u << 20)

static const cli_cmd_t cli_cmds[] = {
	{ "status", cli_status_cb, "[--json] [--watch [SECS]]",
	  "sync status of this site and its subtree, as a tree",
	  "  --json               print the status object as received\n"
	  "  --watch [SECS]       redraw every SECS seconds (default 2) until interrupted\n",
	  NULL },
	{ "sync", cli_sync_cb, "[--yes] [--wait] [--full] [--allow-removal] [--timeout SECS]",
	  "start a sync now: the hierarchy's at the top, a pull from the parent elsewhere",
	  "  -y, --yes            do not ask for confirmation\n"
	  "  -w, --wait           follow progress until every site holds the new version\n"
	  "      --full           ignore \"not modified\"; every site re-pulls a full snapshot\n"
	  "      --allow-removal  let this sync remove more than [upstream]\n"
	  "                       max_removal_percent of the catalog\n"
	  "      --timeout SECS   give up waiting after SECS seconds (default 3600)\n",
	  NULL },
	{ "child", cli_child_cb, "add CODE [--json] | remove CODE [--json] | list [--json]",
	  "approve, remove or list the child sites of this site",
	  "  add CODE             approve child site CODE (3 upper-case letters or digits)\n"
	  "  remove CODE          withdraw the approval of child site CODE\n"
	  "  list                 approved children and their links\n"
	  "  --json               print the reply as received\n",
	  NULL },
	{ "products", cli_category_cb, "list [--json] | select ID... [--json] | deselect ID... [--json]",
	  "products synchronized from upstream (top site)",
	  "  list                 known products, selected or not\n"
	  "  select ID...         synchronize updates of these products; an id or\n"
	  "                       title a sync recorded, in any case\n"
	  "  deselect ID...       stop synchronizing them\n"
	  "  --json               print the reply as received\n",
	  "product" },
	{ "classifications", cli_category_cb, "list [--json] | select ID... [--json] | deselect ID... [--json]",
	  "update classifications synchronized from upstream (top site)",
	  "  list                 known classifications, selected or not\n"
	  "  select ID...         synchronize updates of these classifications; an id or\n"
	  "                       title a sync recorded, in any case\n"
	  "  deselect ID...       stop synchronizing them\n"
	  "  --json               print the reply as received\n",
	  "classification" },
	{ "languages", cli_category_cb, "list [--json] | select ID... [--json] | deselect ID... [--json]",
	  "languages synchronized from upstream (top site)",
	  "  list                 known languages, selected or not\n"
	  "  select ID...         synchronize updates in these languages; an id or\n"
	  "                       title a sync recorded, in any case\n"
	  "  deselect ID...       stop synchronizing them\n"
	  "  --json               print the reply as received\n",
	  "language" },
	{ "updates", cli_updates_cb, "list [OPTIONS] [--json] | show ID [--json]",
	  "list or show the updates in this site's catalog",
	  "  list                 updates in the catalog, filtered by:\n"
	  "    --product P        product id or title, in any case\n"
	  "    --classification C classification id or title, in any case\n"
	  "    --severity S       MSRC severity\n"
	  "    --text T           text in the title or KB article\n"
	  "    --version N        what catalog version N changed (added, changed,\n"
	  "                       removed; removed ones only without other filters)\n"
	  "    --limit N          at most N updates\n"
	  "  show ID              every field of one update\n"
	  "  --json               print the reply as received\n",
	  NULL },
	{ "where", cli_where_cb, "UPDATE_ID [--json]",
	  "which sites hold an update and which lack it",
	  "  --json               print the reply as received\n",
	  NULL },
	{ "history", cli_history_cb, "[--limit N] [--json]",
	  "recent status messages and syncs of this site",
	  "  --limit N            at most N entries of each kind\n"
	  "  --json               print the reply as received\n",
	  NULL },
	{ "settings", cli_settings_cb, "[list] [--json] | set KEY VALUE [--json]",
	  "the top site's expiry and purge settings",
	  "  list                 the settings, their values, defaults and ranges\n"
	  "  set KEY VALUE        supersede_expire_months (-1 to 1200; 0 at once,\n"
	  "                       -1 never) or purge_expired_days (0 to 36500;\n"
	  "                       0 never); applies from the next sync\n"
	  "  --json               print the reply as received\n",
	  NULL },
	{ "export", cli_export_cb, "--out FILE [--since V] [--json]",
	  "write the catalog changes after version V to a bundle file",
	  "  -o, --out FILE       bundle to write (created by sitesyncd)\n"
	  "      --since V        changes after catalog version V (default: full catalog)\n"
	  "      --json           print the reply as received\n",
	  NULL },
	{ "import", cli_import_cb, "FILE [--json]",
	  "apply an exported bundle at a disconnected site",
	  "  --json               print the reply as received\n",
	  NULL },
	{ "import-update", cli_import_update_cb, "--from URL|FILE --id UUID [--json]",
	  "import a single update from a catalog by hand (top site)",
	  "  --from URL|FILE      catalog to take the update from\n"
	  "  --id UUID            update id\n"
	  "  --json               print the reply as received\n",
	  NULL },
	{ "reload", cli_reload_cb, "[--json]",
	  "re-read the daemon's configuration; exit 2 when it is refused",
	  "  --json               print the reply as received\n",
	  NULL },
	{ "remove-update", cli_remove_update_cb, "UUID [--json]",
	  "remove an update imported by hand from the catalog (top site)",
	  "  --json               print the reply as received\n",
	  NULL },
	{ "verify", cli_verify_cb, "[--json]",
	  "compare this site's catalog digest with its parent's (exit 0 when equal)",
	  "  --json               print the reply as received\n",
	  NULL },
};

#define CLI_NCMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static void cli_usage(FILE *out)
{
	fprintf(out,
	        "Usage: sitesync [-c FILE] [-s SOCKET] COMMAND [ARGS]\n"
	        "\n"
	        "Operate sitesyncd, the daemon that replicates software-update metadata\n"
	        "down the hierarchy of sites.\n"
	        "\n"
	        "Options:\n"
	        "  -c, --config FILE    configuration file (default %s)\n"
	        "  -s, --socket SOCKET  control socket (default: [control] socket of the\n"
	        "                       configuration, else %s)\n"
	        "  -h, --help           show this help and exit\n"
	        "      --version        show the version and exit\n"
	        "  -V                   show the version and the library versions\n"
	        "\n"
	        "Commands:\n", SS_DEFAULT_CONF, CLI_DEFAULT_SOCKET);
	for (size_t i = 0; i < CLI_NCMDS; i++)
		fprintf(out, "  %-16s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
	fprintf(out,
	        "\n"
	        "Run 'sitesync COMMAND --help' for the arguments of one command.\n"
	        "Exit status: 0 success, 1 usage error, 2 operational failure.\n");
}

int cli_cmd_help(const cli_cmd_t *cmd)
{
	printf("Usage: sitesync [-c FILE] [-s SOCKET] %s %s\n\n%s.\n",
	       cmd->name, cmd->usage, cmd->summary);
	if (cmd->help[0] != '\0')
		printf("\n%s", cmd->help);
	/* The same column as every command's options above. */
	printf("  %-21s%s\n", "-h, --help", "show this help and exit");
	return CLI_EXIT_OK;
}

static void cli_version(bool libs)
{
	printf("sitesync %s (protocol %d)\n", SS_SOFTWARE_VERSION, SS_PROTO_VERSION);
	if (!libs)
		return;
	printf("libevent %s\n", event_get_version());
	printf("jansson %s\n", jansson_version_str());
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
}

int cli_usage_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	fflush(stdout);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages start with the command's name ("history: ..."): point at
	 * that command's help, which lists what it takes. */
	const char *cmd = NULL;
	size_t n = strcspn(msg, ": ");
	for (size_t i = 0; i < CLI_NCMDS && cmd == NULL; i++)
		if (strlen(cli_cmds[i].name) == n && strncmp(msg, cli_cmds[i].name, n) == 0)
			cmd = cli_cmds[i].name;
	fprintf(stderr, "sitesync: %s\n", msg);
	if (cmd)
		fprintf(stderr, "Try 'sitesync %s --help'.\n", cmd);
	else
		fputs("Try 'sitesync --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

int cli_fail(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("sitesync: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EXIT_FAIL;
}

void cli_getopt_reset(void)
{
	/* 0 (not 1) makes glibc re-initialise its internal state too. */
	optind = 0;
	opterr = 0;
}

int cli_bad_option(const cli_cmd_t *cmd, int ch, int argc, char **argv)
{
	const char *opt = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	bool is_long = strncmp(opt, "--", 2) == 0;

	if (ch == ':')
		return cli_usage_error("%s: option %s needs an argument", cmd->name,
		                       is_long ? opt : (char[]){ '-', (char)optopt, 0 });
	if (!is_long && optopt > ' ' && optopt < 127)
		return cli_usage_error("%s: unknown option -%c", cmd->name, optopt);
	return cli_usage_error("%s: unknown option %s", cmd->name, opt);
}

bool cli_parse_uint(const char *s, long *out)
{
	char *end = NULL;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

time_t cli_parse_time(const char *s)
{
	struct tm tm = { 0 };
	int n = 0;
	if (s == NULL || sscanf(s, "%d-%d-%dT%d:%d:%d%n", &tm.tm_year, &tm.tm_mon,
	                        &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
	                        &tm.tm_sec, &n) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return timegm(&tm);
}

const char *cli_cell(const json_t *obj, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(obj, key);
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_real(v)) {
		snprintf(buf, len, "%g", json_real_value(v));
		return buf;
	}
	if (json_is_boolean(v))
		return json_is_true(v) ? "yes" : "no";
	return "-";
}

void cli_print_json(const json_t *v)
{
	char *text = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (text != NULL) {
		fputs(text, stdout);
		fputc('\n', stdout);
	}
	free(text);
}

/* ---- aligned tables ---- */

struct cli_table {
	size_t ncols, nrows, cap;
	char **cells;        /* nrows * ncols, row 0 is the header */
	const char **colour; /* same shape */
};

size_t cli_text_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

static char *cli_xstrdup(const char *s)
{
	char *d = strdup(s ? s : "-");
	if (d == NULL) {
		fputs("sitesync: out of memory\n", stderr);
		exit(CLI_EXIT_FAIL);
	}
	return d;
}

void cli_print_rows(const json_t *rows, const cli_column_t *cols, size_t ncols)
{
	const char *headers[CLI_MAX_COLUMNS], *cells[CLI_MAX_COLUMNS];
	char b[CLI_MAX_COLUMNS][48];
	if (ncols > CLI_MAX_COLUMNS)
		ncols = CLI_MAX_COLUMNS;
	for (size_t k = 0; k < ncols; k++)
		headers[k] = cols[k].header;
	cli_table_t *t = cli_table_new(ncols, headers);
	size_t i;
	const json_t *row;
	json_array_foreach(rows, i, row) {
		for (size_t k = 0; k < ncols; k++)
			cells[k] = cli_cell(row, cols[k].key, b[k], sizeof(b[k]));
		cli_table_add(t, cells, NULL);
	}
	cli_table_print(t, stdout, false);
}

cli_table_t *cli_table_new(size_t ncols, const char *const *headers)
{
	cli_table_t *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		fputs("sitesync: out of memory\n", stderr);
		exit(CLI_EXIT_FAIL);
	}
	t->ncols = ncols;
	cli_table_add(t, headers, NULL);
	return t;
}

void cli_table_add(cli_table_t *t, const char *const *cells,
                   const char *const *colour)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(*t->cells));
		t->colour = realloc(t->colour, t->cap * t->ncols * sizeof(*t->colour));
		if (t->cells == NULL || t->colour == NULL) {
			fputs("sitesync: out of memory\n", stderr);
			exit(CLI_EXIT_FAIL);
		}
	}
	for (size_t i = 0; i < t->ncols; i++) {
		t->cells[t->nrows * t->ncols + i] = cli_xstrdup(cells[i]);
		t->colour[t->nrows * t->ncols + i] = colour ? colour[i] : NULL;
	}
	t->nrows++;
}

void cli_table_print(cli_table_t *t, FILE *out, bool colour)
{
	size_t *width = calloc(t->ncols, sizeof(*width));
	if (width == NULL)
		exit(CLI_EXIT_FAIL);
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = cli_text_width(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		/* No trailing blanks: scripts compare lines. */
		size_t end = t->ncols;
		while (end > 1 && t->cells[r * t->ncols + end - 1][0] == '\0')
			end--;
		for (size_t c = 0; c < end; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			const char *sgr = t->colour[r * t->ncols + c];
			bool last = c + 1 == end;
			if (colour && sgr)
				fprintf(out, "\033[%sm%s\033[0m", sgr, cell);
			else
				fputs(cell, out);
			if (!last)
				fprintf(out, "%*s", (int)(width[c] - cli_text_width(cell) + 2), "");
		}
		fputc('\n', out);
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->colour);
	free(t);
	free(width);
}

/* ---- control socket client ---- */

/* The socket comes from -s, else from the configuration, read only now so
 * that --help works without one. A missing default configuration is fine:
 * the default socket path then applies. */
static int cli_resolve_socket(cli_t *cli)
{
	char err[512] = "";
	conf_t *conf = NULL;

	if (cli->socket != NULL)
		return CLI_EXIT_OK;
	int ret = cli->lenient_conf ? conf_load_lenient(cli->conf_path, &conf, err, sizeof(err)) :
	          conf_load(cli->conf_path, &conf, err, sizeof(err));
	if (ret == SS_EOK) {
		cli->socket = strdup(conf->control_socket ? conf->control_socket
		                                          : CLI_DEFAULT_SOCKET);
		conf_free(conf);
	} else if (!cli->conf_given && (ret == SS_ENOENT || ret == -EACCES)) {
		cli->socket = strdup(CLI_DEFAULT_SOCKET);
	} else {
		return cli_fail("%s", err[0] ? err : ss_strerror(ret));
	}
	if (cli->socket == NULL)
		return cli_fail("out of memory");
	return CLI_EXIT_OK;
}

/* Wait for fd to become ready; -1 on timeout or error (errno set). */
static int cli_wait_fd(int fd, short events, const struct timespec *deadline)
{
	for (;;) {
		int ms = -1;
		if (deadline != NULL) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long long left = (deadline->tv_sec - now.tv_sec) * 1000LL +
			                 (deadline->tv_nsec - now.tv_nsec) / 1000000;
			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
			ms = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static int cli_exchange(int fd, const char *req, int timeout_ms, char **reply,
                        size_t *reply_len)
{
	struct timespec deadline, *dl = NULL;
	size_t len = strlen(req), off = 0, cap = 0;
	char *buf = NULL;

	if (timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
		dl = &deadline;
	}
	while (off < len) {
		if (cli_wait_fd(fd, POLLOUT, dl) != 0)
			goto fail;
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			goto fail;
		if (n > 0)
			off += (size_t)n;
	}
	off = 0;
	for (;;) {
		if (off + 4096 > cap) {
			if (cap >= CLI_MAX_REPLY) {
				errno = EMSGSIZE;
				goto fail;
			}
			cap = cap ? cap * 2 : 65536;
			char *nbuf = realloc(buf, cap + 1);
			if (nbuf == NULL)
				goto fail;
			buf = nbuf;
		}
		if (cli_wait_fd(fd, POLLIN, dl) != 0)
			goto fail;
		ssize_t n = recv(fd, buf + off, cap - off, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (memchr(buf + off - (size_t)n, '\n', (size_t)n) != NULL)
			break;
	}
	if (buf == NULL)
		buf = malloc(1);
	if (buf == NULL)
		goto fail;
	buf[off] = '\0';
	*reply = buf;
	*reply_len = off;
	return 0;
fail:
	free(buf);
	return -1;
}

int cli_call(cli_t *cli, const char *cmd, json_t *args, int timeout_ms,
             json_t **data)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	json_t *req = NULL, *rep = NULL;
	char *text = NULL, *reply = NULL;
	size_t reply_len = 0;
	int fd = -1;
	int ret = cli_resolve_socket(cli);

	if (ret != CLI_EXIT_OK) {
		json_decref(args);
		return ret;
	}
	ret = CLI_EXIT_FAIL;
	req = json_pack("{s:s, s:o}", "cmd", cmd, "args", args ? args : json_object());
	text = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (text == NULL || strlen(text) + 1 > 65536) {
		cli_fail("%s: request too large", cmd);
		goto fail;
	}
	size_t tlen = strlen(text);
	char *line = realloc(text, tlen + 2);
	if (line == NULL) {
		cli_fail("out of memory");
		goto fail;
	}
	text = line;
	memcpy(text + tlen, "\n", 2);

	if (strlen(cli->socket) >= sizeof(sun.sun_path)) {
		cli_fail("cannot reach sitesyncd at %s: %s", cli->socket,
		         "socket path too long");
		goto fail;
	}
	strcpy(sun.sun_path, cli->socket);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		cli_fail("cannot reach sitesyncd at %s: %s", cli->socket,
		         strerror(errno));
		goto fail;
	}
	if (cli_exchange(fd, text, timeout_ms, &reply, &reply_len) != 0) {
		if (errno == ETIMEDOUT)
			cli_fail("no reply from sitesyncd at %s within %d s",
			         cli->socket, timeout_ms / 1000);
		else
			cli_fail("lost sitesyncd at %s: %s", cli->socket,
			         strerror(errno));
		goto fail;
	}
	if (reply_len == 0) {
		cli_fail("sitesyncd at %s closed the connection without replying",
		         cli->socket);
		goto fail;
	}
	json_error_t jerr;
	rep = json_loadb(reply, reply_len, 0, &jerr);
	if (!json_is_object(rep) || !json_is_boolean(json_object_get(rep, "ok"))) {
		cli_fail("malformed reply from sitesyncd: %s",
		         rep ? "not a reply object" : jerr.text);
		goto fail;
	}
	if (!json_is_true(json_object_get(rep, "ok"))) {
		const char *msg = json_string_value(json_object_get(rep, "error"));
		json_int_t code = json_integer_value(json_object_get(rep, "code"));
		if (msg == NULL)
			msg = ss_strerror((int)code);
		cli_fail("%s", msg);
		goto fail;
	}
	if (data != NULL) {
		*data = json_object_get(rep, "data");
		if (*data == NULL)
			*data = json_object();
		else
			json_incref(*data);
	}
	ret = CLI_EXIT_OK;
fail:
	if (fd >= 0)
		close(fd);
	free(reply);
	free(text);
	json_decref(rep);
	json_decref(req);
	return ret;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	enum { OPT_VERSION = 256 };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	cli_t cli = {
		.conf_path = SS_DEFAULT_CONF,
		.tty_in = isatty(STDIN_FILENO),
		.tty_out = isatty(STDOUT_FILENO),
	};
	const char *sock_arg = NULL;
	int ch, ret;

	opterr = 0;
	/* '+': stop at the command; its options are parsed by the command. */
	while ((ch = getopt_long(argc, argv, "+:c:s:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cli.conf_path = optarg;
			cli.conf_given = true;
			break;
		case 's':
			sock_arg = optarg;
			break;
		case 'h':
			cli_usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
		case OPT_VERSION:
			cli_version(ch == 'V');
			return CLI_EXIT_OK;
		case ':':
			return cli_usage_error("option %s needs an argument",
			                       argv[optind - 1]);
		default:
			if (optopt != 0)
				return cli_usage_error("unknown option -%c", optopt);
			return cli_usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("no command given");

	const char *name = argv[optind];
	const cli_cmd_t *cmd = NULL;
	for (size_t i = 0; i < CLI_NCMDS; i++)
		if (strcmp(cli_cmds[i].name, name) == 0)
			cmd = &cli_cmds[i];
	if (cmd == NULL)
		return cli_usage_error("unknown command '%s'", name);

	if (sock_arg != NULL && (cli.socket = strdup(sock_arg)) == NULL)
		return cli_fail("out of memory");
	ret = cmd->run(&cli, cmd, argc - optind, argv + optind);
	fflush(stdout);
	if (ferror(stdout) && ret == CLI_EXIT_OK)
		ret = cli_fail("cannot write output: %s", strerror(errno));
	free(cli.socket);
	return ret;
}

/* Options shared by the simple listing commands: --json and --help. */
static const struct option cli_json_longopts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* --help, or the option getopt_long refused: what every command's switch
 * ends with. */
int cli_other_option(const cli_cmd_t *cmd, int ch, int argc, char **argv)
{
	if (ch == 'h')
		return cli_cmd_help(cmd);
	return cli_bad_option(cmd, ch, argc, argv);
}

/*
 * Parse only --json/--help with optstring (":jh", or "+:jh" to stop at the
 * first word); positional words are left in argv[optind..].
 * Returns -1 to go on, else an exit status.
 */
int cli_json_opts(const cli_cmd_t *cmd, const char *optstring, int argc,
                  char **argv, bool *json)
{
	int ch;
	cli_getopt_reset();
	while ((ch = getopt_long(argc, argv, optstring, cli_json_longopts, NULL)) != -1) {
		if (ch != 'j')
			return cli_other_option(cmd, ch, argc, argv);
		*json = true;
	}
	return -1;
}

int cli_json_only(const cli_cmd_t *cmd, int argc, char **argv, bool *json)
{
	return cli_json_opts(cmd, ":jh", argc, argv, json);
}

/* Print either JSON or, through fn, the human form; frees data. */
int cli_show(json_t *data, bool json, void (*fn)(const json_t *))
{
	if (json)
		cli_print_json(data);
	else
		fn(data);
	json_decref(data);
	return CLI_EXIT_OK;
}

/* Send a request and show its answer: JSON or, through fn, text. */
int cli_call_show(cli_t *cli, const char *name, json_t *args, int timeout_ms,
                  bool json, void (*fn)(const json_t *))
{
	json_t *data = NULL;
	int ret = cli_call(cli, name, args, timeout_ms, &data);
	if (ret != CLI_EXIT_OK)
		return ret;
	return cli_show(data, json, fn);
}
