"""`crs supplicant`: our 802.1X supplicant as a process on a terminal (raw EAPOL socket).

The protocol lives in the pure ``Supplicant``; this module only moves frames between it and
an AF_PACKET socket on one interface, keeps time (Start retransmission, back-off after a
failure, optional periodic re-authentication) and writes the keys file the terminal's other
programs read (the CRS agent, the SP demo client). Output contract, one line each:
``EAPOL-START <unix time>`` (wall clock, taken just before the first EAPOL-Start of an
exchange is sent: the origin of the authentication benchmark's "Start to first packet at a
server"), ``EAP-SUCCESS <seconds>`` (seconds since the exchange began) and
``EAP-FAILURE [reason]``.

Keys file (JSON, mode 0600, replaced atomically): identity, method, isr_id, crs_report_key
(hex), sp_root (hex, purpose_key(EMSK, "sp-root"): what an SS needs to derive its SS-SP keys
with keys.sp_service_key_from_root, exactly as the EAC does), authenticated_at and expires
(Unix time). The MSK and EMSK themselves are never written. EAPOL carries no session
lifetime, so ``expires`` is authenticated_at + --lifetime-s (default: the authenticator's
default session of 1 h); the controller re-authenticates before that anyway.
"""
from __future__ import annotations

import argparse
import re
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from controller import jsonfile

from .eapol import ETH_P_EAPOL, PAE_GROUP_ADDR, mac_to_bytes, mac_to_str
from .keys import purpose_key
from .supplicant import PeerKeys, Supplicant

START_INTERVAL_S = 1.0      # EAPOL-Start retransmission while nobody answers
START_TRIES = 4             # the first Start plus 3 retransmissions, then slow retries
SLOW_START_S = 5.0          # then Start again this often while unanswered (wpa_supplicant: 30 s)
STALL_S = 10.0              # an exchange silent this long is abandoned
BACKOFF_MAX_S = 60.0
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0


class _Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the receive loop at once."""


def keys_document(identity: str, keys: PeerKeys | None, method: str, now: float,
                  lifetime_s: float) -> dict:
    """What the keys file holds (no MSK, no EMSK: only per-purpose keys)."""
    doc = {"identity": identity, "method": method, "authenticated_at": now,
           "expires": now + lifetime_s, "isr_id": None, "crs_report_key": None, "sp_root": None}
    if keys is not None:
        doc.update(isr_id=keys.isr_id, crs_report_key=keys.crs_report_key.hex(),
                   sp_root=purpose_key(keys.emsk, "sp-root").hex())
    return doc


def write_keys(path: Path, doc: dict) -> None:
    """Atomic replace with mode 0600 (a reader never sees a half-written or readable-by-all
    file)."""
    jsonfile.write_atomic(path, doc, mode=0o600, sync=True)


def open_socket(interface: str) -> tuple[socket.socket, str]:
    """Raw EAPOL socket on one interface (also joined to the PAE group); returns it and our MAC."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EAPOL))
    try:
        sock.bind((interface, ETH_P_EAPOL))
        mac = mac_to_str(sock.getsockname()[4][:6])
        ifindex = socket.if_nametoindex(interface)
        mreq = ifindex.to_bytes(4, sys.byteorder) + PACKET_MR_MULTICAST.to_bytes(2, sys.byteorder) \
            + (6).to_bytes(2, sys.byteorder) + mac_to_bytes(PAE_GROUP_ADDR) + bytes(2)
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    except OSError:
        sock.close()
        raise
    return sock, mac


class Runner:
    """The timing around the pure supplicant; ``sock`` needs recvfrom/send/fileno."""

    def __init__(self, sock, supplicant: Supplicant, keys_out: Path, once: bool,
                 reauth_s: float | None, lifetime_s: float, timeout_s: float,
                 out: Callable[[str], None] = lambda s: print(s, flush=True),
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.sock, self.sup, self.keys_out = sock, supplicant, Path(keys_out)
        self.once, self.reauth_s, self.lifetime_s, self.timeout_s = (
            once, reauth_s, lifetime_s, timeout_s)
        self.out, self.clock, self.wall = out, clock, wall
        self.began = clock()            # start of the current exchange
        self.last_rx = self.began
        self.next_start: float | None = None
        self.start_tries = 0
        self.failures = 0
        self.authenticated = False
        self.result: int | None = None
        self.reauth_asked = False           # SIGHUP: authenticate again now

    def send_start(self) -> None:
        now, wall = self.clock(), self.wall()
        self.sock.send(self.sup.start())
        self.start_tries += 1
        if self.start_tries == 1:
            self.began = now
            self.out(f"EAPOL-START {wall:.6f}")
        self.next_start = now + (START_INTERVAL_S if self.start_tries < START_TRIES
                                 else SLOW_START_S)

    def run(self) -> int:
        """Until --once finishes or a signal arrives (then EAPOL-Logoff, exit 0)."""
        try:
            self.send_start()
            while self.result is None:
                r, _, _ = select.select([self.sock], [], [], self._wait())
                if r:
                    self._receive()
                self._timers()
        except _Stop:
            try:
                self.sock.send(self.sup.logoff())
            except OSError:
                pass
            return 0
        return self.result

    def _wait(self) -> float:
        now = self.clock()
        deadlines = [now + 1.0]
        if self.next_start is not None:
            deadlines.append(self.next_start)
        return max(0.0, min(deadlines) - now)

    def _receive(self) -> None:
        frame, addr = self.sock.recvfrom(4096)
        if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
            return
        was = self.sup.status
        step = self.sup.handle(frame)
        if step.note == "not for us" or step.note.startswith("malformed"):
            return
        now = self.clock()
        self.last_rx = now
        if was != "running" and step.status == "running" and self.start_tries == 0:
            self.began = now                # exchange the authenticator began (re-authentication)
        for f in step.frames:
            self.sock.send(f)
        if self.next_start is not None and self.start_tries and step.status == "running":
            self.next_start = None          # someone answers: stop retransmitting Start
        if step.status == "success" and was != "success":
            self._success(now)
        elif step.status == "failure" and was != "failure":
            self._failure(now, step.note)

    def _success(self, now: float) -> None:
        method = "psk" if self.sup.keys is not None else "md5"
        write_keys(self.keys_out, keys_document(self.sup.identity, self.sup.keys, method,
                                                self.wall(), self.lifetime_s))
        self.out(f"EAP-SUCCESS {now - self.began:.6f}")
        self.authenticated, self.failures, self.start_tries = True, 0, 0
        if self.once:
            self.result = 0
        elif self.reauth_s:
            self.next_start = now + self.reauth_s
        else:
            self.next_start = None

    def _failure(self, now: float, reason: str = "") -> None:
        self.out("EAP-FAILURE" + (f" {reason}" if reason else ""))
        self.authenticated = False
        self.failures += 1
        if self.once:
            self.result = 1
            return
        self.start_tries = 0
        self.next_start = now + min(2.0 ** self.failures, BACKOFF_MAX_S)

    def _timers(self) -> None:
        now = self.clock()
        if self.reauth_asked:
            self.reauth_asked, self.start_tries, self.next_start = False, 0, now
            self.out("REAUTHENTICATE (asked)")
        if self.once and now - self.began > self.timeout_s:
            self._failure(now, f"timeout after {self.timeout_s:g} s")
            return
        if self.sup.status == "running" and self.next_start is None \
                and now - self.last_rx > STALL_S:
            self.next_start = now                   # the exchange went silent: start over
            self.start_tries = 0
        if self.next_start is not None and now >= self.next_start:
            self.send_start()


def _psk(v: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{32}", v or ""):
        raise argparse.ArgumentTypeError("the EAP-PSK key is exactly 32 hex digits")
    return bytes.fromhex(v)


def _positive(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number") from None
    if not f > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return f


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="crs supplicant",
        description="802.1X supplicant (EAP-PSK, legacy EAP-MD5) on one interface")
    ap.add_argument("--interface", required=True)
    ap.add_argument("--identity", required=True)
    sec = ap.add_mutually_exclusive_group(required=True)
    sec.add_argument("--psk", type=_psk, help="EAP-PSK key, 32 hex digits")
    sec.add_argument("--md5-secret",
                     help="legacy EAP-MD5 secret (no keys, no mutual authentication)")
    ap.add_argument("--keys-out", required=True, type=Path, help="keys JSON written on success")
    ap.add_argument("--reauth-s", type=_positive, help="ask for re-authentication this often")
    ap.add_argument("--lifetime-s", type=_positive, default=3600.0,
                    help="session lifetime written as 'expires' (EAPOL does not carry it)")
    ap.add_argument("--timeout-s", type=_positive, default=15.0, help="--once: give up after this")
    ap.add_argument("--once", action="store_true",
                    help="exit after the first result (0 success, 1 failure)")
    ap.add_argument("--psk-id-p", help="attack tests only: EAP-PSK ID_P other than --identity")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of `crs supplicant`; returns the exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        sock, mac = open_socket(args.interface)
    except OSError as exc:
        print(f"crs supplicant: cannot open EAPOL socket on {args.interface}: "
              f"{exc.strerror or exc}",
              file=sys.stderr)
        return 2
    sup = Supplicant(args.identity, mac, psk=args.psk,
                     md5_secret=args.md5_secret.encode() if args.md5_secret else None,
                     psk_id_p=args.psk_id_p)

    runner = Runner(sock, sup, args.keys_out, args.once, args.reauth_s, args.lifetime_s,
                    args.timeout_s)

    def stop(signum, frame):
        raise _Stop()

    def reauthenticate(signum, frame):      # SIGHUP: e.g. an SP refused our keys
        runner.reauth_asked = True
    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, reauthenticate)
    try:
        return runner.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
