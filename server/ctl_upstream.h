/*
 * Control commands for the upstream catalog: single-update import
 * ("import-update", top site only, refused while an upstream sync runs).
 */
#pragma once

struct daemon;

/*! \brief Register this module's commands on d->ctl. */
int ctl_upstream_register(struct daemon *d);
