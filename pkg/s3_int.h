/*
 * Module-private pieces of the S3 client shared between pkg/s3.c (requests)
 * and pkg/s3_xml.c (the bounded XML scanner).
 */
#ifndef ST_PKG_S3_INT_H
#define ST_PKG_S3_INT_H

#include <stdbool.h>
#include <stddef.h>

struct st_s3__span {
	const char *p;
	size_t n;
};

/*
 * Finds the first element <name> in [p, end): content is the text between
 * its tags (empty for <name/>), *after points past the closing tag.
 */
bool st_s3__xml_find(struct st_s3__span *content, const char **after, const char *p,
                     const char *end, const char *name);
/*
 * Decodes entities of s into out (cap bytes with the NUL); ST_ETOOBIG if it
 * does not fit, ST_EPROTO for a NUL byte in the text.
 */
int st_s3__xml_decode(char *out, size_t cap, struct st_s3__span s);

#endif
