"""The switch-floor benchmark (controller/bench/switch.py): a SMOKE run (2 trials, a few
seconds) on a real userspace Open vSwitch bridge that checks it measures every quantity and
leaves nothing behind. No timing is asserted: a benchmark is not a test."""
import subprocess

import pytest

from controller import jsonfile
from controller.bench import switch


def test_first_after_picks_the_first_arrival_after_the_flow_mod():
    arrivals = [(1.0, 0, 0.9), (2.0, 1, 1.9), (3.0, 2, 2.9)]
    assert switch.first_after(arrivals, 1.5) == 2.0
    assert switch.first_after(arrivals, 3.0) is None


@pytest.mark.parametrize("port_type", ["system", "afxdp-nonpmd"])
def test_smoke_switch_benchmark_measures_and_cleans_up(tmp_path, port_type):
    res = switch.run(str(tmp_path), trials=2, idle_ports=3, port_type=port_type)
    doc = jsonfile.read(tmp_path / "switch.json")
    assert doc["benchmark"] == "switch" and doc["machine"]["cores"]
    assert doc["parameters"]["idle_ports"] == 3
    assert doc["parameters"]["port_type"] == port_type
    for key in ("allow_ms", "allow_batch_ms", "allow_barrier_ms", "drop_ms", "block_ms",
                "transit_ms"):
        assert doc[key]["n"] >= 1, key
        assert doc["with_idle_ports"][key]["n"] >= 1, key
    # the flow is what lets the datagrams through: nothing arrives before it
    assert res["allow_ms"]["min"] > 0
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert switch.BRIDGE not in bridges.split() and "crsflr-" not in netns
    assert switch.IDLE not in links
