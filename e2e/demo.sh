#!/usr/bin/env bash
# The whole system on one machine: a real ZooKeeper, two simulated Pegasus clusters with replica
# servers (a primary with three MetaServers, duplicating into a backup), the operator keeping
# routes from a directory of PegasusTableRoute files, metaproxy in front, and clients that read
# and write through it (the kv workload of pegasus-load).
#
# It tells a story and checks each step: clients reach the primary through the proxy; the
# primary's MetaServer leader moves without a failed request; a planned switchover of table temp
# (one line in a route file) fences writes on the primary, waits for duplication to drain, flips
# the record and sends the clients away, and every acknowledged write is read back from the
# backup; then the primary dies, and table stat (failover mode Automatic) fails over on its own
# once its window is over, the proxy (the operator's observer) agreeing. A timeline and a
# summary follow. Then it keeps everything running for you to try, until Ctrl-C.
#
# The settings are short so that it runs in tens of seconds: replica servers pick up app envs
# every 300 ms (Pegasus: 30 s), fenceSettle 1s (default 35s), probes every 500 ms and 4 failures
# in a row (defaults 5s and 6).
#
#   e2e/demo.sh [--once] [--debug]
#     --once   run the story, then stop everything (exit status says whether every check passed)
#     --debug  use the debug build (what the tests built) instead of building with --release
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

once=false
profile=release
for arg in "$@"; do
  case "$arg" in
    --once) once=true ;;
    --debug) profile=debug ;;
    *) echo "usage: $0 [--once] [--debug]" >&2; exit 64 ;;
  esac
done

scripts/setup
if [ "$profile" = release ]; then
  cargo build --release --locked --workspace --bins
else
  cargo build --locked --workspace --bins
fi
bin="${CARGO_TARGET_DIR:-target}/$profile"

run=$(mktemp -d -t metaproxy-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${keep_logs:-false}" = true ]; then echo "logs kept in $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "DEMO CHECK FAILED: $*" >&2; keep_logs=true; exit 1; }
wait_for() { # wait_for DESCRIPTION COMMAND...: polls for 30 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ms() { date +%s%3N; }
t0=$(ms)
events="$run/events.tsv"
: > "$events"
mark() { printf '%s\tdemo\t%s\n' "$(( $(ms) - t0 ))" "$*" >> "$events"; }

zk_port=$(port); a1=$(port); a2=$(port); a3=$(port); a_admin=$(port); b1=$(port); b_admin=$(port)
ar1=$(port); ar2=$(port); ar3=$(port); br1=$(port); br2=$(port); br3=$(port)
proxy_port=$(port); proxy_admin=$(port); op_admin=$(port)

say "ZooKeeper on 127.0.0.1:$zk_port"
mkdir -p "$run/zk/data"
cat > "$run/zk/zoo.cfg" <<EOF
tickTime=500
dataDir=$run/zk/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
EOF
zk_cp=$(zk_classpath) || fail "no ZooKeeper jars (apt-get install zookeeper, or set ZOOKEEPER_CLASSPATH)"
"$(java_bin)" -Xmx128m -XX:+UseSerialGC -cp "$zk_cp" \
  org.apache.zookeeper.server.ZooKeeperServerMain "$run/zk/zoo.cfg" > "$run/zk.log" 2>&1 &
pids+=($!)
zk_serving() { timeout 0.5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$zk_port && printf srvr >&3 && cat <&3" | grep -q '^Mode: '; }
wait_for "ZooKeeper" zk_serving

say "Pegasus cluster c3srv-ad (3 MetaServers, the second is the leader; 3 replica servers), duplicating into c3srv-bk"
# The same app ids and partition counts on both sides: the Java client retries an operation in
# flight with the gpid it had.
cat > "$run/tables-bk.yaml" <<EOF
tables:
  - {name: temp, app_id: 2, partition_count: 8}
  - {name: stat, app_id: 3, partition_count: 4}
EOF
cat > "$run/tables-ad.yaml" <<EOF
tables:
  - {name: temp, app_id: 2, partition_count: 8, duplication: {to: ["127.0.0.1:$b1"], app: temp, cluster: c3srv-bk}}
  - {name: stat, app_id: 3, partition_count: 4, duplication: {to: ["127.0.0.1:$b1"], app: stat, cluster: c3srv-bk}}
EOF
"$bin/pegasus-meta-sim" --tables "$run/tables-bk.yaml" --listen "127.0.0.1:$b1" \
  --cluster-name c3srv-bk --cluster-id 2 --replica-listen "127.0.0.1:$br1,127.0.0.1:$br2,127.0.0.1:$br3" \
  --config-sync-interval 300ms --admin-listen "127.0.0.1:$b_admin" > "$run/sim-bk.log" 2>&1 &
pids+=($!)
wait_for "cluster c3srv-bk" curl -sf "127.0.0.1:$b_admin/state"
"$bin/pegasus-meta-sim" --tables "$run/tables-ad.yaml" --listen "127.0.0.1:$a1,127.0.0.1:$a2,127.0.0.1:$a3" \
  --leader 1 --cluster-name c3srv-ad --cluster-id 1 --replica-listen "127.0.0.1:$ar1,127.0.0.1:$ar2,127.0.0.1:$ar3" \
  --config-sync-interval 300ms --admin-listen "127.0.0.1:$a_admin" > "$run/sim-ad.log" 2>&1 &
pids+=($!)
wait_for "cluster c3srv-ad" curl -sf "127.0.0.1:$a_admin/state"

say "metaproxy-operator over $run/routes, writing under /metaproxy/demo; the proxy is its observer"
mkdir -p "$run/routes"
route() { # route TABLE MODE ACTIVE
  cat > "$run/routes/.$1.tmp" <<EOF
apiVersion: metaproxy.pegasus.io/v1alpha1
kind: PegasusTableRoute
metadata: {name: $1}
spec:
  table: $1
  primary: {cluster: c3srv-ad, metaServers: ["127.0.0.1:$a1", "127.0.0.1:$a2", "127.0.0.1:$a3"]}
  backup: {cluster: c3srv-bk, metaServers: ["127.0.0.1:$b1"]}
  active: $3
  failover: {mode: $2, probeInterval: 500ms, failureThreshold: 4}
  switchover: {fenceSettle: 1s, drainTimeout: 20s}
EOF
  mv "$run/routes/.$1.tmp" "$run/routes/$1.yaml"
}
route temp Manual primary
route stat Automatic primary
"$bin/metaproxy-operator" --zone "demo=127.0.0.1:$zk_port/metaproxy/demo" --routes-dir "$run/routes" \
  --observer "demo=http://127.0.0.1:$proxy_admin" --poll 100ms \
  --admin-listen "127.0.0.1:$op_admin" > "$run/operator.log" 2>&1 &
pids+=($!)
wait_for "the operator" curl -sf "127.0.0.1:$op_admin/ready"

say "metaproxy on 127.0.0.1:$proxy_port (admin 127.0.0.1:$proxy_admin)"
"$bin/metaproxy" --listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$proxy_admin" \
  --zk "127.0.0.1:$zk_port" --zk-root /metaproxy/demo > "$run/metaproxy.log" 2>&1 &
pids+=($!)
wait_for "metaproxy" curl -sf "127.0.0.1:$proxy_admin/ready"

load() { # load SECONDS TABLES: pegasus-load through the proxy, prints a summary, returns the errors
  "$bin/pegasus-load" --target "127.0.0.1:$proxy_port" --connections 8 --depth 16 --duration "$1s" \
    --table "$2" --json > "$run/load.json"
  python3 - "$run/load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
errors = r.get("errors", {})
print(f"  {r['replies']} replies, {r['requests_per_sec']:.0f}/s, p50 {lat['p50'] / 1000:.2f} ms, "
      f"p99 {lat['p99'] / 1000:.2f} ms, errors: {errors if errors else 'none'}", file=sys.stderr)
EOF
  json 'sum(d.get("errors", {}).values())' < "$run/load.json"
}
served() { curl -s "127.0.0.1:$1/counters" | json "d['by_table'].get('$2', 0)"; }
first_query_ok() { "$bin/pegasus-load" --target "127.0.0.1:$proxy_port" --connections 1 --depth 1 --requests 1 --table "$1" --json | json 'sum(d.get("errors", {}).values()) == 0' | grep -q True; }
wait_for "the route of temp" first_query_ok temp
wait_for "the route of stat" first_query_ok stat
route_field() { # route_field TABLE EXPR: EXPR of r, the table's entry on the operator's /routes
  curl -s "127.0.0.1:$op_admin/routes" | json "next(($2) for r in d if r['spec']['table'] == '$1')"
}
conditions() { # conditions TABLE TYPE...: prints those conditions of the table's route
  local types
  types=$(printf "'%s'," "${@:2}")
  route_field "$1" "'\\n'.join('  ' + c['type'] + '=' + c['status'] + ' ' + c['reason'] + ': ' + c['message'] for c in r['status']['conditions'] if c['type'] in ($types))"
}
armed() { route_field stat "[c['reason'] for c in r['status']['conditions'] if c['type'] == 'FailedOver'][0]" | grep -qx PrimaryHealthy; }
wait_for "stat's automatic failover to be armed" armed

say "Clients query temp and stat through the proxy"
errors=$(load 2 temp,stat)
[ "$errors" = 0 ] || fail "$errors failed requests"
echo "  queries that reached c3srv-ad: temp $(served "$a_admin" temp), stat $(served "$a_admin" stat) (identical queries in flight share one call)"
curl -s "127.0.0.1:$proxy_admin/routes" | json "'\\n'.join(f\"  route {r['table']}: {r['cluster']} leader {r['leader']} znode v{r['znode_version']}\" for r in d['routes'])"

say "The leader of c3srv-ad moves while clients keep querying"
( sleep 1; curl -sf -X POST "127.0.0.1:$a_admin/leader" -d '{"meta": 2}' >/dev/null ) &
errors=$(load 2 temp,stat)
[ "$errors" = 0 ] || fail "$errors failed requests during the leader change"
leader=$(curl -s "127.0.0.1:$proxy_admin/routes" | json '[r["leader"] for r in d["routes"] if r["table"] == "temp"][0]')
[ "$leader" = "127.0.0.1:$a3" ] || fail "the proxy follows leader $leader, expected 127.0.0.1:$a3"
echo "  the proxy followed the redirect to 127.0.0.1:$a3; no client saw it"

say "Clients read and write temp and stat through the proxy (kv workload, 8 clients each)"
python3 e2e/demo_watch.py "$t0" "$events" "127.0.0.1:$op_admin" "127.0.0.1:$a_admin" "127.0.0.1:$b_admin" &
pids+=($!)
kv() { # kv TABLE SECONDS: the kv workload, every acknowledged write read back from the backup
  "$bin/pegasus-load" --workload kv --target "127.0.0.1:$proxy_port" --connections 2 --depth 4 \
    --duration "$2s" --table "$1" --verify --verify-meta "127.0.0.1:$b1" --json \
    > "$run/kv-$1.json" 2> "$run/kv-$1.err" || true
}
mark "kv clients start writing and reading temp and stat"
kv temp 12 &
kv_temp=$!
kv stat 12 &
kv_stat=$!
sleep 2

say "Planned switchover: temp goes to c3srv-bk (active: backup in temp.yaml)"
mark "a person sets spec.active: backup on temp"
route temp Manual backup
completed() { route_field temp "(r['status'].get('switchover') or {}).get('phase')" | grep -qx Completed; }
wait_for "temp's switchover to complete" completed
mark "temp's switchover completed"
conditions temp Switchover
fence=$(curl -s "127.0.0.1:$a_admin/tables/temp" | json "d['envs'].get('replica.deny_client_request')")
[ "$fence" = "reconfig*all" ] || fail "c3srv-ad's temp has replica.deny_client_request=$fence, expected reconfig*all"
sleep 2

say "c3srv-ad dies: its MetaServers and replica servers stop"
curl -sf -X POST "127.0.0.1:$a_admin/cluster/stop" > /dev/null
mark "c3srv-ad dies (MetaServers and replica servers refuse connections)"
unconfirmed=$(curl -s "127.0.0.1:$a_admin/tables/stat" | json "sum(max(0, d['last_decrees'][i] - p['confirmed_decree']) for dup in d['duplications'] for i, p in enumerate(dup['partitions']))")
echo "  writes of stat committed on c3srv-ad that duplication had not confirmed: $unconfirmed"
failed_over() { route_field stat "r['status']['activeCluster']" | grep -qx c3srv-bk; }
wait_for "stat to fail over" failed_over
mark "stat failed over to c3srv-bk"
conditions stat FailedOver PrimaryHealthy BackupHealthy

say "The clients finish; every acknowledged write is read back from c3srv-bk"
wait "$kv_temp" "$kv_stat"
mark "the clients are done"
sleep 0.2
python3 e2e/demo_report.py "$run" "$events" "$unconfirmed" "$t0" || fail "a check on the clients' writes failed"

say "Every check passed"
if $once; then exit 0; fi
cat <<EOF

Everything keeps running; c3srv-ad is stopped (curl -X POST 127.0.0.1:$a_admin/cluster/start). Try:
  $bin/pegasus-load --workload kv --target 127.0.0.1:$proxy_port --table temp --duration 5s
  curl -s 127.0.0.1:$proxy_admin/routes ; curl -s 127.0.0.1:$proxy_admin/clusters
  curl -s 127.0.0.1:$op_admin/routes ; curl -s 127.0.0.1:$op_admin/metrics | grep ^metaproxy_operator_
  edit $run/routes/stat.yaml (active: backup acknowledges the failover; then primary goes back)
Logs are in $run. Ctrl-C stops everything.
EOF
keep_logs=false
while true; do sleep 3600; done
