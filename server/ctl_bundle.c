/* Placeholder: commands being written. */
#include "server/ctl_bundle.h"

#include "server/errcode.h"

int ctl_bundle_register(struct daemon *d)
{
	(void)d;
	return SS_EOK;
}
