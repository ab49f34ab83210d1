/* One tail for every catalog transaction (see txn.h). */
#include "catalog/txn.h"

#include "common/errcode.h"
#include "storage/db.h"

int txn_end(PGconn *conn, int ret, char *err, size_t errlen)
{
	if (ret == SS_EOK)
		ret = db_exec(conn, "COMMIT", err, errlen);
	else
		db_exec(conn, "ROLLBACK", NULL, 0);
	ss_err_default(ret, err, errlen);
	return ret;
}
