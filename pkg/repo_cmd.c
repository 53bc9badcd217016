#include "pkg/repo_cmd.h"

#include <stdio.h>

int st_repo_cmd_main(int argc, char **argv)
{
	(void)argc;
	fprintf(stderr, "%s: not available in this build\n", argc > 0 ? argv[0] : "repo");
	return 1;
}
