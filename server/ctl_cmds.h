/*
 * Handlers of the control socket's commands (one per CLI command).
 */
#pragma once

#include <stddef.h>

#include <jansson.h>

struct daemon;

/*! \brief Register every command on d->ctl. */
int ctl_cmds_register(struct daemon *d);

/*!
 * \brief The status document (control socket `status`, HTTP /status.json):
 * status_json() plus next_upstream_sync, the scheduled run or null.
 */
json_t *ctl_cmds_status_json(struct daemon *d);

/*! \brief Load the approved children from the database (startup). */
int ctl_cmds_load_children(struct daemon *d, void *pgconn, char *err, size_t errlen);
