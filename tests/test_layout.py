"""The package's shape: no import cycles, and a prediction library free of Lightning."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers.tiny import ROOT

PACKAGE = ROOT / "occlass"


def imports_of(path: Path) -> set[str]:
    """The occlass modules a module imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("occlass"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if (PACKAGE / f"{n.split('.', 1)[1]}.py").is_file()}
            if node.module != "occlass":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("occlass.")}
    return found


def test_no_import_cycles():
    graph = {f"occlass.{p.stem}": imports_of(p) for p in PACKAGE.glob("*.py")
             if p.stem != "__init__"}
    assert graph["occlass.prediction"] >= {"occlass.predictor"}  # the walk sees imports

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        for target in sorted(graph.get(module, ())):
            if found := cycle_from(target, path + [module]):
                return found
        return None

    for module in graph:
        assert cycle_from(module, []) is None, " → ".join(cycle_from(module, []))


def test_prediction_library_does_not_import_lightning():
    code = ("import sys, occlass.predictor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'torchmetrics', 'hydra')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
