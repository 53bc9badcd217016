/*
 * The log of one backup or restore run, in Velero's layout.
 *
 * Each line is kept in a capped buffer for upload beside the run's objects
 * (backups/<B>/<B>-logs.gz, restores/<R>/restore-<R>-logs.gz) as logfmt:
 *   time="2006-01-02T15:04:05Z" level=info msg="..." backup=<ns>/<name>
 * and also goes to the process log as "backup <ns>/<name>: ...". Lines past
 * the cap are counted, not kept; st_runlog_finish says how many went. The
 * run's warnings and errors are counted here, so both engines report them
 * the same way. st_runlog_put_gz uploads the log and the run's other small
 * records gzipped. Not thread-safe: one run, one thread.
 */
#ifndef ST_PKG_RUNLOG_H
#define ST_PKG_RUNLOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

struct st_store;

/* Caller-owned; kind, ns and name are borrowed and set once known. */
struct st_runlog {
	struct st_buf buf;
	unsigned dropped;  /* lines that did not fit */
	unsigned errors;   /* st_runlog_note with is_error */
	unsigned warnings; /* st_runlog_note without */
	const char *kind;  /* "backup" or "restore": the logfmt key and the log prefix */
	const char *ns;    /* the namespace of the Backup or Restore object */
	const char *name;  /* its name */
};

/* Starts an empty log of at most cap bytes for a run of kind. */
void st_runlog_init(struct st_runlog *l, const char *kind, size_t cap);
/* Releases the buffer. */
void st_runlog_dispose(struct st_runlog *l);

/* Adds a line at level ("info", "warning" or "error"); a line that does not fit is counted. */
void st_runlog_add(struct st_runlog *l, const char *level, const char *fmt, ...) ST_PRINTF(3, 4);
void st_runlog_vadd(struct st_runlog *l, const char *level, const char *fmt, va_list ap)
        ST_PRINTF(3, 0);

/* Counts an error or a warning of the run and adds msg at that level. */
void st_runlog_note(struct st_runlog *l, bool is_error, const char *msg);

/*
 * Ends the log: a last line says how many lines were dropped, or, when even
 * that does not fit, the process log does. Call once, before the upload.
 */
void st_runlog_finish(struct st_runlog *l);

/*
 * Stores len bytes of data gzipped at key in s. Returns 0, or a negative
 * ST_E* code with err set (compression or the store's own failure).
 */
int st_runlog_put_gz(struct st_store *s, const char *key, const void *data, size_t len,
                     struct st_err *err) ST_WARN_UNUSED;

#endif
