#!/usr/bin/env bash
# The whole system on one machine: a real ZooKeeper, two simulated Pegasus clusters (a primary with
# three MetaServers and a backup), the operator keeping routes from a directory of
# PegasusTableRoute files, and metaproxy in front, under load from pegasus-load.
#
# It tells a short story and checks each step: clients reach the primary through the proxy; the
# primary's MetaServer leader moves without a failed request; a switchover to the backup (one line
# in a route file) moves the clients. Then it keeps everything running for you to try, until
# Ctrl-C.
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

zk_port=$(port); a1=$(port); a2=$(port); a3=$(port); a_admin=$(port); b1=$(port); b_admin=$(port)
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

say "Pegasus cluster c3srv-ad (3 MetaServers, the second is the leader) and backup c3srv-bk"
cat > "$run/tables-ad.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 2, partition_count: 8, replicas: ["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"]}
  - {name: stat, app_id: 3, partition_count: 4, replicas: ["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"]}
EOF
cat > "$run/tables-bk.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 5, partition_count: 8, replicas: ["10.1.0.1:34801", "10.1.0.2:34801", "10.1.0.3:34801"]}
EOF
"$bin/pegasus-meta-sim" --tables "$run/tables-ad.yaml" --listen "127.0.0.1:$a1,127.0.0.1:$a2,127.0.0.1:$a3" \
  --leader 1 --admin-listen "127.0.0.1:$a_admin" > "$run/sim-ad.log" 2>&1 &
pids+=($!)
"$bin/pegasus-meta-sim" --tables "$run/tables-bk.yaml" --listen "127.0.0.1:$b1" \
  --admin-listen "127.0.0.1:$b_admin" > "$run/sim-bk.log" 2>&1 &
pids+=($!)
wait_for "cluster c3srv-ad" curl -sf "127.0.0.1:$a_admin/state"
wait_for "cluster c3srv-bk" curl -sf "127.0.0.1:$b_admin/state"

say "metaproxy-operator over $run/routes, writing under /metaproxy/demo"
mkdir -p "$run/routes"
route() { # route NAME TABLE ACTIVE [with-backup]
  local backup=""
  [ "${4:-}" = with-backup ] && backup="  backup: {cluster: c3srv-bk, metaServers: [\"127.0.0.1:$b1\"]}"
  cat > "$run/routes/.$1.tmp" <<EOF
apiVersion: metaproxy.pegasus.io/v1alpha1
kind: PegasusTableRoute
metadata: {name: $1}
spec:
  table: $2
  primary: {cluster: c3srv-ad, metaServers: ["127.0.0.1:$a1", "127.0.0.1:$a2", "127.0.0.1:$a3"]}
$backup
  active: $3
  failover: {mode: Manual}
EOF
  mv "$run/routes/.$1.tmp" "$run/routes/$1.yaml"
}
route temp temp primary with-backup
route stat stat primary
"$bin/metaproxy-operator" --zone "demo=127.0.0.1:$zk_port/metaproxy/demo" --routes-dir "$run/routes" \
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
first_query_ok() { "$bin/pegasus-load" --target "127.0.0.1:$proxy_port" --connections 1 --depth 1 --requests 1 --table temp --json | json 'sum(d.get("errors", {}).values()) == 0' | grep -q True; }
wait_for "the route of temp" first_query_ok

say "Clients query temp and stat through the proxy"
errors=$(load 3 temp,stat)
[ "$errors" = 0 ] || fail "$errors failed requests"
echo "  queries that reached c3srv-ad: temp $(served "$a_admin" temp), stat $(served "$a_admin" stat) (identical queries in flight share one call)"
curl -s "127.0.0.1:$proxy_admin/routes" | json "'\\n'.join(f\"  route {r['table']}: {r['cluster']} leader {r['leader']} znode v{r['znode_version']}\" for r in d['routes'])"

say "The leader of c3srv-ad moves while clients keep querying"
( sleep 1; curl -sf -X POST "127.0.0.1:$a_admin/leader" -d '{"meta": 2}' >/dev/null ) &
errors=$(load 3 temp,stat)
[ "$errors" = 0 ] || fail "$errors failed requests during the leader change"
leader=$(curl -s "127.0.0.1:$proxy_admin/routes" | json '[r["leader"] for r in d["routes"] if r["table"] == "temp"][0]')
[ "$leader" = "127.0.0.1:$a3" ] || fail "the proxy follows leader $leader, expected 127.0.0.1:$a3"
echo "  the proxy followed the redirect to 127.0.0.1:$a3; no client saw it"

say "Switchover: temp goes to the backup cluster (active: backup in temp.yaml)"
before_bk=$(served "$b_admin" temp)
route temp temp backup with-backup
on_backup() { curl -s "127.0.0.1:$proxy_admin/routes" | json '[r["cluster"] for r in d["routes"] if r["table"] == "temp"][0]' | grep -qx c3srv-bk; }
wait_for "the proxy to route temp to c3srv-bk" on_backup
errors=$(load 2 temp)
[ "$errors" = 0 ] || fail "$errors failed requests after the switchover"
after_bk=$(served "$b_admin" temp)
[ "$after_bk" -gt "$before_bk" ] || fail "no query reached c3srv-bk"
echo "  queries for temp now reach c3srv-bk ($((after_bk - before_bk)) upstream calls)"
zk_record=$("$(java_bin)" -cp "$zk_cp" org.apache.zookeeper.ZooKeeperMain -server "127.0.0.1:$zk_port" \
  get /metaproxy/demo/temp 2>/dev/null | grep '^{' || true)
echo "  ZooKeeper /metaproxy/demo/temp: $zk_record"

say "Every check passed"
if $once; then exit 0; fi
cat <<EOF

Everything keeps running. Try:
  $bin/pegasus-load --target 127.0.0.1:$proxy_port --table temp --duration 5s
  curl -s 127.0.0.1:$proxy_admin/routes ; curl -s 127.0.0.1:$proxy_admin/metrics | grep ^metaproxy_
  curl -s 127.0.0.1:$op_admin/routes
  edit $run/routes/temp.yaml (active: primary|backup) and watch /routes
  curl -X POST 127.0.0.1:$a_admin/metas/1/stop ; curl -s 127.0.0.1:$a_admin/state
Logs are in $run. Ctrl-C stops everything.
EOF
keep_logs=false
while true; do sleep 3600; done
