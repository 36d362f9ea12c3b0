"""`crs bench summary`: each speed target read from the file its benchmark writes, judged
against its limit, and never called met from a run smaller than the target (a quick run's
2 terminals) or from a file that is not there."""
from __future__ import annotations

import json

from controller import cli
from controller.bench import targets


def write(root, name, doc):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def auth(single=1.5, conc=(8.0, 24.0), first=6.3, first_conc=(12.0, 30.0), n=50):
    return {"commit": "abc1234", "time": "2026-12-01T00:00:00Z",
            "ours": {"single": {"p50_ms": single},
                     "concurrent": {"p50_ms": conc[0], "p99_ms": conc[1], "n_terminals": n}},
            "ours_first_packet": {"single": {"p50_ms": first},
                                  "concurrent": {"p50_ms": first_conc[0],
                                                 "p99_ms": first_conc[1], "n_terminals": n}}}


def by_target(root):
    return {r["target"]: r for r in targets.evaluate(root)}


def test_nothing_run_is_not_measured(tmp_path):
    assert {r["verdict"] for r in targets.evaluate(tmp_path)} == {"not measured"}


def test_auth_targets_met_and_not_met(tmp_path):
    write(tmp_path, "bench/auth.json", auth())
    rows = by_target(tmp_path)
    assert rows["EAP exchange, 1 terminal, p50"]["verdict"] == "met"
    assert rows["EAP, 50 re-authenticating at once, p50 / p99"]["values"] == [8.0, 24.0]
    assert rows["EAP, 50 re-authenticating at once, p50 / p99"]["verdict"] == "met"
    first = rows["EAPOL-Start -> first packet, 1 terminal, p50"]
    assert first["verdict"] == "not met" and first["limits"] == ["<= 5"]
    assert first["commit"] == "abc1234"
    # one of two limits missed is not met
    write(tmp_path, "bench/auth.json", auth(conc=(8.0, 51.0)))
    assert by_target(tmp_path)["EAP, 50 re-authenticating at once, p50 / p99"]["verdict"] \
        == "not met"


def test_a_quick_run_with_fewer_terminals_is_not_a_measurement_of_fifty(tmp_path):
    write(tmp_path, "bench/auth.json", auth(n=2))
    rows = by_target(tmp_path)
    assert rows["EAP, 50 re-authenticating at once, p50 / p99"]["verdict"] == \
        "not measured at scale"
    assert rows["EAPOL-Start -> first packet, 50 at once, p50 / p99"]["verdict"] == \
        "not measured at scale"
    assert rows["EAP exchange, 1 terminal, p50"]["verdict"] == "met"


def test_reports_rate_latency_and_flatness(tmp_path):
    def doc(core, scs, terminals=10_000, sizes=(100, 1000, 10_000, 100_000)):
        return {"parameters": {"terminals": terminals, "sizes": list(sizes)},
                "end_to_end": {"accepted_per_s": 6884.0, "latency_ms": {"p50": 4.4}},
                "core_by_terminals": {str(n): {"group_32_us": {"p50": v}}
                                      for n, v in zip(sizes, core)},
                "scs_by_terminals": {str(n): {"steady_us": {"p50": v}}
                                     for n, v in zip(sizes, scs)}}
    write(tmp_path, "bench/reports.json", doc([60, 62, 72, 68], [21, 23, 22, 23]))
    rows = by_target(tmp_path)
    assert rows["reports end to end (10,000 terminals), rate / p50"]["verdict"] == "met"
    core = rows["pure core per report in groups, worst p50 / flatness"]
    assert core["values"] == [72.0, 1.2] and core["verdict"] == "met"
    assert rows["pure SCS per report, flatness"]["verdict"] == "met"
    # cost that grows with the network is not flat, even under the per-report limit
    write(tmp_path, "bench/reports.json", doc([60, 90, 120, 180], [20, 40, 80, 160]))
    rows = by_target(tmp_path)
    assert rows["pure core per report in groups, worst p50 / flatness"]["verdict"] == "not met"
    assert rows["pure SCS per report, flatness"]["values"] == [8.0]
    # sizes that do not span 100 -> 100,000 say nothing of flatness; 300 terminals nothing
    # of the end-to-end rate at 10,000
    write(tmp_path, "bench/reports.json", doc([60, 62], [21, 23], terminals=300,
                                              sizes=(100, 300)))
    rows = by_target(tmp_path)
    assert rows["pure SCS per report, flatness"]["verdict"] == "not measured at scale"
    assert rows["reports end to end (10,000 terminals), rate / p50"]["verdict"] == \
        "not measured at scale"
    # nor does a run whose largest size has no samples, whatever sizes it was asked for
    gap = doc([60, 62, 70, 65], [21, 23, 22, 23])
    del gap["scs_by_terminals"]["100000"]["steady_us"]["p50"]
    write(tmp_path, "bench/reports.json", gap)
    assert by_target(tmp_path)["pure SCS per report, flatness"]["verdict"] == \
        "not measured at scale"


def test_reaction_demo_and_forwarding(tmp_path):
    write(tmp_path, "bench/reaction.json", {"reaction_first_lost_ms": {"p50": 3.26, "p99": 5.3},
                                            "trials_valid": 100})
    write(tmp_path, "demo/summary.json", {"runs": [
        {"configuration": "none", "reaction_latency_s": None},
        {"configuration": "crs_isolate", "reaction_latency_s": 0.0051,
         "reaction_latency_s_p95": 0.0054},
        {"configuration": "cell_seal", "reaction_latency_s": 0.0062,
         "reaction_latency_s_p95": 0.030}]})
    write(tmp_path, "bench/forwarding.json", {
        "ratio": {"throughput_crs_over_reference": 0.96},
        "all_pairs": {"crs": {"seconds": 6.0, "max_flows_per_host": 2.46},
                      "crs_topology": {"seconds": 5.2, "max_flows_per_host": 2.47},
                      "simple_switch_13": {"seconds": 22.4, "max_flows_per_host": 52.7}}})
    rows = by_target(tmp_path)
    assert rows["reaction (report sent -> attacker dropped), p50 / p99"]["verdict"] == "not met"
    demo = rows["demo reaction latency, p50 / p95"]        # the slowest defence counts
    assert demo["values"] == [6.2, 30.0] and demo["verdict"] == "not met"
    assert rows["all-pairs ping on metro"]["values"] == [6.0]      # ours, not the reference
    assert rows["all-pairs on metro: flows per switch"]["verdict"] == "met"
    assert rows["forwarding throughput over simple_switch_13"]["verdict"] == "met"


def test_forwarding_that_moved_nothing_is_not_met(tmp_path):
    """forwarding.json's own ratio is None when our side's throughput was 0: that is a
    failure, read from the sides' medians, not a missing number."""
    side = lambda mbps: {"throughput_mbps": {"median": mbps}}      # noqa: E731
    write(tmp_path, "bench/forwarding.json", {
        "crs": side(0.0), "simple_switch_13": side(629.0),
        "ratio": {"throughput_crs_over_reference": None}})
    row = by_target(tmp_path)["forwarding throughput over simple_switch_13"]
    assert row["values"] == [0.0] and row["verdict"] == "not met"
    write(tmp_path, "bench/forwarding.json", {
        "crs": side(662.0), "simple_switch_13": side(629.0),
        "ratio": {"throughput_crs_over_reference": 1.05}})
    assert by_target(tmp_path)["forwarding throughput over simple_switch_13"]["verdict"] == "met"


def test_a_broken_file_is_not_measured_and_the_command_writes_its_table(tmp_path, capsys):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "auth.json").write_text("{not json")
    assert cli.main(["bench", "summary", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "EAP exchange, 1 terminal, p50" in out and "not measured" in out
    doc = json.loads((tmp_path / "bench" / "targets.json").read_text())
    assert len(doc["targets"]) == len(targets.TARGETS) and doc["flat_means_at_most"] == 2.0


def test_the_benchmarks_files_may_be_elsewhere(tmp_path):
    """`crs bench all --out DIR` writes them to DIR: the summary reads them there (and the
    demo's summary from the results directory still)."""
    write(tmp_path, "mine/auth.json", auth())
    rows = {r["target"]: r for r in targets.evaluate(tmp_path, tmp_path / "mine")}
    assert rows["EAP exchange, 1 terminal, p50"]["verdict"] == "met"
    assert cli.main(["bench", "summary", "--results", str(tmp_path),
                     "--bench", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "targets.json").exists()


def test_terminals_that_never_got_through_are_not_met_whatever_the_others_took(tmp_path):
    doc = auth()
    doc["ours"]["concurrent"]["failures"] = 10          # 40 fast ones, 10 never admitted
    doc["ours_first_packet"]["single"]["missing"] = 1
    write(tmp_path, "bench/auth.json", doc)
    rows = by_target(tmp_path)
    assert rows["EAP, 50 re-authenticating at once, p50 / p99"]["verdict"] == \
        "not met (some never got through)"
    assert rows["EAPOL-Start -> first packet, 1 terminal, p50"]["verdict"] == \
        "not met (some never got through)"
    assert rows["EAP exchange, 1 terminal, p50"]["verdict"] == "met"
    write(tmp_path, "bench/forwarding.json", {"all_pairs": {
        "crs": {"seconds": 6.0, "max_flows_per_host": 2.4, "failed_pairs": 3}}})
    assert by_target(tmp_path)["all-pairs ping on metro"]["verdict"] == \
        "not met (some never got through)"


def test_a_file_of_another_shape_is_not_measured_and_few_trials_are_not_a_p99(tmp_path):
    write(tmp_path, "demo/summary.json", {"runs": None, "runner": {"commit": "d3m0"}})
    write(tmp_path, "bench/reports.json", {"parameters": {"sizes": ["a", "b"]},
                                           "core_by_terminals": {"x": 1},
                                           "scs_by_terminals": {
                                               "100": {"steady_us": {"p50": 20}},
                                               "1000": {"steady_us": {"p50": 21}}}})
    write(tmp_path, "bench/reaction.json", {"reaction_first_lost_ms": {"p50": 2.0, "p99": 3.0},
                                            "trials_valid": 3})
    rows = by_target(tmp_path)
    assert rows["demo reaction latency, p50 / p95"]["verdict"] == "not measured"
    assert rows["demo reaction latency, p50 / p95"]["commit"] == "d3m0"
    assert rows["pure SCS per report, flatness"]["verdict"] == "not measured at scale"
    assert rows["reaction (report sent -> attacker dropped), p50 / p99"]["verdict"] == \
        "not measured at scale"


def test_summary_named_after_options(tmp_path, capsys):
    write(tmp_path, "mine/auth.json", auth())
    assert cli.main(["bench", "--out", str(tmp_path / "mine"), "summary"]) == 0
    assert "EAP exchange, 1 terminal, p50" in capsys.readouterr().out
    assert (tmp_path / "mine" / "targets.json").exists()


def test_bench_all_goes_on_after_a_benchmark_that_cannot_set_up(tmp_path, monkeypatch, capsys):
    """One benchmark refusing its set-up (e.g. a switch port type this machine lacks) ends
    neither `crs bench all` nor its summary; the command's status says something failed."""
    import sys
    import types
    ran = []

    def fake(name, fail):
        mod = types.ModuleType(f"fake_bench_{name}")

        def run(out_dir, **_):
            ran.append(name)
            if fail:
                raise RuntimeError("port p1: could not set configuration")
        mod.run = run
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        return mod.__name__, lambda a: {}
    monkeypatch.setattr(cli, "BENCHES", {"one": fake("one", True), "two": fake("two", False)})
    monkeypatch.setattr(cli, "IN_ALL", ("one", "two"))
    monkeypatch.setattr(cli, "_openvswitch_missing", lambda names: False)
    assert cli.cmd_bench(cli.build_parser().parse_args(
        ["bench", "all", "--out", str(tmp_path / "bench")])) == 1
    assert ran == ["one", "two"]
    captured = capsys.readouterr()
    assert "bench one: port p1: could not set configuration" in captured.err
    assert (tmp_path / "bench" / "targets.json").exists()


def test_the_summary_says_what_the_machine_charged_each_run(tmp_path, capsys):
    """A run that recorded the machine's floors (`bench.floors`) has them in its rows and
    in one printed line per file; a run without them (older files) has None and no line."""
    floors = {"disk_sync_idle_ms": 0.71, "disk_sync_back_to_back_ms": 0.15,
              "python_idle_ms": 0.5, "python_hot_ms": 0.3, "python_idle_over_hot": 1.67}
    write(tmp_path, "bench/reaction.json", {"reaction_first_lost_ms": {"p50": 2.9, "p99": 5.3},
                                            "trials_valid": 100, "machine_floors": floors})
    write(tmp_path, "bench/auth.json", auth())
    rows = by_target(tmp_path)
    assert rows["reaction (report sent -> attacker dropped), p50 / p99"]["machine_floors"] == \
        floors
    assert rows["EAP exchange, 1 terminal, p50"]["machine_floors"] is None
    assert cli.main(["bench", "summary", "--results", str(tmp_path)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "as it ran" in ln]
    assert lines == ["bench/reaction.json: the machine as it ran: a disk sync 0.71 ms "
                     "after idle (0.15 back to back), its Python 1.67 x slower after idle"]


def test_floors_of_odd_shapes_print_no_line_and_break_nothing(tmp_path, capsys):
    """Floors not measured (an error), of another shape, or beyond any float: no line."""
    for odd in ({"error": "OSError: no"}, "fast", {"disk_sync_idle_ms": 10 ** 400}):
        write(tmp_path, "bench/reaction.json", {"reaction_first_lost_ms": {"p50": 2.9,
                                                                            "p99": 5.3},
                                                "trials_valid": 100, "machine_floors": odd})
        assert cli.main(["bench", "summary", "--results", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "as it ran" not in out and "EAP exchange, 1 terminal, p50" in out
