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
