"""Forwarding on real Open vSwitch + Mininet + ryu-manager, admission open."""
import signal
import subprocess
from pathlib import Path

import pytest
from nethelpers import ROOT, framework_args, ping

from controller.emulation.processes import ControllerProcess, wait_until
from controller.emulation.traffic import all_pairs, iperf3


def test_minimal_all_pairs_reachable(controller, network):
    ctl = controller()
    emu = network("topologies/minimal.yaml", ctl)
    assert all_pairs(emu, [emu.topo.service_ip]) == []
    st = ctl.status()
    assert st["counters"]["packet_ins"] > 0 and st["admission"] == "open"


def test_mobile_core_all_pairs_and_tcp(controller, network):
    ctl = controller("--topology", str(ROOT / "topologies/mobile_core.yaml"))
    emu = network("topologies/mobile_core.yaml", ctl, shaping=True)
    assert all_pairs(emu, [emu.topo.service_ip]) == []
    tcp = iperf3(emu, "c3t8", "web", seconds=2)
    assert tcp["mbps"] > 4, f"TCP moved {tcp['mbps']:.1f} Mbit/s"


def test_controller_killed_and_restarted_forwarding_recovers(controller, network, tmp_path):
    ctl = controller()
    emu = network("topologies/minimal.yaml", ctl)
    a, b, web = emu.host("c1t1"), emu.host("c1t2"), emu.host("update")
    assert ping(a, b.IP()) and ping(a, web.IP())
    ctl.kill(signal.SIGKILL)
    # fail-mode secure: installed flows keep working while the controller is gone
    assert ping(a, b.IP())
    # a restarted controller on the same port takes the switches back
    ctl2 = ControllerProcess(tmp_path, framework_args(), ofp_port=ctl.ofp_port,
                             rest_port=ctl.rest_port).start()
    try:
        wait_until(lambda: ctl2.status()["switches"] == [1], 60, "switch reconnect")
        wait_until(lambda: ping(b, web.IP()) and ping(web, a.IP()), 30,
                   "forwarding after restart")
        assert ctl2.status()["counters"]["switch_connects"] == 1
    finally:
        ctl2.stop()


def test_users_own_mininet_tree(controller):
    """`mn --topo tree,depth=2,fanout=3` pointed at our controller: no topology file."""
    import os
    from functools import partial

    from controller.emulation.net import acquire_lock, release_lock
    from controller.emulation.record import Record, existing_bridges, teardown
    from mininet.net import Mininet
    from mininet.node import OVSSwitch, RemoteController
    from mininet.topolib import TreeTopo
    ctl = controller()
    lock = acquire_lock()
    topo = TreeTopo(depth=2, fanout=3)
    assert not existing_bridges() & set(topo.switches()), "tree bridge names already in use"
    switch = partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13")
    net = Mininet(topo=topo, switch=switch, controller=None, build=False, autoSetMacs=True)
    net.addController("c0", controller=RemoteController, ip="127.0.0.1", port=ctl.ofp_port)
    rec = Record(name="test-tree", launcher_pid=os.getpid(), bridges=topo.switches())
    rec.save()
    try:
        net.build()
        rec.pids = [h.pid for h in net.hosts]
        rec.save()
        net.start()
        wait_until(lambda: all(s.connected() for s in net.switches), 60, "tree switches")
        assert net.pingAll(timeout=2) == 0.0
    finally:
        net.stop()
        teardown(rec)
        release_lock(lock)


def _link_kinds(emu) -> set[str]:
    """The Open vSwitch interface type of both ends of every inter-switch link."""
    names = [f"{s}-eth{p}" for lk in emu.topo.links for s, p in ((lk.a, lk.a_port),
                                                                 (lk.b, lk.b_port))]
    return {subprocess.run(["ovs-vsctl", "get", "Interface", n, "type"], capture_output=True,
                           text=True, check=True).stdout.strip().strip('"') or "system"
            for n in names}


@pytest.mark.parametrize("patch", [False, True])
def test_switch_links_are_veth_pairs_or_patch_ports_on_request(controller, network, patch):
    """Switches are joined by veth pairs (interfaces to capture on, links that can fail), or
    by patch ports with `patch_links` (one datapath pass per packet, nothing to poll), and
    then no interface of a patch port's name is recorded for removal. Traffic crosses
    either way: c1t1 (bs1) -> web (svc) and -> c3t1 (bs3) cross agg1, gw (and agg2)."""
    ctl = controller("--topology", str(ROOT / "topologies/mobile_core.yaml"))
    emu = network("topologies/mobile_core.yaml", ctl, patch_links=patch)
    assert _link_kinds(emu) == ({"patch"} if patch else {"system"})
    one = f"{emu.topo.links[0].a}-eth{emu.topo.links[0].a_port}"
    assert Path(f"/sys/class/net/{one}").exists() != patch
    assert (one in emu.record.interfaces) != patch
    a = emu.host("c1t1")
    for peer in ("web", "c3t1"):
        assert ping(a, emu.host(peer).IP()), f"c1t1 -> {peer}"
    if patch:   # Mininet's `link gw agg1 down`: refused with a message, the network stays
        lk = emu.topo.links[0]
        emu.net.configLinkStatus(lk.a, lk.b, "down")
        assert ping(a, emu.host("web").IP())


def test_patch_links_leave_an_interface_of_a_patch_port_s_name_alone(controller):
    """A patch port has no interface: an interface that happens to bear its name is
    someone else's, and stopping the network (Mininet's stop, then the record's teardown)
    must not delete it."""
    from controller import topology
    from controller.emulation.net import start_network
    topo = topology.load(ROOT / "topologies/mobile_core.yaml")
    name = f"{topo.links[0].a}-eth{topo.links[0].a_port}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "crsforeign0"],
                   check=True)
    try:
        ctl = controller("--topology", str(ROOT / "topologies/mobile_core.yaml"))
        emu = start_network(topo, ctl, patch_links=True)
        try:
            assert _link_kinds(emu) == {"patch"} and name not in emu.record.interfaces
        finally:
            emu.stop()
        assert Path(f"/sys/class/net/{name}").exists()
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
