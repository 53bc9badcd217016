#include "pkg/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/util/mem.h"

#define MAX_FAMILIES 32
#define MAX_SERIES   64
#define MAX_BUCKETS  20

struct series {
	char *labels;
	double value;
	double sum;
	unsigned long long count;
	unsigned long long buckets[MAX_BUCKETS];
};

struct family {
	char *name;
	char *help;
	enum st_metric_type type;
	double bounds[MAX_BUCKETS];
	size_t nbounds;
	struct series series[MAX_SERIES];
	size_t nseries;
};

struct st_metrics {
	pthread_mutex_t lock;
	struct family fam[MAX_FAMILIES];
	size_t nfam;
};

static const double default_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10 };

struct st_metrics *st_metrics_new(void)
{
	struct st_metrics *m = st_xcalloc(1, sizeof(*m));

	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void st_metrics_free(struct st_metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nfam; i++) {
		free(m->fam[i].name);
		free(m->fam[i].help);
		for (size_t j = 0; j < m->fam[i].nseries; j++)
			free(m->fam[i].series[j].labels);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

void st_metrics_declare(struct st_metrics *m, const char *name, const char *help,
                        enum st_metric_type type, const double *buckets, size_t nbuckets)
{
	struct family *f;

	pthread_mutex_lock(&m->lock);
	if (m->nfam == MAX_FAMILIES) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	f = &m->fam[m->nfam++];
	f->name = st_xstrdup(name);
	f->help = st_xstrdup(help);
	f->type = type;
	if (type == ST_METRIC_HISTOGRAM) {
		if (buckets == NULL) {
			buckets = default_buckets;
			nbuckets = sizeof(default_buckets) / sizeof(default_buckets[0]);
		}
		f->nbounds = nbuckets < MAX_BUCKETS ? nbuckets : MAX_BUCKETS;
		memcpy(f->bounds, buckets, f->nbounds * sizeof(double));
	}
	pthread_mutex_unlock(&m->lock);
}

/* Called with the lock held. */
static struct series *find(struct st_metrics *m, const char *name, const char *labels)
{
	struct family *f = NULL;

	for (size_t i = 0; i < m->nfam && f == NULL; i++)
		if (strcmp(m->fam[i].name, name) == 0)
			f = &m->fam[i];
	if (f == NULL)
		return NULL;
	if (labels == NULL)
		labels = "";
	for (size_t i = 0; i < f->nseries; i++)
		if (strcmp(f->series[i].labels, labels) == 0)
			return &f->series[i];
	if (f->nseries >= MAX_SERIES - 1) {
		labels = "overflow=\"true\"";
		for (size_t i = 0; i < f->nseries; i++)
			if (strcmp(f->series[i].labels, labels) == 0)
				return &f->series[i];
	}
	f->series[f->nseries].labels = st_xstrdup(labels);
	return &f->series[f->nseries++];
}

static struct family *family_of(struct st_metrics *m, const char *name)
{
	for (size_t i = 0; i < m->nfam; i++)
		if (strcmp(m->fam[i].name, name) == 0)
			return &m->fam[i];
	return NULL;
}

void st_metrics_add(struct st_metrics *m, const char *name, const char *labels, double v)
{
	struct series *s;

	pthread_mutex_lock(&m->lock);
	if ((s = find(m, name, labels)) != NULL)
		s->value += v;
	pthread_mutex_unlock(&m->lock);
}

void st_metrics_set(struct st_metrics *m, const char *name, const char *labels, double v)
{
	struct series *s;

	pthread_mutex_lock(&m->lock);
	if ((s = find(m, name, labels)) != NULL)
		s->value = v;
	pthread_mutex_unlock(&m->lock);
}

void st_metrics_observe(struct st_metrics *m, const char *name, const char *labels, double v)
{
	struct series *s;
	struct family *f;

	pthread_mutex_lock(&m->lock);
	f = family_of(m, name);
	if (f != NULL && (s = find(m, name, labels)) != NULL) {
		for (size_t i = 0; i < f->nbounds; i++)
			if (v <= f->bounds[i])
				s->buckets[i]++;
		s->sum += v;
		s->count++;
	}
	pthread_mutex_unlock(&m->lock);
}

double st_metrics_value(struct st_metrics *m, const char *name, const char *labels)
{
	struct family *f;
	double v = 0;

	pthread_mutex_lock(&m->lock);
	f = family_of(m, name);
	for (size_t i = 0; f != NULL && i < f->nseries; i++)
		if (strcmp(f->series[i].labels, labels ? labels : "") == 0)
			v = f->type == ST_METRIC_HISTOGRAM ? (double)f->series[i].count
			                                   : f->series[i].value;
	pthread_mutex_unlock(&m->lock);
	return v;
}

static int render_hist(struct st_buf *out, const struct family *f, const struct series *s)
{
	const char *sep = s->labels[0] ? "," : "";
	int rc = 0;

	for (size_t b = 0; b < f->nbounds && rc == 0; b++)
		rc = st_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, s->labels, sep,
		                   f->bounds[b], s->buckets[b]);
	if (rc == 0)
		rc = st_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels,
		                   sep, s->count);
	if (rc == 0)
		rc = st_buf_printf(out, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", f->name,
		                   s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "",
		                   s->sum, f->name, s->labels[0] ? "{" : "", s->labels,
		                   s->labels[0] ? "}" : "", s->count);
	return rc;
}

int st_metrics_render(struct st_buf *out, struct st_metrics *m)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nfam && rc == 0; i++) {
		const struct family *f = &m->fam[i];

		rc = st_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
		                   types[f->type]);
		for (size_t j = 0; j < f->nseries && rc == 0; j++) {
			const struct series *s = &f->series[j];

			if (f->type == ST_METRIC_HISTOGRAM)
				rc = render_hist(out, f, s);
			else
				rc = st_buf_printf(out, "%s%s%s%s %.17g\n", f->name,
				                   s->labels[0] ? "{" : "", s->labels,
				                   s->labels[0] ? "}" : "", s->value);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void st_metrics_label_escape(char *out, size_t cap, const char *v)
{
	size_t o = 0;

	for (; *v && o + 3 < cap; v++) {
		if (*v == '\\' || *v == '"') {
			out[o++] = '\\';
			out[o++] = *v;
		} else if (*v == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *v;
		}
	}
	out[o] = '\0';
}
