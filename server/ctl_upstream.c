/* Placeholder: commands being written. */
#include "server/ctl_upstream.h"

#include "server/errcode.h"

int ctl_upstream_register(struct daemon *d)
{
	(void)d;
	return SS_EOK;
}
