"""Read-modify-write of the terminal's posture file: one JSON object that the worm and the
experiment runner write and the agent reads (keys: docs/crs.md, "The posture file").

The agent (SCA) reads this file at any moment, so every write replaces it atomically
(temporary file in the same directory + os.replace): a reader sees the old or the new
document, never half of one. Keys this module does not know are kept as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from controller import jsonfile


def read_posture(path: str | Path) -> dict[str, Any]:
    """The posture document, or {} when the file is missing, empty or not a JSON object
    (the worm must keep running even if someone left a broken file)."""
    return jsonfile.read(path) or {}


def write_posture(path: str | Path, data: dict[str, Any]) -> None:
    """Replace the file atomically."""
    jsonfile.write_atomic(path, data)


def update_posture(path: str | Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `change` (mutates the document in place) and write the result atomically."""
    data = read_posture(path)
    change(data)
    write_posture(path, data)
    return data


def set_infection(doc: dict[str, Any], worm: str, at: float, by: str | None) -> None:
    """Ground truth for experiments, written at infection time (the agent does not report it)."""
    doc["infection"] = {"worm": worm, "infected_at": at, "by": by}


def add_threat(doc: dict[str, Any], worm: str, detected_at: float) -> None:
    """What the terminal's own antivirus has detected (one entry per threat name)."""
    threats = doc.get("threats")
    if not isinstance(threats, list):
        threats = doc["threats"] = []
    for t in threats:
        if isinstance(t, dict) and t.get("name") == worm:
            t["count"] = int(t.get("count", 0)) + 1
            return
    threats.append({"name": worm, "count": 1, "cleaned": False, "detected_at": detected_at})


def add_attacker(doc: dict[str, Any], source: str, worm: str, seen_at: float,
                 count: int = 1) -> None:
    """A probing source this terminal observed; `count` probes, the last at `seen_at`."""
    attackers = doc.get("attackers")
    if not isinstance(attackers, list):
        attackers = doc["attackers"] = []
    for a in attackers:
        if isinstance(a, dict) and a.get("source") == source and a.get("threat") == worm:
            a["count"] = int(a.get("count", 0)) + count
            a["last_seen"] = max(float(a.get("last_seen", 0.0)), seen_at)
            return
    attackers.append({"source": source, "threat": worm, "count": count, "last_seen": seen_at})
