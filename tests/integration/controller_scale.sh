#!/usr/bin/env bash
# `stasis server` backing up a namespace of 1,000 objects of mixed kinds on
# the API stand-in (file:// location): the backup completes, the tarball
# holds every object (checked against the API entry by entry), and the API
# requests are what the design promises: one list per resource type plus
# pagination (600 ConfigMaps at 500 per page = 2 lists), counted by the
# stand-in. Then SIGTERM in the middle of a slow backup: the backup ends
# Failed with the reason, the Lease is released, the exit status is 0.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require

ctl_workdir st-ctlscale

start_standin
store=$work/store
file_bsl default "$store" true
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: thousand}\n' | k create -f - >/dev/null
gen_objects thousand 1000 "$work/objects.json"
post_objects "$work/objects.json" || fail "creating 1000 objects"
[ "$(k -n thousand get configmaps -o name | wc -l)" = 600 ] || fail "600 configmaps not created"

start_server "$work/server.log" --bsl-sync-period 1h
wait_phase bsl default Available 20 >/dev/null || fail "location not Available"
# Discovery is fetched before the counters are reset in neither case: count only lists.
reset_requests
make_backup big '{"includedNamespaces":["thousand"],"storageLocation":"default"}'
wait_phase backup big Completed 120 >/dev/null || fail "big: $(jp backup big .status.phase)"
list_requests >"$work/lists"
[ "$(jp backup big .status.progress.itemsBackedUp)" = 1001 ] ||
	fail "itemsBackedUp $(jp backup big .status.progress.itemsBackedUp), want 1001"
$PY "$STASIS_ROOT/tests/integration/controller_check.py" "$url" "$store" big \
	--must configmaps/thousand/configmap-0599 --must deployments.apps/thousand/deployment-0039 \
	--must secrets/thousand/secret-0199 --must namespaces/thousand || fail "big content"
# Every type is listed at most once, except ConfigMaps (two pages) and the pods
# and claims the volume phase lists again to find what to freeze and cut;
# stasis's own types are the controller's bookkeeping, not the backup's.
awk '
	$1 ~ /stasis.io/ || $1 == "backupstoragelocations" || $1 == "backups" { next }
	$1 == "configmaps" { if ($2 != 2) bad = bad " configmaps=" $2; next }
	$1 == "pods" || $1 == "persistentvolumeclaims" { if ($2 > 2) bad = bad " " $1 "=" $2; types++; total += $2; next }
	$2 > 1 { bad = bad " " $1 "=" $2 }
	{ types++; total += $2 }
	END { if (bad != "") { print "too many lists:" bad; exit 1 } print types " types, " total " list requests" }
' "$work/lists" || fail "list requests: $(tr '\n' ' ' <"$work/lists")"
ms=$(sed -n 's/.*backup stasis\/big: backup Completed in \([0-9]*\) ms.*/\1/p' "$work/server.log")
echo "1001 objects backed up in $ms ms (engine time), lists: $(grep -c . "$work/lists") types"

# --- SIGTERM mid-backup -------------------------------------------------------------------
stop_pid "$server" 10
wait "$server" 2>/dev/null || true
start_server "$work/server2.log" --client-qps 2 --client-burst 1 --bsl-sync-period 1h
make_backup stopped '{"includedNamespaces":["thousand"],"storageLocation":"default"}'
wait_phase backup stopped InProgress 60 >/dev/null || fail "stopped: never InProgress"
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
server=
[ $rc = 0 ] || fail "exit status $rc after SIGTERM"
[ "$(jp backup stopped .status.phase)" = Failed ] || fail "stopped: phase $(jp backup stopped .status.phase)"
jp backup stopped .status.failureReason | grep -q "controller stopped" ||
	fail "stopped: reason $(jp backup stopped .status.failureReason)"
[ -z "$(k -n stasis get lease stasis-controller -o 'jsonpath={.spec.holderIdentity}')" ] ||
	fail "lease not released"
[ ! -e "$store/backups/stopped/stopped.tar.gz" ] || fail "a stopped backup left a tarball"
echo "controller_scale: ok"
