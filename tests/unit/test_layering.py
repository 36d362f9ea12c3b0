"""The layering the code relies on: Ryu only in the shell and the launcher, each table owner
independent of the others and of the core, the store free of protocol modules."""
from __future__ import annotations

import ast
from pathlib import Path

CONTROLLER = Path(__file__).resolve().parents[2] / "controller"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function?) for every import in a file."""
    out = []
    tree = ast.parse(path.read_text())
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(i) for f in funcs for i in ast.walk(f) if isinstance(i, (ast.Import,
                                                                           ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, id(node) in nested))
    return out


def test_owners_never_import_each_other_or_the_core():
    for path in (CONTROLLER / "owners").glob("*.py"):
        for mod, _ in imports(path):
            assert not mod.startswith(("controller.owners", "controller.core")), (path, mod)


def test_ryu_only_in_the_shell_and_the_launcher():
    for path in CONTROLLER.rglob("*.py"):
        if "ryu_shell" in path.parts or path.name == "launcher.py":
            continue
        for mod, _ in imports(path):
            assert not mod.startswith("ryu"), (path, mod)


def test_the_store_knows_no_protocol_module():
    for mod, _ in imports(CONTROLLER / "store.py"):
        assert not mod.startswith(("controller.admission", "controller.crs")), mod


def test_the_core_dispatches_without_imports_inside_functions():
    assert [m for m, inside in imports(CONTROLLER / "core.py") if inside] == []
    assert len((CONTROLLER / "core.py").read_text().splitlines()) < 260


def test_test_modules_have_unique_names():
    """pytest imports test modules by base name (no packages here): two of one name in
    tests/unit and tests/integration stop the whole collection of `make test`."""
    from collections import Counter
    names = Counter(p.name for p in (CONTROLLER.parent / "tests").rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
