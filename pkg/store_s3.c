/*
 * Placeholder for the s3:// store backend until the S3 client lands: opening
 * an s3:// location reports clearly that this build cannot reach S3.
 */
#include "pkg/store.h"

int st_store__open_s3(struct st_store **out, const char *url, const struct st_store_options *opts,
		      struct st_err *err)
{
	(void)opts;
	*out = NULL;
	return st_err_set(err, ST_EINVAL, "%s: s3:// locations are not supported by this build",
			  url);
}
