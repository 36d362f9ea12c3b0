"""PNG figures of an experiment (matplotlib, Agg canvas, no pyplot global state).

- timeline.png: infected fraction over time, median of the runs per configuration with a
  band from the lowest to the highest run; next to the no-defence curve the fitted logistic
  and the predicted one (K = s*V/Omega), fit error and R^2 in the legend.
- delay.png: final infected fraction (median with a bar to p95; mean with its 95 % interval)
  against detection delay,
  with the blacklisting model 1/(1-K*R)/V at R = delay + overhead (an expected value: compare
  it with the mean; the median of small outbreaks is usually the seed alone).
- scope.png: final infected fraction against a scope parameter (cell_seal scope_cells,
  coverage_fraction).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from controller.experiment import model
from controller.experiment.results import RunResult


def _new(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_timeline(results: Sequence[RunResult], path: str | Path, step_s: float = 1.0,
                  title: str = "Infected fraction over time") -> Path:
    """One curve per configuration; the logistic model next to the no-defence curve."""
    if not results:
        raise ValueError("no runs to plot")
    fig, ax = _new(title, "time since first infection (s)", "infected fraction of vulnerable")
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.configuration, []).append(r)
    for i, (label, runs) in enumerate(groups.items()):
        end = max(r.end_s for r in runs)
        grid = np.arange(0.0, end + 1e-9, step_s)
        curves = np.array([r.infected_at(grid) / r.vulnerable
                           for r in runs])
        med = np.median(curves, axis=0)
        color = f"C{i}"
        ax.plot(grid, med, color=color, lw=2, label=f"{label} (median of {len(runs)})")
        if len(runs) > 1:
            ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.15)
        if runs[0].defence == "none":
            _model_curves(ax, runs[0], grid, med, color)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="center right")
    return _save(fig, path)


def _model_curves(ax: Any, r: RunResult, grid: np.ndarray, med: np.ndarray, color: str) -> None:
    predicted = None
    if r.scan_rate_per_s and r.omega:
        predicted = model.predicted_k(r.scan_rate_per_s, r.vulnerable, r.omega)
    try:
        fit = model.fit_logistic(grid, med)
    except ValueError:
        fit = None
    if fit is not None:
        err = f", {fit.k / predicted - 1:+.0%} vs s·V/Ω" if predicted else ""
        ax.plot(grid, model.logistic(grid, fit.k, fit.t_mid), "--", color=color,
                label=f"logistic fit K={fit.k:.3f}/s{err}, R²={fit.r2:.3f}")
    if predicted:
        # the model from one seed: a(0) = 1/V, i.e. T = ln(V-1)/K
        t_mid = model.t50(predicted, r.vulnerable)
        ax.plot(grid, model.logistic(grid, predicted, t_mid), ":", color="k",
                label=f"model K=s·V/Ω={predicted:.3f}/s")


def sweep_series(confs: Sequence[dict[str, Any]], x_key: str,
                 defences: Sequence[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The configurations drawn against `x_key`, by defence, in x order. A defence that has
    several configurations at one x varies another parameter (in scope_sweep, cell_seal's
    four scopes all at coverage 1.0): it is not a line against this one and is left out."""
    by_defence: dict[str, list[dict[str, Any]]] = {}
    for c in confs:
        if c["defence"] == "none" or c.get(x_key) is None:
            continue
        if defences and c["defence"] not in defences:
            continue
        by_defence.setdefault(c["defence"], []).append(c)
    return {name: sorted(cs, key=lambda c: c[x_key]) for name, cs in by_defence.items()
            if len({c[x_key] for c in cs}) == len(cs)}


def plot_sweep(summary: dict[str, Any], x_key: str, path: str | Path, xlabel: str | None = None,
               defences: Sequence[str] | None = None, overhead_s: float | None = None,
               title: str | None = None) -> Path:
    """Final infected fraction against `x_key` (a key of the summary's run objects, e.g.
    detection_delay_s, scope_cells, coverage_fraction): one line per defence, markers at
    the median, bars up to the p95; the no-defence level as a horizontal line. With
    `overhead_s` and x_key detection_delay_s, the blacklisting model at R = x + overhead."""
    confs = summary.get("runs") or []
    if not confs:
        raise ValueError("summary has no runs")
    fig, ax = _new(title or f"Final infected fraction against {x_key}", xlabel or x_key,
                   "final infected fraction of vulnerable")
    for c in confs:
        if c["defence"] == "none":
            ax.axhline(c["infected_fraction"], color="grey", ls="--", label="no defence")
    by_defence = sweep_series(confs, x_key, defences)
    if not by_defence:
        raise ValueError(f"no configuration has a value for {x_key!r}")
    for i, (name, cs) in enumerate(by_defence.items()):
        x = np.array([c[x_key] for c in cs], float)
        y = np.array([c["infected_fraction"] for c in cs])
        hi = np.array([c["infected_fraction_p95"] for c in cs])
        mean = np.array([c.get("infected_fraction_mean", np.nan) for c in cs])
        ax.errorbar(x, y, yerr=[np.zeros_like(y), np.maximum(hi - y, 0)], fmt="o-",
                    color=f"C{i + 1}", capsize=3, label=f"{name} median (bar to p95)")
        # the models give expected values: compare them with the mean and its interval
        ci = [c.get("infected_fraction_ci95") for c in cs]
        if all(ci):
            lo_ci = np.array([b[0] for b in ci])
            hi_ci = np.array([b[1] for b in ci])
            ax.errorbar(x, mean, yerr=[np.maximum(mean - lo_ci, 0), np.maximum(hi_ci - mean, 0)],
                        fmt="s--", mfc="none", color=f"C{i + 1}", capsize=5, alpha=0.8,
                        label=f"{name} mean (95 % CI)")
        else:
            ax.plot(x, mean, "s--", mfc="none", color=f"C{i + 1}", label=f"{name} mean")
    ref = next((c for c in confs if c.get("predicted_k_per_s")), None)
    if overhead_s is not None and x_key == "detection_delay_s" and ref:
        k, v = ref["predicted_k_per_s"], ref["vulnerable"]
        xs = np.linspace(0, max(c[x_key] for cs in by_defence.values() for c in cs), 200)
        ys = [model.blacklist_expected_fraction(v, k, x + overhead_s) for x in xs]
        ax.plot(xs, ys, ":", color="k",
                label=f"model 1/(1-KR)/V, R = delay + {overhead_s:g} s, K={k:.3f}/s")
        ax.axvline(1 / k - overhead_s, color="k", alpha=0.3, lw=1)
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_all(summary: dict[str, Any], results: Sequence[RunResult], out_dir: str | Path,
             overhead_s: float = 1.0) -> list[Path]:
    """Every figure that fits the experiment: the timeline always; the delay plot when the
    detection delay varies; the scope plot when scope_cells or coverage_fraction varies."""
    out = Path(out_dir)
    made = [plot_timeline(results, out / "timeline.png")]
    confs = [c for c in summary.get("runs", []) if c["defence"] != "none"]

    def varies(key: str) -> bool:
        return len({c.get(key) for c in confs if c.get(key) is not None}) > 1
    if varies("detection_delay_s"):
        made.append(plot_sweep(summary, "detection_delay_s", out / "delay.png",
                               "detection delay (s)", overhead_s=overhead_s))
    for key, label in (("scope_cells", "sealing scope (cells)"),
                       ("coverage_fraction", "deployment coverage (fraction of cells)")):
        if varies(key):
            made.append(plot_sweep(summary, key, out / f"scope_{key}.png", label))
    return made


def plot_simulation(summary: dict[str, Any], rows: Sequence[dict[str, Any]],
                    out_dir: str | Path) -> list[Path]:
    """Figures of `crs experiment simulate`: reaction.png (final fraction against R, mean
    with its 95 % interval, median, and the blacklisting and content-filtering models) when
    R is swept, and timeline.png (mean curves with the runs' 2.5-97.5 % spread, the
    logistic model next to no defence)."""
    out = Path(out_dir)
    made = [_sim_timeline(summary, rows, out / "timeline.png")]
    if any(c.get("reaction_time_s") for c in summary["runs"]):
        made.append(_sim_reaction(summary, out / "reaction.png"))
    return made


def _sim_reaction(summary: dict[str, Any], path: Path) -> Path:
    sc = summary["scenario"]
    fig, ax = _new(f"{sc['name']}: V={sc['vulnerable']:,}, Ω={sc['omega']:,}, "
                   f"s={sc['scan_rate_per_s']:g}/s, {sc['runs']} runs per point",
                   "reaction time R (min)", "infected fraction after the run")
    series: dict[str, list[dict[str, Any]]] = {}
    for c in summary["runs"]:
        if c.get("reaction_time_s"):
            series.setdefault(c["configuration"].rsplit(" R=", 1)[0], []).append(c)
        else:
            ax.axhline(c["infected_fraction_mean"], ls="--", lw=1, color="grey", alpha=0.7)
            ax.annotate(c["configuration"], (0, c["infected_fraction_mean"]),
                        xycoords=("axes fraction", "data"), fontsize=7, color="grey",
                        xytext=(3, 2), textcoords="offset points")
    rs_all: list[float] = []
    for i, (name, cs) in enumerate(series.items()):
        cs = sorted(cs, key=lambda c: c["reaction_time_s"])
        x = np.array([c["reaction_time_s"] / 60 for c in cs])
        rs_all += list(x)
        mean = np.array([c["infected_fraction_mean"] for c in cs])
        lo = np.array([c["infected_fraction_ci95"][0] for c in cs])
        hi = np.array([c["infected_fraction_ci95"][1] for c in cs])
        ax.errorbar(x, mean, yerr=[np.maximum(mean - lo, 0), np.maximum(hi - mean, 0)],
                    fmt="o-", color=f"C{i}", capsize=3, label=f"{name}: mean, 95 % CI")
        ax.plot(x, [c["infected_fraction"] for c in cs], "x", color=f"C{i}", alpha=0.6)
    if rs_all:
        k, v = summary["predicted_k_per_s"], sc["vulnerable"]
        xs = np.geomspace(min(rs_all), max(rs_all), 300)
        ax.plot(xs, [model.blacklist_mean_final_fraction(v, k, x * 60) for x in xs], ":",
                color="k", label="blacklisting model (branching / final size)")
        ax.plot(xs, [model.content_filter_final(v, k, x * 60) / v for x in xs], "-.",
                color="k", alpha=0.5, label="content filtering everywhere at R")
        crit = summary["critical_reaction_s"] / 60
        ax.axvline(crit, color="k", alpha=0.3, lw=1)
        ax.annotate(f"Ω/(s·V) = {crit:.1f} min", (crit, 1.0), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")
        ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=7, loc="center right")
    return _save(fig, path)


def _sim_timeline(summary: dict[str, Any], rows: Sequence[dict[str, Any]], path: Path) -> Path:
    sc = summary["scenario"]
    fig, ax = _new(f"{sc['name']}: infected fraction over time (mean of {sc['runs']} runs)",
                   "time since the first infection (h)", "infected fraction of vulnerable")
    names = [c["configuration"] for c in summary["runs"]
             if not c.get("reaction_time_s")] or [summary["runs"][0]["configuration"]]
    for i, name in enumerate(names):
        rs = [r for r in rows if r["configuration"] == name]
        t = np.array([r["time_s"] for r in rs]) / 3600
        ax.plot(t, [r["infected_fraction_mean"] for r in rs], color=f"C{i}", lw=2, label=name)
        ax.fill_between(t, [r["runs_p2_5"] for r in rs], [r["runs_p97_5"] for r in rs],
                        color=f"C{i}", alpha=0.15)
    t = np.linspace(0, sc["duration_s"], 400)
    k, v = summary["predicted_k_per_s"], sc["vulnerable"]
    ax.plot(t / 3600, model.logistic(t, k, model.t50(k, v)), ":", color="k",
            label=f"logistic, K = s·V/Ω = {k * 3600:.2f}/h")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    return _save(fig, path)
