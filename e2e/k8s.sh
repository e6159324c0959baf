#!/usr/bin/env bash
# The Kubernetes story on one machine, on loopback: a real Kubernetes API server for custom
# resources (crdserver + etcd), a real ZooKeeper, two simulated Pegasus clusters, and the operator
# and one proxy per zone run with the flags the Helm chart renders for them (helm template, with
# this machine's ZooKeeper and free ports as values).
#
# It checks each step: the chart's CRD applies; routes applied with kubectl reach the proxies of
# their zone; `kubectl get ptr` shows the columns; `kubectl patch` of `active` switches one zone's
# clients to the backup cluster (a switchover without fencing: these clusters do not duplicate); the standby operator takes over when the leader stops; `kubectl
# delete` removes the znode and the proxy answers ERR_OBJECT_NOT_FOUND.
#
#   e2e/k8s.sh          (uses the debug build, what the tests built)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

scripts/setup
cargo build --locked --workspace --bins -q
bin="${CARGO_TARGET_DIR:-target}/debug"
export PATH="$PWD/.tools/bin:$PATH"

. scripts/lib.sh
shared=$(shared_dir)
[ -n "$shared" ] || { echo "k8s: no shared/k8s found beside the repository (set METAPROXY_SHARED)" >&2; exit 1; }
zk_cp=$(zk_classpath) || { echo "k8s: no ZooKeeper jars (apt-get install zookeeper, or set ZOOKEEPER_CLASSPATH)" >&2; exit 1; }

fail_label="K8S CHECK FAILED"
start_run k8s
api_up=false
on_cleanup() {
  if $api_up; then bash "$shared/k8s/crdserver-down.sh" "$run/api" >/dev/null 2>&1 || true; fi
}

port_pair() { python3 -c '
import socket
while True:
    a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
    try:
        b = socket.socket(); b.bind(("127.0.0.1", p + 1)); print(p); break
    except OSError:
        pass'; }

say "Kubernetes API server (crdserver) on loopback"
api_port=$(free_port); etcd_port=$(port_pair)
mkdir -p "$run/api"
PORT=$api_port ETCD_PORT=$etcd_port bash "$shared/k8s/crdserver-up.sh" .tools/crdserver "$run/api" > "$run/crdserver-up.log" 2>&1 \
  || { cat "$run/crdserver-up.log" >&2; fail "crdserver-up.sh"; }
api_up=true
export KUBECONFIG="$run/api/admin.kubeconfig"
k() { kubectl "$@" 2> >(grep -v 'version difference between client' >&2); }
wait_for "the API server" k get customresourcedefinitions -o name

say "The chart's CRD (and stand-ins for Lease and events.k8s.io Event)"
k apply -f charts/metaproxy/crds/pegasustableroutes.yaml
k apply -f "$shared/k8s/builtin-standins.yaml" > /dev/null
k wait --for=condition=Established --timeout=30s crd/pegasustableroutes.metaproxy.pegasus.io \
  crd/leases.coordination.k8s.io crd/events.events.k8s.io > /dev/null

say "ZooKeeper, Pegasus clusters c3srv-ad (2 MetaServers) and c3srv-bk"
zk_port=$(free_port); a1=$(free_port); a2=$(free_port); a_admin=$(free_port); b1=$(free_port); b_admin=$(free_port)
start_zookeeper "$run/zk" "$zk_port"
cat > "$run/tables-ad.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 2, partition_count: 8, replicas: ["10.0.0.1:34801", "10.0.0.2:34801", "10.0.0.3:34801"]}
EOF
cat > "$run/tables-bk.yaml" <<'EOF'
tables:
  - {name: temp, app_id: 2, partition_count: 8, replicas: ["10.1.0.1:34801", "10.1.0.2:34801", "10.1.0.3:34801"]}
EOF
"$bin/pegasus-meta-sim" --tables "$run/tables-ad.yaml" --listen "127.0.0.1:$a1,127.0.0.1:$a2" \
  --admin-listen "127.0.0.1:$a_admin" > "$run/sim-ad.log" 2>&1 &
pids+=($!)
"$bin/pegasus-meta-sim" --tables "$run/tables-bk.yaml" --listen "127.0.0.1:$b1" \
  --admin-listen "127.0.0.1:$b_admin" > "$run/sim-bk.log" 2>&1 &
pids+=($!)
wait_for "ZooKeeper" zk_serving "$zk_port"
wait_for "cluster c3srv-ad" curl -sf "127.0.0.1:$a_admin/state"
wait_for "cluster c3srv-bk" curl -sf "127.0.0.1:$b_admin/state"

say "The chart rendered for zones az1 and az2 on this ZooKeeper"
p_az1=$(free_port); p_az2=$(free_port); op1_admin=$(free_port); op2_admin=$(free_port)
# One release with both zones; every port the pods would share becomes a free loopback port
# per process below.
cat > "$run/values.yaml" <<EOF
zones:
  - name: az1
    zookeeper: {hosts: "127.0.0.1:$zk_port", root: /metaproxy/az1}
  - name: az2
    zookeeper: {hosts: "127.0.0.1:$zk_port", root: /metaproxy/az2}
proxy:
  settings: {log: "info,metaproxy=debug", log-format: text}
operator:
  settings: {lease-duration: 4s, renew-deadline: 3s, retry-period: 500ms, log: "info,metaproxy_operator=debug", log-format: text}
EOF
helm template metaproxy charts/metaproxy --namespace pegasus -f "$run/values.yaml" > "$run/chart.yaml"
args_of() { # args_of DEPLOYMENT LISTEN ADMIN: the container's args, bound to loopback ports
  python3 - "$run/chart.yaml" "$@" <<'EOF'
import sys, yaml
path, name, listen, admin = sys.argv[1:]
for d in yaml.safe_load_all(open(path)):
    if d and d["kind"] == "Deployment" and d["metadata"]["name"] == name:
        for a in d["spec"]["template"]["spec"]["containers"][0]["args"]:
            if a.startswith("--listen="):
                a = f"--listen=127.0.0.1:{listen}"
            elif a.startswith("--admin-listen="):
                a = f"--admin-listen=127.0.0.1:{admin}"
            print(a)
        break
else:
    sys.exit(f"no Deployment {name}")
EOF
}
mapfile -t op_args < <(args_of metaproxy-operator 0 "$op1_admin")
mapfile -t op2_args < <(args_of metaproxy-operator 0 "$op2_admin")
mapfile -t az1_args < <(args_of metaproxy-az1 "$p_az1" "$(free_port)")
mapfile -t az2_args < <(args_of metaproxy-az2 "$p_az2" "$(free_port)")
printf '  operator: %s\n' "${op_args[*]}"
printf '  az1 proxy: %s\n' "${az1_args[*]}"
az1_admin=${az1_args[1]##*:}; az2_admin=${az2_args[1]##*:}

say "Two operator replicas (the chart's default) and one proxy per zone"
POD_NAMESPACE=pegasus POD_NAME=operator-0 "$bin/metaproxy-operator" "${op_args[@]}" > "$run/operator-0.log" 2>&1 &
op0_pid=$!; pids+=($op0_pid)
wait_for "operator-0" curl -sf "127.0.0.1:$op1_admin/ready"
leader() { k get lease -n pegasus metaproxy-operator -o jsonpath='{.spec.holderIdentity}'; }
wait_for "operator-0 to hold the Lease" bash -c "[ \"\$(kubectl get lease -n pegasus metaproxy-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)\" = operator-0 ]"
POD_NAMESPACE=pegasus POD_NAME=operator-1 "$bin/metaproxy-operator" "${op2_args[@]}" > "$run/operator-1.log" 2>&1 &
pids+=($!)
wait_for "operator-1" curl -sf "127.0.0.1:$op2_admin/ready"
echo "  Lease metaproxy-operator held by $(leader); operator-1 stands by"
"$bin/metaproxy" "${az1_args[@]}" > "$run/proxy-az1.log" 2>&1 &
pids+=($!)
"$bin/metaproxy" "${az2_args[@]}" > "$run/proxy-az2.log" 2>&1 &
pids+=($!)
wait_for "the az1 proxy" curl -sf "127.0.0.1:$az1_admin/ready"
wait_for "the az2 proxy" curl -sf "127.0.0.1:$az2_admin/ready"

say "kubectl apply: table temp in both zones, on c3srv-ad with c3srv-bk as backup"
route() { # route NAME ZONE
  cat <<EOF
apiVersion: metaproxy.pegasus.io/v1alpha1
kind: PegasusTableRoute
metadata: {name: $1}
spec:
  table: temp
  zone: $2
  primary: {cluster: c3srv-ad, metaServers: ["127.0.0.1:$a1", "127.0.0.1:$a2"]}
  backup: {cluster: c3srv-bk, metaServers: ["127.0.0.1:$b1"]}
  active: primary
  # These simulated clusters have no duplication to wait for: the switchover flips at once.
  switchover: {fence: false}
EOF
}
{ route temp-az1 az1; echo ---; route temp-az2 az2; } | k apply -n pegasus -f -

query() { # query PROXY_PORT: one query_config for temp; prints the errors by kind as JSON
  "$bin/pegasus-load" --target "127.0.0.1:$1" --connections 1 --depth 1 --requests 1 --table temp --json \
    | json 'json.dumps(d.get("errors", {}))'
}
routed_to() { # routed_to ADMIN_PORT CLUSTER: the proxy's route for temp names CLUSTER
  [ "$(query "$(proxy_port_of "$1")")" = "{}" ] || return 1
  [ "$(curl -s "127.0.0.1:$1/routes" | json '[r["cluster"] for r in d["routes"] if r["table"] == "temp"][0]')" = "$2" ]
}
proxy_port_of() { if [ "$1" = "$az1_admin" ]; then echo "$p_az1"; else echo "$p_az2"; fi; }
served() { curl -s "127.0.0.1:$1/counters" | json "d['by_table'].get('temp', 0)"; }
wait_for "az1's clients to reach c3srv-ad" routed_to "$az1_admin" c3srv-ad
wait_for "az2's clients to reach c3srv-ad" routed_to "$az2_admin" c3srv-ad
echo "  both zones' proxies answer temp from c3srv-ad"

say "kubectl get ptr"
all_ready() { [ "$(k get ptr -n pegasus -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')" = 2 ]; }
wait_for "both routes Ready" all_ready
k get ptr -n pegasus | tee "$run/ptr.txt"
header=$(head -1 "$run/ptr.txt" | tr -s ' ')
[ "$header" = "NAME TABLE ZONE ACTIVE PRIMARY BACKUP MODE PHASE READY AGE" ] || fail "columns: $header"
row=$(grep '^temp-az1 ' "$run/ptr.txt" | tr -s ' ' | cut -d' ' -f1-8)
[ "$row" = "temp-az1 temp az1 c3srv-ad c3srv-ad c3srv-bk Manual True" ] || fail "row: $row"

say "kubectl patch: az1 switches temp to its backup c3srv-bk"
before=$(served "$b_admin")
k patch ptr temp-az1 -n pegasus --type merge -p '{"spec":{"active":"backup"}}'
wait_for "az1's proxy to route temp to c3srv-bk" routed_to "$az1_admin" c3srv-bk
# A query after the route changed (the one above may have raced the change).
[ "$(query "$p_az1")" = "{}" ] || fail "a query through az1 failed after the switchover"
after=$(served "$b_admin")
[ "$after" -gt "$before" ] || fail "no query reached c3srv-bk"
routed_to "$az2_admin" c3srv-ad || fail "az2 moved too"
echo "  az1 answers temp from c3srv-bk ($((after - before)) upstream call(s)); az2 stays on c3srv-ad"
k get ptr -n pegasus temp-az1

say "The leader stops (SIGTERM releases the Lease); the standby takes over"
kill -TERM "$op0_pid"
wait "$op0_pid" || fail "operator-0 exited with $?"
wait_for "operator-1 to hold the Lease" bash -c "[ \"\$(kubectl get lease -n pegasus metaproxy-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)\" = operator-1 ]"
echo "  Lease metaproxy-operator held by $(leader)"

say "kubectl delete: the znode goes, az1's clients get ERR_OBJECT_NOT_FOUND"
k delete ptr temp-az1 -n pegasus --wait=true --timeout=30s
zk_get() { "$(java_bin)" -cp "$zk_cp" org.apache.zookeeper.ZooKeeperMain -server "127.0.0.1:$zk_port" get "$1" 2>&1 || true; }
# Captured before grep: grep -q stopping early would fail the pipeline (pipefail).
az1_node=$(zk_get /metaproxy/az1/temp); az2_node=$(zk_get /metaproxy/az2/temp)
grep -q 'Node does not exist' <<< "$az1_node" || fail "/metaproxy/az1/temp is still there: $az1_node"
grep -q '"cluster":"c3srv-ad"' <<< "$az2_node" || fail "/metaproxy/az2/temp lost: $az2_node"
not_found() { [ "$(query "$p_az1")" = '{"err:ERR_OBJECT_NOT_FOUND": 1}' ]; }
wait_for "az1 to answer ERR_OBJECT_NOT_FOUND" not_found
routed_to "$az2_admin" c3srv-ad || fail "az2 lost temp"
echo "  /metaproxy/az1/temp removed; /metaproxy/az2/temp kept; az1 answers ERR_OBJECT_NOT_FOUND"

say "Every check passed in $(( $(date +%s) - start ))s"
