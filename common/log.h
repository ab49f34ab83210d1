/*
 * Daemon logging: levels, a per-peer prefix, stderr or a file.
 * Thread-safe (one write(2) per line), so worker threads may log.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

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

/* A line about one peer, "ROLE NAME: message": both replication links
 * name the site at the other end this way, so one grep finds a peer. */
#define log_peer(lvl, role, name, fmt, ...) \
	log_msg(lvl, "%s %s: " fmt, role, name, ##__VA_ARGS__)

/*! \brief True when name is a known level. */
static inline bool log_level_valid(const char *name)
{
	return name != NULL && log_level_parse(name) >= 0;
}
