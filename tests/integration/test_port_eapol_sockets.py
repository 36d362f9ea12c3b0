"""The shell's port sockets (admission.eapol_transport: port, controller/ryu_shell/port_eapol.py)
on a real veth pair: one end is "the switch's port", read by the controller's socket; the
other plays the terminal. The frame is taken as the port's whatever it says, the answer
leaves on that port with the authenticator's MAC, the controller's own writes are never
read back, a port whose interface does not carry the switch's MAC for it is not read, and a
flooding port is held to its rate without taking the reader down."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from controller import rawsock
from controller.admission import local_port
from controller.admission.eapol import PAE_GROUP_ADDR
from controller.admission.supplicant import Supplicant
from controller.ryu_shell.framework import hub
from controller.ryu_shell.port_eapol import PortEapol

AUTH_MAC = "02:00:00:00:ff:fe"
AUTH = bytes.fromhex(AUTH_MAC.replace(":", ""))
GROUP = bytes.fromhex(PAE_GROUP_ADDR.replace(":", ""))
TERM_MAC = "02:00:00:00:01:01"


@pytest.fixture
def veth():
    """(switch end, terminal end): a veth pair of our own in this namespace."""
    tag = os.urandom(3).hex()
    a, b = f"pe{tag}a", f"pe{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        for name in (a, b):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"],
                           check=False, capture_output=True)
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)


def until(cond, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline_s} s: {what}")
        hub.sleep(0.005)            # the reader is a green thread: let it run


def terminal_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x888E))
    s.bind((ifname, 0x888E))
    s.setblocking(False)
    return s


def received(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            data, addr = s.recvfrom(2048)
        except BlockingIOError:
            return out
        if addr[2] != 4:             # not its own writes
            out.append(data)


def test_a_port_socket_reads_its_port_answers_on_it_and_holds_a_flood(veth):
    sw, term = veth
    sw_mac = Path(f"/sys/class/net/{sw}/address").read_text().strip()
    got: list[tuple[int, list[bytes]]] = []
    counters: Counter = Counter()
    pe = PortEapol(lambda dpid, frames: got.append((dpid, frames)), AUTH_MAC, 20,
                   lambda: counters)
    # the switch reports another MAC for the port: this interface is not that port
    assert not pe.open(1, 5, sw, "02:00:00:00:00:99") and not pe.reads(1, 5)
    assert not pe.open(1, 5, "no/such", sw_mac)
    assert pe.open(1, 5, sw, sw_mac) and pe.reads(1, 5)
    # another switch naming the same interface for one of its ports: refused
    assert not pe.open(2, 5, sw, sw_mac) and not pe.reads(2, 5)
    t = terminal_socket(term)
    try:
        start = Supplicant("c1t1@crs.example", TERM_MAC, psk=b"\0" * 16).start()
        assert start[:6] == GROUP
        t.send(start)
        until(lambda: got, 5, "the Start read on the port")
        assert got == [(1, [local_port.from_port(start, 5, AUTH)])]
        assert local_port.from_switch(got[0][1][0], AUTH) == (5, start)

        # an answer made for LOCAL leaves on port 5 itself, from the authenticator's MAC
        body = b"\x02\x00\x00\x05\x01\x07\x00\x05\x01"
        answer = bytes.fromhex(TERM_MAC.replace(":", "")) + AUTH + b"\x88\x8e" + body
        assert pe.send(1, local_port.to_switch(answer, 5))
        until(lambda: received(t) == [answer] or got[1:], 5, "the answer on the terminal")
        assert not pe.send(1, local_port.to_switch(answer, 6))     # port 6 is not read here
        # its own write was not read back as the port's: the next frame taken is the
        # terminal's, to the authenticator this time
        t.send(AUTH + start[6:])
        until(lambda: len(got) == 2, 5, "the second frame")
        assert got[1] == (1, [local_port.from_port(AUTH + start[6:], 5, AUTH)])
        # to a port MAC (as if the switch had written it), or to anyone else: refused
        for dst in (bytes.fromhex("0e0000000006"), bytes(6)):
            t.send(dst + start[6:])
        until(lambda: counters["eapol_port_refused"] == 2, 5, "two frames refused")
        assert len(got) == 2

        # a flood: the port is held to its rate (20/s, a burst of 10); the rest is dropped
        # here or by the kernel while the socket is left unread
        taken_before = counters["eapol_port_read"]
        t0 = time.monotonic()
        for _ in range(500):
            try:
                t.send(start)
            except BlockingIOError:
                pass
        until(lambda: counters["eapol_port_over_rate"] > 0, 5, "the flood over the rate")
        taken = counters["eapol_port_read"] - taken_before
        assert 1 <= taken <= 10 + 20 * (time.monotonic() - t0) + 1
        # and the port is read again once a token is due
        n, end = len(got), time.monotonic() + 5
        while len(got) == n:
            assert time.monotonic() < end, "no frame taken after the flood"
            t.send(start)
            hub.sleep(0.05)
    finally:
        t.close()
        pe.close(1, 5)
    assert not pe.reads(1, 5) and pe.ports == {}


def test_a_port_whose_interface_went_is_given_back_and_a_new_one_is_checked_again(veth):
    sw, term = veth
    lost: list[tuple[int, int]] = []
    counters: Counter = Counter()
    pe = PortEapol(lambda dpid, frames: None, AUTH_MAC, 20, lambda: counters,
                   lambda dpid, port: lost.append((dpid, port)))
    mac = Path(f"/sys/class/net/{sw}/address").read_text().strip()
    assert pe.open(1, 5, sw, mac)
    first = pe.ports[(1, 5)].ifindex
    # the link is deleted (the host left): writing to it fails, the port is given back
    # (the shell has the switch list its ports again: it goes back to LOCAL)
    subprocess.run(["ip", "link", "del", sw], check=True)
    answer = bytes(6) + AUTH + b"\x88\x8e" + b"\x02\x00\x00\x04\x03\x07\x00\x04"
    assert pe.send(1, local_port.to_switch(answer, 5))
    assert lost == [(1, 5)] and not pe.reads(1, 5)
    # a new link under the same name: read only as what it is now
    subprocess.run(["ip", "link", "add", sw, "type", "veth", "peer", "name", term], check=True)
    subprocess.run(["ip", "link", "set", sw, "up"], check=True)
    new_mac = Path(f"/sys/class/net/{sw}/address").read_text().strip()
    assert new_mac != mac
    assert pe.open(1, 5, sw, new_mac) and pe.ports[(1, 5)].ifindex != first
    # the switch reporting the old MAC for the port: this interface is not it (any more)
    assert not pe.open(1, 5, sw, mac) and not pe.reads(1, 5)
    # deleted while read, nothing written to it: the reader notices and gives it back
    assert pe.open(1, 5, sw, new_mac)
    subprocess.run(["ip", "link", "del", sw], check=True)
    until(lambda: lost == [(1, 5), (1, 5)], 5, "the deleted interface given back")
    assert not pe.reads(1, 5)
    subprocess.run(["ip", "link", "add", sw, "type", "veth", "peer", "name", term], check=True)


def test_a_tap_is_not_read_as_a_port():
    """On a tap (a switch's internal port) a terminal's frames would show as outgoing."""
    name = f"pe{os.urandom(3).hex()}t"
    subprocess.run(["ip", "tuntap", "add", "dev", name, "mode", "tap"], check=True)
    try:
        mac = Path(f"/sys/class/net/{name}/address").read_text().strip()
        pe = PortEapol(lambda dpid, frames: None, AUTH_MAC, 20, Counter)
        assert not pe.open(1, 5, name, mac) and pe.ports == {}
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_a_local_socket_that_fails_for_good_is_opened_again(veth, monkeypatch, caplog):
    """The LOCAL transport's reader (ryu_shell/local_eapol.py): its socket fails with an error
    that is not the link going down. The switch's flows still send EAPOL there, so unread
    nobody could authenticate on that switch: the socket is opened again and frames are read
    on it. After the switch goes, nothing is reopened."""
    import errno

    from eventlet.green import socket as green

    from controller.ryu_shell import local_eapol
    switch_end, terminal_end = veth
    failing: list = []

    def real(*a):       # green, as in the running controller (eventlet's patching)
        return rawsock.bound_socket(*a, new=green.socket)

    class Failing:      # the first socket: its next read fails as a broken socket would
        def __init__(self, sock):
            self.sock = sock
            failing.append(self)

        def recvfrom(self, *a):
            raise OSError(errno.EIO, "input/output error")

        def __getattr__(self, name):
            return getattr(self.sock, name)

    monkeypatch.setattr(local_eapol, "bound_socket",
                        lambda *a: Failing(real(*a)) if not failing else real(*a))
    got: list[bytes] = []
    le = local_eapol.LocalEapol(lambda dpid, frames: got.extend(frames))
    term = terminal_socket(terminal_end)
    start = GROUP + bytes.fromhex(TERM_MAC.replace(":", "")) + \
        Supplicant("t@x", TERM_MAC, psk=bytes(16)).start()[12:]
    try:
        with caplog.at_level("INFO", logger="crs.local_eapol"):
            assert le.open(1, switch_end)
            until(lambda: "opened again" in caplog.text, 5, "the failed socket opened again")
        assert "EAPOL socket failed" in caplog.text and le.can_send(1)
        until(lambda: term.send(start) and got, 5, "a frame read on the new socket")
        assert got[0] == start
        token = le._retry[1][0]
        le.close(1)
        le._reopen(1, token)            # a retry due after the switch went: nothing
        assert not le.can_send(1)
        assert le.open(1, switch_end) and le.socks[1].close() is None
        le.socks.pop(1)
        le._reopen(1, token)            # an older opening's retry: not this one's
        assert not le.can_send(1)
    finally:
        le.close(1)
        term.close()


def test_a_port_socket_that_fails_with_its_interface_still_there_is_read_again(veth,
                                                                              monkeypatch):
    """The socket of a read port fails with an error that is not its link going (the
    interface stays the same one): the port is given back (EAPOL through LOCAL), then read
    again after a delay, the shell deciding (`regained`); frames are read on the new socket.
    Retries back off while they fail and stop when the shell closes the port; an interface
    that went is never retried (its switch's port status brings the new one)."""
    import errno

    from controller.ryu_shell import port_eapol
    monkeypatch.setattr(port_eapol, "REOPEN_S", (0.05, 1.0))
    sw, term = veth
    mac = Path(f"/sys/class/net/{sw}/address").read_text().strip()
    got: list[bytes] = []
    lost: list[tuple[int, int]] = []
    asked: list[tuple[int, int, str, str, float]] = []
    answer = {"open": True}
    counters: Counter = Counter()

    def regained(dpid, port, ifname, hw):
        asked.append((dpid, port, ifname, hw, time.monotonic()))
        if answer["open"] == "close":
            pe.close(dpid, port)
            return False
        return answer["open"] and pe.open(dpid, port, ifname, hw)

    lost_at: list[tuple[float, bool]] = []      # when, and whether still read then

    def on_lost(dpid, port):
        lost.append((dpid, port))
        lost_at.append((time.monotonic(), pe.reads(dpid, port)))

    pe = PortEapol(lambda dpid, frames: got.extend(frames), AUTH_MAC, 50, lambda: counters,
                   on_lost, regained)

    class Failing:      # the socket's next read fails as a broken socket would
        def __init__(self, sock):
            self.sock = sock

        def recvfrom(self, *a):
            raise OSError(errno.EIO, "input/output error")

        def __getattr__(self, name):
            return getattr(self.sock, name)

    def break_socket():
        p = pe.ports[(1, 5)]
        p.sock = Failing(p.sock)

    t = terminal_socket(term)
    start = Supplicant("c1t1@crs.example", TERM_MAC, psk=b"\0" * 16).start()
    try:
        assert pe.open(1, 5, sw, mac)
        break_socket()
        t.send(start)
        until(lambda: lost == [(1, 5)], 5, "the failed port given back")
        assert lost_at[0][1] is False and got == []
        until(lambda: pe.reads(1, 5), 5, "the port read again")
        assert asked[0][:4] == (1, 5, sw, mac) and asked[0][4] - lost_at[0][0] >= 0.045
        assert counters["eapol_port_reopened"] == 1
        t.send(start)
        until(lambda: got, 5, "a frame read on the new socket")
        assert got == [local_port.from_port(start, 5, AUTH)]

        # the shell declines (the port does not qualify now): asked again, later each time
        answer["open"] = False
        asked.clear()
        break_socket()
        t.send(start)
        until(lambda: len(asked) >= 3, 5, "three retries")
        gaps = [b[4] - a[4] for a, b in zip(asked, asked[1:])]
        assert gaps[1] > gaps[0] * 1.5 and not pe.reads(1, 5)
        pe.close(1, 5)                  # the shell closes it: no more retries
        n = len(asked)
        hub.sleep(1.2)                  # (the next retry was due 0.8 s after the last)
        assert len(asked) == n and not pe.reads(1, 5)

        # the shell, asked, closes the port (it no longer qualifies): not asked again
        answer["open"] = "close"
        assert pe.open(1, 5, sw, mac)
        asked.clear()
        break_socket()
        t.send(start)
        until(lambda: asked, 5, "asked once")
        hub.sleep(1.2)
        assert len(asked) == 1 and not pe.reads(1, 5)

        # an interface that went: given back, never retried
        answer["open"] = True
        assert pe.open(1, 5, sw, mac)
        asked.clear()
        subprocess.run(["ip", "link", "del", sw], check=True)
        until(lambda: lost.count((1, 5)) == 4, 5, "the deleted interface given back")
        hub.sleep(0.3)
        assert asked == [] and not pe.reads(1, 5)
        subprocess.run(["ip", "link", "add", sw, "type", "veth", "peer", "name", term],
                       check=True)
    finally:
        t.close()
        pe.close(1, 5)


def test_a_port_socket_that_cannot_be_opened_now_is_tried_again(veth, monkeypatch):
    """Opening the socket fails for a passing reason (out of descriptors): the port keeps
    LOCAL for now and is tried again later, the shell deciding as after a loss."""
    import errno

    from controller.ryu_shell import port_eapol
    monkeypatch.setattr(port_eapol, "REOPEN_S", (0.05, 1.0))
    sw, _ = veth
    mac = Path(f"/sys/class/net/{sw}/address").read_text().strip()
    real, calls = port_eapol.bound_socket, []

    def once(*a):
        calls.append(a)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, "too many open files")
        return real(*a)
    monkeypatch.setattr(port_eapol, "bound_socket", once)
    asked: list = []
    pe = PortEapol(lambda dpid, frames: None, AUTH_MAC, 50, Counter,
                   regained=lambda d, p, i, m: asked.append((d, p, i, m)) or pe.open(d, p, i, m))
    try:
        assert not pe.open(1, 5, sw, mac) and not pe.reads(1, 5)
        until(lambda: pe.reads(1, 5), 5, "the port read on a second try")
        assert asked == [(1, 5, sw, mac)] and len(calls) == 2
    finally:
        pe.close(1, 5)
