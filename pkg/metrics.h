/*
 * Prometheus metrics: counters, gauges and histograms with labels, rendered
 * in the text exposition format (version 0.0.4).
 *
 * A family is declared once (name, help, type); series are created on first
 * use from a label string written in exposition syntax, e.g.
 * `path="/mutate/pods",code="200"` (the caller quotes and escapes values with
 * st_metrics_label_escape when they come from outside). The number of series
 * per family is capped so hostile label values cannot grow memory without
 * bound; extra series are folded into one labelled overflow="true".
 * All functions are thread-safe.
 */
#ifndef ST_PKG_METRICS_H
#define ST_PKG_METRICS_H

#include <stddef.h>

#include "pkg/util/buf.h"
#include "pkg/util/err.h"

struct st_metrics;

enum st_metric_type {
	ST_METRIC_COUNTER,
	ST_METRIC_GAUGE,
	ST_METRIC_HISTOGRAM,
};

struct st_metrics *st_metrics_new(void);
void st_metrics_free(struct st_metrics *m);

/*
 * Declares a family. Histograms take bucket upper bounds (ascending, +Inf is
 * implicit); NULL selects latency buckets from 0.5 ms to 10 s.
 */
void st_metrics_declare(struct st_metrics *m, const char *name, const char *help,
                        enum st_metric_type type, const double *buckets, size_t nbuckets);

/* Adds v to a counter/gauge series, sets a gauge, or observes into a histogram. */
void st_metrics_add(struct st_metrics *m, const char *name, const char *labels, double v);
void st_metrics_set(struct st_metrics *m, const char *name, const char *labels, double v);
void st_metrics_observe(struct st_metrics *m, const char *name, const char *labels, double v);

/* Current value of a counter/gauge series (0 when absent); histogram: the count. */
double st_metrics_value(struct st_metrics *m, const char *name, const char *labels);

/* Appends the exposition text of every family. */
int st_metrics_render(struct st_buf *out, struct st_metrics *m) ST_WARN_UNUSED;

/* Writes v with '\\', '"' and newline escaped, truncated to fit cap. */
void st_metrics_label_escape(char *out, size_t cap, const char *v);

#endif
