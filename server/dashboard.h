/*
 * The dashboard page (GET /) rendered on the server first: the site rows
 * and the synchronizations table are in the HTML as sent, so the page is
 * complete before its JavaScript polls /status (and without it).
 */
#pragma once

#include <jansson.h>

/*!
 * \brief The dashboard template (server/dashboard.html) with the rows of
 * \a status (may be NULL: the tables stay empty) put in at its markers.
 * Every text from the status object is HTML-escaped.
 * \param detail  Site code of the detail view (GET /?site=CODE), or NULL;
 *                a code not in the view leaves the view hidden.
 * \return A new string (free()), or NULL when out of memory.
 */
char *dashboard_render(const char *tmpl, const json_t *status, const char *detail);
