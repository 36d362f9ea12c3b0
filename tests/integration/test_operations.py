"""The operator's tools during one emulated run: a real Prometheus (Debian's, started by the
test on a free port with its own configuration and data, ended by PID) scrapes GET /metrics,
and `crs events --follow` streams what happens; PromQL through Prometheus' HTTP API and the
event lines both tell what happened (two terminals authenticated, one infected, isolated,
updated and released)."""
import json
import queue
import subprocess
import threading
import time

from nethelpers import PY

from controller.emulation.processes import wait_until
from controller.emulation.promserver import Prometheus

INFECTED = {"threats": [{"name": "Worm.Demo", "count": 1, "cleaned": False}]}


def follower(net, *args):
    """`crs events --follow` on the controller's audit log: (process, queue of events)."""
    proc = subprocess.Popen([PY, "-m", "controller.cli", "events", "--follow", "--from-start",
                             "--audit", str(net.tmp / "audit.jsonl"), *args],
                            stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in proc.stdout],
                     daemon=True).start()
    return proc, lines


def collect(lines, until, timeout: float) -> list:
    got, deadline = [], time.monotonic() + timeout
    while not until(got):
        try:
            got.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"events so far: {got}") from None
    return got


def test_prometheus_and_the_event_stream_see_the_same_run(crs):
    net = crs(topo="topologies/minimal.yaml")
    prom = Prometheus([f"127.0.0.1:{net.ctl.rest_port}"]).start()
    everything = follower(net, "--type", "authentication", "--type", "decision",
                          "--type", "release")
    only_c1t2 = follower(net, "--terminal", "c1t2")
    try:
        net.terminal("c1t1")
        post = net.terminal("c1t2")
        net.wait_level("c1t1", "COMPLIANT")
        net.set_posture(post, **INFECTED)
        # the agent reports, the SCS isolates c1t2 and pushes the update, the agent fetches
        # it and reports clean: released
        def released_from_isolation(evs):     # (a first clean report releases too: from
            return [e for e in evs if e["type"] == "release" and    # the UNKNOWN limits)
                    e["terminal"] == "c1t2@crs.example" and "isolate" in e["detail"]["was"]]
        evs = collect(everything[1], released_from_isolation, 60)
        auth = {e["terminal"] for e in evs if e["type"] == "authentication"}
        assert auth == {"c1t1@crs.example", "c1t2@crs.example"}
        isolated = [e for e in evs if e["type"] == "decision" and
                    e["terminal"] == "c1t2@crs.example" and e["detail"]["isolate"]]
        assert isolated and isolated[0]["detail"]["level"] == "INFECTED"
        assert released_from_isolation(evs)[0]["t"] > isolated[0]["t"]
        assert all(e["v"] == 1 for e in evs)
        mine = collect(only_c1t2[1], released_from_isolation, 10)
        assert {e["terminal"] for e in mine} == {"c1t2@crs.example"}
        assert {"authentication", "decision", "report", "release"} <= {e["type"] for e in mine}

        q = prom.value
        wait_until(lambda: q('crs_decisions_total{level="INFECTED",action="isolate"}') == 1,
                   20, "Prometheus scraped the isolation")
        wait_until(lambda: q('crs_terminals{level="COMPLIANT"}') == 2, 20,
                   "Prometheus scraped the release")
        assert q("sum(crs_eap_successes_total)") == 2            # = terminals authenticated
        assert q('crs_eap_successes_total{method="psk"}') == 2
        assert q("crs_sessions") == 2 and q("crs_switches_connected") == 1
        assert q('crs_crsap_messages_total{status="200"}') >= 4
        assert q('sum(crs_flow_mods_total{table="1"})') > 0
        assert q("crs_eap_exchange_seconds_count") == 2
        p99 = q("histogram_quantile(0.99, sum by (le) (crs_reaction_seconds_bucket))")
        assert p99 is not None and 0 < p99 <= 1.0
        # an operator's endpoint: not served to terminals
        out = net.h("c1t1").cmd(
            "python3 -c \"import urllib.request, urllib.error\ntry:\n urllib.request."
            f"urlopen('http://10.0.100.254:{net.ctl.rest_port}/metrics', timeout=5)\n"
            "except urllib.error.HTTPError as e:\n print('status', e.code)\"")
        assert "status 403" in out, out
    finally:
        for proc, _ in (everything, only_c1t2):
            proc.terminate()
            proc.wait(timeout=10)
        prom.stop()
