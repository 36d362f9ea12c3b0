"""The emulated worm on loopback (127.0.0.x hosts, small space): infection, posture file,
events, pacing, SIGTERM. No Mininet."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from corekit import ROOT

from controller import jsonfile
from controller.emulation.processes import wait_until
from controller.worm import host as worm_host
from controller.worm.host import WormConfig, WormHost
from controller.worm.posture import read_posture
from controller.worm.targets import parse_space


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(path: Path) -> list[dict]:
    return jsonfile.read_lines(path)


def make(tmp: Path, n: int, port: int, **kw) -> WormConfig:
    defaults = dict(space=parse_space("127.0.0.0/29"), scan_rate=20.0, detection_delay=0.3,
                    seed=7, marker="TESTWORM")
    defaults.update(kw)
    return WormConfig(name=f"h{n}", ip=f"127.0.0.{n}", posture=tmp / f"h{n}.posture.json",
                      events=tmp / f"h{n}.events.jsonl", port=port, **defaults)


def started(cfg: WormConfig) -> bool:
    """The worm wrote its start event: its socket is bound."""
    return any(e["event"] == "start" for e in events(cfg.events))


def start(cfg: WormConfig, stop: threading.Event) -> threading.Thread:
    t = threading.Thread(target=WormHost(cfg).run, args=(stop,))
    t.start()
    wait_until(lambda: started(cfg), 5, f"{cfg.name} listening")
    return t


def run_all(cfgs: list[WormConfig], done, timeout: float) -> None:
    """Start the worms in order (listeners first, seed last, so no early probe is lost) and
    stop them once `done()` holds (or fail at the deadline)."""
    stop = threading.Event()
    threads = [start(c, stop) for c in cfgs]
    try:
        wait_until(done, timeout, "the outbreak's end state")
    finally:
        stop.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_seed_infects_vulnerable_hosts_and_spares_the_others(tmp_path):
    port = free_udp_port()
    cfgs = [make(tmp_path, n, port, vulnerable=(n != 4)) for n in range(2, 7)]
    cfgs.append(make(tmp_path, 1, port, infected=True))

    def settled():   # every vulnerable host infected, and the spared one saw (and noted) probes
        infected = all("infection" in read_posture(tmp_path / f"h{n}.posture.json")
                       for n in (1, 2, 3, 5, 6))
        return infected and read_posture(tmp_path / "h4.posture.json").get("attackers")
    run_all(cfgs, settled, 10)

    for n in (1, 2, 3, 5, 6):
        doc = read_posture(tmp_path / f"h{n}.posture.json")
        assert doc["infection"]["worm"] == "Worm.Demo"
        inf = [e for e in events(tmp_path / f"h{n}.events.jsonl") if e["event"] == "infected"]
        assert len(inf) == 1
        if n == 1:
            assert inf[0]["by"] is None and doc["infection"]["by"] is None
        else:
            assert inf[0]["by"].startswith("127.0.0.")
            assert doc["infection"]["by"] == inf[0]["by"]
            assert abs(doc["infection"]["infected_at"] - inf[0]["t"]) < 0.5
    # the non-vulnerable host was probed, noted the attackers, but is not infected
    doc4 = read_posture(tmp_path / "h4.posture.json")
    assert "infection" not in doc4 and not doc4.get("threats")
    ev4 = events(tmp_path / "h4.events.jsonl")
    probed = [e for e in ev4 if e["event"] == "probed"]
    assert probed and all(not e["infects"] and not e["vulnerable"] for e in probed)
    assert {a["source"] for a in doc4["attackers"]} <= {e["by"] for e in probed}
    assert sum(a["count"] for a in doc4["attackers"]) <= len(probed)
    assert all(a["threat"] == "Worm.Demo" for a in doc4["attackers"])


def test_threat_and_attackers_appear_only_after_detection_delay(tmp_path):
    port = free_udp_port()
    victim = make(tmp_path, 2, port, detection_delay=0.8, scan_rate=0.0)
    seed = make(tmp_path, 1, port, infected=True, scan_rate=10.0, detection_delay=0.8,
                space=parse_space("127.0.0.2/32"))
    stop = threading.Event()
    tv = start(victim, stop)
    ts = start(seed, stop)
    # the victim's infection is written at once; detection comes 0.8 s later
    mid_victim = wait_until(lambda: "infection" in (d := read_posture(victim.posture)) and d,
                            5, "victim infected")
    mid_seed = read_posture(seed.posture)
    wait_until(lambda: read_posture(seed.posture).get("threats") and
               read_posture(victim.posture).get("threats"), 5, "both detections")
    wait_until(lambda: [e for e in events(victim.events) if e["event"] == "probed"], 5, "probes")
    stop.set()
    tv.join(5), ts.join(5)
    assert mid_victim["infection"]["by"] == "127.0.0.1"
    assert not mid_victim.get("attackers") and not mid_victim.get("threats")
    assert "infection" in mid_seed and not mid_seed.get("threats")
    end_victim, end_seed = read_posture(victim.posture), read_posture(seed.posture)
    assert end_victim["attackers"][0]["source"] == "127.0.0.1"
    assert end_victim["attackers"][0]["count"] >= 1
    assert end_victim["threats"][0]["name"] == "Worm.Demo"
    t = end_seed["threats"][0]
    assert 0.8 <= t["detected_at"] - end_seed["infection"]["infected_at"] <= 1.4
    ev = events(seed.events)
    detected = [e for e in ev if e["event"] == "threat_detected"]
    # the record carries the time the threat was written with, taken before the write: a
    # reaction to the file can never precede it
    assert detected and detected[0]["t"] == t["detected_at"]
    # the vulnerable victim acked every probe it got (scan_rate 0 so it never probes back)
    stop_ev = [e for e in ev if e["event"] == "stop"][0]
    got = len([e for e in events(victim.events) if e["event"] == "probed"])
    assert stop_ev["acked"] == got > 0


def test_scan_rate_is_kept_and_probes_are_counted_per_second(tmp_path):
    port = free_udp_port()
    listener = make(tmp_path, 2, port, vulnerable=False)
    seed = make(tmp_path, 1, port, infected=True, scan_rate=25.0,
                space=parse_space("127.0.0.2/32"), duration=2.0)
    stop = threading.Event()
    tl = start(listener, stop)
    totals = WormHost(seed).run(threading.Event())     # returns after its duration
    wait_until(lambda: len([e for e in events(listener.events) if e["event"] == "probed"])
               >= totals["sent"] - 1, 5, "the listener noting the last probes")
    stop.set()
    tl.join(5)
    assert 48 <= totals["sent"] <= 51                   # 25/s for 2 s
    per_second = [e for e in events(seed.events) if e["event"] == "probes"]
    assert sum(e["sent"] for e in per_second) == totals["sent"]
    assert totals["acked"] == 0                          # not vulnerable: no acks
    got = [e for e in events(listener.events) if e["event"] == "probed"]
    assert abs(len(got) - totals["sent"]) <= 1


def test_existing_posture_keys_are_kept(tmp_path):
    port = free_udp_port()
    cfg = make(tmp_path, 1, port, infected=True, scan_rate=0.0, detection_delay=0.1,
               duration=0.4)
    cfg.posture.write_text(json.dumps({"os": {"name": "MobileOS", "patch_level": 12},
                                       "firewall": True}))
    WormHost(cfg).run(threading.Event())
    doc = read_posture(cfg.posture)
    assert doc["os"]["patch_level"] == 12 and doc["firewall"] is True
    assert doc["threats"][0]["count"] == 1 and doc["infection"]["by"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp left


def test_not_infected_host_never_scans(tmp_path):
    port = free_udp_port()
    cfg = make(tmp_path, 1, port, duration=0.5)
    totals = WormHost(cfg).run(threading.Event())
    assert totals["sent"] == 0 and not totals["infected"]
    kinds = [e["event"] for e in events(cfg.events)]
    assert kinds == ["start", "stop"]


def test_main_refuses_bad_arguments(tmp_path, capsys):
    base = ["--name", "x", "--posture", str(tmp_path / "p"), "--events", str(tmp_path / "e")]
    assert worm_host.main(base + ["--ip", "300.1.1.1"]) == 2
    assert "not an IPv4 address" in capsys.readouterr().err
    assert worm_host.main(base + ["--ip", "127.0.0.1", "--space", "nope"]) == 2
    assert worm_host.main(base + ["--ip", "127.0.0.1", "--scan-rate", "-1"]) == 2
    assert worm_host.main(base + ["--ip", "127.0.0.1", "--strategy", "hitlist"]) == 2
    assert worm_host.main(base + ["--ip", "127.0.0.1", "--strategy", "bogus"]) == 2


def test_sigterm_stops_cleanly(tmp_path):
    port = free_udp_port()
    ev = tmp_path / "e.jsonl"
    cmd = [sys.executable, "-m", "controller.worm.host", "--name", "c1t1", "--ip", "127.0.0.1",
           "--posture", str(tmp_path / "p.json"), "--events", str(ev), "--port", str(port),
           "--infected", "--scan-rate", "5", "--space", "127.0.0.0/29", "--seed", "3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_until(lambda: ev.exists() and "infected" in ev.read_text(), 10, "the worm running")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    kinds = [e["event"] for e in events(ev)]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "infected" in kinds
