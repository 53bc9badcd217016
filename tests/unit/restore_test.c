/*
 * The restore engine's pure parts (order, stripping, claim unbinding,
 * controlling owners, namespace mapping of objects and PV claimRefs, the
 * existing-object decision and update body, the claims a workload mounts),
 * the CLI's mapping parser and output, and the engine's plan on a tarball
 * built here: with an API server that refuses every connection, each
 * create fails and the log shows the order of the attempts and what was
 * skipped (controlled children, a Node, a plain copy beside the
 * preferred-version one). The engine itself also runs against
 * the API stand-in: tests/integration/restore_engine.sh starts it, takes a
 * backup with the controller, and runs this binary again with
 * STASIS_RESTORE_KUBECONFIG set, which selects the "restore_engine" group
 * (restore_engine_test.inc) instead of this one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "pkg/archive.h"
#include "pkg/cli_restore.h"
#include "pkg/kube.h"
#include "pkg/remap.h"
#include "pkg/restore.h"
#include "pkg/store.h"
#include "pkg/util/buf.h"
#include "pkg/util/json.h"

static struct json_object *parse(const char *text)
{
	struct json_object *o = json_tokener_parse(text);

	assert_non_null(o);
	return o;
}

static const char *path_str(struct json_object *o, const char *a, const char *b, const char *c)
{
	if (b != NULL)
		o = st_json_get(o, a);
	if (c != NULL) {
		o = st_json_get(o, b);
		b = c;
	}
	return st_json_get_str(o, b != NULL ? b : a);
}

static int cmp_gr(const void *a, const void *b)
{
	return st_restore_compare(*(const char *const *)a, *(const char *const *)b);
}

static void test_order(void **state)
{
	/* Shuffled on purpose; want is Velero's order, then alphabetical, Cluster API last. */
	const char *in[] = {
		"deployments.apps",
		"clusters.cluster.x-k8s.io",
		"pods",
		"widgets.example.com",
		"persistentvolumeclaims",
		"services",
		"configmaps",
		"namespaces",
		"customresourcedefinitions.apiextensions.k8s.io",
		"replicasets.apps",
		"secrets",
		"persistentvolumes",
		"statefulsets.apps",
		"serviceaccounts",
		"storageclasses.storage.k8s.io",
		"cronjobs.batch",
		"limitranges",
		"endpoints",
		"jobs.batch",
		"volumesnapshotclasses.snapshot.storage.k8s.io",
	};
	static const char *const want[] = {
		"customresourcedefinitions.apiextensions.k8s.io",
		"namespaces",
		"storageclasses.storage.k8s.io",
		"volumesnapshotclasses.snapshot.storage.k8s.io",
		"persistentvolumes",
		"persistentvolumeclaims",
		"serviceaccounts",
		"secrets",
		"configmaps",
		"limitranges",
		"pods",
		"replicasets.apps",
		"endpoints",
		"services",
		"cronjobs.batch",
		"deployments.apps",
		"jobs.batch",
		"statefulsets.apps",
		"widgets.example.com",
		"clusters.cluster.x-k8s.io",
	};
	size_t i, n = sizeof(in) / sizeof(in[0]);

	(void)state;
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	qsort(in, n, sizeof(in[0]), cmp_gr);
	for (i = 0; i < n; i++)
		assert_string_equal(in[i], want[i]);
	/* A custom resource comes after the CRDs, whatever its name sorts as. */
	assert_true(st_restore_compare("aardvarks.a.io",
	                               "customresourcedefinitions.apiextensions.k8s.io") > 0);
	assert_true(st_restore_priority("pods") < st_restore_priority("deployments.apps"));
}

static void test_strip(void **state)
{
	struct json_object *svc =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\","
	              "\"namespace\":\"test\",\"uid\":\"u1\",\"resourceVersion\":\"7\","
	              "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"managedFields\":[{}],"
	              "\"generation\":3,\"selfLink\":\"/x\",\"deletionTimestamp\":\"t\","
	              "\"ownerReferences\":[{\"kind\":\"X\",\"name\":\"x\",\"uid\":\"u0\"}],"
	              "\"labels\":{\"app\":\"web\"},\"annotations\":{\"a\":\"b\"}},"
	              "\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"10.0.0.5\",\"clusterIPs\":"
	              "[\"10.0.0.5\"],\"healthCheckNodePort\":31000,\"ports\":[{\"port\":80,"
	              "\"nodePort\":30080}]},\"status\":{\"loadBalancer\":{}}}");
	struct json_object *svc2 = NULL;
	struct json_object *headless = parse("{\"kind\":\"Service\",\"metadata\":{\"name\":\"h\"},"
	                                     "\"spec\":{\"clusterIP\":\"None\",\"clusterIPs\":"
	                                     "[\"None\"]}}");
	struct json_object *pod = parse("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},"
	                                "\"spec\":{\"nodeName\":\"n1\",\"containers\":[]},"
	                                "\"status\":{\"phase\":\"Running\"}}");
	struct json_object *pv =
	        parse("{\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":\"pv1\"},\"spec\":"
	              "{\"claimRef\":{\"kind\":\"PersistentVolumeClaim\",\"namespace\":\"test\","
	              "\"name\":\"data\",\"uid\":\"u9\",\"resourceVersion\":\"5\"}}}");
	struct json_object *pvc = parse(
	        "{\"kind\":\"PersistentVolumeClaim\",\"metadata\":{\"name\":\"data\","
	        "\"annotations\":{\"volume.kubernetes.io/selected-node\":\"n1\",\"keep\":\"y\","
	        "\"pv.kubernetes.io/bind-completed\":\"yes\"}},\"spec\":{\"volumeName\":\"pv1\"}}");
	struct json_object *md, *ports;

	(void)state;
	assert_int_equal(json_object_deep_copy(svc, &svc2, NULL), 0);
	st_restore_strip(svc, "services", false);
	md = st_json_get_obj(svc, "metadata");
	assert_string_equal(json_object_to_json_string(md),
	                    "{ \"name\": \"web\", \"namespace\": \"test\", \"labels\": { \"app\": "
	                    "\"web\" }, \"annotations\": { \"a\": \"b\" } }");
	assert_null(st_json_get(svc, "status"));
	assert_null(path_str(svc, "spec", "clusterIP", NULL));
	assert_null(st_json_get(st_json_get(svc, "spec"), "clusterIPs"));
	assert_null(st_json_get(st_json_get(svc, "spec"), "healthCheckNodePort"));
	ports = st_json_get_arr(st_json_get(svc, "spec"), "ports");
	assert_null(st_json_get(json_object_array_get_idx(ports, 0), "nodePort"));
	assert_int_equal(
	        json_object_get_int(st_json_get(json_object_array_get_idx(ports, 0), "port")), 80);
	/* preserveNodePorts keeps the ports, never the cluster IPs. */
	st_restore_strip(svc2, "services", true);
	ports = st_json_get_arr(st_json_get(svc2, "spec"), "ports");
	assert_int_equal(
	        json_object_get_int(st_json_get(json_object_array_get_idx(ports, 0), "nodePort")),
	        30080);
	assert_int_equal(
	        json_object_get_int(st_json_get(st_json_get(svc2, "spec"), "healthCheckNodePort")),
	        31000);
	assert_null(path_str(svc2, "spec", "clusterIP", NULL));
	st_restore_strip(headless, "services", false);
	assert_string_equal(path_str(headless, "spec", "clusterIP", NULL), "None");
	st_restore_strip(pod, "pods", false);
	assert_null(path_str(pod, "spec", "nodeName", NULL));
	assert_null(st_json_get(pod, "status"));
	st_restore_strip(pv, "persistentvolumes", false);
	assert_string_equal(path_str(pv, "spec", "claimRef", "namespace"), "test");
	assert_string_equal(path_str(pv, "spec", "claimRef", "name"), "data");
	assert_null(path_str(pv, "spec", "claimRef", "uid"));
	assert_null(path_str(pv, "spec", "claimRef", "resourceVersion"));
	st_restore_strip(pvc, "persistentvolumeclaims", false);
	assert_null(path_str(pvc, "metadata", "annotations", "volume.kubernetes.io/selected-node"));
	assert_string_equal(path_str(pvc, "metadata", "annotations", "keep"), "y");
	assert_string_equal(path_str(pvc, "spec", "volumeName", NULL), "pv1");
	st_restore_unbind_claim(pvc);
	assert_null(path_str(pvc, "spec", "volumeName", NULL));
	assert_null(path_str(pvc, "metadata", "annotations", "pv.kubernetes.io/bind-completed"));
	assert_string_equal(path_str(pvc, "metadata", "annotations", "keep"), "y");
	json_object_put(svc);
	json_object_put(svc2);
	json_object_put(headless);
	json_object_put(pod);
	json_object_put(pv);
	json_object_put(pvc);
}

static void test_strip_workloads(void **state)
{
	struct json_object *pod = parse(
	        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},\"spec\":{\"priority\":1000,"
	        "\"priorityClassName\":\"high\",\"volumes\":[{\"name\":\"data\"},{\"name\":"
	        "\"kube-api-access-x7k2\",\"projected\":{}}],\"containers\":[{\"name\":\"c\","
	        "\"volumeMounts\":[{\"name\":\"kube-api-access-x7k2\",\"mountPath\":\"/var/run\"},"
	        "{\"name\":\"data\",\"mountPath\":\"/d\"}]}],\"initContainers\":[{\"name\":"
	        "\"i\",\"volumeMounts\":[{\"name\":\"kube-api-access-x7k2\"}]}]}}");
	struct json_object *job = parse(
	        "{\"kind\":\"Job\",\"metadata\":{\"name\":\"j\"},\"spec\":{\"selector\":"
	        "{\"matchLabels\":{\"controller-uid\":\"u\"}},\"template\":{\"metadata\":"
	        "{\"labels\":{\"controller-uid\":\"u\",\"batch.kubernetes.io/controller-uid\":"
	        "\"u\",\"job-name\":\"j\"}},\"spec\":{}}}}");
	struct json_object *manual = parse(
	        "{\"kind\":\"Job\",\"metadata\":{\"name\":\"m\"},\"spec\":{\"manualSelector\":"
	        "true,\"selector\":{\"matchLabels\":{\"app\":\"m\"}}}}");
	struct json_object *sa =
	        parse("{\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":\"app\"},\"secrets\":"
	              "[{\"name\":\"app-token-abcde\"},{\"name\":\"registry\"}]}");

	(void)state;
	st_restore_strip(pod, "pods", false);
	assert_string_equal(
	        json_object_to_json_string_ext(st_json_get(pod, "spec"), JSON_C_TO_STRING_PLAIN),
	        "{\"priorityClassName\":\"high\",\"volumes\":[{\"name\":\"data\"}],"
	        "\"containers\":[{\"name\":\"c\",\"volumeMounts\":[{\"name\":"
	        "\"data\",\"mountPath\":\"\\/d\"}]}],\"initContainers\":[{\"name\":"
	        "\"i\",\"volumeMounts\":[]}]}");
	st_restore_strip(job, "jobs.batch", false);
	assert_null(st_json_get(st_json_get(job, "spec"), "selector"));
	assert_string_equal(
	        json_object_to_json_string_ext(
	                st_json_get(st_json_get(st_json_get(st_json_get(job, "spec"), "template"),
	                                        "metadata"),
	                            "labels"),
	                JSON_C_TO_STRING_PLAIN),
	        "{\"job-name\":\"j\"}");
	st_restore_strip(manual, "jobs.batch", false);
	assert_non_null(st_json_get(st_json_get(manual, "spec"), "selector"));
	st_restore_strip(sa, "serviceaccounts", false);
	assert_string_equal(
	        json_object_to_json_string_ext(st_json_get(sa, "secrets"), JSON_C_TO_STRING_PLAIN),
	        "[{\"name\":\"registry\"}]");
	assert_false(st_restore_restorable("nodes"));
	assert_false(st_restore_restorable("events.events.k8s.io"));
	assert_false(st_restore_restorable("restores.stasis.io"));
	assert_true(st_restore_restorable("pods"));
	assert_true(st_restore_restorable("schedules.stasis.io"));
	json_object_put(pod);
	json_object_put(job);
	json_object_put(manual);
	json_object_put(sa);
}

static void test_controller_owner(void **state)
{
	struct json_object *pod =
	        parse("{\"metadata\":{\"name\":\"web-abc-1\",\"ownerReferences\":["
	              "{\"kind\":\"Node\",\"name\":\"n\",\"uid\":\"1\"},"
	              "{\"kind\":\"ReplicaSet\",\"name\":\"web-abc\",\"uid\":\"2\",\"controller\":"
	              "true}]}}");
	struct json_object *loose = parse(
	        "{\"metadata\":{\"name\":\"cm\",\"ownerReferences\":[{\"kind\":\"Deployment\","
	        "\"name\":\"web\",\"uid\":\"3\",\"controller\":false}]}}");
	struct json_object *none = parse("{\"metadata\":{\"name\":\"plain\"}}");
	char kind[64], name[64];

	(void)state;
	assert_true(st_restore_controller_owner(kind, sizeof(kind), name, sizeof(name), pod));
	assert_string_equal(kind, "ReplicaSet");
	assert_string_equal(name, "web-abc");
	assert_false(st_restore_controller_owner(kind, sizeof(kind), name, sizeof(name), loose));
	assert_false(st_restore_controller_owner(kind, sizeof(kind), name, sizeof(name), none));
	json_object_put(pod);
	json_object_put(loose);
	json_object_put(none);
}

static void test_namespace_mapping(void **state)
{
	struct json_object *pv =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":"
	              "\"pv1\"},"
	              "\"spec\":{\"claimRef\":{\"namespace\":\"a\",\"name\":\"data\"}}}");
	struct json_object *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
	                               "{\"name\":\"c\",\"namespace\":\"a\"}}");
	struct json_object *ns = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
	                               "{\"name\":\"a\"}}");
	struct json_object *other = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
	                                  "\"metadata\":{\"name\":\"c\",\"namespace\":\"z\"}}");
	struct json_object *map = parse("{\"a\":\"b\",\"b\":\"c\"}");
	struct st_err err = ST_ERR_INIT;
	struct st_remap *m = NULL;

	(void)state;
	assert_int_equal(st_remap_new(&m, &err), 0);
	assert_int_equal(st_remap_add_map(m, ST_REMAP_NAMESPACE, map, &err), 0);
	assert_int_equal(st_restore_map_object(pv, m, &err), 0);
	assert_int_equal(st_restore_map_object(cm, m, &err), 0);
	assert_int_equal(st_restore_map_object(ns, m, &err), 0);
	assert_int_equal(st_restore_map_object(other, m, &err), 0);
	/* a -> b once: rules never chain (a -> b -> c would be wrong). */
	assert_string_equal(path_str(pv, "spec", "claimRef", "namespace"), "b");
	assert_string_equal(path_str(pv, "spec", "claimRef", "name"), "data");
	assert_string_equal(path_str(cm, "metadata", "namespace", NULL), "b");
	assert_string_equal(path_str(ns, "metadata", "name", NULL), "b");
	assert_string_equal(path_str(other, "metadata", "namespace", NULL), "z");
	/* No rules: nothing changes. */
	assert_int_equal(st_restore_map_object(other, NULL, &err), 0);
	assert_string_equal(path_str(other, "metadata", "namespace", NULL), "z");
	st_remap_free(m);
	json_object_put(pv);
	json_object_put(cm);
	json_object_put(ns);
	json_object_put(other);
	json_object_put(map);
}

static void test_existing(void **state)
{
	/* What the cluster holds: server defaults, its own metadata, an older restore's label. */
	struct json_object *cur = parse(
	        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
	        "\"namespace\":\"t\",\"resourceVersion\":\"42\",\"uid\":\"u\",\"labels\":{\"app\":"
	        "\"x\",\"stasis.io/restore-name\":\"older\"}},\"data\":{\"k\":\"v\"}}");
	struct json_object *same = parse(
	        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
	        "\"namespace\":\"t\",\"labels\":{\"app\":\"x\",\"stasis.io/restore-name\":\"r2\"}},"
	        "\"data\":{\"k\":\"v\"}}");
	struct json_object *diff = parse(
	        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
	        "\"namespace\":\"t\",\"labels\":{\"app\":\"x\"},\"annotations\":{\"n\":\"1\"}},"
	        "\"data\":{\"k\":\"backed-up\"}}");
	struct json_object *relabel =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
	              "\"namespace\":\"t\",\"labels\":{\"app\":\"y\"}},\"data\":{\"k\":\"v\"}}");
	struct json_object *m;

	(void)state;
	assert_int_equal(st_restore_existing_decide(cur, same, false), ST_RESTORE_EXISTING_SAME);
	assert_int_equal(st_restore_existing_decide(cur, same, true), ST_RESTORE_EXISTING_SAME);
	assert_int_equal(st_restore_existing_decide(cur, diff, false), ST_RESTORE_EXISTING_KEEP);
	assert_int_equal(st_restore_existing_decide(cur, diff, true), ST_RESTORE_EXISTING_UPDATE);
	assert_int_equal(st_restore_existing_decide(cur, relabel, false), ST_RESTORE_EXISTING_KEEP);
	m = st_restore_merge_existing(cur, diff);
	assert_string_equal(path_str(m, "metadata", "resourceVersion", NULL), "42");
	assert_string_equal(path_str(m, "metadata", "uid", NULL), "u");
	assert_string_equal(path_str(m, "data", "k", NULL), "backed-up");
	assert_string_equal(path_str(m, "metadata", "annotations", "n"), "1");
	assert_null(path_str(m, "metadata", "labels", "stasis.io/restore-name"));
	/* The existing object is not modified. */
	assert_string_equal(path_str(cur, "data", "k", NULL), "v");
	json_object_put(m);
	json_object_put(cur);
	json_object_put(same);
	json_object_put(diff);
	json_object_put(relabel);
}

static void test_existing_service(void **state)
{
	struct json_object *cur =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s\","
	              "\"resourceVersion\":\"9\"},\"spec\":{\"type\":\"NodePort\",\"clusterIP\":"
	              "\"10.1.1.1\",\"clusterIPs\":[\"10.1.1.1\"],\"sessionAffinity\":\"None\","
	              "\"ports\":[{\"port\":80,\"protocol\":\"TCP\",\"nodePort\":31111}]}}");
	struct json_object *want =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s\"},"
	              "\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"port\":80}]}}");
	struct json_object *moved =
	        parse("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"s\"},"
	              "\"spec\":{\"type\":\"NodePort\",\"ports\":[{\"port\":8080}]}}");
	struct json_object *m, *p;

	(void)state;
	/* Stripped fields and server defaults are no difference. */
	assert_int_equal(st_restore_existing_decide(cur, want, false), ST_RESTORE_EXISTING_SAME);
	assert_int_equal(st_restore_existing_decide(cur, moved, true), ST_RESTORE_EXISTING_UPDATE);
	m = st_restore_merge_existing(cur, moved);
	assert_string_equal(path_str(m, "spec", "clusterIP", NULL), "10.1.1.1");
	assert_non_null(st_json_get(st_json_get(m, "spec"), "clusterIPs"));
	p = json_object_array_get_idx(st_json_get_arr(st_json_get(m, "spec"), "ports"), 0);
	assert_int_equal(json_object_get_int(st_json_get(p, "port")), 8080);
	assert_null(st_json_get(p, "nodePort")); /* port 8080 had no node port */
	/* desired itself is untouched by the merge. */
	assert_null(path_str(moved, "spec", "clusterIP", NULL));
	json_object_put(m);
	m = st_restore_merge_existing(cur, want);
	p = json_object_array_get_idx(st_json_get_arr(st_json_get(m, "spec"), "ports"), 0);
	assert_int_equal(json_object_get_int(st_json_get(p, "nodePort")), 31111);
	assert_null(st_json_get(
	        json_object_array_get_idx(st_json_get_arr(st_json_get(want, "spec"), "ports"), 0),
	        "nodePort"));
	json_object_put(m);
	json_object_put(cur);
	json_object_put(want);
	json_object_put(moved);
}

static void test_claims_of(void **state)
{
	struct json_object *dep = parse(
	        "{\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},\"spec\":{\"template\":"
	        "{\"spec\":{\"volumes\":[{\"name\":\"a\",\"persistentVolumeClaim\":{\"claimName\":"
	        "\"html\"}},{\"name\":\"b\",\"emptyDir\":{}}]}}}}");
	struct json_object *sts = parse(
	        "{\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"db\"},\"spec\":{\"template\":"
	        "{\"spec\":{}},\"volumeClaimTemplates\":[{\"metadata\":{\"name\":\"data\"}}]}}");
	struct json_object *cj = parse(
	        "{\"kind\":\"CronJob\",\"metadata\":{\"name\":\"j\"},\"spec\":{\"jobTemplate\":"
	        "{\"spec\":{\"template\":{\"spec\":{\"volumes\":[{\"persistentVolumeClaim\":"
	        "{\"claimName\":\"scratch\"}}]}}}}}}");
	struct json_object *pod =
	        parse("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"},\"spec\":{\"volumes\":["
	              "{\"persistentVolumeClaim\":{\"claimName\":\"one\"}}]}}");
	struct json_object *arr = json_object_new_array();

	(void)state;
	st_restore_claims_of(arr, dep);
	st_restore_claims_of(arr, sts);
	st_restore_claims_of(arr, cj);
	st_restore_claims_of(arr, pod);
	assert_string_equal(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN),
	                    "[\"html\",\"data-db-\",\"scratch\",\"one\"]");
	json_object_put(arr);
	json_object_put(dep);
	json_object_put(sts);
	json_object_put(cj);
	json_object_put(pod);
}

static void test_parse_mappings(void **state)
{
	static const struct {
		const char *text;
		int registry;
		const char *want; /* NULL: refused */
	} cases[] = {
		{ "old:new", 0, "{\"old\":\"new\"}" },
		{ "a:b, c:d", 0, "{\"a\":\"b\",\"c\":\"d\"}" },
		{ "a=b", 0, "{\"a\":\"b\"}" },
		{ "a", 0, NULL },
		{ "a:", 0, NULL },
		{ ":b", 0, NULL },
		{ "A:b", 0, NULL },
		{ "a:b,a:c", 0, NULL },
		{ ",", 0, NULL },
		{ "docker.io:mirror.local", 1, "{\"docker.io\":\"mirror.local\"}" },
		{ "localhost:5000=mirror.local:5000/x", 1,
		  "{\"localhost:5000\":\"mirror.local:5000\\/x\"}" },
		{ "localhost:5000:mirror.local", 1, NULL },
		{ "reg io:x", 1, NULL },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_object *map = NULL;
		struct st_err err = ST_ERR_INIT;
		int rc = st_cli_restore_parse_mappings(&map, cases[i].text, "--m",
		                                       cases[i].registry, &err);

		if (cases[i].want == NULL) {
			assert_int_equal(rc, ST_EINVAL);
			assert_non_null(strstr(err.msg, "--m: "));
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(
			        json_object_to_json_string_ext(map, JSON_C_TO_STRING_PLAIN),
			        cases[i].want);
		}
		json_object_put(map);
	}
}

static void test_cli_output(void **state)
{
	struct json_object *items = parse(
	        "[{\"metadata\":{\"name\":\"r1\",\"namespace\":\"stasis\",\"creationTimestamp\":"
	        "\"2026-01-02T03:04:00Z\"},\"spec\":{\"backupName\":\"b1\",\"namespaceMapping\":"
	        "{\"test\":\"test2\"},\"existingResourcePolicy\":\"update\"},\"status\":{\"phase\":"
	        "\"PartiallyFailed\",\"errors\":1,\"warnings\":2,\"startTimestamp\":"
	        "\"2026-01-02T03:04:05Z\",\"completionTimestamp\":\"2026-01-02T03:04:09Z\","
	        "\"progress\":{\"totalItems\":7,\"itemsRestored\":6}}}]");
	struct json_object *results =
	        parse("{\"errors\":{\"namespaces\":{\"test2\":[\"volume test2/d: lost\"]}},"
	              "\"warnings\":{\"cluster\":[\"persistentvolumes pv1: already exists\"]}}");
	struct st_buf out = ST_BUF_INIT(1u << 20);

	(void)state;
	assert_int_equal(st_cli_restore_table(&out, items, 0), 0);
	assert_int_equal(st_buf_putc(&out, '\0'), 0);
	assert_string_equal(
	        out.ptr, "NAME      BACKUP    STATUS                      STARTED              "
	                 "           COMPLETED                       ERRORS    WARNINGS   CREATED"
	                 "                         SELECTOR\n"
	                 "r1        b1        PartiallyFailed (1 error)   2026-01-02 03:04:05 "
	                 "+0000 UTC   2026-01-02 03:04:09 +0000 UTC   1         2          "
	                 "2026-01-02 03:04:00 +0000 UTC   <none>\n");
	st_buf_clear(&out);
	assert_int_equal(
	        st_cli_restore_describe(&out, json_object_array_get_idx(items, 0), results), 0);
	assert_int_equal(st_buf_putc(&out, '\0'), 0);
	assert_non_null(strstr(out.ptr, "Phase:  PartiallyFailed (1 error)\n"));
	assert_non_null(strstr(out.ptr, "Backup:  b1\n"));
	assert_non_null(strstr(out.ptr, "Namespace mappings:  test=test2\n"));
	assert_non_null(strstr(out.ptr, "Existing Resource Policy:  update\n"));
	assert_non_null(strstr(out.ptr, "Items restored:              6\n"));
	assert_non_null(strstr(out.ptr, "Warnings:\n  Stasis:  <none>\n  Cluster:\n"
	                                "    persistentvolumes pv1: already exists\n"));
	assert_non_null(strstr(out.ptr, "Errors:\n  Stasis:  <none>\n  Cluster:  <none>\n"
	                                "  Namespaces:\n    test2:\n      volume test2/d: lost\n"));
	st_buf_dispose(&out);
	json_object_put(items);
	json_object_put(results);
}

/* Inflates one gzip member of glen bytes into out (cap bytes); 0 on success. */
static int uncompress_gz(char *out, unsigned long cap, const char *gz, size_t glen)
{
	z_stream z;
	int zr;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)(uintptr_t)gz;
	z.avail_in = (uInt)glen;
	z.next_out = (unsigned char *)out;
	z.avail_out = (uInt)cap;
	zr = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	return zr == Z_STREAM_END ? 0 : -1;
}

/* ---- the engine's plan, with an API server that refuses every connection ---------------- */

static void add_entry(struct st_archive_writer *w, const char *name, const char *json)
{
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_archive_writer_add_file(w, name, NULL, json, strlen(json), &err), 0);
}

#define OWNED(kind, name)                                                                         \
	"\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"" kind "\",\"name\":\"" name \
	"\",\"uid\":\"u\",\"controller\":true}]"

/* A backup tarball in Velero's layout, written to dir/backups/b1/b1.tar.gz. */
static void write_backup(const char *dir)
{
	static const char *const entries[][2] = {
		{ "resources/pods/v1-preferredversion/namespaces/ns1/web-rs-x.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web-rs-x\","
		  "\"namespace\":\"ns1\"," OWNED("ReplicaSet", "web-rs") "}}" },
		{ "resources/replicasets.apps/v1-preferredversion/namespaces/ns1/web-rs.json",
		  "{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"metadata\":{\"name\":"
		  "\"web-rs\",\"namespace\":\"ns1\"," OWNED("Deployment", "web") "}}" },
		{ "resources/deployments.apps/v1-preferredversion/namespaces/ns1/web.json",
		  "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
		  "\"web\",\"namespace\":\"ns1\"}}" },
		{ "resources/pods/v1-preferredversion/namespaces/ns1/orphan.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"orphan\","
		  "\"namespace\":\"ns1\"," OWNED("ReplicaSet", "gone") "}}" },
		{ "resources/configmaps/namespaces/ns1/c.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
		  "\"namespace\":\"ns1\"}}" },
		{ "resources/configmaps/v1-preferredversion/namespaces/ns1/c.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\","
		  "\"namespace\":\"ns1\"}}" },
		{ "resources/namespaces/v1-preferredversion/cluster/ns1.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"ns1\"}"
		  "}" },
		{ "resources/widgets.example.com/v1-preferredversion/namespaces/ns1/w.json",
		  "{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":"
		  "\"w\",\"namespace\":\"ns1\"}}" },
		{ "resources/customresourcedefinitions.apiextensions.k8s.io/v1-preferredversion/"
		  "cluster/widgets.example.com.json",
		  "{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":"
		  "\"CustomResourceDefinition\",\"metadata\":{\"name\":\"widgets.example.com\"}}" },
		{ "resources/nodes/v1-preferredversion/cluster/n1.json",
		  "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\"}}" },
	};
	struct st_archive_writer *w = NULL;
	struct st_buf gz = ST_BUF_INIT(1u << 20);
	struct st_err err = ST_ERR_INIT;
	char path[512];
	FILE *f;
	size_t i;

	assert_int_equal(st_archive_writer_new(&w, st_archive_buf_write, &gz), 0);
	add_entry(w, "metadata/version", "1.1.0");
	for (i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
		add_entry(w, entries[i][0], entries[i][1]);
	assert_int_equal(st_archive_writer_finish(w, &err), 0);
	st_archive_writer_free(w);
	(void)snprintf(path, sizeof(path), "%s/backups", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/backups/b1", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	(void)snprintf(path, sizeof(path), "%s/backups/b1/b1.tar.gz", dir);
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(gz.ptr, 1, gz.len, f), gz.len);
	assert_int_equal(fclose(f), 0);
	st_buf_dispose(&gz);
}

/* Position of the log line about "what: " (an attempt that failed), or -1. */
static long attempt_at(const char *log, const char *what)
{
	char needle[256];
	const char *p;

	(void)snprintf(needle, sizeof(needle), "msg=\"%s: ", what);
	p = strstr(log, needle);
	return p != NULL ? (long)(p - log) : -1;
}

static void test_plan(void **state)
{
	struct st_kube_client_options co = ST_KUBE_CLIENT_OPTIONS_INIT;
	struct st_restore_options o = ST_RESTORE_OPTIONS_INIT;
	struct st_kube_config cfg;
	struct st_kube_client *c = NULL;
	struct st_store *s = NULL;
	struct st_restore_result res;
	struct st_err err = ST_ERR_INIT;
	struct json_object *r = parse("{\"apiVersion\":\"stasis.io/v1alpha1\",\"kind\":\"Restore\","
	                              "\"metadata\":{\"name\":\"r1\",\"namespace\":\"stasis\"},"
	                              "\"spec\":{\"backupName\":\"b1\"}}");
	char dir[] = "/tmp/st-restore-plan-XXXXXX";
	char url[600], *log = NULL, *gz = NULL;
	size_t len = 0;
	static const char *const order[] = {
		"customresourcedefinitions.apiextensions.k8s.io widgets.example.com",
		"namespaces ns1",
		"configmaps ns1/c",
		"pods ns1/orphan",
		"deployments.apps ns1/web",
		"widgets.example.com ns1/w",
	};
	size_t i;
	long prev = -1, at;

	(void)state;
	assert_non_null(mkdtemp(dir));
	write_backup(dir);
	(void)snprintf(url, sizeof(url), "file://%s", dir);
	assert_int_equal(st_store_open(&s, url, NULL, &err), 0);
	/* Port 1 on loopback refuses at once: every create fails, in the engine's order. */
	st_kube_config_init(&cfg);
	cfg.server = strdup("http://127.0.0.1:1");
	co.max_retries = 1;
	co.backoff_ms = 1;
	assert_int_equal(st_kube_client_new(&c, &cfg, &co, &err), 0);
	st_kube_config_dispose(&cfg);
	o.crd_wait_s = 1;
	assert_int_equal(st_restore_run(&res, c, s, r, &o, &err), 0);
	assert_string_equal(res.phase, "PartiallyFailed");
	assert_int_equal(res.total_items, 6); /* two children, the Node and a duplicate left out */
	assert_int_equal(res.items_restored, 0);
	assert_int_equal(
	        st_store_get_mem(&gz, &len, s, "restores/r1/restore-r1-logs.gz", 1u << 20, &err),
	        0);
	assert_non_null(log = calloc(1, (1u << 20) + 1));
	assert_int_equal(uncompress_gz(log, 1u << 20, gz, len), 0);
	free(gz);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		at = attempt_at(log, order[i]);
		if (at <= prev)
			fail_msg("%s attempted at %ld, after %ld:\n%s", order[i], at, prev, log);
		prev = at;
	}
	assert_non_null(strstr(log, "pods ns1/web-rs-x skipped: its controller ReplicaSet web-rs"));
	assert_non_null(
	        strstr(log, "replicasets.apps ns1/web-rs skipped: its controller Deployment"));
	assert_non_null(strstr(log, "nodes n1 skipped: not a restorable resource"));
	assert_null(strstr(log, "msg=\"pods ns1/web-rs-x: "));
	assert_int_equal(attempt_at(strstr(log, "configmaps ns1/c: ") + 1, "configmaps ns1/c"), -1);
	free(log);
	json_object_put(r);
	st_kube_client_free(c);
	st_store_free(s);
	(void)snprintf(url, sizeof(url), "rm -rf '%s'", dir);
	assert_int_equal(system(url), 0);
}

#include "restore_engine_test.inc"

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_strip),
		cmocka_unit_test(test_strip_workloads),
		cmocka_unit_test(test_controller_owner),
		cmocka_unit_test(test_namespace_mapping),
		cmocka_unit_test(test_existing),
		cmocka_unit_test(test_existing_service),
		cmocka_unit_test(test_claims_of),
		cmocka_unit_test(test_parse_mappings),
		cmocka_unit_test(test_cli_output),
		cmocka_unit_test(test_plan),
	};

	if (getenv("STASIS_RESTORE_KUBECONFIG") != NULL)
		return run_engine_tests();
	return cmocka_run_group_tests_name("restore", tests, NULL, NULL);
}
