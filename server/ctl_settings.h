/*
 * Control commands "settings.list" and "settings.set" {"key", "value"}:
 * the top site's run-time settings of the upstream sync (table settings),
 * validated, each change a status message (7140).
 */
#pragma once

struct daemon;

/*! \brief Register the settings commands on the daemon's control socket. */
int ctl_settings_register(struct daemon *d);
