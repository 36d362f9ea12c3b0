"""Every `crs` command and subcommand answers --help with its usage, as a new user would try.

The command tree is read from the parser `controller.cli.build_parser` builds (nested
subcommands such as `net up` included); the programs that parse their own arguments
(`crs agent`, `crs supplicant`, `crs experiment`...) are walked through their own parsers.
Each command runs in a subprocess from a folder outside the repository: no root, nothing
started, nothing read from the working directory.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

import pytest
from corekit import ROOT

from controller import cli

# subcommands a program's parser accepts without declaring them as subparsers
EXTRA = [("experiment", "run"), ("experiment", "simulate")]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:                      # argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _program_parser(module: str) -> argparse.ArgumentParser:
    mod = importlib.import_module(module)
    for attr in ("build_parser", "parser"):
        make = getattr(mod, attr, None)
        if callable(make):
            p = make()
            if isinstance(p, argparse.ArgumentParser):
                return p
    raise AssertionError(f"{module}: no build_parser() or parser() returning its parser")


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in _subcommands(parser).items():
        if not path and name in cli.PASS_THROUGH:       # the program's own parser answers
            sub = _program_parser(cli.PASS_THROUGH[name])
        paths += _walk(sub, path + (name,))
    return paths


def command_paths() -> list[tuple[str, ...]]:
    # (each benchmark parses its own options: `crs bench NAME --help`)
    return _walk(cli.build_parser(), ()) + EXTRA + [("bench", name) for name in
                                                     [*cli.BENCHES, "summary"]]


def test_the_tree_holds_every_kind_of_command():
    paths = set(command_paths())
    assert {(), ("controller",), ("net",), ("net", "up"), ("status",)} <= paths
    assert {(name,) for name in cli.PASS_THROUGH} <= paths
    assert ("sp", "server") in paths and ("experiment", "run") in paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "crs")
def test_help(path, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    r = subprocess.run([sys.executable, "-m", "controller.cli", *path, "--help"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usage:" in r.stdout, r.stdout + r.stderr
    assert "error" not in r.stderr.lower(), r.stderr


def _documented_bench_options() -> list[tuple[str, str]]:
    """(benchmark, option) for every `crs bench NAME[|NAME...] --option ...` in README and
    docs/*.md."""
    import re
    found = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for names, opts in re.findall(r"crs bench ([a-z_|]+)((?: +--[a-z-]+(?: +[^ `-][^ `]*)?)+)",
                                      doc.read_text()):
            for name in names.split("|"):
                found |= {(name, o) for o in re.findall(r"--[a-z-]+", opts)}
    return sorted(found)


def test_the_docs_mention_benchmark_options():
    assert ("switch", "--idle-ports") in _documented_bench_options()


@pytest.mark.parametrize("name,option", _documented_bench_options(), ids="-".join)
def test_every_documented_benchmark_option_is_accepted(name, option, capsys):
    """What README and docs tell a user to type after `crs bench NAME` is an option of it."""
    with pytest.raises(SystemExit) as done:
        cli.main(["bench", name, "--help"])
    assert done.value.code == 0
    assert option in capsys.readouterr().out


@pytest.mark.parametrize("cmd", [["reaction", "--interval-ms"], ["auth", "--syn-interval-ms"]])
@pytest.mark.parametrize("value", ["0", "-1", "5000", "fast"])
def test_a_probe_interval_out_of_range_is_refused_before_anything_starts(tmp_path, cmd, value):
    """A sending interval of 0 (a flood, not a probe) or nonsense: one clear line, exit 2,
    no network built (the benchmark used to run with it, or end in a traceback)."""
    r = subprocess.run([sys.executable, "-m", "controller.cli", "bench", cmd[0], cmd[1], value,
                        "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    assert f"argument {cmd[1]}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
