"""Forwarding benchmark: our controller against Ryu's simple_switch_13, same run, same hosts.

For each controller, alternately and `repeat` times: a fresh controller process, a fresh
`mobile_core` network (links unshaped, so the datapath and not tc sets the rate), then
- TCP throughput, iperf3 terminal c1t1 -> server web (four switches on the path);
- round-trip time of established pairs, ping c1t1 -> c3t8 (five switches);
- first-ping time of new pairs (ARP and first packets through the controller).
"""
from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from controller import topology
from controller.bench import common
from controller.emulation.net import Emulation, Options
from controller.emulation.processes import ControllerProcess, wait_until
from controller.emulation.traffic import iperf3, ping_rtts

SIDES = {"crs": None, "simple_switch_13": "ryu.app.simple_switch_13"}
NEW_PAIRS = [("c1t2", "c2t2"), ("c1t3", "c3t3"), ("c2t4", "c3t4"), ("c1t5", "c2t5"),
             ("c2t6", "c3t6")]


def measure(side: str, topo: topology.Topology, workdir: Path, seconds: float) -> dict:
    with ControllerProcess(workdir / side, ryu_app=SIDES[side]) as ctl:
        with Emulation(topo, Options(controller_port=ctl.ofp_port, shaping=False)) as emu:
            emu.wait_connected(60)
            first = []
            for a, b in NEW_PAIRS:
                rtt = ping_rtts(emu, a, topo.host(b).ip, count=1)
                first += rtt
            far = topo.host("c3t8").ip
            wait_until(lambda: ping_rtts(emu, "c1t1", far, 1) and
                       ping_rtts(emu, "c1t1", topo.host("web").ip, 1), 20, "warm-up pings")
            rtts = ping_rtts(emu, "c1t1", far, count=50, interval_s=0.02)
            tput = iperf3(emu, "c1t1", "web", seconds)
    return {"throughput_mbps": tput["mbps"], "retransmits": tput["retransmits"],
            "rtt_ms": statistics.median(rtts) if rtts else None,
            "first_ping_ms": statistics.median(first) if first else None,
            "first_ping_lost": len(NEW_PAIRS) - len(first)}


def run(out_dir: str = "results/bench", repeat: int = 3, seconds: float = 5.0,
        topology_file: str = "topologies/mobile_core.yaml") -> dict[str, Any]:
    topo = topology.load(topology_file)
    runs: dict[str, list[dict]] = {s: [] for s in SIDES}
    with tempfile.TemporaryDirectory(prefix="crs-bench-") as tmp:
        for i in range(repeat):
            for side in SIDES:
                r = measure(side, topo, Path(tmp) / str(i), seconds)
                runs[side].append(r)
                print(f"run {i + 1}/{repeat} {side:17s} {r['throughput_mbps']:8.0f} Mbit/s  "
                      f"rtt {r['rtt_ms']:.3f} ms  first ping {r['first_ping_ms']:.2f} ms",
                      flush=True)
    sides = {}
    for side, rs in runs.items():
        sides[side] = {
            "runs": rs,
            "throughput_mbps": common.summary([r["throughput_mbps"] for r in rs]),
            "rtt_ms": common.summary([r["rtt_ms"] for r in rs if r["rtt_ms"] is not None]),
            "first_ping_ms": common.summary([r["first_ping_ms"] for r in rs
                                             if r["first_ping_ms"] is not None]),
        }

    def ratio(key: str) -> float | None:
        a, b = sides["crs"][key]["median"], sides["simple_switch_13"][key]["median"]
        return a / b if a and b else None

    result = {
        "parameters": {"topology": topo.name, "repeat": repeat, "iperf3_seconds": seconds,
                       "link_shaping": False, "throughput_path": "c1t1 -> web",
                       "rtt_path": "c1t1 -> c3t8", "new_pairs": NEW_PAIRS},
        "crs": sides["crs"], "simple_switch_13": sides["simple_switch_13"],
        "ratio": {"throughput_crs_over_reference": ratio("throughput_mbps"),
                  "rtt_crs_over_reference": ratio("rtt_ms"),
                  "first_ping_crs_over_reference": ratio("first_ping_ms")},
    }
    path = common.write(out_dir, "forwarding", result)
    rows = [[k, sides["crs"][k]["median"], sides["simple_switch_13"][k]["median"],
             result["ratio"][r]] for k, r in [
                 ("throughput_mbps", "throughput_crs_over_reference"),
                 ("rtt_ms", "rtt_crs_over_reference"),
                 ("first_ping_ms", "first_ping_crs_over_reference")]]
    print(common.table(rows, ["median of runs", "crs", "simple_switch_13", "crs/reference"]))
    print(f"written: {path}")
    return result
