"""Shared bench helpers: the default config, a machine and code description, and BENCHMARKS.md
sections."""

from __future__ import annotations

import datetime
import os
import re
import shlex
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from occlass.runs import RunInfo, code_version, describe_version, write_atomic

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nWritten by the scripts in `bench/`, each replacing its own section.\n"


def default_config(*overrides: str) -> DictConfig:
    """conf/train.yaml as `python train.py` composes it, with paths rooted at the repository."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"paths.root_dir={ROOT}", *overrides])


def other_training_jobs() -> list[str]:
    """Command lines of running `train.py` processes other than this one (they distort timings;
    one stopped for the bench, `kill -STOP`, does not)."""
    jobs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stopped = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
        except (OSError, IndexError):
            continue
        if stopped:
            continue
        args = [a.decode(errors="replace") for a in cmdline if a]
        if int(pid) != os.getpid() and any(Path(a).name == "train.py" for a in args[1:2]):
            command = " ".join(args)
            jobs.append(f"pid {pid}: `{command[:100]}{'…' if len(command) > 100 else ''}`")
    return jobs


def load() -> tuple[float, list[str]]:
    """The 1-minute load average and the other training jobs, to take at a bench's start."""
    return os.getloadavg()[0], other_training_jobs()


def machine(at_start: tuple[float, list[str]]) -> str:
    """One line: CPU model, cores, torch threads and version, and the load at start and end."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    (load_start, jobs_start), (load_end, jobs_end) = at_start, load()
    line = (f"{model.group(1) if model else 'unknown CPU'}, {os.cpu_count()} cores visible, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads, bf16 CPU flags: "
            f"{', '.join(bf16) or 'none'}; 1-min load average {load_start:.1f} before, "
            f"{load_end:.1f} after (this bench included)")
    jobs = sorted(set(jobs_start + jobs_end))
    if jobs:
        line += (". **A training job ran concurrently** (" + "; ".join(jobs) + "): absolute "
                 "numbers are pessimistic, compare rows of the same run")
    return line


def preamble(config: str, at_start: tuple[float, list[str]],
             runs: dict[str, RunInfo] | None = None) -> str:
    """The command, date, machine, code version and config lines every section starts with,
    and, for each of `runs` (name → its record), the code version that trained and refit it."""
    command = shlex.join([".venv/bin/python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    provenance = "".join(f"Run {name}: {info.provenance()}  \n"
                         for name, info in (runs or {}).items())
    return (f"Command: `{command}`  \nDate: {datetime.datetime.now():%Y-%m-%d %H:%M}  \n"
            f"Machine: {machine(at_start)}  \nCode: {describe_version(code_version(ROOT))}  \n"
            f"{provenance}Config: {config}\n")


def write_section(name: str, body: str) -> None:
    """Replace the text between `<!-- name -->` and `<!-- /name -->` in BENCHMARKS.md, or append."""
    section = f"<!-- {name} -->\n{body.strip()}\n<!-- /{name} -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = f"{text.rstrip()}\n\n{section}\n"
    write_atomic(BENCHMARKS, text)
