#!/usr/bin/env bash
# Data-plane benchmark: pegasus-load --workload kv (clients that read and write, as the official
# clients do) against a simulated cluster with replica servers, once with the routing read from
# its MetaServer directly and once through metaproxy (static routes), alternating, in one run.
# The table duplicates to a second simulated cluster all along; the report ends with the
# duplication lag the simulator achieved under that load (commit on the source to acknowledgement
# by the follower) and how long the backlog took to drain after the load stopped.
#
# The proxy only answers query_config: reads and writes go to the replica servers either way, so
# the two figures should match. The machine is noisy; read the ratio, not the absolute numbers.
#
#   e2e/kv-bench.sh [SECONDS] [ROUNDS]      defaults: 10 s per run, 3 rounds
#   LOAD_ARGS="--connections 4 --depth 8" e2e/kv-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
load_args=${LOAD_ARGS:---connections 4 --depth 8}

cargo build --release --locked -p metaproxy -p metaproxy-tests --bins >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
. scripts/lib.sh
start_run kv-bench

src=$(free_port); src_admin=$(free_port); bk=$(free_port); bk_admin=$(free_port); proxy=$(free_port); admin=$(free_port)
replicas() { echo "127.0.0.1:$(free_port),127.0.0.1:$(free_port),127.0.0.1:$(free_port)"; }
cat > "$run/backup.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 2, partition_count: 8}
EOF
cat > "$run/source.yaml" <<EOF
tables:
  - {name: temp, app_id: 2, partition_count: 8, duplication: {to: ["127.0.0.1:$bk"], app: temp, cluster: backup}}
EOF
echo "temp: {cluster: source, meta_addrs: [\"127.0.0.1:$src\"]}" > "$run/routes.yaml"
"$bin/pegasus-meta-sim" --tables "$run/backup.yaml" --listen "127.0.0.1:$bk" --admin-listen "127.0.0.1:$bk_admin" \
  --replica-listen "$(replicas)" > "$run/backup.log" 2>&1 &
pids+=($!)
"$bin/pegasus-meta-sim" --tables "$run/source.yaml" --listen "127.0.0.1:$src" --admin-listen "127.0.0.1:$src_admin" \
  --replica-listen "$(replicas)" > "$run/source.log" 2>&1 &
pids+=($!)
"$bin/metaproxy" --listen "127.0.0.1:$proxy" --admin-listen "127.0.0.1:$admin" --routes "$run/routes.yaml" \
  --log warn > "$run/proxy.log" 2>&1 &
pids+=($!)
wait_for "the proxy" curl -sf "127.0.0.1:$admin/ready"
wait_for "the source cluster" curl -sf "127.0.0.1:$src_admin/state"
wait_for "the backup cluster" curl -sf "127.0.0.1:$bk_admin/state"

one() { # one LABEL TARGET
  # shellcheck disable=SC2086
  "$bin/pegasus-load" --workload kv --target "$2" --duration "${secs}s" --table temp $load_args --verify --json \
    > "$run/$1.json"
  python3 - "$1" "$run/$1.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
w, rd, v = r["writes"]["latency_us"], r["reads"]["latency_us"], r["verify"]
print(f"{sys.argv[1]:7} {r['ops_per_sec']:>9.0f} {w['p50']:>8} {w['p99']:>8} {rd['p50']:>8} {rd['p99']:>8}"
      f"  failed={r['writes']['failed'] + r['reads']['failed']} lost={v['lost'] + v['wrong']}")
EOF
}

echo "kv load: $load_args, ${secs}s per run, $rounds rounds, $(nproc) cores; the table duplicates to a second cluster"
echo "target     ops/s  w50(us)  w99(us)  r50(us)  r99(us)"
for _ in $(seq "$rounds"); do
  one direct "127.0.0.1:$src" | tee -a "$run/all"
  one proxy "127.0.0.1:$proxy" | tee -a "$run/all"
done
python3 - "$run/all" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda who, col: statistics.median(float(r[col]) for r in rows if r[0] == who)
d, p = med("direct", 1), med("proxy", 1)
print(f"median ok ops/s: direct {d:.0f}, proxy {p:.0f}, proxy/direct = {p / d:.2f}")
EOF
python3 - "127.0.0.1:$src_admin" <<'EOF'
import json, sys, time, urllib.request
admin = sys.argv[1]
get = lambda: json.load(urllib.request.urlopen(f"http://{admin}/tables/temp"))
start = time.monotonic()
while True:
    d = get()["duplications"][0]
    if all(p["confirmed_decree"] >= p["last_committed_decree"] for p in d["partitions"]):
        break
    if time.monotonic() - start > 60:
        print("duplication did not drain in 60 s")
        break
    time.sleep(0.02)
lag = d["lag_us"]
print(f"duplication: {d['shipped']} writes shipped; commit-to-ack lag p50 {lag['p50'] / 1000:.1f} ms, "
      f"p99 {lag['p99'] / 1000:.1f} ms, max {lag['max'] / 1000:.1f} ms; "
      f"drained {1000 * (time.monotonic() - start):.0f} ms after the load stopped")
EOF
