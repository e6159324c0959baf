#!/usr/bin/env bash
# Checks the Helm chart the way an installation would meet it, without a cluster:
#   - helm lint --strict with each values file CI renders (charts/metaproxy/ci/*-values.yaml);
#   - helm template with each of them, for the oldest and the newest Kubernetes the chart
#     supports, validated by kubernetes-validate --strict against that version's API schemas;
#   - every PrometheusRule expression parses as PromQL.
# The rendered objects' meaning is tested in tests/tests/chart.rs; the route story against an API
# server is e2e/k8s.sh. Needs what scripts/setup installs (helm in .tools/bin, kubernetes-validate,
# promql-parser).
#
#   e2e/chart.sh [--update]
#     --update  rewrite charts/metaproxy/rendered/ (what each ci/ values file renders, committed so
#               that a template change shows in review; tests/tests/chart.rs fails when it drifts)
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest: the operator's client (kube 5 / k8s-openapi 0.29) starts at 1.33; the newest is the
# newest kube and kubernetes-validate know. Chart.yaml's kubeVersion says the same.
KUBE_VERSIONS=(1.33.0 1.37.0)

export PATH="$PWD/.tools/bin:$PATH"
chart=charts/metaproxy
out=$(mktemp -d /tmp/metaproxy-chart.XXXXXX)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
fail() { echo "CHART CHECK FAILED: $*" >&2; exit 1; }

values_files=("$chart"/ci/*-values.yaml)
[ ${#values_files[@]} -ge 2 ] || fail "expected at least two values files in $chart/ci"

if [ "${1:-}" = --update ]; then
  mkdir -p "$chart/rendered"
  rm -f "$chart"/rendered/*.yaml
  for values in "${values_files[@]}"; do
    name=$(basename "$values" -values.yaml)
    helm template metaproxy "$chart" --namespace pegasus -f "$values" > "$chart/rendered/$name.yaml"
    echo "chart: wrote $chart/rendered/$name.yaml"
  done
  exit 0
fi

for values in "${values_files[@]}"; do
  name=$(basename "$values" -values.yaml)
  helm lint --strict --quiet "$chart" -f "$values" > "$out/lint.txt" 2>&1 \
    || { cat "$out/lint.txt" >&2; fail "helm lint --strict with $values"; }
  echo "chart: helm lint --strict ($name): ok"
  for k in "${KUBE_VERSIONS[@]}"; do
    manifest="$out/$name-$k.yaml"
    helm template metaproxy "$chart" --namespace pegasus --kube-version "$k" -f "$values" > "$manifest" \
      || fail "helm template with $values for Kubernetes $k"
    python3 -m kubernetes_validate --strict --quiet -k "$k" "$manifest" > "$out/validate.txt" 2>&1 \
      || { cat "$out/validate.txt" >&2; fail "kubernetes-validate --strict -k $k ($name)"; }
    # The Prometheus Operator's kinds have no schema there (tests/tests/chart.rs checks them).
    grep -v "Couldn't find schema for kind \(PrometheusRule\|ServiceMonitor\) " "$out/validate.txt" >&2 || true
    echo "chart: $(grep -c '^kind:' "$manifest") objects ($name) valid for Kubernetes $k"
  done
done

# PyYAML comes with kubernetes-validate.
python3 - "$out"/*.yaml <<'EOF'
import sys
import promql_parser
import yaml

count = 0
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "PrometheusRule":
            continue
        for group in doc["spec"]["groups"]:
            for rule in group["rules"]:
                try:
                    promql_parser.parse(rule["expr"])
                except Exception as e:
                    sys.exit(f"CHART CHECK FAILED: {path}: {rule['alert']}: PromQL does not parse ({e})")
                count += 1
if count == 0:
    sys.exit("CHART CHECK FAILED: no PrometheusRule expression was rendered")
print(f"chart: {count} PromQL expressions parse")
EOF
echo "chart: every check passed in $(( $(date +%s) - start ))s"
