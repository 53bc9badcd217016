/*
 * The few S3 XML documents we read (Error, ListBucketResult,
 * InitiateMultipartUploadResult, DeleteResult) are flat enough that a
 * bounded scanner over element names does the job: no DOM, no allocation,
 * every output written into a caller-sized buffer. Elements are matched by
 * name at any depth; S3 never nests an element inside one of the same name
 * in these documents.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/s3.h"
#include "pkg/s3_int.h"
#include "pkg/util/caps.h"

bool st_s3__xml_find(struct st_s3__span *content, const char **after, const char *p,
                     const char *end, const char *name)
{
	size_t nl = strlen(name);

	while (p < end) {
		const char *lt = memchr(p, '<', (size_t)(end - p));
		const char *gt;
		const char *q;

		if (lt == NULL || (size_t)(end - lt) < nl + 2)
			return false;
		p = lt + 1;
		if (memcmp(lt + 1, name, nl) != 0 ||
		    (lt[1 + nl] != '>' && lt[1 + nl] != ' ' && lt[1 + nl] != '/' &&
		     lt[1 + nl] != '\t' && lt[1 + nl] != '\n' && lt[1 + nl] != '\r'))
			continue;
		if ((gt = memchr(lt, '>', (size_t)(end - lt))) == NULL)
			return false;
		if (gt[-1] == '/') {
			content->p = gt;
			content->n = 0;
			*after = gt + 1;
			return true;
		}
		for (q = gt + 1; q < end;) {
			q = memmem(q, (size_t)(end - q), "</", 2);
			if (q == NULL || (size_t)(end - q) < nl + 3)
				return false;
			if (memcmp(q + 2, name, nl) == 0 && q[2 + nl] == '>') {
				content->p = gt + 1;
				content->n = (size_t)(q - (gt + 1));
				*after = q + 3 + nl;
				return true;
			}
			q += 2;
		}
		return false;
	}
	return false;
}

static size_t put_utf8(char *o, unsigned long c)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | (c >> 6));
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | (c >> 12));
		o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (c >> 18));
	o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Decodes one entity at s (which starts with '&') into tmp; returns its length in s or 0. */
static size_t entity(char tmp[4], size_t *tlen, const char *s, size_t n)
{
	static const struct {
		const char *name;
		char c;
	} named[] = {
		{ "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' }
	};
	const char *semi = memchr(s, ';', n < 12 ? n : 12);
	size_t i;

	if (semi == NULL)
		return 0;
	for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		size_t l = strlen(named[i].name);

		if (n > l && memcmp(s + 1, named[i].name, l) == 0) {
			tmp[0] = named[i].c;
			*tlen = 1;
			return l + 1;
		}
	}
	if (s[1] == '#' && semi > s + 2) {
		bool hex = s[2] == 'x' || s[2] == 'X';
		const char *d = s + (hex ? 3 : 2);
		unsigned long c = 0;

		if (d == semi)
			return 0;
		for (; d < semi; d++) {
			int v = (*d >= '0' && *d <= '9')          ? *d - '0'
			        : (hex && *d >= 'a' && *d <= 'f') ? *d - 'a' + 10
			        : (hex && *d >= 'A' && *d <= 'F') ? *d - 'A' + 10
			                                          : -1;
			if (v < 0 || c > 0x10ffff)
				return 0;
			c = c * (hex ? 16 : 10) + (unsigned long)v;
		}
		if (c == 0 || c > 0x10ffff)
			return 0;
		*tlen = put_utf8(tmp, c);
		return (size_t)(semi - s) + 1;
	}
	return 0;
}

int st_s3__xml_decode(char *out, size_t cap, struct st_s3__span s)
{
	size_t i = 0;
	size_t j = 0;

	if (cap == 0)
		return ST_ETOOBIG;
	while (i < s.n) {
		char tmp[4];
		size_t tl = 1;
		size_t used = 0;

		/* XML text cannot hold a NUL; one would also cut the C string short. */
		if (s.p[i] == '\0') {
			out[0] = '\0';
			return ST_EPROTO;
		}
		if (s.p[i] == '&')
			used = entity(tmp, &tl, s.p + i, s.n - i);
		if (used == 0) {
			tmp[0] = s.p[i];
			tl = 1;
			used = 1;
		}
		if (j + tl >= cap) {
			out[0] = '\0';
			return ST_ETOOBIG;
		}
		memcpy(out + j, tmp, tl);
		j += tl;
		i += used;
	}
	out[j] = '\0';
	return 0;
}

int st_s3_xml_text(char *out, size_t cap, const char *xml, size_t len, const char *name)
{
	struct st_s3__span c;
	const char *after;

	if (cap > 0)
		out[0] = '\0';
	if (len > ST_CAP_S3_XML)
		return ST_ETOOBIG;
	if (!st_s3__xml_find(&c, &after, xml, xml + len, name))
		return ST_ENOTFOUND;
	return st_s3__xml_decode(out, cap, c);
}

/* A field that is absent or too long is left empty: an error report must not fail. */
static void text_or_empty(char *out, size_t cap, struct st_s3__span in, const char *name)
{
	if (st_s3_xml_text(out, cap, in.p, in.n, name) < 0)
		out[0] = '\0';
}

int st_s3_xml_error(struct st_s3_xml_error *out, const char *xml, size_t len)
{
	struct st_s3__span e = { xml, len };
	const char *after;

	memset(out, 0, sizeof(*out));
	if (len > ST_CAP_S3_XML)
		return ST_ETOOBIG;
	if (!st_s3__xml_find(&e, &after, xml, xml + len, "Error"))
		return ST_ENOTFOUND;
	text_or_empty(out->code, sizeof(out->code), e, "Code");
	text_or_empty(out->message, sizeof(out->message), e, "Message");
	text_or_empty(out->key, sizeof(out->key), e, "Key");
	return 0;
}

static int parse_u64(uint64_t *out, const char *s)
{
	char *end = NULL;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return ST_EPROTO;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return ST_EPROTO;
	*out = v;
	return 0;
}

int st_s3_xml_list(bool *truncated, char *token, size_t token_cap, const char *xml, size_t len,
                   st_s3_list_cb cb, void *payload)
{
	const char *end = xml + len;
	const char *p = xml;
	struct st_s3__span c;
	char tmp[32];
	char key[1100];
	int rc;

	*truncated = false;
	if (token_cap > 0)
		token[0] = '\0';
	if (len > ST_CAP_S3_XML)
		return ST_ETOOBIG;
	if (memmem(xml, len, "<ListBucketResult", 17) == NULL)
		return ST_EPROTO;
	if (st_s3_xml_text(tmp, sizeof(tmp), xml, len, "IsTruncated") == 0)
		*truncated = strcmp(tmp, "true") == 0;
	rc = st_s3_xml_text(token, token_cap, xml, len, "NextContinuationToken");
	/* A truncated page without a usable token would make the caller start over forever. */
	if (rc == ST_ETOOBIG || rc == ST_EPROTO || (*truncated && (rc < 0 || token[0] == '\0')))
		return ST_EPROTO;
	while (st_s3__xml_find(&c, &p, p, end, "Contents")) {
		uint64_t size = 0;

		if (st_s3_xml_text(key, sizeof(key), c.p, c.n, "Key") < 0 ||
		    st_s3_xml_text(tmp, sizeof(tmp), c.p, c.n, "Size") < 0 ||
		    parse_u64(&size, tmp) < 0)
			return ST_EPROTO;
		if ((rc = cb(key, size, payload)) != 0)
			return rc;
	}
	return 0;
}
