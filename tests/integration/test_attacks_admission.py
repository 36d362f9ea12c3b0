"""Issue 8, items 10, 11 and 14, attacked for real: a Mininet terminal against a real controller
(ryu-manager), and the controller's own start-up against unsafe credentials files."""
import json
import stat
import subprocess
import sys
import time

import pytest
from nethelpers import CREDS, PY, ROOT, ping, tcp_ok, web_server

from controller.admission.eapol import EapCode, EapType, MalformedFrame, parse_frame
from controller.emulation.processes import controller_config, wait_until

SP_UPDATE_PSK = "65535d86f1468bf7728722f3a955f8ce"  # demo-only, listed in config/credentials.yaml
UPDATE = "10.0.100.20"


def auth_config(tmp_path, credentials=None, demo=True):
    _, cfg = controller_config(tmp_path / "controller.yaml", ROOT / "topologies/minimal.yaml",
                               credentials=credentials, demo=demo)
    return cfg


def text(path):
    return path.read_text() if path.exists() else ""


def terminal(ctl, name):
    return next((t for t in ctl.get("/crs/v1/terminals") if t["name"] == name), None)


def supplicant(emu, tmp_path, host, identity, psk_hex, *extra):
    keys = tmp_path / f"keys-{host}.json"
    log = tmp_path / f"sup-{host}.log"
    proc = emu.popen(host, [PY, "-m", "controller.admission.supplicant_main", "--interface",
                            f"{host}-eth0", "--identity", identity, "--psk", psk_hex,
                            "--keys-out", str(keys), *extra],
                     stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    return proc, keys, log


def eapol_capture(emu, tmp_path, host):
    """tcpdump of every EAPOL frame on the host's interface (pcap, flushed per packet)."""
    pcap, err = tmp_path / f"{host}-eapol.pcap", tmp_path / f"{host}-tcpdump.log"
    proc = emu.popen(host, ["tcpdump", "--immediate-mode", "-U", "-Z", "root", "-n", "-i",
                            f"{host}-eth0", "-w", str(pcap), "ether proto 0x888e"],
                     stdout=subprocess.DEVNULL,
                     stderr=open(err, "wb"))
    wait_until(lambda: "listening on" in text(err), 10, f"tcpdump on {host}")
    return proc, pcap


def eap_frames(pcap):
    """Every parseable EAPOL frame of a pcap file (classic format, Ethernet)."""
    data, out, off = pcap.read_bytes(), [], 24
    while off + 16 <= len(data):
        n = int.from_bytes(data[off + 8:off + 12], "little")
        try:
            out.append(parse_frame(data[off + 16:off + 16 + n]))
        except MalformedFrame:
            pass
        off += 16 + n
    return out


def test_psk_identity_swap_is_refused_at_psk2_and_gets_nothing(controller, network, tmp_path):
    """Item 10: c1t2 answers Identity as itself, then runs EAP-PSK as c1t1 (ID_P and key of
    c1t1, a valid pair). Refused at PSK-2: EAP-Failure, no PSK-3, no binding, no traffic."""
    ctl = controller("--config", str(auth_config(tmp_path)))
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    cap, pcap = eapol_capture(emu, tmp_path, "c1t2")
    victim = "c1t1@crs.example"
    proc, keys, log = supplicant(emu, tmp_path, "c1t2", "c1t2@crs.example",
                                 CREDS.demo_psk(victim).hex(), "--psk-id-p", victim, "--once")
    assert proc.wait(timeout=30) == 1, text(log)
    assert "EAP-FAILURE" in text(log) and not keys.exists()
    time.sleep(0.5)
    cap.terminate()
    cap.wait(timeout=10)
    from_ctl = [f for f in eap_frames(pcap) if f.eap is not None and f.eap.code in
                (EapCode.REQUEST, EapCode.SUCCESS, EapCode.FAILURE)]
    psk = [f.eap.data[0] >> 6 for f in from_ctl
           if f.eap.code == EapCode.REQUEST and f.eap.type == EapType.PSK]
    assert psk and 2 not in psk, f"PSK messages from the controller (T flags): {psk}"
    assert any(f.eap.code == EapCode.FAILURE for f in from_ctl)
    assert not any(f.eap.code == EapCode.SUCCESS for f in from_ctl)
    counters = ctl.status()["counters"]
    assert counters.get("dot1x_psk_id_mismatch", 0) >= 1 and counters.get("dot1x_success", 0) == 0
    assert terminal(ctl, "c1t2") is None and terminal(ctl, "c1t1") is None
    attacker = emu.host("c1t2")
    assert not tcp_ok(attacker, UPDATE, 80) and not ping(attacker, UPDATE)
    # the controller's audit log (it names subscribers) is private
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o600
    # control: the same port with its own identity and key gets in (after the hold-off)
    proc, keys, log = supplicant(emu, tmp_path, "c1t2", "c1t2@crs.example",
                                 CREDS.demo_psk("c1t2@crs.example").hex())
    wait_until(keys.exists, 30, "c1t2 authenticated honestly")
    wait_until(lambda: tcp_ok(attacker, UPDATE, 80), 15, "c1t2 reaches the update server")
    assert terminal(ctl, "c1t2")["identity"] == "c1t2@crs.example"


def test_controller_refuses_readable_or_public_demo_credentials(tmp_path):
    """Item 11: a credentials file others may read, or the shipped (public) demo secrets
    without `demo: true`, stop `crs controller` before Ryu starts: exit 2, clear reason."""
    def start(cfg):
        return subprocess.run([sys.executable, "-m", "controller.cli", "controller", "--config",
                               str(cfg), "--db", str(tmp_path / "crs.db"), "--ofp-port", "0",
                               "--rest-port", "0"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30)       # a controller that starts fails the test here
    r = start(auth_config(tmp_path, demo=False))
    assert r.returncode == 2, r
    assert "holds shipped demo secrets" in r.stderr and "`demo: true`" in r.stderr
    copy = tmp_path / "credentials.yaml"
    copy.write_text((ROOT / "config/credentials.yaml").read_text())
    copy.chmod(0o644)
    r = start(auth_config(tmp_path, credentials=copy))
    assert r.returncode == 2, r
    assert (f"{copy}: mode 0644 lets group/others read the subscribers' keys; chmod 600 it"
            in r.stderr)
    r = subprocess.run([sys.executable, "-m", "controller.cli", "check", str(copy)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "mode 0644" in r.stdout
    assert stat.S_IMODE((ROOT / "config/credentials.yaml").stat().st_mode) == 0o600


FLOOD = r"""
import http.client, json, sys, time
host, port, sp, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
body = json.dumps({"sp": sp})
ok = other = 0
end = time.time() + seconds
conn = http.client.HTTPConnection(host, port, timeout=5)
while time.time() < end:
    try:
        conn.request("POST", "/eac/v1/sp/challenge", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        ok, other = (ok + 1, other) if r.status == 200 else (ok, other + 1)
    except (OSError, http.client.HTTPException):
        other += 1
        conn.close()
        conn = http.client.HTTPConnection(host, port, timeout=5)
    if (ok + other) % 500 == 0:
        print(f"FLOOD {ok} {other}", flush=True)
print(f"FLOOD-DONE {ok} {other}", flush=True)
"""


def test_sp_challenge_flood_keeps_state_bounded_and_real_sp_logs_in(controller, network,
                                                                    tmp_path):
    """Item 14: an authenticated terminal asks for thousands of SP challenges (for the very SP
    that then logs in): the EAC's challenge state stays bounded, and the real SP's login and
    an SS-SP exchange through the EAC still succeed while the flood runs."""
    ctl = controller("--config", str(auth_config(tmp_path)))
    emu = network("topologies/minimal.yaml", ctl)
    _, keys, _ = supplicant(emu, tmp_path, "c1t1", "c1t1@crs.example",
                            CREDS.demo_psk("c1t1@crs.example").hex())
    wait_until(keys.exists, 30, "c1t1 authenticated")
    flood_py = tmp_path / "flood.py"
    flood_py.write_text(FLOOD)
    flood_log = tmp_path / "flood.log"
    flood = emu.popen("c1t1", ["python3", str(flood_py), "10.0.100.254", str(ctl.rest_port),
                               "update", "40"], stdout=open(flood_log, "wb"),
                      stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ctl.status()["counters"].get("eac_sp_challenge_issued", 0) >= 1000,
                   30, f"1000 challenges issued to the terminal ({text(flood_log)[-200:]})")
        sp_log = tmp_path / "sp.log"
        emu.popen("update", [PY, "-m", "controller.admission.sp_demo", "server", "--name",
                             "update", "--service", "http", "--eac",
                             f"http://10.0.100.254:{ctl.rest_port}", "--sp-psk", SP_UPDATE_PSK,
                             "--port", "80"], stdout=open(sp_log, "wb"), stderr=subprocess.STDOUT)
        wait_until(lambda: "SP-LISTENING" in text(sp_log), 30, "SP server up")
        assert "logged in to the EAC as iac-" in text(sp_log), text(sp_log)
        out = emu.host("c1t1").cmd(f"{PY} -m controller.admission.sp_demo client --keys {keys} "
                                   f"--server http://{UPDATE}:80 --sp update --service http; "
                                   "echo EXIT=$?")
        assert "EXIT=0" in out and json.loads(out.splitlines()[0])["ok"] is True, out
        assert flood.poll() is None, "the flood ended before the SP logged in"
        wait_until(lambda: ctl.status()["counters"].get("eac_sp_challenge_issued", 0) >= 3000,
                   60, f"3000 challenges issued ({text(flood_log)[-200:]})")
    finally:
        flood.terminate()
        flood.wait(timeout=10)
    st = ctl.status()
    assert st["counters"]["eac_sp_challenge_issued"] >= 3000
    assert st["counters"].get("eac_sp_login", 0) >= 1
    # every challenge handed to the terminal cost nothing; only the SP's spent one is kept
    assert st["eac_spent_challenges"] <= 2, st


ATTACKER = str(ROOT / "tests/integration/attacker.py")
C1T1_MAC = "02:00:0a:00:01:01"
PAE = "01:80:c2:00:00:03"
EAP_SUCCESS = "03010004"          # EAP Success, identifier 1


def attack(host, *args: str) -> str:
    out = host.cmd(" ".join([PY, ATTACKER, f"{host.name}-eth0", *args]))
    assert "sent" in out, out
    return out


@pytest.mark.parametrize("transport", ["local", "port"])
def test_through_the_local_port_a_terminal_speaks_only_for_its_own_port(controller, network,
                                                                        tmp_path, transport):
    """EAPOL through the switches' LOCAL ports (admission.eapol_transport: local), or read on
    each edge port's own interface (port): c1t2 forges c1t1's Logoff, addresses frames to
    c1t1's port MAC, and poses as the controller's answer to c1t1. The switch (local) or
    the interface it came in on (port) names c1t2's port on all of them: c1t1 stays in,
    and c1t1's interface sees nothing of it."""
    _, cfg = controller_config(tmp_path / "controller.yaml", ROOT / "topologies/minimal.yaml",
                               extra={"admission": {"eapol_transport": transport}})
    ctl = controller("--config", str(cfg))
    emu = network("topologies/minimal.yaml", ctl)
    web_server(emu, "update", 80)
    proc, keys, log = supplicant(emu, tmp_path, "c1t1", "c1t1@crs.example",
                                 CREDS.demo_psk("c1t1@crs.example").hex())
    wait_until(keys.exists, 30, "c1t1 authenticated")
    victim = emu.host("c1t1")
    wait_until(lambda: tcp_ok(victim, UPDATE, 80), 15, "c1t1 reaches the update server")
    counters = ctl.status()["counters"]
    assert counters.get("eapol_local", 0) >= 3 and counters.get("packet_in_eapol", 0) == 0
    # local: nothing read on the ports; port: all of it
    assert counters.get("eapol_port_read", 0) == (0 if transport == "local" else
                                                  counters["eapol_local"])
    cap, pcap = eapol_capture(emu, tmp_path, "c1t1")
    before = len(eap_frames(pcap))
    attacker = emu.host("c1t2")
    port2 = "0e:00:00:00:00:02"     # c1t1's port MAC (controller.admission.local_port)
    attack(attacker, "eapol", "--eapol-type", "2", "--src-mac", C1T1_MAC, "--dst-mac", PAE,
           "--count", "5", "--interval", "0.1")
    attack(attacker, "eapol", "--eapol-type", "2", "--src-mac", C1T1_MAC, "--dst-mac", port2,
           "--count", "5", "--interval", "0.1")
    attack(attacker, "eapol", "--eapol-type", "0", "--src-mac", port2, "--dst-mac", C1T1_MAC,
           "--body", EAP_SUCCESS, "--count", "5", "--interval", "0.1")
    refused = "dot1x_wrong_destination" if transport == "local" else "eapol_port_refused"
    wait_until(lambda: ctl.status()["counters"].get(refused, 0) >= 10, 10,
               "the frames to port MACs refused (as packet-ins, or read on c1t2's port)")
    if transport == "port":     # the forged Logoffs were read, as c1t2's
        assert ctl.status()["counters"]["eapol_port_read"] >= counters["eapol_port_read"] + 5
    assert terminal(ctl, "c1t1") is not None
    assert tcp_ok(victim, UPDATE, 80)
    time.sleep(0.5)         # what the attack could have sent c1t1 has arrived by now
    cap.terminate()
    cap.wait(timeout=10)
    assert len(eap_frames(pcap)) == before, "c1t1 received EAPOL frames during the attack"
    proc.terminate()
