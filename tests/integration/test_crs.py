"""X.1125 on Mininet: reports isolate, rate-limit and restrict; correlation; release after an
update; containment survives SIGKILL of the controller; forged and replayed reports change
nothing. Terminals authenticate with our supplicant and run the real agent."""
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import yaml
from nethelpers import CLEAN, CREDS, INFECTED, PY, framework_args, ping, tcp_ok

from controller import jsonfile
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.emulation.processes import ControllerProcess, wait_until


def test_infected_report_isolates_and_a_clean_report_after_the_update_releases(crs):
    net = crs()
    p1 = net.terminal("c1t1")
    net.terminal("c2t1")
    net.wait_level("c1t1", "COMPLIANT")
    net.wait_level("c2t1", "COMPLIANT")
    wait_until(lambda: ping(net.h("c1t1"), "10.0.2.1"), 15, "c1t1 reaches c2t1")
    net.set_posture(p1, threats=INFECTED)
    # the agent reports at once; the SCS isolates and sends the "clean" update with its reply;
    # the agent fetches it from the update server (reachable while isolated), reports clean
    wait_until(lambda: "GET /updates/clean" in net.update_log.read_text(), 30,
               "the isolated terminal fetched its update")
    audit = jsonfile.read_lines(net.tmp / "audit.jsonl")
    levels = [a["level"] for a in audit if a.get("event") == "decision"
              and a.get("terminal") == "c1t1@crs.example"]
    assert "INFECTED" in levels and levels[levels.index("INFECTED")] == "INFECTED"
    net.wait_level("c1t1", "COMPLIANT")
    assert jsonfile.read(p1)["threats"][0]["cleaned"] is True
    wait_until(lambda: ping(net.h("c1t1"), "10.0.2.1"), 15, "released terminal reaches c2t1")


def test_isolation_seen_in_reachability_while_update_server_stays_reachable(crs):
    # no update item on INFECTED: the terminal stays isolated
    def edit(p):
        p["control"]["levels"]["INFECTED"] = {"actions": ["isolate"]}
    net = crs(policy_edit=edit)
    p1 = net.terminal("c1t1")
    net.terminal("c1t2")
    net.wait_level("c1t2", "COMPLIANT")
    wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "c1t1 reaches c1t2")
    net.set_posture(p1, threats=INFECTED)
    net.wait_level("c1t1", "INFECTED")
    wait_until(lambda: not ping(net.h("c1t1"), "10.0.1.2", timeout=1), 5, "isolation")
    assert not ping(net.h("c1t2"), "10.0.1.1", timeout=1)
    # the switch confirmed the decision's flows (X.1125 11.4 ControlAck, an OpenFlow barrier)
    row = net.row("c1t1")
    assert row["control"]["confirmed"] and \
        row["control"]["policy_version_acknowledged"] == row["decision"]["policy_version"]
    counters = net.ctl.status()["counters"]
    assert counters["crs_control_acked"] >= 3 and "crs_control_unacknowledged" not in counters
    assert tcp_ok(net.h("c1t1"), "10.0.100.20", 80)
    # a new MAC or IP on the quarantined port does not get out either
    h = net.h("c1t1")
    h.cmd("ip addr add 10.0.1.77/16 dev c1t1-eth0")
    assert "0 received" in h.cmd("ping -c2 -W1 -I 10.0.1.77 10.0.1.2")
    h.cmd("ip link set c1t1-eth0 address 02:00:00:00:77:77")
    assert not ping(h, "10.0.1.2", timeout=1)


def test_vulnerable_terminal_rate_limited_mail_blocked_own_group_only(crs):
    net = crs()
    p1 = net.terminal("c1t1")
    net.terminal("c1t2")
    net.terminal("c2t1")
    net.listen("mail", 25)
    for h in ("c1t1", "c1t2", "c2t1"):
        net.wait_level(h, "COMPLIANT")
    assert tcp_ok(net.h("c1t1"), "10.0.100.11", 25)
    net.set_posture(p1, firewall=False)       # VULNERABLE: restrict mail, 2000 kbps, own cell
    net.wait_level("c1t1", "VULNERABLE")
    wait_until(lambda: not tcp_ok(net.h("c1t1"), "10.0.100.11", 25, timeout=1), 5,
               "mail blocked for the vulnerable terminal")
    assert tcp_ok(net.h("c1t2"), "10.0.100.11", 25)          # others keep mail
    assert tcp_ok(net.h("c1t1"), "10.0.100.20", 80)          # the update server stays
    assert ping(net.h("c1t1"), "10.0.1.2")                   # own group
    assert not ping(net.h("c1t1"), "10.0.2.1", timeout=1)    # other cell
    # the meter: UDP offered at 10 Mbit/s arrives at about the configured 2000 kbps
    srv = net.emu.popen("c1t2", ["iperf3", "-s", "-1", "-J"])
    wait_until(lambda: ":5201" in net.h("c1t2").cmd("ss -ltn 'sport = :5201'"), 10, "iperf3")
    out = json.loads(net.h("c1t1").cmd("iperf3 -c 10.0.1.2 -u -b 10M -t 5 -J"))
    srv.wait(timeout=20)
    received_kbps = out["end"]["sum"]["bits_per_second"] * (
        1 - out["end"]["sum"]["lost_percent"] / 100) / 1000
    assert 1800 <= received_kbps <= 2200, received_kbps


def test_a_packets_per_second_meter_holds_an_infected_terminals_probe_rate(crs):
    """rate_limit_pps on real Open vSwitch (OF1.3 PKTPS band): 40 small probes offered at
    20/s for 2 s by an infected terminal; about 5/s arrive (plus the burst), whatever their
    size, while a kbit/s meter that lets a terminal work would pass them all."""
    def edit(policy):
        policy["control"]["levels"]["INFECTED"] = {"actions": ["rate_limit"],
                                                   "rate_limit_pps": 5, "scope": "all"}
    net = crs(policy_edit=edit)
    p1 = net.terminal("c1t1")
    net.terminal("c1t2")
    for h in ("c1t1", "c1t2"):
        net.wait_level(h, "COMPLIANT")
    out = net.h("c1t1").cmd("ping -c 40 -i 0.05 -W 1 -q 10.0.1.2")
    assert " 40 received" in out, out              # unmetered: every probe arrives
    net.set_posture(p1, threats=INFECTED)
    net.wait_level("c1t1", "INFECTED")
    wait_until(lambda: (net.row("c1t1") or {}).get("control", {}).get("confirmed"), 10,
               "the meter confirmed by the switch")
    out = net.h("c1t1").cmd("ping -c 40 -i 0.05 -W 1 -q 10.0.1.2")
    got = int(re.search(r"(\d+) received", out).group(1))
    assert 5 <= got <= 16, out                     # 2 s at 5/s + a burst of one, with slack


def test_correlation_needs_k_distinct_reporters(crs):
    def edit(p):
        p["control"]["levels"]["INFECTED"] = {"actions": ["isolate"]}
    net = crs(policy_edit=edit)
    net.terminal("c1t3")                       # the attacker: its agent claims clean
    v1, v2 = net.terminal("c1t1"), net.terminal("c2t1")
    for h in ("c1t3", "c1t1", "c2t1"):
        net.wait_level(h, "COMPLIANT")
    seen = [{"source": "10.0.1.3", "threat": "Worm.Demo", "count": 3,
             "last_seen": time.time()}]
    net.set_posture(v1, attackers=seen)
    wait_until(lambda: net.row("c1t1")["last_report"] and
               any(a.get("event") == "sci_report" and a.get("terminal") == "c1t1@crs.example"
                   and a["sci"].get("attackers")
                   for a in jsonfile.read_lines(net.tmp / "audit.jsonl")),
               15, "first accusation recorded")
    assert net.level("c1t3") == "COMPLIANT", "one accuser must not be enough"
    net.set_posture(v2, attackers=seen)
    net.wait_level("c1t3", "INFECTED")
    assert "c1t1@crs.example" in net.row("c1t3")["decision"]["accusers"]
    wait_until(lambda: not ping(net.h("c1t3"), "10.0.1.1", timeout=1), 5, "attacker isolated")


def test_quarantine_survives_sigkill_and_restart(crs, tmp_path):
    net = crs()
    net.terminal("c1t1")
    net.terminal("c1t2")
    for h in ("c1t1", "c1t2"):
        net.wait_level(h, "COMPLIANT")
    wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "c1t1 reaches c1t2")
    q = net.ctl.request("POST", "/crs/v1/terminals/c1t1/quarantine")
    assert q["decision"]["isolate"] is True
    wait_until(lambda: not ping(net.h("c1t1"), "10.0.1.2", timeout=1), 5, "quarantine")
    # a probe that runs through the whole outage and restart
    probe = net.emu.popen("c1t1", ["ping", "-i", "0.05", "-W", "1", "10.0.1.2"],
                          stdout=subprocess.PIPE, text=True)
    net.ctl.kill(signal.SIGKILL)
    ctl2 = ControllerProcess(tmp_path, [*net.cfg, *framework_args()], ofp_port=net.ctl.ofp_port,
                             rest_port=net.ctl.rest_port).start()
    try:
        wait_until(lambda: len(ctl2.status()["switches"]) == 7, 60, "switches reconnected")
        assert next(t for t in ctl2.get("/crs/v1/terminals")
                    if t["name"] == "c1t1")["decision"]["isolate"] is True
        probe.send_signal(signal.SIGINT)
        out, _ = probe.communicate(timeout=10)
        assert " 0 received" in out, out[-300:]
        assert ctl2.request("POST", "/crs/v1/terminals/c1t1/release")["decision"]["isolate"] \
            is False
        wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "released after restart")
    finally:
        ctl2.stop()


def test_forged_and_replayed_reports_change_nothing(crs):
    net = crs()
    net.terminal("c1t1")
    net.terminal("c1t2")
    for h in ("c1t1", "c1t2"):
        net.wait_level(h, "COMPLIANT")
    before = net.ctl.status()["counters"]
    url = f"http://127.0.0.1:{net.ctl.rest_port}/crsap/v1/messages"

    def post(raw):
        req = urllib.request.Request(url, data=raw, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
    bad = {**CLEAN, "threats": INFECTED}
    c2_key = bytes.fromhex(jsonfile.read(net.tmp / "c1t2-keys.json")["crs_report_key"])
    c1 = "c1t1@crs.example"
    body = {"ms_id": c1, "sci": sci_from_posture(bad)}
    # signed with another terminal's key
    assert post(crsap.encode("SCIReport", c1, int(time.time() * 1000) + 10**6, time.time(),
                             body, c2_key)) == 403
    # about another terminal, signed correctly by its sender
    other = {"ms_id": c1, "sci": sci_from_posture(bad)}
    assert post(crsap.encode("SCIReport", "c1t2@crs.example", int(time.time() * 1000) + 10**6,
                             time.time(), other, c2_key)) == 403
    # a replay of an accepted report
    c1_key = bytes.fromhex(jsonfile.read(net.tmp / "c1t1-keys.json")["crs_report_key"])
    good = crsap.encode("SCIReport", c1, int(time.time() * 1000) + 2 * 10**6, time.time(),
                        {"ms_id": c1, "sci": sci_from_posture(CLEAN)}, c1_key)
    assert post(good) == 200
    assert post(good) == 403
    # garbage and oversized bodies
    assert post(b"\x00" * 100) == 403
    assert post(b"{" * 70000) in (403, 413)
    after = net.ctl.status()["counters"]
    rejected = sum(v for k, v in after.items() if k.startswith("crs_rejected")) - \
        sum(v for k, v in before.items() if k.startswith("crs_rejected"))
    assert rejected >= 4
    assert net.level("c1t1") == "COMPLIANT" and net.level("c1t2") == "COMPLIANT"
    assert ping(net.h("c1t1"), "10.0.1.2")


def test_an_update_pushed_by_the_scs_reaches_the_agent(crs):
    """A policy reload makes a clean terminal VULNERABLE; its update is pushed to its agent
    (the controller connects to the agent: its replies pass table 0's binding) and fetched."""
    net = crs()
    net.terminal("c1t1")
    net.wait_level("c1t1", "COMPLIANT")
    policy = yaml.safe_load((net.tmp / "policy.yaml").read_text())
    policy["version"] += 1
    for rule in policy["evaluation"]["rules"]:
        if rule["name"] == "old-signatures":
            rule["when"] = {"signature_version_below": 99999}
    (net.tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    assert net.ctl.request("POST", "/crs/v1/policy/reload")["version"] == policy["version"]
    wait_until(lambda: "GET /updates/baseline" in net.update_log.read_text(), 30,
               "the pushed update fetched by the agent")
    audit = jsonfile.read_lines(net.tmp / "audit.jsonl")
    assert any(a.get("event") == "update" and a.get("terminal") == "c1t1@crs.example"
               for a in audit)


def test_partial_deployment_evaluates_everyone_and_restricts_where_deployed(crs):
    """crs.enforce: [cell1]: an infected terminal in cell1 is isolated; one in cell2 is
    found INFECTED all the same (the reacting system evaluates everyone) but nothing
    restricts it there."""
    def edit(p):            # no update item on INFECTED: nobody gets cleaned meanwhile
        p["control"]["levels"]["INFECTED"] = {"actions": ["isolate"]}
    net = crs(policy_edit=edit, crs={"enforce": ["cell1"]})
    posts = {h: net.terminal(h) for h in ("c1t1", "c2t1", "c3t1")}
    for h in posts:
        net.wait_level(h, "COMPLIANT")
    wait_until(lambda: ping(net.h("c1t1"), "10.0.3.1") and ping(net.h("c2t1"), "10.0.3.1"),
               15, "both reach c3t1")
    for h in ("c1t1", "c2t1"):
        net.set_posture(posts[h], threats=INFECTED)
    for h in ("c1t1", "c2t1"):
        net.wait_level(h, "INFECTED")
    rows = {h: net.row(h) for h in ("c1t1", "c2t1")}
    assert rows["c1t1"]["enforced"] is True and rows["c2t1"]["enforced"] is False
    wait_until(lambda: not ping(net.h("c1t1"), "10.0.3.1"), 10, "c1t1 isolated")
    assert ping(net.h("c2t1"), "10.0.3.1")          # not deployed in cell2
    assert net.ctl.status()["counters"]["crs_decision_not_enforced"] >= 1


def test_sca_discovery_probes_finds_an_agent_and_marks_an_agentless_terminal(crs):
    """X.1125 11.1 on Mininet: c1t1 has no agent: probed, then "no SCA", and the policy's
    agentless control (here: permit) applies. c1t2's agent was told a wrong SCS address and
    a long interval: the SCS probes it, it answers (discovered), adopts the address and
    interval the probe carries, and reports: COMPLIANT."""
    def edit(p):
        p["discovery"] = {"probe_after_s": 1, "probe_every_s": 1, "no_sca_after": 2,
                          "agentless": {"actions": ["permit"]}}
    net = crs(policy_edit=edit, topo="topologies/minimal.yaml")
    keys = {}
    for h in ("c1t1", "c1t2"):
        ident = f"{h}@crs.example"
        keys[h] = net.tmp / f"{h}-keys.json"
        net.emu.popen(h, [PY, "-m", "controller.admission.supplicant_main", "--interface",
                          f"{h}-eth0", "--identity", ident, "--psk",
                          CREDS.demo_psk(ident).hex(), "--keys-out", str(keys[h])],
                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_until(lambda: all(k.exists() for k in keys.values()), 30, "both authenticated")
    post = net.tmp / "c1t2-posture.json"
    post.write_text(json.dumps(CLEAN))
    net.emu.popen("c1t2", [PY, "-m", "controller.crs.agent", "--posture", str(post),
                           "--keys", str(keys["c1t2"]), "--name", "c1t2@crs.example",
                           "--interval", "600", "--scs", "http://10.0.100.254:9"],
                  stdout=open(net.tmp / "c1t2-agent.log", "wb"), stderr=subprocess.STDOUT)
    net.wait_level("c1t2", "COMPLIANT", timeout=30)
    assert net.row("c1t2")["sca"] == "yes"
    wait_until(lambda: net.row("c1t1")["sca"] == "none", 20, "c1t1 found agentless")
    row = net.row("c1t1")
    assert row["decision"]["actions"] == ["permit"] and row["probes_unanswered"] >= 2
    wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "the agentless control: permit")
    audit = (net.tmp / "audit.jsonl").read_text()
    assert '"event": "no_sca"' in audit and '"event": "probe_response"' in audit
    counters = net.ctl.status()["counters"]
    assert counters["crs_probe_sent"] >= 3 and counters["crs_no_sca"] == 1


def browse(host, url: str, tmp) -> str:
    """The DOM a real browser (Debian's chromium, headless) renders for `url` on a host."""
    profile = tmp / f"chromium-{host.name}"
    return host.cmd(f"timeout 90 chromium --headless=new --no-sandbox --disable-gpu "
                    f"--user-data-dir={profile} --dump-dom {url} 2>/dev/null")


def test_the_portal_tells_a_redirected_terminal_its_level_in_a_real_browser(crs):
    """An UNKNOWN terminal (no agent) asks a browser for any web page: table 1 redirects it
    to the update host's portal, which shows its level, why, and the agent download. A
    compliant terminal visiting the portal sees that it has nothing to do."""
    net = crs(topo="topologies/minimal.yaml")
    net.emu.start_portal(f"http://10.0.100.254:{net.ctl.rest_port}",
                         str(net.tmp / "policy.yaml"), log=open(net.tmp / "portal.log", "wb"),
                         updates=False)       # (CrsNet's update server has port 80)
    wait_until(lambda: "PORTAL-LISTENING" in (net.tmp / "portal.log").read_text(), 20,
               "the portal")
    keys = net.tmp / "c1t1-keys.json"
    net.emu.popen("c1t1", [PY, "-m", "controller.admission.supplicant_main", "--interface",
                           "c1t1-eth0", "--identity", "c1t1@crs.example", "--psk",
                           CREDS.demo_psk("c1t1@crs.example").hex(), "--keys-out", str(keys)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_until(keys.exists, 30, "c1t1 authenticated")
    net.terminal("c1t2")
    net.wait_level("c1t2", "COMPLIANT")
    assert "redirect_web" in net.row("c1t1")["decision"]["actions"]
    dom = browse(net.h("c1t1"), "http://10.0.1.2/", net.tmp)   # any web address
    assert 'id="level">UNKNOWN<' in dom and 'id="name">c1t1<' in dom, dom[-2000:]
    assert 'id="reason">' in dom and 'href="/downloads/crs-agent.py"' in dom
    assert "Install the security agent" in dom
    agent = net.h("c1t1").cmd(f"{PY} -c \"import urllib.request; print(len(urllib.request."
                              "urlopen('http://10.0.100.20:8080/downloads/crs-agent.py')"
                              ".read()))\"")
    assert int(agent.strip().splitlines()[-1]) > 1000
    # a terminal asking the controller itself about someone else: refused (update host only)
    asked = net.h("c1t1").cmd(
        "python3 -c \"import urllib.request, urllib.error\ntry:\n urllib.request.urlopen("
        f"'http://10.0.100.254:{net.ctl.rest_port}/portal/v1/terminal?ip=10.0.1.2', "
        "timeout=5)\nexcept urllib.error.HTTPError as e:\n print('status', e.code)\"")
    assert "status 403" in asked, asked
    dom = browse(net.h("c1t2"), "http://10.0.100.20:8080/", net.tmp)
    assert 'id="level">COMPLIANT<' in dom and "Nothing to do" in dom, dom[-2000:]
    assert net.ctl.status()["counters"]["redirected_connections"] >= 1
