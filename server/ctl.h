/*
 * Control socket of sitesyncd: the local UNIX socket the `sitesync` CLI
 * talks to (DESIGN §9). One request per connection: the client writes one
 * JSON object on one line, {"cmd": NAME, "args": {...}}, and reads one JSON
 * line back, {"ok": true, "data": ...} or {"ok": false, "code": SS_E*,
 * "error": "..."}; then the connection closes.
 *
 * Handlers are registered per command name. A handler may answer at once or
 * later (after a database job): the request object stays valid until it is
 * answered, even when the client or the whole ctl_t went away meanwhile; the
 * reply is then dropped.
 *
 * Everything runs on the event loop thread that ctl_start() was given. The
 * process must ignore SIGPIPE (a client may close before its reply).
 */
#pragma once

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

/* Longest request line accepted, newline excluded. */
#define CTL_MAX_REQUEST 65536
/* Idle clients are closed after this long without a complete request. */
#define CTL_DEFAULT_TIMEOUT_MS 10000

typedef struct ctl ctl_t;
typedef struct ctl_req ctl_req_t;

/*!
 * \brief Command handler.
 *
 * \param req   The request; answer it exactly once with ctl_reply() or
 *              ctl_reply_error(), now or later.
 * \param args  The "args" object (never NULL, {} when absent). Borrowed for
 *              the duration of the call: json_incref() it to keep it.
 * \param arg   Pointer given to ctl_register().
 */
typedef void (*ctl_handler_cb)(ctl_req_t *req, const json_t *args, void *arg);

/*!
 * \brief Create the control socket and start accepting clients.
 *
 * Creates the parent directory (0750) when it is missing, removes a stale
 * socket file left by a dead daemon, and creates the socket with mode 0660.
 *
 * \param base    Event loop to run on.
 * \param path    Socket path.
 * \param out     Output: the control server, free with ctl_free().
 * \param err     Output: message on failure.
 * \param errlen  Size of err.
 * \return SS_EOK; SS_EBUSY when another daemon answers on the socket;
 *         SS_EEXIST when path is something other than a socket; SS_EINVAL
 *         for a path too long; negated errno otherwise.
 */
int ctl_start(struct event_base *base, const char *path, ctl_t **out,
              char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Register the handler of one command.
 *
 * \param c    Control server.
 * \param cmd  Command name (copied), e.g. "status" or "child.add".
 * \param fn   Handler.
 * \param arg  Passed to the handler.
 * \return SS_EOK, SS_EEXIST when cmd is already registered, SS_EINVAL.
 */
int ctl_register(ctl_t *c, const char *cmd, ctl_handler_cb fn, void *arg);

/*!
 * \brief Change the idle timeout of new connections (tests use short ones).
 *
 * \param c   Control server.
 * \param ms  Milliseconds, 0 restores CTL_DEFAULT_TIMEOUT_MS.
 */
void ctl_set_timeout(ctl_t *c, unsigned ms);

/*!
 * \brief Number of open client connections (metrics, leak checks).
 */
unsigned ctl_conn_count(const ctl_t *c);

/*!
 * \brief Answer a request with success; frees req.
 *
 * \param req   The request (invalid after the call).
 * \param data  Reply data, reference stolen; NULL sends {}.
 */
void ctl_reply(ctl_req_t *req, json_t *data);

/*!
 * \brief Answer a request with an error; frees req.
 *
 * \param req   The request (invalid after the call).
 * \param code  Negative SS_E* code sent to the client.
 * \param fmt   printf-style message shown to the operator.
 */
void ctl_reply_error(ctl_req_t *req, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*!
 * \brief Name of the command a request carries (valid until answered).
 */
const char *ctl_req_cmd(const ctl_req_t *req);

/*!
 * \brief Close every connection, remove the socket file and free c.
 *
 * Accepts NULL. Requests not yet answered stay valid; answering them later
 * only frees them.
 */
void ctl_free(ctl_t *c);
