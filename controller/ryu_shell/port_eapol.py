"""The shell's side of `admission.eapol_transport: port`: EAPOL read and written on each edge
port's own host interface (the switch's end of the terminal's link), as hostapd sits on its
port, so that an EAP exchange does not cross the software switch at all. Only where that
interface is on this host and carries the MAC the switch reports for the port; every other
port keeps the LOCAL transport (`local_eapol`).

The port is the interface's, never anything the frame says. What is read goes to the core as
the frame the switch would have written into LOCAL (`local_port.from_port`), so the core's
checks are the same; answers are written on the one port they name. The switch's own
per-port meter no longer sees these frames, so each port has a token bucket of the same rate
here, and a small kernel buffer of its own: a flooding port's excess is dropped by the kernel
while its socket is left unread, at no cost to the others.
"""
from __future__ import annotations

import errno
import logging
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from eventlet.hubs import trampoline
from eventlet.patcher import original

from controller.admission import local_port
from controller.rawsock import PACKET_OUTGOING, bound_socket
from controller.ryu_shell.framework import hub
from controller.ryu_shell.local_eapol import ETH_P_EAPOL

log = logging.getLogger("crs.port_eapol")
_select = original("select")
_socket = original("socket")
SYS_NET = Path("/sys/class/net")
IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
RCVBUF = 16384           # bytes asked of the kernel per port: a few dozen frames at most
MAX_READ = 8             # frames taken from one port in one round
# a port whose socket failed while its interface stayed the same is read again after 0.5 s,
# the delay doubling up to 30 s while it keeps failing (reset after a minute read)
REOPEN_S = (0.5, 30.0)


@dataclass
class _Port:
    dpid: int
    port: int
    ifname: str
    ifindex: int
    mac: str
    sock: socket.socket
    tokens: float
    stamp: float
    paused: bool = False
    opened: float = 0.0


class PortEapol:
    """Sockets by (dpid, port), all waited on through one epoll. `handle(dpid, frames)`
    gets the frames read in one round from a switch's ports, in the LOCAL form."""

    def __init__(self, handle: Callable[[int, list[bytes]], None], auth_mac: str,
                 pps: int, counters: Callable[[], dict],
                 lost: Callable[[int, int], None] = lambda dpid, port: None,
                 regained: Callable[[int, int, str, str], bool] | None = None):
        self.handle = handle
        self.lost = lost        # a port's socket failed: its EAPOL must go by LOCAL again
        # its interface is still there: (dpid, port, ifname, MAC) may be read again (the
        # shell checks the port as for a port status, opens it and moves its EAPOL back);
        # True if it is read now. None: a lost port waits for the switch's next port status
        self.regained = regained
        self._lost: dict[tuple[int, int], tuple[object, int, str, str]] = {}
        self._delay: dict[tuple[int, int], float] = {}
        self.auth_mac = bytes.fromhex(auth_mac.replace(":", ""))
        self.rate, self.burst = float(pps), float(max(5, pps // 2))   # as the switch's meter
        self.counters = counters
        self.ports: dict[tuple[int, int], _Port] = {}
        self._by_fd: dict[int, _Port] = {}
        self._ep = _select.epoll()
        self._reader = None

    # --- ports -------------------------------------------------------------------------

    def open(self, dpid: int, port: int, ifname: str, hw_addr: str) -> bool:
        """Read `ifname` as (dpid, port) if it is on this host, an Ethernet link with the
        port's MAC (a veth end or a NIC: a tap, such as a switch's internal port, shows a
        terminal's frames as outgoing); False (the port keeps the LOCAL transport)
        otherwise. A port already read stays so while its interface is the same one."""
        key = (dpid, port)
        here = self._interface(ifname)
        old = self.ports.get(key)
        if old is not None and here == (old.ifindex, old.mac) and old.mac == hw_addr.lower():
            return True
        self._lost.pop(key, None)       # (opened now: no retry pending)
        self._drop(dpid, port)
        if here is None:
            return False            # not on this host (a switch elsewhere), or not a link
        ifindex, mac = here
        other = next((q for q in self.ports.values() if q.ifindex == ifindex), None)
        if other is not None:       # one interface is one port: a second claim is refused
            log.warning("switch %016x port %d: interface %s is read as switch %016x port %d "
                        "already: not read twice", dpid, port, ifname, other.dpid, other.port)
            return False
        if mac != hw_addr.lower():
            log.warning("switch %016x port %d: interface %s here has MAC %s, the switch's port "
                        "%s: not read (EAPOL through LOCAL)", dpid, port, ifname, mac, hw_addr)
            return False
        try:
            sock = bound_socket(ifname, ETH_P_EAPOL, _socket.socket, RCVBUF)
        except OSError as exc:      # (out of descriptors, memory: tried again later)
            log.warning("switch %016x port %d: cannot read %s (%s): EAPOL through LOCAL",
                        dpid, port, ifname, exc)
            if self.regained is not None:
                self._again(key, ifindex, ifname, mac)
            return False
        sock.setblocking(False)
        p = _Port(dpid, port, ifname, ifindex, mac, sock, self.burst, time.monotonic(),
                  opened=time.monotonic())
        self.ports[key] = p
        self._by_fd[sock.fileno()] = p
        self._ep.register(sock.fileno(), _select.EPOLLIN)
        self.counters()["eapol_port_opened"] += 1
        if self._reader is None:
            self._reader = hub.spawn(self._run)
        return True

    def close(self, dpid: int, port: int) -> None:
        """Not read any more (and not read again unless opened): the port went, or the
        shell no longer reads it."""
        self._lost.pop((dpid, port), None)
        self._delay.pop((dpid, port), None)
        self._drop(dpid, port)

    def _drop(self, dpid: int, port: int) -> None:
        p = self.ports.pop((dpid, port), None)
        if p is None:
            return
        fd = p.sock.fileno()
        self._by_fd.pop(fd, None)
        if not p.paused:
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
        p.sock.close()

    def _interface(self, ifname: str) -> tuple[int, str] | None:
        """(ifindex, MAC) of an Ethernet link of this host: one end of a veth (its peer is
        another interface) or a NIC (a device behind it). Not a tap or a switch's internal
        port: on those a terminal's frames show as sent, not received."""
        if not IFNAME.fullmatch(ifname) or ifname in (".", ".."):
            return None
        d = SYS_NET / ifname
        try:
            ifindex = int((d / "ifindex").read_text())
            if (d / "type").read_text().strip() != "1" or (d / "tun_flags").exists() or \
                    not ((d / "device").exists() or int((d / "iflink").read_text()) != ifindex):
                return None
            return ifindex, (d / "address").read_text().strip().lower()
        except (OSError, ValueError):
            return None

    def close_switch(self, dpid: int) -> None:
        for key in [k for k in {*self.ports, *self._lost, *self._delay} if k[0] == dpid]:
            self.close(*key)

    def reads(self, dpid: int, port: int) -> bool:
        return (dpid, port) in self.ports

    # --- frames ------------------------------------------------------------------------

    def send(self, dpid: int, data: bytes) -> bool:
        """Write an answer made for LOCAL on the port it names, if that port is read here;
        False: it is not (the caller writes it into LOCAL). Never yields; a full buffer
        drops it (the authenticator retransmits)."""
        port = local_port.answer_port(data)
        p = self.ports.get((dpid, port)) if port is not None else None
        if p is None:
            return False
        try:
            p.sock.send(local_port.for_port(data, self.auth_mac), socket.MSG_DONTWAIT)
        except OSError as exc:
            log.info("switch %016x port %d: EAPOL write failed: %s", dpid, p.port, exc)
            if exc.errno in (errno.ENXIO, errno.ENODEV):     # the interface is gone
                self._lose(p)
        return True

    def _run(self) -> None:
        while True:
            try:
                trampoline(self._ep.fileno(), read=True)
                ready = self._ep.poll(0)
            except Exception:      # a bug here must not end reading for every port
                log.exception("port EAPOL reader failed")
                hub.sleep(0.1)
                continue
            by_switch: dict[int, list[bytes]] = defaultdict(list)
            for fd, _ in ready:
                p = self._by_fd.get(fd)
                if p is None:
                    continue
                try:
                    by_switch[p.dpid] += self._read(p)
                except Exception:   # a bug on one port: that port goes back to LOCAL
                    log.exception("switch %016x port %d: EAPOL read failed", p.dpid, p.port)
                    self._lose(p)
            for dpid, frames in by_switch.items():
                if frames:
                    try:
                        self.handle(dpid, frames)
                    except Exception:   # a bug on one frame must not stop the reader
                        log.exception("switch %016x: EAPOL frame failed", dpid)
            hub.sleep(0)        # a flood: OpenFlow, reports and the rest go on

    def _read(self, p: _Port) -> list[bytes]:
        """Up to MAX_READ frames of one port within its rate, in the LOCAL form. A port
        over its rate is left unread until a token is due: the kernel drops the rest."""
        now = time.monotonic()
        p.tokens = min(self.burst, p.tokens + (now - p.stamp) * self.rate)
        p.stamp = now
        out: list[bytes] = []
        c = self.counters()
        for _ in range(MAX_READ):
            try:
                data, addr = p.sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                # down: its frames are gone with it; gone or replaced: given back
                if exc.errno != errno.ENETDOWN or \
                        self._interface(p.ifname) != (p.ifindex, p.mac):
                    log.warning("switch %016x port %d: EAPOL socket failed: %s; EAPOL "
                                "through LOCAL", p.dpid, p.port, exc)
                    self._lose(p)
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            if p.tokens < 1:
                c["eapol_port_over_rate"] += 1
                continue
            p.tokens -= 1
            frame = local_port.from_port(data, p.port, self.auth_mac)
            c["eapol_port_read" if frame else "eapol_port_refused"] += 1
            if frame is not None:
                out.append(frame)
            else:
                log.debug("switch %016x port %d: EAPOL to %s not taken (%d bytes)", p.dpid,
                          p.port, data[:6].hex(":"), len(data))
        if p.tokens < 1 and self.ports.get((p.dpid, p.port)) is p:
            self._pause(p, (1 - p.tokens) / self.rate)
        return out

    def _lose(self, p: _Port) -> None:
        key = (p.dpid, p.port)
        if self.ports.get(key) is not p:
            return
        self._drop(*key)
        self.lost(*key)
        if self.regained is not None and self._interface(p.ifname) == (p.ifindex, p.mac):
            if time.monotonic() - p.opened > 2 * REOPEN_S[1]:
                self._delay.pop(key, None)      # it was read for a good while: start over
            self._again(key, p.ifindex, p.ifname, p.mac)

    def _again(self, key: tuple[int, int], ifindex: int, ifname: str, mac: str) -> None:
        """Read the port again later (its interface is the same one): once per loss."""
        delay = self._delay.get(key, REOPEN_S[0])
        self._delay[key] = min(2 * delay, REOPEN_S[1])
        token = object()
        self._lost[key] = (token, ifindex, ifname, mac)
        # (warned the first time; a port that keeps failing, or that another port's
        # claim keeps from being read, is retried quietly at most every REOPEN_S[1])
        log.log(logging.WARNING if delay == REOPEN_S[0] else logging.DEBUG,
                "switch %016x port %d: EAPOL through LOCAL; its interface %s is read "
                "again in %.1f s", key[0], key[1], ifname, delay)
        hub.spawn_after(delay, self._reopen, key, token)

    def _reopen(self, key: tuple[int, int], token: object) -> None:
        got = self._lost.get(key)
        if got is None or got[0] is not token or key in self.ports:
            return          # closed (the port or its switch went) or read anew meanwhile
        del self._lost[key]
        _, ifindex, ifname, mac = got
        try:
            back = bool(self.regained and self.regained(key[0], key[1], ifname, mac))
        except Exception:       # a bug in the shell must not end the retries
            log.exception("switch %016x port %d: reading it again failed", *key)
            back = False
        if back:
            self.counters()["eapol_port_reopened"] += 1
            log.info("switch %016x port %d: EAPOL read on %s again", key[0], key[1], ifname)
        elif key in self._delay and key not in self.ports and key not in self._lost and \
                self._interface(ifname) == (ifindex, mac):
            # not closed by the shell meanwhile (a port it no longer reads), not read: the
            # same interface failed to open (or the shell could not act yet): later again
            self._again(key, ifindex, ifname, mac)

    def _pause(self, p: _Port, delay: float) -> None:
        if p.paused:
            return
        p.paused = True
        self._ep.unregister(p.sock.fileno())

        def resume() -> None:
            if self.ports.get((p.dpid, p.port)) is p and p.paused:
                try:
                    self._ep.register(p.sock.fileno(), _select.EPOLLIN)
                except OSError:         # never left unread for good: given back
                    log.exception("switch %016x port %d: EAPOL socket lost", p.dpid, p.port)
                    p.paused = True     # (not registered: `close` must not unregister)
                    self._lose(p)
                    return
                p.paused = False
        hub.spawn_after(delay, resume)

