/* Line-oriented logging to stderr with level filter and site prefix. */
#include "common/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Set once at startup before threads exist, then only read. */
static ss_log_level_t log_threshold = SS_LOG_INFO;
static char log_site[8] = "---";

static const char *const level_names[] = {
	"error", "warning", "notice", "info", "debug",
};

void log_init(ss_log_level_t level, const char *site)
{
	log_threshold = level;
	if (site)
		snprintf(log_site, sizeof(log_site), "%s", site);
}

int log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void log_vmsg(ss_log_level_t level, const char *prefix, const char *fmt,
              va_list ap)
{
	if (level > log_threshold)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	                 log_site, level_names[level], prefix ? prefix : "");
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		return;
	/* The text carries what peers and upstreams said: escaped, so it can
	 * never end this line or start a forged one. */
	char msg[2048];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_escape(msg, line + n, sizeof(line) - 1 - (size_t)n);
	n += (int)strlen(line + n);
	line[n++] = '\n';
	/* One write per line keeps lines from threads whole. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

char *log_escape(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (outlen == 0)
		return out;
	for (const unsigned char *p = (const unsigned char *)in; p && *p; p++) {
		unsigned c = *p;
		/* C0 controls and DEL; C1 controls in UTF-8 (U+0080..U+009F, e.g.
		 * NEL) are written as \xc2\xNN too: some viewers break lines there. */
		bool c1 = c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
		size_t need = c < 0x20 || c == 0x7f ? 4 : c1 ? 8 : 1;
		if (o + need >= outlen)
			break;
		if (need == 1) {
			out[o++] = (char)c;
			continue;
		}
		for (int k = 0; k < (c1 ? 2 : 1); k++) {
			unsigned b = p[k];
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[b >> 4];
			out[o++] = hex[b & 15];
		}
		if (c1)
			p++;
	}
	out[o] = '\0';
	return out;
}

bool log_rate_allow(log_rate_t *r, int seconds, unsigned long *skipped)
{
	time_t now = time(NULL);
	if (r->last != 0 && now - r->last < seconds && now >= r->last) {
		r->skipped++;
		return false;
	}
	*skipped = r->skipped;
	r->skipped = 0;
	r->last = now;
	return true;
}

void log_msg(ss_log_level_t level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, NULL, fmt, ap);
	va_end(ap);
}

char *log_url_redact(const char *url, char *out, size_t outlen)
{
	if (outlen == 0)
		return out;
	if (url == NULL) {
		out[0] = '\0';
		return out;
	}
	const char *auth = strstr(url, "://");
	auth = auth ? auth + 3 : url;
	size_t alen = strcspn(auth, "/?#");
	const char *at = NULL;
	for (const char *p = auth; p < auth + alen; p++)
		if (*p == '@')
			at = p;     /* the last one: a password may hold '@' */
	if (at == NULL)
		snprintf(out, outlen, "%s", url);
	else
		snprintf(out, outlen, "%.*s***%s", (int)(auth - url), url, at);
	return out;
}
