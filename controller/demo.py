"""`make demo`: bring up the mobile core under our controller and show that it forwards.

Starts a controller process and the `mobile_core` network, checks all-pairs reachability
(every host to every host and to the controller's service address), runs one iperf3 from a
terminal to the web server, prints a table, writes `results/demo/summary.json` and removes
everything it started.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from controller import topology
from controller.bench import common
from controller.emulation.net import Emulation, Options
from controller.emulation.processes import ControllerProcess
from controller.emulation.traffic import all_pairs, iperf3


def run_demo(topology_file: str, out_dir: str) -> int:
    topo = topology.load(topology_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="crs-demo-") as tmp, \
            ControllerProcess(Path(tmp), ["--topology", topology_file]) as ctl, \
            Emulation(topo, Options(controller_port=ctl.ofp_port)) as emu:
        emu.wait_connected(60)
        up_s = time.time() - t0
        print(f"{topo.name}: {len(topo.switches)} switches, {len(topo.hosts)} hosts, "
              f"up in {up_s:.1f} s; checking all pairs...", flush=True)
        failed = all_pairs(emu, [topo.service_ip])
        n = len(topo.hosts)
        pairs = n * (n - 1) + n
        client, server = topo.terminals()[0].name, "web"
        tcp = iperf3(emu, client, server, seconds=3)
        status = ctl.status()
    summary = {
        "topology": topo.name, "switches": len(topo.switches), "hosts": n,
        "network_up_s": round(up_s, 2),
        "pairs_tested": pairs, "pairs_reachable": pairs - len(failed),
        "unreachable": [f"{a} -> {b}" for a, b in failed],
        "iperf3": {"client": client, "server": server, "throughput_mbps": tcp["mbps"],
                   "retransmits": tcp["retransmits"]},
        "controller": {"packet_ins": status["counters"].get("packet_ins", 0)},
        "commit": common.commit(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(common.table([
        ["switches / hosts", f"{len(topo.switches)} / {n}"],
        ["network up (s)", up_s],
        ["pairs reachable", f"{pairs - len(failed)} / {pairs}"],
        [f"TCP {client} -> {server} (Mbit/s)", tcp["mbps"]],
        ["controller packet-ins", summary["controller"]["packet_ins"]],
    ], ["demo", "result"]))
    print(f"written: {out / 'summary.json'}")
    return 0 if not failed else 1
