#!/usr/bin/env bash
# Fails on calls the house style bans; suggests the replacement.
set -euo pipefail
cd "$(dirname "$0")/.."
banned='\b(strcpy|strcat|sprintf|vsprintf|strtok|gets|atoi|atol|strncpy)\s*\('
if grep -nE "$banned" pkg/*.c pkg/*/*.c webhook/*.c cmd/*/*.c 2>/dev/null | grep -vE '(snprintf|vsnprintf)\s*\(' ; then
	echo "checksrc: banned call found; use snprintf, st_buf or strtol with an end check" >&2
	exit 1
fi
echo "checksrc: clean"
