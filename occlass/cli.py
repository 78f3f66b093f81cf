"""Shared command-line behaviour: user errors become one clear line and exit code 2; Ctrl-C
and SIGTERM stop a job cleanly (its `with` blocks remove their temporary files) with one line."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from occlass.errors import OcclassError

PACKAGE = Path(__file__).resolve().parent
# Hydra's configs: inside the installed package (a wheel), else the checkout's conf/ beside it
CONF = PACKAGE / "conf" if (PACKAGE / "conf").is_dir() else PACKAGE.parent / "conf"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same `with` blocks clean up."""


def _terminate(signum, frame):
    raise Terminated("terminated")


def run_cli(job, *args):
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return job(*args)
    except OcclassError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        print(f"error: {stop or 'interrupted'}; nothing was written", file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)


def _exit_unless_folder_can_be(path: Path) -> None:
    """One line and exit code 2 if `path` cannot become a folder (it or a parent is a file)."""
    folder = path
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        print(f"error: cannot create the output folder {path}: {folder} is a file",
              file=sys.stderr)
        sys.exit(2)


class CheckOutputFolder(Callback):
    """Hydra creates the run (or sweep) folder before the job starts; one under a file would be
    its traceback."""

    def on_run_start(self, config, **kwargs) -> None:
        _exit_unless_folder_can_be(Path(config.hydra.run.dir))

    def on_multirun_start(self, config, **kwargs) -> None:
        _exit_unless_folder_can_be(Path(config.hydra.sweep.dir))
