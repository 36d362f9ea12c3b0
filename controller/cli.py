"""`crs`: one command for the controller, emulated networks, experiments and operators.

Subcommands import what they need lazily: the controller process must never import
Mininet and the network process must never import Ryu. Ryu's start-up monkey-patches the
standard library with eventlet (ryu.lib.hub.patch), whose green `select` has no `poll()`,
which Mininet uses to read its hosts' shells.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Callable

EXIT_CONFIG = 2
DEFAULT_DB = "var/crs.db"
PROVISIONED_KEYS = "var/provisioned/keys.yaml"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        # A program parses its own arguments, --help included: hand them over untouched
        # (argparse's REMAINDER would drop an option that comes first, such as --help).
        return _program(PASS_THROUGH[argv[0]])(argparse.Namespace(args=argv[1:]))
    if argv[:2] == ["bench", "summary"]:
        from controller.bench import targets
        return targets.main(argv[2:])
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in BENCHES:
        # one benchmark: its own parser takes every option it has (--help included)
        return _bench_one(argv[1], argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return args.func(args) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crs", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    c = sub.add_parser("controller", help="run the Ryu OpenFlow 1.3 controller")
    c.add_argument("--ofp-port", type=int, default=6653, help="OpenFlow listen port")
    c.add_argument("--ofp-host", default="127.0.0.1",
                   help="OpenFlow listen address (default loopback: switches on this host; "
                   "give an address for real switches, with TLS)")
    c.add_argument("--ofp-tls-cert", help="OpenFlow over TLS: the controller's certificate")
    c.add_argument("--ofp-tls-key", help="OpenFlow over TLS: the controller's private key")
    c.add_argument("--ofp-tls-ca", help="OpenFlow over TLS: CA certificate that switch "
                   "certificates must chain to (switches must then present one)")
    c.add_argument("--rest-port", type=int, default=8080, help="REST API port")
    c.add_argument("--rest-host", default="0.0.0.0", help="REST API address")
    c.add_argument("--config", help="controller configuration file (YAML)")
    c.add_argument("--topology", help="topology file (cells, servers, inter-switch ports)")
    c.add_argument("--terminals-per-cell", type=int,
                   help="terminals in every cell instead of the topology file's (as given to "
                        "`crs net up --terminals-per-cell`)")
    c.add_argument("--db", "--store", dest="db", default=DEFAULT_DB,
                   help="the store: an SQLite file (default %(default)s) or a PostgreSQL URL "
                        "(postgresql://...; a database several controllers can share)")
    c.add_argument("--token-file", help="where to write the operator token, mode 0600 "
                   "(default: operator.token in the database's folder)")
    c.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    c.add_argument("--admission", choices=["open", "authenticate"],
                   help="override the configured admission mode")
    c.add_argument("--framework", choices=["ryu", "os-ken"], default="ryu",
                   help="the OpenFlow framework to run on: Ryu (default) or os-ken, its "
                        "maintained fork")
    c.add_argument("--profile", metavar="FILE",
                   help="profile the controller (cProfile) and write FILE when it is stopped "
                        "(SIGTERM or SIGINT; benchmarks use it)")
    c.set_defaults(func=cmd_controller)

    n = sub.add_parser("net", help="bring an emulated network up or down")
    nsub = n.add_subparsers(title="net commands", metavar="ACTION")
    up = nsub.add_parser("up", help="build TOPOLOGY in Mininet and keep it up until stopped")
    up.add_argument("topology", help="topology file, e.g. topologies/mobile_core.yaml")
    up.add_argument("--controller", action="append", metavar="[DOMAIN=]HOST:PORT",
                    help="the controller (default 127.0.0.1:6653); repeat it for several "
                         "controllers (every switch connects to all, ha.enabled); with "
                         "the topology's domains, DOMAIN=HOST:PORT per CRS domain (each "
                         "switch connects to its domain's; crs: false domains run "
                         "standalone)")
    up.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    up.add_argument("--terminals-per-cell", type=int)
    up.add_argument("--no-shaping", action="store_true", help="ignore link bw/delay")
    up.add_argument("--patch-links", action="store_true",
                    help="join switches by Open vSwitch patch ports where a link is not "
                         "shaped (one datapath pass for a whole path; no link failure to "
                         "emulate, no interface to capture on)")
    up.add_argument("--services", metavar="URL",
                    help="the controller's HTTP services for the portal (default "
                         "http://<controller service address>:8080)")
    up.add_argument("--policy", default="config/crs_policy.yaml",
                    help="the CRS policy whose update items the update host serves")
    up.add_argument("--no-portal", action="store_true",
                    help="no update server and remediation portal on the update host")
    up.set_defaults(func=cmd_net_up)
    down = nsub.add_parser("down", help="remove networks 'net up' created")
    down.add_argument("name", nargs="?", help="network name (default: all of ours)")
    down.add_argument("--all", action="store_true")
    down.set_defaults(func=cmd_net_down)
    st = nsub.add_parser("status", help="list networks 'net up' created")
    st.set_defaults(func=cmd_net_status)

    ck = sub.add_parser("check", help="validate configuration files offline")
    ck.add_argument("files", nargs="*", help="files to check (default: the shipped ones)")
    ck.set_defaults(func=cmd_check)

    d = sub.add_parser("demo", help="the default demonstration (what 'make demo' runs)")
    d.add_argument("--out", default="results/demo")
    d.add_argument("--topology", default="topologies/mobile_core.yaml")
    d.set_defaults(func=cmd_demo)

    # programs with their own parser (crs <program> --help): listed here for 'crs --help';
    # main() hands them everything after their name (see PASS_THROUGH)
    for name, module, text in PROGRAMS + [EXPERIMENT]:
        q = sub.add_parser(name, help=text, add_help=False)
        q.add_argument("args", nargs=argparse.REMAINDER)
        q.set_defaults(func=_program(module))

    # operator commands against the REST API (loopback)
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--api", default="http://127.0.0.1:8080", help="controller REST URL")
    api.add_argument("--db", "--store", dest="db", default=DEFAULT_DB,
                     help="the controller's --db/--store: its operator token is read next to "
                          "an SQLite file, from var/ with PostgreSQL")
    api.add_argument("--token-file", help="the controller's operator token file "
                     "(default: operator.token in the folder of --db)")
    t = sub.add_parser("terminals", parents=[api], help="list terminals: level, group, session")
    t.set_defaults(func=lambda a: _api(a, "GET", "/crs/v1/terminals"))
    t1 = sub.add_parser("terminal", parents=[api], help="show one terminal (name, IP or MAC)")
    t1.add_argument("who")
    t1.set_defaults(func=lambda a: _api(a, "GET", f"/crs/v1/terminals/{a.who}"))
    for action in ("quarantine", "release"):
        q = sub.add_parser(action, parents=[api], help=f"{action} a terminal (name, IP or MAC)")
        q.add_argument("who")
        q.set_defaults(func=lambda a, act=action: _api(a, "POST",
                                                       f"/crs/v1/terminals/{a.who}/{act}"))
    r = sub.add_parser("rate-limit", parents=[api], help="rate-limit a terminal (kbit/s)")
    r.add_argument("who")
    r.add_argument("kbps", type=int)
    r.set_defaults(func=lambda a: _api(a, "POST", f"/crs/v1/terminals/{a.who}/rate-limit",
                                       {"kbps": a.kbps}))
    pol = sub.add_parser("policy", parents=[api], help="show or reload the CRS policy")
    pol.add_argument("action", choices=["show", "reload"])
    pol.set_defaults(func=lambda a: _api(a, "GET" if a.action == "show" else "POST",
                                         "/crs/v1/policy" + ("" if a.action == "show"
                                                             else "/reload")))
    st = sub.add_parser("status", parents=[api], help="controller status and counters")
    st.set_defaults(func=lambda a: _api(a, "GET", "/crs/v1/status"))
    ev = sub.add_parser("events", help="authentications, decisions, seals, releases as "
                        "JSON lines (format: controller/events.py, version 1)")
    ev.add_argument("--follow", "-f", action="store_true",
                    help="keep printing events as they happen (default: print and stop)")
    ev.add_argument("--type", action="append", default=[], metavar="TYPE",
                    help="only this type (repeatable): authentication, revocation, "
                         "decision, release, seal, unseal, operator, report, ...")
    ev.add_argument("--from-start", action="store_true",
                    help="with --follow: the events already in the log first")
    ev.add_argument("--terminal", help="only this terminal (identity, name, IP or MAC)")
    ev.add_argument("--audit", help="the controller's audit log (default: audit_log of "
                    "--config)")
    ev.add_argument("--config", default="config/crs.yaml",
                    help="the controller's configuration (for its audit_log)")
    ev.set_defaults(func=cmd_events)
    hp = sub.add_parser("hash-psk", help="AK and KDK to store for an EAP-PSK subscriber")
    hp.add_argument("psk_hex")
    hp.set_defaults(func=cmd_hash_psk)

    # the reacting system on a network of your own (mn --topo ...): README "Your own Mininet"
    k = sub.add_parser("keys", help="pre-provisioned report keys (no 802.1X, no topology)")
    ksub = k.add_subparsers(title="keys commands", metavar="ACTION")
    ki = ksub.add_parser("issue", help="issue a report key: the controller's keys file, the "
                         "terminal's keys file and a clean posture")
    ki.add_argument("names", nargs="+", metavar="NAME")
    ki.add_argument("--mininet", action="store_true",
                    help="names are Mininet hosts h1, h2...: the MAC and address `mn --mac` "
                         "gives them")
    ki.add_argument("--mac")
    ki.add_argument("--ip")
    ki.add_argument("--group", default="default")
    ki.add_argument("--keys", default=PROVISIONED_KEYS, help="the controller's keys file")
    ki.add_argument("--out", default="var/provisioned", help="where terminals' files go")
    ki.set_defaults(func=cmd_keys_issue)
    kl = ksub.add_parser("list", help="terminals in a keys file (no keys shown)")
    kl.add_argument("--keys", default=PROVISIONED_KEYS)
    kl.set_defaults(func=cmd_keys_list)
    sv = sub.add_parser("service", help="put the controller's service address on a switch "
                        "of a network you built (an OVS internal port)")
    svsub = sv.add_subparsers(title="service commands", metavar="ACTION")
    for name, text in (("attach", "add the service port"), ("detach", "remove it")):
        q = svsub.add_parser(name, help=text)
        q.add_argument("switch", help="an Open vSwitch bridge, e.g. s1")
        q.add_argument("--config", default="config/mininet.yaml",
                       help="the controller's configuration (its crs.service)")
        q.add_argument("--prefix", type=int, default=24, help="prefix length of the address")
        q.set_defaults(func=cmd_service, action=name)
    po = sub.add_parser("posture", help="make a posture file infected or clean (what the "
                        "agent reports next)")
    po.add_argument("file")
    state = po.add_mutually_exclusive_group(required=True)
    state.add_argument("--infected", action="store_true")
    state.add_argument("--clean", action="store_true")
    po.set_defaults(func=cmd_posture)

    b = sub.add_parser("bench", help="benchmarks writing results/bench/<name>.json",
                       description="`crs bench all` runs every benchmark but auth_radius with "
                       "the options below; `crs bench NAME [options]` runs one, with every "
                       "option of its own (`crs bench NAME --help`)")
    b.add_argument("name", choices=["forwarding", "auth", "reaction", "reports", "failover",
                                    "simulation", "switch", "auth_radius", "all", "summary"],
                   help="all: every one but auth_radius (EAP-TLS via FreeRADIUS, about "
                        "1 min, run on its own), then the summary; summary: the speed "
                        "targets against the last results (`crs bench summary --help`)")
    b.add_argument("--out", default="results/bench")
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--profile", action="store_true",
                   help="also write a cProfile next to the JSON (<name>.prof): the pure "
                        "core for reports, the controller process for auth and reaction")
    b.add_argument("--workdir", metavar="DIR",
                   help="auth and reaction: the controller's store, logs and run files go "
                        "(and stay) here instead of a temporary directory; on tmpfs "
                        "(e.g. /dev/shm/crs-bench) the store's disk sync before a "
                        "decision's flows costs nothing, which shows how much of a latency "
                        "that sync is (the JSON records the file system)")
    b.set_defaults(func=cmd_bench)
    return p


PROGRAMS = [
    ("supplicant", "controller.admission.supplicant_main", "our 802.1X supplicant (terminal)"),
    ("agent", "controller.crs.agent", "the X.1125 security correlative agent (terminal)"),
    ("worm", "controller.worm.host", "the emulated, harmless worm (terminal)"),
    ("sp", "controller.admission.sp_demo", "demo application server and client (X.1124 SP/SS)"),
]
EXPERIMENT = ("experiment", "controller.experiment.runner",
              "containment experiments (crs experiment run|simulate|compare ...)")
# subcommands whose arguments all go to the program's own parser
PASS_THROUGH = {name: module for name, module, _ in PROGRAMS + [EXPERIMENT]}


# --- commands ----------------------------------------------------------------------------

def _program(module: str) -> Callable[[argparse.Namespace], int]:
    def run(a: argparse.Namespace) -> int:
        import importlib
        return importlib.import_module(module).main(a.args)
    return run


def _api(a: argparse.Namespace, method: str, path: str, body: dict | None = None) -> int:
    """Call the REST API and print its JSON; errors come back as JSON with a reason."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from controller import restguard
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if method == "POST":      # state-changing operator calls need the controller's token
        tf = restguard.token_file(a.db, a.token_file)
        try:
            headers.update(restguard.auth_header(restguard.read_token(tf)))
        except (OSError, ValueError) as exc:
            print(f"error: cannot read the operator token ({exc}); run as a user who can "
                  f"read it, or pass the controller's --token-file or --db", file=sys.stderr)
            return 1
    url = a.api.rstrip("/") + path
    for hop in range(2):    # a standby answers a write with 307 to the leader: follow once
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                print(json.dumps(json.loads(r.read() or b"null"), indent=1, sort_keys=True))
                return 0
        except urllib.error.HTTPError as exc:
            where = exc.headers.get("Location")
            host = urllib.parse.urlsplit(where or "").hostname or ""
            if exc.code == 307 and where and hop == 0 and not (
                    host == "localhost" or restguard.is_loopback(host)):
                print(f"the leader is at {where}: ask it there (the operator token is only "
                      "sent to loopback)", file=sys.stderr)
                return 1
            if exc.code == 307 and where and hop == 0:
                print(f"(a standby: sent to the leader at {where})", file=sys.stderr)
                url = where
                continue
            print(exc.read().decode(errors="replace"), file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot reach the controller at {url}: {exc}", file=sys.stderr)
            return 1
    return 1


def cmd_events(a: argparse.Namespace) -> int:
    from controller import events
    path = a.audit
    if path is None:
        from controller.config import ConfigError
        from controller.settings import load_settings
        try:
            path = load_settings(a.config).audit_log
        except (ConfigError, OSError) as exc:
            print(f"error: {exc} (or give the audit log with --audit)", file=sys.stderr)
            return 2
    try:
        # without --follow: what the log holds now; with it: from now on
        for ev in events.stream(path, a.type, a.terminal,
                                from_start=a.from_start or not a.follow, keep_going=a.follow):
            print(json.dumps(ev, sort_keys=True), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


def cmd_hash_psk(a: argparse.Namespace) -> int:
    from controller.admission.credentials import hash_psk
    ak, kdk = hash_psk(a.psk_hex)
    print(f"ak: {ak}\nkdk: {kdk}")
    return 0


def cmd_keys_issue(a: argparse.Namespace) -> int:
    from controller import ownnet
    from controller.config import ConfigError
    try:
        for line in ownnet.issue_keys(a.keys, a.names, a.out, a.mininet, a.mac, a.ip, a.group):
            print(line)
    except (ValueError, ConfigError) as exc:
        print(f"crs keys issue: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_keys_list(a: argparse.Namespace) -> int:
    from controller.config import ConfigError
    from controller.crs import provisioned
    try:
        keys = provisioned.load(a.keys)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    for p in keys.values():
        print(f"{p.name:16} {p.mac} {p.ip:15} {p.group}")
    return 0


def cmd_service(a: argparse.Namespace) -> int:
    from controller import ownnet
    from controller.config import ConfigError
    from controller.settings import load_settings
    try:
        if a.action == "detach":
            ownnet.detach_service(a.switch)
            return 0
        s = load_settings(a.config)
        if not s.crs_service_ip:
            print(f"{a.config}: crs.service.ip: missing (the address to attach)",
                  file=sys.stderr)
            return EXIT_CONFIG
        print(ownnet.attach_service(a.switch, s.crs_service_ip, s.crs_service_mac,
                                    a.prefix))
    except (RuntimeError, OSError, ConfigError) as exc:
        print(f"crs service {a.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_posture(a: argparse.Namespace) -> int:
    from controller import ownnet
    doc = ownnet.set_posture(a.file, a.infected)
    print(f"{a.file}: {'infected' if a.infected else 'clean'} "
          f"({len(doc['threats'])} threat(s) listed)")
    return 0


def cmd_controller(a: argparse.Namespace) -> int:
    from controller import launcher
    from controller.config import ConfigError
    from controller.settings import load_settings
    try:
        s = load_settings(a.config, ofp_port=a.ofp_port, rest_port=a.rest_port,
                          rest_host=a.rest_host, db_path=a.db, log_level=a.log_level,
                          topology_file=a.topology, admission_mode=a.admission,
                          terminals_per_cell=a.terminals_per_cell,
                          token_file=a.token_file, ofp_host=a.ofp_host,
                          ofp_tls_cert=a.ofp_tls_cert, ofp_tls_key=a.ofp_tls_key,
                          ofp_tls_ca=a.ofp_tls_ca)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if bool(a.ofp_tls_cert) != bool(a.ofp_tls_key):
        print("error: --ofp-tls-cert and --ofp-tls-key go together", file=sys.stderr)
        return EXIT_CONFIG
    return launcher.run(s, profile=a.profile, framework=a.framework)


def _load_topology(path: str, tpc: int | None = None):
    from controller import topology
    from controller.config import ConfigError
    try:
        return topology.load(path, terminals_per_cell=tpc)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)


def cmd_net_up(a: argparse.Namespace) -> int:
    topo = _load_topology(a.topology, a.terminals_per_cell)
    from controller.emulation.net import Emulation, EmulationError, Options
    targets, domains = [], {}
    for c in a.controller or ["127.0.0.1:6653"]:
        domain, _, c = c.rpartition("=")
        host, _, port = c.rpartition(":")
        targets.append((host or "127.0.0.1", int(port)))
        if domain:
            domains[domain] = targets[-1]
    unknown = set(domains) - {d.name for d in topo.domains if d.crs}
    if unknown:
        print(f"{a.topology}: no CRS domain {sorted(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    opts = Options(controller_ip=targets[0][0], controller_port=targets[0][1],
                   shaping=not a.no_shaping, more_controllers=[] if domains else targets[1:],
                   domain_controllers=domains, patch_links=a.patch_links)
    emu = Emulation(topo, opts)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = False
    try:
        t0 = time.time()
        emu.start()         # cleans up after itself when it fails
        started = True
        print(f"{topo.name}: {len(topo.switches)} switches, {len(topo.hosts)} hosts up in "
              f"{time.time() - t0:.1f} s; controller "
              f"{', '.join(f'{h}:{p}' for h, p in targets)}")
        try:
            emu.wait_connected()
            print("all switches connected")
        except EmulationError as exc:
            print(f"warning: {exc}", file=sys.stderr)
        if not a.no_portal and topo.service_ip:
            services = a.services or f"http://{topo.service_ip}:8080"
            if emu.start_portal(services, a.policy if os.path.exists(a.policy) else None):
                print(f"update server and portal on the update host (asking {services})")
        if a.cli:
            from mininet.cli import CLI
            CLI(emu.net)
        else:
            print("running; Ctrl-C or 'crs net down' to remove it")
            while not stop["now"]:
                time.sleep(0.2)
    except EmulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if started:
            emu.stop()
            print(f"{topo.name}: removed")
    return 0


def cmd_net_down(a: argparse.Namespace) -> int:
    from controller.emulation.record import records, teardown
    found = [r for r in records() if a.all or a.name is None or r.name == a.name]
    if not found:
        print("no network recorded as ours")
        return 0
    for rec in found:
        teardown(rec)
        print(f"{rec.name}: removed")
    return 0


def cmd_net_status(a: argparse.Namespace) -> int:
    from controller.emulation.record import alive, records
    for r in records():
        state = "running" if alive(r.launcher_pid) else "launcher gone (run 'crs net down')"
        print(f"{r.name}: {len(r.bridges)} bridges, {len(r.pids)} processes, {state}")
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    import glob
    from pathlib import Path

    from controller.config import ConfigError
    from controller.settings import load_settings, validate
    files = a.files or sorted(glob.glob("topologies/*.yaml") + glob.glob("config/*.yaml") +
                              glob.glob("config/defences/*.yaml") +
                              glob.glob("scenarios/*.yaml"))
    checkers = _checkers()
    bad = 0
    for f in files:
        kind = _kind_of(f)
        try:
            if kind == "controller" and Path(f).resolve().parent.name != "defences":
                validate(load_settings(f))      # and the files it names, as at start-up
            else:       # a defence template: the experiment runner completes it (topology)
                checkers[kind](f)
            print(f"{f}: ok ({kind})")
        except ConfigError as exc:
            bad += 1
            print(exc)
    return EXIT_CONFIG if bad else 0


_KIND_KEYS = [("simulation", {"population"}),     # (before "scenario": both sweep defences)
              ("scenario", {"scan_rate", "defences", "detection_delay"}),
              ("topology", {"switches", "controller_service"}),
              ("credentials", {"subscribers", "templates", "service_providers"}),
              ("authorization", {"servers", "groups"}),
              ("policy", {"evaluation", "control"}),
              ("controller", {"admission", "crs", "forwarding", "throttle"})]


def _kind_of(path: str) -> str:
    """What a configuration file is, from its top-level keys (or, failing that, its name)."""
    import yaml
    try:
        doc = yaml.safe_load(open(path))
    except (OSError, yaml.YAMLError):
        doc = None
    if isinstance(doc, dict):
        for kind, keys in _KIND_KEYS:
            if keys & set(doc):
                return kind
    name = path.replace("\\", "/").lower()
    for needle, kind in (("credential", "credentials"), ("authorization", "authorization"),
                         ("scenario", "scenario"), ("topolog", "topology"),
                         ("polic", "policy"), ("defence", "policy")):
        if needle in name:
            return kind
    return "controller"


def _checkers() -> dict[str, Callable[[str], object]]:
    from controller import settings, topology
    from controller.admission.authorization import load_authorization
    from controller.admission.credentials import load_credentials
    from controller.crs.policy import load_policy
    from controller.experiment import simulate
    from controller.experiment.scenario import load_scenario
    return {"topology": topology.load, "controller": settings.load_settings,
            "credentials": load_credentials, "authorization": load_authorization,
            "policy": load_policy, "scenario": load_scenario, "simulation": simulate.load}


def cmd_demo(a: argparse.Namespace) -> int:
    from controller.demo import run_demo
    return run_demo(a.topology, a.out)


BENCHES = {
    "forwarding": ("controller.bench.forwarding", lambda a: {"repeat": a.repeat}),
    "auth": ("controller.bench.auth", lambda a: {"profile": a.profile, "workdir": a.workdir}),
    "reaction": ("controller.bench.reaction",
                 lambda a: {"profile": a.profile, "keep_dir": a.workdir}),
    "reports": ("controller.bench.reports", lambda a: {"profile": a.profile}),
    "failover": ("controller.bench.failover", lambda a: {}),
    "simulation": ("controller.bench.simulation", lambda a: {"repeat": a.repeat}),
    "switch": ("controller.bench.switch", lambda a: {}),
    "auth_radius": ("controller.bench.auth_radius", lambda a: {}),
}
IN_ALL = ("forwarding", "auth", "reaction", "reports", "failover", "simulation", "switch")
ON_OPENVSWITCH = {"forwarding", "auth", "reaction", "failover", "switch", "auth_radius"}


def _openvswitch_missing(names: list[str]) -> bool:
    from controller.emulation.record import openvswitch_problem
    problem = openvswitch_problem() if set(names) & ON_OPENVSWITCH else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
    return bool(problem)


def _bench_one(name: str, argv: list[str]) -> int:
    import importlib
    if "-h" not in argv and "--help" not in argv and _openvswitch_missing([name]):
        return 1
    return importlib.import_module(BENCHES[name][0]).main(argv) or 0


def cmd_bench(a: argparse.Namespace) -> int:
    import importlib
    if a.name == "summary":             # (`crs bench --out DIR summary`)
        from controller.bench import targets
        return targets.main(["--bench", a.out])
    names = list(IN_ALL) if a.name == "all" else [a.name]
    if _openvswitch_missing(names):
        return 1
    failed = []
    for name in names:
        module, params = BENCHES[name]
        print(f"== benchmark: {name}", flush=True)
        try:
            importlib.import_module(module).run(out_dir=a.out, **params(a))
        except RuntimeError as exc:     # (a benchmark's set-up refused: the others still run)
            print(f"bench {name}: {exc}", file=sys.stderr)
            failed.append(name)
    if a.name == "all":
        from controller.bench import targets
        targets.main(["--bench", a.out])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
