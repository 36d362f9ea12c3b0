"""Figures: PNG files are made for timelines and sweeps; bad input gives a reason."""
from __future__ import annotations

import random

import pytest
from matplotlib.image import imread

from controller.experiment import model, plots
from controller.experiment import results as res


def sim_result(defence: str, run: int, delay: float, reaction: str = "none",
               configuration: str | None = None, **params) -> res.RunResult:
    out = model.simulate_outbreak(24, 378, 3.0, 60, random.Random(run), delay + 1.0, reaction)
    return res.RunResult(defence=defence, configuration=configuration or defence, run=run,
                         terminals=24, vulnerable=24, infection_times_s=out.infection_times,
                         end_s=60.0, detection_delay_s=delay, scan_rate_per_s=3.0, omega=378,
                         probes_sent=100, probes_acked=5, probes_received=90, params=params)


def is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_timeline_and_delay_sweep(tmp_path):
    results = [sim_result("none", r, 1.0) for r in range(4)]
    for delay in (0.5, 2.0, 6.0):
        results += [sim_result("crs_isolate", r, delay, "block", f"crs_isolate delay={delay}s")
                    for r in range(4)]
    summary = res.summarize(results)
    made = plots.plot_all(summary, results, tmp_path / "fig")
    assert [p.name for p in made] == ["timeline.png", "delay.png"]
    for p in made:
        assert is_png(p)
        h, w, _ = imread(p).shape
        assert w > 500 and h > 300


def test_scope_sweep_plot(tmp_path):
    results = [sim_result("none", r, 1.0) for r in range(2)]
    for scope in (1, 2, 3):
        results += [sim_result("cell_seal", r, 1.0, "block", f"cell_seal scope_cells={scope}",
                               scope_cells=scope, coverage_fraction=1.0) for r in range(2)]
    made = plots.plot_all(res.summarize(results), results, tmp_path)
    assert [p.name for p in made] == ["timeline.png", "scope_scope_cells.png"]
    assert all(is_png(p) for p in made)


def test_a_defence_swept_in_another_parameter_is_not_drawn_against_this_one(tmp_path):
    """scope_sweep: cell_seal's scopes all run at coverage 1.0, crs_isolate at three
    coverages; the coverage figure has crs_isolate's line only, the scope figure cell_seal's."""
    results = [sim_result("none", r, 1.0) for r in range(2)]
    for scope in (1, 2, 3):
        results += [sim_result("cell_seal", r, 1.0, "block", f"cell_seal scope_cells={scope}",
                               scope_cells=scope, coverage_fraction=1.0) for r in range(2)]
    for cov in (0.5, 0.83, 1.0):
        results += [sim_result("crs_isolate", r, 1.0, "block",
                               f"isolate_partial coverage_fraction={cov}",
                               coverage_fraction=cov) for r in range(2)]
    confs = res.summarize(results)["runs"]
    by_cov = plots.sweep_series(confs, "coverage_fraction")
    assert list(by_cov) == ["crs_isolate"]
    assert [c["coverage_fraction"] for c in by_cov["crs_isolate"]] == [0.5, 0.83, 1.0]
    assert list(plots.sweep_series(confs, "scope_cells")) == ["cell_seal"]
    made = plots.plot_all(res.summarize(results), results, tmp_path)
    assert [p.name for p in made] == ["timeline.png", "scope_scope_cells.png",
                                      "scope_coverage_fraction.png"]


def test_plot_errors_have_reasons(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        plots.plot_timeline([], tmp_path / "x.png")
    summary = res.summarize([sim_result("none", 0, 1.0)])
    with pytest.raises(ValueError, match="no configuration has a value"):
        plots.plot_sweep(summary, "scope_cells", tmp_path / "y.png")
    with pytest.raises(ValueError, match="no runs"):
        plots.plot_sweep({"runs": []}, "detection_delay_s", tmp_path / "z.png")
