"""EAPOL read on each edge port's own interface (admission.eapol_transport: port): the port is
the interface's, a frame is taken only where the switch's LOCAL flows would have forwarded
it, the switch drops what is read on the port (never taken twice), and answers leave on the
port they name at once. The shell's sockets: tests/integration/test_port_eapol_sockets.py."""
from __future__ import annotations

import corekit
from corekit import C1, CREDENTIALS, T0

from controller import topology
from controller.admission import local_port
from controller.admission.credentials import load_credentials
from controller.admission.eapol import PAE_GROUP_ADDR
from controller.admission.supplicant import Supplicant
from controller.core import Core
from controller.openflow.ofmsg import OFPP_LOCAL, FlowMod, LocalFrame, PacketOut

AUTH_MAC = "02:00:00:00:ff:fe"     # the minimal topology's service MAC
AUTH = bytes.fromhex(AUTH_MAC.replace(":", ""))
IDENT = "c1t1@crs.example"


def boot_port(tmp_path, direct=(2, 3)):
    """A core with `eapol_transport: port` whose shell reads the ports in `direct`."""
    return corekit.boot_eapol(tmp_path, "port", direct=direct)


def test_a_frame_read_on_a_port_becomes_what_the_switch_would_write():
    start = Supplicant(IDENT, C1, psk=b"\0" * 16).start()
    group = bytes.fromhex(PAE_GROUP_ADDR.replace(":", ""))
    for dst, kind in ((group, local_port.TO_GROUP), (AUTH, local_port.TO_AUTHENTICATOR)):
        got = local_port.from_port(dst + start[6:], 2, AUTH)
        assert got == bytes.fromhex(local_port.port_mac(2, kind).replace(":", "")) + start[6:]
        assert local_port.from_switch(got, AUTH) == (2, dst + start[6:])
    # what the switch's flows would not have forwarded to LOCAL is not taken
    port3 = bytes.fromhex(local_port.port_mac(3).replace(":", ""))
    for junk in (port3 + start[6:],                      # to another port's port MAC
                 bytes(6) + start[6:],                   # to anyone else
                 group + start[6:12] + b"\x08\x00" + start[14:],   # not EAPOL
                 group[:5]):
        assert local_port.from_port(junk, 2, AUTH) is None
    assert local_port.from_port(group + start[6:], 0, AUTH) is None
    assert local_port.from_port(group + start[6:], local_port.MAX_PORT, AUTH) is None


def test_an_answer_goes_to_the_port_it_names_with_the_authenticator_as_source():
    frame = bytes.fromhex("020000000001") + AUTH + b"\x88\x8e" + b"\x02\x00\x00\x04\x01\x01\x00\x04"
    written = local_port.to_switch(frame, 7)
    assert local_port.answer_port(written) == 7
    assert local_port.for_port(written, AUTH) == frame
    assert local_port.answer_port(frame) is None          # not made for LOCAL
    assert local_port.answer_port(written[:13]) is None


def test_the_switch_drops_eapol_of_a_port_read_directly_and_only_that(tmp_path):
    core, sim = boot_port(tmp_path, direct=(2,))
    eapol = {"eth_type": 0x888E, "eth_src": C1}
    for dst in (PAE_GROUP_ADDR, AUTH_MAC, "0e:00:00:00:00:03"):
        res = sim.process({**eapol, "eth_dst": dst}, 2)
        assert res.outputs == [] and not res.to_controller, dst
    # port 3 is not read directly (its interface is elsewhere): through LOCAL as before
    res = sim.process({**eapol, "eth_src": corekit.C2, "eth_dst": PAE_GROUP_ADDR}, 3)
    assert [p for p, _ in res.outputs] == [OFPP_LOCAL]
    # answers written into LOCAL for port 2 (a fallback) still reach it
    res = sim.process({"eth_type": 0x888E, "eth_src": local_port.port_mac(2),
                       "eth_dst": C1}, OFPP_LOCAL)
    assert [(p, pkt["eth_src"]) for p, pkt in res.outputs] == [(2, AUTH_MAC)]
    # the port no longer read directly (its socket closed, the port listed again): the
    # drop goes, its EAPOL goes to LOCAL again
    sim.apply(m for _, m in core.port_status(1, 2, True, T0 + 5, eapol_direct=False))
    res = sim.process({**eapol, "eth_dst": PAE_GROUP_ADDR}, 2)
    assert [p for p, _ in res.outputs] == [OFPP_LOCAL]


def test_with_the_local_transport_no_drop_flow_is_sent(tmp_path):
    s = corekit.settings(tmp_path)
    s.eapol_transport = "local"
    core = Core(s, topology.load(corekit.TOPO), now=T0)
    core.switch_up(1, set(), T0, eapol_local=True)
    out = core.port_status(1, 2, True, T0, eapol_direct=True)
    assert all(m.priority != 40003 for _, m in out if isinstance(m, FlowMod))


def admitted_on_port_2(core, sim) -> Supplicant:
    """c1t1 authenticated by frames read on port 2's interface; every answer leaves at once
    (no settling time: nothing waits for a return flow) on port 2."""
    sup = Supplicant(IDENT, C1, psk=load_credentials(CREDENTIALS).demo_psk(IDENT))

    def deliver(frame: bytes) -> list[bytes]:
        out = core.eapol_local(1, local_port.from_port(frame, 2, AUTH), T0 + 0.1)
        sim.apply(m for _, m in out)
        assert not any(isinstance(m, PacketOut) for _, m in out)
        answers = [m.data for _, m in out if isinstance(m, LocalFrame)]
        assert all(local_port.answer_port(a) == 2 for a in answers)
        return [local_port.for_port(a, AUTH) for a in answers]
    step = corekit.run_exchange(sup, deliver)
    assert step is not None and step.status == "success"
    return sup


def test_an_exchange_read_on_the_port_admits_and_answers_on_the_port_at_once(tmp_path):
    core, sim = boot_port(tmp_path)
    sup = admitted_on_port_2(core, sim)
    assert core.counters["dot1x_admitted"] == 1
    res = sim.process(corekit.ip_pkt(C1, corekit.WEB_MAC, "10.0.1.1", "10.0.100.20"), 2)
    assert 1 in res.tables()
    # a frame read on port 3 speaking as c1t1 is c1t3's port's business alone
    logoff = local_port.from_port(sup.logoff(), 3, AUTH)
    core.eapol_local(1, logoff, T0 + 1)
    assert core.store.binding(IDENT) is not None
    assert local_port.from_switch(logoff, AUTH)[0] == 3


def test_a_lost_port_goes_back_to_local_and_nothing_else_changes(tmp_path):
    """A read port's socket failed (`eapol_transport`): that port's EAPOL goes through LOCAL
    again, its admitted terminal keeps its access, and no port's state is reset: a port in
    hold-off after failed attempts stays held (relisting every port, as before, reset it)."""
    core, sim = boot_port(tmp_path)
    admitted_on_port_2(core, sim)
    auth = core.admission.auth
    auth.ports[(1, 3)].hold_until = T0 + 60          # port 3 held after failures
    before = dict(auth.ports)
    out = core.eapol_transport(1, 2, False)
    assert {d for d, _ in out} == {1}
    sim.apply(m for _, m in out)
    res = sim.process({"eth_type": 0x888E, "eth_src": C1, "eth_dst": PAE_GROUP_ADDR}, 2)
    assert [p for p, _ in res.outputs] == [OFPP_LOCAL]
    assert all(not (isinstance(m, FlowMod) and m.is_delete and m.table_id != 0)
               for _, m in out)
    res = sim.process(corekit.ip_pkt(C1, corekit.WEB_MAC, "10.0.1.1", "10.0.100.20"), 2)
    assert 1 in res.tables() and core.store.binding(IDENT) is not None
    assert auth.ports == before and auth.ports[(1, 3)].hold_until == T0 + 60
    assert core.eapol_transport(99, 2, False) == []      # an unknown switch: nothing
    # read again (`PortEapol`'s retry, the same interface): its EAPOL stops at the switch
    # once more, and still nothing else changes
    sim.apply(m for _, m in core.eapol_transport(1, 2, True))
    res = sim.process({"eth_type": 0x888E, "eth_src": C1, "eth_dst": PAE_GROUP_ADDR}, 2)
    assert res.outputs == [] and not res.to_controller
    res = sim.process(corekit.ip_pkt(C1, corekit.WEB_MAC, "10.0.1.1", "10.0.100.20"), 2)
    assert 1 in res.tables() and core.store.binding(IDENT) is not None
    assert auth.ports == before


def test_a_port_of_a_switch_without_local_keeps_packet_ins_whatever_the_shell_says(tmp_path):
    """`eapol_transport` on a switch whose flows were made without LOCAL (its interface could
    not be read): a port claimed read directly still sends its EAPOL to the controller as
    packet-ins (never a drop with nobody reading), and its hold-off stays."""
    core, sim = corekit.boot_eapol(tmp_path, "port", eapol_local=False)
    core.admission.auth.ports[(1, 2)].hold_until = T0 + 60
    sim.apply(m for _, m in core.eapol_transport(1, 2, True, T0 + 1))
    res = sim.process({"eth_type": 0x888E, "eth_src": C1, "eth_dst": PAE_GROUP_ADDR}, 2)
    assert res.to_controller and res.outputs == []
    assert core.admission.auth.ports[(1, 2)].hold_until == T0 + 60
