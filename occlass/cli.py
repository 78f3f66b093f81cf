"""Shared command-line behaviour: user errors become one clear line and exit code 2; Ctrl-C
and SIGTERM stop a job cleanly (its `with` blocks remove their temporary files) with one line."""

from __future__ import annotations

import signal
import sys

from occlass.errors import OcclassError


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
