/*
 * Monitoring over HTTP ([http] listen): GET /status returns the status
 * object of DESIGN.md 9 as JSON, GET /metrics the same data in the
 * Prometheus text format 0.0.4, and GET / a self-contained dashboard page
 * that polls /status and draws the hierarchy. Read-only: every other
 * method is answered 405, every other path 404.
 */
#pragma once

#include <jansson.h>

struct event_base;

typedef struct http http_t;

/*!
 * \brief Produces the status object for one request.
 *
 * \param arg  The arg given to http_start().
 *
 * \return A NEW reference to the status object (DESIGN.md 9), or NULL when
 *         it cannot be built (the client then gets 503).
 */
typedef json_t *(*http_status_cb)(void *arg);

/*!
 * \brief Bind the HTTP endpoint and serve it on an event base.
 *
 * \param base    Event base the server runs on.
 * \param listen  "127.0.0.1:8080", "[::1]:8080" or "0.0.0.0:8080";
 *                port 0 picks a free port (see http_port()).
 * \param cb      Status callback, called once per /status or /metrics.
 * \param arg     Passed to cb.
 * \param out     Output: the server, to free with http_free().
 * \param err     Output: on error, why (bad address, bind failure).
 * \param errlen  Size of err.
 *
 * \return SS_EOK, SS_EINVAL for a malformed listen address, SS_EIO when
 *         the address cannot be bound, SS_ENOMEM.
 */
int http_start(struct event_base *base, const char *listen, http_status_cb cb,
               void *arg, http_t **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief What one client may cost: request line + headers and body in
 * bytes (evhttp answers more with an error and closes), seconds of
 * silence, and open connections (at the cap, accepting pauses until one
 * closes). http_start() sets 8192, 4096, 10, 64.
 */
void http_set_limits(http_t *h, int max_header, int max_body, int timeout, int max_conns);

/*!
 * \brief The port the server is bound to (useful with port 0).
 *
 * \return The port, or -1 if unknown.
 */
int http_port(const http_t *h);

/*!
 * \brief Stop serving and free the server; open requests are dropped.
 *        Accepts NULL.
 */
void http_free(http_t *h);

/*!
 * \brief Render a status object as Prometheus text (format 0.0.4).
 *
 * Fields that are missing or null in a site row produce no sample for that
 * site; free-text fields (last_error) are never used as labels.
 *
 * \param status  Status object of DESIGN.md 9.
 *
 * \return The exposition text, malloc'd (free() it), or NULL on OOM or
 *         when status is not an object.
 */
char *http_metrics_render(const json_t *status);

/*!
 * \brief Parse an ISO 8601 UTC time such as "2026-11-24T02:00:20Z" (also
 *        with fractional seconds or a +hh:mm offset).
 *
 * \param text  The time string.
 * \param out   Output: unix seconds.
 *
 * \return SS_EOK or SS_EINVAL.
 */
int http_parse_iso8601(const char *text, double *out);

/*! \brief The dashboard page (HTML with inline CSS and JavaScript). */
extern const char http_dashboard_html[];
