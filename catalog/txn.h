/*
 * The end of a catalog transaction: COMMIT when everything before it
 * succeeded, ROLLBACK otherwise, and an error text either way.
 */
#pragma once

#include <libpq-fe.h>
#include <stddef.h>

/*!
 * \brief End the open transaction on \a conn: COMMIT when \a ret is SS_EOK,
 * else ROLLBACK. Returns the first error (\a ret, else COMMIT's) and, on
 * failure, fills \a err with ss_strerror() unless a message is already there.
 */
int txn_end(PGconn *conn, int ret, char *err, size_t errlen)
	__attribute__((warn_unused_result));
