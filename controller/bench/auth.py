"""X.1124 authentication benchmark: results/bench/auth.json.

(a) The EAP exchange as wpa_supplicant 2.10 sees it (``-t`` timestamps,
    CTRL-EVENT-EAP-STARTED to CTRL-EVENT-EAP-SUCCESS, controller/bench/wpa.py), EAP-PSK:
    ours (controller in authenticate mode, ``mobile_core`` with 17 terminals per cell) and, in
    the same invocation with the same wpa_supplicant configuration, hostapd's wired
    authenticator with its internal EAP server (controller/bench/auth_reference.py). One
    terminal: the first exchange, then ``runs`` re-authentications one at a time (control
    command REAUTHENTICATE). ``n_terminals`` terminals: supplicants started together (first
    exchanges), then ``rounds`` rounds in which all of them re-authenticate at once. The ratio
    ours/reference is given for p50 and p99.

(b) Ours, from the EAPOL-Start our supplicant sends (its ``EAPOL-START <unix time>`` line) to
    the first packet of that terminal that reaches an application server. The only traffic an
    authenticated terminal may send to an application server is what its group is entitled to
    (config/authorization.yaml: TCP services only, UDP nothing), so the terminal sends TCP
    SYNs to web:80 (10.0.100.10) every ``interval_ms`` from before its EAPOL-Start; the kernel
    timestamp (SO_TIMESTAMPNS) of the first SYN seen on the server's interface is the arrival.
    ARP before authentication is dropped, so each terminal gets a permanent neighbour entry
    for the server. One "probe" process does both ends: it enters each terminal's network
    namespace to open a raw sending socket there, and the server's namespace to open a packet
    socket on its interface (one process instead of 50 senders keeps the load of the
    measurement itself small); it stops sending for a terminal once that terminal's first
    SYN arrived. All hosts share one kernel clock, so the supplicant's and the probe's times
    compare directly. The arriving SYN's sequence number is its send index, so the result
    also says how many SYNs were dropped before (``dropped_before_first``).

(c) The same core in this process, no switch and no network (controller/bench/eapcore.py):
    the core time of each of the supplicant's four frames, warm and with the CPU's caches
    evicted before each frame (``core_in_process``), which tells the Python work from what
    running it cold costs on the wire.

Run: ``crs bench auth`` (the lead wires it) or ``python -m controller.bench.auth``.
The probe: ``python -m controller.bench.auth probe --help`` (root, used by ``run``).
"""
from __future__ import annotations

import argparse
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from controller.bench import common, eapcore, floors
from controller.emulation.processes import (
    ROOT,
    ControllerProcess,
    Timeout,
    controller_config,
    wait_until,
)
from controller.rawsock import ETH_P_ALL, attach_ethertype_filter, socket_in

SERVER = "web"
SERVER_PORT = 80                  # web/http: entitled for cells 1..3 (authorization.yaml)
SO_TIMESTAMPNS = 35               # also SCM_TIMESTAMPNS
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33               # (root: above net.core.rmem_max)
WATCH_RCVBUF = 32 << 20
# Our authenticator takes EAPOL-Starts from a port through a token bucket (3, then 1 per
# second: authenticator.Timers); re-authentications are spaced so none is rate-limited.
START_PACE_S = 1.1
TRACE_RUNS = 15                   # exchanges captured for the per-message breakdown (a)


# --- packets (pure) ------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_syn(src_ip: str, dst_ip: str, sport: int, dport: int, seq: int) -> bytes:
    """A TCP SYN header (no options) with a correct checksum, for a raw IPPROTO_TCP socket
    (the kernel adds the IP header). ``seq`` carries the send index."""
    if not (0 < sport < 65536 and 0 < dport < 65536 and 0 <= seq < 2 ** 32):
        raise ValueError("ports 1..65535, seq 0..2^32-1")
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = (socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
              + struct.pack("!BBH", 0, 6, len(hdr)))
    return hdr[:16] + struct.pack("!H", _checksum(pseudo + hdr)) + hdr[18:]


class SynTemplate:
    """`tcp_syn` for one (source, destination, ports) at a few integer operations per
    packet: the checksum of sequence number 0, updated for each sequence number's two
    16-bit words (RFC 1624), so the probe's own CPU does not crowd out what it measures."""

    def __init__(self, src_ip: str, dst_ip: str, sport: int, dport: int):
        self.base = tcp_syn(src_ip, dst_ip, sport, dport, 0)
        self.sum0 = ~struct.unpack("!H", self.base[16:18])[0] & 0xFFFF

    def packet(self, seq: int) -> bytes:
        s = self.sum0 + (seq >> 16) + (seq & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        b = self.base
        return b[:4] + seq.to_bytes(4, "big") + b[8:16] + (~s & 0xFFFF).to_bytes(2, "big") + \
            b[18:]


@dataclass(frozen=True)
class Syn:
    src_ip: str
    dst_ip: str
    sport: int
    dport: int
    seq: int


def parse_syn(ip_packet: bytes) -> Syn | None:
    """The TCP SYN (without ACK) in an IPv4 packet, or None for anything else."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    if ip_packet[9] != 6 or len(ip_packet) < ihl + 14 or ihl < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", ip_packet[ihl:ihl + 8])
    flags = ip_packet[ihl + 13]
    if flags & 0x12 != 0x02:
        return None
    return Syn(socket.inet_ntoa(ip_packet[12:16]), socket.inet_ntoa(ip_packet[16:20]),
               sport, dport, seq)


def start_to_first_ms(starts: dict[str, float],
                      arrivals: dict[str, float]) -> tuple[list[float], list[str]]:
    """Per terminal: arrival minus EAPOL-Start, in ms; and the terminals missing either."""
    out, missing = [], []
    for name, t0 in starts.items():
        if name in arrivals:
            out.append((arrivals[name] - t0) * 1000)
        else:
            missing.append(name)
    missing += [n for n in arrivals if n not in starts]
    return out, missing


def parse_probe_output(text: str) -> tuple[bool, dict[str, dict[str, float]]]:
    """The probe's lines: ``SENDING ...`` seen?, and per source IP its FIRST record."""
    sending, first = False, {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["SENDING"]:
            sending = True
        elif parts[:1] == ["FIRST"] and len(parts) == 6:
            first[parts[1]] = {"arrival": float(parts[2]), "seq": int(parts[3]),
                               "sent_at": float(parts[4]), "sent": int(parts[5])}
    return sending, first


def parse_probe_eapol(text: str) -> dict[str, dict[str, float]]:
    """Per source IP, the wire times of its EAPOL-Start and EAP-Success (``EAPOL`` lines) and
    of the controller's last OpenFlow message before its first arrival (``OFLAST``)."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["EAPOL"] and len(parts) == 4 and parts[2] in ("START", "SUCCESS"):
            out.setdefault(parts[1], {})[parts[2]] = float(parts[3])
        elif parts[:1] == ["OFLAST"] and len(parts) == 4:
            out.setdefault(parts[1], {})["OFLAST"] = float(parts[2])
        elif parts[:1] == ["OFSPAN"] and len(parts) == 5:
            out.setdefault(parts[1], {}).update(OFFIRST=float(parts[2]),
                                                OFSEGMENTS=float(parts[4]))
    return out


def supplicant_start_time(text: str) -> float | None:
    """The unix time of the first ``EAPOL-START`` line of our supplicant's output."""
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["EAPOL-START"] and len(parts) == 2:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


# --- the probe process (root namespace; enters others by file descriptor) -------------------

def _kernel_time(anc: list) -> float:
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = struct.unpack("qq", value[:16])
            return sec + nsec / 1e9
    return time.time()


def eapol_event(frame: bytes, outgoing: bool) -> str | None:
    """START for an EAPOL-Start the terminal sends, SUCCESS for an EAP-Success it receives
    (the two ends of its authentication on the wire), else None."""
    if len(frame) < 16 or frame[12:14] != b"\x88\x8e":
        return None
    if outgoing and frame[15] == 1:
        return "START"
    if not outgoing and frame[15] == 0 and len(frame) >= 19 and frame[18] == 3:
        return "SUCCESS"
    return None


def _eapol_watch(ns: str, ifname: str) -> socket.socket:
    """A packet socket on a terminal's interface, inside its namespace: its EAPOL both ways
    with kernel timestamps (the wire times of its EAPOL-Start and EAP-Success)."""
    s = socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    attach_ethertype_filter(s, 0x888E)       # ETH_P_ALL: also the frames it sends
    s.bind((ifname, ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setblocking(False)
    return s


def of_segment(frame: bytes, of_port: int) -> bool:
    """A TCP segment with data from the controller's OpenFlow port (loopback, IPv4)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return False
    ihl = (frame[14] & 0x0F) * 4
    tcp = 14 + ihl
    if len(frame) < tcp + 20:
        return False
    total = int.from_bytes(frame[16:18], "big")
    data_off = (frame[tcp + 12] >> 4) * 4
    return int.from_bytes(frame[tcp:tcp + 2], "big") == of_port and total > ihl + data_off


def probe(sources: list[tuple[str, ...]], server_ns: str, server_if: str, dst_ip: str, dport: int,
          sport: int, interval_s: float, timeout_s: float, out=print, of_port: int = 0) -> int:
    """Send SYNs from every (netns path, source IP[, interface]) every ``interval_s`` until its
    first one is seen on the server interface (or ``timeout_s``). Prints SENDING, FIRST and
    DONE lines, and with an interface the wire times of the terminal's first EAPOL-Start
    and EAP-Success (EAPOL lines)."""
    rx = socket_in(server_ns, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    rx.bind((server_if, ETH_P_IP))
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # read once a send interval: room for every SYN of every terminal admitted meanwhile
    rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, WATCH_RCVBUF)
    rx.setblocking(False)
    tx = {}
    templates: dict[str, SynTemplate] = {}
    watch: dict[socket.socket, str] = {}
    for ns, ip, *iface in sources:
        s = socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        s.setblocking(False)
        tx[ip] = s
        templates[ip] = SynTemplate(ip, dst_ip, sport, dport)
        if iface and iface[0]:
            watch[_eapol_watch(ns, iface[0])] = ip
    seen: set[tuple[str, str]] = set()
    success_at: dict[str, float] = {}
    of_watch = None
    if of_port:      # the controller's messages to the switches, on loopback (this namespace)
        of_watch = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        attach_ethertype_filter(of_watch, 0x0800)
        of_watch.bind(("lo", ETH_P_ALL))
        of_watch.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # read once a send interval: room for every segment loopback carries meanwhile
        of_watch.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, WATCH_RCVBUF)
        of_watch.setblocking(False)
    of_times: list[float] = []
    sent: dict[str, list[float]] = {ip: [] for ip in tx}
    errors = 0
    pending = set(tx)
    t_end = time.monotonic() + timeout_s
    next_send = time.monotonic()
    announced = False
    while pending and time.monotonic() < t_end:
        now = time.monotonic()
        if now >= next_send:
            for ip in list(pending):
                seq = len(sent[ip])
                wall = time.time()
                try:
                    tx[ip].sendto(templates[ip].packet(seq), (dst_ip, 0))
                except OSError:
                    errors += 1
                sent[ip].append(wall)
            if not announced:
                out(f"SENDING {time.time():.6f}")
                announced = True
            next_send += interval_s
            if next_send < now:                      # fell behind: skip, do not burst
                next_send = now + interval_s
        # no wake-up per frame: the probe shares the two vCPUs with what it measures, so it
        # sleeps until its next send and reads what arrived meanwhile, each with the
        # kernel's receive time (the controller's messages and the EAPOL before the
        # arrivals, so "last message before the arrival" sees them all)
        time.sleep(max(0.0, next_send - time.monotonic()))
        if of_watch is not None:
            while True:
                try:
                    frame, anc, _, addr = of_watch.recvmsg(4096, 64)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING and of_segment(frame, of_port):
                    of_times.append(_kernel_time(anc))
        for w in watch:
            while True:
                try:
                    frame, anc, _, addr = w.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                what = eapol_event(frame, len(addr) > 2 and addr[2] == PACKET_OUTGOING)
                if what and (watch[w], what) not in seen:
                    seen.add((watch[w], what))
                    out(f"EAPOL {watch[w]} {what} {_kernel_time(anc):.6f}")
                    if what == "SUCCESS":
                        success_at[watch[w]] = _kernel_time(anc)
        while True:
            try:
                data, anc, _, addr = rx.recvmsg(2048, 64)
            except BlockingIOError:
                break
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            syn = parse_syn(data)
            if (syn is None or syn.src_ip not in pending
                    or (syn.dport, syn.sport, syn.dst_ip) != (dport, sport, dst_ip)):
                continue
            ts = _kernel_time(anc)
            pending.discard(syn.src_ip)
            if of_watch is not None:   # the controller's last message before this arrival
                before = [t for t in of_times if t <= ts]
                if before:
                    out(f"OFLAST {syn.src_ip} {before[-1]:.6f} {len(before)}")
                # the controller's messages between the terminal's Success and its arrival
                since = [t for t in before if t >= success_at.get(syn.src_ip, ts)]
                if since:
                    out(f"OFSPAN {syn.src_ip} {since[0]:.6f} {since[-1]:.6f} {len(since)}")
            times = sent[syn.src_ip]
            at = times[syn.seq] if syn.seq < len(times) else float("nan")
            out(f"FIRST {syn.src_ip} {ts:.6f} {syn.seq} {at:.6f} {len(times)}")
    gaps = [b - a for ts in sent.values() for a, b in zip(ts, ts[1:])]
    mean_gap = sum(gaps) / len(gaps) * 1000 if gaps else 0.0
    out(f"DONE missing={len(pending)} send_errors={errors} mean_interval_ms={mean_gap:.4f}")
    for s in [rx, *tx.values(), *watch, *([of_watch] if of_watch else [])]:
        s.close()
    return 0 if not pending else 1


def probe_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="controller.bench.auth probe",
        description="SYNs from terminals' namespaces to a server; first arrivals")
    ap.add_argument("--server-netns", required=True, help="e.g. /proc/<pid>/ns/net")
    ap.add_argument("--server-if", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--dport", type=int, default=SERVER_PORT)
    ap.add_argument("--sport", type=int, required=True)
    ap.add_argument("--source", action="append", required=True,
                    help="NETNS_PATH,IP[,INTERFACE] (repeat; with the interface also the "
                         "wire times of its EAPOL-Start and EAP-Success)")
    ap.add_argument("--of-port", type=int, default=0,
                    help="the controller's OpenFlow port: also the time of its last message "
                         "to a switch before each first arrival (loopback)")
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--timeout-s", type=float, default=30.0)
    a = ap.parse_args(argv)
    try:
        sources = [tuple(s.split(",", 2)) for s in a.source]
        for src in sources:
            socket.inet_aton(src[1])
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
        return probe(sources, a.server_netns, a.server_if, a.dst, a.dport, a.sport,
                     a.interval_ms / 1000, a.timeout_s, out=lambda s: print(s, flush=True),
                     of_port=a.of_port)
    except (OSError, ValueError) as exc:
        print(f"probe: {exc}", file=sys.stderr, flush=True)
        return 2


# --- the emulated side --------------------------------------------------------------------

PYTHON = str(ROOT / ".venv/bin/python")


def _text(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


class Bench:
    """Our controller + the mobile core, and the measurements on it."""

    def __init__(self, emu: Any, ctl: ControllerProcess, work: Path, creds: Any, timeout_s: float):
        self.emu, self.ctl, self.work, self.creds, self.timeout_s = emu, ctl, work, creds, timeout_s
        self.topo = emu.topo
        self.single_counters: dict[str, int] = {}
        self.single_sched: dict[str, int] = {}

    def psk(self, name: str) -> str:
        return self.creds.demo_psk(f"{name}@crs.example").hex()

    def authenticated(self) -> set[str]:
        rows = self.ctl.get("/crs/v1/terminals")
        return ({r["name"] for r in rows if r.get("authenticated")}
                if isinstance(rows, list) else set())

    def wait_revoked(self, names: list[str], fatal: bool = True) -> list[str]:
        """Wait until none of ``names`` is authenticated (our supplicant logs off on SIGTERM).
        Returns those still in (``fatal=False``)."""
        try:
            wait_until(lambda: not (self.authenticated() & set(names)), self.timeout_s,
                       f"{len(names)} terminal(s) revoked")
        except Timeout:
            if fatal:
                raise
        return sorted(self.authenticated() & set(names))

    # (b) ------------------------------------------------------------------------------

    def static_neighbour(self, names: list[str]) -> None:
        srv = self.topo.host(SERVER)
        for n in names:
            self.emu.host(n).cmd(f"ip neigh replace {srv.ip} lladdr {srv.mac} dev {n}-eth0 "
                                 "nud permanent")

    def teach_server_location(self) -> None:
        """Let every switch learn where the server is before (b), as a server that talks would
        have taught them: one unicast ping from the server to one terminal per access switch
        (unanswered; flooded hop by hop, so each switch on the way sees the server's MAC).
        Otherwise every SYN of an authenticated terminal to a never-heard-of server is a
        packet-in (table-2 miss), and 50 terminals x 1000 SYN/s would measure the flood of
        packet-ins the measurement itself makes, not the authentication."""
        srv, seen = self.emu.host(SERVER), set()
        for t in self.topo.terminals():
            if t.switch in seen:
                continue
            seen.add(t.switch)
            srv.cmd(f"ip neigh replace {t.ip} lladdr {t.mac} dev {SERVER}-eth0 nud permanent; "
                    f"ping -c1 -W1 {t.ip} >/dev/null; ip neigh del {t.ip} dev {SERVER}-eth0")

    def first_packet_round(self, names: list[str], sport: int, interval_ms: float,
                           tag: str, supplicant: str = "wpa") -> dict:
        """One round: probe on, the supplicants started together (wpa_supplicant, or
        `supplicant="ours"`: controller.admission.supplicant_main), first arrivals, logoff."""
        self.wait_revoked(names)
        srv = self.topo.host(SERVER)
        out = self.work / f"probe-{tag}.out"
        argv = [PYTHON, "-m", "controller.bench.auth", "probe",
                "--server-netns", f"/proc/{self.emu.host(SERVER).pid}/ns/net",
                "--server-if", f"{SERVER}-eth0", "--dst", srv.ip, "--dport", str(SERVER_PORT),
                "--sport", str(sport), "--interval-ms", str(interval_ms),
                "--timeout-s", str(min(self.timeout_s, 30.0))]
        if len(names) == 1:       # one terminal: where its time after the Success goes
            argv += ["--of-port", str(self.ctl.ofp_port)]
        for n in names:
            argv += ["--source",
                     f"/proc/{self.emu.host(n).pid}/ns/net,{self.topo.host(n).ip},{n}-eth0"]
        with open(out, "w") as f:
            prb = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        sups: dict[str, tuple[subprocess.Popen, Path]] = {}
        ctrls: list[Any] = []
        try:
            wait_until(lambda: parse_probe_output(_text(out))[0] or prb.poll() is not None, 20,
                       "the probe to start sending")
            if prb.poll() is not None:
                raise RuntimeError(f"probe exited: {_text(out)[-400:]}")
            time.sleep(0.02)                         # SYNs are flowing before any EAPOL-Start
            for n in names:
                if supplicant == "wpa":
                    p, log, ctrl = self.wpa(n)
                    sups[n] = (p, log)
                    ctrls.append(ctrl)
                    continue
                log = self.work / f"sup-{tag}-{n}.out"
                p = self.emu.popen(n, [PYTHON, "-m", "controller.admission.supplicant_main",
                                       "--interface", f"{n}-eth0", "--identity", f"{n}@crs.example",
                                       "--psk", self.psk(n),
                                       "--keys-out", str(self.work / f"keys-{n}.json")],
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=str(ROOT))
                sups[n] = (p, log)
            try:
                prb.wait(self.timeout_s + 10)
            except subprocess.TimeoutExpired:
                pass
            _, first = parse_probe_output(_text(out))
            starts = {n: supplicant_start_time(_text(log)) for n, (_, log) in sups.items()}
        finally:
            if prb.poll() is None:
                prb.terminate()
                prb.wait(10)
            for c in ctrls:          # wpa_supplicant: an explicit EAPOL-Logoff first
                try:
                    c.request("LOGOFF")
                except OSError:
                    pass
            for p, _ in sups.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)        # ours: EAPOL-Logoff on SIGTERM
            for p, _ in sups.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        ip_of = {self.topo.host(n).ip: n for n in names}
        arrivals = {ip_of[ip]: r["arrival"] for ip, r in first.items() if ip in ip_of}
        wire = {ip_of[ip]: w for ip, w in parse_probe_eapol(_text(out)).items() if ip in ip_of}
        # the EAPOL-Start as it left the terminal (kernel time) where the probe saw it,
        # else (ours) the time our supplicant printed just before sending it
        for n, w in wire.items():
            if "START" in w:
                starts[n] = w["START"]
        known = {n: t for n, t in starts.items() if t is not None}
        lat, missing = start_to_first_ms(known, arrivals)
        eap_ms = [(w["SUCCESS"] - w["START"]) * 1000 for w in wire.values()
                  if "START" in w and "SUCCESS" in w]
        after_ms = [(arrivals[n] - w["SUCCESS"]) * 1000 for n, w in wire.items()
                    if "SUCCESS" in w and n in arrivals]
        to_flows_ms = [(w["OFLAST"] - w["SUCCESS"]) * 1000 for w in wire.values()
                       if "OFLAST" in w and "SUCCESS" in w]
        from_flows_ms = [(arrivals[n] - w["OFLAST"]) * 1000 for n, w in wire.items()
                         if "OFLAST" in w and n in arrivals]
        # of which: the Success -> the controller's first message after it (the admission's
        # work and its sync), that message -> its last before the arrival, and how many
        to_first_of_ms = [(w["OFFIRST"] - w["SUCCESS"]) * 1000 for w in wire.values()
                          if "OFFIRST" in w and "SUCCESS" in w]
        of_span_ms = [(w["OFLAST"] - w["OFFIRST"]) * 1000 for w in wire.values()
                      if "OFFIRST" in w and "OFLAST" in w]
        of_segments = [w["OFSEGMENTS"] for w in wire.values() if "OFSEGMENTS" in w]
        missing += [n for n, t in starts.items() if t is None]
        done = _text(out).splitlines()[-1:] or [""]
        interval = next((float(x.split("=")[1]) for x in done[0].split()
                         if x.startswith("mean_interval_ms=")), None)
        return {"ms": lat, "missing": sorted(set(missing)),
                "dropped_before_first": [r["seq"] for r in first.values()],
                "send_to_arrival_ms": [(r["arrival"] - r["sent_at"]) * 1000
                                       for r in first.values()],
                "start_to_success_ms": eap_ms, "success_to_first_ms": after_ms,
                "success_to_last_of_ms": to_flows_ms, "last_of_to_first_ms": from_flows_ms,
                "success_to_first_of_ms": to_first_of_ms, "of_span_ms": of_span_ms,
                "of_segments": of_segments, "mean_send_interval_ms": interval}

    def first_packet(self, single: str, names: list[str], runs: int, rounds: int,
                     interval_ms: float, concurrent_interval_ms: float) -> dict:
        self.static_neighbour(sorted(set(names) | {single}))
        self.teach_server_location()
        one = []
        before = self.ctl.status().get("counters", {})
        for i in range(runs):
            time.sleep(START_PACE_S)       # the per-port EAPOL-Start bucket has a token again
            one.append(self.first_packet_round([single], 20000 + i, interval_ms, f"b1-{i}"))
        after = self.ctl.status().get("counters", {})
        delta = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        n_flows = max(1, delta.get("timed_eapol_flows", 0))
        # the controller's own time for the frame that admits (PSK-4: Success, commit, flows)
        syncs = delta.get("store_syncs", 0) + delta.get("store_syncs_inline", 0)
        held = delta.get("store_outputs_held", 0)
        in_controller = {"admissions_and_revocations": delta.get("timed_eapol_flows", 0),
                         "core_us": delta.get("time_eapol_flows_core_us", 0) / n_flows,
                         "send_us": delta.get("time_eapol_flows_send_us", 0) / n_flows,
                         # the commit's disk sync its flows wait for: on the loop or in the
                         # native thread, and how long what it held waited
                         "syncs": syncs, "syncs_on_loop": delta.get("store_syncs_inline", 0),
                         "sync_us": delta.get("time_store_sync_us", 0) / max(1, syncs),
                         "held_us": delta.get("time_store_held_us", 0) / max(1, held)}
        print(f"(b) 1 terminal: {runs} runs (wpa_supplicant)", flush=True)
        ours = []        # the same with our Python supplicant (slower on the terminal's side)
        for i in range(max(1, runs // 2)):
            time.sleep(START_PACE_S)
            ours.append(self.first_packet_round([single], 22000 + i, interval_ms, f"b1o-{i}",
                                                supplicant="ours"))
        print(f"(b) 1 terminal: {len(ours)} runs (ours)", flush=True)
        many = []
        for r in range(rounds):
            many.append(self.first_packet_round(names, 21000 + r, concurrent_interval_ms,
                                                f"bn-{r}"))
            print(f"(b) {len(names)} terminals: round {r + 1}/{rounds}", flush=True)
        not_revoked = self.wait_revoked(sorted(set(names) | {single}), fatal=False)

        def agg(rs: list[dict]) -> dict:
            ms = [x for r in rs for x in r["ms"]]
            s = common.summary(ms)
            intervals = [r["mean_send_interval_ms"] for r in rs if r["mean_send_interval_ms"]]
            dropped = [float(x) for r in rs for x in r["dropped_before_first"]]
            to_arrival = [x for r in rs for x in r["send_to_arrival_ms"]]
            return {"start_to_first_packet_ms": s, "p50_ms": s["p50"], "p99_ms": s["p99"],
                    # on the terminal's wire: Start -> EAP-Success, EAP-Success -> first SYN
                    # at the server (the binding's commit, its flows, the path)
                    "start_to_success_ms": common.summary(
                        [x for r in rs for x in r["start_to_success_ms"]]),
                    "success_to_first_ms": common.summary(
                        [x for r in rs for x in r["success_to_first_ms"]]),
                    # one terminal: the Success -> the controller's last OpenFlow message
                    # before the arrival (commit, flows) -> the arrival (switch, path)
                    "success_to_last_of_ms": common.summary(
                        [x for r in rs for x in r["success_to_last_of_ms"]]),
                    "last_of_to_first_ms": common.summary(
                        [x for r in rs for x in r["last_of_to_first_ms"]]),
                    # (the first of those two legs: Success -> first message, first -> last
                    # message, messages (TCP segments) between the Success and the arrival)
                    "success_to_first_of_ms": common.summary(
                        [x for r in rs for x in r["success_to_first_of_ms"]]),
                    "of_span_ms": common.summary([x for r in rs for x in r["of_span_ms"]]),
                    "of_segments": common.summary([x for r in rs for x in r["of_segments"]]),
                    "missing": sum(len(r["missing"]) for r in rs),
                    "syns_dropped_before_first": common.summary(dropped),
                    "send_to_arrival_ms": common.summary(to_arrival),
                    "mean_send_interval_ms": sum(intervals) / len(intervals) if intervals else None,
                    # what the probe achieved in all (it shares the cores it measures)
                    "syns_per_s": (len(rs[0]["ms"]) + len(rs[0]["missing"])) * 1000 /
                    (sum(intervals) / len(intervals)) if intervals and rs else None}
        return {"supplicant": "wpa_supplicant",
                "single": {"runs": runs, "syn_interval_ms": interval_ms, **agg(one),
                           "admitting_frame_in_controller": in_controller},
                "single_our_supplicant": {"runs": len(ours), "syn_interval_ms": interval_ms,
                                          **agg(ours)},
                "concurrent": {"n_terminals": len(names), "rounds": rounds,
                               "syn_interval_ms": concurrent_interval_ms, **agg(many)},
                "not_revoked_after": not_revoked}

    # (a) ------------------------------------------------------------------------------

    def wpa(self, name: str):
        from controller.bench.wpa import Ctrl, start_supplicant, write_supplicant_config
        ctrl_dir = self.work / "wpa-ctrl"
        conf = write_supplicant_config(self.work / f"wpa-{name}.conf", f"{name}@crs.example",
                                       self.psk(name), "PSK", ctrl_dir)
        log = self.work / f"wpa-{name}.out"
        p = start_supplicant(f"{name}-eth0", conf, log,
                             popen=lambda argv, out: self.emu.popen(name, argv, stdout=out,
                                                                    stderr=subprocess.STDOUT))
        return p, log, Ctrl(ctrl_dir, f"{name}-eth0")

    def capture(self, name: str, netns_host: str | None) -> tuple[subprocess.Popen, Path]:
        """tcpdump of EAPOL on an interface: a terminal's (in its namespace) or, with
        `netns_host` None, a root-namespace one (a switch's LOCAL port)."""
        pcap, err = self.work / f"{name}.pcap", self.work / f"{name}.tcpdump"
        argv = ["tcpdump", "--immediate-mode", "-U", "-Z", "root", "-n", "-i", name,
                "-w", str(pcap), "ether proto 0x888e"]
        with open(err, "wb") as e:
            proc = (self.emu.popen(netns_host, argv, stdout=subprocess.DEVNULL, stderr=e)
                    if netns_host else subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                        stderr=e))
        wait_until(lambda: "listening on" in _text(err), 10, f"tcpdump on {name}")
        return proc, pcap

    def eap(self, single: str, names: list[str], runs: int, rounds: int,
            trace_local: str | None = None) -> dict:
        """(a); `trace_local`: where the controller reads the single terminal's EAPOL (its
        switch's LOCAL interface, or the switch's end of its link), captured
        with the terminal's own for the per-message breakdown (`eaptrace`), over up to
        `TRACE_RUNS` more exchanges after the measured ones: a capture wakes tcpdump for
        every frame on the same two vCPUs, so the measured exchanges run without one, as
        the reference's do."""
        from controller.bench import eaptrace
        from controller.bench.wpa import exchanges, stop_process, wait_results
        to = self.timeout_s
        caps: list[tuple[subprocess.Popen, Path]] = []
        p, log, ctrl = self.wpa(single)

        def reauthenticate(k: int) -> None:
            time.sleep(START_PACE_S)
            if ctrl.request("REAUTHENTICATE").strip() != "OK":
                raise RuntimeError("REAUTHENTICATE refused")
            wait_results(log, k + 2, to)
        try:
            wait_results(log, 1, to)
            wait_until(ctrl.ready, 10, "wpa_supplicant control interface")
            before = self.ctl.status().get("counters", {})
            sched0, t_wall = common.sched(self.ctl.proc.pid), time.perf_counter()
            for k in range(runs):
                reauthenticate(k)
            # the controller's timing of the single terminal's re-authentications alone
            sched1, t_wall = common.sched(self.ctl.proc.pid), time.perf_counter() - t_wall
            after = self.ctl.status().get("counters", {})
            self.single_counters = {k: after[k] - before.get(k, 0) for k in after
                                    if isinstance(after[k], int)}
            # the event loop's thread over the whole phase (idle between exchanges included)
            self.single_sched = {**common.delta(sched1, sched0), "wall_ns": int(t_wall * 1e9),
                                 "exchanges": runs}
            if trace_local:
                caps = [self.capture(f"{single}-eth0", single), self.capture(trace_local, None)]
                for k in range(runs, runs + min(TRACE_RUNS, runs)):
                    reauthenticate(k)
        finally:
            stop_process(p)
            for proc, _ in caps:
                stop_process(proc)
        trace = eaptrace.summary(eaptrace.legs(*(eaptrace.read_pcap(pc) for _, pc in caps))) \
            if caps else None
        one = exchanges(_text(log))
        traced = one.success_ms[runs + 1:]      # (the captured ones: the breakdown only)
        one.success_ms[runs + 1:] = []
        print(f"(a) 1 terminal: {len(one.success_ms)} exchanges "
              f"(+{len(traced)} captured for the breakdown)", flush=True)
        started = []
        try:
            t0 = time.monotonic()
            for n in names:
                (self.work / f"wpa-{n}.out").unlink(missing_ok=True)
                started.append(self.wpa(n))
            for _, lg, _ in started:
                wait_results(lg, 1, to)
            cold_s = time.monotonic() - t0
            for _, _, c in started:
                wait_until(c.ready, 10, f"control interface {c.path}")
            for r in range(rounds):
                time.sleep(START_PACE_S)
                for _, _, c in started:
                    if c.request("REAUTHENTICATE").strip() != "OK":
                        raise RuntimeError(f"REAUTHENTICATE refused by {c.path}")
                for _, lg, _ in started:
                    wait_results(lg, r + 2, to)
                print(f"(a) {len(names)} terminals: round {r + 1}/{rounds}", flush=True)
        finally:
            for p, _, _ in started:
                stop_process(p)
        per = [exchanges(_text(lg)) for _, lg, _ in started]
        s_re = common.summary(one.success_ms[1:])
        first = common.summary([e.success_ms[0] for e in per if e.success_ms])
        c_re = common.summary([x for e in per for x in e.success_ms[1:]])
        return {
            "single": {"first_ms": one.success_ms[0] if one.success_ms else None, "reauth_ms": s_re,
                       "p50_ms": s_re["p50"], "p99_ms": s_re["p99"],
                       "failures": len(one.failure_ms), "trace_us": trace,
                       # the captured exchanges (the trace's), apart: what capturing costs
                       "traced_reauth_ms": common.summary(traced) if caps else None},
            "concurrent": {"n_terminals": len(names), "first_ms": first, "all_first_done_s": cold_s,
                           "reauth_ms": c_re, "p50_ms": c_re["p50"], "p99_ms": c_re["p99"],
                           "failures": sum(len(e.failure_ms) for e in per),
                           "unfinished": sum(e.unfinished for e in per)},
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run(out_dir: str = "results/bench", n_terminals: int = 50, runs: int = 30, rounds: int = 3,
        first_packet_runs: int = 20, first_packet_rounds: int = 1, interval_ms: float = 1.0,
        concurrent_interval_ms: float = 1.0,
        terminals_per_cell: int = 17, eapol_pps: int = 1000, reference: bool = True,
        timeout_s: float = 60.0, topology_file: str = "topologies/mobile_core.yaml",
        workdir: str | None = None, eapol_transport: str = "port",
        compare_transport: bool = True, profile: bool = False) -> dict[str, Any]:
    """The whole benchmark (module doc); writes ``<out_dir>/auth.json`` and prints a table.
    ``workdir`` keeps the logs (supplicants, probe, controller) there instead of a temp dir.
    ``compare_transport``: the EAP exchanges again with the other EAPOL transport
    (``ours_other_transport``), on the same network, so both are measured in one run.
    ``profile``: the controller process of (a) profiled (auth.prof next to the JSON)."""
    import yaml

    from controller import topology
    from controller.admission.credentials import load_credentials
    from controller.bench import auth_reference
    from controller.config import load_yaml
    from controller.emulation.net import start_network

    if min(n_terminals, runs, rounds, first_packet_runs) < 1 or first_packet_rounds < 0:
        raise ValueError("n_terminals, runs, rounds, first_packet_runs >= 1; "
                         "first_packet_rounds >= 0")
    if n_terminals > 3 * terminals_per_cell:
        raise ValueError(f"{n_terminals} terminals need terminals_per_cell >= "
                         f"{-(-n_terminals // 3)}")
    t_begin = time.monotonic()
    creds = load_credentials(ROOT / "config/credentials.yaml")
    result: dict[str, Any] = {}
    phases: dict[str, float] = {}
    # the same core in this process, warm and with cold caches (eapcore: ~2 s)
    result["core_in_process"] = eapcore.measure()
    if reference:
        print(f"reference: hostapd, 1 terminal x {runs}, {n_terminals} terminals x {rounds} "
              "rounds", flush=True)
        result["reference"] = auth_reference.run(n_terminals, runs, timeout_s, rounds=rounds)
        phases["reference"] = time.monotonic() - t_begin
    with tempfile.TemporaryDirectory(prefix="crs-bench-auth-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        store_fs = common.filesystem(work)     # the controllers' stores are in `work`
        result["machine_floors"] = floors.measure_or_error(work)     # (before the controllers)
        doc = load_yaml(ROOT / topology_file)
        doc["terminals_per_cell"] = terminals_per_cell
        topo_path = work / "topology.yaml"
        topo_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        topo = topology.load(topo_path)
        names = [h.name for h in topo.terminals()][:n_terminals]
        single = names[0]
        # authentication on, the CRS off (only X.1124 is measured)
        def config(transport: str) -> list[str]:
            return controller_config(work / transport / "controller.yaml", topo_path,
                                     session_s=3600, extra={"admission": {
                                         "eapol_pps": eapol_pps,
                                         "eapol_transport": transport}})
        cfg = config(eapol_transport)
        other = "packet_in" if eapol_transport == "local" else "local"
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        prof = ["--profile", str(Path(out_dir).resolve() / "auth.prof")] if profile else []
        with ControllerProcess(work / "ctl", cfg + prof) as ctl:
            emu = start_network(topo, ctl, patch_links=True)
            try:
                b = Bench(emu, ctl, work, creds, timeout_s)
                t = time.monotonic()
                # where the controller's side of the exchange is captured: the switch's
                # LOCAL port, or the switch's end of the terminal's link (what it reads)
                local_if = topo.host(single).switch if eapol_transport == "local" else \
                    _switch_end(emu.host(single)) if eapol_transport == "port" else None
                result["ours"] = b.eap(single, names, runs, rounds, local_if)
                result["controller_counters"] = {"eap_single": b.single_counters}
                result["controller_sched"] = {"eap_single": b.single_sched}
                phases["ours_eap"], t = time.monotonic() - t, time.monotonic()
                result["controller_counters"]["eap"] = ctl.status().get("counters", {})
                if compare_transport:
                    ctl.stop()
                    ctl = ControllerProcess(work / f"ctl-{other}", config(other),
                                            ofp_port=ctl.ofp_port).start()
                    ctl.wait_switches(len(topo.switches), 60, "switches reconnected")
                    b2 = Bench(emu, ctl, work / other, creds, timeout_s)
                    result["ours_other_transport"] = {"eapol_transport": other,
                                                      **b2.eap(single, names, runs, rounds)}
                    result["controller_counters"]["eap_other_transport"] = \
                        ctl.status().get("counters", {})
                    phases["ours_eap_other_transport"], t = (time.monotonic() - t,
                                                             time.monotonic())
                # (b) on a fresh controller (new store: every terminal unauthenticated, whatever
                # wpa_supplicant left behind) on the same OpenFlow port: the switches reconnect
                # and their tables are rebuilt. Last, because 50 x 1000 SYN/s may overload it.
                ctl.stop()
                ctl = ControllerProcess(work / "ctl-b", cfg, ofp_port=ctl.ofp_port)
                ctl.start()
                try:
                    ctl.wait_switches(len(topo.switches), 60,
                                      "all switches reconnected to the second controller")
                    b.ctl = ctl
                    result["ours_first_packet"] = b.first_packet(
                        single, names, first_packet_runs, first_packet_rounds, interval_ms,
                        concurrent_interval_ms)
                    phases["ours_first_packet"] = time.monotonic() - t
                    result["controller_counters"]["first_packet"] = ctl.status().get("counters", {})
                finally:
                    ctl.stop()
            finally:
                emu.stop()
    ours, ref = result["ours"], result.get("reference")
    ratio = {}
    if ref:
        for side in ("single", "concurrent"):
            for p in ("p50_ms", "p99_ms"):
                ratio[f"{side}_{p[:3]}_ours_over_reference"] = _ratio(ours[side][p], ref[side][p])
        ratio["concurrent_first_p50_ours_over_reference"] = _ratio(
            ours["concurrent"]["first_ms"]["p50"], ref["concurrent"]["first_ms"]["p50"])
    result["ratio"] = ratio
    result["parameters"] = {
        "method": "EAP-PSK", "topology": topo.name, "terminals_per_cell": terminals_per_cell,
        "n_terminals": n_terminals, "single_terminal": single, "runs": runs, "rounds": rounds,
        "first_packet_runs": first_packet_runs, "first_packet_rounds": first_packet_rounds,
        "syn_interval_ms": interval_ms,
        "server": f"{SERVER} {topo.host(SERVER).ip} tcp/{SERVER_PORT}",
        "eapol_pps": eapol_pps, "eapol_transport": eapol_transport,
        "store_filesystem": store_fs,
        "crs_enabled": False, "link_shaping": False, "inter_switch_links": "patch ports",
        "eap_timing": "wpa_supplicant -t: CTRL-EVENT-EAP-STARTED to CTRL-EVENT-EAP-SUCCESS",
        "first_packet_timing": "our supplicant's EAPOL-START line (wall clock before send) to the "
                               "kernel receive timestamp of the terminal's first TCP SYN on the "
                               "server's interface",
    }
    result["breakdown"] = breakdown(result)
    result["duration_s"] = time.monotonic() - t_begin
    result["phase_duration_s"] = phases
    path = common.write(out_dir, "auth", result)
    print(report_table(result))
    b = result["breakdown"]
    if b:
        print(common.table([[k, v] for k, v in b.items()], ["one EAP-PSK exchange", "value"]))
    print(common.table(eapcore.table(result["core_in_process"]),
                       ["core per frame, in process (us)", "re-auth warm", "re-auth cold caches",
                        "first auth warm"]))
    print(common.table(floors.rows(result["machine_floors"]),
                       ["this machine (before its controllers)", "median"]))
    print(f"written: {path}")
    return result


EAP_PSK_FRAMES = 4     # from the supplicant: EAPOL-Start, Identity, PSK-2, PSK-4
FRAMES_OF_EXCHANGE = ("start", "identity", "psk2", "psk4")     # (`eapol.frame_kind`)
IN_WINDOW = FRAMES_OF_EXCHANGE[1:]


def _switch_end(host) -> str:
    """The name of the switch's end of a Mininet host's link."""
    link = host.defaultIntf().link
    return (link.intf1 if link.intf2.node is host else link.intf2).name


def breakdown(res: dict[str, Any]) -> dict[str, Any]:
    """Where one EAP-PSK exchange's time goes, from the controller's own timing counters
    (the shell times each packet-in: the core's decision, then converting and queueing
    its messages) and the exchange time wpa_supplicant saw: the rest is the legs between
    switch and controller (OpenFlow, Ryu's parsing and event queue) and the supplicant."""
    c = res.get("controller_counters", {}).get("eap_single") or \
        res.get("controller_counters", {}).get("eap", {})
    n = c.get("timed_eapol", 0)
    if not n:
        return {}
    core_us = c.get("time_eapol_core_us", 0) / n
    send_us = c.get("time_eapol_send_us", 0) / n
    exchange_ms = res["ours"]["single"]["p50_ms"]
    # inside wpa_supplicant's window (EAP-STARTED: the Identity request has arrived; SUCCESS)
    # the controller holds each of the three responses until its answer leaves: the Start
    # comes before it, PSK-4's commit and flows after its Success
    answers = [c.get(f"time_eapol_{k}_answer_us", 0) / c[f"answered_eapol_{k}"]
               for k in IN_WINDOW if c.get(f"answered_eapol_{k}")]
    controller_ms = sum(answers) / 1000 if len(answers) == len(IN_WINDOW) else \
        EAP_PSK_FRAMES * (core_us + send_us) / 1000
    out = {"eapol_frames": n, "per_message_core_us": core_us,
           "per_message_send_us": send_us,
           # the same in the thread's CPU time: the wall time above it was spent off the CPU
           "per_message_core_cpu_us": c.get("cpu_eapol_core_us", 0) / n,
           "per_message_send_cpu_us": c.get("cpu_eapol_send_us", 0) / n,
           "frames_per_exchange": EAP_PSK_FRAMES,
           "exchange_p50_ms": exchange_ms, "in_controller_ms": controller_ms,
           "legs_and_supplicant_ms": exchange_ms - controller_ms if exchange_ms else None}
    for kind in FRAMES_OF_EXCHANGE:
        # each of the supplicant's frames in the controller: the core's call (wall, CPU),
        # and the time to its answer, which leaves from inside the call (PSK-4's Success
        # before the admission's commit and flows)
        k = c.get(f"timed_eapol_{kind}", 0)
        if k:
            out[f"{kind}_core_us"] = c.get(f"time_eapol_{kind}_us", 0) / k
            out[f"{kind}_core_cpu_us"] = c.get(f"cpu_eapol_{kind}_us", 0) / k
        a = c.get(f"answered_eapol_{kind}", 0)
        if a:
            out[f"{kind}_to_answer_us"] = c.get(f"time_eapol_{kind}_answer_us", 0) / a
    sched = res.get("controller_sched", {}).get("eap_single") or {}
    if sched.get("exchanges"):
        k = sched["exchanges"]
        # per exchange, the event loop's thread: on a CPU, runnable but waiting for one,
        # forced off it; and the hypervisor's steal on the whole machine (in clock ticks)
        out["loop_cpu_per_exchange_ms"] = sched["run_ns"] / k / 1e6
        out["loop_runqueue_wait_per_exchange_ms"] = sched["wait_ns"] / k / 1e6
        out["loop_preempted_per_exchange"] = sched.get("nonvoluntary_ctxt_switches", 0) / k
        out["steal_ms_per_exchange"] = sched.get("steal_ns", 0) / k / 1e6
    trace = res["ours"]["single"].get("trace_us") or {}
    sums = trace.get("sum_of_medians_us")
    if sums:    # measured on the wire: the captures on the terminal and on LOCAL
        for k, v in sums.items():
            out[f"traced_{k[:-3]}_ms"] = v / 1000
    return out


def report_table(res: dict[str, Any]) -> str:
    """The printed summary: one row per measurement, p50/p99 in ms, ratios where compared."""
    ours, ref, fp = res["ours"], res.get("reference") or {}, res["ours_first_packet"]
    ratio = res.get("ratio", {})
    n = ours["concurrent"]["n_terminals"]
    rows = []
    for side, label in (("single", "1 terminal"), ("concurrent", f"{n} at once")):
        o, r = ours[side], ref.get(side, {})
        rows.append([f"(a) EAP re-auth, {label}", o["reauth_ms"]["n"], o["p50_ms"], o["p99_ms"],
                     r.get("p50_ms"), r.get("p99_ms"), ratio.get(f"{side}_p50_ours_over_reference"),
                     ratio.get(f"{side}_p99_ours_over_reference")])
    other = res.get("ours_other_transport")
    if other:
        for side, label in (("single", "1 terminal"), ("concurrent", f"{n} at once")):
            o, r = other[side], ref.get(side, {})
            rows.append([f"(a) same, EAPOL by {other['eapol_transport']}, {label}",
                         o["reauth_ms"]["n"], o["p50_ms"], o["p99_ms"], r.get("p50_ms"),
                         r.get("p99_ms"), _ratio(o["p50_ms"], r.get("p50_ms")),
                         _ratio(o["p99_ms"], r.get("p99_ms"))])
    oc, rc = ours["concurrent"]["first_ms"], ref.get("concurrent", {}).get("first_ms", {})
    rows.append([f"(a) EAP first, {n} at once", oc["n"], oc["p50"], oc["p99"], rc.get("p50"),
                 rc.get("p99"), _ratio(oc["p50"], rc.get("p50")), _ratio(oc["p99"], rc.get("p99"))])
    for side, label in (("single", "1 terminal"), ("concurrent", f"{n} at once"),
                        ("single_our_supplicant", "1 terminal, our supplicant")):
        if side not in fp:
            continue
        s = fp[side]["start_to_first_packet_ms"]
        rows.append([f"(b) Start->first pkt, {label}", s["n"], s["p50"], s["p99"],
                     None, None, None, None])
        for key, what in (("start_to_success_ms", "Start->Success"),
                          ("success_to_first_ms", "Success->first pkt")):
            part = fp[side].get(key) or {}
            if part.get("n"):
                rows.append([f"    of which {what}", part["n"], part["p50"], part["p99"],
                             None, None, None, None])
    return common.table(rows, ["measurement", "n", "ours p50 ms", "ours p99 ms", "hostapd p50 ms",
                               "hostapd p99 ms", "ratio p50", "ratio p99"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        return probe_main(argv[1:])
    ap = argparse.ArgumentParser(prog="crs bench auth", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--first-packet-runs", type=int, default=20)
    ap.add_argument("--first-packet-rounds", type=int, default=1)
    ap.add_argument("--terminals-per-cell", type=int, default=17,
                    help="the network's size (mobile_core has 3 cells); its idle ports cost "
                         "every flow change in a userspace datapath")
    ap.add_argument("--syn-interval-ms", type=common.interval_ms, default=1.0,
                    help="how often the lone terminal sends its SYN (the first packet is "
                         "late by up to this; 50 at once send every 1 ms)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--eapol-transport", choices=["local", "packet_in", "port"], default="port",
                    help="the transport measured in full (the other: EAP exchanges only)")
    ap.add_argument("--no-transport-comparison", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="write the controller's cProfile of (a) next to the JSON")
    ap.add_argument("--workdir", metavar="DIR",
                    help="the controller's store, logs and run files here (tmpfs: no sync "
                         "cost; `crs bench --workdir`)")
    a = ap.parse_args(argv)
    try:
        run(a.out, a.terminals, a.runs, a.rounds, a.first_packet_runs, a.first_packet_rounds,
            reference=not a.no_reference, eapol_transport=a.eapol_transport,
            compare_transport=not a.no_transport_comparison, profile=a.profile,
            workdir=a.workdir, terminals_per_cell=a.terminals_per_cell,
            interval_ms=a.syn_interval_ms)
    except (RuntimeError, ValueError, Timeout) as exc:
        print(f"bench auth: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
