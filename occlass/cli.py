"""Shared command-line behaviour: user errors become one clear line and exit code 2."""

from __future__ import annotations

import sys

from occlass.errors import OcclassError


def run_cli(job, *args):
    try:
        return job(*args)
    except OcclassError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
