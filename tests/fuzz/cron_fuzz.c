/*
 * Fuzz target: cron expressions through the parser. Whatever parses must
 * give next times that move forward and land on a whole minute, and the
 * catch-up plan must never run ahead of now.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pkg/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[ST_CRON_MAX_LEN + 2];
	struct st_cron c;
	struct st_cron_plan p;
	struct st_err err = ST_ERR_INIT;
	time_t t = 1767225600; /* 2026-01-01T00:00:00Z */
	time_t now;

	if (size > ST_CRON_MAX_LEN + 1)
		size = ST_CRON_MAX_LEN + 1;
	memcpy(text, data, size);
	text[size] = '\0';
	if (st_cron_parse(&c, text, &err) != 0) {
		if (err.code != ST_EINVAL || err.msg[0] == '\0')
			__builtin_trap();
		return 0;
	}
	for (int i = 0; i < 8; i++) {
		time_t n = 0;

		if (st_cron_next(&n, &c, t) != 0 || n <= t || (c.every == 0 && n % 60 != 0))
			__builtin_trap();
		t = n;
	}
	now = t + 86400 * 40 + 17;
	if (st_cron_plan(&p, &c, 1767225600, now) != 0 || p.next <= now ||
	    (p.run_now && (p.run_at > now || p.run_at <= 1767225600)))
		__builtin_trap();
	return 0;
}
