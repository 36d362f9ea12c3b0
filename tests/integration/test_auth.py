"""X.1124 through the controller on Mininet: real wpa_supplicant and our supplicant get in with
the right key, stay out with a wrong one, and nothing reaches a server before success."""
import json
import signal
import subprocess
import time

import pytest
from nethelpers import CREDS, ROOT, ping, tcp_ok, web_server

from controller import jsonfile
from controller.bench import wpa
from controller.emulation.processes import controller_config, wait_until


def auth_config(tmp_path, topo="topologies/minimal.yaml", session_s=3600, **kw):
    return controller_config(tmp_path / "controller.yaml", ROOT / topo, session_s=session_s,
                             **kw)


def start_wpa(emu, tmp_path, host, password=None):
    """Debian's wpa_supplicant -D wired on a terminal (EAP-PSK, the PSK as 32 hex digits)."""
    ident = f"{host}@crs.example"
    conf = wpa.write_supplicant_config(tmp_path / f"wpa-{host}.conf", ident,
                                       password or CREDS.demo_psk(ident).hex())
    log = tmp_path / f"wpa-{host}.log"
    wpa.start_supplicant(f"{host}-eth0", conf, log, popen=lambda argv, out: emu.popen(
        host, argv, stdout=out, stderr=subprocess.STDOUT))
    return log


def start_ours(emu, tmp_path, host):
    keys = tmp_path / f"keys-{host}.json"
    ident = f"{host}@crs.example"
    proc = emu.popen(host, [str(ROOT / ".venv/bin/python"), "-m",
                            "controller.admission.supplicant_main",
                            "--interface", f"{host}-eth0", "--identity", ident,
                            "--psk", CREDS.demo_psk(ident).hex(), "--keys-out", str(keys)],
                     stdout=open(tmp_path / f"sup-{host}.log", "wb"), stderr=subprocess.STDOUT)
    return proc, keys


def text(path):
    return path.read_text() if path.exists() else ""


def terminal(ctl, name):
    return next((t for t in ctl.get("/crs/v1/terminals") if t["name"] == name), None)


@pytest.mark.parametrize("transport", ["port", "local", "packet_in"])
def test_wpa_supplicant_in_with_right_key_out_with_wrong(controller, network, tmp_path,
                                                         transport):
    ctl = controller(*auth_config(tmp_path, extra={"admission": {"eapol_transport":
                                                                 transport}}))
    emu = network("topologies/minimal.yaml", ctl)
    upd = emu.host("update")
    web_server(emu, "update", 80)
    # a capture on the server: nothing from either terminal may arrive before success
    cap = upd.popen(["tcpdump", "-n", "-l", "-i", "update-eth0", "src net 10.0.1.0/24"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert not tcp_ok(emu.host("c1t1"), "10.0.100.20", 80)
    good = start_wpa(emu, tmp_path, "c1t1")
    bad = start_wpa(emu, tmp_path, "c1t2", password="00" * 16)
    wait_until(lambda: "CTRL-EVENT-EAP-SUCCESS" in text(good), 30, "EAP success (right key)")
    wait_until(lambda: "CTRL-EVENT-EAP-FAILURE" in text(bad), 30, "EAP failure (wrong key)")
    assert not tcp_ok(emu.host("c1t2"), "10.0.100.20", 80)
    cap.terminate()
    seen, _ = cap.communicate(timeout=10)
    assert "10.0.1" not in seen, f"server saw unauthenticated traffic:\n{seen}"
    # only now: the authenticated terminal reaches the server's entitled service (http),
    # nothing else of the server (ping), and the other terminal still nothing
    wait_until(lambda: tcp_ok(emu.host("c1t1"), "10.0.100.20", 80), 15, "authenticated http")
    assert not ping(emu.host("c1t1"), "10.0.100.20")
    assert not tcp_ok(emu.host("c1t2"), "10.0.100.20", 80)
    row = terminal(ctl, "c1t1")
    assert row["authenticated"] and row["isr_id"] and row["group"] == "cell1"
    assert terminal(ctl, "c1t2") is None
    counters = ctl.status()["counters"]
    assert counters["dot1x_failure"] >= 1 and counters["dot1x_success"] >= 1
    # every EAPOL frame took the configured way
    assert (counters.get("eapol_local", 0) > 0) == (transport in ("local", "port"))
    assert (counters.get("eapol_port_read", 0) > 0) == (transport == "port")
    assert (counters.get("packet_in_eapol", 0) > 0) == (transport == "packet_in")


def test_logoff_and_port_down_revoke_within_a_second(controller, network, tmp_path):
    ctl = controller(*auth_config(tmp_path))
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    (sup_c1t1, k1), (_, k2) = start_ours(emu, tmp_path, "c1t1"), start_ours(emu, tmp_path, "c1t2")
    wait_until(lambda: k1.exists() and k2.exists(), 30, "both keys files")
    keys = jsonfile.read(k1)
    assert keys["isr_id"] == terminal(ctl, "c1t1")["isr_id"]
    wait_until(lambda: tcp_ok(emu.host("c1t1"), "10.0.100.20", 80), 15, "c1t1 in")
    wait_until(lambda: tcp_ok(emu.host("c1t2"), "10.0.100.20", 80), 15, "c1t2 in")
    # logoff: our supplicant sends EAPOL-Logoff on SIGTERM
    sup_c1t1.send_signal(signal.SIGTERM)
    t0 = time.time()
    wait_until(lambda: not terminal(ctl, "c1t1"), 5, "c1t1 revoked after logoff")
    assert time.time() - t0 < 1.5
    assert not tcp_ok(emu.host("c1t1"), "10.0.100.20", 80)
    # port down
    t0 = time.time()
    emu.net.configLinkStatus("c1t2", "s1", "down")
    wait_until(lambda: not terminal(ctl, "c1t2"), 5, "c1t2 revoked after port down")
    assert time.time() - t0 < 1.5
    emu.net.configLinkStatus("c1t2", "s1", "up")
    assert not tcp_ok(emu.host("c1t2"), "10.0.100.20", 80)


def test_twenty_terminals_at_once(controller, network, tmp_path):
    ctl = controller(*auth_config(tmp_path, "topologies/mobile_core.yaml"))
    emu = network("topologies/mobile_core.yaml", ctl)
    names = [h.name for h in emu.topo.terminals()][:21]
    keys = {n: start_ours(emu, tmp_path, n)[1] for n in names}
    wait_until(lambda: all(k.exists() for k in keys.values()), 60, "21 keys files")
    rows = {t["name"]: t for t in ctl.get("/crs/v1/terminals")}
    assert all(rows[n]["authenticated"] for n in names)
    assert len({rows[n]["isr_id"] for n in names}) == len(names)


SP_WEB_PSK = "388038f6266c50f119bc88aacc67242c"   # demo-only, listed in config/credentials.yaml


def start_sp(emu, ctl, tmp_path) -> str:
    """The demo SP 'web' (service http) on the web host, logged in to the EAC: the Python
    that runs the demo programs."""
    py = str(ROOT / ".venv/bin/python")
    sp_log = tmp_path / "sp.log"
    emu.popen("web", [py, "-m", "controller.admission.sp_demo", "server", "--name", "web",
                      "--service", "http", "--eac", f"http://10.0.100.254:{ctl.rest_port}",
                      "--sp-psk", SP_WEB_PSK, "--port", "80"],
              stdout=open(sp_log, "wb"), stderr=subprocess.STDOUT)
    wait_until(lambda: "SP-LISTENING" in text(sp_log), 30, "SP logged in to the EAC")
    return py


def test_sp_inquiry_gives_the_key_the_terminal_derived(controller, network, tmp_path):
    from controller.admission.credentials import sp_key_from_psk
    assert CREDS.service_providers["web"].key.hex() == sp_key_from_psk(SP_WEB_PSK)
    ctl = controller(*auth_config(tmp_path, "topologies/mobile_core.yaml"))
    emu = network("topologies/mobile_core.yaml", ctl)
    py = start_sp(emu, ctl, tmp_path)
    _, keys = start_ours(emu, tmp_path, "c1t1")
    wait_until(keys.exists, 30, "c1t1 keys")

    def client(keys_file):
        out = emu.host("c1t1").cmd(f"{py} -m controller.admission.sp_demo client --keys "
                                   f"{keys_file} --server http://10.0.100.10:80 --sp web "
                                   f"--service http; echo EXIT=$?")
        return json.loads(out.splitlines()[0]), "EXIT=0" in out
    result, ok = client(keys)
    assert ok and result["ok"] is True
    assert result["isr_id"] == jsonfile.read(keys)["isr_id"]
    # an ISR-ID the EAC never issued: the SP's inquiry is refused and so is the client
    forged = tmp_path / "forged-keys.json"
    real = jsonfile.read(keys)
    forged.write_text(json.dumps({**real, "isr_id": "isr-" + "ab" * 12}))
    result, ok = client(forged)
    assert not ok and result["error"] == "unknown_isr_id", result


def test_a_revoked_session_stops_at_the_sp_within_its_grant_and_the_client_recovers(
        controller, network, tmp_path):
    """X.1124 8.3/8.4 without a push: an SP's key for a terminal lasts `sp_grant_s` (2 s
    here), so a Logoff reaches the SP within that: a neighbour presenting the logged-off
    terminal's keys is refused. A client told its session is gone (404) asks its supplicant
    to authenticate again and gets through with the new keys."""
    import shutil
    cfg = auth_config(tmp_path, "topologies/mobile_core.yaml",
                      extra={"admission": {"sp_grant_s": 2}})
    ctl = controller(*cfg)
    emu = network("topologies/mobile_core.yaml", ctl)
    py = start_sp(emu, ctl, tmp_path)
    sup1, keys1 = start_ours(emu, tmp_path, "c1t1")
    sup2, keys2 = start_ours(emu, tmp_path, "c1t2")
    wait_until(lambda: keys1.exists() and keys2.exists(), 30, "both terminals' keys")

    def client(host, keys_file, *extra):
        out = emu.host(host).cmd(f"{py} -m controller.admission.sp_demo client --keys "
                                 f"{keys_file} --server http://10.0.100.10:80 --sp web "
                                 f"--service http {' '.join(extra)}; echo EXIT=$?")
        return json.loads(out.splitlines()[0]), "EXIT=0" in out
    assert client("c1t1", keys1)[1] and client("c1t2", keys2)[1]     # the SP holds both
    # c1t2 logs off; c1t1 presents c1t2's keys (captured): refused within the grant
    stolen = tmp_path / "stolen.json"
    shutil.copy(keys2, stolen)
    sup2.send_signal(signal.SIGTERM)
    sup2.wait(timeout=10)
    t0 = time.monotonic()
    wait_until(lambda: not client("c1t1", stolen)[1], 10, "the SP refuses the ended session")
    refused_s = time.monotonic() - t0
    result, _ = client("c1t1", stolen)
    assert result["status"] == 404 and result["error"] == "unknown_isr_id", result
    assert refused_s < 2 + 2, refused_s          # the grant, plus one client round
    # c1t1's keys file goes stale (a session the EAC replaced): the client re-authenticates
    old1 = tmp_path / "old1.json"
    shutil.copy(keys1, old1)
    old_isr = jsonfile.read(old1)["isr_id"]
    sup1.send_signal(signal.SIGHUP)               # a new session (a new ISR-ID) ...
    wait_until(lambda: jsonfile.read(keys1)["isr_id"] != old_isr, 15, "c1t1 re-authenticated")
    wait_until(lambda: not client("c1t1", old1)[1], 10, "... the old one refused at the SP")
    shutil.copy(old1, keys1)                      # the client holds the stale keys
    result, ok = client("c1t1", keys1, "--supplicant-pid", str(sup1.pid))
    assert ok and result["reauthenticated"] is True and result["isr_id"] != old_isr, result
    print(f"a Logoff reached the SP in {refused_s:.2f} s (grant 2 s)")


def test_reauthentication_keeps_a_running_iperf_alive(controller, network, tmp_path):
    ctl = controller(*auth_config(tmp_path, session_s=12))
    emu = network("topologies/minimal.yaml", ctl)
    _, keys = start_ours(emu, tmp_path, "c1t1")
    wait_until(keys.exists, 30, "c1t1 keys")
    first = terminal(ctl, "c1t1")["isr_id"]
    upd, c1 = emu.host("update"), emu.host("c1t1")
    # iperf3 on the update server's portal port: a service the terminal is entitled to
    server = emu.popen("update", ["iperf3", "-s", "-1", "-J", "-p", "8080"])
    wait_until(lambda: ":8080" in upd.cmd("ss -ltn 'sport = :8080'"), 10, "iperf3 server")
    out = c1.cmd("iperf3 -c 10.0.100.20 -p 8080 -t 16 -i 1 -b 20M -J")
    server.wait(timeout=30)
    data = json.loads(out)
    per_second = [i["sum"]["bytes"] for i in data["intervals"]]
    assert len(per_second) >= 15 and min(per_second) > 0, per_second
    assert ctl.status()["counters"].get("dot1x_reauth", 0) >= 1
    assert terminal(ctl, "c1t1")["isr_id"] != first


def test_legacy_md5_subscriber_with_wpa_supplicant(controller, network, tmp_path):
    """EAP-MD5 only for a subscriber marked legacy: it gets in (no keys, no mutual auth);
    a non-legacy subscriber offering only MD5 does not."""
    import yaml

    from controller.admission.credentials import encrypt_md5_secret, new_md5_key_file
    key_file = tmp_path / "md5.key"
    new_md5_key_file(key_file)
    creds = yaml.safe_load((ROOT / "config/credentials.yaml").read_text())
    creds["md5_key_file"] = str(key_file)
    creds["subscribers"].append({"identity": "c1t1@crs.example", "group": "cell1",
                                 "method": "md5", "legacy": True,
                                 "md5_token": encrypt_md5_secret(key_file, "old-secret")})
    (tmp_path / "creds.yaml").write_text(yaml.safe_dump(creds))
    (tmp_path / "creds.yaml").chmod(0o600)
    ctl = controller(*auth_config(tmp_path, credentials=tmp_path / "creds.yaml"))
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    logs = {}
    for host, secret in (("c1t1", "old-secret"), ("c1t2", "any")):
        conf = wpa.write_supplicant_config(tmp_path / f"md5-{host}.conf",
                                           f"{host}@crs.example", secret, eap="MD5")
        logs[host] = tmp_path / f"md5-{host}.log"
        wpa.start_supplicant(f"{host}-eth0", conf, logs[host], popen=lambda argv, out, h=host:
                             emu.popen(h, argv, stdout=out, stderr=subprocess.STDOUT))
    wait_until(lambda: "CTRL-EVENT-EAP-SUCCESS" in text(logs["c1t1"]), 30, "legacy MD5 success")
    wait_until(lambda: "CTRL-EVENT-EAP-FAILURE" in text(logs["c1t2"]), 30, "MD5 refused")
    wait_until(lambda: tcp_ok(emu.host("c1t1"), "10.0.100.20", 80), 15, "legacy terminal in")
    assert not tcp_ok(emu.host("c1t2"), "10.0.100.20", 80)
    row = terminal(ctl, "c1t1")
    assert row["method"] == "md5" and not row["isr_id"]     # no keys from EAP-MD5
