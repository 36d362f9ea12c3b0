"""Forwarding benchmark: our controller against Ryu's simple_switch_13, same run, same hosts.

For each controller, alternately and `repeat` times: a fresh controller process, a fresh
`mobile_core` network (links unshaped, so the datapath and not tc sets the rate), then
- TCP throughput, iperf3 terminal c1t1 -> server web (four switches on the path);
- round-trip time of established pairs, ping c1t1 -> c3t8 (five switches);
- first-ping time of new pairs (ARP and first packets through the controller);
then, once per controller, all-pairs ping on `metro` (every host pings every other, all
sources at once): how long it takes, how many packet-ins it cost, and how many flows each
switch holds afterwards. Ours runs there twice: learning (no topology file, as the reference)
and with the topology file (admission open), where hosts are placed before they send.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from controller import topology
from controller.bench import common
from controller.emulation.net import Emulation, Options
from controller.emulation.processes import ControllerProcess, wait_until
from controller.emulation.traffic import all_pairs, iperf3, ping_rtts

SIDES = {"crs": None, "simple_switch_13": "ryu.app.simple_switch_13"}
NEW_PAIRS = [("c1t2", "c2t2"), ("c1t3", "c3t3"), ("c2t4", "c3t4"), ("c1t5", "c2t5"),
             ("c2t6", "c3t6")]


def measure(side: str, topo: topology.Topology, workdir: Path, seconds: float) -> dict:
    with ControllerProcess(workdir / side, ryu_app=SIDES[side]) as ctl:
        with Emulation(topo, Options(controller_port=ctl.ofp_port, shaping=False,
                                         patch_links=True)) as emu:
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


ALL_PAIRS_SIDES = ("crs", "crs_topology", "simple_switch_13")


def flows_per_switch(emu: Emulation, tables: tuple[int, ...] | None) -> dict[str, int]:
    """Flows each switch holds (in `tables`, or all), read from the switch itself."""
    import subprocess
    out = {}
    for sw in emu.net.switches:
        dump = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", sw.name],
                              capture_output=True, text=True, check=True).stdout
        rows = [ln for ln in dump.splitlines() if "priority=" in ln]
        if tables is not None:
            rows = [ln for ln in rows if any(f"table={t}," in ln for t in tables)]
        out[sw.name] = len(rows)
    return out


def measure_all_pairs(side: str, topo: topology.Topology, workdir: Path) -> dict:
    """All-pairs ping on `topo`: seconds, failures, packet-ins, flows per switch."""
    import time

    import yaml
    extra: list[str] = []
    if side == "crs_topology":
        cfg = workdir / side / "controller.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(yaml.safe_dump({"topology": str(Path(topo.file).resolve()),
                                       "admission": {"mode": "open"}}))
        extra = ["--config", str(cfg)]
    app = SIDES["simple_switch_13" if side == "simple_switch_13" else "crs"]
    with ControllerProcess(workdir / side, extra, ryu_app=app) as ctl:
        with Emulation(topo, Options(controller_port=ctl.ofp_port, shaping=False,
                                         patch_links=True)) as emu:
            emu.wait_connected(60)
            t1 = time.perf_counter()
            failed = all_pairs(emu)
            seconds = time.perf_counter() - t1
            flows = flows_per_switch(emu, None if side == "simple_switch_13" else (2, 3))
            counters = ctl.status()["counters"] if side != "simple_switch_13" else {}
    return {"seconds": seconds, "failed_pairs": len(failed),
            "pairs": len(topo.hosts) * (len(topo.hosts) - 1), "hosts": len(topo.hosts),
            "flows_per_switch": flows, "max_flows": max(flows.values()),
            "max_flows_per_host": max(flows.values()) / len(topo.hosts),
            "packet_ins": {k: v for k, v in counters.items() if k.startswith("packet_in_")}}


def run(out_dir: str = "results/bench", repeat: int = 3, seconds: float = 5.0,
        topology_file: str = "topologies/mobile_core.yaml",
        all_pairs_file: str | None = "topologies/metro.yaml") -> dict[str, Any]:
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
        pairs: dict[str, dict] = {}
        if all_pairs_file:
            big = topology.load(all_pairs_file)
            for side in ALL_PAIRS_SIDES:
                pairs[side] = measure_all_pairs(side, big, Path(tmp) / "all-pairs")
                r = pairs[side]
                print(f"all-pairs {big.name} {side:17s} {r['seconds']:6.1f} s  "
                      f"{r['failed_pairs']} failed  max {r['max_flows']} flows/switch "
                      f"({r['hosts']} hosts)", flush=True)
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
                       "link_shaping": False, "inter_switch_links": "patch ports",
                       "throughput_path": "c1t1 -> web",
                       "rtt_path": "c1t1 -> c3t8", "new_pairs": NEW_PAIRS},
        "crs": sides["crs"], "simple_switch_13": sides["simple_switch_13"],
        "ratio": {"throughput_crs_over_reference": ratio("throughput_mbps"),
                  "rtt_crs_over_reference": ratio("rtt_ms"),
                  "first_ping_crs_over_reference": ratio("first_ping_ms")},
        "all_pairs": {"topology": all_pairs_file,
                      "flows_counted": "tables 2 and 3 for ours, every table for the "
                                       "reference (it has one)", **pairs},
    }
    path = common.write(out_dir, "forwarding", result)
    rows = [[k, sides["crs"][k]["median"], sides["simple_switch_13"][k]["median"],
             result["ratio"][r]] for k, r in [
                 ("throughput_mbps", "throughput_crs_over_reference"),
                 ("rtt_ms", "rtt_crs_over_reference"),
                 ("first_ping_ms", "first_ping_crs_over_reference")]]
    print(common.table(rows, ["median of runs", "crs", "simple_switch_13", "crs/reference"]))
    if pairs:
        print(common.table([[side, r["seconds"], r["failed_pairs"], r["max_flows"],
                             r["max_flows_per_host"], sum(r["packet_ins"].values()) or None]
                            for side, r in pairs.items()],
                           ["all-pairs ping", "seconds", "failed", "max flows/switch",
                            "per host", "packet-ins"]))
    print(f"written: {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="crs bench forwarding",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--seconds", type=float, default=5.0, help="each throughput test")
    a = ap.parse_args(argv)
    run(a.out, a.repeat, a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
