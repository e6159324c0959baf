#!/usr/bin/env bash
# The performance benchmark of docs/performance.md: the same pegasus-load runs against a simulated
# MetaServer directly and through metaproxy (static routes), alternating in rounds within one run
# (`pegasus-load --compare`), with CPU microseconds per request of the proxy and the simulator
# read from /proc; then the ZooKeeper figures (an ignored test against the release binary). Prints
# the targets P1 to P10 with the measured figure beside each. The machine is noisy and everything
# shares its cores: read the ratios and the CPU per request, not the absolute numbers.
# A second proxy, "proxy1", runs with one runtime worker thread (TOKIO_WORKER_THREADS=1) beside
# the default one (a worker per core), for the comparison in docs/performance.md.
#
#   e2e/bench.sh [SECONDS] [ROUNDS]   defaults: 10 s per run, 3 rounds (about 7 minutes)
#   e2e/bench.sh --smoke              1 s, 1 round, no ZooKeeper: checks that the tool works
#   SKIP_ZK=1 e2e/bench.sh            without the ZooKeeper figures (P6 to P9)
#   keep_logs=true e2e/bench.sh       keeps the run directory (every report as JSON)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=false
if [ "${1:-}" = --smoke ]; then
  smoke=true
  shift
fi
secs=${1:-10}
rounds=${2:-3}
if $smoke; then secs=1; rounds=1; SKIP_ZK=1; fi

cargo build --release --locked -p metaproxy -p metaproxy-tests --bins >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
. scripts/lib.sh
start_run bench

meta=$(free_port); proxy=$(free_port); admin=$(free_port); proxy1=$(free_port); admin1=$(free_port)
# temp: 8 partitions; t0..t99: distinct tables; p256: 256 partitions.
python3 - "$run" "$meta" <<'EOF'
import sys
run, meta = sys.argv[1], sys.argv[2]
names = [("temp", 8)] + [(f"t{i}", 8) for i in range(100)] + [("p256", 256)]
replicas = '["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"]'
with open(f"{run}/tables.yaml", "w") as t, open(f"{run}/routes.yaml", "w") as r:
    t.write("tables:\n")
    for i, (name, partitions) in enumerate(names):
        t.write(f"  - {{name: {name}, app_id: {i + 2}, partition_count: {partitions}, replicas: {replicas}}}\n")
        r.write(f'{name}: {{cluster: sim, meta_addrs: ["127.0.0.1:{meta}"]}}\n')
EOF
"$bin/pegasus-meta-sim" --tables "$run/tables.yaml" --listen "127.0.0.1:$meta" > "$run/sim.log" 2>&1 &
sim_pid=$!
pids+=("$sim_pid")
"$bin/metaproxy" --listen "127.0.0.1:$proxy" --admin-listen "127.0.0.1:$admin" --routes "$run/routes.yaml" \
  --log warn > "$run/proxy.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
TOKIO_WORKER_THREADS=1 "$bin/metaproxy" --listen "127.0.0.1:$proxy1" --admin-listen "127.0.0.1:$admin1" \
  --routes "$run/routes.yaml" --log warn > "$run/proxy1.log" 2>&1 &
proxy1_pid=$!
pids+=("$proxy1_pid")
wait_for "the proxy" curl -sf "127.0.0.1:$admin/ready"
wait_for "the one-worker proxy" curl -sf "127.0.0.1:$admin1/ready"

echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "${secs}s per run, $rounds rounds, direct, proxy and proxy1 alternating"

# scenario NAME ARGS...: one --compare run, its report in $run/NAME.json and on the terminal.
scenario() {
  local name=$1
  shift
  echo
  echo "== $name: $*   (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bin/pegasus-load" --compare "direct=127.0.0.1:$meta,proxy=127.0.0.1:$proxy,proxy1=127.0.0.1:$proxy1" \
    --rounds "$rounds" --duration "${secs}s" --pid "sim=$sim_pid" --pid "proxy=$proxy_pid" \
    --pid "proxy1=$proxy1_pid" "$@" \
    --json > "$run/$name.json"
  python3 - "$run/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for s in r["summary"]:
    cpu = "  ".join(f"{k} {v['us_per_request']:.2f} us/req ({v['cores']:.2f} cores)" for k, v in s["cpu"].items() if v["cores"] > 0.005)
    print(f"{s['target']:7} {s['requests_per_sec']:>9.0f} req/s  p50 {s['p50_us']:>6.0f}  p99 {s['p99_us']:>6.0f} us  errors {s['errors']}  {cpu}")
EOF
}

scenario one --connections 8 --depth 32 --table temp
scenario distinct --connections 8 --depth 32 --table t --distinct 100
scenario latency --connections 1 --depth 1 --table temp
scenario open --connections 8 --rate 20000 --table temp
scenario conns64 --connections 64 --depth 1 --table temp
scenario p256 --connections 8 --depth 8 --table p256

echo '{}' > "$run/zk.json"
if [ -z "${SKIP_ZK:-}" ]; then
  echo
  echo "== ZooKeeper figures (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  METAPROXY_BIN="$PWD/$bin/metaproxy" cargo test --release --locked -p metaproxy --test proxy_process \
    -- --ignored --nocapture measure_route_figures 2>&1 | tee "$run/zk.log" | grep '^FIGURES' \
    | sed 's/^FIGURES //' > "$run/zk.json" || echo "the ZooKeeper figures failed: see $run/zk.log"
fi

echo
python3 - "$run" <<'EOF'
import json, sys
run = sys.argv[1]
def summary(name):
    s = json.load(open(f"{run}/{name}.json"))["summary"]
    return {row["target"]: row for row in s}
one, distinct, lat, opn, c64, p256 = (summary(n) for n in ("one", "distinct", "latency", "open", "conns64", "p256"))
try:
    zk = json.load(open(f"{run}/zk.json"))
except ValueError:
    zk = {}
cpu = lambda row, who: row["cpu"][who]["us_per_request"]
sim_us = cpu(one["direct"], "sim")
rows = [
    ("P1", "proxy CPU per query / simulator CPU per query (8 x 32, one table)", "<= 1.5",
     cpu(one["proxy"], "proxy") / sim_us if sim_us else float("nan"),
     f"{cpu(one['proxy'], 'proxy'):.2f} / {sim_us:.2f} us"),
    ("P2", "throughput proxy / direct (8 x 32, one table)", ">= 0.8", one["proxy"]["throughput_ratio"], ""),
    ("P3", "throughput proxy / direct (8 x 32, 100 tables)", ">= 0.4", distinct["proxy"]["throughput_ratio"],
     f"proxy {cpu(distinct['proxy'], 'proxy'):.2f} us/req"),
    ("P4", "p50 latency proxy / direct (1 x 1)", "<= 2.2", lat["proxy"]["p50_ratio"],
     f"{lat['proxy']['p50_us']:.0f} / {lat['direct']['p50_us']:.0f} us"),
    ("P5", "added p99, open loop 20,000/s (us)", "<= 500", opn["proxy"]["added_p99_us"],
     f"{opn['proxy']['p99_us']:.0f} - {opn['direct']['p99_us']:.0f} us"),
    ("P6", "first query of an uncached table, p99 (ms)", "<= 3", zk.get("p6_first_query_p99_us", float("nan")) / 1000, ""),
    ("P7", "upstream queries for a burst of 1,000", "<= 2", zk.get("p7_upstream_queries", float("nan")), ""),
    ("P8", "znode change to new answer, p99 (ms)", "<= 50", zk.get("p8_change_to_answer_p99_us", float("nan")) / 1000, ""),
    ("P9", "RSS, 10,000 routes + 10,000 idle connections (MiB)", "<= 64", zk.get("p9_rss_mib", float("nan")), ""),
    ("P10", "throughput proxy / direct (256 partitions, 8 x 8)", ">= 0.9", p256["proxy"]["throughput_ratio"], ""),
]
print(f"{'id':4} {'what':62} {'target':>8} {'measured':>9}")
for id_, what, target, got, note in rows:
    print(f"{id_:4} {what:62} {target:>8} {got:>9.2f}  {note}")
p1 = lambda row: f"{row['proxy1']['throughput_ratio']:.2f}"
print(f"one worker thread (proxy1): P1 {cpu(one['proxy1'], 'proxy1') / sim_us if sim_us else 0:.2f}, "
      f"P2 {p1(one)}, P3 {p1(distinct)}, P4 {lat['proxy1']['p50_ratio']:.2f}, "
      f"P5 {opn['proxy1']['added_p99_us']:.0f} us, P10 {p1(p256)}, 64 x 1 {p1(c64)}")
print(f"also: 64 x 1 throughput proxy / direct {c64['proxy']['throughput_ratio']:.2f}; "
      f"simulator {sim_us:.2f} us/req direct, using {one['direct']['cpu']['sim']['cores']:.2f} cores "
      f"(ceiling on 2 cores about {2e6 / sim_us if sim_us else 0:.0f} req/s); "
      f"load tool {cpu(one['direct'], 'load'):.2f} us/req")
EOF
