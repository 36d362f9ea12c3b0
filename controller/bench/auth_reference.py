"""Reference half of the authentication benchmark: hostapd 2.10 as a wired 802.1X
authenticator with its internal EAP server, measured by wpa_supplicant 2.10 (EAP-PSK).

Setup (all ours, removed in a ``finally``): two network namespaces, "a" for hostapd and "t"
for the supplicants, joined by one veth pair per terminal. ONE hostapd process serves every
veth end: hostapd accepts several configuration files, one interface each (``driver=wired``,
``ieee8021x=1``, ``eap_server=1``, a shared eap_user file), which matches one authenticator
with many ports, as our controller is. One wpa_supplicant per terminal.

Measured like our controller will be (controller/bench/wpa.py): wpa_supplicant's -t
timestamps, CTRL-EVENT-EAP-STARTED to CTRL-EVENT-EAP-SUCCESS, in ms.
  single:     1 terminal: the first exchange, then ``runs`` re-authentications
              (control command REAUTHENTICATE, one at a time).
  concurrent: ``n_terminals`` supplicants started together (first exchanges), then
              ``rounds`` (default ``runs``) rounds in which all of them re-authenticate at once.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controller.emulation.processes import Timeout, wait_until

from . import common
from .wpa import (
    Ctrl,
    Exchanges,
    VethNamespaces,
    exchanges,
    run_in,
    start_supplicant,
    stop_process,
    wait_results,
    write_supplicant_config,
)

IDENTITY = "c1t1@crs.example"
PSK = "00112233445566778899aabbccddeeff"      # DEMO ONLY (ops1's key in config/credentials.yaml)


def hostapd_config(interface: str, eap_user_file: str | Path) -> str:
    """hostapd.conf of one wired 802.1X port with the internal EAP server."""
    return "\n".join([f"interface={interface}", "driver=wired", "ieee8021x=1", "eap_server=1",
                      f"eap_user_file={eap_user_file}", "eapol_version=2", "logger_stdout=-1",
                      "logger_stdout_level=2", ""])


def eap_user_lines(users: dict[str, str]) -> str:
    """eap_user file: ``"identity" PSK <32 hex>`` per user."""
    out = []
    for ident, psk in users.items():
        if '"' in ident or "\n" in ident or len(psk) != 32:
            raise ValueError(f"bad eap_user entry {ident!r}")
        out.append(f'"{ident}" PSK {psk}')
    return "\n".join(out) + "\n"


def versions() -> dict[str, str]:
    def v(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return "missing"
        first = (r.stdout + r.stderr).strip().splitlines()
        return first[0] if first else "unknown"
    return {"hostapd": v(["hostapd", "-v"]), "wpa_supplicant": v(["wpa_supplicant", "-v"])}


class Reference:
    """hostapd on every authenticator-side veth end, and supplicants on demand."""

    def __init__(self, net: VethNamespaces, work: Path, users: dict[str, str]):
        self.net, self.work = net, work
        (work / "eap_user").write_text(eap_user_lines(users))
        (work / "eap_user").chmod(0o600)
        confs = []
        for _, a in net.pairs:
            c = work / f"hostapd-{a}.conf"
            c.write_text(hostapd_config(a, work / "eap_user"))
            confs.append(str(c))
        self.hostapd_log = work / "hostapd.out"
        with open(self.hostapd_log, "w") as out:
            self.hostapd = run_in(net.ns_a, ["hostapd", *confs], out)
        self.supplicants: list[subprocess.Popen] = []
        wait_until(lambda: self._hostapd_up(len(confs)), 30, "hostapd enabled on every interface")

    def _hostapd_up(self, n: int) -> bool:
        if self.hostapd.poll() is not None:
            raise RuntimeError(f"hostapd exited: {self.hostapd_log.read_text()[-500:]}")
        return self.hostapd_log.read_text(errors="replace").count("AP-ENABLED") >= n

    def supplicant(self, i: int, identity: str, psk: str) -> tuple[Path, Ctrl]:
        """Start wpa_supplicant on terminal interface i; (its log, its control interface)."""
        t, _ = self.net.pairs[i]
        ctrl_dir = self.work / "ctrl"
        conf = write_supplicant_config(self.work / f"wpa-{t}.conf", identity, psk, "PSK", ctrl_dir)
        log = self.work / f"wpa-{t}.out"
        self.supplicants.append(start_supplicant(t, conf, log, netns=self.net.ns_t))
        return log, Ctrl(ctrl_dir, t)

    def stop_supplicants(self) -> None:
        for p in self.supplicants:
            stop_process(p)
        self.supplicants = []

    def close(self) -> None:
        self.stop_supplicants()
        stop_process(self.hostapd)


def authenticate_once(identity: str = IDENTITY, psk: str = PSK, server_psk: str | None = None,
                      timeout_s: float = 20.0) -> Exchanges:
    """One terminal, one exchange; ``server_psk`` different from ``psk`` makes it fail."""
    with VethNamespaces(1) as net, tempfile.TemporaryDirectory(prefix="crs-authref-") as d:
        ref = Reference(net, Path(d), {identity: server_psk or psk})
        try:
            log, _ = ref.supplicant(0, identity, psk)
            return wait_results(log, 1, timeout_s)
        finally:
            ref.close()


def _trigger_all(ctrls: list[Ctrl]) -> None:
    for c in ctrls:
        if c.request("REAUTHENTICATE").strip() != "OK":
            raise RuntimeError(f"REAUTHENTICATE refused by {c.path}")


def run(n_terminals: int = 50, runs: int = 30, timeout_s: float = 60.0,
        rounds: int | None = None) -> dict:
    """The reference measurement (see module doc); times in ms. ``rounds`` (default: ``runs``)
    is the number of all-at-once re-authentication rounds of the ``n_terminals``."""
    rounds = runs if rounds is None else rounds
    if n_terminals < 1 or runs < 1 or rounds < 1:
        raise ValueError("n_terminals, runs and rounds must be >= 1")
    users = {f"c1t{i + 1}@crs.example": PSK for i in range(n_terminals)}
    idents = list(users)
    with (VethNamespaces(n_terminals) as net,
          tempfile.TemporaryDirectory(prefix="crs-authref-") as d):
        ref = Reference(net, Path(d), users)
        try:
            # single terminal: first exchange, then `runs` re-authentications one by one
            log, ctrl = ref.supplicant(0, idents[0], PSK)
            wait_results(log, 1, timeout_s)
            wait_until(ctrl.ready, 10, "wpa_supplicant control interface")
            for k in range(runs):
                _trigger_all([ctrl])
                wait_results(log, k + 2, timeout_s)
            single = exchanges(log.read_text())
            ref.stop_supplicants()

            # n terminals at once
            started = [ref.supplicant(i, idents[i], PSK) for i in range(n_terminals)]
            logs, ctrls = [s[0] for s in started], [s[1] for s in started]
            t0 = time.monotonic()
            for lg in logs:
                wait_results(lg, 1, timeout_s)
            cold_s = time.monotonic() - t0
            for c in ctrls:
                wait_until(c.ready, 10, f"control interface {c.path}")
            for r in range(rounds):
                _trigger_all(ctrls)
                for lg in logs:
                    wait_results(lg, r + 2, timeout_s)
            per = [exchanges(lg.read_text()) for lg in logs]
        finally:
            ref.close()
    first_conc = [e.success_ms[0] for e in per if e.success_ms]
    reauth_conc = [x for e in per for x in e.success_ms[1:]]
    s_re = common.summary(single.success_ms[1:])
    c_re = common.summary(reauth_conc)
    return {
        "method": "EAP-PSK",
        "setup": "hostapd driver=wired, one process with one interface per veth pair; "
                 "wpa_supplicant -D wired -t per terminal; separate network namespaces",
        "versions": versions(),
        "params": {"n_terminals": n_terminals, "runs": runs, "rounds": rounds},
        "single": {"first_ms": single.success_ms[0] if single.success_ms else None,
                   "reauth_ms": s_re, "p50_ms": s_re["p50"], "p99_ms": s_re["p99"],
                   "failures": len(single.failure_ms)},
        "concurrent": {"n_terminals": n_terminals, "first_ms": common.summary(first_conc),
                       "all_first_done_s": cold_s, "reauth_ms": c_re, "p50_ms": c_re["p50"],
                       "p99_ms": c_re["p99"],
                       "failures": sum(len(e.failure_ms) for e in per),
                       "unfinished": sum(e.unfinished for e in per)},
    }


def main(argv: list[str] | None = None) -> int:
    """`crs bench auth-reference`: run, write results/bench/auth_reference.json, print a table."""
    ap = argparse.ArgumentParser(prog="crs bench auth-reference",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--out", default=str(common.ROOT / "results" / "bench"))
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if "missing" in versions().values():
        print("auth-reference: hostapd and wpa_supplicant are needed (apt-get install hostapd "
              "wpasupplicant)", file=sys.stderr)
        return 2
    try:
        res = run(args.terminals, args.runs)
    except (RuntimeError, ValueError, Timeout) as exc:
        print(f"auth-reference: {exc}", file=sys.stderr)
        return 1
    path = common.write(args.out, "auth_reference", res)
    s, c = res["single"], res["concurrent"]
    print(common.table([
        ["hostapd, 1 terminal", s["reauth_ms"]["n"], s["p50_ms"], s["p99_ms"], s["first_ms"],
         s["failures"]],
        [f"hostapd, {c['n_terminals']} at once", c["reauth_ms"]["n"], c["p50_ms"], c["p99_ms"],
         c["first_ms"]["p50"], c["failures"]]],
        ["EAP-PSK (STARTED->SUCCESS)", "n", "p50 ms", "p99 ms", "first ms", "failures"]))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
