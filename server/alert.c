/* Placeholder: alerts being written. */
#include "server/alert.h"

#include "server/errcode.h"

int alert_init(struct daemon *d)
{
	(void)d;
	return SS_EOK;
}

void alert_free(struct daemon *d)
{
	(void)d;
}
