"""The demo's closing report (e2e/demo.sh): the kv workloads' results, checked (no acknowledged
write lost by the planned switchover; no more lost by the automatic failover than duplication
had not confirmed when the primary died), the timeline the watcher, the demo and the operator's
log tell, and a summary. Exit status 1 when a check fails.

    demo_report.py RUN_DIR EVENTS_FILE UNCONFIRMED_STAT_WRITES T0_MS
"""

import datetime
import json
import re
import sys

run, events, unconfirmed, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ok = True


def report(table):
    r = json.load(open(f"{run}/kv-{table}.json"))
    v = r["verify"]
    errors = ", ".join(f"{k} {n}" for k, n in r["errors"].items()) or "none"
    print(
        f"  {table}: {r['writes']['ok']} writes and {r['reads']['ok']} reads acknowledged, "
        f"{r['writes']['failed'] + r['reads']['failed']} failed ({errors}); read back from "
        f"c3srv-bk: {v['ok']} of {v['checked']}, lost {v['lost']}, wrong {v['wrong']}, "
        f"unreadable {v['unreadable']}"
    )
    return r, v


_, vt = report("temp")
_, vs = report("stat")
if vt["lost"] or vt["wrong"] or vt["unreadable"] or vt["checked"] == 0:
    print("DEMO CHECK FAILED: temp lost acknowledged writes across a planned switchover", file=sys.stderr)
    ok = False
if vs["wrong"] or vs["unreadable"] or vs["lost"] > unconfirmed or vs["checked"] == 0:
    print(
        f"DEMO CHECK FAILED: stat lost {vs['lost']} writes, more than the {unconfirmed} "
        "duplication had not confirmed",
        file=sys.stderr,
    )
    ok = False

lines = []
for line in open(events):
    t, who, what = line.rstrip("\n").split("\t", 2)
    lines.append((int(t), who, what))
# The operator's own account: its switchover and failover events, and its probes' turns.
STEPS = ("SwitchoverStarted", "SwitchoverPhase", "SwitchoverAborting", "Flipped", "FailoverStarted",
         "FailedOver", "SwitchoverCompleted", "SwitchoverAborted")
ansi = re.compile(r"\x1b\[[0-9;]*m")
for line in open(f"{run}/operator.log", errors="replace"):
    line = ansi.sub("", line)
    m = re.match(r"(\S+)\s+\w+\s+.*?metaproxy_operator::(\w+): (.*)", line)
    if not m:
        continue
    stamp, module, rest = m.groups()
    why = re.search(r' reason="?(\w+)"?', rest)
    if module == "reconcile" and why and why.group(1) in STEPS:
        what = f"operator: {rest[:why.start()]}"
    elif module == "probe" and "probes" in rest:
        what = "operator: " + re.sub(r' error=.*', '', rest)
    else:
        continue
    try:
        at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        continue
    table = re.search(r"table=(\w+)", line)
    lines.append((int(at * 1000) - t0, table.group(1) if table else "", what[:220]))
# By time only: one reconcile's log lines share a time and keep their order.
lines.sort(key=lambda line: line[0])
print("\nTimeline (seconds since the start; about what; what)")
for t, who, what in lines:
    print(f"  {t / 1000:7.3f}  {who:5}  {what}")


def at(who, text):
    return next((t for t, w, x in lines if w == who and text in x), None)


def secs(a, b):
    return f"{(b - a) / 1000:.2f} s" if a is not None and b is not None else "n/a"


print("\nSummary")
asked, done = at("demo", "spec.active: backup"), at("temp", ": Completed")
print(f"  planned switchover of temp, edit to Completed: {secs(asked, done)} "
      "(fence, fenceSettle 1 s, drain, flip, reconfig*all)")
print(f"  write-fence window (first write denied on c3srv-ad to first accepted on c3srv-bk): "
      f"{secs(at('temp', 'first write dropped'), at('temp', 'first client write'))}")
print(f"  acknowledged writes lost, planned switchover: {vt['lost']} of {vt['checked']}")
death = at("demo", "dies")
print(f"  c3srv-ad death to stat's record flip: {secs(death, at('stat', 'routes to c3srv-bk'))} "
      "(window: 4 failed probes 500 ms apart)")
print(f"  acknowledged writes lost, automatic failover: {vs['lost']} of {vs['checked']} "
      f"(duplication had not confirmed {unconfirmed} when c3srv-ad died)")
sys.exit(0 if ok else 1)
