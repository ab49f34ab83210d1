/*
 * Control commands for the upstream catalog: single-update import .
 */
#pragma once

struct daemon;

/*! \brief Register this module's commands on d->ctl. */
int ctl_upstream_register(struct daemon *d);
