"""`crs experiment compare SCENARIO EMULATED_DIR`: an emulated sweep and the simulation of
the same outbreak, side by side (issue 14, items 2 and 4).

A student may trust the simulation where Mininet cannot go only where the two agree where
both run. For every configuration of an emulated summary, the simulation runs the same
population, worm and defence with the reaction time R the emulation *measured* for that
configuration (infection -> flows, the median over its runs), not the detection delay the
scenario asked for; then the simulated mean infected fraction is set against the emulated
mean's 95 % interval, and both against the models (blacklisting 1/(1-K*R)/V and its
finite-population mean, content filtering V/(1+(V-1)e^(-K*R))).

Outputs in the output folder: compare.json, and threshold.png when R varies (the final
infected fraction against R, emulated and simulated with their intervals, the models and
the threshold R = 1/K = Omega/(s*V)).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from controller.config import ConfigError
from controller.experiment import model, simulate, stats
from controller.experiment import scenario as scn

REACTS = ("crs_isolate", "crs_rate_limit", "cell_seal")
DEFAULT_OVERHEAD_S = 0.05        # R - delay when a configuration measured no R


class CompareError(Exception):
    """The emulated results cannot be compared (missing, or from another scenario)."""


def _t50(curve: Sequence[float], grid: np.ndarray, vulnerable: int) -> float | None:
    a = np.asarray(curve, float) / vulnerable
    return float(np.interp(0.5, a, grid)) if a[-1] >= 0.5 else None


def measured_r(conf: dict[str, Any]) -> float | None:
    """The R to simulate for an emulated configuration: its measured reaction time, else
    its detection delay plus the usual overhead; None for defences that do not react."""
    if conf["defence"] not in REACTS:
        return None
    r = conf.get("reaction_time_s")
    if isinstance(r, (int, float)) and r > 0:
        return float(r)
    d = conf.get("detection_delay_s")
    return None if d is None else float(d) + DEFAULT_OVERHEAD_S


def sim_configs(sc: scn.Scenario, emulated: Sequence[dict[str, Any]]
                ) -> list[tuple[dict[str, Any], simulate.Config]]:
    """(emulated configuration, the simulation configuration for it), matched by label."""
    specs = {spec.label: spec for spec in scn.expand(sc)}
    out = []
    for conf in emulated:
        spec = specs.get(conf["configuration"])
        if spec is None:
            raise CompareError(f"configuration {conf['configuration']!r} of the emulated "
                               f"summary is not in {sc.file}")
        out.append((conf, simulate.Config(spec.defence, spec.label, spec.params,
                                          measured_r(conf))))
    return out


def row(sim: simulate.SimScenario, conf: dict[str, Any], cfg: simulate.Config,
        runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration both ways, and whether they agree: the simulated mean inside the
    emulated mean's interval (or, failing that, the two intervals overlapping)."""
    V = sim.population.vulnerable
    fr = [r["infected"] / V for r in runs]
    s = stats.describe(fr, digits=5)
    grid = np.linspace(0.0, sim.duration_s, simulate.TIMELINE_POINTS)
    t50s = [t for t in (_t50(r["curve"], grid, V) for r in runs) if t is not None]
    t50_sim = stats.describe(t50s, digits=2) if len(t50s) == len(runs) else None
    e_lo, e_hi = conf["infected_fraction_ci95"]
    out: dict[str, Any] = {
        "configuration": cfg.label, "defence": cfg.defence, **cfg.params,
        "detection_delay_s": conf.get("detection_delay_s"), "reaction_time_s": cfg.reaction_time_s,
        "emulated_runs": conf["runs"], "emulated_mean": conf["infected_fraction_mean"],
        "emulated_ci95": [e_lo, e_hi], "emulated_median": conf["infected_fraction"],
        "emulated_t50_s": conf.get("t50_s"), "emulated_seeds": conf.get("seeds"),
        "simulated_runs": len(runs), "simulated_mean": s["mean"], "simulated_ci95": s["ci95"],
        "simulated_median": s["median"],
        "simulated_t50_s": round(float(np.median(t50s)), 2) if len(t50s) * 2 > len(runs)
        else None,
        # t50 (every run reached half of V): the means with their intervals, and the runs'
        # own values (to compare slow-downs: `slowdowns`)
        "emulated_t50_s_mean": conf.get("t50_s_mean"), "emulated_t50_s_ci95": conf.get(
            "t50_s_ci95"), "emulated_t50_s_per_run": conf.get("t50_s_per_run"),
        "simulated_t50_s_mean": t50_sim["mean"] if t50_sim else None,
        "simulated_t50_s_ci95": t50_sim["ci95"] if t50_sim else None,
        "simulated_t50_s_per_run": [round(t, 2) for t in t50s] if t50_sim else None,
        "inside": e_lo <= s["mean"] <= e_hi,
        # an interval of a few runs of V hosts can be a point (every run 24/24): half a
        # host either side is the resolution of the emulated fraction
        "inside_half_host": e_lo - 0.5 / V <= s["mean"] <= e_hi + 0.5 / V,
        "overlap": s["ci95"][0] <= e_hi + 0.5 / V and e_lo - 0.5 / V <= s["ci95"][1],
    }
    k = model.predicted_k(sim.scan_rate, V, sim.population.omega)
    if cfg.defence == "crs_isolate" and cfg.reaction_time_s is not None \
            and conf.get("coverage_fraction", 1.0) in (None, 1.0):
        r = cfg.reaction_time_s
        out["model_blacklist_mean"] = round(model.blacklist_mean_final_fraction(V, k, r), 5)
        out["model_blacklist_branching"] = round(model.blacklist_expected_fraction(V, k, r), 5)
        out["model_content_filter"] = round(model.content_filter_final(V, k, r) / V, 5)
        out["k_times_r"] = round(k * r, 4)
    return out


def slowdowns(rows: Sequence[dict[str, Any]], scan_rate: float) -> list[dict[str, Any]]:
    """For each defence that slows a worm (a packets/s meter, the throttle): t50 with it
    over t50 without, emulated and simulated, each with a bootstrap interval, against the
    model's s/r (Williamson 2002; a meter of r packets/s likewise)."""
    base = next((r for r in rows if r["defence"] == "none"), None)
    out: list[dict[str, Any]] = []
    for r in rows:
        rate = r.get("rate_pps") or r.get("new_dest_per_s")
        if base is None or not rate or r["defence"] not in ("crs_rate_limit", "throttle"):
            continue
        item: dict[str, Any] = {"configuration": r["configuration"],
                                "model_s_over_r": round(scan_rate / float(rate), 3)}
        for side in ("emulated", "simulated"):
            a, b = r.get(f"{side}_t50_s_per_run"), base.get(f"{side}_t50_s_per_run")
            if a and b:
                got = stats.ratio_of_means(a, b)
                item[f"{side}_ratio"], item[f"{side}_ratio_ci95"] = got["ratio"], got["ci95"]
                lo, hi = got["ci95"]
                item[f"{side}_model_inside"] = lo <= item["model_s_over_r"] <= hi
        out.append(item)
    return out


def compare(scenario_path: str | Path, emulated_dir: str | Path, out_dir: str | Path,
            runs: int = 400, jobs: int | None = None) -> dict[str, Any]:
    """Simulate every configuration of the emulated summary in `emulated_dir` at its
    measured R; write compare.json (and threshold.png) into out_dir."""
    sc = scn.load_scenario(str(scenario_path))
    path = Path(emulated_dir) / "summary.json"
    try:
        emu = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"{path}: cannot read the emulated summary ({exc})") from None
    if (emu.get("scenario") or {}).get("name") != sc.name:
        raise CompareError(f"{path} is from scenario {emu.get('scenario', {}).get('name')!r},"
                           f" not {sc.name!r}")
    sim = replace(simulate.from_emulation(sc, 0.0), runs=runs)
    pairs = sim_configs(sc, emu["runs"])
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    rows = []
    with ctx.Pool(jobs or os.cpu_count() or 1) as pool:
        for conf, cfg in pairs:
            got = [res for _, res in pool.imap_unordered(
                simulate._task, [(sim, cfg, r) for r in range(runs)], chunksize=8)]
            rows.append(row(sim, conf, cfg, got))
    pop = sim.population
    k = model.predicted_k(sim.scan_rate, pop.vulnerable, pop.omega)
    summary = {"scenario": scn.describe(sc), "emulated": str(path),
               "slowdowns": slowdowns(rows, sim.scan_rate),
               "predicted_k_per_s": round(k, 6), "critical_reaction_s": round(1 / k, 3),
               "simulated_runs": runs, "wall_s": round(time.perf_counter() - t0, 1),
               "agree": sum(r["inside"] for r in rows),
               "agree_half_host": sum(r["inside_half_host"] for r in rows), "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(summary, indent=1) + "\n")
    isolate = [r for r in rows if "model_blacklist_mean" in r]
    if len({r["reaction_time_s"] for r in isolate}) > 1:
        plot_threshold(summary, out / "threshold.png")
    return summary


def plot_threshold(summary: dict[str, Any], path: Path) -> Path:
    """Final infected fraction against R: emulated and simulated means with 95 % intervals,
    the blacklisting models and content filtering, the threshold 1/K."""
    from controller.experiment.plots import _new, _save
    rows = sorted((r for r in summary["rows"] if "model_blacklist_mean" in r),
                  key=lambda r: r["reaction_time_s"])
    sc, k = summary["scenario"], summary["predicted_k_per_s"]
    V = sc["vulnerable"]
    fig, ax = _new(f"{sc['name']}: blacklisting against R (V={V}, Ω={sc['omega']}, "
                   f"s={sc['scan_rate_per_s']:g}/s)",
                   "reaction time R, infection to isolation (s)",
                   "final infected fraction of vulnerable (mean)")
    x = np.array([r["reaction_time_s"] for r in rows])
    for key, fmt, color, label in (
            ("emulated", "s", "C0", f"emulated (Mininet), {rows[0]['emulated_runs']} seeds"),
            ("simulated", "o", "C1", f"simulated (same SCS), {summary['simulated_runs']} runs")):
        m = np.array([r[f"{key}_mean"] for r in rows])
        ci = np.array([r[f"{key}_ci95"] for r in rows])
        ax.errorbar(x * (1.0 if key == "emulated" else 1.02), m,
                    yerr=[np.maximum(m - ci[:, 0], 0), np.maximum(ci[:, 1] - m, 0)],
                    fmt=fmt, color=color, capsize=4, label=f"{label}, 95 % CI")
    xs = np.linspace(0, max(x.max() * 1.1, 1.3 / k), 300)
    # neither approximation holds close to K*R = 1 (the branching total diverges, the final
    # size is 0): the curve is left out there rather than drawn wrong
    mean = [np.nan if abs(k * r - 1) < 0.15 else model.blacklist_mean_final_fraction(V, k, r)
            for r in xs]
    ax.plot(xs, mean, "-", color="k", lw=1,
            label="blacklisting: branching mean, final-size mean above (not near K·R = 1)")
    ax.plot(xs, [model.blacklist_expected_fraction(V, k, r) for r in xs], ":", color="k",
            label="blacklisting 1/(1−KR)/V")
    ax.plot(xs, [model.content_filter_final(V, k, r) / V for r in xs], "--", color="grey",
            label="content filtering V/(1+(V−1)e^(−KR))")
    ax.axvline(1 / k, color="r", alpha=0.4, lw=1, label=f"R = Ω/(s·V) = {1 / k:.2f} s")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def format_table(summary: dict[str, Any]) -> str:
    head = ["configuration", "R s", "emulated mean [95% CI]", "simulated mean [95% CI]",
            "agree", "t50 s emu/sim", "blacklist", "content f."]
    rows = []
    for r in summary["rows"]:
        e, s = r["emulated_ci95"], r["simulated_ci95"]
        rt = r["reaction_time_s"]
        rows.append([r["configuration"], "-" if rt is None else f"{rt:.2f}",
                     f"{r['emulated_mean']:.1%} [{e[0]:.1%}, {e[1]:.1%}]",
                     f"{r['simulated_mean']:.1%} [{s[0]:.1%}, {s[1]:.1%}]",
                     "yes" if r["inside"] else "±½ host" if r["inside_half_host"] else
                     "overlap" if r["overlap"] else "NO",
                     f"{_num(r['emulated_t50_s'])}/{_num(r['simulated_t50_s'])}",
                     f"{r['model_blacklist_mean']:.1%}" if "model_blacklist_mean" in r else "-",
                     f"{r['model_content_filter']:.1%}" if "model_content_filter" in r else "-"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    """0: compared; 2: bad arguments, scenario or emulated results."""
    p = argparse.ArgumentParser(prog="crs experiment compare",
                                description="Simulate an emulated sweep's configurations at "
                                            "their measured reaction times and compare.")
    p.add_argument("scenario", help="the emulated scenario file, e.g. scenarios/delay_sweep.yaml")
    p.add_argument("emulated", help="its results folder (with summary.json)")
    p.add_argument("--out", help="output folder (default: the emulated folder)")
    p.add_argument("--runs", type=int, default=400, help="simulated runs per configuration")
    p.add_argument("--jobs", type=int, help="processes (default: one per core)")
    try:
        a = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if a.runs < 2:
        print("--runs must be at least 2", file=sys.stderr)
        return 2
    try:
        summary = compare(a.scenario, a.emulated, a.out or a.emulated, a.runs, a.jobs)
    except (ConfigError, CompareError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(format_table(summary))
    for d in summary["slowdowns"]:
        emu = f"{d['emulated_ratio']} [{d['emulated_ratio_ci95'][0]}, " \
            f"{d['emulated_ratio_ci95'][1]}]" if "emulated_ratio" in d else "-"
        simr = f"{d['simulated_ratio']} [{d['simulated_ratio_ci95'][0]}, " \
            f"{d['simulated_ratio_ci95'][1]}]" if "simulated_ratio" in d else "-"
        print(f"t50 x {d['configuration']}: emulated {emu}, simulated {simr}, "
              f"model s/r = {d['model_s_over_r']}")
    print(f"K = s*V/Omega = {summary['predicted_k_per_s']:.4f}/s, threshold R = 1/K = "
          f"{summary['critical_reaction_s']:.2f} s; simulated mean inside the emulated "
          f"interval for {summary['agree']} of {len(summary['rows'])} configurations "
          f"({summary['agree_half_host']} within half a host) "
          f"({summary['wall_s']} s)")
    return 0


__all__ = ["CompareError", "compare", "format_table", "main", "measured_r",
           "plot_threshold", "row", "sim_configs"]
