"""The review desk in a subprocess (`occlass.serve.launch`) as the tests start it: in `folder`,
its output in `folder`/server.log, without the zero-shot category cache."""

from __future__ import annotations

from pathlib import Path

from occlass.serve.launch import serving as launch


def serving(folder: Path, *overrides: str):
    """The server process and its URL, once /health answers; killed on exit."""
    return launch("zero_shot_cache=null", *overrides, cwd=folder, log=folder / "server.log")
