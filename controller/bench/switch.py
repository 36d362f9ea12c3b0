"""The switch's share of the control plane's latency targets (results/bench/switch.json).

Every latency target of the speed issue ends at a switch: an admission's flows must let the
terminal's first packet through, an isolation's must stop the attacker's next one. How long
userspace Open vSwitch takes to turn a flow-mod into forwarding (the flow table change, the
revalidation of the datapath's cached megaflows) is a floor no controller can go under, so it
is measured here without any controller: one bridge (`crsflr0`, netdev datapath) with two
hosts in their own network namespaces, UDP datagrams from A to B every `interval_ms`
(sequence number and send time inside), and a raw OpenFlow 1.3 connection on the bridge's
management socket. Per trial:

- allow: table 0 drops everything; a flow-mod (A -> B) and a barrier are written; the first
  datagram B receives, minus the time the flow-mod was written (`allow_ms`), and the barrier
  reply (`allow_barrier_ms`). `allow_batch_ms`: the same flow-mod as the last of a batch of
  32 in one write (as an admission sends them).
- drop: traffic flows; the flow is deleted; the send time of the last datagram that still
  got through, minus the time the delete was written (`drop_ms`: how long the switch kept
  forwarding after the delete; within one sending interval of 0 is immediate).
- block: traffic flows; a drop flow of higher priority is added over the allow (as an
  isolation adds its table-1 drops); the send time of the last datagram that got through,
  minus the time the drop was written, 0 if none did (`block_ms`).
- transit: one-way time of a datagram on the installed path (`transit_ms`).

Then the same again with `idle_ports` more veth ports on the bridge, up and silent (`idle`:
the benchmark networks put about 60 ports on the one netdev datapath all their bridges share).
Their cost is not traffic: the datapath's main thread, which also reads OpenFlow, polls every
port of the datapath each time it wakes (and prepares a batch of receive buffers for each),
so every flow-mod, barrier and first packet waits behind that round.

Run: ``crs bench switch`` (root; about 1 minute). It makes and removes only its own bridge,
namespaces and processes.
"""
from __future__ import annotations

import argparse
import bisect
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from controller.bench import common
from controller.openflow.encode import encode
from controller.openflow.ofmsg import Apply, Barrier, FlowMod, Output

BRIDGE = "crsflr0"
IDLE = "crsflri"          # idle ports: crsflri<N>a on the bridge, crsflri<N>b their peers
HOSTS = {"a": ("crsflr-a", "crsflra0", "crsflra1", "10.77.0.1", "02:77:00:00:00:01", 1),
         "b": ("crsflr-b", "crsflrb0", "crsflrb1", "10.77.0.2", "02:77:00:00:00:02", 2)}
UDP_PORT = 7777
DATAGRAM = struct.Struct("!Qd")
OFPT_HELLO, OFPT_BARRIER_REPLY = 0, 21
SO_TIMESTAMPNS = 35

SENDER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gap, seq, nxt = float(sys.argv[1]), 0, time.monotonic()
while True:
    s.sendto(struct.pack("!Qd", seq, time.time()) + bytes(48), (sys.argv[2], int(sys.argv[3])))
    seq += 1
    nxt += gap
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
    else:
        nxt = time.monotonic()
"""


def _sh(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PORT_TYPES = {"system": [],
              # AF_XDP, read by the datapath's main thread (no PMD thread spinning on a core);
              # generic mode: veth has no native zero-copy
              "afxdp-nonpmd": ["type=afxdp-nonpmd", "options:xdp-mode=generic"]}


def up(port_type: str = "system") -> None:
    """The bridge and the two namespaces (a leftover of an interrupted run is replaced)."""
    down()
    _sh("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
        "fail_mode=secure", "protocols=OpenFlow13")
    for ns, inner, outer, ip, mac, port in HOSTS.values():
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _sh("ip", "link", "set", inner, "netns", ns)
        _sh("ip", "-n", ns, "link", "set", inner, "address", mac)
        _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
        _sh("ip", "-n", ns, "link", "set", inner, "up")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "netns", "exec", ns, "ethtool", "-K", inner, "tx", "off", "rx", "off",
            check=False)
        _sh("ip", "link", "set", outer, "up")
        _sh("ovs-vsctl", "add-port", BRIDGE, outer, "--", "set", "interface", outer,
            f"ofport_request={port}", *PORT_TYPES[port_type])
    for ns, inner, _, _, _, _ in HOSTS.values():     # no ARP: permanent neighbours
        for other in HOSTS.values():
            if other[0] != ns:
                _sh("ip", "-n", ns, "neigh", "replace", other[3], "lladdr", other[4], "dev",
                    inner, "nud", "permanent")


def check_ports(names: list[str]) -> None:
    """Each port as asked, or a clear error (AF_XDP needs kernel and build support): the
    type in effect is Open vSwitch's, not the request's."""
    for name in names:
        got = subprocess.run(["ovs-vsctl", "get", "interface", name, "error"],
                             capture_output=True, text=True).stdout.strip()
        if got not in ("[]", ""):
            raise RuntimeError(f"bench switch: port {name}: {got}")


def add_idle_ports(n: int, port_type: str = "system") -> None:
    """`n` veth pairs, one end on the bridge, both up, nothing sent on them."""
    for i in range(n):
        _sh("ip", "link", "add", f"{IDLE}{i}a", "type", "veth", "peer", "name", f"{IDLE}{i}b")
        _sh("ip", "link", "set", f"{IDLE}{i}a", "up")
        _sh("ip", "link", "set", f"{IDLE}{i}b", "up")
        _sh("ovs-vsctl", "add-port", BRIDGE, f"{IDLE}{i}a", *(
            ["--", "set", "interface", f"{IDLE}{i}a", *PORT_TYPES[port_type]]
            if PORT_TYPES[port_type] else []))


def down() -> None:
    _sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE, check=False)
    for name in _idle_links():
        _sh("ip", "link", "del", name, check=False)
    for ns, _, outer, _, _, _ in HOSTS.values():
        _sh("ip", "link", "del", outer, check=False)
        _sh("ip", "netns", "del", ns, check=False)


def _idle_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()
            if ln.split(":")[1].strip().startswith(IDLE) and
            ln.split(":")[1].strip().split("@")[0].endswith("a")]


class OpenFlow:
    """A raw OpenFlow 1.3 connection on the bridge's management socket."""

    def __init__(self, bridge: str = BRIDGE):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(f"/var/run/openvswitch/{bridge}.mgmt")
        self.sock.sendall(struct.pack("!BBHI", 4, OFPT_HELLO, 8, 1))
        self.xid = 100
        self._read_until(OFPT_HELLO, None, 5.0)

    def send(self, msgs: list[Any]) -> tuple[float, int]:
        """Write messages in one write; (the time just before it, the last message's xid)."""
        buf = []
        for m in msgs:
            self.xid += 1
            buf.append(encode(m, self.xid))
        t = time.time()
        self.sock.sendall(b"".join(buf))
        return t, self.xid

    def _read_until(self, msg_type: int, xid: int | None, timeout: float) -> float:
        self.sock.settimeout(timeout)
        while True:
            head = self._exact(8)
            _, t, length, x = struct.unpack("!BBHI", head)
            self._exact(length - 8)
            if t == msg_type and (xid is None or x == xid):
                return time.time()

    def barrier(self, timeout: float = 5.0) -> float:
        _, xid = self.send([Barrier()])
        return self._read_until(OFPT_BARRIER_REPLY, xid, timeout)

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the switch closed the connection")
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


class Receiver:
    """B's datagrams with kernel arrival times (a UDP socket inside B's namespace)."""

    def __init__(self) -> None:
        from controller.rawsock import socket_in
        ns = HOSTS["b"][0]
        self.sock = socket_in(f"/var/run/netns/{ns}", socket.AF_INET, socket.SOCK_DGRAM, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((HOSTS["b"][3], UDP_PORT))
        self.sock.setblocking(False)
        self.arrivals: list[tuple[float, int, float]] = []     # (arrival, seq, sent)

    def drain(self) -> None:
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(256, 64)
            except BlockingIOError:
                return
            ts = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec + nsec / 1e9
            seq, sent = DATAGRAM.unpack(data[:DATAGRAM.size])
            self.arrivals.append((ts, seq, sent))

    def wait(self, until: float) -> None:
        import select
        while time.time() < until:
            select.select([self.sock], [], [], max(0.0, until - time.time()))
            self.drain()


def allow_flow() -> FlowMod:
    return FlowMod(0, "add", 10, {"in_port": HOSTS["a"][5]}, (Apply((Output(HOSTS["b"][5]),)),),
                   cookie=0x77)


def filler(i: int) -> FlowMod:
    """One of the 31 flow-mods an admission sends besides the one that matters here."""
    return FlowMod(0, "add", 5, {"in_port": 1000 + i}, (), cookie=0x78)


def first_after(arrivals: list[tuple[float, int, float]], t: float) -> float | None:
    """Arrival time of the first datagram that arrived after `t`, or None."""
    times = [a for a, _, _ in arrivals]
    i = bisect.bisect_right(times, t)
    return times[i] if i < len(times) else None


KEYS = ("allow_ms", "allow_batch_ms", "allow_barrier_ms", "drop_ms", "block_ms", "transit_ms")


def _measure(of: OpenFlow, rx: "Receiver", trials: int, batch: int,
             label: str) -> dict[str, list[float]]:
    """The trials (module doc) on the bridge as it is now: a list of times per key."""
    allow, allow_batch, barrier, drop, block, transit = [], [], [], [], [], []
    for k in range(trials):
        for kind in ("single", "batch"):
            rx.wait(time.time() + 0.05)       # nothing passes: table 0 drops
            rx.arrivals.clear()
            msgs = [allow_flow()] if kind == "single" else \
                [filler(i) for i in range(batch - 1)] + [allow_flow()]
            t_sent, _ = of.send(msgs)
            t_barrier = of.barrier()
            rx.wait(time.time() + 0.1)
            first = first_after(rx.arrivals, t_sent)
            if first is not None:
                (allow if kind == "single" else allow_batch).append((first - t_sent) * 1e3)
                transit += [(a - s) * 1e3 for a, _, s in rx.arrivals[-20:]]
            if kind == "single":
                barrier.append((t_barrier - t_sent) * 1e3)
                # block: a higher-priority drop over the allow (what an isolation adds
                # in table 1): how long does forwarding go on?
                rx.arrivals.clear()
                t_blk, _ = of.send([FlowMod(0, "add", 20, {"in_port": HOSTS["a"][5]}, (),
                                            cookie=0x79)])
                of.barrier()
                rx.wait(time.time() + 0.05)
                # nothing sent after the drop got through: forwarding stopped at once
                block.append(max([(st - t_blk) * 1e3 for _, _, st in rx.arrivals] + [0.0]))
                of.send([FlowMod(0, "delete", 0, {}, (), cookie=0x79,
                                 cookie_mask=0xFFFFFFFFFFFFFFFF)])
                of.barrier()
                rx.wait(time.time() + 0.05)
            # drop: delete the flow while traffic flows; when did forwarding stop?
            t_del, _ = of.send([FlowMod(0, "delete", 0, {}, (), cookie=0x77,
                                        cookie_mask=0xFFFFFFFFFFFFFFFF),
                                FlowMod(0, "delete", 0, {}, (), cookie=0x78,
                                        cookie_mask=0xFFFFFFFFFFFFFFFF)])
            of.barrier()
            rx.wait(time.time() + 0.1)
            if kind == "single" and rx.arrivals:
                drop.append((max(st for _, _, st in rx.arrivals) - t_del) * 1e3)
        print(f"{label}: trial {k + 1}/{trials}", end="\r", flush=True)
    return dict(zip(KEYS, (allow, allow_batch, barrier, drop, block, transit)))


def run(out_dir: str = "results/bench", trials: int = 30, interval_ms: float = 0.5,
        batch: int = 32, idle_ports: int = 60, port_type: str = "system") -> dict[str, Any]:
    """The measurement (module doc), without and then with `idle_ports` idle ports; writes
    switch.json and prints a table. `port_type`: how the bridge reads its ports."""
    up(port_type)
    sender = None
    try:
        check_ports([h[2] for h in HOSTS.values()])
        of = OpenFlow()
        of.send([FlowMod(0, "delete", 0, {}, ()),
                 FlowMod(0, "add", 0, {}, ())])           # table 0: drop everything
        of.barrier()
        rx = Receiver()
        ns = HOSTS["a"][0]
        sender = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER,
                                   str(interval_ms / 1000), HOSTS["b"][3], str(UDP_PORT)])
        time.sleep(0.3)
        bare = _measure(of, rx, trials, batch, "2 ports")
        idle: dict[str, list[float]] = {}
        if idle_ports:
            add_idle_ports(idle_ports, port_type)
            check_ports([f"{IDLE}{i}a" for i in range(idle_ports)])
            time.sleep(0.3)
            idle = _measure(of, rx, trials, batch, f"{idle_ports + 2} ports")
        of.close()
    finally:
        if sender is not None:
            sender.terminate()
            sender.wait(5)
        down()
    result: dict[str, Any] = {
        "parameters": {"trials": trials, "interval_ms": interval_ms, "batch": batch,
                       "idle_ports": idle_ports, "port_type": port_type,
                       "bridge": "one netdev bridge, two veth hosts, no controller"},
        **{k: common.summary(v) for k, v in bare.items()}}
    if idle_ports:
        result["with_idle_ports"] = {k: common.summary(v) for k, v in idle.items()}
    path = common.write(out_dir, "switch", result)
    labels = ("flow-mod -> first packet through", f"same, last of {batch} in one write",
              "flow-mod -> barrier reply", "delete -> forwarding stopped",
              "higher-priority drop -> forwarding stopped", "one-way transit, installed path")
    more = result.get("with_idle_ports", {})
    rows = [[label, result[k]["n"], result[k]["p50"], result[k]["p99"],
             more.get(k, {}).get("p50", "-"), more.get(k, {}).get("p99", "-")]
            for k, label in zip(KEYS, labels)]
    print(common.table(rows, ["measurement", "n", "p50 ms", "p99 ms",
                              f"p50, {idle_ports} idle ports", "p99"]))
    print(f"written: {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="crs bench switch", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--idle-ports", type=int, default=60,
                    help="measure again with this many idle ports on the bridge (0: not)")
    ap.add_argument("--port-type", choices=sorted(PORT_TYPES), default="system",
                    help="how the datapath reads its ports: a socket per port polled at every "
                         "wake-up (system), or AF_XDP rings (afxdp-nonpmd)")
    a = ap.parse_args(argv)
    try:
        run(a.out, a.trials, idle_ports=a.idle_ports, port_type=a.port_type)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["OpenFlow", "first_after", "run"]
