"""FlowSim refuses overlapping flows at one priority (as Faucet's fake table does), and the
project's flow builders never produce them."""
import itertools

import pytest

from controller.admission import binding
from controller.admission.authorization import load_authorization
from controller.crs import enforcement, nac
from controller.crs.decision import Decision, Level, Location, Service
from controller.emulation.processes import ROOT
from controller.openflow.flowsim import FlowSim, matches_overlap
from controller.openflow.tables import SECURITY
from controller.pipeline import AdmissionMode, admission_base, eapol_port_flows


@pytest.mark.parametrize("a, b, overlap", [
    ({}, {"in_port": 1}, True),                                      # a wildcard
    ({"in_port": 1}, {"in_port": 2}, False),
    ({"in_port": 1}, {"eth_type": 0x806}, True),                      # fields in one only
    ({"ipv4_dst": ("10.0.1.0", "255.255.255.0")}, {"ipv4_dst": "10.0.1.9"}, True),
    ({"ipv4_dst": ("10.0.1.0", "255.255.255.0")}, {"ipv4_dst": "10.0.2.9"}, False),
    ({"ipv4_dst": ("10.0.0.0", "255.255.0.0")},
     {"ipv4_dst": ("10.0.3.0", "255.255.255.0")}, True),
    ({"tcp_dst": (0x8000, 0x8000)}, {"tcp_dst": 40000}, True),
    ({"tcp_dst": (0x8000, 0x8000)}, {"tcp_dst": 8080}, False),
    ({"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
     {"eth_dst": "ff:ff:ff:ff:ff:ff"}, True),
    ({"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
     {"eth_dst": "02:00:00:00:00:01"}, False),
])
def test_overlap(a, b, overlap):
    assert matches_overlap(a, b) is overlap and matches_overlap(b, a) is overlap


def test_overlapping_add_at_one_priority_names_both_flows():
    sim = FlowSim().apply([SECURITY.flow(10, {"in_port": 1}, [])])
    with pytest.raises(AssertionError, match=r"table 1 at priority 10: .*in_port.*eth_type"):
        sim.apply([SECURITY.flow(10, {"eth_type": 0x806}, [])])
    # the same match again replaces; another priority or a disjoint match is fine
    sim.apply([SECURITY.flow(10, {"in_port": 1}, [], sub=7),
               SECURITY.flow(11, {"eth_type": 0x806}, []),
               SECURITY.flow(10, {"in_port": 2, "eth_type": 0x806}, [])])
    assert [f.cookie & 0xFF for f in sim.table(1) if f.priority == 10] == [7, 0]


SVC = enforcement.ServiceAddresses("10.0.100.254", "10.0.100.20", "02:00:0a:00:64:14",
                                   controller_ports=(40123,))    # a free port: ephemeral
LOC = Location(5, 1, 3, "02:00:0a:00:01:03", "10.0.1.3", "cell1")


def decisions():
    for isolate, scope, meter, restricted, redirect, outside in itertools.product(
            (False, True), ("all", "group", "none"), (None, 100),
            ((), (Service("tcp", 25), Service("udp", 53))), (False, True), (None, 50)):
        yield Decision(Level.INFECTED, actions=("x",), scope=scope, meter_kbps=meter,
                       restricted=restricted, redirect_web=redirect, isolate=isolate,
                       outside_kbps=outside)


@pytest.mark.parametrize("peers", [["10.0.1.0/24"], ["10.0.1.3", "10.0.1.4"]])
def test_terminal_flows_never_overlap_even_across_generations(peers):
    """Every decision, and every change of decision (make-before-break: the new generation
    is added while the old one is still there)."""
    ds = list(decisions())
    for d in ds:
        FlowSim().apply(enforcement.terminal_flows(d, LOC, SVC, peers))
    for old, new in itertools.product(ds[::3], ds):
        meters: set[int] = set()
        FlowSim().apply(nac.hold(old, LOC, SVC, peers, 1, meters) +
                        nac.hold(new, LOC, SVC, peers, 2, meters))


def test_group_seals_and_bindings_never_overlap():
    for mode in ("drop", "meter"):
        FlowSim().apply(enforcement.group_seal_flows(1, [3, 4], ["10.0.1.0/24"], SVC, mode, 100)
                        + enforcement.group_seal_flows(1, [3, 4], ["10.0.1.0/24"], SVC, mode,
                                                       100, gen=1))
    authz = load_authorization(ROOT / "config/authorization.yaml")
    servers = [binding.Server("web", "10.0.100.10"), binding.Server("update", "10.0.100.20")]
    ctl = binding.ControllerService("10.0.100.254", "02:00:00:00:ff:fe", (40123,))
    mode = AdmissionMode(open=False)
    FlowSim().apply(
        admission_base(mode, {1}) + binding.preauth_flows("10.0.100.254")
        + eapol_port_flows(mode, 3) + eapol_port_flows(mode, 4)
        + binding.binding_flows(5, 3, LOC.mac, None, "cell1", authz, servers, ctl)
        + binding.binding_flows(5, 3, LOC.mac, LOC.ip, "cell1", authz, servers, ctl)
        + binding.binding_flows(6, 4, "02:00:0a:00:01:04", "10.0.1.4", "cell2", authz,
                                servers, ctl))
