/* Fuzz target: a webhook configuration file (YAML) through the loader. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "pkg/config.h"
#include "pkg/util/buf.h"
#include "pkg/util/caps.h"
#include "pkg/util/json.h"
#include "pkg/yaml.h"
#include "webhook/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const handled[] = { "rules", NULL };
	struct st_webhook_config cfg;
	struct json_object *root = NULL;
	struct st_buf b = ST_BUF_INIT(1u << 20);

	st_webhook_config_init(&cfg);
	if (st_yaml_parse_one(&root, (const char *)data, size, "fuzz", NULL) == 0) {
		if (st_config_apply_tree(&cfg, st_webhook_config_table, st_webhook_config_table_len,
		                         root, handled, "fuzz", NULL) == 0 &&
		    st_webhook_config_rules(&cfg, st_json_get(root, "rules"), "fuzz", NULL) == 0 &&
		    st_webhook_config_validate(&cfg, NULL) == 0)
			(void)!st_config_print(&b, &cfg, st_webhook_config_table,
			                       st_webhook_config_table_len);
		st_buf_clear(&b);
		if (st_yaml_emit(&b, root) == 0) {
			struct json_object *again = NULL;

			/* What we emit must parse back to an equal tree. */
			if (st_yaml_parse_one(&again, st_buf_cstr(&b), b.len, "emit", NULL) != 0 ||
			    !json_object_equal(root, again))
				__builtin_trap();
			json_object_put(again);
		}
	}
	json_object_put(root);
	st_buf_dispose(&b);
	st_webhook_config_dispose(&cfg);
	return 0;
}
