"""Two controllers on one PostgreSQL store (a private cluster), every switch connected to both:
the leader is SIGKILLed while one terminal is quarantined and another is working; the standby
takes over. Not one packet from the quarantined terminal reaches anyone, the other keeps its
access, a terminal authenticates anew through the new leader, and the old leader, restarted,
stays standby."""
import json
import os
import signal
import struct
import subprocess
import time

import pytest
from nethelpers import CREDS, PY, ROOT, ping, tcp_ok, web_server

from controller import topology
from controller.bench.failover import Pair, clean_report, ha_config, ha_service_port, supplicant
from controller.emulation.net import start_network
from controller.emulation.processes import free_port, wait_until

UPDATE = "10.0.100.20"
C1T1 = "10.0.1.1"
SERVICE_IP = "10.0.100.254"


def admitted(emu, tmp, host):
    keys = tmp / f"{host}-keys.json"
    proc = supplicant(emu, tmp, host, keys, CREDS)
    wait_until(keys.exists, 30, f"{host} authenticated")
    return proc, keys


def two_controllers_quarantine(tmp_path, dsn, via=None):
    """A leads, B stands by, both on the switch; c1t1 and c1t2 admitted and clean, then the
    operator quarantines c1t2 on A. Returns (pair, emulation)."""
    pair = Pair(tmp_path, ha_config(tmp_path, 1.0), dsn, via)
    emu = None
    try:
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
    except Exception as exc:
        # e.g. A lost its lease during the set-up: say why (its own log), end what started
        log = pair.ctls["a"].log
        lines = [ln for ln in (log.read_text() if log.exists() else "").splitlines()
                 if "crs.ha" in ln]
        roles = f"roles a={pair.role('a')} b={pair.role('b')}"
        if emu is not None:
            emu.stop()
        pair.stop()
        raise AssertionError(f"set-up failed: {exc}; {roles}; A's leadership log:\n" +
                             "\n".join(lines[-8:])) from exc
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
    from corekit import PG_ROOT

    from controller.emulation.pgcluster import Cluster
    pg = Cluster(PG_ROOT).start()         # on tmpfs, as the session's
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


def test_a_deposed_leader_with_an_old_generation_is_refused_by_the_switch(tmp_path,
                                                                           pg_cluster):
    """Fencing at the switch: A led, B took over (the switch has seen B's generation). Then
    the store hands the lease back to A under A's old generation (what a confused store
    could do): A asks the switch for MASTER with it, Open vSwitch refuses it as stale, and
    A steps down and gives the lease up; a leader with a valid generation follows."""
    import psycopg
    dsn = pg_cluster.new_database()
    pair, emu = two_controllers_quarantine(tmp_path, dsn)
    try:
        gen_a = pair.ctls["a"].status()["ha"]["generation"]
        pair.ctls["a"].kill()
        wait_until(lambda: pair.role("b") == "leader", 10, "B leads")
        pair.restart("a")
        wait_until(lambda: pair.role("a") == "standby", 10, "A, restarted, stands by")
        a, b = pair.ctls["a"], pair.ctls["b"]
        gen_b = b.status()["ha"]["generation"]
        assert gen_b > gen_a
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("UPDATE leader SET holder = %s, generation = %s, "
                      "expires = EXTRACT(EPOCH FROM clock_timestamp()) + 60 "
                      "WHERE name = 'network'", (a.status()["ha"]["holder"], gen_a))
        wait_until(lambda: a.status()["counters"].get("ha_role_refused", 0) >= 1, 15,
                   "the switch refused A's stale generation")
        wait_until(lambda: pair.leader() is not None and pair.role("a") != "leader"
                   or pair.leader() == "a" and a.status()["ha"]["generation"] >= gen_b, 20,
                   "a leader with a generation the switch accepts")
        roles = subprocess.run(["ovs-vsctl", "--columns=target,role", "find", "controller"],
                               capture_output=True, text=True, check=True).stdout
        wait_until(lambda: subprocess.run(
            ["ovs-vsctl", "--columns=role", "find", "controller"], capture_output=True,
            text=True).stdout.count("master") == 1, 15, f"one master at the switch: {roles}")
        assert not ping(emu.host("c1t2"), C1T1)       # the quarantine held throughout
    finally:
        emu.stop()
        pair.stop()


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


OFPT_PACKET_OUT, OFPT_FLOW_MOD, OFPT_ROLE_REQUEST, OFPT_METER_MOD = 13, 14, 24, 29
ROLE_MASTER = 2


def openflow_sent(pcap: str, ports: dict[int, str]) -> list[tuple[float, str, int, bytes]]:
    """(time, controller, message type, message) for every OpenFlow message a controller
    (by its listening port) sent a switch in a loopback capture, streams reassembled."""
    from scapy.all import TCP, rdpcap
    streams: dict[tuple[int, int], bytes] = {}
    out = []
    for pkt in rdpcap(pcap):
        if TCP not in pkt or pkt[TCP].sport not in ports or not bytes(pkt[TCP].payload):
            continue
        key = (pkt[TCP].sport, pkt[TCP].dport)
        buf = streams.get(key, b"") + bytes(pkt[TCP].payload)
        while len(buf) >= 8:
            length = struct.unpack("!H", buf[2:4])[0]
            if length < 8 or len(buf) < length:
                break
            out.append((float(pkt.time), ports[key[0]], buf[1], buf[:length]))
            buf = buf[length:]
        streams[key] = buf
    return out


@pytest.mark.parametrize("cut", ["store", "pause"])
def test_a_leader_cut_off_steps_down_without_split_brain(tmp_path, pg_cluster, cut):
    """A reaches PostgreSQL through a TCP relay, B directly. `store`: the relay is frozen
    (SIGSTOP: A's packets go unanswered, nothing resets); `pause`: A itself is frozen for
    three leases (a stalled host, a long GC pause) and wakes up believing it leads. Either
    way A stops acting on its own clock within the lease, B takes over under a higher
    generation, and what the switch received shows it: after A's lease ran out A sent
    nothing that changes the network, it declared itself slave, and no MASTER request from
    A carries a newer generation than its own. After the cut A stays standby."""
    relay_port = free_port()
    dsn = pg_cluster.new_database()
    relay = subprocess.Popen(["socat", f"TCP-LISTEN:{relay_port},bind=127.0.0.1,reuseaddr,"
                              f"fork", f"UNIX-CONNECT:{pg_cluster.socket_path}"],
                             start_new_session=True)
    pair = emu = cap = None
    try:
        via = dsn.replace("postgresql:///", f"postgresql://postgres@127.0.0.1:{relay_port}/"
                          ).split("?")[0]
        pair, emu = two_controllers_quarantine(tmp_path, dsn, via={"a": via})
        a, b = pair.ctls["a"], pair.ctls["b"]
        ports = {a.ofp_port: "a", b.ofp_port: "b"}
        pcap = str(tmp_path / "openflow.pcap")
        cap = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-w", pcap, f"tcp port "
                                f"{a.ofp_port} or tcp port {b.ofp_port}"],
                               stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(pcap) and os.path.getsize(pcap) > 0, 10,
                   "the capture runs")
        # packet-ins all along: c1t1 asks for the server's address every 20 ms (the
        # leader answers by packet-out, proxy ARP)
        probe = emu.popen("c1t1", [PY, "-m", "controller.bench.failover", "arp-probe",
                                   "c1t1-eth0", "02:00:0a:00:01:01", C1T1, UPDATE, "0.02",
                                   str(tmp_path / "arp.txt")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        gen_a = a.status()["ha"]["generation"]
        time.sleep(0.5)
        frozen = (relay.pid, os.killpg) if cut == "store" else (a.proc.pid, os.kill)
        frozen[1](frozen[0], signal.SIGSTOP)        # the cut
        t_cut = time.time()
        if cut == "store":
            wait_until(lambda: pair.role("a") == "standby", 5, "A steps down")
        wait_until(lambda: pair.role("b") == "leader", 10, "B takes over")
        assert b.status()["ha"]["generation"] > gen_a
        if cut == "store":      # (a frozen process keeps its sockets: the port moves when
            wait_until(lambda: b.status()["ha"]["service_port"]["listening"], 10,  # it runs
                       "the service port moved to B")
        time.sleep(max(0.0, t_cut + 3.0 - time.time()))   # B serves the probe a while
        frozen[1](frozen[0], signal.SIGCONT)        # the cut heals
        t_back = time.time()
        wait_until(lambda: b.status()["ha"]["service_port"]["listening"], 10,
                   "the service port is B's")
        time.sleep(3 * 1.0)                         # three lease periods: A asks again
        assert pair.role("a") == "standby" and pair.role("b") == "leader"
        assert not a.status()["ha"]["service_port"]["listening"]
        gen_b = b.status()["ha"]["generation"]
        probe.kill()
        cap.terminate()
        cap.wait(timeout=10)
        sent = openflow_sent(pcap, ports)
        roles_sent = [(t, who, struct.unpack("!I", m[8:12])[0], struct.unpack("!Q", m[16:24])[0])
                      for t, who, kind, m in sent if kind == OFPT_ROLE_REQUEST]
        masters = [(t, who, g) for t, who, role, g in roles_sent if role == ROLE_MASTER]
        # A asked for nothing above its own generation; after the cut it told the switch
        # it is a slave; B claimed the switch under the new generation
        assert all(g <= gen_a for _, who, g in masters if who == "a"), masters
        slave_at = [t for t, who, role, _ in roles_sent
                    if who == "a" and role != ROLE_MASTER and t > t_cut]
        assert slave_at, roles_sent
        # (its last renewal asked before the cut: its lease ran out by t_cut + 1 s, and a
        # store call it was blocked in was cut one lease after it began; paused, it says
        # so as soon as it runs again)
        assert min(slave_at) - (t_cut if cut == "store" else t_back) < 2.0, slave_at
        assert any(who == "b" and g == gen_b for _, who, g in masters), masters
        t_b = min(t for t, who, g in masters if who == "b" and g == gen_b)
        # A's lease began before the cut: it ran out at the latest one lease after it
        late = [(t - t_cut, kind) for t, who, kind, _ in sent if who == "a" and t > t_cut + 1.0
                and kind in (OFPT_PACKET_OUT, OFPT_FLOW_MOD, OFPT_METER_MOD)]
        assert not late, f"A changed the network after its lease ran out: {late[:5]}"
        b_outs = [t for t, who, kind, _ in sent if who == "b" and kind == OFPT_PACKET_OUT]
        assert b_outs and max(b_outs) > t_b, "B answered the probe after taking over"
        roles = subprocess.run(["ovs-vsctl", "--columns=target,role", "find", "controller"],
                               capture_output=True, text=True, check=True).stdout
        assert f"127.0.0.1:{b.ofp_port}\"\nrole                : master" in roles, roles
        assert f"127.0.0.1:{a.ofp_port}\"\nrole                : slave" in roles, roles
        print(f"{cut}: A declared itself slave {min(slave_at) - t_cut:.2f} s after the cut "
              f"(lease 1 s); B claimed the switch {t_b - t_cut:.2f} s after it")
    finally:
        if cap is not None and cap.poll() is None:
            cap.terminate()
        if emu is not None:
            emu.stop()
        if pair is not None:
            pair.stop()
        os.killpg(relay.pid, signal.SIGCONT)
        os.killpg(relay.pid, signal.SIGKILL)
        relay.wait(timeout=10)
