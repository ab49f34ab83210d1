/*
 * Daemon logging: levels, a per-peer prefix, stderr or a file.
 * Thread-safe (one write(2) per line), so worker threads may log.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

typedef enum {
	SS_LOG_ERROR = 0,
	SS_LOG_WARNING,
	SS_LOG_NOTICE,
	SS_LOG_INFO,
	SS_LOG_DEBUG,
} ss_log_level_t;

/*! \brief Set the threshold and the site code printed on each line. */
void log_init(ss_log_level_t level, const char *site);

/*! \brief Parse "error", "warning", "notice", "info", "debug"; -1 if unknown. */
int log_level_parse(const char *name);

void log_msg(ss_log_level_t level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(ss_log_level_t level, const char *prefix, const char *fmt,
              va_list ap);

#define log_error(...)   log_msg(SS_LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(SS_LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(SS_LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(SS_LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(SS_LOG_DEBUG, __VA_ARGS__)

/*!
 * \brief Copy text a peer or an upstream supplied, with every control
 * character (C0, DEL and UTF-8 C1) written as \xNN, so it cannot break or
 * forge a line in the log, the history or the sync log. The one escaping
 * helper: the daemon log, site_message() and site_synclog() call it.
 * \param out  Output: always NUL-terminated; truncated at a whole escape.
 * \return out
 */
char *log_escape(const char *in, char *out, size_t outlen);

/*
 * One line per window for events a peer can repeat at will (refused
 * connections, failed handshakes, accept errors): the first event of a
 * window is logged, the rest are counted and reported with the next line.
 * Event-loop thread only.
 */
typedef struct {
	time_t last;            /* when the last line was written */
	unsigned long skipped;  /* events not logged since */
} log_rate_t;

/*!
 * \brief May a line be written now (at most one per \a seconds)?
 * \param skipped  Output: events not logged before this one (when true).
 */
bool log_rate_allow(log_rate_t *r, int seconds, unsigned long *skipped);

/*!
 * \brief A URL fit to show: the user name and password before the '@'
 * of the authority become three stars. Used for every URL that reaches the
 * log, the history, the sync log or /status (here, below the configuration
 * and the fetcher, which both need it).
 * \param out  Output: always NUL-terminated (NULL url gives "").
 * \return out
 */
char *log_url_redact(const char *url, char *out, size_t outlen);

/* A line about one peer, "ROLE NAME: message": both replication links
 * name the site at the other end this way, so one grep finds a peer. */
#define log_peer(lvl, role, name, fmt, ...) \
	log_msg(lvl, "%s %s: " fmt, role, name, ##__VA_ARGS__)

/*! \brief True when name is a known level. */
static inline bool log_level_valid(const char *name)
{
	return name != NULL && log_level_parse(name) >= 0;
}
