/*
 * Unit tests for pkg/remap: rule parsing and its errors, image registry
 * matching, every workload kind's pod template, storage classes in claims,
 * volumes and claim templates, namespaces, Velero's ConfigMaps, and the real
 * manifests in ../shared/conformance/manifests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pkg/jsonpatch.h"
#include "pkg/remap.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/yaml.h"

static struct st_remap *new_remap(void)
{
	struct st_remap *m = NULL;

	assert_int_equal(st_remap_new(&m, NULL), 0);
	assert_non_null(m);
	return m;
}

static void add_pairs_ok(struct st_remap *m, enum st_remap_kind kind, const char *text)
{
	struct st_err err = ST_ERR_INIT;

	if (st_remap_add_pairs(m, kind, text, &err) != 0)
		fail_msg("pairs \"%s\": %s", text, st_err_text(&err));
}

static struct json_object *parse(const char *text)
{
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;

	if (st_json_parse(&o, text, strlen(text), 1 << 20, "test object", &err) < 0)
		fail_msg("%s", st_err_text(&err));
	return o;
}

static const char *str_at(const struct json_object *doc, const char *ptr)
{
	struct json_object *v = NULL;

	if (st_jsonpatch_pointer_get(&v, doc, ptr, NULL) < 0 || v == NULL ||
	    !json_object_is_type(v, json_type_string))
		fail_msg("no string at %s", ptr);
	return json_object_get_string(v);
}

/* ---- rules and their errors ------------------------------------------- */

static void expect_add_error(enum st_remap_kind kind, const char *from, const char *to,
                             const char *needle)
{
	struct st_remap *m = new_remap();
	struct st_err err = ST_ERR_INIT;

	add_pairs_ok(m, kind, kind == ST_REMAP_IMAGE_REGISTRY ? "dev/=test/" : "dup:x");
	assert_int_equal(st_remap_add(m, kind, from, to, &err), ST_EINVAL);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("adding \"%s\" -> \"%s\": \"%s\" lacks \"%s\"", from, to, err.msg, needle);
	assert_int_equal(st_remap_count(m, kind), 1);
	st_remap_free(m);
}

static void test_add_errors(void **state)
{
	(void)state;
	expect_add_error(ST_REMAP_NAMESPACE, "", "b", "empty");
	expect_add_error(ST_REMAP_NAMESPACE, "a", "", "empty");
	expect_add_error(ST_REMAP_NAMESPACE, "Prod", "b", "\"Prod\" must be an RFC 1123 label");
	expect_add_error(ST_REMAP_NAMESPACE, "a", "-b", "\"-b\" must be");
	expect_add_error(ST_REMAP_NAMESPACE, "a.b", "c", "\"a.b\" must be");
	expect_add_error(ST_REMAP_NAMESPACE, "dup", "y", "\"dup\" is mapped twice");
	expect_add_error(ST_REMAP_STORAGE_CLASS, "fast ssd", "b", "must be lower-case");
	expect_add_error(ST_REMAP_STORAGE_CLASS, "a..b", "b", "must be lower-case");
	expect_add_error(ST_REMAP_STORAGE_CLASS, "dup", "z", "mapped twice");
	expect_add_error(ST_REMAP_IMAGE_REGISTRY, "reg io", "b", "must be an image reference");
	expect_add_error(ST_REMAP_IMAGE_REGISTRY, "a//b", "b", "must be an image reference");
	expect_add_error(ST_REMAP_IMAGE_REGISTRY, "/a", "b", "must be an image reference");
	/* "dev" and "dev/" are the same prefix. */
	expect_add_error(ST_REMAP_IMAGE_REGISTRY, "dev", "other", "\"dev\" is mapped twice");
	/* Storage classes may use dots; namespaces never. */
	{
		struct st_remap *m = new_remap();

		assert_int_equal(st_remap_add(m, ST_REMAP_STORAGE_CLASS, "gp2.ssd", "gp3", NULL),
		                 0);
		assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "gp2.ssd"), "gp3");
		assert_null(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "gp3"));
		assert_null(st_remap_lookup(m, ST_REMAP_NAMESPACE, "gp2.ssd"));
		assert_int_equal(st_remap_count(m, ST_REMAP_STORAGE_CLASS), 1);
		assert_int_equal(st_remap_count(m, ST_REMAP_NAMESPACE), 0);
		st_remap_free(m);
	}
	st_remap_free(NULL);
}

static void expect_pairs_error(enum st_remap_kind kind, const char *text, const char *needle)
{
	struct st_remap *m = new_remap();
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_remap_add(m, kind, "keep", "kept", NULL), 0);
	assert_int_equal(st_remap_add_pairs(m, kind, text, &err), ST_EINVAL);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("pairs \"%s\": \"%s\" lacks \"%s\"", text, err.msg, needle);
	/* All or nothing: the rules before the bad item are gone, older ones stay. */
	assert_int_equal(st_remap_count(m, kind), 1);
	assert_string_equal(st_remap_lookup(m, kind, "keep"), "kept");
	st_remap_free(m);
}

static void test_pairs(void **state)
{
	struct st_remap *m = new_remap();

	(void)state;
	add_pairs_ok(m, ST_REMAP_NAMESPACE, " prod : staging ,dev:test");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_NAMESPACE, "prod"), "staging");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_NAMESPACE, "dev"), "test");
	add_pairs_ok(m, ST_REMAP_NAMESPACE, "");
	add_pairs_ok(m, ST_REMAP_NAMESPACE, "  \t");
	assert_int_equal(st_remap_count(m, ST_REMAP_NAMESPACE), 2);
	add_pairs_ok(m, ST_REMAP_STORAGE_CLASS, "fast=standard, gp2:gp3");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "fast"), "standard");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "gp2"), "gp3");
	/* Registry ports are not separators; '=' always is. */
	add_pairs_ok(m, ST_REMAP_IMAGE_REGISTRY,
	             "localhost:5000:mirror.local:5443,docker.io:reg.local,"
	             "quay.io/app:1.0=quay.io/app:2.0");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_IMAGE_REGISTRY, "localhost:5000"),
	                    "mirror.local:5443");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_IMAGE_REGISTRY, "docker.io"), "reg.local");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_IMAGE_REGISTRY, "quay.io/app:1.0"),
	                    "quay.io/app:2.0");
	assert_int_equal(st_remap_count(m, ST_REMAP_IMAGE_REGISTRY), 3);
	st_remap_free(m);

	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b,", "empty item");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b,,c:d", "empty item");
	expect_pairs_error(ST_REMAP_NAMESPACE, ",a:b", "empty item");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b,c", "\"c\" is not old:new");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b:c", "is not old:new");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b,a:c", "\"a\" is mapped twice");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:b,keep:x", "\"keep\" is mapped twice");
	expect_pairs_error(ST_REMAP_NAMESPACE, "a:", "empty");
	expect_pairs_error(ST_REMAP_NAMESPACE, " :b", "empty");
	expect_pairs_error(ST_REMAP_STORAGE_CLASS, "a:b,Fast:c", "\"Fast\" must be");
	/* Tags on both sides make ':' ambiguous: the message says to use '='. */
	expect_pairs_error(ST_REMAP_IMAGE_REGISTRY, "app:test:app:prod", "write old=new");
}

static void test_map(void **state)
{
	struct st_remap *m = new_remap();
	struct json_object *ok = parse("{\"fast\":\"standard\",\"slow\":\"cold\"}");
	struct json_object *bad = parse("{\"a\":\"b\",\"c\":3}");
	struct json_object *arr = parse("[\"a\"]");
	struct st_err err = ST_ERR_INIT;

	(void)state;
	assert_int_equal(st_remap_add_map(m, ST_REMAP_STORAGE_CLASS, ok, NULL), 0);
	assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "slow"), "cold");
	assert_int_equal(st_remap_add_map(m, ST_REMAP_STORAGE_CLASS, bad, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "\"c\": the new name must be a string"));
	assert_null(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "a"));
	st_err_clear(&err);
	assert_int_equal(st_remap_add_map(m, ST_REMAP_STORAGE_CLASS, arr, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "must be a map"));
	st_err_clear(&err);
	assert_int_equal(st_remap_add_map(m, ST_REMAP_STORAGE_CLASS, ok, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "mapped twice"));
	assert_int_equal(st_remap_count(m, ST_REMAP_STORAGE_CLASS), 2);
	json_object_put(ok);
	json_object_put(bad);
	json_object_put(arr);
	st_remap_free(m);
}

static void test_rule_cap(void **state)
{
	struct st_remap *m = new_remap();
	struct st_err err = ST_ERR_INIT;
	char from[32];

	(void)state;
	for (unsigned i = 0; i < ST_REMAP_MAX_RULES; i++) {
		(void)snprintf(from, sizeof(from), "ns-%u", i);
		assert_int_equal(st_remap_add(m, ST_REMAP_NAMESPACE, from, "x", NULL), 0);
	}
	assert_int_equal(st_remap_add(m, ST_REMAP_NAMESPACE, "one-more", "x", &err), ST_ETOOBIG);
	assert_non_null(strstr(err.msg, "more than 4096 namespace mappings"));
	assert_string_equal(st_remap_lookup(m, ST_REMAP_NAMESPACE, "ns-4095"), "x");
	st_remap_free(m);
}

/* ---- image matching ---------------------------------------------------- */

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct {
	const char *rules;
	const char *image;
	const char *want; /* NULL: unchanged */
} image_cases[] = {
	/* docker.io is implied, single names live in library/. */
	{ "docker.io=mirror.local", "nginx", "mirror.local/library/nginx" },
	{ "docker.io=mirror.local", "nginx:1.25", "mirror.local/library/nginx:1.25" },
	{ "docker.io=mirror.local", "nginx@" DIGEST, "mirror.local/library/nginx@" DIGEST },
	{ "docker.io=mirror.local", "bitnami/postgresql:15", "mirror.local/bitnami/postgresql:15" },
	{ "docker.io=mirror.local", "docker.io/nginx:1", "mirror.local/library/nginx:1" },
	{ "docker.io=mirror.local", "docker.io/library/nginx", "mirror.local/library/nginx" },
	{ "docker.io=mirror.local", "index.docker.io/team/app", "mirror.local/team/app" },
	{ "docker.io=mirror.local", "quay.io/team/app", NULL },
	{ "docker.io=mirror.local", "docker.io.evil.com/app", NULL },
	{ "docker.io=mirror.local", "localhost/app", NULL },
	{ "docker.io=mirror.local", "localhost:5000/app", NULL },
	{ "docker.io=mirror.local", "reg:5000/app", NULL },
	{ "docker.io/library=mirror.local/hub", "redis:7", "mirror.local/hub/redis:7" },
	{ "docker.io/library=mirror.local/hub", "bitnami/redis:7", NULL },
	/* localhost is a registry; a port is part of the registry. */
	{ "localhost=reg.local", "localhost/app:1", "reg.local/app:1" },
	{ "localhost=reg.local", "localhost:5000/app:1", NULL },
	{ "localhost:5000=reg.local:5443", "localhost:5000/app:1", "reg.local:5443/app:1" },
	{ "localhost:5000=reg.local:5443", "localhost:50001/app", NULL },
	{ "localhost:5000=reg.local:5443", "localhost/app", NULL },
	/* Repository prefixes stop at a component boundary. */
	{ "quay.io/team=reg.local/team", "quay.io/team/app@" DIGEST, "reg.local/team/app@" DIGEST },
	{ "quay.io/team=reg.local/team", "quay.io/team@" DIGEST, "reg.local/team@" DIGEST },
	{ "quay.io/team=reg.local/team", "quay.io/team:v1", "reg.local/team:v1" },
	{ "quay.io/team=reg.local/team", "quay.io/teammate/app", NULL },
	{ "reg.io/app=reg2.io/app", "reg.io/app:1.0@" DIGEST, "reg2.io/app:1.0@" DIGEST },
	{ "reg.io/app=reg2.io/app", "reg.io/application", NULL },
	/* A rule naming a tag matches that tag only. */
	{ "reg.io/app:1.0=reg2.io/app:2.0", "reg.io/app:1.0", "reg2.io/app:2.0" },
	{ "reg.io/app:1.0=reg2.io/app:2.0", "reg.io/app:1.0.1", NULL },
	{ "reg.io/app:1.0=reg2.io/app:2.0", "reg.io/app", NULL },
	/* The longest rule wins, whichever form it matched. */
	{ "docker.io=mirror.local,docker.io/bitnami=bitnami.local/m", "bitnami/redis:7",
	  "bitnami.local/m/redis:7" },
	{ "docker.io=mirror.local,docker.io/bitnami=bitnami.local/m", "redis",
	  "mirror.local/library/redis" },
	{ "gcr.io=mirror.local/gcr,gcr.io/google-samples=samples.local",
	  "gcr.io/google-samples/xtrabackup:1.0", "samples.local/xtrabackup:1.0" },
	/* Velero's advice "dev/,test/": trailing slashes are the same prefix. */
	{ "dev/=test/", "dev/image1:dev", "test/image1:dev" },
	{ "dev/=test/", "devel/image1:dev", NULL },
	/* A rule to itself changes nothing. */
	{ "quay.io=quay.io", "quay.io/a", NULL },
};

static void test_images(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(image_cases) / sizeof(image_cases[0]); i++) {
		struct st_remap *m = new_remap();
		char *got;

		add_pairs_ok(m, ST_REMAP_IMAGE_REGISTRY, image_cases[i].rules);
		got = st_remap_image(m, image_cases[i].image);
		if (image_cases[i].want == NULL && got != NULL)
			fail_msg("case %zu: %s with %s became %s, expected unchanged", i,
			         image_cases[i].image, image_cases[i].rules, got);
		if (image_cases[i].want != NULL &&
		    (got == NULL || strcmp(got, image_cases[i].want) != 0))
			fail_msg("case %zu: %s with %s became %s, expected %s", i,
			         image_cases[i].image, image_cases[i].rules,
			         got ? got : "(unchanged)", image_cases[i].want);
		free(got);
		st_remap_free(m);
	}
	assert_null(st_remap_image(NULL, "nginx"));
}

/* ---- objects ----------------------------------------------------------- */

static struct st_remap *workload_rules(void)
{
	struct st_remap *m = new_remap();

	add_pairs_ok(m, ST_REMAP_IMAGE_REGISTRY, "docker.io=mirror.local,quay.io:quay.local");
	add_pairs_ok(m, ST_REMAP_STORAGE_CLASS, "fast:standard");
	add_pairs_ok(m, ST_REMAP_NAMESPACE, "prod:restored");
	return m;
}

#define POD_SPEC                                                                             \
	"{\"initContainers\":[{\"name\":\"init\",\"image\":\"busybox\"}],"                   \
	"\"containers\":[{\"name\":\"app\",\"image\":\"quay.io/team/app:1\"},"               \
	"{\"name\":\"side\",\"image\":\"registry.k8s.io/pause:3.9\"},{\"name\":\"noimg\"}]," \
	"\"ephemeralContainers\":[{\"name\":\"debug\",\"image\":\"alpine@" DIGEST "\"}],"    \
	"\"volumes\":[{\"name\":\"e\",\"ephemeral\":{\"volumeClaimTemplate\":{\"spec\":{"    \
	"\"storageClassName\":\"fast\"}}}},{\"name\":\"c\",\"emptyDir\":{}}]}"

static const struct {
	const char *kind;
	const char *body; /* JSON members after kind; %s is the pod spec */
	const char *spec; /* pointer to the pod spec */
} workloads[] = {
	{ "Pod", "\"spec\":%s", "/spec" },
	{ "PodTemplate", "\"template\":{\"spec\":%s}", "/template/spec" },
	{ "Deployment", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "ReplicaSet", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "StatefulSet", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "DaemonSet", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "Job", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "ReplicationController", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
	{ "CronJob", "\"spec\":{\"jobTemplate\":{\"spec\":{\"template\":{\"spec\":%s}}}}",
	  "/spec/jobTemplate/spec/template/spec" },
	{ "Rollout", "\"spec\":{\"template\":{\"spec\":%s}}", "/spec/template/spec" },
};

static void test_workload_kinds(void **state)
{
	struct st_remap *m = workload_rules();

	(void)state;
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		char body[2048];
		char text[4096];
		char ptr[256];
		struct json_object *o;
		unsigned changes = 99;

		const char *hole = strstr(workloads[i].body, "%s");

		assert_non_null(hole);
		(void)snprintf(body, sizeof(body), "%.*s%s%s", (int)(hole - workloads[i].body),
		               workloads[i].body, POD_SPEC, hole + 2);
		(void)snprintf(
		        text, sizeof(text),
		        "{\"apiVersion\":\"v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"w\","
		        "\"namespace\":\"prod\"},%s}",
		        workloads[i].kind, body);
		o = parse(text);
		assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
		/* 3 images (pause is on registry.k8s.io), 1 claim template, 1 namespace. */
		if (changes != 5)
			fail_msg("%s: %u changes, expected 5", workloads[i].kind, changes);
		assert_string_equal(str_at(o, "/metadata/namespace"), "restored");
		(void)snprintf(ptr, sizeof(ptr), "%s/initContainers/0/image", workloads[i].spec);
		assert_string_equal(str_at(o, ptr), "mirror.local/library/busybox");
		(void)snprintf(ptr, sizeof(ptr), "%s/containers/0/image", workloads[i].spec);
		assert_string_equal(str_at(o, ptr), "quay.local/team/app:1");
		(void)snprintf(ptr, sizeof(ptr), "%s/containers/1/image", workloads[i].spec);
		assert_string_equal(str_at(o, ptr), "registry.k8s.io/pause:3.9");
		(void)snprintf(ptr, sizeof(ptr), "%s/ephemeralContainers/0/image",
		               workloads[i].spec);
		assert_string_equal(str_at(o, ptr), "mirror.local/library/alpine@" DIGEST);
		(void)snprintf(ptr, sizeof(ptr),
		               "%s/volumes/0/ephemeral/volumeClaimTemplate/spec/storageClassName",
		               workloads[i].spec);
		assert_string_equal(str_at(o, ptr), "standard");
		/* A second pass finds nothing left to do for images and classes. */
		assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
		assert_int_equal(changes, 0);
		json_object_put(o);
	}
	st_remap_free(m);
}

static void test_storage_classes(void **state)
{
	struct st_remap *m = workload_rules();
	struct json_object *o;
	unsigned changes = 0;

	(void)state;
	o = parse("{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{"
	          "\"name\":\"d\",\"namespace\":\"other\",\"annotations\":{"
	          "\"volume.beta.kubernetes.io/storage-class\":\"fast\"}},\"spec\":{"
	          "\"storageClassName\":\"fast\",\"resources\":{\"requests\":{\"storage\":"
	          "\"1Gi\"}}}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 2);
	assert_string_equal(str_at(o, "/spec/storageClassName"), "standard");
	assert_string_equal(
	        str_at(o, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class"),
	        "standard");
	assert_string_equal(str_at(o, "/metadata/namespace"), "other");
	json_object_put(o);

	/* An unmapped class and a claim without one are left alone. */
	o = parse("{\"kind\":\"PersistentVolumeClaim\",\"metadata\":{\"name\":\"d\"},\"spec\":{"
	          "\"storageClassName\":\"slow\"}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 0);
	assert_string_equal(str_at(o, "/spec/storageClassName"), "slow");
	json_object_put(o);
	o = parse("{\"kind\":\"PersistentVolumeClaim\",\"spec\":{}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 0);
	json_object_put(o);

	o = parse("{\"kind\":\"PersistentVolume\",\"metadata\":{\"name\":\"pv1\"},\"spec\":{"
	          "\"storageClassName\":\"fast\",\"claimRef\":{\"namespace\":\"prod\","
	          "\"name\":\"d\"}}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 2);
	assert_string_equal(str_at(o, "/spec/storageClassName"), "standard");
	assert_string_equal(str_at(o, "/spec/claimRef/namespace"), "restored");
	json_object_put(o);

	o = parse("{\"kind\":\"StatefulSet\",\"spec\":{\"volumeClaimTemplates\":["
	          "{\"metadata\":{\"name\":\"a\"},\"spec\":{\"storageClassName\":\"fast\"}},"
	          "{\"metadata\":{\"name\":\"b\",\"annotations\":{"
	          "\"volume.beta.kubernetes.io/storage-class\":\"fast\"}},\"spec\":{}},"
	          "{\"metadata\":{\"name\":\"c\"},\"spec\":{\"storageClassName\":\"slow\"}}]}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 2);
	assert_string_equal(str_at(o, "/spec/volumeClaimTemplates/0/spec/storageClassName"),
	                    "standard");
	assert_string_equal(str_at(o, "/spec/volumeClaimTemplates/1/metadata/annotations/"
	                              "volume.beta.kubernetes.io~1storage-class"),
	                    "standard");
	assert_string_equal(str_at(o, "/spec/volumeClaimTemplates/2/spec/storageClassName"),
	                    "slow");
	json_object_put(o);

	/* Claim templates are a StatefulSet field; a StorageClass object keeps its name. */
	o = parse("{\"kind\":\"StorageClass\",\"metadata\":{\"name\":\"fast\"},"
	          "\"provisioner\":\"x\"}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 0);
	assert_string_equal(str_at(o, "/metadata/name"), "fast");
	json_object_put(o);
	st_remap_free(m);
}

static void test_namespaces(void **state)
{
	struct st_remap *m = workload_rules();
	struct json_object *o;
	unsigned changes = 0;
	struct st_err err = ST_ERR_INIT;

	(void)state;
	o = parse(
	        "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"prod\"}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 1);
	assert_string_equal(str_at(o, "/metadata/name"), "restored");
	json_object_put(o);

	/* Only a Namespace is renamed; other objects named like a namespace keep their name. */
	o = parse(
	        "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"prod\",\"namespace\":\"prod\"}}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 1);
	assert_string_equal(str_at(o, "/metadata/name"), "prod");
	assert_string_equal(str_at(o, "/metadata/namespace"), "restored");
	json_object_put(o);

	o = parse("{\"kind\":\"RoleBinding\",\"metadata\":{\"name\":\"rb\",\"namespace\":\"prod\"},"
	          "\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"a\",\"namespace\":"
	          "\"prod\"},{\"kind\":\"User\",\"name\":\"u\",\"namespace\":\"prod\"},"
	          "{\"kind\":\"ServiceAccount\",\"name\":\"b\",\"namespace\":\"kube-system\"}]}");
	assert_int_equal(st_remap_object(m, o, &changes, NULL), 0);
	assert_int_equal(changes, 2);
	assert_string_equal(str_at(o, "/subjects/0/namespace"), "restored");
	assert_string_equal(str_at(o, "/subjects/1/namespace"), "prod");
	assert_string_equal(str_at(o, "/subjects/2/namespace"), "kube-system");
	json_object_put(o);

	/* Not an object; no rules at all. */
	o = parse("[1,2]");
	assert_int_equal(st_remap_object(m, o, &changes, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "not a JSON object"));
	assert_int_equal(st_remap_object(m, NULL, NULL, NULL), ST_EINVAL);
	json_object_put(o);
	o = parse("{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"prod\"}}");
	assert_int_equal(st_remap_object(NULL, o, &changes, NULL), 0);
	assert_int_equal(changes, 0);
	json_object_put(o);
	st_remap_free(m);
}

/* ---- Velero ConfigMaps ------------------------------------------------- */

static struct json_object *yaml(const char *text)
{
	struct json_object *o = NULL;
	struct st_err err = ST_ERR_INIT;

	if (st_yaml_parse_one(&o, text, strlen(text), "test yaml", &err) < 0)
		fail_msg("%s", st_err_text(&err));
	return o;
}

/* The two examples of Velero's restore reference, as written there. */
static const char velero_sc[] = "apiVersion: v1\n"
                                "kind: ConfigMap\n"
                                "metadata:\n"
                                "  name: change-storage-class-config\n"
                                "  namespace: velero\n"
                                "  labels:\n"
                                "    velero.io/plugin-config: \"\"\n"
                                "    velero.io/change-storage-class: RestoreItemAction\n"
                                "data:\n"
                                "  fast: standard-rwo\n"
                                "  gp2: gp3\n";

static const char velero_img[] = "apiVersion: v1\n"
                                 "kind: ConfigMap\n"
                                 "metadata:\n"
                                 "  name: change-image-name-config\n"
                                 "  namespace: velero\n"
                                 "  labels:\n"
                                 "    velero.io/plugin-config: \"\"\n"
                                 "    velero.io/change-image-name: RestoreItemAction\n"
                                 "data:\n"
                                 "  \"case1\": \"1.1.1.1:5000,2.2.2.2:3000\"\n"
                                 "  \"case4\": \"quay.io/abc:test, quay.io/edf:test\"\n"
                                 "  \"case5\": \"dev/,test/\"\n";

static void expect_cm_error(const char *text, const char *needle)
{
	struct st_remap *m = new_remap();
	struct json_object *cm = yaml(text);
	struct st_err err = ST_ERR_INIT;

	assert_int_equal(st_remap_add(m, ST_REMAP_IMAGE_REGISTRY, "keep.io", "kept.io", NULL), 0);
	assert_int_equal(st_remap_add_velero_configmap(m, cm, &err), ST_EINVAL);
	if (strstr(err.msg, needle) == NULL)
		fail_msg("\"%s\" lacks \"%s\"", err.msg, needle);
	assert_int_equal(st_remap_count(m, ST_REMAP_IMAGE_REGISTRY), 1);
	assert_int_equal(st_remap_count(m, ST_REMAP_STORAGE_CLASS), 0);
	json_object_put(cm);
	st_remap_free(m);
}

static void test_velero_configmaps(void **state)
{
	struct st_remap *m = new_remap();
	struct json_object *cm;
	struct st_err err = ST_ERR_INIT;
	char *img;

	(void)state;
	cm = yaml(velero_sc);
	assert_int_equal(st_remap_add_velero_configmap(m, cm, &err), 1);
	assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "fast"), "standard-rwo");
	assert_string_equal(st_remap_lookup(m, ST_REMAP_STORAGE_CLASS, "gp2"), "gp3");
	/* The same ConfigMap twice duplicates every rule. */
	assert_int_equal(st_remap_add_velero_configmap(m, cm, &err), ST_EINVAL);
	assert_non_null(strstr(err.msg, "ConfigMap change-storage-class-config"));
	assert_non_null(strstr(err.msg, "mapped twice"));
	assert_int_equal(st_remap_count(m, ST_REMAP_STORAGE_CLASS), 2);
	json_object_put(cm);

	cm = yaml(velero_img);
	assert_int_equal(st_remap_add_velero_configmap(m, cm, NULL), 1);
	assert_int_equal(st_remap_count(m, ST_REMAP_IMAGE_REGISTRY), 3);
	json_object_put(cm);
	img = st_remap_image(m, "1.1.1.1:5000/abc:test");
	assert_string_equal(img, "2.2.2.2:3000/abc:test");
	free(img);
	img = st_remap_image(m, "quay.io/abc:test");
	assert_string_equal(img, "quay.io/edf:test");
	free(img);
	img = st_remap_image(m, "dev/image2:dev");
	assert_string_equal(img, "test/image2:dev");
	free(img);
	assert_null(st_remap_image(m, "quay.io/abc:test2"));
	st_remap_free(m);

	/* Not one of Velero's: another label value, no label, another kind. */
	m = new_remap();
	cm = yaml("kind: ConfigMap\nmetadata:\n  labels:\n    velero.io/change-storage-class: "
	          "BackupItemAction\ndata: {a: b}\n");
	assert_int_equal(st_remap_add_velero_configmap(m, cm, NULL), 0);
	json_object_put(cm);
	cm = yaml("kind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n");
	assert_int_equal(st_remap_add_velero_configmap(m, cm, NULL), 0);
	json_object_put(cm);
	cm = yaml("kind: Secret\nmetadata:\n  labels:\n    velero.io/change-storage-class: "
	          "RestoreItemAction\ndata: {a: b}\n");
	assert_int_equal(st_remap_add_velero_configmap(m, cm, NULL), 0);
	json_object_put(cm);
	/* One without data is one, with no rules. */
	cm = yaml("kind: ConfigMap\nmetadata:\n  labels:\n    velero.io/change-image-name: "
	          "RestoreItemAction\n");
	assert_int_equal(st_remap_add_velero_configmap(m, cm, NULL), 1);
	json_object_put(cm);
	assert_int_equal(st_remap_count(m, ST_REMAP_STORAGE_CLASS), 0);
	assert_int_equal(st_remap_count(m, ST_REMAP_IMAGE_REGISTRY), 0);
	st_remap_free(m);

	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: both\n  labels:\n"
	                "    velero.io/change-image-name: RestoreItemAction\n"
	                "    velero.io/change-storage-class: RestoreItemAction\n",
	                "has both labels");
	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: img\n  labels:\n"
	                "    velero.io/change-image-name: RestoreItemAction\n"
	                "data:\n  a: \"x.io,y.io\"\n  b: \"no-delimiter\"\n",
	                "ConfigMap img: data.b must be \"<old>,<new>\"");
	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: img\n  labels:\n"
	                "    velero.io/change-image-name: RestoreItemAction\n"
	                "data:\n  a: \"x.io,\"\n",
	                "ConfigMap img: data.a: image registry mapping \"x.io\" -> \"\"");
	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: img\n  labels:\n"
	                "    velero.io/change-image-name: RestoreItemAction\n"
	                "data:\n  a: \"keep.io,x.io\"\n",
	                "mapped twice");
	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: sc\n  labels:\n"
	                "    velero.io/change-storage-class: RestoreItemAction\n"
	                "data:\n  fast: Standard\n",
	                "ConfigMap sc: storage class mapping \"fast\" -> \"Standard\"");
	expect_cm_error("kind: ConfigMap\nmetadata:\n  name: sc\n  labels:\n"
	                "    velero.io/change-storage-class: RestoreItemAction\n"
	                "data: [a]\n",
	                "data must be a map");
	{
		struct json_object *arr = parse("[]");

		m = new_remap();
		assert_int_equal(st_remap_add_velero_configmap(m, arr, NULL), ST_EINVAL);
		st_remap_free(m);
		json_object_put(arr);
	}
}

/* ---- real manifests ---------------------------------------------------- */

static char *read_file(const char *path, size_t *len_out)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		(void)fclose(f);
		return NULL;
	}
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	(void)fclose(f);
	if (buf != NULL)
		buf[n] = '\0';
	*len_out = (size_t)n;
	return buf;
}

static struct json_object *load_manifest(const char *rel)
{
	const char *shared = getenv("STASIS_SHARED");
	char path[4096];
	struct json_object *docs = NULL;
	struct st_err err = ST_ERR_INIT;
	size_t len = 0;
	char *text;

	(void)snprintf(path, sizeof(path), "%s/conformance/manifests/%s",
	               shared != NULL && shared[0] != '\0' ? shared : "../shared", rel);
	text = read_file(path, &len);
	if (text == NULL)
		fail_msg("cannot read %s (set STASIS_SHARED or run from the repo root)", path);
	if (st_yaml_parse_all(&docs, text, len, path, &err) < 0)
		fail_msg("%s", st_err_text(&err));
	free(text);
	return docs;
}

static const struct {
	const char *file;
	unsigned changes;         /* over every document of the file */
	const char *checks[6][2]; /* "doc-index pointer", expected value */
} manifests[] = {
	{ "k8s-examples-cassandra/cassandra-statefulset.yaml",
	  2,
	  { { "0 /spec/template/spec/containers/0/image", "samples.local/cassandra:v14" },
	    { "0 /spec/volumeClaimTemplates/0/metadata/annotations/"
	      "volume.beta.kubernetes.io~1storage-class",
	      "standard-rwo" },
	    { "1 /metadata/name", "fast" } } },
	{ "k8s-website-mysql-replicated/mysql-statefulset.yaml",
	  4,
	  { { "0 /spec/template/spec/initContainers/0/image", "mirror.local/library/mysql:5.7" },
	    { "0 /spec/template/spec/initContainers/1/image", "samples.local/xtrabackup:1.0" },
	    { "0 /spec/template/spec/containers/0/image", "mirror.local/library/mysql:5.7" },
	    { "0 /spec/template/spec/containers/1/image", "samples.local/xtrabackup:1.0" } } },
	{ "k8s-website-wordpress-mysql/mysql-deployment.yaml",
	  1,
	  { { "2 /spec/template/spec/containers/0/image", "mirror.local/library/mysql:8.0" } } },
	{ "mongo-k8s-sidecar-mongodb/mongo-statefulset.yaml",
	  3,
	  { { "1 /spec/template/spec/containers/0/image", "mirror.local/library/mongo:3.4" },
	    { "1 /spec/template/spec/containers/1/image",
	      "mirror.local/cvallance/mongo-k8s-sidecar" },
	    { "1 /spec/volumeClaimTemplates/0/metadata/annotations/"
	      "volume.beta.kubernetes.io~1storage-class",
	      "standard-rwo" } } },
	{ "ocs-ci-postgres/StatefulSet.yaml",
	  2,
	  { { "0 /spec/template/spec/containers/0/image", "quay.local/ocsci/postgres:10.4" },
	    { "0 /spec/volumeClaimTemplates/0/spec/storageClassName", "rbd" } } },
	{ "velero-nginx-app/with-pv.yaml",
	  6, /* Namespace, the namespaces of the PVC, Deployment and Service, 2 images */
	  { { "0 /metadata/name", "nginx-restored" },
	    { "1 /metadata/namespace", "nginx-restored" },
	    { "3 /metadata/namespace", "nginx-restored" },
	    { "2 /spec/template/spec/containers/0/image", "mirror.local/library/nginx:1.17.6" },
	    { "2 /spec/template/spec/containers/1/image",
	      "mirror.local/library/ubuntu:bionic" } } },
};

static void test_real_manifests(void **state)
{
	struct st_remap *m = new_remap();

	(void)state;
	add_pairs_ok(m, ST_REMAP_IMAGE_REGISTRY,
	             "docker.io=mirror.local,gcr.io/google-samples=samples.local,"
	             "quay.io=quay.local");
	add_pairs_ok(m, ST_REMAP_STORAGE_CLASS,
	             "fast:standard-rwo,ocs-storagecluster-ceph-rbd:rbd");
	add_pairs_ok(m, ST_REMAP_NAMESPACE, "nginx-example:nginx-restored");
	for (size_t i = 0; i < sizeof(manifests) / sizeof(manifests[0]); i++) {
		struct json_object *docs = load_manifest(manifests[i].file);
		size_t n = json_object_array_length(docs);
		unsigned total = 0;

		for (size_t d = 0; d < n; d++) {
			unsigned c = 0;

			assert_int_equal(
			        st_remap_object(m, json_object_array_get_idx(docs, d), &c, NULL),
			        0);
			total += c;
		}
		if (total != manifests[i].changes)
			fail_msg("%s: %u changes, expected %u", manifests[i].file, total,
			         manifests[i].changes);
		for (size_t k = 0; k < 6 && manifests[i].checks[k][0] != NULL; k++) {
			char *end = NULL;
			long d = strtol(manifests[i].checks[k][0], &end, 10);
			const char *got =
			        str_at(json_object_array_get_idx(docs, (size_t)d), end + 1);

			if (strcmp(got, manifests[i].checks[k][1]) != 0)
				fail_msg("%s: %s is %s, expected %s", manifests[i].file,
				         manifests[i].checks[k][0], got, manifests[i].checks[k][1]);
		}
		json_object_put(docs);
	}
	st_remap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_errors),
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_rule_cap),
		cmocka_unit_test(test_images),
		cmocka_unit_test(test_workload_kinds),
		cmocka_unit_test(test_storage_classes),
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_velero_configmaps),
		cmocka_unit_test(test_real_manifests),
	};

	return cmocka_run_group_tests_name("remap", tests, NULL, NULL);
}
