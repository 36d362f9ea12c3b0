"""EAPOL through the switch's LOCAL port (admission.local_port): the switch names the port, a
terminal cannot; answers leave only through the port they name; the EAP Success may leave
before the binding's commit, its flows never do."""
from __future__ import annotations

import corekit
from corekit import C1, CREDENTIALS, T0

from controller.admission import local_port
from controller.admission.credentials import load_credentials
from controller.admission.eapol import PAE_GROUP_ADDR
from controller.admission.supplicant import Supplicant
from controller.openflow.ofmsg import OFPP_LOCAL, FlowMod, LocalFrame, PacketOut

AUTH_MAC = "02:00:00:00:ff:fe"     # the minimal topology's service MAC
IDENT = "c1t1@crs.example"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def boot_local(tmp_path, eapol_local=True):
    """A core configured for the LOCAL transport; `eapol_local`: whether the shell could
    open the switch's LOCAL interface."""
    return corekit.boot_eapol(tmp_path, "local", eapol_local)


def through_switch(sim, port: int, frame: bytes) -> bytes | None:
    """What the switch writes into LOCAL for `frame` arriving on `port` (None: not there)."""
    res = sim.process({"eth_type": 0x888E, "eth_src": _mac(frame[6:12]),
                       "eth_dst": _mac(frame[0:6])}, port)
    local = [pkt for p, pkt in res.outputs if p == OFPP_LOCAL]
    if not local:
        return None
    return mac_bytes(local[0]["eth_dst"]) + frame[6:]


def back_from_local(sim, frame: bytes) -> list[tuple[int, str]]:
    """(port, source MAC) of what the switch does with a frame the controller writes."""
    res = sim.process({"eth_type": 0x888E, "eth_src": _mac(frame[6:12]),
                       "eth_dst": _mac(frame[0:6])}, OFPP_LOCAL)
    return [(p, pkt["eth_src"]) for p, pkt in res.outputs]


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def test_a_whole_exchange_goes_through_local_and_admits(tmp_path):
    core, sim = boot_local(tmp_path)
    # right after the port's LOCAL flows were sent, answers still leave by packet-out: over
    # the LOCAL interface they could overtake their return flow and be dropped
    early = core.eapol_local(1, mac_bytes(local_port.port_mac(2)) +
                             Supplicant(IDENT, C1, psk=b"\0" * 16).start()[6:], T0 + 0.1)
    assert [type(m).__name__ for _, m in early] == ["PacketOut"]
    T1 = T0 + 1
    psk = load_credentials(CREDENTIALS).demo_psk(IDENT)
    sup = Supplicant(IDENT, C1, psk=psk)

    def deliver(frame: bytes) -> list[bytes]:
        written = through_switch(sim, 2, frame)
        assert written is not None and written[0:6] in (
            mac_bytes(local_port.port_mac(2, kind)) for kind in (0, 1))
        out = core.eapol_local(1, written, T1)
        sim.apply(m for _, m in out)
        answers = []
        for _, m in out:
            assert not isinstance(m, PacketOut)      # answers go back the same way
            if isinstance(m, LocalFrame):
                assert back_from_local(sim, m.data) == [(2, AUTH_MAC)]
                answers.append(mac_bytes(AUTH_MAC).join([m.data[:6], m.data[12:]]))
        return answers
    step = corekit.run_exchange(sup, deliver)
    assert step is not None and step.status == "success"
    assert core.counters["dot1x_admitted"] == 1 and core.counters["eapol_local"] == 5
    # the binding's flows are in table 0: the terminal's own traffic passes now
    res = sim.process(corekit.ip_pkt(C1, corekit.WEB_MAC, "10.0.1.1", "10.0.100.20"), 2)
    assert 1 in res.tables()


def test_the_port_comes_from_the_switch_not_from_the_terminal(tmp_path):
    core, sim = boot_local(tmp_path)
    sup = Supplicant(IDENT, C1, psk=b"\0" * 16)
    start = sup.start()
    # a terminal on port 2 addressing its frame to port 3's port MAC: not a LOCAL frame at
    # all (it reaches the controller as a packet-in, refused for its destination)
    forged = mac_bytes(local_port.port_mac(3)) + start[6:]
    assert through_switch(sim, 2, forged) is None
    res = sim.process({"eth_type": 0x888E, "eth_src": C1,
                       "eth_dst": local_port.port_mac(3)}, 2)
    assert res.to_controller
    assert core.packet_in(1, 2, 0, forged, T0) == []
    assert core.counters["dot1x_wrong_destination"] == 1
    # whatever it writes, the switch's rewrite names port 2
    for dst in (PAE_GROUP_ADDR, AUTH_MAC):
        written = through_switch(sim, 2, mac_bytes(dst) + start[6:])
        assert local_port.from_switch(written, mac_bytes(AUTH_MAC))[0] == 2


def test_frames_the_switch_did_not_write_are_refused(tmp_path):
    core, sim = boot_local(tmp_path)
    start = Supplicant(IDENT, C1, psk=b"\0" * 16).start()
    for junk in (start,                                             # no port MAC
                 mac_bytes(local_port.port_mac(1)) + start[6:],     # an infra port
                 mac_bytes(local_port.port_mac(4)) + start[6:],     # a server's port
                 mac_bytes(local_port.port_mac(0x00F00000)) + start[6:],  # beyond metering
                 bytes.fromhex("0e0200000002") + start[6:],         # unknown kind
                 mac_bytes(local_port.port_mac(2)) + start[6:12] + b"\x08\x00" + start[14:],
                 b"\x0e"):
        assert core.eapol_local(1, junk, T0) == []
    assert core.counters["eapol_local_refused"] == 7
    assert core.counters["eapol_local"] == 0
    # an edge port this controller has not listed yet (its flows predate a takeover): the
    # frame is taken, and answered by packet-out until the port's LOCAL flows are sent
    out = core.eapol_local(1, mac_bytes(local_port.port_mac(9)) + start[6:], T0)
    assert [type(m).__name__ for _, m in out] == ["PacketOut"]
    assert out[0][1].actions[0].port == 9
    # and from LOCAL, only answers naming an edge port with flows pass
    assert back_from_local(sim, mac_bytes(C1) + mac_bytes(local_port.port_mac(9)) +
                           start[12:]) == []
    assert back_from_local(sim, mac_bytes(C1) + mac_bytes(AUTH_MAC) + start[12:]) == []


def test_a_switch_without_its_local_port_keeps_packet_ins(tmp_path):
    core, sim = boot_local(tmp_path, eapol_local=False)
    res = sim.process({"eth_type": 0x888E, "eth_src": C1, "eth_dst": PAE_GROUP_ADDR}, 2)
    assert res.to_controller and res.outputs == []
    sup, keys = corekit.authenticate(core, sim, 2, C1, "c1t1")
    assert core.counters["dot1x_admitted"] == 1
    assert core.eapol_local(1, mac_bytes(local_port.port_mac(2)) + sup.start()[6:], T0) == []


def test_the_success_leaves_before_the_commit_and_the_flows_after_it(boot):
    core, sim = boot()
    seen = []

    def early(out):
        seen.append(([m for _, m in out], core.store.binding(IDENT)))
        return True
    core.admission.early = early
    corekit_frames = []
    psk = load_credentials(CREDENTIALS).demo_psk(IDENT)
    sup = Supplicant(IDENT, C1, psk=psk)
    frames, step, taken = [sup.start()], None, 0
    while frames:
        out = []
        for f in frames:
            msgs = core.packet_in(1, 2, 0, f, T0)
            sim.apply(m for _, m in msgs)
            corekit_frames += msgs
            out += [m.data for _, m in msgs if isinstance(m, PacketOut)]
        for msgs, _ in seen[taken:]:
            out += [m.data for m in msgs if isinstance(m, PacketOut)]
        taken = len(seen)
        frames = []
        for data in out:
            step = sup.handle(data)
            frames += step.frames
        if step is not None and step.status == "success":
            break
    assert step.status == "success"
    # the exchange's requests and then the Success left at once, each a lone frame, all
    # before the binding was stored; the Success is the last of them
    assert len(seen) >= 2
    assert all(len(msgs) == 1 and isinstance(msgs[0], PacketOut) for msgs, _ in seen)
    assert all(binding_then is None for _, binding_then in seen)
    codes = [msgs[0].data[18] for msgs, _ in seen]       # the EAP code after the EAPOL header
    assert codes[-1] == 3 and set(codes[:-1]) == {1}      # requests, then the Success
    assert core.store.binding(IDENT) is not None     # and the flows came with the commit
    assert any(isinstance(m, FlowMod) for _, m in corekit_frames)

    # a shell that cannot send at once: the Success stays first in what is returned
    core2, sim2 = boot(now=T0 + 10)
    core2.admission.early = lambda out: False
    corekit.authenticate(core2, sim2, 3, corekit.C2, "c1t2", now=T0 + 10)   # asserts success


def _lockstep(core, sim, terminals, now, deliver):
    """Run several terminals' exchanges step by step; `deliver(frames_by_port)` hands each
    step's frames to the core (all in one read, or one by one) and returns its output."""
    sups = {port: Supplicant(f"{host}@crs.example", mac,
                             psk=load_credentials(CREDENTIALS).demo_psk(f"{host}@crs.example"))
            for port, host, mac in terminals}
    pending = {port: [s.start()] for port, s in sups.items()}
    status = {}
    for _ in range(10):
        written = [through_switch(sim, port, f) for port, fs in pending.items() for f in fs]
        if not written:
            break
        out = deliver(written)
        sim.apply(m for _, m in out)
        pending = {port: [] for port in sups}
        for _, m in out:
            if isinstance(m, LocalFrame):
                port = int.from_bytes(m.data[8:12], "big")   # source: the port MAC
                step = sups[port].handle(mac_bytes(AUTH_MAC).join([m.data[:6], m.data[12:]]))
                pending[port] += step.frames
                status[port] = step.status
    return status


TWO = [(2, "c1t1", C1), (3, "c1t2", corekit.C2)]


def test_frames_read_together_share_one_commit_for_their_admissions(tmp_path):
    core, sim = boot_local(tmp_path)
    sql: list[str] = []
    write = core.store.db.write
    core.store.db.write = lambda q, *a: (sql.append(q.split()[0]), write(q, *a))[1]
    status = _lockstep(core, sim, TWO, T0 + 1, lambda fs: core.eapol_local(1, fs, T0 + 1))
    assert status == {2: "success", 3: "success"}
    assert core.counters["dot1x_admitted"] == 2 and core.counters["eapol_local_grouped"] >= 8
    # transactions that wrote something (a disk sync each): both PSK-4s arrived in one
    # read, so both bindings went in one
    txs = " ".join(sql).split("BEGIN")
    assert sum(any(w in tx for w in ("UPDATE", "INSERT")) for tx in txs) == 1
    for port, mac, ip in ((2, C1, "10.0.1.1"), (3, corekit.C2, "10.0.1.2")):
        res = sim.process(corekit.ip_pkt(mac, corekit.WEB_MAC, ip, "10.0.100.20"), port)
        assert 1 in res.tables(), port


def test_a_frame_that_fails_in_a_read_costs_only_itself(tmp_path, monkeypatch):
    core, sim = boot_local(tmp_path)
    real = core.admission.eapol

    def eapol(dpid, port, data, now):
        if port == 3 and data[15] == 0 and data[22:23] == b"\x2f" and data[23] & 0xC0 == 0xC0:
            raise RuntimeError("a bug on c1t2's PSK-4")
        return real(dpid, port, data, now)
    monkeypatch.setattr(core.admission, "eapol", eapol)
    status = _lockstep(core, sim, TWO, T0 + 1, lambda fs: core.eapol_local(1, fs, T0 + 1))
    assert status.get(2) == "success" and status.get(3) != "success"
    assert core.counters["eapol_frame_failed"] == 1 and core.counters["dot1x_admitted"] == 1
    assert core.store.binding("c1t1@crs.example") is not None
    assert core.store.binding("c1t2@crs.example") is None

