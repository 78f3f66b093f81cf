"""Shared command-line behaviour: user errors become one clear line and exit code 2."""

from __future__ import annotations

import logging
import sys

from occlass.errors import OcclassError

log = logging.getLogger("occlass")


def run_cli(job, *args):
    try:
        return job(*args)
    except OcclassError as err:
        log.error("error: %s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
