"""The run directory: what a training run leaves behind and what prediction loads.

    RUN_DIR/encoder/            exported encoder + tokenizer (save_pretrained)
    RUN_DIR/category_cache.pt   category-embedding matrix with its identity
    RUN_DIR/exemplars.pt        exemplar memory: every title's embedding, code and text
    RUN_DIR/test_predictions.parquet  the test titles' top-5 and confidence (training memory)
    RUN_DIR/error_analysis.md   error analysis of them, with its PNG plots (`python -m occlass.report`)
    RUN_DIR/run.json            the run's record (`RunInfo`): taxonomy, recipe, lengths, config,
                                the code version that trained it and that of each refit
    RUN_DIR/metrics.json        before/after test metrics and the optimised validation metric
    RUN_DIR/report.md           before/after table
    RUN_DIR/checkpoints/        Lightning checkpoints (best by the optimised metric, last)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from occlass.errors import OcclassError

log = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
CACHE_FILE = "category_cache.pt"
MEMORY_FILE = "exemplars.pt"
PREDICTIONS_FILE = "test_predictions.parquet"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"


def umask() -> int:
    """The process's umask (reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, content: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write a file via a temporary file in the same folder and a rename: never half-written.
    Its mode follows the umask, as any other new file's (not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def follow_umask(folder: str | Path) -> None:
    """Give the files in `folder` the mode of a new file (safetensors writes its files 0600)."""
    for path in Path(folder).iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask())


def write_json(path: str | Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


RESULTS_FILE = "BENCHMARKS.md"  # what benches write: not a change of the code that runs them


def code_version(root: str | Path | None = None) -> dict:
    """The version of the code running now: its git commit, whether its checkout has changes
    not committed (`dirty`; BENCHMARKS.md aside, which one bench's results change before the
    next bench runs), and the time (UTC); commit and dirty are None (with a warning) outside a
    git checkout of occlass. `root` defaults to this package's checkout."""
    root = Path(root or Path(__file__).resolve().parents[1]).resolve()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top != root:
            raise ValueError(f"{root} is inside {top}, not a checkout of its own")
        changed = git("status", "--porcelain", "--", ".", f":!{RESULTS_FILE}")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed), "time": now}
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        log.warning("the code's version is unknown (%s: not a git checkout: %s)", root,
                    " ".join(str(detail).split())[:200])
        return {"commit": None, "dirty": None, "time": now}


def describe_version(version: dict | None) -> str:
    """"commit abc1234 (uncommitted changes), 2026-12-02T00:57:48+00:00" of a `code_version`."""
    if not version:
        return "not recorded (an older run)"
    commit = version.get("commit")
    state = ("unknown commit" if commit is None else f"commit {commit[:12]}"
             + (" (with uncommitted changes)" if version.get("dirty") else ""))
    return f"{state}, {version.get('time')}"


@dataclass(frozen=True)
class RunInfo:
    """The record of a training run (`run.json`): what its encoder and cache were built from."""

    taxonomy_version: str
    taxonomy_fingerprint: str
    n_codes: int
    recipe: str
    max_input_length: int
    max_category_length: int
    base_model: str
    n_tasks: int = 3
    config: dict = field(default_factory=dict)
    fusion_weight: float | None = None  # exemplar weight chosen on validation; None = no memory
    description_weight: float | None = None  # weight of a description's category similarity
    calibration: dict | None = None  # occlass.model.calibration.Calibrator fitted on validation
    confidence: dict | None = None  # occlass.model.confidence.ConfidenceModel (None: older run)
    code: dict | None = None  # `code_version()` of the training (None: an older run)
    refits: list = field(default_factory=list)  # `code_version()` of each `--refit`, in order

    def provenance(self) -> str:
        """One line: the code version that trained the run, and that of each refit."""
        line = f"trained by {describe_version(self.code)}"
        return line + "".join(f"; refit by {describe_version(v)}" for v in self.refits)

    def save(self, run_dir: str | Path) -> None:
        write_json(Path(run_dir) / RUN_FILE, dataclasses.asdict(self))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunInfo:
        """The record in `run_dir`; a missing, malformed or foreign one is an OcclassError."""
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise OcclassError(f"{run_dir}: not a complete training run (no {RUN_FILE}); point "
                               "run= at a folder written by train.py")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise OcclassError(f"{path}: not a valid run record ({err})") from None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if not isinstance(data, dict) or (lacking := [k for k in required if k not in data]):
            what = f"lacks {', '.join(lacking)}" if isinstance(data, dict) else "is not an object"
            raise OcclassError(f"{path}: not a run record written by train.py ({what})")
        info = cls(**{k: v for k, v in data.items() if k in fields})
        types = {"n_codes": int, "max_input_length": int, "max_category_length": int,
                 "n_tasks": int, "config": dict}
        wrong = [k for k, t in types.items() if not isinstance(getattr(info, k), t)
                 or isinstance(getattr(info, k), bool)
                 or (t is int and getattr(info, k) < (k != "n_tasks"))]  # lengths ≥ 1, tasks ≥ 0
        wrong += [k for k in ("taxonomy_version", "taxonomy_fingerprint", "recipe", "base_model")
                  if not isinstance(getattr(info, k), str)]
        wrong += [k for k in ("fusion_weight", "description_weight")
                  if getattr(info, k) is not None and not (
                      isinstance(getattr(info, k), (int, float))
                      and not isinstance(getattr(info, k), bool) and 0 <= getattr(info, k) <= 1)]
        wrong += [k for k in ("calibration", "confidence")  # their numbers: at load_run
                  if getattr(info, k) is not None and not isinstance(getattr(info, k), dict)]
        if info.code is not None and not isinstance(info.code, dict):
            wrong.append("code")
        if not (isinstance(info.refits, list) and all(isinstance(v, dict) for v in info.refits)):
            wrong.append("refits")
        if wrong:
            raise OcclassError(f"{path}: malformed run record (bad {', '.join(wrong)})")
        return info


def save_or_keep(save: Callable[[], None], what: str) -> None:
    """Save a derived file (a cache, a memory) by `save()`; when it cannot be written, warn and
    go on with it in memory."""
    try:
        save()
    except OSError as err:
        log.warning("cannot save %s (%s); keeping it in memory", what, err)
