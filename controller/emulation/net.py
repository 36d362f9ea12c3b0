"""Build a topology file into a Mininet network on userspace Open vSwitch, and remove it.

Switches: OVS with the userspace datapath (no kernel module here), OpenFlow 1.3,
fail-mode secure (no controller, no forwarding beyond the flows it holds). Switches are
joined by veth pairs (with tc where a link is shaped), or by Open vSwitch patch ports where a
link is not shaped with `Options.patch_links` (the benchmarks). Hosts: one per
terminal and server, addresses and MACs from the topology, checksum offloads off (TCP
through the userspace datapath needs it), IPv6 off. The controller's service address is a
root-namespace node on its switch, so terminals reach the controller's HTTP services over
the emulated network. Everything created is written to a `Record` first.

Imports Mininet: never import this module in a process that imported Ryu.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from controller.emulation.record import (
    Record,
    existing_bridges,
    openvswitch_problem,
    records,
    teardown,
)
from controller.topology import Topology
from mininet.link import Link, OVSIntf, OVSLink, TCIntf, TCLink
from mininet.log import error, setLogLevel
from mininet.net import Mininet
from mininet.node import Host, OVSSwitch, RemoteController

SERVICE_NODE = "crssvc"
LOCK_FILE = "/run/lock/crs-emulation.lock"



class KnownController(RemoteController):
    """The controller this network was started for, already known to listen.

    Mininet's own check connects with telnet and decodes what comes back as UTF-8: when the
    controller's OpenFlow HELLO (a random transaction id) arrives before telnet quits, the
    decode fails and the start-up with it. The caller has waited for the port already."""

    def checkListening(self) -> None:
        return None

class EmulationError(RuntimeError):
    pass


class DomainSwitch(OVSSwitch):
    """A switch that connects only to its domain's controllers (topology `domains:`); with
    none, it runs standalone: a network without CRS (an ordinary learning switch)."""

    def start(self, controllers: list) -> None:
        wanted = self.params.get("controller_names")
        if wanted is not None:
            controllers = [c for c in controllers if c.name in wanted]
        super().start(controllers)


class PatchIntf(OVSIntf):
    """One end of a patch port pair. It cannot be taken down: say so instead of raising,
    which in Mininet's CLI (`link s1 s2 down`) ended the CLI and removed the network. It
    has no interface either: deleting it never runs `ip link del` on its name (an interface
    of that name would be someone else's; deleting the bridge removes the port)."""

    def delete(self) -> None:
        self.node.delIntf(self)
        self.link = None

    def ifconfig(self, *args: str) -> str:
        if " ".join(args) not in ("", "up"):
            error(f"{self.name} is a patch port: it cannot be taken down (bring the network "
                  "up without --patch-links to emulate link failures)\n")
        return ""


class PatchLink(OVSLink):
    """Mininet's patch link between two switches, with `PatchIntf` ends."""

    def __init__(self, node1: Any, node2: Any, **kwargs: Any):
        self.isPatchLink = True
        Link.__init__(self, node1, node2, **{**kwargs, "cls1": PatchIntf, "cls2": PatchIntf})


_NETEM: bool | None = None


class QuietTCIntf(TCIntf):
    """Mininet prints every tc output as an error; HTB's advice about its quantum on
    1 Gbit/s classes is not one."""

    def tc(self, cmd: str, tc: str = "tc") -> str:
        out = super().tc(cmd, tc)
        return "\n".join(line for line in out.splitlines() if "quantum of class" not in line)


def netem_available() -> bool:
    """Whether the kernel has sch_netem (link delay). Probed once on a dummy link of ours."""
    global _NETEM
    if _NETEM is None:
        probe = "crsnetemprobe"   # a veth pair of ours (this kernel has no dummy links)
        subprocess.run(["ip", "link", "add", probe, "type", "veth", "peer", "name", probe + "1"],
                       capture_output=True)
        res = subprocess.run(["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay",
                              "1ms"], capture_output=True)
        subprocess.run(["ip", "link", "del", probe], capture_output=True)
        _NETEM = res.returncode == 0
    return _NETEM


@dataclass
class Options:
    controller_ip: str = "127.0.0.1"
    controller_port: int = 6653
    more_controllers: list[tuple[str, int]] = field(default_factory=list)  # (ip, port)
    shaping: bool = True          # apply link bw/delay from the topology (tc)
    # an unshaped link between two switches as an Open vSwitch patch port pair: a packet
    # crosses every bridge of its path in one pass of the datapath, and the datapath has no
    # interface to poll for it. But a patch port is always up (no link failure to emulate:
    # Mininet's `link s1 s2 down` only says so) and has no interface to capture on
    patch_links: bool = False
    connect_timeout_s: float = 60.0
    lock_timeout_s: float = 1800.0  # wait this long for another emulated network to finish
    # with topology domains: domain -> (ip, port) of its controller (crs: false: none)
    domain_controllers: dict[str, tuple[str, int]] = field(default_factory=dict)


class Emulation:
    """One emulated network built from a `Topology`."""

    def __init__(self, topo: Topology, options: Options | None = None):
        self.topo = topo
        self.opts = options or Options()
        self.net: Mininet | None = None
        self.record = Record(name=topo.name, launcher_pid=os.getpid())

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> "Emulation":
        problem = openvswitch_problem()
        if problem:
            raise EmulationError(problem)
        self._lock()
        try:
            self._refuse_clobbering()
        except BaseException:
            self._unlock()
            raise
        setLogLevel(os.environ.get("CRS_MININET_LOG", "warning"))
        self.record.bridges = [s.name for s in self.topo.switches]
        self.record.save()  # intent first: a crash from here on is still cleaned up
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.net is not None:
            try:
                self.net.stop()
                for c in self.net.controllers:   # net.stop leaves the controller node's shell
                    c.terminate()
            except Exception:  # fall through to the record-based teardown
                pass
            self.net = None
        teardown(self.record)
        self._unlock()

    def __enter__(self) -> "Emulation":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _lock(self) -> None:
        self._lock_fd = acquire_lock(self.opts.lock_timeout_s)

    def _unlock(self) -> None:
        release_lock(getattr(self, "_lock_fd", None))
        self._lock_fd = None

    # --- use ---------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        assert self.net is not None
        return self.net.get(name)

    def hosts(self) -> list[Host]:
        assert self.net is not None
        return [self.net.get(h.name) for h in self.topo.hosts]

    def popen(self, host: str, cmd: list[str] | str, **kw: Any) -> subprocess.Popen:
        """Start a program on a host; its PID is recorded so `net down` can end it."""
        args = shlex.split(cmd) if isinstance(cmd, str) else cmd
        proc = self.host(host).popen(args, **kw)
        self.record.pids.append(proc.pid)
        self.record.save()
        return proc

    def start_portal(self, services_url: str, policy: str | None = None,
                     log: Any = None, updates: bool = True) -> subprocess.Popen | None:
        """The update server (port 80) and the remediation portal (the update host's portal
        service, 8080 by default) on the update host: `controller.crs.portal`, asking the
        controller's HTTP services at `services_url` what to tell each terminal."""
        upd = next((h for h in self.topo.hosts if h.role == "update"), None)
        if upd is None:
            return None
        port = next((sv.port for sv in upd.services if sv.name == "portal"), 8080)
        argv = [sys.executable, "-m", "controller.crs.portal", "--controller", services_url,
                "--bind", upd.ip, "--port", str(port), "--updates-port", "80" if updates else "0"]
        if policy:
            argv += ["--policy", policy]
        return self.popen(upd.name, argv, stdout=log or subprocess.DEVNULL,
                          stderr=subprocess.STDOUT)

    def wait_connected(self, timeout_s: float | None = None) -> None:
        assert self.net is not None
        deadline = time.time() + (timeout_s or self.opts.connect_timeout_s)
        pending = list(self.net.switches)
        while pending and time.time() < deadline:
            pending = [s for s in pending if not s.connected()]
            if pending:
                time.sleep(0.2)
        if pending:
            names = ", ".join(s.name for s in pending)
            raise EmulationError(f"switches not connected to the controller "
                                 f"{self.opts.controller_ip}:{self.opts.controller_port} "
                                 f"after {timeout_s or self.opts.connect_timeout_s:.0f} s: {names}")

    def move_host(self, name: str, switch: str, port: int) -> None:
        """Move a host's link to another switch's `port` (roaming, X.1125 13): its old
        link goes (the old switch sees the port vanish), a new one comes up with the
        same interface name, address and MAC, recorded for teardown."""
        assert self.net is not None
        net, h = self.net, self.net.get(name)
        intf = h.defaultIntf()
        ip, mac = intf.IP(), intf.MAC()
        for link in [lk for lk in net.links if h in (lk.intf1.node, lk.intf2.node)]:
            far = link.intf2 if link.intf1.node is h else link.intf1
            far.node.detach(far)
            net.delLink(link)
        sw = net.get(switch)
        link = net.addLink(h, sw, port2=port, intfName1=f"{name}-eth0", cls=Link)
        subprocess.run(["ovs-vsctl", "--timeout=10", "add-port", switch, link.intf2.name,
                        "--", "set", "Interface", link.intf2.name, f"ofport_request={port}"],
                       check=True, capture_output=True)
        link.intf2.cmd("ip link set", link.intf2.name, "up")
        h.setMAC(mac, link.intf1)
        h.setIP(ip, self.topo.prefixlen, link.intf1)
        h.cmd(f"ethtool -K {name}-eth0 tx off rx off >/dev/null 2>&1")
        self.record.interfaces = sorted(set(self.record.interfaces) | {link.intf2.name})
        self.record.save()

    # --- internals ---------------------------------------------------------------------

    def _refuse_clobbering(self) -> None:
        mine = {r.name for r in records()}
        if self.topo.name in mine:
            raise EmulationError(f"a network named {self.topo.name!r} is already up "
                                 "(run 'crs net down' first)")
        taken = existing_bridges() & {s.name for s in self.topo.switches}
        if taken:
            raise EmulationError(f"bridges already exist and are not ours: {sorted(taken)}; "
                                 "refusing to replace them")
        if os.path.exists(f"/sys/class/net/{SERVICE_NODE}-eth0"):
            raise EmulationError(f"interface {SERVICE_NODE}-eth0 exists: another network "
                                 "holds the controller service address")

    def _build(self) -> None:
        topo, opts = self.topo, self.opts
        net = Mininet(topo=None, build=False, autoSetMacs=False, controller=None,
                      waitConnected=False)
        self.net = net
        net.addController("c0", controller=KnownController, ip=opts.controller_ip,
                          port=opts.controller_port)
        for i, (ip, port) in enumerate(opts.more_controllers, 1):
            net.addController(f"c{i}", controller=KnownController, ip=ip, port=port)
        owner: dict[str, list[str]] = {}        # switch -> its controllers' names
        for i, d in enumerate(topo.domains):
            if d.crs and d.name in opts.domain_controllers:
                ip, port = opts.domain_controllers[d.name]
                net.addController(f"d{i}", controller=KnownController, ip=ip, port=port)
            for n in d.switches:
                owner[n] = [f"d{i}"] if d.crs and d.name in opts.domain_controllers else []
        for s in topo.switches:
            # OpenFlow 1.0 too, for one local command: only 1.0 can set no-flood (below);
            # the controller speaks 1.3
            mine = owner.get(s.name) if topo.domains else None
            net.addSwitch(s.name, cls=DomainSwitch, dpid=f"{s.dpid:016x}", datapath="user",
                          failMode="standalone" if mine == [] else "secure",
                          protocols="OpenFlow10,OpenFlow13", controller_names=mine)
        prefix = topo.prefixlen
        delays = opts.shaping and netem_available()
        if opts.shaping and not delays and any(lk.delay_ms for lk in topo.links):
            print("note: this kernel has no sch_netem; link delays are not emulated "
                  "(bandwidth limits are)", flush=True)

        def link(a: str, b: str, pa: int | None, pb: int | None,
                 bw: float | None, delay: float | None, switches: bool = False) -> None:
            params: dict[str, Any] = {}
            if opts.shaping and (bw or delay):
                params = {"cls": TCLink, "cls1": QuietTCIntf, "cls2": QuietTCIntf}
                if bw:
                    params["bw"] = bw
                if delay and delays:
                    params["delay"] = f"{delay}ms"
            else:
                params = {"cls": PatchLink if switches and opts.patch_links else Link}
            net.addLink(a, b, port1=pa, port2=pb, **params)

        for lk in topo.links:
            link(lk.a, lk.b, lk.a_port, lk.b_port, lk.bw_mbps, lk.delay_ms, switches=True)
        for h in topo.hosts:
            net.addHost(h.name, ip=f"{h.ip}/{prefix}", mac=h.mac)
            link(h.name, h.switch, None, h.port, h.bw_mbps, h.delay_ms)
        net.addHost(SERVICE_NODE, inNamespace=False, ip=f"{topo.service_ip}/{prefix}",
                    mac=topo.service_mac)
        link(SERVICE_NODE, topo.service_switch, None, topo.service_port, None, None)

        # (a patch port has no interface: an interface of that name is someone else's)
        self.record.interfaces = sorted(
            {i.name for s in topo.switches for i in net.get(s.name).intfList()
             if i.name != "lo" and not isinstance(i, OVSIntf)} | {f"{SERVICE_NODE}-eth0"})
        self.record.save()
        net.build()
        self.record.pids = [net.get(h.name).pid for h in topo.hosts] + \
            [c.pid for c in net.controllers] + [net.get(SERVICE_NODE).pid]
        self.record.save()
        net.start()
        for node in [net.get(h.name) for h in topo.hosts]:
            node.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                     "net.ipv6.conf.default.disable_ipv6=1")
            for intf in node.intfList():
                if intf.name != "lo":
                    node.cmd(f"ethtool -K {intf.name} tx off rx off >/dev/null 2>&1")
        for sw in topo.switches:
            if net.get(sw.name).failMode != "standalone":
                prepare_local_port(sw.name)
        svc_intf = f"{SERVICE_NODE}-eth0"
        subprocess.run(["ethtool", "-K", svc_intf, "tx", "off", "rx", "off"],
                       capture_output=True, check=False)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{svc_intf}.disable_ipv6=1"],
                       capture_output=True, check=False)


def prepare_local_port(bridge: str) -> None:
    """Make a switch's LOCAL port fit for the EAPOL transport (controller.admission.
    local_port): never a flood target (checked: OpenFlow 1.3 cannot set it), and its host
    interface up but deaf to the host's IP stack (no IPv6, no ARP, no routing from it,
    reverse-path filtered: it holds no address and no route). Raises if no-flood does not
    hold: the interface then stays down, and EAPOL sent to it goes nowhere (fail closed)."""
    def run(*cmd: str) -> str:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode:
            raise EmulationError(f"{bridge}: {' '.join(cmd)} failed: {res.stderr.strip()}")
        return res.stdout
    run("ovs-ofctl", "-O", "OpenFlow10", "mod-port", bridge, bridge, "no-flood")
    shown = run("ovs-ofctl", "-O", "OpenFlow10", "show", bridge)
    local = shown.split(f"LOCAL({bridge})", 1)[-1].split("\n", 2)[:2]
    if "NO_FLOOD" not in "".join(local):
        raise EmulationError(f"{bridge}: could not make its LOCAL port no-flood")
    run("sysctl", "-qw", f"net.ipv6.conf.{bridge}.disable_ipv6=1",
        f"net.ipv4.conf.{bridge}.forwarding=0", f"net.ipv4.conf.{bridge}.rp_filter=1",
        f"net.ipv4.conf.{bridge}.arp_ignore=8")
    run("ip", "link", "set", bridge, "arp", "off", "up")


def start_network(topo: Topology, ctl: Any, *, shaping: bool = False,
                  connect_timeout_s: float = 60.0, known_timeout_s: float = 30.0,
                  emulation_cls: type[Emulation] = Emulation,
                  more: tuple[Any, ...] = (), domains: dict[str, Any] | None = None,
                  patch_links: bool = False) -> Emulation:
    """Bring `topo` up under the controller process `ctl` (emulation.processes.
    ControllerProcess) and return it once every switch is connected and the controller
    reports all of them (a Ryu reference app, which has no status, only the former). What
    was started is stopped when it fails; otherwise the caller stops it."""
    emu = emulation_cls(topo, Options(
        controller_port=ctl.ofp_port, shaping=shaping,
        more_controllers=[("127.0.0.1", c.ofp_port) for c in more],
        domain_controllers={d: ("127.0.0.1", c.ofp_port) for d, c in (domains or {}).items()},
        patch_links=patch_links))
    emu.start()          # waits its turn on the machine-wide lock
    try:
        emu.wait_connected(connect_timeout_s)
        for d, c in (domains or {"": ctl}).items():
            if not getattr(c, "ryu_app", None):
                c.wait_switches(len(topo.domain_dpids(d)) if d else len(topo.switches),
                                known_timeout_s)
    except BaseException:
        emu.stop()
        raise
    return emu


def acquire_lock(timeout_s: float = 1800.0) -> int:
    """One emulated network at a time on a machine: they share the service address (one
    root-namespace route) and switch names. A second one waits its turn, in arrival order:
    waiters queue on a turnstile lock, so a process that releases the network and asks again
    at once (an experiment's next run) goes behind those already waiting."""
    os.makedirs(os.path.dirname(LOCK_FILE), exist_ok=True)
    turn = os.open(LOCK_FILE + ".queue", os.O_CREAT | os.O_RDWR, 0o644)
    fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        with _deadline(timeout_s):
            fcntl.flock(turn, fcntl.LOCK_EX)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("waiting for another emulated network to finish...", flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
    except TimeoutError:
        os.close(fd)
        raise EmulationError(f"another emulated network is still up (lock {LOCK_FILE}); "
                             "gave up waiting") from None
    finally:
        os.close(turn)       # closing drops the turnstile for the next waiter
    return fd


class _deadline:
    """Interrupt a blocking call after `seconds` (SIGALRM; main thread only)."""

    def __init__(self, seconds: float):
        self.seconds = max(1, int(seconds))

    def __enter__(self) -> None:
        import signal
        import threading
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            def expired(signum, frame):
                raise TimeoutError
            self.old = signal.signal(signal.SIGALRM, expired)
            signal.alarm(self.seconds)

    def __exit__(self, *exc: Any) -> None:
        import signal
        if self.active:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, self.old)


def release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
