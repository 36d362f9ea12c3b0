"""The reference authenticator of the auth benchmark: real hostapd 2.10 (driver=wired,
internal EAP server) and real wpa_supplicant 2.10 (EAP-PSK) on a veth pair in namespaces of
our own, and the timestamp parsing the benchmark relies on."""
import shutil
import subprocess

import pytest

from controller.bench import auth_reference, wpa

pytestmark = pytest.mark.skipif(not (shutil.which("hostapd") and shutil.which("wpa_supplicant")),
                                reason="needs the hostapd and wpasupplicant packages")


def our_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("crs-b-")}


def test_eap_psk_succeeds_against_hostapd():
    before = our_namespaces()
    ex = auth_reference.authenticate_once(auth_reference.IDENTITY, auth_reference.PSK)
    assert len(ex.success_ms) == 1 and not ex.failure_ms
    assert 0 < ex.success_ms[0] < 1000
    assert our_namespaces() == before                 # torn down


def test_wrong_key_fails():
    ex = auth_reference.authenticate_once(auth_reference.IDENTITY, auth_reference.PSK,
                                          server_psk="ff" * 16)
    assert not ex.success_ms and len(ex.failure_ms) == 1


def test_small_benchmark_run_reports_percentiles():
    res = auth_reference.run(n_terminals=2, runs=2)
    assert res["single"]["reauth_ms"]["n"] == 2 and res["single"]["failures"] == 0
    assert res["concurrent"]["reauth_ms"]["n"] == 4 and res["concurrent"]["failures"] == 0
    assert 0 < res["single"]["p50_ms"] <= res["single"]["p99_ms"]


def test_parse_wpa_supplicant_timestamps():
    text = "\n".join([
        "1700000000.000000: Successfully initialized wpa_supplicant",
        "1700000002.000100: t1: CTRL-EVENT-EAP-STARTED EAP authentication started",
        "1700000002.000400: t1: CTRL-EVENT-EAP-METHOD EAP vendor 0 method 47 (PSK) selected",
        "1700000002.001100: t1: CTRL-EVENT-EAP-SUCCESS EAP authentication completed successfully",
        "1700000005.000000: t1: CTRL-EVENT-EAP-STARTED EAP authentication started",
        "1700000006.000000: t1: CTRL-EVENT-EAP-STARTED EAP authentication started",
        "1700000006.002500: t1: CTRL-EVENT-EAP-FAILURE EAP authentication failed",
        "garbage line",
        "1700000007.000000: t1: CTRL-EVENT-EAP-SUCCESS EAP authentication completed successfully"])
    ex = wpa.exchanges(text)
    assert ex.success_ms == pytest.approx([1.0], abs=1e-3)
    assert ex.failure_ms == pytest.approx([2.5], abs=1e-3)
    assert ex.unfinished == 1                         # a STARTED overtaken by another


def test_supplicant_config_refuses_bad_values():
    conf = wpa.supplicant_config("c1t1@crs.example", "00" * 16, ctrl_dir="/run/x")
    assert "eap=PSK" in conf and 'identity="c1t1@crs.example"' in conf and "ap_scan=0" in conf
    with pytest.raises(ValueError):
        wpa.supplicant_config("a", "short")
    with pytest.raises(ValueError):
        wpa.supplicant_config('a"\nnetwork={', "00" * 16)


def test_our_supplicant_interoperates_with_hostapd(tmp_path):
    """crs supplicant (supplicant_main) against hostapd's EAP-PSK server: the same exchange
    wpa_supplicant makes, so our peer is not only tested against our own server."""
    from controller import jsonfile
    from controller.emulation.processes import ROOT
    with wpa.VethNamespaces(1) as net:
        ref = auth_reference.Reference(net, tmp_path, {auth_reference.IDENTITY: auth_reference.PSK})
        try:
            t, _ = net.pairs[0]
            p = subprocess.run(["ip", "netns", "exec", net.ns_t, str(ROOT / ".venv/bin/python"),
                                "-m", "controller.admission.supplicant_main", "--interface", t,
                                "--identity", auth_reference.IDENTITY, "--psk", auth_reference.PSK,
                                "--keys-out", str(tmp_path / "keys.json"), "--once"],
                               capture_output=True, text=True, timeout=60, cwd=ROOT)
        finally:
            ref.close()
    assert p.returncode == 0 and any(x.startswith("EAP-SUCCESS ") for x in p.stdout.splitlines()), \
        p.stdout + p.stderr
    assert jsonfile.read(tmp_path / "keys.json")["isr_id"].startswith("isr-")
