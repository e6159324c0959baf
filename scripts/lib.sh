# Sourced by the scripts (not run): where the tools and shared files are, found the way the test
# harness finds them (tests/src/zk.rs, tests/src/k8s.rs), so that no script names a path of one
# particular machine. Call from the repository root.

# The project's shared directory (docs, the test API server): $METAPROXY_SHARED, else ../shared
# beside the repository, else the one scripts/setup recorded in .tools/shared, else ../shared
# beside the repository this one was cloned from (a CI clone of a local checkout). Prints nothing
# when none has k8s/crdserver-up.sh.
shared_dir() {
  local d origin
  origin=$(git config --get remote.origin.url 2>/dev/null || true)
  case "$origin" in
    ""|*://*|*@*:*) origin="" ;;
    *) origin="$origin/../shared" ;;
  esac
  for d in "${METAPROXY_SHARED:-}" ../shared .tools/shared "$origin"; do
    if [ -n "$d" ] && [ -f "$d/k8s/crdserver-up.sh" ]; then echo "$d"; return 0; fi
  done
  return 0
}

# The java to run: $JAVA_HOME/bin/java, else java on PATH.
java_bin() {
  if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi
}

# ZooKeeper's class path: $ZOOKEEPER_CLASSPATH, else Debian's zookeeper.jar (its manifest names
# its dependencies) with slf4j-simple.jar when present, so that the server writes a log.
zk_classpath() {
  if [ -n "${ZOOKEEPER_CLASSPATH:-}" ]; then echo "$ZOOKEEPER_CLASSPATH"; return 0; fi
  local jars=/usr/share/java cp
  [ -f "$jars/zookeeper.jar" ] || return 1
  cp="$jars/zookeeper.jar"
  [ -f "$jars/slf4j-simple.jar" ] && cp="$cp:$jars/slf4j-simple.jar"
  echo "$cp"
}

# ---------------------------------------------------------------------------------------------
# For the end-to-end scripts (e2e/*.sh): a run directory whose processes stop on exit, free
# ports, waiting for a check, ZooKeeper. Only functions: sourcing runs nothing.

# start_run NAME: a fresh run directory in $run (files and logs), an empty $pids for the
# processes started in the background (`pids+=($!)`), and traps that on exit stop them, then call
# on_cleanup when the script defines it, then remove $run (kept, and said, when keep_logs=true).
start_run() {
  run=$(mktemp -d -t "metaproxy-$1.XXXXXX")
  pids=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if declare -F on_cleanup >/dev/null; then on_cleanup; fi
  if [ "${keep_logs:-false}" = true ]; then echo "logs kept in $run"; else rm -rf "$run"; fi
}

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A step's heading.
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Stops the script with a failed check; the logs are kept. Its first words are $fail_label.
fail() { echo "${fail_label:-CHECK FAILED}: $*" >&2; keep_logs=true; exit 1; }

# wait_for DESCRIPTION COMMAND...: polls COMMAND for 30 s, then fails.
wait_for() {
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

# json EXPR: evaluates the Python expression EXPR over the JSON on stdin (as d) and prints it.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# start_zookeeper DIR PORT: a standalone ZooKeeper on 127.0.0.1:PORT in the background (its pid
# in $pids), its data under DIR, its log in DIR.log. Fails when there are no ZooKeeper jars. Wait
# for it with: wait_for ZooKeeper zk_serving PORT.
start_zookeeper() {
  local dir=$1 port=$2 cp
  cp=$(zk_classpath) || fail "no ZooKeeper jars (apt-get install zookeeper, or set ZOOKEEPER_CLASSPATH)"
  mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<ZOO
tickTime=500
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
ZOO
  "$(java_bin)" -Xmx128m -XX:+UseSerialGC -cp "$cp" \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg" > "$dir.log" 2>&1 &
  pids+=($!)
}

# zk_serving PORT: whether the ZooKeeper on 127.0.0.1:PORT serves (its `srvr` names a mode).
zk_serving() { timeout 0.5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf srvr >&3 && cat <&3" | grep -q '^Mode: '; }
