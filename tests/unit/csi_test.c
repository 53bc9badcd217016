/*
 * CSI snapshot tests.
 *
 * Offline: RFC 3339 parsing (fractions, offsets, leap days, range), the
 * VolumeSnapshotClass choice over class lists, and reading VolumeSnapshot and
 * VolumeSnapshotContent status (times, sizes, errors kept verbatim).
 *
 * Live: when STASIS_KUBECONFIG names a kubeconfig (tests/integration/
 * csi_snapshots.sh starts the API stand-in and a small snapshot controller,
 * tests/integration/csi_controller.py, and sets it): the driver from a bound
 * PersistentVolume and from StorageClasses (named and default), the class
 * choice through the API, creating snapshots in two namespaces, waiting for
 * the cut (well before readyToUse) and for readiness, a driver error reported
 * verbatim, a timeout naming the snapshot, a missing snapshot, and deletes.
 * The controller's timing comes from STASIS_CSI_READY_DELAY_MS and its error
 * text from STASIS_CSI_ERROR_MESSAGE.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pkg/csi.h"
#include "pkg/kube.h"
#include "pkg/util/json.h"

#define NS_PER_S 1000000000LL

static struct json_object *obj_from(const char *fmt, ...) ST_PRINTF(1, 2);
static struct json_object *obj_from(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	struct json_object *o;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o = json_tokener_parse(buf);
	if (o == NULL)
		fail_msg("bad JSON in test: %s", buf);
	return o;
}

/* ---- RFC 3339 --------------------------------------------------------------------------- */

static void test_parse_time(void **state)
{
	static const struct {
		const char *in;
		int64_t want;
	} ok[] = {
		{ "1970-01-01T00:00:00Z", 0 },
		{ "2026-11-24T06:00:00Z", 1795500000LL * NS_PER_S },
		{ "2026-11-24T06:00:00.123456789Z", 1795500000LL * NS_PER_S + 123456789 },
		{ "2026-11-24T06:00:00.5Z", 1795500000LL * NS_PER_S + 500000000 },
		{ "2026-11-24T06:00:00.000001Z", 1795500000LL * NS_PER_S + 1000 },
		{ "2026-11-24T06:00:00.1234567899Z", 1795500000LL * NS_PER_S + 123456789 },
		{ "2026-11-24T07:30:00+01:30", 1795500000LL * NS_PER_S },
		{ "2026-11-24T01:00:00-05:00", 1795500000LL * NS_PER_S },
		{ "2026-11-24T06:00:00.25+00:00", 1795500000LL * NS_PER_S + 250000000 },
		{ "2026-11-24t06:00:00z", 1795500000LL * NS_PER_S },
		{ "2026-11-24 06:00:00Z", 1795500000LL * NS_PER_S },
		{ "2024-02-29T00:00:00Z", 1709164800LL * NS_PER_S },
		{ "2000-03-01T12:34:56Z", 951914096LL * NS_PER_S },
		{ "1969-12-31T23:59:59.999999999Z", -1 },
		{ "1900-01-01T00:00:00Z", -2208988800LL * NS_PER_S },
		{ "2026-11-24T05:59:60Z", 1795500000LL * NS_PER_S },
		{ "2262-04-11T23:47:15.999999999Z", 9223372035LL * NS_PER_S + 999999999 },
	};
	static const char *const bad[] = {
		"",
		"2026-11-24",
		"2026-11-24T06:00:00",
		"2026-11-24T06:00Z",
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-02-29T00:00:00Z",
		"2026-04-31T00:00:00Z",
		"2026-11-24T24:00:00Z",
		"2026-11-24T06:60:00Z",
		"2026-11-24T06:00:61Z",
		"2026-11-24T06:00:00.Z",
		"2026-11-24T06:00:00+0100",
		"2026-11-24T06:00:00+24:00",
		"2026-11-24T06:00:00Zjunk",
		"2026-11-24T06:00:00Z ",
		"26-11-24T06:00:00Z",
		"2026/11/24T06:00:00Z",
		"2026-11-24X06:00:00Z",
		"2262-04-11T23:47:17Z",
		"1677-01-01T00:00:00Z",
	};
	size_t i;
	int64_t t = 42;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (st_csi_parse_time(&t, ok[i].in) != 0)
			fail_msg("%s refused", ok[i].in);
		if (t != ok[i].want)
			fail_msg("%s: %lld, want %lld", ok[i].in, (long long)t,
			         (long long)ok[i].want);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 42;
		if (st_csi_parse_time(&t, bad[i]) != ST_EINVAL)
			fail_msg("\"%s\" accepted as %lld", bad[i], (long long)t);
		assert_int_equal(t, 0);
	}
	assert_int_equal(st_csi_parse_time(&t, NULL), ST_EINVAL);
}

/* ---- class choice ----------------------------------------------------------------------- */

#define CLS(name, driver, labelled, dflt)                                                  \
	"{\"apiVersion\":\"snapshot.storage.k8s.io/v1\",\"kind\":\"VolumeSnapshotClass\"," \
	"\"metadata\":{\"name\":\"" name "\""                                              \
	"" labelled dflt "},\"driver\":\"" driver "\",\"deletionPolicy\":\"Delete\"}"
#define LBL    ",\"labels\":{\"stasis.io/csi-volumesnapshot-class\":\"true\"}"
#define LBL_NO ",\"labels\":{\"stasis.io/csi-volumesnapshot-class\":\"false\"}"
#define DEF    ",\"annotations\":{\"snapshot.storage.kubernetes.io/is-default-class\":\"true\"}"
#define DEF_NO ",\"annotations\":{\"snapshot.storage.kubernetes.io/is-default-class\":\"false\"}"

static void test_choose_class(void **state)
{
	static const struct {
		const char *list;
		const char *driver;
		int rc;
		const char *want; /* the class, or text every error must contain */
		const char *also; /* a second fragment of the error */
	} t[] = {
		/* The label wins over the default annotation and over other classes. */
		{ "[" CLS("a", "d1", "", DEF) "," CLS("b", "d1", LBL, "") "," CLS("c", "d1", "",
		                                                                  "") "]",
		  "d1", 0, "b", NULL },
		/* Classes of other drivers do not count, labelled or not. */
		{ "[" CLS("x", "other", LBL, DEF) "," CLS("a", "d1", "", DEF) "," CLS("c", "d1", "",
		                                                                      "") "]",
		  "d1", 0, "a", NULL },
		{ "[" CLS("x", "other", LBL, "") "," CLS("only", "d1", "", "") "]", "d1", 0, "only",
		  NULL },
		/* "false" is not "true". */
		{ "[" CLS("a", "d1", LBL_NO, DEF_NO) "," CLS("b", "d1", "", DEF) "]", "d1", 0, "b",
		  NULL },
		{ "[" CLS("a", "d1", LBL_NO, "") "]", "d1", 0, "a", NULL },
		{ "[]", "d1", ST_ENOTFOUND, "CSI driver d1",
		  "stasis.io/csi-volumesnapshot-class=true" },
		{ "[" CLS("x", "other", LBL, DEF) "]", "d1", ST_ENOTFOUND, "driver d1",
		  "label it stasis.io/csi-volumesnapshot-class=true" },
		{ "[" CLS("a", "d1", "", DEF) "," CLS("b", "d1", "", DEF) "]", "d1", ST_EINVAL,
		  "a, b", "snapshot.storage.kubernetes.io/is-default-class=true" },
		{ "[" CLS("a", "d1", LBL, "") "," CLS("b", "d1", LBL, DEF) "]", "d1", ST_EINVAL,
		  "a, b", "keep the label on one" },
		{ "[" CLS("a", "d1", "", "") "," CLS("b", "d1", "", "") "]", "d1", ST_EINVAL,
		  "several VolumeSnapshotClasses (a, b)", "label the one to use" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct json_object *list = obj_from("%s", t[i].list);
		struct st_err err = ST_ERR_INIT;
		char out[64] = "junk";
		int rc = st_csi_choose_class(out, sizeof(out), list, t[i].driver, &err);

		if (rc != t[i].rc)
			fail_msg("case %zu: rc %d, want %d (%s)", i, rc, t[i].rc,
			         st_err_text(&err));
		if (rc == 0) {
			assert_string_equal(out, t[i].want);
		} else {
			assert_string_equal(out, "");
			if (strstr(err.msg, t[i].want) == NULL ||
			    (t[i].also && strstr(err.msg, t[i].also) == NULL))
				fail_msg("case %zu: message \"%s\" lacks \"%s\" / \"%s\"", i,
				         err.msg, t[i].want, t[i].also ? t[i].also : "");
		}
		json_object_put(list);
	}
}

static void test_choose_class_small_buffer(void **state)
{
	struct json_object *list = obj_from("[" CLS("a-rather-long-class-name", "d1", "", "") "]");
	struct st_err err = ST_ERR_INIT;
	char out[8];

	(void)state;
	assert_int_equal(st_csi_choose_class(out, sizeof(out), list, "d1", &err), ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "a-rather-long-class-name"));
	json_object_put(list);
}

/* ---- status ----------------------------------------------------------------------------- */

static void snap_init(struct st_csi_snap *s, const char *ns, const char *pvc, const char *name)
{
	memset(s, 0, sizeof(*s));
	(void)snprintf(s->namespace, sizeof(s->namespace), "%s", ns);
	(void)snprintf(s->pvc, sizeof(s->pvc), "%s", pvc);
	(void)snprintf(s->name, sizeof(s->name), "%s", name);
	s->restore_size = -1;
}

static void test_read_status(void **state)
{
	struct st_csi_snap s;
	struct json_object *o;

	(void)state;
	snap_init(&s, "db", "data", "snap");
	/* Not cut: nothing changes. */
	o = obj_from("{\"kind\":\"VolumeSnapshot\",\"status\":{\"readyToUse\":false}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_int_equal(s.created_ns, 0);
	assert_false(s.ready);
	assert_string_equal(s.content, "");
	/* Cut: second-precision time of the snapshot, content name, size as a quantity. */
	o = obj_from("{\"kind\":\"VolumeSnapshot\",\"status\":{\"boundVolumeSnapshotContentName\":"
	             "\"snapcontent-1\",\"creationTime\":\"2026-11-24T06:00:00Z\","
	             "\"readyToUse\":false,\"restoreSize\":\"50Mi\"}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_int_equal(s.created_ns, 1795500000LL * NS_PER_S);
	assert_string_equal(s.content, "snapcontent-1");
	assert_false(s.ready);
	assert_int_equal(s.restore_size, 50LL << 20);
	/* The content's nanoseconds replace the snapshot's seconds. */
	o = obj_from("{\"kind\":\"VolumeSnapshotContent\",\"status\":{\"creationTime\":"
	             "1795500000123456789,\"readyToUse\":true,\"restoreSize\":52428801}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_int_equal(s.created_ns, 1795500000123456789LL);
	assert_true(s.ready);
	assert_int_equal(s.restore_size, 52428801);
	/* A later snapshot event keeps the precise time. */
	o = obj_from("{\"kind\":\"VolumeSnapshot\",\"status\":{\"creationTime\":"
	             "\"2026-11-24T06:00:00Z\",\"readyToUse\":true}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_int_equal(s.created_ns, 1795500000123456789LL);
	assert_string_equal(s.error, "");
}

static void test_read_status_error(void **state)
{
	/* JSON text of the message: escaped quotes and newline. */
	static const char msg[] =
	        "failed to take snapshot of the volume vol-7: \\\"rpc error: code "
	        "= Internal desc = quota 100% used\\n\\\" {retry later}";
	struct st_csi_snap s;
	struct json_object *o;

	(void)state;
	snap_init(&s, "db", "data", "snap");
	o = obj_from("{\"kind\":\"VolumeSnapshot\",\"status\":{\"error\":{\"message\":\"%s\","
	             "\"time\":\"2026-11-24T06:00:00Z\"},\"readyToUse\":false}}",
	             msg);
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_string_equal(s.error, "failed to take snapshot of the volume vol-7: \"rpc error: "
	                             "code = Internal desc = quota 100% used\n\" {retry later}");
	assert_int_equal(s.created_ns, 0);
	/* The first error stays, even when a later one or none follows. */
	o = obj_from("{\"status\":{\"error\":{\"message\":\"second\"}}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_non_null(strstr(s.error, "vol-7"));
	/* An error without a message still fails the snapshot. */
	snap_init(&s, "db", "data", "snap");
	o = obj_from("{\"status\":{\"error\":{\"time\":\"2026-11-24T06:00:00Z\"}}}");
	st_csi_read_status(&s, o);
	json_object_put(o);
	assert_non_null(strstr(s.error, "without a message"));
}

static void test_read_status_sizes(void **state)
{
	static const struct {
		const char *size;
		int64_t want;
	} t[] = {
		{ "\"12345\"", 12345 },   { "\"1Gi\"", 1LL << 30 }, { "\"2k\"", 2000 },
		{ "\"3M\"", 3000000 },    { "\"1Ti\"", 1LL << 40 }, { "4096", 4096 },
		{ "\"1.5Gi\"", -1 },      { "\"Gi\"", -1 },         { "\"-5\"", -1 },
		{ "\"10Xi\"", -1 },       { "true", -1 },           { "-3", -1 },
		{ "\"99999999Pi\"", -1 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct st_csi_snap s;
		struct json_object *o;

		snap_init(&s, "db", "data", "snap");
		o = obj_from("{\"status\":{\"restoreSize\":%s}}", t[i].size);
		st_csi_read_status(&s, o);
		json_object_put(o);
		if (s.restore_size != t[i].want)
			fail_msg("restoreSize %s read as %lld, want %lld", t[i].size,
			         (long long)s.restore_size, (long long)t[i].want);
	}
}

static void test_wait_argument_checks(void **state)
{
	struct st_csi_snap s;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	snap_init(&s, "db", "data", "snap");
	/* No client is touched: nothing to wait for, or a timeout that makes no sense. */
	assert_int_equal(st_csi_wait_cut(&s, 0, NULL, 1000, &err), 0);
	assert_int_equal(st_csi_wait_cut(&s, 1, NULL, 0, &err), ST_EINVAL);
	st_err_clear(&err);
	(void)snprintf(s.error, sizeof(s.error), "failed before");
	assert_int_equal(st_csi_wait_ready(&s, 1, NULL, 1000, &err), 0);
	s.error[0] = '\0';
	s.created_ns = 1;
	assert_int_equal(st_csi_wait_cut(&s, 1, NULL, 1000, &err), 0);
}

/* ---- live tests against an API server and the test snapshot controller ------------------ */

static const char *live_kubeconfig(void)
{
	const char *p = getenv("STASIS_KUBECONFIG");

	return p && p[0] ? p : NULL;
}

#define LIVE_OR_SKIP()                                                                       \
	do {                                                                                 \
		if (live_kubeconfig() == NULL) {                                             \
			printf("[  SKIP    ] %s: STASIS_KUBECONFIG is not set (run "         \
			       "tests/integration/csi_snapshots.sh for the API stand-in)\n", \
			       __func__);                                                    \
			skip();                                                              \
		}                                                                            \
	} while (0)

static struct st_kube_client *live_client(void)
{
	struct st_kube_client_options o = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_kube_client *c = NULL;
	struct st_err err = ST_ERR_INIT;

	st_kube_config_init(&cfg);
	if (st_kube_config_load_file(&cfg, live_kubeconfig(), NULL, &err) < 0)
		fail_msg("kubeconfig: %s", st_err_text(&err));
	o.qps = 500;
	o.burst = 500;
	if (st_kube_client_new(&c, &cfg, &o, &err) < 0)
		fail_msg("client: %s", st_err_text(&err));
	st_kube_config_dispose(&cfg);
	return c;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void gvr(struct st_kube_gvr *g, const char *group, const char *res, bool namespaced)
{
	assert_int_equal(st_kube_gvr_set(g, group, "v1", res, NULL, namespaced), 0);
}

/* Creates an object from JSON text; cluster-scoped when ns is NULL. */
static void make(struct st_kube_client *c, const char *group, const char *res, const char *ns,
                 const char *fmt, ...) ST_PRINTF(5, 6);
static void make(struct st_kube_client *c, const char *group, const char *res, const char *ns,
                 const char *fmt, ...)
{
	struct st_kube_gvr g;
	struct st_err err = ST_ERR_INIT;
	struct json_object *o;
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o = obj_from("%s", buf);
	gvr(&g, group, res, ns != NULL);
	if (st_kube_create(NULL, c, &g, ns, o, NULL, &err) != 0)
		fail_msg("create %s: %s", res, st_err_text(&err));
	json_object_put(o);
}

static void make_ns(struct st_kube_client *c, const char *name)
{
	make(c, "", "namespaces", NULL,
	     "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", name);
}

/* A claim; volume and class are JSON members (or "") put into its spec. */
static void make_pvc(struct st_kube_client *c, const char *ns, const char *name,
                     const char *spec_extra)
{
	make(c, "", "persistentvolumeclaims", ns,
	     "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{\"name\":"
	     "\"%s\"},\"spec\":{\"accessModes\":[\"ReadWriteOnce\"],\"resources\":{\"requests\":"
	     "{\"storage\":\"50Mi\"}}%s}}",
	     name, spec_extra);
}

static void make_sc(struct st_kube_client *c, const char *name, const char *prov, bool dflt)
{
	make(c, "storage.k8s.io", "storageclasses", NULL,
	     "{\"apiVersion\":\"storage.k8s.io/v1\",\"kind\":\"StorageClass\",\"metadata\":"
	     "{\"name\":\"%s\"%s},\"provisioner\":\"%s\"}",
	     name,
	     dflt ? ",\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":\"true\"}"
	          : "",
	     prov);
}

/* A VolumeSnapshotClass; meta_extra goes into its metadata. */
static void make_class(struct st_kube_client *c, const char *name, const char *driver,
                       const char *meta_extra)
{
	make(c, "snapshot.storage.k8s.io", "volumesnapshotclasses", NULL,
	     "{\"apiVersion\":\"snapshot.storage.k8s.io/v1\",\"kind\":\"VolumeSnapshotClass\","
	     "\"metadata\":{\"name\":\"%s\"%s},\"driver\":\"%s\",\"deletionPolicy\":\"Delete\"}",
	     name, meta_extra, driver);
}

/* want_pv: the PersistentVolume the driver must come from, NULL when none. */
static void expect_driver_pv(struct st_kube_client *c, const char *ns, const char *pvc, int want_rc,
                             const char *want, const char *want_pv)
{
	struct st_err err = ST_ERR_INIT;
	struct json_object *pv = (struct json_object *)&err; /* must be overwritten */
	char out[254] = "junk";
	int rc = st_csi_driver_and_volume(out, sizeof(out), &pv, c, ns, pvc, &err);

	if (rc != want_rc)
		fail_msg("driver of %s: rc %d, want %d (%s)", pvc, rc, want_rc, st_err_text(&err));
	if (want_pv == NULL)
		assert_null(pv);
	else
		assert_string_equal(st_json_get_str(st_json_get_obj(pv, "metadata"), "name"),
		                    want_pv);
	json_object_put(pv);
	if (rc == 0)
		assert_string_equal(out, want);
	else if (strstr(err.msg, want) == NULL || strstr(err.msg, pvc) == NULL)
		fail_msg("driver of %s: \"%s\" lacks \"%s\" or the claim's name", pvc, err.msg,
		         want);
	else
		printf("[  INFO    ] %s: %s\n", pvc, err.msg);
}

static void expect_driver(struct st_kube_client *c, const char *ns, const char *pvc, int want_rc,
                          const char *want)
{
	expect_driver_pv(c, ns, pvc, want_rc, want, NULL);
}

static void test_live_driver(void **state)
{
	struct st_kube_client *c;
	char ns[64], sc[64], pv[64], body[512];

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	(void)snprintf(ns, sizeof(ns), "csi-drv-%d", (int)getpid());
	make_ns(c, ns);
	(void)snprintf(pv, sizeof(pv), "pv-csi-%d", (int)getpid());
	make(c, "", "persistentvolumes", NULL,
	     "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":\"%s\"},"
	     "\"spec\":{\"capacity\":{\"storage\":\"50Mi\"},\"accessModes\":[\"ReadWriteOnce\"],"
	     "\"csi\":{\"driver\":\"pv.csi.test\",\"volumeHandle\":\"vol-1\"}}}",
	     pv);
	make(c, "", "persistentvolumes", NULL,
	     "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":\"%s-"
	     "host\"},\"spec\":{\"capacity\":{\"storage\":\"50Mi\"},\"accessModes\":["
	     "\"ReadWriteOnce\"],\"hostPath\":{\"path\":\"/tmp/x\"}}}",
	     pv);
	(void)snprintf(sc, sizeof(sc), "fast-%d", (int)getpid());
	make_sc(c, sc, "sc.csi.test", false);

	/* The bound volume's driver wins over the class's provisioner. */
	(void)snprintf(body, sizeof(body), ",\"volumeName\":\"%s\",\"storageClassName\":\"%s\"", pv,
	               sc);
	make_pvc(c, ns, "bound", body);
	expect_driver_pv(c, ns, "bound", 0, "pv.csi.test", pv);
	{
		struct st_err err = ST_ERR_INIT;
		char out[254];

		/* The plain form gives the same driver. */
		assert_int_equal(st_csi_driver_of(out, sizeof(out), c, ns, "bound", &err), 0);
		assert_string_equal(out, "pv.csi.test");
	}
	(void)snprintf(body, sizeof(body), ",\"storageClassName\":\"%s\"", sc);
	make_pvc(c, ns, "classed", body);
	expect_driver(c, ns, "classed", 0, "sc.csi.test");
	/* Pre-bound to a volume that does not exist yet: the class decides. */
	(void)snprintf(body, sizeof(body),
	               ",\"volumeName\":\"nope-%d\",\"storageClassName\":\"%s\"", (int)getpid(),
	               sc);
	make_pvc(c, ns, "prebound", body);
	expect_driver(c, ns, "prebound", 0, "sc.csi.test");
	(void)snprintf(body, sizeof(body), ",\"volumeName\":\"%s-host\"", pv);
	make_pvc(c, ns, "hostpath", body);
	expect_driver(c, ns, "hostpath", ST_EINVAL, "is not a CSI volume");
	make_pvc(c, ns, "noclass", ",\"storageClassName\":\"\"");
	expect_driver(c, ns, "noclass", ST_EINVAL, "has no StorageClass");
	make_pvc(c, ns, "missingclass", ",\"storageClassName\":\"gone\"");
	expect_driver(c, ns, "missingclass", ST_ENOTFOUND, "\"gone\" not found");
	/* No class named and no default StorageClass yet. */
	make_pvc(c, ns, "dflt", "");
	expect_driver(c, ns, "dflt", ST_EINVAL, "storageclass.kubernetes.io/is-default-class=true");
	expect_driver(c, ns, "absent", ST_ENOTFOUND, "not found");
	/* Then a default appears. */
	(void)snprintf(sc, sizeof(sc), "standard-%d", (int)getpid());
	make_sc(c, sc, "default.csi.test", true);
	expect_driver(c, ns, "dflt", 0, "default.csi.test");
	st_kube_client_free(c);
}

static void expect_class(struct st_kube_client *c, const char *driver, int want_rc,
                         const char *want, const char *also)
{
	struct st_err err = ST_ERR_INIT;
	char out[254] = "junk";
	int rc = st_csi_pick_class(out, sizeof(out), c, driver, &err);

	if (rc != want_rc)
		fail_msg("class for %s: rc %d, want %d (%s)", driver, rc, want_rc,
		         st_err_text(&err));
	if (rc == 0) {
		assert_string_equal(out, want);
		return;
	}
	if (strstr(err.msg, want) == NULL || strstr(err.msg, also) == NULL ||
	    strstr(err.msg, driver) == NULL)
		fail_msg("class for %s: \"%s\" lacks \"%s\" / \"%s\"", driver, err.msg, want, also);
	printf("[  INFO    ] %s\n", err.msg);
}

static void test_live_class(void **state)
{
	struct st_kube_client *c;
	char d[5][64], n[8][64];
	int pid = (int)getpid(), i;

	(void)state;
	LIVE_OR_SKIP();
	c = live_client();
	for (i = 0; i < 5; i++)
		(void)snprintf(d[i], sizeof(d[i]), "d%d-%d.csi.test", i, pid);
	for (i = 0; i < 8; i++)
		(void)snprintf(n[i], sizeof(n[i]), "c%d-%d", i, pid);
	/* d0: labelled beats default; d1: default beats plain; d2: the only one. */
	make_class(c, n[0], d[0],
	           ","
	           "\"annotations\":{\"" ST_CSI_DEFAULT_ANN "\":\"true\"}");
	make_class(c, n[1], d[0], ",\"labels\":{\"" ST_CSI_CLASS_LABEL "\":\"true\"}");
	make_class(c, n[2], d[1], ",\"annotations\":{\"" ST_CSI_DEFAULT_ANN "\":\"true\"}");
	make_class(c, n[3], d[1], "");
	make_class(c, n[4], d[2], "");
	/* d3: two defaults; d4 has none at all. */
	make_class(c, n[5], d[3], ",\"annotations\":{\"" ST_CSI_DEFAULT_ANN "\":\"true\"}");
	make_class(c, n[6], d[3], ",\"annotations\":{\"" ST_CSI_DEFAULT_ANN "\":\"true\"}");
	expect_class(c, d[0], 0, n[1], NULL);
	expect_class(c, d[1], 0, n[2], NULL);
	expect_class(c, d[2], 0, n[4], NULL);
	expect_class(c, d[3], ST_EINVAL, n[5], n[6]);
	expect_class(c, d[4], ST_ENOTFOUND, "no VolumeSnapshotClass",
	             "label it " ST_CSI_CLASS_LABEL "=true");
	/* A second labelled class of d0 makes the choice ambiguous. */
	make_class(c, n[7], d[0], ",\"labels\":{\"" ST_CSI_CLASS_LABEL "\":\"true\"}");
	expect_class(c, d[0], ST_EINVAL, n[7], "keep the label on one");
	st_kube_client_free(c);
}

/* The common scene: a class-backed claim setup in namespace ns. */
static struct st_kube_client *scene(char *ns, size_t size, const char *prefix)
{
	static bool classes_made;
	struct st_kube_client *c = live_client();

	if (!classes_made) {
		make_sc(c, "csi-hostpath", "hostpath.csi.test", false);
		make_class(c, "csi-hostpath-snaps", "hostpath.csi.test",
		           ",\"labels\":{\"" ST_CSI_CLASS_LABEL "\":\"true\"}");
		make_class(c, "csi-hostpath-other", "hostpath.csi.test", "");
		classes_made = true;
	}
	(void)snprintf(ns, size, "%s-%d", prefix, (int)getpid());
	make_ns(c, ns);
	return c;
}

static void claim_and_snap(struct st_kube_client *c, struct st_csi_snap *s, const char *ns,
                           const char *pvc, const char *name, const char *backup)
{
	struct st_err err = ST_ERR_INIT;

	make_pvc(c, ns, pvc, ",\"storageClassName\":\"csi-hostpath\"");
	snap_init(s, ns, pvc, name);
	if (st_csi_create(s, c, backup, &err) != 0)
		fail_msg("create %s/%s: %s", ns, name, st_err_text(&err));
	assert_string_equal(s->cls, "csi-hostpath-snaps");
	assert_string_equal(s->driver, "hostpath.csi.test");
	assert_string_equal(s->error, "");
}

static int64_t ready_delay_ms(void)
{
	const char *v = getenv("STASIS_CSI_READY_DELAY_MS");

	return v && v[0] ? strtoll(v, NULL, 10) : 2500;
}

static void check_created(struct st_kube_client *c, const struct st_csi_snap *s, const char *backup)
{
	struct st_kube_gvr g;
	struct st_err err = ST_ERR_INIT;
	struct json_object *o = NULL;
	const struct json_object *md, *spec;

	gvr(&g, "snapshot.storage.k8s.io", "volumesnapshots", true);
	if (st_kube_get(&o, c, &g, s->namespace, s->name, NULL, &err) != 0)
		fail_msg("get %s: %s", s->name, st_err_text(&err));
	md = st_json_get_obj(o, "metadata");
	spec = st_json_get_obj(o, "spec");
	assert_string_equal(st_json_get_str(st_json_get_obj(md, "labels"), ST_CSI_BACKUP_LABEL),
	                    backup);
	assert_string_equal(st_json_get_str(spec, "volumeSnapshotClassName"), "csi-hostpath-snaps");
	assert_string_equal(
	        st_json_get_str(st_json_get_obj(spec, "source"), "persistentVolumeClaimName"),
	        s->pvc);
	json_object_put(o);
}

static int64_t content_time(struct st_kube_client *c, const char *content)
{
	struct st_kube_gvr g;
	struct st_err err = ST_ERR_INIT;
	struct json_object *o = NULL;
	int64_t t;

	gvr(&g, "snapshot.storage.k8s.io", "volumesnapshotcontents", false);
	if (st_kube_get(&o, c, &g, NULL, content, NULL, &err) != 0)
		fail_msg("get content %s: %s", content, st_err_text(&err));
	t = json_object_get_int64(st_json_get(st_json_get_obj(o, "status"), "creationTime"));
	json_object_put(o);
	return t;
}

static void test_live_cut_then_ready(void **state)
{
	struct st_kube_client *c;
	struct st_csi_snap s[3], dup;
	struct st_err err = ST_ERR_INIT;
	char a[64], b[64];
	int64_t t0, t_cut, t_ready, delay = ready_delay_ms(), wall_cut, last_cut = 0;
	int i;

	(void)state;
	LIVE_OR_SKIP();
	c = scene(a, sizeof(a), "csi-a");
	(void)snprintf(b, sizeof(b), "csi-b-%d", (int)getpid());
	make_ns(c, b);
	/* Two snapshots in one namespace (label selector), one in another (name selector). */
	t0 = mono_ms();
	claim_and_snap(c, &s[0], a, "data-1", "snap-1", "nightly-1");
	claim_and_snap(c, &s[1], a, "data-2", "snap-2", "nightly-1");
	claim_and_snap(c, &s[2], b, "data-3", "snap-3", "nightly-1");
	check_created(c, &s[0], "nightly-1");
	/* The same name again is refused, and says why. */
	snap_init(&dup, a, "data-1", "snap-1");
	assert_int_equal(st_csi_create(&dup, c, "nightly-1", &err), ST_EUPSTREAM);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_non_null(strstr(dup.error, "already exists"));
	st_err_clear(&err);

	if (st_csi_wait_cut(s, 3, c, 20000, &err) != 0)
		fail_msg("wait_cut: %s", st_err_text(&err));
	t_cut = mono_ms();
	wall_cut = wall_ns();
	for (i = 0; i < 3; i++) {
		assert_string_equal(s[i].error, "");
		assert_true(s[i].created_ns > 0);
		assert_false(s[i].ready);
		assert_true(s[i].content[0] != '\0');
		/* The snapshot's own time has whole seconds only. */
		assert_int_equal(s[i].created_ns % NS_PER_S, 0);
	}
	printf("[  INFO    ] cut after %lld ms\n", (long long)(t_cut - t0));
	/* The cut is reported long before the snapshots become ready. */
	assert_true(t_cut - t0 < delay - 500);

	if (st_csi_wait_ready(s, 3, c, 20000, &err) != 0)
		fail_msg("wait_ready: %s", st_err_text(&err));
	t_ready = mono_ms();
	printf("[  INFO    ] ready %lld ms after the cut\n", (long long)(t_ready - t_cut));
	assert_true(t_ready - t_cut >= delay - 1000);
	for (i = 0; i < 3; i++) {
		int64_t vsc = content_time(c, s[i].content);

		assert_true(s[i].ready);
		assert_string_equal(s[i].error, "");
		/* Nanoseconds from the content, which agree with the snapshot's second. */
		assert_int_equal(s[i].created_ns, vsc);
		assert_int_equal(s[i].restore_size, 50LL << 20);
		if (s[i].created_ns > last_cut)
			last_cut = s[i].created_ns;
	}
	/* The controller's clock is this machine's: the last cut was seen within moments. */
	printf("[  INFO    ] the last cut was reported %lld ms after it happened\n",
	       (long long)((wall_cut - last_cut) / 1000000));
	assert_true(wall_cut >= last_cut);
	assert_true(wall_cut - last_cut < 500LL * 1000000);
	for (i = 0; i < 3; i++) {
		assert_int_equal(st_csi_delete(&s[i], c, &err), 0);
		/* Deleting what is gone is fine. */
		assert_int_equal(st_csi_delete(&s[i], c, &err), 0);
	}
	assert_int_equal(err.code, 0);
	st_kube_client_free(c);
}

static void test_live_driver_error(void **state)
{
	const char *want = getenv("STASIS_CSI_ERROR_MESSAGE");
	struct st_kube_client *c;
	struct st_csi_snap s[2];
	struct st_err err = ST_ERR_INIT;
	char ns[64];

	(void)state;
	LIVE_OR_SKIP();
	assert_non_null(want);
	c = scene(ns, sizeof(ns), "csi-err");
	claim_and_snap(c, &s[0], ns, "err-data", "snap-err", "b-err");
	claim_and_snap(c, &s[1], ns, "data", "snap-ok", "b-err");
	if (st_csi_wait_cut(s, 2, c, 20000, &err) != 0)
		fail_msg("wait_cut: %s", st_err_text(&err));
	/* The driver's words, unchanged, and the other snapshot is unaffected. */
	assert_string_equal(s[0].error, want);
	assert_int_equal(s[0].created_ns, 0);
	assert_string_equal(s[1].error, "");
	assert_true(s[1].created_ns > 0);
	/* The failed one is not waited for again. */
	if (st_csi_wait_ready(s, 2, c, 20000, &err) != 0)
		fail_msg("wait_ready: %s", st_err_text(&err));
	assert_true(s[1].ready);
	assert_false(s[0].ready);
	assert_string_equal(s[0].error, want);
	assert_int_equal(st_csi_delete(&s[0], c, &err), 0);
	assert_int_equal(st_csi_delete(&s[1], c, &err), 0);
	st_kube_client_free(c);
}

static void test_live_timeout(void **state)
{
	struct st_kube_client *c;
	struct st_csi_snap s[2];
	struct st_err err = ST_ERR_INIT;
	char ns[64], want[128];
	int64_t t0, took;

	(void)state;
	LIVE_OR_SKIP();
	c = scene(ns, sizeof(ns), "csi-never");
	claim_and_snap(c, &s[0], ns, "never-data", "snap-never", "b-never");
	claim_and_snap(c, &s[1], ns, "data", "snap-cut", "b-never");
	t0 = mono_ms();
	assert_int_equal(st_csi_wait_cut(s, 2, c, 1500, &err), ST_ETIMEDOUT);
	took = mono_ms() - t0;
	printf("[  INFO    ] %s (after %lld ms)\n", err.msg, (long long)took);
	(void)snprintf(want, sizeof(want), "%s/snap-never", ns);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.msg, "not cut"));
	assert_null(strstr(err.msg, "snap-cut"));
	assert_true(took >= 1400 && took < 4000);
	assert_string_equal(s[0].error, "");
	assert_int_equal(s[0].created_ns, 0);
	assert_true(s[1].created_ns > 0);
	st_err_clear(&err);
	assert_int_equal(st_csi_delete(&s[0], c, &err), 0);
	assert_int_equal(st_csi_delete(&s[1], c, &err), 0);
	st_kube_client_free(c);
}

struct deleter {
	struct st_kube_client *c;
	const struct st_csi_snap *s;
	int rc;
};

static void *delete_later(void *arg)
{
	struct deleter *d = arg;
	struct timespec ts = { 0, 300 * 1000 * 1000 };

	(void)nanosleep(&ts, NULL);
	d->rc = st_csi_delete(d->s, d->c, NULL);
	return NULL;
}

static void test_live_missing_and_deleted(void **state)
{
	struct st_kube_client *c;
	struct st_csi_snap s, copy;
	struct st_err err = ST_ERR_INIT;
	struct deleter d;
	pthread_t th;
	char ns[64];
	int64_t t0;

	(void)state;
	LIVE_OR_SKIP();
	c = scene(ns, sizeof(ns), "csi-miss");
	/* Never created: the list says so at once. */
	snap_init(&s, ns, "data", "ghost");
	t0 = mono_ms();
	assert_int_equal(st_csi_wait_cut(&s, 1, c, 5000, &err), 0);
	assert_true(mono_ms() - t0 < 1000);
	assert_non_null(strstr(s.error, "does not exist"));
	assert_int_equal(st_csi_delete(&s, c, &err), 0);
	/* Deleted while waiting (the controller never cuts "never-" claims). */
	claim_and_snap(c, &s, ns, "never-x", "doomed", "");
	copy = s;
	d.c = c;
	d.s = &copy;
	d.rc = 1;
	assert_int_equal(pthread_create(&th, NULL, delete_later, &d), 0);
	t0 = mono_ms();
	assert_int_equal(st_csi_wait_cut(&s, 1, c, 10000, &err), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(d.rc, 0);
	assert_true(mono_ms() - t0 < 3000);
	assert_non_null(strstr(s.error, "was deleted while waiting"));
	assert_int_equal(err.code, 0);
	st_kube_client_free(c);
}

static void test_live_create_errors(void **state)
{
	struct st_kube_client *c;
	struct st_csi_snap s;
	struct st_err err = ST_ERR_INIT;
	char ns[64];

	(void)state;
	LIVE_OR_SKIP();
	c = scene(ns, sizeof(ns), "csi-bad");
	snap_init(&s, ns, "no-such-claim", "s1");
	assert_int_equal(st_csi_create(&s, c, "b", &err), ST_ENOTFOUND);
	assert_non_null(strstr(err.msg, "no-such-claim"));
	assert_string_equal(s.error, err.msg);
	st_err_clear(&err);
	make_pvc(c, ns, "data", ",\"storageClassName\":\"csi-hostpath\"");
	snap_init(&s, ns, "data", "s1");
	assert_int_equal(st_csi_create(&s, c, "Not a label!", &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, ST_CSI_BACKUP_LABEL));
	st_err_clear(&err);
	/* A class given by the caller is used as is. */
	snap_init(&s, ns, "data", "s2");
	(void)snprintf(s.cls, sizeof(s.cls), "csi-hostpath-other");
	assert_int_equal(st_csi_create(&s, c, NULL, &err), 0);
	assert_string_equal(s.driver, "");
	assert_int_equal(st_csi_delete(&s, c, &err), 0);
	st_kube_client_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_choose_class),
		cmocka_unit_test(test_choose_class_small_buffer),
		cmocka_unit_test(test_read_status),
		cmocka_unit_test(test_read_status_error),
		cmocka_unit_test(test_read_status_sizes),
		cmocka_unit_test(test_wait_argument_checks),
		cmocka_unit_test(test_live_driver),
		cmocka_unit_test(test_live_class),
		cmocka_unit_test(test_live_cut_then_ready),
		cmocka_unit_test(test_live_driver_error),
		cmocka_unit_test(test_live_timeout),
		cmocka_unit_test(test_live_missing_and_deleted),
		cmocka_unit_test(test_live_create_errors),
	};

	return cmocka_run_group_tests_name("csi", tests, NULL, NULL);
}
