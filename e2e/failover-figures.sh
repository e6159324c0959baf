#!/usr/bin/env bash
# The failover figures, measured by the integration tests of operator/tests/failover.rs (release
# build, one test at a time): each test prints `FIGURE name value` lines; the timing tests run
# ROUNDS times, the others once; this prints each figure's median and worst.
#
# Settings (in the tests): probe interval 500 ms, failure threshold 4 (a 2 s window), one
# observer (the proxy); fenceSettle 1 s; the simulators' config sync 200 ms; 16 kv clients with
# the Java client's rules (1 s operation timeout, re-query at most every 333 ms).
#
#   e2e/failover-figures.sh [ROUNDS]      default 5
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
export METAPROXY_REQUIRE_ALL=1
out=$(mktemp /tmp/metaproxy-failover-figures.XXXXXX)
trap 'rm -f "$out"' EXIT

cargo test --release --locked -p metaproxy-operator --test failover --no-run 2>/dev/null
run() { # run FILTER...: the failover tests matching, one at a time, their figures kept
  cargo test --release --locked -q -p metaproxy-operator --test failover -- --nocapture \
    --test-threads 1 "$@" 2> >(grep '^FIGURE' >> "$out") > /dev/null
}
for i in $(seq "$rounds"); do
  echo "round $i of $rounds: the primary dies; a planned switchover; flips seen by the proxy" >&2
  run automatic_failover_after_the_window planned_switchover_loses_nothing soon_after_a_flip
done
echo "once: the operator's path cut; SIGKILL in every phase; two operators; two Kubernetes replicas" >&2
run only_the_operators_path killed_in_any_phase two_operators two_replicas_on_kubernetes
sleep 0.5

python3 - "$out" <<'EOF'
import statistics, sys
values = {}
for line in open(sys.argv[1]):
    _, name, value = line.split()
    values.setdefault(name, []).append(float(value))
rows = [
    ("primary death to znode flip (ms)", "death_to_flip_ms", "threshold x interval + 1 interval = 2500"),
    ("znode flip to the proxy answering from the backup, p99 of 100 flips (ms)", "flip_to_proxy_p99_ms", "50"),
    ("  the same, p50 (ms)", "flip_to_proxy_p50_ms", ""),
    ("  the same, during the failover (ms)", "flip_to_proxy_ms", ""),
    ("client-observed unavailability, kv (ms)", "client_unavailability_ms", "window + 2 s = 4000"),
    ("acknowledged writes lost, planned switchover", "lost_planned", "0"),
    ("  the same, operator SIGKILLed in a phase", "lost_planned_killed_in_*", "0"),
    ("acknowledged writes lost, automatic failover", "lost_automatic", "<= unconfirmed at death"),
    ("  writes duplication had not confirmed at death", "unconfirmed_at_death", ""),
    ("write-fence window, planned switchover (ms)", "fence_window_ms", "settle + drain + 2 s"),
    ("  drain (ms)", "drain_ms", ""),
    ("flips with the operator's path cut, observers healthy", "flips_with_operator_path_cut", "0"),
    ("double flips, two operators on one routes directory", "double_flips_two_operators", "0"),
    ("double flips, two Kubernetes replicas, leader killed", "double_flips_two_kubernetes_replicas", "0"),
]
print(f"{'figure':76} {'n':>3} {'median':>9} {'worst':>9}  target")
for label, key, target in rows:
    if key.endswith("*"):
        vs = [v for k, l in values.items() if k.startswith(key[:-1]) for v in l]
    else:
        vs = values.get(key, [])
    if not vs:
        print(f"{label:76} {0:>3} {'-':>9} {'-':>9}  {target}")
        continue
    median = statistics.median(vs)
    print(f"{label:76} {len(vs):>3} {median:>9.1f} {max(vs):>9.1f}  {target}")
EOF
