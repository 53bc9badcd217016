#include "pkg/runlog.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "pkg/backup.h"
#include "pkg/store.h"
#include "pkg/util/log.h"

/* A gzipped record held in memory before upload. */
#define GZ_CAP (64u * 1024u * 1024u)

void st_runlog_init(struct st_runlog *l, const char *kind, size_t cap)
{
	memset(l, 0, sizeof(*l));
	st_buf_init(&l->buf, cap);
	l->kind = kind;
	l->ns = "";
	l->name = "";
}

void st_runlog_dispose(struct st_runlog *l)
{
	st_buf_dispose(&l->buf);
}

void st_runlog_vadd(struct st_runlog *l, const char *level, const char *fmt, va_list ap)
{
	char msg[1024], quoted[2048], ts[32];
	size_t i, o = 0;

	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	if (strcmp(level, "error") == 0)
		st_log_err("%s %s/%s: %s", l->kind, l->ns, l->name, msg);
	else if (strcmp(level, "warning") == 0)
		st_log_warn("%s %s/%s: %s", l->kind, l->ns, l->name, msg);
	else
		st_log_info("%s %s/%s: %s", l->kind, l->ns, l->name, msg);
	/* logfmt quoting: backslash and double quote are escaped, a newline is a space. */
	for (i = 0; msg[i] != '\0' && o + 3 < sizeof(quoted); i++) {
		if (msg[i] == '"' || msg[i] == '\\')
			quoted[o++] = '\\';
		quoted[o++] = (char)(msg[i] == '\n' ? ' ' : msg[i]);
	}
	quoted[o] = '\0';
	st_backup_format_time(ts, sizeof(ts), (long long)time(NULL));
	if (st_buf_printf(&l->buf, "time=\"%s\" level=%s msg=\"%s\" %s=%s/%s\n", ts, level, quoted,
	                  l->kind, l->ns, l->name) < 0)
		l->dropped++;
}

void st_runlog_add(struct st_runlog *l, const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	st_runlog_vadd(l, level, fmt, ap);
	va_end(ap);
}

void st_runlog_note(struct st_runlog *l, bool is_error, const char *msg)
{
	if (is_error)
		l->errors++;
	else
		l->warnings++;
	st_runlog_add(l, is_error ? "error" : "warning", "%s", msg);
}

void st_runlog_finish(struct st_runlog *l)
{
	if (l->dropped > 0 &&
	    st_buf_printf(&l->buf, "(%u further log lines dropped)\n", l->dropped) < 0)
		st_log_warn("%s %s/%s: %u log lines were not kept", l->kind, l->ns, l->name,
		            l->dropped);
}

static int gzip_mem(struct st_buf *out, const void *data, size_t len)
{
	unsigned char chunk[16384];
	z_stream z;
	int zr, rc = 0;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return ST_ENOMEM;
	z.next_in = (unsigned char *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	do {
		z.next_out = chunk;
		z.avail_out = sizeof(chunk);
		zr = deflate(&z, Z_FINISH);
		if (zr == Z_STREAM_ERROR) {
			rc = ST_EINTERNAL;
			break;
		}
		rc = st_buf_put(out, chunk, sizeof(chunk) - z.avail_out);
	} while (rc == 0 && zr != Z_STREAM_END);
	(void)deflateEnd(&z);
	return rc;
}

int st_runlog_put_gz(struct st_store *s, const char *key, const void *data, size_t len,
                     struct st_err *err)
{
	struct st_buf gz;
	int rc;

	st_buf_init(&gz, GZ_CAP);
	if ((rc = gzip_mem(&gz, data, len)) < 0)
		rc = st_err_set(err, rc, "compressing %s failed", key);
	else
		rc = st_store_put_mem(s, key, gz.ptr ? gz.ptr : "", gz.len, false, err);
	st_buf_dispose(&gz);
	return rc;
}
