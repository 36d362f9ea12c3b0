"""Group commit keeps "the decision is on disk before its answer and its flows": many
terminals report an infection at once to a real controller process, which is SIGKILLed while
reports are in flight; after a restart on the same database every infection the controller
acknowledged is still there."""
from __future__ import annotations

import http.client
import threading
import time

from controller.bench import reports as bench
from controller.bench.reaction import write_configs
from controller.crs import messages as crsap
from controller.crs.policy import load_policy
from controller.emulation.processes import ControllerProcess, wait_until

TERMINALS = 400
SENDERS = 8


def test_no_acknowledged_decision_is_lost_to_a_sigkill(tmp_path):
    cfg = write_configs(tmp_path, bench.TOPOLOGY)
    policy = load_policy(tmp_path / "crs_policy.yaml")
    terms = bench.population(TERMINALS, groups=20)
    ctl_dir = tmp_path / "controller"
    ctl_dir.mkdir()
    bench.populate_store(ctl_dir / "crs.db", terms, policy, time.time())
    ctl = ControllerProcess(ctl_dir, ["--config", str(cfg), "--rest-host", "127.0.0.1"])
    acked: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(mine: list[bench.BenchTerminal]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ctl.rest_port, timeout=10)
        for t in mine:
            if stop.is_set():
                return
            raw = bench.report(t, crsap.next_seq(None, time.time()), time.time(),
                               infected=True)
            try:
                conn.request("POST", crsap.HTTP_PATH, raw, {"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
            except (OSError, http.client.HTTPException):
                return                      # the controller died under us
            if r.status == 200:
                answer = crsap.decode(body)
                crsap.verify(answer, t.key, crsap.ReplayState(), time.time())
                if answer.body["level"] == "INFECTED":
                    with lock:
                        acked.add(t.tid)

    with ctl:
        threads = [threading.Thread(target=sender, args=(terms[k::SENDERS],), daemon=True)
                   for k in range(SENDERS)]
        for th in threads:
            th.start()
        wait_until(lambda: len(acked) >= TERMINALS // 4, 60, "a quarter acknowledged")
        grouped = ctl.status()["counters"]     # several reports shared a commit
        ctl.kill()                          # SIGKILL, reports in flight
        stop.set()
        for th in threads:
            th.join(timeout=20)
        assert len(acked) < TERMINALS, "killed too late to catch reports in flight"
        ctl.start()
        levels = {r["id"]: r["level"] for r in ctl.get("/crs/v1/terminals")}
    lost = sorted(tid for tid in acked if levels.get(tid) != "INFECTED")
    assert not lost, f"{len(lost)} acknowledged infections lost: {lost[:5]}"
    assert grouped["crsap_group_commits"] < grouped["crs_msg_SCIReport"], grouped
