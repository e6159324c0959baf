#!/usr/bin/env bash
# Side-by-side load benchmark: the same pegasus-load run against a simulated MetaServer directly,
# and through metaproxy (static routes, no ZooKeeper), alternating, in one run. The machine is
# noisy and everything shares its cores, so read the ratio, not the absolute numbers.
#
#   e2e/bench.sh [SECONDS] [ROUNDS]      defaults: 10 s per run, 3 rounds
#   LOAD_ARGS="--connections 8 --depth 32" e2e/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
load_args=${LOAD_ARGS:---connections 8 --depth 32}

cargo build --release --locked -p metaproxy -p metaproxy-tests --bins >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
. scripts/lib.sh
start_run bench

meta=$(free_port); proxy=$(free_port); admin=$(free_port)
cat > "$run/tables.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 2, partition_count: 8, replicas: ["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"]}
EOF
echo "temp: {cluster: sim, meta_addrs: [\"127.0.0.1:$meta\"]}" > "$run/routes.yaml"
"$bin/pegasus-meta-sim" --tables "$run/tables.yaml" --listen "127.0.0.1:$meta" > "$run/sim.log" 2>&1 &
pids+=($!)
"$bin/metaproxy" --listen "127.0.0.1:$proxy" --admin-listen "127.0.0.1:$admin" --routes "$run/routes.yaml" \
  --log warn > "$run/proxy.log" 2>&1 &
pids+=($!)
wait_for "the proxy" curl -sf "127.0.0.1:$admin/ready"

one() { # one LABEL TARGET
  # shellcheck disable=SC2086
  "$bin/pegasus-load" --target "$2" --duration "${secs}s" --table temp $load_args --json > "$run/$1.json"
  python3 - "$1" "$run/$1.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
l = r["latency_us"]
print(f"{sys.argv[1]:7} {r['requests_per_sec']:>10.0f} {l['p50']:>8} {l['p99']:>8} {l['p999']:>8}  errors={sum(r.get('errors', {}).values())}")
EOF
}

echo "load: $load_args, ${secs}s per run, $rounds rounds, $(nproc) cores"
echo "target      req/s  p50(us)  p99(us) p999(us)"
for _ in $(seq "$rounds"); do
  one direct "127.0.0.1:$meta" | tee -a "$run/all"
  one proxy "127.0.0.1:$proxy" | tee -a "$run/all"
done
python3 - "$run/all" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda who, col: statistics.median(float(r[col]) for r in rows if r[0] == who)
d, p = med("direct", 1), med("proxy", 1)
print(f"median req/s: direct {d:.0f}, proxy {p:.0f}, proxy/direct = {p / d:.2f}")
print(f"median p99 (us): direct {med('direct', 3):.0f}, proxy {med('proxy', 3):.0f}")
EOF
