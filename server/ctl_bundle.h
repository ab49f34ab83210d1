/*
 * Control commands for disconnected sites: "export" writes a bundle of this
 * site's catalog, "import" applies one (DESIGN §6, docs/disconnected.md).
 */
#pragma once

struct daemon;

/*!
 * \brief Register "export" and "import" on d->ctl.
 * \return SS_EOK, or the ctl_register() error.
 */
int ctl_bundle_register(struct daemon *d);
