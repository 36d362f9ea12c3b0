"""A run of 200 agents on one machine: every agent gets its file notifications (the kernel's
per-user inotify limit is raised for the run, never lowered), and a run says how many
agents had to poll instead."""
from __future__ import annotations

from pathlib import Path

from controller.crs.filewatch import NO_NOTIFICATIONS
from controller.experiment import runner
from controller.experiment.scenario import HostPlan


def test_the_inotify_limit_is_raised_to_what_the_agents_need(tmp_path):
    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    got = runner.ensure_inotify_instances(200, limit)
    assert got == {"max_user_instances": 456, "raised_from": 128}
    assert int(limit.read_text()) == 456
    # never lowered: a machine set higher keeps its value
    limit.write_text("8192\n")
    assert runner.ensure_inotify_instances(200, limit) == {"max_user_instances": 8192}
    assert limit.read_text() == "8192\n"


class ReadOnly(type(Path())):
    """A limit this process may read but not set (not root, or a container's /proc)."""

    def write_text(self, *_):
        raise PermissionError(13, "Permission denied")


def test_an_unreadable_or_unwritable_limit_is_reported_not_fatal(tmp_path, capsys):
    assert "error" in runner.ensure_inotify_instances(10, tmp_path / "missing")
    limit = tmp_path / "ro"
    limit.write_text("128\n")
    got = runner.ensure_inotify_instances(200, ReadOnly(limit))
    assert got["max_user_instances"] == 128 and "Permission denied" in got["error"]
    assert "poll every 100 ms" in capsys.readouterr().out


def test_agents_that_fell_back_to_polling_are_counted(tmp_path):
    plan = [HostPlan(f"c1t{i}", f"10.0.1.{i}", 1, True, i == 1) for i in range(1, 4)]
    for h in plan:
        (tmp_path / h.name).mkdir()
    (tmp_path / "c1t1" / "agent.log").write_text(
        f"2026-11-30 crs-agent INFO {NO_NOTIFICATIONS} ([Errno 24] Too many open files): "
        "polling instead\n")
    (tmp_path / "c1t2" / "agent.log").write_text("2026-11-30 crs-agent INFO reported\n")
    assert runner.agents_polling(plan, tmp_path) == 1      # c1t3 wrote no log at all
