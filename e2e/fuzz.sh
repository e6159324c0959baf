#!/usr/bin/env bash
# Runs the cargo-fuzz targets (docs/robustness.md, "Fuzzing"): the codec's in pegasus-rpc/fuzz,
# the route parsers' in proxy/fuzz. Each target starts from its committed seeds
# (<crate>/fuzz/seeds/<target>/) and checks the properties of pegasus_rpc::fuzz_logic or
# metaproxy::fuzz_logic, which the property tests also run on stable. Needs the nightly toolchain
# and cargo-fuzz (scripts/setup installs both).
#
#   e2e/fuzz.sh --ci      [TARGET...]  FUZZ_SECONDS (20) per target on a scratch corpus; fails on
#                                      any crash. What CI runs.
#   e2e/fuzz.sh --long    [TARGET...]  FUZZ_SECONDS (3600; 0 = until a crash) per target, growing
#                                      the kept corpus <crate>/fuzz/corpus/<target>/ (not committed)
#   e2e/fuzz.sh --measure [TARGET...]  FUZZ_SECONDS (60) per target from the seeds alone; prints
#                                      execs/s, total execs, coverage, corpus size, crashes
#   e2e/fuzz.sh --list                 the targets, as CRATE/TARGET
#   e2e/fuzz.sh --regression TARGET FILE
#                                      prints a crash input as a Rust byte string and the test
#                                      skeleton it becomes
#
# FUZZ_SANITIZER (none) picks the sanitizer: the workspace has no unsafe code, so none, which
# runs about twice as fast as address; the long run can set address to cover the dependencies'.
# Builds go to target/fuzz. A crash leaves its input in <crate>/fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate directory:target. A new target is a line here, a file in <crate>/fuzz/fuzz_targets, a
# [[bin]] in <crate>/fuzz/Cargo.toml, its property in the crate's fuzz_logic, and its seeds.
TARGETS=(
  pegasus-rpc:request_frame
  pegasus-rpc:reply_frame
  pegasus-rpc:query_config
  pegasus-rpc:admin
  proxy:route_record
  proxy:routes_file
  # operator:route_file   the operator's route-file YAML (its size limit, unknown fields refused):
  #                       an operator/fuzz crate like proxy/fuzz, once that parser has landed
)

mode=${1:-}
[ $# -gt 0 ] && shift
sanitizer=${FUZZ_SANITIZER:-none}
case "$mode" in
  --ci) secs=${FUZZ_SECONDS:-20} ;;
  --long) secs=${FUZZ_SECONDS:-3600} ;;
  --measure) secs=${FUZZ_SECONDS:-60} ;;
  --list) printf '%s\n' "${TARGETS[@]}" | tr : /; exit 0 ;;
  --regression)
    [ $# -eq 2 ] || { echo "usage: e2e/fuzz.sh --regression TARGET FILE" >&2; exit 64; }
    python3 - "$1" "$2" <<'EOF'
import sys
target, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
def esc(b):
    if b in b'\\"': return "\\" + chr(b)
    if 0x20 <= b < 0x7f: return chr(b)
    return {0x0a: "\\n", 0x09: "\\t", 0x0d: "\\r"}.get(b, f"\\x{b:02x}")
lit = "".join(esc(b) for b in data)
where = {"route_record": ("proxy/tests/route_props.rs", "metaproxy"),
         "routes_file": ("proxy/tests/route_props.rs", "metaproxy")}.get(target, ("pegasus-rpc/tests/codec_props.rs", "pegasus_rpc"))
func = {"request_frame": "request_input", "reply_frame": "reply_stream",
        "query_config": "query_config_payloads", "admin": "admin_payloads"}.get(target, target)
print(f"// {len(data)} bytes, for {where[0]}:")
print(f"""
/// <what the input is, what went wrong, what the fix changed> (fuzz target {target}).
#[test]
fn <what_it_checks>() {{
    let input: &[u8] = b"{lit}";
    {where[1]}::fuzz_logic::{func}(input);
    // and an assertion on the behaviour the fix gave, e.g. the error now returned
}}""")
EOF
    exit 0 ;;
  *) sed -n '2,22p' "$0" >&2; exit 64 ;;
esac

selected=()
if [ $# -eq 0 ]; then
  selected=("${TARGETS[@]}")
else
  for want in "$@"; do
    found=""
    for t in "${TARGETS[@]}"; do
      [ "${t#*:}" = "$want" ] || [ "$(tr : / <<<"$t")" = "$want" ] && found=$t
    done
    [ -n "$found" ] || { echo "fuzz.sh: no target $want (see --list)" >&2; exit 64; }
    selected+=("$found")
  done
fi

rustup run nightly rustc --version >/dev/null 2>&1 || { echo "fuzz.sh: no nightly toolchain (run scripts/setup)" >&2; exit 1; }
cargo fuzz --version >/dev/null 2>&1 || { echo "fuzz.sh: no cargo-fuzz (run scripts/setup)" >&2; exit 1; }

scratch=$(mktemp -d /tmp/metaproxy-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
fuzz() { # fuzz CRATE SUBCOMMAND ARGS...: cargo fuzz on CRATE/fuzz, sharing one target directory
  local krate=$1 sub=$2
  shift 2
  cargo +nightly fuzz "$sub" --fuzz-dir "$krate/fuzz" --sanitizer "$sanitizer" --target-dir target/fuzz "$@"
}

start=$(date +%s)
built=" "
for t in "${selected[@]}"; do
  krate=${t%%:*}
  if [[ "$built" != *" $krate "* ]]; then
    echo "fuzz.sh: building $krate/fuzz"
    fuzz "$krate" build >"$scratch/build-$krate.log" 2>&1 || { cat "$scratch/build-$krate.log" >&2; exit 1; }
    built="$built$krate "
  fi
done
build_secs=$(( $(date +%s) - start ))

failed=()
rows=()
for t in "${selected[@]}"; do
  krate=${t%%:*} target=${t#*:}
  seeds="$krate/fuzz/seeds/$target"
  if [ "$mode" = --long ]; then
    corpus="$krate/fuzz/corpus/$target"
  else
    corpus="$scratch/corpus-$target"
  fi
  mkdir -p "$corpus" "$krate/fuzz/artifacts/$target"
  opts=(-max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=4096
        -artifact_prefix="$krate/fuzz/artifacts/$target/")
  [ -f "$krate/fuzz/dicts/$target.dict" ] && opts+=(-dict="$krate/fuzz/dicts/$target.dict")
  log="$scratch/$target.log"
  echo "fuzz.sh: $krate/$target for ${secs}s (corpus $corpus, seeds $seeds)"
  status=0
  fuzz "$krate" run "$target" "$corpus" "$seeds" -- "${opts[@]}" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed+=("$krate/$target")
    echo "fuzz.sh: $krate/$target FAILED (exit $status):" >&2
    grep -m1 -A6 -E 'panicked at|ERROR: libFuzzer|==ERROR' "$log" >&2 || tail -40 "$log" >&2
    grep -h 'Test unit written to' "$log" >&2 || true
    echo "fuzz.sh: reproduce with: cargo +nightly fuzz run --fuzz-dir $krate/fuzz --sanitizer $sanitizer --target-dir target/fuzz $target <artifact>" >&2
  fi
  rows+=("$(printf '%-26s %10s %12s %6s %7s %14s %7s' "$krate/$target" "${rate:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done

echo
printf '%-26s %10s %12s %6s %7s %14s %7s\n' target "execs/s" "total execs" cov ft "corpus" crashes
printf '%s\n' "${rows[@]}"
echo "fuzz.sh: ${secs}s per target, sanitizer $sanitizer, build ${build_secs}s, total $(( $(date +%s) - start ))s, $(nproc) cores"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FUZZING FOUND CRASHES in ${failed[*]}: minimise (docs/robustness.md), fix, and add the input as a named regression test" >&2
  exit 1
fi
