"""The harmless emulated worm that runs on one terminal (a Mininet host).

It reproduces only what the containment experiments measure: a UDP "vulnerable service"
that gets infected by a datagram carrying the marker, and, once infected, a scanner that
sends such datagrams at a fixed rate to targets chosen by a strategy. No code is ever
transferred or executed; the "infection" is a state change written to files.

Effects, all on this host:
- events file (JSON lines, appended, flushed per line): start, infected, probed (a probe
  received), probes (per-second counts of probes sent / acks received / send errors),
  threat_detected, stop. Times are time.time() seconds.
- posture file (atomic replace): `infection` at infection time (ground truth for the
  experiment), the own infection in `threats` and each probing source in `attackers`
  `detection_delay` seconds after the fact (what the agent will report).

Pacing: probes are evenly paced, probe k of an infected host is due at
infected + (k + phase) / rate, with a per-host phase in [0, 1) so hosts do not fire in step.
The average rate is exact; a late loop catches up in bounded bursts.
Targets: see targets.TargetPicker; the sequence depends only on (seed, own IP).

Wire format: probe  b"<marker> PROBE <name> xxx..." padded to --probe-size bytes; a vulnerable
listener answers every probe with b"<marker> ACK <name>" so network evidence (and the
scanner's counts) can tell success from failure. Both use the service port as source and
destination port.

Run: python -m controller.worm.host --name c1t1 --ip 10.0.1.1 --posture P --events E ...
"""
from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import random
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from controller.worm import posture as pst
from controller.worm.targets import (
    STRATEGIES,
    AddressSpace,
    TargetError,
    TargetPicker,
    host_rng,
    load_hitlist,
    parse_space,
)

DEFAULT_PORT = 4444
DEFAULT_MARKER = "CRS-WORM-DEMO"
DEFAULT_WORM = "Worm.Demo"
DEFAULT_PROBE_SIZE = 376  # UDP payload bytes, as SQL Slammer's single datagram
MAX_BURST = 50          # probes sent in one loop turn when catching up
MAX_WAIT_S = 0.1        # loop wakes at least this often (stop flag, SIGTERM)


@dataclass
class WormConfig:
    """Everything one worm process needs; built from the command line or by tests."""

    name: str
    ip: str
    posture: Path
    events: Path
    port: int = DEFAULT_PORT
    vulnerable: bool = True
    infected: bool = False
    scan_rate: float = 1.0
    strategy: str = "uniform"
    space: AddressSpace = field(default_factory=lambda: parse_space("10.0.0.0/24"))
    local_space: AddressSpace | None = None
    local_preference: float = 0.0
    hitlist: list[str] = field(default_factory=list)
    detection_delay: float = 1.0
    seed: int = 0
    marker: str = DEFAULT_MARKER
    worm_name: str = DEFAULT_WORM
    duration: float | None = None
    probe_size: int = DEFAULT_PROBE_SIZE


class WormHost:
    """One terminal's worm: a listener always, a scanner once infected."""

    def __init__(self, cfg: WormConfig, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self.cfg, self.wall, self.mono = cfg, wall, mono
        self.picker = TargetPicker(cfg.strategy, cfg.space, cfg.ip, host_rng(cfg.seed, cfg.ip),
                                   cfg.local_space, cfg.local_preference, cfg.hitlist)
        self.phase = random.Random(f"phase:{cfg.seed}:{cfg.ip}").random()
        self.marker = cfg.marker.encode()
        head = self.marker + b" PROBE " + cfg.name.encode() + b" "
        # padded so that byte-based defences (meters) see a realistic worm datagram
        self.probe_payload = head + b"x" * max(0, cfg.probe_size - len(head))
        self.ack_payload = self.marker + b" ACK " + cfg.name.encode()
        self.infected_at: float | None = None       # wall time
        self._scan_start: float | None = None       # monotonic time of infection
        self._k = 0                                  # probes sent so far
        self._pending: list[tuple[float, int, str, Any]] = []   # (due_mono, seq, kind, data)
        self._seq = 0
        self.totals = {"sent": 0, "acked": 0, "send_errors": 0, "received": 0}
        self._second = {"sent": 0, "acked": 0, "send_errors": 0}
        self._events: TextIO | None = None
        self.sock: socket.socket | None = None

    # --- files -------------------------------------------------------------------------
    def event(self, kind: str, at: float | None = None, **data: Any) -> None:
        """One record; `at`: its time if not now (what it tells of happened before)."""
        rec = {"t": self.wall() if at is None else at, "event": kind, "host": self.cfg.name,
               **data}
        assert self._events is not None
        self._events.write(json.dumps(rec, sort_keys=True) + "\n")
        self._events.flush()

    def _schedule(self, delay: float, kind: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (self.mono() + delay, self._seq, kind, data))

    # --- behaviour ---------------------------------------------------------------------
    def infect(self, by: str | None) -> None:
        """Become infected now: ground truth at once, own detection after the delay."""
        if self.infected_at is not None:
            return
        self.infected_at = self.wall()
        self._scan_start = self.mono()
        at, worm = self.infected_at, self.cfg.worm_name
        pst.update_posture(self.cfg.posture, lambda d: pst.set_infection(d, worm, at, by))
        self.event("infected", by=by, ip=self.cfg.ip)
        self._schedule(self.cfg.detection_delay, "threat", None)

    def on_datagram(self, data: bytes, src: tuple[str, int]) -> None:
        if self.marker not in data:
            return
        if data.startswith(self.marker + b" ACK"):
            self.totals["acked"] += 1
            self._second["acked"] += 1
            return
        self.totals["received"] += 1
        src_ip = src[0]
        newly = self.cfg.vulnerable and self.infected_at is None
        self.event("probed", by=src_ip, vulnerable=self.cfg.vulnerable, infects=newly)
        self._schedule(self.cfg.detection_delay, "attacker", (src_ip, self.wall()))
        if self.cfg.vulnerable:
            self._send(self.ack_payload, src_ip, src[1], count=False)
        if newly:
            self.infect(by=src_ip)

    def _send(self, payload: bytes, ip: str, port: int, count: bool = True) -> None:
        assert self.sock is not None
        try:
            self.sock.sendto(payload, (ip, port))
            if count:
                self.totals["sent"] += 1
                self._second["sent"] += 1
        except OSError:
            # Fire and forget: an unreachable or full path is the network's business.
            if count:
                self.totals["send_errors"] += 1
                self._second["send_errors"] += 1

    def _scan_due(self, now: float) -> float | None:
        """Send the probes that are due; return the monotonic time of the next one."""
        if self._scan_start is None or self.cfg.scan_rate <= 0:
            return None
        rate = self.cfg.scan_rate
        burst = 0
        while burst < MAX_BURST:
            due = self._scan_start + (self._k + self.phase) / rate
            if due > now:
                return due
            self._send(self.probe_payload, self.picker.next(), self.cfg.port)
            self._k += 1
            burst += 1
        return now

    def _detections_due(self, now: float) -> None:
        due: list[tuple[str, Any]] = []
        while self._pending and self._pending[0][0] <= now:
            _, _, kind, data = heapq.heappop(self._pending)
            due.append((kind, data))
        if not due:
            return
        worm, at = self.cfg.worm_name, self.wall()

        def change(doc: dict[str, Any]) -> None:
            for kind, data in due:
                if kind == "threat":
                    pst.add_threat(doc, worm, at)
                else:
                    pst.add_attacker(doc, data[0], worm, data[1])
        pst.update_posture(self.cfg.posture, change)
        if any(kind == "threat" for kind, _ in due):
            # timed before the write, as the threat in the file is: the agent wakes on the
            # write and the controller may isolate this host before this process runs again
            # (a reaction latency measured from after the write came out negative)
            self.event("threat_detected", at=at, worm=worm)

    def _flush_second(self) -> None:
        if any(self._second.values()):
            self.event("probes", **self._second)
            self._second = dict.fromkeys(self._second, 0)

    def run(self, stop: threading.Event) -> dict[str, Any]:
        """Run until `stop` is set or the duration has passed; return the totals."""
        cfg = self.cfg
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((cfg.ip, cfg.port))
            self.sock.setblocking(False)
            with open(cfg.events, "a", buffering=1) as self._events:
                return self._loop(stop)
        finally:
            self.sock.close()
            self._events = None

    def _loop(self, stop: threading.Event) -> dict[str, Any]:
        cfg = self.cfg
        start = self.mono()
        end = start + cfg.duration if cfg.duration is not None else None
        self.event("start", ip=cfg.ip, vulnerable=cfg.vulnerable, seed_host=cfg.infected,
                   scan_rate=cfg.scan_rate, strategy=cfg.strategy, space_size=cfg.space.size,
                   detection_delay=cfg.detection_delay, seed=cfg.seed)
        if cfg.infected:
            self.infect(by=None)
        next_flush = start + 1.0
        assert self.sock is not None
        while not stop.is_set():
            now = self.mono()
            if end is not None and now >= end:
                break
            self._detections_due(now)
            if now >= next_flush:
                self._flush_second()
                next_flush += 1.0 * max(1, int((now - next_flush) // 1.0) + 1)
            next_probe = self._scan_due(now)
            wake = [next_flush, now + MAX_WAIT_S]
            wake += [w for w in (next_probe, end) if w is not None]
            if self._pending:
                wake.append(self._pending[0][0])
            timeout = max(0.0, min(wake) - self.mono())
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if readable:
                self._drain()
        self._flush_second()
        self.event("stop", infected=self.infected_at is not None,
                   infected_at=self.infected_at, **self.totals)
        return dict(self.totals, infected=self.infected_at is not None)

    def _drain(self) -> None:
        assert self.sock is not None
        for _ in range(256):
            try:
                data, src = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue      # e.g. ICMP errors surfaced on the socket: ignore
            self.on_datagram(data, src)


# --- command line ----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m controller.worm.host",
                                description="Harmless emulated worm for containment experiments.")
    p.add_argument("--name", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--posture", required=True, type=Path)
    p.add_argument("--events", required=True, type=Path)
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--vulnerable", dest="vulnerable", action="store_true", default=True)
    p.add_argument("--not-vulnerable", dest="vulnerable", action="store_false")
    p.add_argument("--infected", action="store_true", help="seed host: infected at start")
    p.add_argument("--scan-rate", type=float, default=1.0, help="probes per second")
    p.add_argument("--strategy", choices=STRATEGIES, default="uniform")
    p.add_argument("--space", nargs="+", default=["10.0.0.0/24"],
                   help="scanned CIDR(s), space- or comma-separated")
    p.add_argument("--local-space", default=None, help="own cell CIDR (default: own /24)")
    p.add_argument("--local-preference", type=float, default=0.0)
    p.add_argument("--hitlist", type=Path, default=None)
    p.add_argument("--detection-delay", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--marker", default=DEFAULT_MARKER)
    p.add_argument("--worm-name", default=DEFAULT_WORM)
    p.add_argument("--duration", type=float, default=None, help="seconds; default: until SIGTERM")
    p.add_argument("--probe-size", type=int, default=DEFAULT_PROBE_SIZE,
                   help="UDP payload bytes of a probe (padded; default 376 like Slammer)")
    return p


def config_from_args(args: argparse.Namespace) -> WormConfig:
    """Turn parsed arguments into a checked WormConfig; raises ValueError with a reason."""
    try:
        ipaddress.IPv4Address(args.ip)
    except ValueError:
        raise ValueError(f"--ip: {args.ip!r} is not an IPv4 address") from None
    if not 0 < args.port < 65536:
        raise ValueError(f"--port: {args.port} is outside 1..65535")
    for flag, value in (("--scan-rate", args.scan_rate),
                        ("--detection-delay", args.detection_delay)):
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"{flag}: {value} must be a finite number >= 0")
    if args.duration is not None and not args.duration > 0:
        raise ValueError(f"--duration: {args.duration} must be > 0")
    if not 0 <= args.probe_size <= 1400:
        raise ValueError(f"--probe-size: {args.probe_size} is outside 0..1400")
    if not args.marker or any(c.isspace() for c in args.marker):
        raise ValueError("--marker: must be non-empty without spaces")
    space = parse_space(args.space)
    local = parse_space(args.local_space
                        or str(ipaddress.IPv4Network(f"{args.ip}/24", strict=False)))
    hitlist = load_hitlist(args.hitlist) if args.hitlist else []
    if args.strategy == "hitlist" and not hitlist:
        raise ValueError("--strategy hitlist needs a non-empty --hitlist file")
    return WormConfig(name=args.name, ip=args.ip, posture=args.posture, events=args.events,
                      port=args.port, vulnerable=args.vulnerable, infected=args.infected,
                      scan_rate=args.scan_rate, strategy=args.strategy, space=space,
                      local_space=local, local_preference=args.local_preference,
                      hitlist=hitlist, detection_delay=args.detection_delay, seed=args.seed,
                      marker=args.marker, worm_name=args.worm_name, duration=args.duration,
                      probe_size=args.probe_size)


def main(argv: list[str] | None = None) -> int:
    """Entry point; 0 on a clean stop (duration or SIGTERM/SIGINT), 2 on bad arguments,
    1 when the service port cannot be opened."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        cfg = config_from_args(args)
        worm = WormHost(cfg)
    except (ValueError, TargetError) as exc:
        print(f"worm: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        worm.run(stop)
    except OSError as exc:
        print(f"worm: {cfg.name}: cannot run on {cfg.ip}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
