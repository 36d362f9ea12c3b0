"""EAP-TLS through a RADIUS back end: results/bench/auth_radius.json.

One FreeRADIUS server (controller/emulation/radiusserver.py: generated configuration, test
certificates, a free port on 127.0.0.1) serves both sides in the same run:
  ours:      our controller (admission.backend: radius) relaying for a terminal of the
             ``minimal`` Mininet network (EAPOL through the switch's LOCAL port);
  reference: hostapd 2.10 (``driver=wired``, ``auth_server_addr``) on one end of a veth pair
             in the root namespace, the terminal end in a namespace of our own.
The same wpa_supplicant 2.10 configuration (EAP-TLS, the same client certificate) on each
side; its ``-t`` timestamps give each exchange, CTRL-EVENT-EAP-STARTED to
CTRL-EVENT-EAP-SUCCESS (controller/bench/wpa.py): the first one, then ``runs``
re-authentications (control command REAUTHENTICATE), spaced as our per-port EAPOL-Start
bucket allows, on both sides alike. FreeRADIUS keeps no TLS session cache: every exchange is
a full handshake.

Run: ``crs bench auth_radius`` (about 1 min with the defaults; not part of ``crs bench all``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.bench import common
from controller.bench.wpa import (
    Ctrl,
    _ip,
    certificate_config,
    exchanges,
    start_supplicant,
    stop_process,
    wait_results,
    write_private,
)
from controller.emulation.processes import (
    ROOT,
    ControllerProcess,
    Timeout,
    controller_config,
    wait_until,
)

IDENTITY = "c1t1@crs.example"
START_PACE_S = 1.1     # our authenticator's EAPOL-Start bucket: 3, then 1 per second


def hostapd_radius_config(interface: str, port: int, secret: str) -> str:
    """hostapd.conf of one wired 802.1X port relaying to a RADIUS server on 127.0.0.1."""
    return "\n".join([f"interface={interface}", "driver=wired", "ieee8021x=1",
                      "eapol_version=2", "own_ip_addr=127.0.0.1", "nas_identifier=hostapd",
                      "auth_server_addr=127.0.0.1", f"auth_server_port={port}",
                      f"auth_server_shared_secret={secret}", "logger_stdout=-1",
                      "logger_stdout_level=2", ""])


def measure(log: Path, ctrl: Ctrl, runs: int, timeout_s: float) -> dict[str, Any]:
    """The first exchange, then `runs` re-authentications one at a time."""
    wait_results(log, 1, timeout_s)
    wait_until(ctrl.ready, 10, "wpa_supplicant control interface")
    for k in range(runs):
        time.sleep(START_PACE_S)
        if ctrl.request("REAUTHENTICATE").strip() != "OK":
            raise RuntimeError("REAUTHENTICATE refused")
        wait_results(log, k + 2, timeout_s)
    ex = exchanges(log.read_text(errors="replace"))
    s = common.summary(ex.success_ms[1:])
    return {"first_ms": ex.success_ms[0] if ex.success_ms else None, "reauth_ms": s,
            "p50_ms": s["p50"], "p99_ms": s["p99"], "failures": len(ex.failure_ms)}


def reference(work: Path, conf: Path, port: int, secret: str, runs: int,
              timeout_s: float) -> dict[str, Any]:
    """hostapd in the root namespace, the supplicant in a namespace of ours; both removed
    (by name, by PID) in a `finally`."""
    tag = os.urandom(3).hex()
    ns, t_if, a_if = f"crs-r-{tag}", f"t{tag}r", f"a{tag}r"
    procs: list[subprocess.Popen] = []
    made_ns = made_link = False
    try:
        _ip("netns", "add", ns)
        made_ns = True
        _ip("link", "add", a_if, "type", "veth", "peer", "name", t_if, "netns", ns)
        made_link = True
        _ip("link", "set", a_if, "up")
        _ip("-n", ns, "link", "set", t_if, "up")
        hconf = work / "hostapd.conf"
        write_private(hconf, hostapd_radius_config(a_if, port, secret))
        hlog = work / "hostapd.out"
        with open(hlog, "w") as out:
            procs.append(subprocess.Popen(["hostapd", str(hconf)], stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_until(lambda: "AP-ENABLED" in hlog.read_text(errors="replace")
                   or procs[0].poll() is not None, 30, "hostapd enabled")
        if procs[0].poll() is not None:
            raise RuntimeError(f"hostapd exited: {hlog.read_text()[-500:]}")
        ctrl_dir = work / "ctrl-ref"
        wconf = write_private(work / "wpa-ref.conf", conf.read_text().replace(
            f"ctrl_interface={work / 'ctrl'}", f"ctrl_interface={ctrl_dir}"))
        log = work / "wpa-ref.out"
        procs.append(start_supplicant(t_if, wconf, log, netns=ns))
        return measure(log, Ctrl(ctrl_dir, t_if), runs, timeout_s)
    finally:
        for p in reversed(procs):
            stop_process(p)
        if made_link:
            subprocess.run(["ip", "link", "delete", a_if], capture_output=True)
        if made_ns:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def ours(work: Path, conf: Path, port: int, secret_file: Path, runs: int,
         timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    from controller import topology
    from controller.emulation.net import start_network
    topo_path = ROOT / "topologies/minimal.yaml"
    cfg = controller_config(work / "controller.yaml", topo_path, session_s=3600, extra={
        "admission": {"backend": "radius", "radius": {"servers": [
            {"host": "127.0.0.1", "port": port, "secret_file": str(secret_file)}]}}})
    with ControllerProcess(work / "ctl", cfg) as ctl:
        emu = start_network(topology.load(topo_path), ctl)
        p = None
        try:
            log = work / "wpa-ours.out"
            p = start_supplicant("c1t1-eth0", conf, log, popen=lambda argv, out: emu.popen(
                "c1t1", argv, stdout=out, stderr=subprocess.STDOUT))
            res = measure(log, Ctrl(work / "ctrl", "c1t1-eth0"), runs, timeout_s)
            counters = ctl.status().get("counters", {})
        finally:
            if p is not None:
                stop_process(p)
            emu.stop()
    return res, {k: v for k, v in counters.items()
                 if k.startswith(("radius_", "dot1x_success", "dot1x_failure"))}


def run(out_dir: str = "results/bench", runs: int = 20, timeout_s: float = 30.0,
        workdir: str | None = None) -> dict[str, Any]:
    from controller.bench.auth_reference import versions
    from controller.emulation.radiusserver import FreeRadius, Pki
    if runs < 1:
        raise ValueError("runs must be >= 1")
    with tempfile.TemporaryDirectory(prefix="crs-bench-radius-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        pki = Pki(work / "pki")
        cert, key = pki.issue("client", IDENTITY)
        conf = write_private(work / "wpa.conf", certificate_config(
            IDENTITY, "TLS", pki.ca, cert, key, ctrl_dir=work / "ctrl"))
        srv = FreeRadius(pki).start()
        try:
            secret_file = srv.secret_file(work / "radius.secret")
            print(f"auth_radius: EAP-TLS via FreeRADIUS, hostapd then ours, 1 + {runs} "
                  "exchanges each", flush=True)
            ref = reference(work, conf, srv.port, srv.secret, runs, timeout_s)
            mine, counters = ours(work, conf, srv.port, secret_file, runs, timeout_s)
        finally:
            srv.remove()
    res = {"method": "EAP-TLS (ECDSA P-256 certificates, TLS 1.2, no session resumption)",
           "setup": "one FreeRADIUS 3.2 on 127.0.0.1 for both; ours: crs controller "
                    "(admission.backend radius), Mininet minimal, EAPOL via the LOCAL port; "
                    "reference: hostapd driver=wired with auth_server_addr, veth pair",
           "versions": {**versions(), "freeradius": _freeradius_version()},
           "parameters": {"runs": runs, "start_pace_s": START_PACE_S},
           "ours": mine, "reference": ref, "controller_counters": counters,
           "ratio": {"p50_ours_over_reference": _ratio(mine["p50_ms"], ref["p50_ms"]),
                     "p99_ours_over_reference": _ratio(mine["p99_ms"], ref["p99_ms"])}}
    path = common.write(out_dir, "auth_radius", res)
    print(report_table(res))
    print(f"wrote {path}")
    return res


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _freeradius_version() -> str:
    try:
        r = subprocess.run(["freeradius", "-v"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def report_table(res: dict[str, Any]) -> str:
    rows = [[label, s["reauth_ms"]["n"], s["p50_ms"], s["p99_ms"], s["first_ms"], s["failures"]]
            for label, s in (("ours + FreeRADIUS", res["ours"]),
                             ("hostapd + FreeRADIUS", res["reference"]))]
    r = res["ratio"]
    rows.append(["ratio ours/hostapd", None, r["p50_ours_over_reference"],
                 r["p99_ours_over_reference"], None, None])
    return common.table(rows, ["EAP-TLS (STARTED->SUCCESS)", "n", "p50 ms", "p99 ms",
                               "first ms", "failures"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="crs bench auth_radius", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args(argv)
    try:
        run(a.out, a.runs)
    except (RuntimeError, ValueError, Timeout) as exc:
        print(f"bench auth_radius: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
