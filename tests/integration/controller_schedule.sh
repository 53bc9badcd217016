#!/usr/bin/env bash
# Schedules and retention: `stasis server` on the Kubernetes API stand-in
# with a file:// storage location, Schedules made with `stasis schedule`.
# Checks: a schedule "@every 2s" makes Backups named <schedule>-<UTC slot>
# with the schedule labels and the template's spec, which complete; the CLI's
# get (table and JSON) and describe; pause stops the backups and unpause
# starts them again; a bad cron expression and a bad ttl give
# FailedValidation with both messages; a backup with --ttl 3s is deleted with
# its objects from the location once expired; the controller stopped for
# three slots and started again makes one catch-up backup, for the latest
# missed slot, then follows the schedule; schedule delete keeps the backups.
set -euo pipefail
STASIS_ROOT=${STASIS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/controller_common.inc"

ctl_require

ctl_workdir st-sched

# st ARGS...: the stasis CLI against the stand-in.
st() {
	"$STASIS" "$@" --kubeconfig "$work/kubeconfig"
}

# slots SCHEDULE: the scheduled times (Unix seconds) of its Backups, one per line, sorted.
slots() {
	k -n stasis get backups -l "stasis.io/schedule-name=$1" -o json | $PY -c '
import json, sys, datetime
for b in json.load(sys.stdin)["items"]:
    t = b["metadata"]["annotations"]["stasis.io/scheduled-time"]
    print(int(datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()))
' | sort -n
}

count() {
	slots "$1" | wc -l
}

# wait_count SCHEDULE N SECONDS: waits until the schedule has made at least N backups.
wait_count() {
	local i=0
	while [ $i -lt $(($3 * 10)) ]; do
		[ "$(count "$1")" -ge "$2" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	fail "schedule $1 made $(count "$1") backups in $3 s, want $2"
}

sleep_until() {
	$PY -c 'import sys, time; time.sleep(max(0.0, float(sys.argv[1]) - time.time()))' "$1"
}

start_standin
store=$work/store
file_bsl default "$store" true
k create -f - >/dev/null <<'EOF' || fail "scenario objects"
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nginx-index, namespace: test, labels: {app: nginx}}
data: {index.html: "hello world 001"}
EOF

start_server "$work/server.log" --bsl-sync-period 2s --gc-period 1s
[ "$(wait_phase bsl default Available 20)" = Available ] || fail "default location not Available"

# --- a schedule makes backups --------------------------------------------------------------
out=$(st schedule create every2 --schedule "@every 2s" --include-namespaces test --ttl 1h \
	--labels team=db) || fail "schedule create: $out"
[ "$out" = 'Schedule "every2" created successfully.' ] || fail "schedule create said: $out"
wait_phase schedule every2 Enabled 20 >/dev/null || fail "every2 not Enabled"
wait_count every2 3 30
first=$(k -n stasis get backups -l stasis.io/schedule-name=every2 -o name | sort | head -1)
first=${first#*/}
[[ $first =~ ^every2-[0-9]{14}$ ]] || fail "backup name $first is not every2-YYYYMMDDhhmmss"
wait_phase backup "$first" Completed 30 >/dev/null || fail "$first not Completed"
[ "$(jp backup "$first" '.metadata.labels.velero\.io/schedule-name')" = every2 ] ||
	fail "$first lacks the velero.io/schedule-name label"
[ "$(jp backup "$first" '.metadata.labels.team')" = db ] || fail "$first lacks the schedule's labels"
[ "$(jp backup "$first" .spec.ttl)" = 1h0m0s ] || fail "$first ttl $(jp backup "$first" .spec.ttl)"
[ "$(jp backup "$first" '.spec.includedNamespaces[0]')" = test ] || fail "$first scope"
stamp=${first#every2-}
[ "$(jp backup "$first" '.metadata.annotations.stasis\.io/scheduled-time')" = \
	"$(date -u -d "${stamp:0:8} ${stamp:8:2}:${stamp:10:2}:${stamp:12:2}" +%Y-%m-%dT%H:%M:%SZ)" ] ||
	fail "$first: name and scheduled-time annotation disagree"
grep -q "resources/configmaps/namespaces/test/nginx-index.json" < <(tar -tzf "$store/backups/$first/$first.tar.gz") ||
	fail "$first tarball lacks the ConfigMap"
# Slots are two seconds apart, never the same twice.
slots every2 | $PY -c '
import sys
s = [int(x) for x in sys.stdin]
assert len(s) == len(set(s)), s
assert all((b - a) % 2 == 0 and b > a for a, b in zip(s, s[1:])), s' || fail "slots of every2: $(slots every2 | tr '\n' ' ')"
[ -n "$(jp schedule every2 .status.lastBackup)" ] || fail "lastBackup not set"
echo "schedule makes backups: ok"

# --- CLI output --------------------------------------------------------------------------------
st schedule get >"$work/get.txt" || fail "schedule get"
head -1 "$work/get.txt" | grep -Eq '^NAME +STATUS +CREATED +SCHEDULE +BACKUP TTL +LAST BACKUP +SELECTOR +PAUSED$' ||
	fail "schedule get header: $(head -1 "$work/get.txt")"
grep -Eq '^every2 +Enabled +[0-9-]+ [0-9:]+ \+0000 UTC +@every 2s +1h0m0s +[0-9]+s( ago)? +<none> +false$' "$work/get.txt" ||
	fail "schedule get row: $(cat "$work/get.txt")"
st schedule get every2 -o json | $PY -c '
import json, sys
s = json.load(sys.stdin)
assert s["kind"] == "Schedule" and s["spec"]["schedule"] == "@every 2s", s
assert s["spec"]["template"]["ttl"] == "1h0m0s" and s["status"]["phase"] == "Enabled", s' ||
	fail "schedule get -o json"
st schedule describe every2 >"$work/describe.txt" || fail "schedule describe"
for want in 'Name: +every2' 'Labels: +team=db' 'Phase: +Enabled' 'Paused: +false' \
	'Schedule: +@every 2s' '  Namespaces:' '    Included: +test' '  TTL: +1h0m0s' 'Last Backup: +[0-9]{4}-'; do
	grep -Eq "^$want" "$work/describe.txt" || fail "describe lacks '$want': $(cat "$work/describe.txt")"
done
if st schedule describe missing >/dev/null 2>"$work/err.txt"; then fail "describe of a missing schedule succeeded"; fi
grep -q "schedule missing not found in namespace stasis" "$work/err.txt" ||
	fail "describe missing: $(cat "$work/err.txt")"
if st schedule create bad --schedule "0 25 * * *" 2>"$work/err.txt"; then fail "bad cron accepted by the CLI"; fi
grep -q 'hour: "25" is out of range 0-23' "$work/err.txt" || fail "CLI cron message: $(cat "$work/err.txt")"
echo "CLI: ok"

# --- pause and unpause ---------------------------------------------------------------------------
[ "$(st schedule pause every2)" = 'Schedule "every2" paused.' ] || fail "pause output"
[ "$(jp schedule every2 .spec.paused)" = true ] || fail "spec.paused not set"
sleep 1 # a slot being served while the pause arrived
n=$(count every2)
sleep 5
[ "$(count every2)" -eq "$n" ] || fail "paused schedule made backups ($n -> $(count every2))"
st schedule get every2 | grep -Eq ' true$' || fail "get does not show paused"
[ "$(st schedule unpause every2)" = 'Schedule "every2" unpaused.' ] || fail "unpause output"
wait_count every2 $((n + 2)) 20
# Paused for about six seconds (three slots): the first backup after unpausing
# stands for the latest of them only.
slots every2 | tail -n +$n | head -2 | $PY -c '
import sys
s = [int(x) for x in sys.stdin]
assert s[1] - s[0] >= 6, s' || fail "unpause did not skip the paused slots: $(slots every2 | tr '\n' ' ')"
echo "pause: ok"

# --- validation ----------------------------------------------------------------------------------
k create -f - >/dev/null <<'EOF' || fail "create bad schedule"
apiVersion: stasis.io/v1alpha1
kind: Schedule
metadata: {name: bad, namespace: stasis}
spec: {schedule: "0 25 * * *", template: {ttl: forever}}
EOF
wait_phase schedule bad FailedValidation 20 >/dev/null || fail "bad schedule not FailedValidation"
jp schedule bad '.status.validationErrors[0]' | grep -q 'spec.schedule "0 25 \* \* \*": hour' ||
	fail "cron message: $(jp schedule bad .status.validationErrors)"
jp schedule bad '.status.validationErrors[1]' | grep -q 'spec.template.ttl "forever"' ||
	fail "ttl message: $(jp schedule bad .status.validationErrors)"
st schedule describe bad | grep -q "Validation errors:" || fail "describe lacks the validation errors"
[ "$(count bad)" -eq 0 ] || fail "an invalid schedule made backups"
# Fixing it enables it and clears the errors.
k -n stasis patch schedule bad --type merge -p '{"spec":{"schedule":"@daily","template":{"ttl":"1h"}}}' >/dev/null
wait_phase schedule bad Enabled 20 >/dev/null || fail "fixed schedule not Enabled"
[ -z "$(jp schedule bad .status.validationErrors)" ] || fail "validation errors not cleared"
echo "validation: ok"

# --- delete a schedule, keep its backups ---------------------------------------------------------
printf 'n\n' | st schedule delete every2 | grep -q Cancelled || fail "delete without confirmation"
n=$(count every2)
[ "$(st schedule delete every2 --confirm)" = 'Schedule "every2" deleted.' ] || fail "delete output"
if k -n stasis get schedule every2 >/dev/null 2>&1; then fail "schedule every2 still exists"; fi
[ "$(count every2)" -ge "$n" ] || fail "deleting the schedule removed its backups"
echo "schedule delete: ok"

# --- TTL -----------------------------------------------------------------------------------------
st backup create short --include-namespaces test --ttl 3s --wait >/dev/null || fail "backup short"
[ -s "$store/backups/short/velero-backup.json" ] || fail "short not in the store"
exp=$(date -d "$(jp backup short .status.expiration)" +%s)
i=0
while k -n stasis get backup short >/dev/null 2>&1; do
	[ $i -lt 300 ] || fail "expired backup short still exists at $(date +%s), expiration $exp"
	sleep 0.1
	i=$((i + 1))
done
[ "$(date +%s)" -ge "$exp" ] || fail "short was deleted before its expiration"
# The file store leaves an empty directory behind; no object may remain.
[ -z "$(find "$store/backups/short" -type f 2>/dev/null)" ] ||
	fail "objects of short left in the store: $(find "$store/backups/short" -type f)"
grep -q "backup stasis/short: expired at" "$work/server.log" || fail "no expiry log line"
[ -e "$store/backups/$first/velero-backup.json" ] || fail "an unexpired backup was deleted"
echo "ttl: ok"

# --- downtime: one catch-up backup, for the latest missed slot -----------------------------------
st schedule create every4 --schedule "@every 4s" --include-namespaces test --ttl 1h >/dev/null ||
	fail "create every4"
wait_count every4 1 20
stop_pid "$server" 10
server=
last=$(date -d "$(jp schedule every4 .status.lastBackup)" +%s)
before=$(count every4)
# Stay down over the slots last+4, last+8 and last+12, come back just after the last of them.
sleep_until "$((last + 12)).3"
start_server "$work/server2.log" --bsl-sync-period 2s --gc-period 1s
wait_count every4 $((before + 1)) 10
late=$(slots every4 | awk -v l="$last" '$1 > l && $1 <= l + 12')
[ "$late" = "$((last + 12))" ] ||
	fail "after downtime want one backup for slot $((last + 12)), got: $(echo $late) (last $last)"
grep -q "schedule stasis/every4: created backup every4-.*were skipped" "$work/server2.log" ||
	fail "no catch-up log line"
# Then it follows the schedule again.
wait_count every4 $((before + 2)) 10
slots every4 | grep -qx "$((last + 16))" || fail "slot $((last + 16)) not made: $(slots every4 | tr '\n' ' ')"
echo "catch-up after downtime: ok"

stop_pid "$server" 10
server=
if grep -l "Sanitizer" "$work"/server*.log; then
	fail "a sanitizer reported in the controller's log"
fi
echo "PASS"
