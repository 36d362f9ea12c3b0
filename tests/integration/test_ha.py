"""Two controllers on one PostgreSQL store (a private cluster), every switch connected to both:
the leader is SIGKILLed while one terminal is quarantined and another is working; the standby
takes over. Not one packet from the quarantined terminal reaches anyone, the other keeps its
access, a terminal authenticates anew through the new leader, and the old leader, restarted,
stays standby."""
import json
import subprocess
import time

from nethelpers import CREDS, PY, ROOT, ping, tcp_ok, web_server

from controller import topology
from controller.bench.failover import Pair, clean_report, ha_config, ha_service_port, supplicant
from controller.emulation.net import start_network
from controller.emulation.processes import wait_until

UPDATE = "10.0.100.20"
C1T1 = "10.0.1.1"
SERVICE_IP = "10.0.100.254"


def admitted(emu, tmp, host):
    keys = tmp / f"{host}-keys.json"
    proc = supplicant(emu, tmp, host, keys, CREDS)
    wait_until(keys.exists, 30, f"{host} authenticated")
    return proc, keys


def two_controllers_quarantine(tmp_path, dsn):
    """A leads, B stands by, both on the switch; c1t1 and c1t2 admitted and clean, then the
    operator quarantines c1t2 on A. Returns (pair, emulation)."""
    pair = Pair(tmp_path, ha_config(tmp_path, 1.0), dsn)
    pair.ctls["a"].start()
    wait_until(lambda: pair.role("a") == "leader", 10, "A leads")
    pair.ctls["b"].start()
    wait_until(lambda: pair.role("b") == "standby", 10, "B is standby")
    emu = start_network(topology.load(ROOT / "topologies/minimal.yaml"), pair.ctls["a"],
                        more=(pair.ctls["b"],))
    web_server(emu, "update", 80)
    for host in ("c1t1", "c1t2"):      # both report clean: COMPLIANT, they reach peers
        _, keys = admitted(emu, tmp_path, host)
        assert clean_report(keys, host, pair.ctls["a"].rest_port) == 200
    c1, c2 = emu.host("c1t1"), emu.host("c1t2")
    wait_until(lambda: tcp_ok(c1, UPDATE, 80), 15, "c1t1 reaches the update server")
    wait_until(lambda: ping(c2, C1T1), 15, "c1t2 reaches c1t1 before its quarantine")
    row = pair.ctls["a"].request("POST", "/crs/v1/terminals/c1t2/quarantine", {})
    assert row.get("http_status") is None, row
    wait_until(lambda: not ping(c2, C1T1), 10, "c1t2 quarantined")
    return pair, emu


def report_from(host, keys, name: str, service: str) -> int:
    """A clean report sent from inside the terminal's namespace, to the service address."""
    out = host.cmd(f"cd {ROOT} && {PY} -c \"from pathlib import Path; from controller.bench."
                   f"failover import clean_report; print(clean_report(Path('{keys}'), "
                   f"'{name}', 0, base='{service}'))\"")
    return int(out.strip().splitlines()[-1])


def test_the_standby_takes_over_and_no_quarantined_packet_leaks(tmp_path, pg_cluster):
    pair = emu = None
    try:
        pair, emu = two_controllers_quarantine(tmp_path, pg_cluster.new_database())
        a, b = pair.ctls["a"], pair.ctls["b"]
        c1, c2 = emu.host("c1t1"), emu.host("c1t2")
        svc_port = ha_service_port(pair.cfg)
        service = f"http://{SERVICE_IP}:{svc_port}"
        # only the leader listens on the service port; terminals reach it there
        assert a.status()["ha"]["service_port"]["listening"]
        assert not b.status()["ha"]["service_port"]["listening"]
        assert report_from(c1, tmp_path / "c1t1-keys.json", "c1t1", service) == 200
        # B, a standby, shows the store (a copy at most refresh_s old) ...
        wait_until(lambda: b.get("/crs/v1/terminals/c1t2")["decision"]["isolate"], 10,
                   "the standby's copy shows the quarantine")
        # ... and sends an operator's change to the leader (307), which `crs` follows
        moved = b.request("POST", "/crs/v1/terminals/c1t2/release", {})
        assert moved["http_status"] == 307 and moved["leader_url"] == a.status()["ha"]["url"]
        cli = subprocess.run([PY, "-m", "controller.cli", "policy", "reload", "--api",
                              f"http://127.0.0.1:{b.rest_port}", "--token-file",
                              str(tmp_path / "b" / "operator.token")],
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        assert "sent to the leader" in cli.stderr and '"version"' in cli.stdout
        assert b.status()["counters"]["ha_redirected_to_leader"] == 2
        # from now on: c1t1 streams to the update server (iperf3), c1t2 pings c1t1 100
        # times a second and c1t1 captures what of it arrives
        server = emu.popen("update", ["iperf3", "-s", "-1", "-J", "-p", "8080"])
        wait_until(lambda: ":8080" in emu.host("update").cmd("ss -ltn 'sport = :8080'"), 10,
                   "iperf3 server")
        stream = c1.popen(["iperf3", "-c", UPDATE, "-p", "8080", "-t", "8", "-i", "0.5",
                           "-b", "20M", "-J"], stdout=subprocess.PIPE, text=True)
        cap = c1.popen(["tcpdump", "-n", "-l", "-i", "c1t1-eth0", "icmp and src 10.0.1.2"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        pinger = c2.popen(["ping", "-i", "0.01", "-W", "1", C1T1], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        time.sleep(2.0)         # the stream runs, tcpdump listens, the pings are dropped
        gen_a = a.status()["ha"]["generation"]
        a.kill()                # SIGKILL: the leader is gone, its lease runs out
        t0 = time.monotonic()
        wait_until(lambda: pair.role("b") == "leader", 10, "B takes over")
        takeover_s = time.monotonic() - t0
        st = b.status()
        assert st["ha"]["generation"] > gen_a and st["counters"]["ha_takeovers"] == 1
        wait_until(lambda: b.status()["switches"] == [1], 10, "B rebuilt the switch")
        counters = b.status()["counters"]
        assert counters["ha_flows_read"] > 10 and "ha_cold_rebuilds" not in counters
        # the stream never stopped: every half second of it carried data
        out, _ = stream.communicate(timeout=30)
        server.wait(timeout=30)
        per_interval = [i["sum"]["bytes"] for i in json.loads(out)["intervals"]]
        assert len(per_interval) >= 15 and min(per_interval) > 0, per_interval
        rows = {r["name"]: r for r in b.get("/crs/v1/terminals")}
        assert rows["c1t2"]["decision"]["isolate"], rows["c1t2"]      # from the store
        assert not rows["c1t1"]["decision"]["isolate"]
        time.sleep(1.0)         # a second more of pings across the new leader
        pinger.terminate()
        pinger.wait(timeout=5)
        cap.terminate()
        seen, _ = cap.communicate(timeout=10)
        assert "10.0.1.2" not in seen, f"packets from the quarantined terminal:\n{seen}"
        print(f"takeover: leader killed -> standby leading in {takeover_s:.2f} s")
        # the service port moved: a report through the same address reaches B
        wait_until(lambda: b.status()["ha"]["service_port"]["listening"], 10,
                   "B listens on the service port")
        assert report_from(c1, tmp_path / "c1t1-keys.json", "c1t1", service) == 200
        # a new authentication through the new leader (a second supplicant on c1t1)
        sup, _ = admitted(emu, tmp_path, "c1t1")
        assert sup.poll() is None
        wait_until(lambda: tcp_ok(c1, UPDATE, 80), 15, "c1t1 back after authenticating anew")
        # the old leader, restarted, stays standby
        pair.restart("a")
        wait_until(lambda: pair.role("a") == "standby", 10, "the old leader is standby")
        assert pair.role("b") == "leader"
        assert not pair.ctls["a"].status()["ha"]["service_port"]["listening"]
        assert takeover_s < 5, takeover_s
    finally:
        if emu is not None:
            emu.stop()
        if pair is not None:
            pair.stop()


def test_without_the_store_nobody_leads_flows_hold_and_it_recovers(tmp_path):
    """PostgreSQL stops: within the lease nobody leads (no split brain, no admissions), the
    switches keep what they hold (the quarantine, the other terminal's access); when it is
    back, one controller leads again and authentication works."""
    from controller.emulation.pgcluster import Cluster
    pg = Cluster().start()
    pair = emu = None
    try:
        pair, emu = two_controllers_quarantine(tmp_path, pg.new_database())
        c1, c2 = emu.host("c1t1"), emu.host("c1t2")
        gen = pair.ctls["a"].status()["ha"]["generation"]
        pg.halt()
        wait_until(lambda: pair.role("a") == "standby" and pair.role("b") == "standby", 10,
                   "nobody leads without the store")
        # (ARP requests are handed to their owner through the leader: without one, only
        # neighbours already resolved answer, so c1t1 talked to the server before the cut)
        assert tcp_ok(c1, UPDATE, 80) and not ping(c2, C1T1)    # the switch holds
        # nobody admits anyone: an authentication attempt gets no answer
        keys = tmp_path / "c1t2-again.json"
        proc = supplicant(emu, tmp_path, "c1t2", keys, CREDS)
        time.sleep(3)           # an absence: nothing may answer in this window
        assert not keys.exists()
        proc.terminate()
        pg.resume()
        wait_until(lambda: pair.leader() is not None, 20, "a leader again")
        leader = pair.ctls[pair.leader()]
        assert leader.status()["ha"]["generation"] > gen
        wait_until(lambda: len(leader.status()["switches"]) == 1, 10, "switch rebuilt")
        assert not ping(c2, C1T1)                                # still quarantined
        wait_until(lambda: tcp_ok(c1, UPDATE, 80), 15, "c1t1 keeps its access")
        admitted(emu, tmp_path, "c1t1")                          # admissions work again
    finally:
        if emu is not None:
            emu.stop()
        if pair is not None:
            pair.stop()
        pg.stop()


def test_smoke_failover_benchmark_writes_its_json(tmp_path):
    """SMOKE (CI): one takeover and a short report load on each store."""
    from controller import jsonfile
    from controller.bench import failover
    failover.run(str(tmp_path), trials=1, report_terminals=100, report_duration_s=1.0,
                 keep_dir=str(tmp_path / "work"))
    doc = jsonfile.read(tmp_path / "failover.json")
    assert doc["benchmark"] == "failover" and doc["machine"]["cores"] and doc["commit"]
    for k in ("takeover_ms", "takeover_role_ms", "takeover_auth_ms"):
        assert doc[k]["n"] == 1 and 0 < doc[k]["p50"] < 30_000, (k, doc[k])
    assert doc["leaked_packets"] == 0 and doc["admitted_lost"] == 0
    assert doc["reports"]["sqlite"]["accepted_per_s"] > 0
    assert doc["reports"]["postgresql"]["accepted_per_s"] > 0
    assert doc["postgres_over_sqlite_reports"] > 0
