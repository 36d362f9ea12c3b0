"""X.1124 with a RADIUS back end (admission.backend: radius) on Mininet: the controller stays
the authenticator and relays EAP to real FreeRADIUS servers (their own generated
configurations, certificates and ports, ended by PID); real wpa_supplicant on the terminals.
EAP-TLS (the certificate-based mechanism) and PEAP-MSCHAPv2 get in, a certificate of another
CA and a wrong password stay out; no server answering fails closed while an admitted terminal
keeps its access; a dead first server is retried, then the second one admits."""
import subprocess

import pytest
from nethelpers import ROOT, tcp_ok

from controller.bench import wpa
from controller.emulation.processes import controller_config, wait_until
from controller.emulation.radiusserver import FreeRadius, Pki

SERVER = "10.0.100.20"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def radius(pki):
    servers = []

    def make(**kw):
        s = FreeRadius(pki, **kw).start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.remove()


def radius_controller(controller, tmp_path, servers, **radius_kw):
    entries = []
    for i, s in enumerate(servers):
        secret = s.secret_file(tmp_path / f"radius-{i}.secret")
        entries.append({"host": "127.0.0.1", "port": s.port, "secret_file": secret.name})
    conf = {"backend": "radius",
            "radius": {"servers": entries, "timeout_s": 0.5, "retries": 1, **radius_kw}}
    return controller(*controller_config(tmp_path / "controller.yaml",
                                         ROOT / "topologies/minimal.yaml",
                                         extra={"admission": conf}))


class Terminal:
    """wpa_supplicant on a Mininet host, restartable with another configuration."""

    def __init__(self, emu, tmp_path, host):
        self.emu, self.tmp, self.host, self.proc, self.n = emu, tmp_path, host, None, 0
        self.log = None

    def start(self, conf_text: str):
        self.stop()
        self.n += 1
        conf = wpa.write_private(self.tmp / f"wpa-{self.host}-{self.n}.conf", conf_text)
        self.log = self.tmp / f"wpa-{self.host}-{self.n}.log"
        self.proc = wpa.start_supplicant(
            f"{self.host}-eth0", conf, self.log, popen=lambda argv, out: self.emu.popen(
                self.host, argv, stdout=out, stderr=subprocess.STDOUT))
        return self

    def stop(self):
        if self.proc is not None:
            wpa.stop_process(self.proc)
            self.proc = None

    def text(self):
        return self.log.read_text() if self.log and self.log.exists() else ""

    def wait(self, event, timeout=30):
        wait_until(lambda: event in self.text(), timeout, f"{self.host}: {event}")


def tls(pki, identity, cert_key, ctrl_dir=None):
    return wpa.certificate_config(identity, "TLS", pki.ca, *cert_key, ctrl_dir=ctrl_dir)


def terminal_row(ctl, name):
    return next((t for t in ctl.get("/crs/v1/terminals") if t["name"] == name), None)


def test_eap_tls_and_peap_through_freeradius(controller, network, tmp_path, pki, radius):
    from nethelpers import web_server
    srv = radius(users={"c1t2@crs.example": "right-password"})
    ctl = radius_controller(controller, tmp_path, [srv])
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    rogue = Pki(tmp_path / "rogue", "rogue CA")
    t1, t2 = Terminal(emu, tmp_path, "c1t1"), Terminal(emu, tmp_path, "c1t2")
    assert not tcp_ok(emu.host("c1t1"), SERVER, 80)
    # EAP-TLS with a certificate of the server's CA, CN = the identity: admitted
    t1.start(tls(pki, "c1t1@crs.example", pki.issue("c1t1", "c1t1@crs.example")))
    # the same identity on a certificate of another CA: refused
    t2.start(tls(pki, "c1t2@crs.example", rogue.issue("c1t2", "c1t2@crs.example")))
    t1.wait(wpa.SUCCESS)
    t2.wait(wpa.FAILURE)
    wait_until(lambda: tcp_ok(emu.host("c1t1"), SERVER, 80), 15, "c1t1 reaches the server")
    assert not tcp_ok(emu.host("c1t2"), SERVER, 80)
    row = terminal_row(ctl, "c1t1")
    assert row["authenticated"] and row["isr_id"].startswith("isr-") and row["group"] == "cell1"
    assert terminal_row(ctl, "c1t2") is None
    # PEAP-MSCHAPv2: a wrong password is refused, the right one admitted
    peap = lambda pw: wpa.certificate_config("c1t2@crs.example", "PEAP", pki.ca,  # noqa: E731
                                             password=pw)
    t2.start(peap("wrong-password")).wait(wpa.FAILURE)
    assert not tcp_ok(emu.host("c1t2"), SERVER, 80)
    # the right password inside the tunnel, someone else's name outside: the server
    # authenticated c1t2, not the c1t1 the session would be bound to
    # (the terminal's PEAP succeeded inside, so wpa_supplicant disregards the EAP Failure)
    t2.start(wpa.certificate_config("c1t2@crs.example", "PEAP", pki.ca,
                                    password="right-password",
                                    anonymous_identity="c1t1@crs.example"))
    wait_until(lambda: "is for 'c1t2@crs.example', the EAP identity is 'c1t1@crs.example'"
               in ctl.log.read_text(), 40, "the Access-Accept for another name refused")
    assert not tcp_ok(emu.host("c1t2"), SERVER, 80)
    now = terminal_row(ctl, "c1t1")
    assert (now["port"], now["mac"], now["method"]) == (row["port"], row["mac"], "radius_tls")
    t2.start(peap("right-password")).wait(wpa.SUCCESS, 40)
    wait_until(lambda: tcp_ok(emu.host("c1t2"), SERVER, 80), 15, "c1t2 reaches the server")
    c = ctl.status()["counters"]
    assert c["dot1x_success_radius_tls"] == 1 and c["dot1x_success_radius_peap"] == 1
    assert c["radius_reject"] >= 2 and c["dot1x_failure"] >= 3
    assert c.get("radius_reply_forged", 0) == 0
    assert "Access-Reject" in ctl.log.read_text()
    t1.stop()
    t2.stop()


def test_failover_and_fail_closed(controller, network, tmp_path, pki, radius):
    from nethelpers import web_server
    first, second = radius(), radius()
    ctl = radius_controller(controller, tmp_path, [first, second])
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    first.stop()      # dead: the request is resent to it, then goes to the second
    t1, t2 = Terminal(emu, tmp_path, "c1t1"), Terminal(emu, tmp_path, "c1t2")
    t1.start(tls(pki, "c1t1@crs.example", pki.issue("c1t1", "c1t1@crs.example"),
                 tmp_path / "ctrl"))
    t1.wait(wpa.SUCCESS)
    wait_until(lambda: tcp_ok(emu.host("c1t1"), SERVER, 80), 15, "c1t1 reaches the server")
    c = ctl.status()["counters"]
    assert c["radius_retransmit"] >= 1 and c["radius_failover"] >= 1
    assert c["dot1x_success_radius_tls"] == 1
    # every server down: a new admission fails closed, with a log line saying so
    second.stop()
    t2.start(tls(pki, "c1t2@crs.example", pki.issue("c1t2", "c1t2@crs.example")))
    t2.wait(wpa.FAILURE)
    wait_until(lambda: "no RADIUS server answered" in ctl.log.read_text(), 5,
               "the fail-closed log line")
    line = next(ln for ln in ctl.log.read_text().splitlines()
                if "no RADIUS server answered" in ln)
    assert "fail closed" in line and f"127.0.0.1:{second.port}" in line
    assert not tcp_ok(emu.host("c1t2"), SERVER, 80)
    assert terminal_row(ctl, "c1t2") is None
    # the terminal admitted before keeps its access, also when it re-authenticates now
    assert tcp_ok(emu.host("c1t1"), SERVER, 80)
    ctrl = wpa.Ctrl(tmp_path / "ctrl", "c1t1-eth0")
    wait_until(ctrl.ready, 10, "c1t1's wpa_supplicant control interface")
    assert ctrl.request("REAUTHENTICATE").strip() == "OK"
    wait_until(lambda: "re-authentication not possible" in ctl.log.read_text(), 15,
               "the re-authentication that no server answered")
    assert tcp_ok(emu.host("c1t1"), SERVER, 80)
    assert terminal_row(ctl, "c1t1")["authenticated"]
    assert ctl.status()["counters"]["dot1x_reauth_server_down"] == 1
    t1.stop()
    t2.stop()

