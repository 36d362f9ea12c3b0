"""From the worm's events files to numbers: infection timelines, timeline.csv, summary.json
and a printed table.

Only the hosts' own records are used (controller.worm.host writes them), so the analysis
does not depend on the controller being right about what it did. Times in the outputs are
seconds after the run's first infection (the seed), `time_s`.

Definitions (also in docs/experiments.md):
- infected_fraction: infected terminals / vulnerable terminals at the end of the run.
- contained: the run ended with vulnerable terminals left uninfected and no new infection
  during the last `quiet_s` seconds (default 10 s) of the run.
- time_to_containment_s: for a contained run, the time of the last new infection after the
  first one (0 when the seed infected nobody); null when not contained.
- t50_s: time until half of the vulnerable terminals were infected; null if never.
Across the runs of one configuration: median and 95th percentile (nearest rank), with
non-contained runs / never-reached t50 counted as infinitely late, so a median that is
infinite becomes null. Uncertainty (controller.experiment.stats): the mean infected fraction
with its 95 % bootstrap interval, the share of contained runs with its exact binomial
interval, and the seeds.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from controller import jsonfile
from controller.experiment import model, stats

DEFAULT_QUIET_S = 10.0


class ResultsError(ValueError):
    """Events that cannot make a run (e.g. no start records, no infection at all)."""


@dataclass(frozen=True)
class RunResult:
    defence: str
    configuration: str
    run: int
    terminals: int
    vulnerable: int
    infection_times_s: tuple[float, ...]     # sorted, seed at 0
    end_s: float                              # run end, seconds after the first infection
    detection_delay_s: float | None
    scan_rate_per_s: float | None
    omega: int | None
    probes_sent: int
    probes_acked: int
    probes_received: int
    bad_lines: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    quiet_s: float = DEFAULT_QUIET_S
    seed: int | None = None                   # the scenario seed of this run, when known

    @property
    def infected(self) -> int:
        return len(self.infection_times_s)

    @property
    def infected_fraction(self) -> float:
        return self.infected / self.vulnerable if self.vulnerable else 0.0

    @property
    def contained(self) -> bool:
        last = self.infection_times_s[-1]
        return self.infected < self.vulnerable and self.end_s - last >= self.quiet_s

    @property
    def time_to_containment_s(self) -> float | None:
        return self.infection_times_s[-1] if self.contained else None

    @property
    def t50_s(self) -> float | None:
        need = math.ceil(self.vulnerable / 2)
        return self.infection_times_s[need - 1] if self.infected >= need and need else None

    def infected_at(self, t: float | Sequence[float]) -> np.ndarray:
        return np.searchsorted(np.asarray(self.infection_times_s), np.asarray(t, float), "right")

    def fit(self, step_s: float = 1.0) -> model.LogisticFit | None:
        """Logistic fit of this run's curve, or None when it cannot define one."""
        grid = np.arange(0.0, self.end_s + 1e-9, step_s)
        try:
            return model.fit_logistic(grid, self.infected_at(grid) / self.vulnerable)
        except ValueError:
            return None


def read_events(paths: Iterable[str | Path]) -> tuple[list[dict[str, Any]], int]:
    """All records of the given JSON-lines files, and the number of unreadable lines
    (a host killed mid-write leaves a partial last line: skip it, do not fail the run)."""
    records, bad = [], 0
    for p in paths:
        try:
            text = Path(p).read_text(errors="replace")
        except OSError:
            bad += 1
            continue
        recs, n_bad = jsonfile.parse_lines(text)
        bad += n_bad
        for rec in recs:
            if isinstance(rec.get("t"), (int, float)):
                records.append(rec)
            else:
                bad += 1
    return records, bad


def analyze_run(records: list[dict[str, Any]], defence: str, run: int,
                configuration: str | None = None, params: dict[str, Any] | None = None,
                quiet_s: float = DEFAULT_QUIET_S, bad_lines: int = 0,
                seed: int | None = None) -> RunResult:
    """One run's result from all its hosts' records."""
    starts = {r["host"]: r for r in records if r.get("event") == "start" and "host" in r}
    if not starts:
        raise ResultsError("no 'start' records: not a worm events file")
    infections: dict[str, float] = {}
    for r in records:
        if r.get("event") == "infected" and "host" in r:
            infections[r["host"]] = min(r["t"], infections.get(r["host"], math.inf))
    if not infections:
        raise ResultsError("no host was ever infected (did the seed host start?)")
    t0 = min(infections.values())
    stop_times = [r["t"] for r in records if r.get("event") == "stop"]
    end = (max(stop_times) if stop_times else max(r["t"] for r in records)) - t0
    vulnerable = sum(bool(s.get("vulnerable")) for s in starts.values())
    vulnerable = max(vulnerable, len(infections))
    first = next(iter(starts.values()))
    sent = sum(int(r.get("sent", 0)) for r in records if r.get("event") == "probes")
    acked = sum(int(r.get("acked", 0)) for r in records if r.get("event") == "probes")
    received = sum(1 for r in records if r.get("event") == "probed")
    return RunResult(defence=defence, configuration=configuration or defence, run=run,
                     terminals=len(starts), vulnerable=vulnerable,
                     infection_times_s=tuple(sorted(t - t0 for t in infections.values())),
                     end_s=max(end, 0.0), detection_delay_s=first.get("detection_delay"),
                     scan_rate_per_s=first.get("scan_rate"), omega=first.get("space_size"),
                     probes_sent=sent, probes_acked=acked, probes_received=received,
                     bad_lines=bad_lines, params=dict(params or {}), quiet_s=quiet_s,
                     seed=seed)


def load_run(paths: Iterable[str | Path], defence: str, run: int,
             configuration: str | None = None, params: dict[str, Any] | None = None,
             quiet_s: float = DEFAULT_QUIET_S, seed: int | None = None) -> RunResult:
    """read_events + analyze_run for the events files of one run."""
    records, bad = read_events(paths)
    return analyze_run(records, defence, run, configuration, params, quiet_s, bad, seed)


# --- outputs -----------------------------------------------------------------------------

TIMELINE_COLUMNS = ["time_s", "defence", "run", "infected", "infected_fraction", "configuration"]


def timeline_rows(results: Sequence[RunResult], step_s: float = 1.0) -> list[dict[str, Any]]:
    """Infected count every `step_s` from the seed's infection to each run's end."""
    rows = []
    for r in results:
        grid = np.arange(0.0, r.end_s + 1e-9, step_s)
        for t, n in zip(grid, r.infected_at(grid)):
            rows.append({"time_s": round(float(t), 3), "defence": r.defence, "run": r.run,
                         "infected": int(n), "infected_fraction": round(int(n) / r.vulnerable, 4),
                         "configuration": r.configuration})
    return rows


def write_timeline_csv(results: Sequence[RunResult], path: str | Path, step_s: float = 1.0) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TIMELINE_COLUMNS)
        w.writeheader()
        w.writerows(timeline_rows(results, step_s))


_percentile = stats.nearest_rank


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 3)


def _k_mle(results: Sequence[RunResult]) -> dict[str, Any]:
    """K of the undefended runs by maximum likelihood (model.k_mle_terms), with a 95 %
    interval from resampling the runs (fixed seed)."""
    terms = [model.k_mle_terms(r.infection_times_s, r.vulnerable) for r in results]
    n, integral = sum(t[0] for t in terms), sum(t[1] for t in terms)
    if n == 0 or integral <= 0:
        return {}
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    arr = np.array(terms, float)
    picks = arr[rng.integers(0, len(arr), size=(stats.BOOTSTRAP_RESAMPLES, len(arr)))]
    ks = picks[:, :, 0].sum(axis=1) / np.maximum(picks[:, :, 1].sum(axis=1), 1e-12)
    lo, hi = np.quantile(ks, [0.025, 0.975])
    return {"k_mle_per_s": round(n / integral, 5),
            "k_mle_ci95": [round(float(lo), 5), round(float(hi), 5)]}


def _t50_interval(t50: Sequence[float]) -> dict[str, Any]:
    """Mean t50 with its 95 % interval over the runs that reached half of V (all must:
    a run that never did would make any mean a guess), and each run's t50."""
    if not t50 or not all(math.isfinite(x) for x in t50):
        return {}
    d = stats.describe(t50, digits=2)
    return {"t50_s_mean": d["mean"], "t50_s_ci95": d["ci95"],
            "t50_s_per_run": [round(x, 2) for x in t50]}


def summarize_configuration(results: Sequence[RunResult]) -> dict[str, Any]:
    """One object of summary.json `runs`: the runs of one defence configuration."""
    r0 = results[0]
    fr = [r.infected_fraction for r in results]
    ttc = [r.time_to_containment_s if r.contained else math.inf for r in results]
    t50 = [r.t50_s if r.t50_s is not None else math.inf for r in results]
    out: dict[str, Any] = {
        "defence": r0.defence, "configuration": r0.configuration, **r0.params,
        "detection_delay_s": r0.detection_delay_s, "runs": len(results),
        "terminals": r0.terminals, "vulnerable": r0.vulnerable,
        "infected_fraction": round(statistics.median(fr), 4),
        "infected_fraction_p95": round(_percentile(fr, 95), 4),
        "infected_fraction_mean": round(statistics.fmean(fr), 4),
        "infected_fraction_per_run": [round(x, 4) for x in fr],
        # the mean's 95 % percentile-bootstrap interval (controller.experiment.stats)
        "infected_fraction_ci95": stats.describe(fr)["ci95"],
        "contained_fraction": round(sum(r.contained for r in results) / len(results), 4),
        # exact binomial (Clopper-Pearson) 95 % interval of the share of contained runs
        "contained_fraction_ci95": stats.proportion(sum(r.contained for r in results),
                                                    len(results))["ci95"],
        "seeds": [r.seed for r in results],
        "time_to_containment_s": _finite_or_none(statistics.median(ttc)),
        "time_to_containment_s_p95": _finite_or_none(_percentile(ttc, 95)),
        "t50_s": _finite_or_none(statistics.median(t50)),
        **_t50_interval(t50),
        "duration_s": round(statistics.median(r.end_s for r in results), 3),
        "probes_sent": sum(r.probes_sent for r in results),
        "probe_success_fraction": round(sum(r.probes_acked for r in results)
                                        / max(1, sum(r.probes_sent for r in results)), 4),
        "bad_event_lines": sum(r.bad_lines for r in results),
    }
    if r0.scan_rate_per_s and r0.omega:
        k = model.predicted_k(r0.scan_rate_per_s, r0.vulnerable, r0.omega)
        out["predicted_k_per_s"] = round(k, 5)
        out["predicted_t50_s"] = _finite_or_none(model.t50(k, r0.vulnerable))
        if r0.defence == "crs_isolate" and r0.detection_delay_s is not None:
            # lower bound: R is at least the detection delay
            out["predicted_infected_fraction_at_r_eq_delay"] = round(
                model.blacklist_expected_fraction(r0.vulnerable, k, r0.detection_delay_s), 4)
    if r0.defence == "none":
        out.update(_k_mle(results))
    fits = [f for f in (r.fit() for r in results) if f is not None]
    if fits and r0.defence == "none":
        out["fitted_k_per_s"] = round(statistics.median(f.k for f in fits), 5)
        out["fit_r2"] = round(statistics.median(f.r2 for f in fits), 4)
        out["fitted_t50_s"] = round(statistics.median(f.t_mid for f in fits), 3)
        if "predicted_k_per_s" in out:
            out["fitted_k_error_fraction"] = round(
                out["fitted_k_per_s"] / out["predicted_k_per_s"] - 1, 4)
    return out


def summarize(results: Sequence[RunResult],
              scenario: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json: the scenario's parameters and one object per configuration, in the
    order configurations first appear."""
    if not results:
        raise ResultsError("no runs to summarize")
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.configuration, []).append(r)
    return {"scenario": scenario or {}, "quiet_s": results[0].quiet_s,
            "runs": [summarize_configuration(g) for g in groups.values()]}


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")


def format_table(summary: dict[str, Any]) -> str:
    """The printed result table (one line per configuration)."""
    head = ["configuration", "runs", "infected med", "mean [95% CI]", "p95", "contained",
            "t_contain s", "t50 s", "K fit/pred /s", "R2", "K MLE [95% CI]"]
    rows = []
    for c in summary["runs"]:
        k = ""
        if "fitted_k_per_s" in c:
            k = f"{c['fitted_k_per_s']:.3f}/{c.get('predicted_k_per_s', float('nan')):.3f}"
        elif "predicted_k_per_s" in c:
            k = f"-/{c['predicted_k_per_s']:.3f}"
        ci = c.get("infected_fraction_ci95") or [c["infected_fraction_mean"]] * 2
        mle = c.get("k_mle_ci95")
        rows.append([c["configuration"], str(c["runs"]), f"{c['infected_fraction']:.0%}",
                     f"{c['infected_fraction_mean']:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]",
                     f"{c['infected_fraction_p95']:.0%}", f"{c['contained_fraction']:.0%}",
                     _fmt_opt(c["time_to_containment_s"]), _fmt_opt(c["t50_s"]), k,
                     f"{c['fit_r2']:.3f}" if "fit_r2" in c else "",
                     f"{c['k_mle_per_s']:.3f} [{mle[0]:.3f}, {mle[1]:.3f}]" if mle else ""])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _fmt_opt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def write_outputs(results: Sequence[RunResult], out_dir: str | Path,
                  scenario: dict[str, Any] | None = None) -> dict[str, Any]:
    """timeline.csv and summary.json in out_dir; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_timeline_csv(results, out / "timeline.csv")
    summary = summarize(results, scenario)
    write_summary(summary, out / "summary.json")
    return summary
