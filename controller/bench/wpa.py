"""wpa_supplicant as a measuring instrument: config, start (-t), control, timestamp parsing.

Authentication time is taken the same way for every authenticator (hostapd, our controller):
from wpa_supplicant's own ``CTRL-EVENT-EAP-STARTED`` line to the next
``CTRL-EVENT-EAP-SUCCESS`` (or ``-FAILURE``), from the microsecond timestamps ``-t`` prints.
Process start is no good as the origin: wpa_supplicant waits about 2 s before its first
EAPOL-Start (its EAPOL state machine starts with startWhen = 2 s, to let an authenticator
begin first). Further exchanges are triggered with the control interface command
REAUTHENTICATE, which sends EAPOL-Start at once.

Namespaces and veth pairs made here carry a random tag in their names and are deleted by
name in a ``finally``; processes are ended by PID. Nothing else on the machine is touched.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Sequence

from controller.emulation.processes import wait_until

EVENT_RE = re.compile(r"^(\d+\.\d+): (?:(\S+): )?(CTRL-EVENT-[A-Z0-9-]+)(.*)$")
STARTED, SUCCESS, FAILURE = (
    "CTRL-EVENT-EAP-STARTED", "CTRL-EVENT-EAP-SUCCESS", "CTRL-EVENT-EAP-FAILURE")

Popen = Callable[[list[str], IO], "subprocess.Popen"]


def _quote(v: str) -> str:
    if any(c in v for c in '"\n\r\\'):
        raise ValueError(f"{v!r}: quotes, backslashes and newlines are not allowed")
    return f'"{v}"'


def supplicant_config(identity: str, password: str, eap: str = "PSK",
                      ctrl_dir: str | Path | None = None) -> str:
    """wpa_supplicant.conf for wired 802.1X. EAP-PSK's password is the PSK as 32 hex digits
    (unquoted); other methods take a quoted password."""
    if eap.upper() == "PSK":
        if not re.fullmatch(r"[0-9a-fA-F]{32}", password):
            raise ValueError("the EAP-PSK password is the PSK: exactly 32 hex digits")
        pw = password
    else:
        pw = _quote(password)
    lines = [f"ctrl_interface={ctrl_dir}"] if ctrl_dir else []
    lines += ["ap_scan=0", "network={", "  key_mgmt=IEEE8021X", f"  eap={eap.upper()}",
              f"  identity={_quote(identity)}", f"  password={pw}", "  eapol_flags=0", "}"]
    return "\n".join(lines) + "\n"


def certificate_config(identity: str, eap: str, ca_cert: str | Path,
                       client_cert: str | Path | None = None,
                       private_key: str | Path | None = None, password: str | None = None,
                       ctrl_dir: str | Path | None = None,
                       anonymous_identity: str | None = None) -> str:
    """wpa_supplicant.conf for wired 802.1X with a certificate method: EAP-TLS (a client
    certificate and key) or PEAP with MSCHAPv2 inside (a password, for `identity`; the
    outer identity is `anonymous_identity` if given); the server's certificate is checked
    against `ca_cert` either way."""
    fields = [f"  eap={eap.upper()}", f"  identity={_quote(identity)}",
              f"  ca_cert={_quote(str(ca_cert))}"]
    if client_cert is not None:
        fields += [f"  client_cert={_quote(str(client_cert))}",
                   f"  private_key={_quote(str(private_key))}"]
    if password is not None:
        fields += [f"  password={_quote(password)}", '  phase2="auth=MSCHAPV2"']
    if anonymous_identity is not None:
        fields.append(f"  anonymous_identity={_quote(anonymous_identity)}")
    lines = [f"ctrl_interface={ctrl_dir}"] if ctrl_dir else []
    lines += ["ap_scan=0", "network={", "  key_mgmt=IEEE8021X", *fields, "  eapol_flags=0", "}"]
    return "\n".join(lines) + "\n"


def write_private(path: str | Path, text: str) -> Path:
    """Write a supplicant config with mode 0600 (it holds a key or names one)."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return p


def write_supplicant_config(path: str | Path, identity: str, password: str, eap: str = "PSK",
                            ctrl_dir: str | Path | None = None) -> Path:
    """Write the config with mode 0600 (it holds the key)."""
    return write_private(path, supplicant_config(identity, password, eap, ctrl_dir))


def start_supplicant(interface: str, conf: str | Path, log_path: str | Path,
                     netns: str | None = None, popen: Popen | None = None,
                     binary: str = "wpa_supplicant") -> subprocess.Popen:
    """Start ``wpa_supplicant -D wired -t`` on an interface; its output goes to ``log_path``.

    ``netns`` runs it through ``ip netns exec``; ``popen(argv, out)`` lets a caller start it
    elsewhere instead (a Mininet host: ``lambda argv, out: host.popen(argv, stdout=out,
    stderr=subprocess.STDOUT)``). The caller ends it with ``stop_process``."""
    argv = [binary, "-D", "wired", "-i", interface, "-c", str(conf), "-t"]
    out = open(log_path, "w")
    try:
        if popen is not None:
            return popen(argv, out)
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        out.close()       # the child holds its own copy


def stop_process(p: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only this PID."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass(frozen=True)
class Event:
    ts: float
    iface: str
    name: str
    rest: str


def parse_events(text: str) -> list[Event]:
    """CTRL-EVENT lines of ``wpa_supplicant -t`` output, in order; other lines are skipped."""
    out = []
    for line in text.splitlines():
        m = EVENT_RE.match(line.strip())
        if m:
            out.append(Event(float(m.group(1)), m.group(2) or "", m.group(3), m.group(4).strip()))
    return out


@dataclass
class Exchanges:
    """Completed EAP exchanges found in one supplicant's output."""

    success_ms: list[float] = field(default_factory=list)
    failure_ms: list[float] = field(default_factory=list)
    unfinished: int = 0


def exchanges(text: str) -> Exchanges:
    """Pair each EAP-STARTED with the next SUCCESS/FAILURE (a second STARTED before either
    abandons the first: counted as unfinished)."""
    res, began = Exchanges(), None
    for e in parse_events(text):
        if e.name == STARTED:
            if began is not None:
                res.unfinished += 1
            began = e.ts
        elif e.name in (SUCCESS, FAILURE) and began is not None:
            (res.success_ms if e.name == SUCCESS else res.failure_ms).append((e.ts - began) * 1000)
            began = None
    if began is not None:
        res.unfinished += 1
    return res


def count(log_path: str | Path, name: str) -> int:
    """How many ``name`` events the log holds so far."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return 0
    return sum(e.name == name for e in parse_events(text))


def wait_results(log_path: str | Path, n: int, timeout: float) -> Exchanges:
    """Wait until ``n`` exchanges ended (success or failure) in the log; return them."""
    def done():
        ex = exchanges(Path(log_path).read_text(errors="replace"))
        return ex if len(ex.success_ms) + len(ex.failure_ms) >= n else None
    return wait_until(done, timeout, f"{n} EAP results in {log_path}", interval=0.02)


class Ctrl:
    """wpa_supplicant's (or hostapd's) UNIX datagram control interface."""

    def __init__(self, ctrl_dir: str | Path, interface: str, timeout: float = 5.0):
        self.path = str(Path(ctrl_dir) / interface)
        self.timeout = timeout

    def request(self, cmd: str) -> str:
        """Send one command (e.g. "REAUTHENTICATE", "STATUS"); the reply text."""
        local = os.path.join(tempfile.gettempdir(),
                             f"crs-wpactrl-{os.getpid()}-{os.urandom(4).hex()}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(local)
            s.settimeout(self.timeout)
            s.connect(self.path)
            s.send(cmd.encode())
            return s.recv(8192).decode(errors="replace")
        finally:
            s.close()
            try:
                os.unlink(local)
            except OSError:
                pass

    def ready(self) -> bool:
        try:
            return self.request("PING").strip() == "PONG"
        except OSError:
            return False


# --- namespaces and veth pairs -------------------------------------------------------------

def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class VethNamespaces:
    """Two namespaces of our own ("a" authenticator side, "t" terminal side) joined by ``n``
    veth pairs; ``pairs[i] = (terminal ifname, authenticator ifname)``. Context manager:
    deleting the namespaces removes the links inside them."""

    def __init__(self, n: int, tag: str | None = None):
        if not 1 <= n <= 1000:
            raise ValueError("1..1000 veth pairs")
        self.tag = tag or os.urandom(3).hex()
        self.ns_a, self.ns_t = f"crs-b-{self.tag}-a", f"crs-b-{self.tag}-t"
        self.pairs = [(f"t{self.tag}x{i}", f"a{self.tag}x{i}") for i in range(n)]
        self._made: list[str] = []

    def __enter__(self) -> "VethNamespaces":
        try:
            for ns in (self.ns_a, self.ns_t):
                _ip("netns", "add", ns)
                self._made.append(ns)
            for t, a in self.pairs:
                _ip("link", "add", t, "netns", self.ns_t, "type", "veth", "peer", "name", a,
                    "netns", self.ns_a)
                _ip("-n", self.ns_t, "link", "set", t, "up")
                _ip("-n", self.ns_a, "link", "set", a, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for ns in self._made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self._made = []

    def __exit__(self, *exc) -> None:
        self.close()


def run_in(netns: str, argv: Sequence[str], out: IO) -> subprocess.Popen:
    """Start argv inside a namespace, output to ``out``."""
    return subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
