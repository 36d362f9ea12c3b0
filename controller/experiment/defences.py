"""Experiment defences as controller configuration: which files a run's controller gets.

Each defence of a scenario (none, crs_isolate, crs_rate_limit, cell_seal, throttle) becomes a
controller configuration (config/controller.yaml schema) and, for the CRS defences, a CRS
policy, plus for cell_seal the credentials/authorization that put terminals into groups of
`scope_cells` cells. Templates live in config/defences/<name>.yaml; this module fills in the
scenario's parameters and writes everything into the run's directory. Pure apart from
`write_defence_files` (which only writes files), so the mapping is unit-testable.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.config import ConfigError, load_yaml
from controller.emulation.processes import AUTHORIZATION, CREDENTIALS, ROOT, auth_document

TEMPLATES = ROOT / "config" / "defences"

CRS_DEFENCES = ("crs_isolate", "crs_rate_limit", "cell_seal")
CONTROLLER_DEFENCES = ("none", "throttle")


class DefenceError(ValueError):
    """A defence that cannot be set up as asked (reason in the message)."""


@dataclass(frozen=True)
class DefenceFiles:
    """What one run's controller is started with."""

    controller_config: Path
    policy: Path | None = None
    credentials: Path | None = None
    authorization: Path | None = None
    admission: bool = False         # admission: authenticate without CRS (scenario option)

    @property
    def authenticate(self) -> bool:
        """Terminals must run the supplicant (CRS defences, or admission asked for)."""
        return self.policy is not None or self.admission

    @property
    def agents(self) -> bool:
        """Terminals must run the agent (SCA): CRS defences only."""
        return self.policy is not None


def needs_agents(defence: str) -> bool:
    """CRS defences need authenticated terminals that run the agent (SCA)."""
    return defence in CRS_DEFENCES


def _template(name: str, base: Path = TEMPLATES) -> dict[str, Any]:
    path = base / f"{name}.yaml"
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DefenceError(f"{path}: expected a mapping")
    return data


def policy_document(defence: str, params: dict[str, Any], base: Path = TEMPLATES) -> dict[str, Any]:
    """The CRS policy of a CRS defence with the scenario's parameters filled in."""
    if defence not in CRS_DEFENCES:
        raise DefenceError(f"{defence!r} has no CRS policy "
                           f"(CRS defences: {', '.join(CRS_DEFENCES)})")
    doc = copy.deepcopy(_template(defence, base))
    if defence == "crs_rate_limit":
        infected = doc["control"]["levels"]["INFECTED"]
        if params.get("rate_pps"):          # packets/s: what holds a scan's rate
            infected.pop("rate_limit_kbps", None)
            infected["rate_limit_pps"] = max(1, int(round(params["rate_pps"])))
        else:
            infected["rate_limit_kbps"] = int(round(params.get("rate_kbps", 2.0)))
    if defence == "cell_seal":
        doc["correlation"]["group_seal"]["infected_m"] = int(params.get("seal_m", 3))
    return doc


def cell_groups(cells: int, scope_cells: int) -> dict[int, str]:
    """Cell number -> group name: consecutive runs of `scope_cells` cells (seal1, seal2...)."""
    if scope_cells < 1:
        raise DefenceError(f"scope_cells {scope_cells} must be >= 1")
    return {c: f"seal{(c - 1) // scope_cells + 1}" for c in range(1, cells + 1)}


def credentials_document(base: dict[str, Any], groups: dict[int, str],
                         base_file: Path = CREDENTIALS) -> dict[str, Any]:
    """The shipped credentials with the terminal template split per group: one template per
    group whose host regex matches exactly that group's cells (same master secret, so every
    terminal keeps its demo PSK)."""
    doc = copy.deepcopy(base)
    templates = doc.get("templates") or []
    cells_tpl = next((t for t in templates if isinstance(t, dict) and "host_regex" in t
                      and "cell" in str(t.get("host_regex"))), None)
    if cells_tpl is None:
        raise DefenceError(f"{base_file}: no terminal template with a <cell> group to split")
    rest = [t for t in templates if t is not cells_tpl]
    by_group: dict[str, list[int]] = {}
    for cell, g in sorted(groups.items()):
        by_group.setdefault(g, []).append(cell)
    split = []
    for g, cells in by_group.items():
        alt = "|".join(str(c) for c in cells)
        t = dict(cells_tpl, name=f"cells_{g}", group=g,
                 host_regex=f"^c(?P<cell>{alt})t(?P<term>[1-9][0-9]*)$")
        split.append(t)
    doc["templates"] = split + rest
    md5 = doc.get("md5_key_file")
    if isinstance(md5, str) and not Path(md5).is_absolute():
        doc["md5_key_file"] = str((base_file.parent / md5).resolve())
    return doc


def authorization_document(base: dict[str, Any], groups: dict[int, str]) -> dict[str, Any]:
    """The shipped authorization plus one entry per seal group: the union of its cells'
    entitlements (a group may hold cells with different services)."""
    doc = copy.deepcopy(base)
    existing = doc.setdefault("groups", {})
    for cell, g in sorted(groups.items()):
        services = existing.get(f"cell{cell}", ["*"])
        merged = existing.setdefault(g, [])
        merged.extend(s for s in services if s not in merged)
    return doc


def complete_cell_groups(base: dict[str, Any], cells: int) -> dict[str, Any] | None:
    """The authorization with a `cell<N>` group for every cell 1..cells (a missing one gets
    cell1's entitlements: a larger topology than the shipped file knows, e.g. metro), or
    None when nothing is missing. An unknown group would reach no service at all."""
    groups = base.get("groups") or {}
    missing = [c for c in range(1, cells + 1) if f"cell{c}" not in groups]
    if not missing:
        return None
    doc = copy.deepcopy(base)
    template = list(groups.get("cell1", ["*"]))
    for c in missing:
        doc["groups"][f"cell{c}"] = list(template)
    return doc


def controller_document(defence: str, params: dict[str, Any], topology_file: str | Path,
                        files: dict[str, Path | None] | None = None,
                        base: Path = TEMPLATES, authenticate: bool = False,
                        audit_log: str | Path | None = None,
                        cells: int | None = None,
                        terminals_per_cell: int | None = None) -> dict[str, Any]:
    """The controller configuration of one run (config/controller.yaml schema); `cells`:
    how many of the topology's cells the scenario uses (coverage is a fraction of those);
    `terminals_per_cell`: the scenario's, which the network is built with, so the
    controller knows the same terminals (the throttle covers those it knows).

    `none` uses only keys the controller has always accepted (admission open + topology);
    throttle adds `throttle`, the CRS defences `admission: authenticate` and `crs` (as
    emulation.processes.auth_document writes them for tests and benchmarks);
    `authenticate` asks for admission without CRS (every terminal authenticates)."""
    if defence not in CRS_DEFENCES + CONTROLLER_DEFENCES:
        raise DefenceError(f"unknown defence {defence!r}")
    cov = params.get("coverage_fraction", 1.0)
    partial = cov is not None and cov < 1.0
    if partial and defence not in CRS_DEFENCES:
        raise DefenceError(f"{defence}: coverage_fraction {cov} < 1 (partial deployment) is "
                           f"a reacting-system setting (crs.enforce); {defence} has none")
    files = files or {}
    doc = copy.deepcopy(_template("none", base))
    doc["topology"] = str(topology_file)
    if terminals_per_cell is not None:
        doc["terminals_per_cell"] = int(terminals_per_cell)
    if defence == "throttle":
        doc.update(copy.deepcopy({k: v for k, v in _template("throttle", base).items()
                                  if k == "throttle"}))
        doc["throttle"]["working_set"] = int(params.get("working_set", 5))
        doc["throttle"]["new_dest_per_s"] = float(params.get("new_dest_per_s", 1.0))
    if defence in CRS_DEFENCES and not files.get("policy"):
        raise DefenceError(f"{defence}: a policy file is needed")
    if defence in CRS_DEFENCES or authenticate:
        # the shipped (public) demo secrets, or a copy of them: demo: true
        doc.update(auth_document(topology_file, crs=defence in CRS_DEFENCES,
                                 policy=files.get("policy"),
                                 credentials=files.get("credentials"),
                                 authorization=files.get("authorization")))
    if partial and defence in CRS_DEFENCES:
        doc["crs"]["enforce"] = enforced_cells(topology_file, cov, cells)
    if audit_log is not None:
        doc["audit_log"] = str(audit_log)
    return doc


def enforced_cells(topology_file: str | Path, coverage: float,
                   used: int | None = None) -> list[str]:
    """Partial deployment: of the `used` cells the scenario has terminals in (default all
    of the topology's), the first round(coverage x used), in topology order, enforce; every
    terminal is still evaluated. Which cell the worm starts in varies with the seed."""
    from controller import topology
    cells = [c.name for c in topology.load(topology_file).cells][:used]
    return cells[:round(coverage * len(cells))]


def _dump(path: Path, doc: dict[str, Any], head: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {head}\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def write_defence_files(defence: str, params: dict[str, Any], cells: int,
                        topology_file: str | Path, run_dir: str | Path,
                        base: Path = TEMPLATES, authenticate: bool = False,
                        audit_log: str | Path | None = None,
                        terminals_per_cell: int | None = None) -> DefenceFiles:
    """Write the run's controller config (and policy, credentials, authorization) into
    run_dir; the CRS policy is validated here so a bad parameter fails before anything
    starts (ConfigError: FILE: KEY: PROBLEM). `audit_log`: where the controller writes it
    (default: the controller's own default); `terminals_per_cell`: the network's."""
    run_dir = Path(run_dir)
    files: dict[str, Path | None] = {}
    head = f"generated by controller.experiment.defences for defence {defence}"
    if defence in CRS_DEFENCES:
        from controller.crs.policy import load_policy
        policy = _dump(run_dir / "crs_policy.yaml", policy_document(defence, params, base), head)
        load_policy(policy)          # raises ConfigError naming the key
        files["policy"] = policy
        if defence == "cell_seal":
            groups = cell_groups(cells, int(params.get("scope_cells", 1)))
            files["credentials"] = _dump(run_dir / "credentials.yaml", credentials_document(
                load_yaml(CREDENTIALS), groups), head)
            files["credentials"].chmod(0o600)     # the controller refuses a readable one
            files["authorization"] = _dump(run_dir / "authorization.yaml",
                                           authorization_document(load_yaml(AUTHORIZATION), groups),
                                           head)
    if defence != "cell_seal" and (defence in CRS_DEFENCES or authenticate):
        auth = complete_cell_groups(load_yaml(AUTHORIZATION), cells)
        if auth is not None:
            files["authorization"] = _dump(run_dir / "authorization.yaml", auth, head)
    cfg = _dump(run_dir / "controller.yaml",
                controller_document(defence, params, topology_file, files, base,
                                    authenticate=authenticate, audit_log=audit_log,
                                    cells=cells, terminals_per_cell=terminals_per_cell), head)
    return DefenceFiles(cfg, files.get("policy"), files.get("credentials"),
                        files.get("authorization"),
                        admission=authenticate and defence not in CRS_DEFENCES)


def demo_psk_hex(identity: str, credentials: str | Path = CREDENTIALS) -> str:
    """The demo PSK (32 hex digits) a template terminal authenticates with."""
    from controller.admission.credentials import load_credentials
    psk = load_credentials(credentials).demo_psk(identity)
    if psk is None:
        raise DefenceError(f"{credentials}: no template matches identity {identity!r}")
    return psk.hex()


def identity_of(host: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        raise DefenceError(f"{host!r} is not a host name")
    return f"{host}@crs.example"


__all__ = ["CRS_DEFENCES", "ConfigError", "DefenceError", "DefenceFiles", "authorization_document",
           "cell_groups", "complete_cell_groups", "controller_document", "credentials_document",
           "demo_psk_hex", "identity_of", "needs_agents", "policy_document", "write_defence_files"]
