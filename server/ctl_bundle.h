/*
 * Control commands for disconnected sites: export and import bundles .
 */
#pragma once

struct daemon;

/*! \brief Register this module's commands on d->ctl. */
int ctl_bundle_register(struct daemon *d);
