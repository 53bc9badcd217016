#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of stasis from Debian's
# packages. Idempotent: packages already present are not reinstalled, and the
# package lists are refreshed only when something is missing.
set -euo pipefail

build_pkgs=(
	build-essential pkg-config clang libclang-rt-14-dev clang-format clang-tidy cppcheck
	libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev libjson-c-dev libyaml-dev
	libssl-dev libzstd-dev zlib1g-dev libcmocka-dev
)
test_pkgs=(
	curl python3-jsonpatch python3-yaml xfsprogs btrfs-progs e2fsprogs util-linux
	postgresql-15 postgresql-contrib kubectl openssl jq attr
	ceph-mon ceph-osd radosgw ceph-common
)
bench_pkgs=(wrk hyperfine golang-1.19-go restic time)

want=("${build_pkgs[@]}" "${test_pkgs[@]}")
if [ "${STASIS_BENCH_DEPS:-0}" = 1 ]; then
	want+=("${bench_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
	# kubectl comes with the machine image, not from Debian: accept any kubectl on PATH.
	if [ "$p" = kubectl ]; then
		command -v kubectl >/dev/null 2>&1 || echo "install-deps: kubectl not found on PATH; integration tests that need it will say so" >&2
		continue
	fi
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
