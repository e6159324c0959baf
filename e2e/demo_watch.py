"""The demo's watcher (e2e/demo.sh): every 50 ms, what the operator's /routes and the two
simulated clusters show, written as `ms-since-start<TAB>who<TAB>what` lines when it changes.

    demo_watch.py T0_MS EVENTS_FILE OPERATOR_ADMIN PRIMARY_ADMIN BACKUP_ADMIN
"""

import json
import sys
import time
import urllib.request

t0, out, op, primary, backup = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]


def get(addr, path):
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=1) as r:
            return json.load(r)
    except Exception:
        return None


seen = {}


def note(who, key, value, text):
    if seen.get((who, key)) != value:
        seen[(who, key)] = value
        with open(out, "a") as f:
            f.write(f"{int(time.time() * 1000) - t0}\t{who}\t{text}\n")


while True:
    for r in get(op, "/routes") or []:
        table, status = r["spec"]["table"], r.get("status") or {}
        sw = status.get("switchover") or {}
        if sw.get("phase"):
            note(table, "phase", sw["phase"], f"switchover {sw['from']} -> {sw['to']}: {sw['phase']}")
        if status.get("activeCluster"):
            note(table, "active", status["activeCluster"], f"the record routes to {status['activeCluster']}")
        for c in status.get("conditions", []):
            if c["type"] == "FailedOver":
                note(table, "failover", (c["status"], c["reason"]), f"FailedOver={c['status']} {c['reason']}")
            if c["type"] == "PrimaryHealthy":
                note(table, "primary", c["status"], f"PrimaryHealthy={c['status']} (the operator's probes)")
    a, b = get(primary, "/counters"), get(backup, "/counters")
    if a and a["replica"]["dropped"] > 0:
        note("temp", "denied", True, "first write dropped by a fenced c3srv-ad replica (timeout*write)")
    if b and b["replica"]["by_rpc"].get("RPC_RRDB_RRDB_PUT", 0) > 0:
        note("temp", "new side", True, "first client write accepted by c3srv-bk")
    time.sleep(0.05)
