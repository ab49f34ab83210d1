/*
 * Alerts: run the configured command when a site in the subtree fails or
 * goes stale (DESIGN §4).
 */
#pragma once

struct daemon;

/*! \brief Start watching (a timer on d->base). */
int alert_init(struct daemon *d);

/*! \brief Stop watching and free. */
void alert_free(struct daemon *d);
