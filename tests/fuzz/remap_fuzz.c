/*
 * Fuzz target: remapping rules and an object. The input is three lines of
 * pairs text (image registries, storage classes, namespaces) and then a JSON
 * document, which is remapped, read as a Velero ConfigMap, and whose first
 * line is also mapped as an image reference.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkg/remap.h"
#include "pkg/util/json.h"
#include "pkg/util/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Cuts the next line off *p (NUL bytes end a line too); returns it as heap text. */
static char *next_line(const char **p, size_t *left)
{
	size_t n = 0;
	char *line;

	while (n < *left && (*p)[n] != '\n' && (*p)[n] != '\0')
		n++;
	line = st_xstrndup(*p, n);
	if (n < *left)
		n++;
	*p += n;
	*left -= n;
	return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum st_remap_kind kinds[] = { ST_REMAP_IMAGE_REGISTRY, ST_REMAP_STORAGE_CLASS,
		                                    ST_REMAP_NAMESPACE };
	const char *p = (const char *)data;
	size_t left = size;
	struct st_remap *m = NULL;
	struct json_object *obj = NULL;
	char *first = NULL;
	unsigned changes = 0;

	if (st_remap_new(&m, NULL) < 0)
		return 0;
	for (size_t k = 0; k < 3; k++) {
		char *line = next_line(&p, &left);
		size_t before = st_remap_count(m, kinds[k]);

		if (k == 0)
			first = st_xstrdup(line);
		/* All or nothing: a failed text leaves the count where it was. */
		if (st_remap_add_pairs(m, kinds[k], line, NULL) < 0 &&
		    st_remap_count(m, kinds[k]) != before)
			__builtin_trap();
		free(line);
	}
	if (st_json_parse(&obj, p, left, 1u << 20, "fuzz", NULL) == 0 &&
	    json_object_is_type(obj, json_type_object)) {
		(void)!st_remap_add_velero_configmap(m, obj, NULL);
		if (st_remap_object(m, obj, &changes, NULL) != 0)
			__builtin_trap();
	}
	{
		char *img = st_remap_image(m, first);

		/* A mapped image is never returned unchanged. */
		if (img != NULL && strcmp(img, first) == 0)
			__builtin_trap();
		free(img);
	}
	free(first);
	json_object_put(obj);
	st_remap_free(m);
	return 0;
}
