"""The package's shape: sub-packages by stage that import only downward, no import cycles, and a
prediction package free of Lightning."""

import ast
import subprocess
import sys
from pathlib import Path

from helpers.tiny import ROOT

PACKAGE = ROOT / "occlass"
# data ← model ← predict ← report ← train; serve sits on predict. Top-level modules (runs,
# errors, cli) are the ground floor and import no stage.
STAGES = {"data": 1, "model": 2, "predict": 3, "serve": 4, "report": 4, "train": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The occlass modules a module imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("occlass"):
            names = {f"{node.module}.{a.name}" for a in node.names}
            found |= names & MODULES.keys()
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("occlass.")}
    return found & MODULES.keys() - {"occlass"}


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.get(parts[1], 0) if len(parts) > 1 else 0  # occlass itself: the ground floor


GRAPH = {m: imports_of(p) for m, p in MODULES.items()}


def test_every_sub_package_has_a_stage():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= STAGES.keys(), packages - STAGES.keys()
    assert GRAPH["occlass.predict.job"] >= {"occlass.predict.predictor"}  # the walk sees imports


def test_imports_go_downward_only():
    upward = [f"{m} → {t}" for m, targets in GRAPH.items() for t in targets
              if stage(t) > stage(m)]
    assert upward == []


def test_no_import_cycles():
    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        for target in sorted(GRAPH.get(module, ())):
            if found := cycle_from(target, path + [module]):
                return found
        return None

    for module in GRAPH:
        assert cycle_from(module, []) is None, " → ".join(cycle_from(module, []))


def test_prediction_package_does_not_import_lightning():
    code = ("import sys, occlass.predict; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'torchmetrics', 'hydra', 'pyspark')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"
