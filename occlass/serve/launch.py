"""The review desk in a subprocess on a free loopback port, for the tests, benches and docs that
need a real server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(*overrides: str, cwd: Path, log: Path,
            timeout: float = 600.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m occlass.serve` (serve.py) with the overrides: the process and its URL once
    /health answers; killed on exit. Its output is appended to `log`; a server that exits or
    does not answer within `timeout` seconds raises with the log's tail."""
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "occlass.serve", "host=127.0.0.1",
                                    f"port={port}", *overrides],
                                   cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    yield process, url
                    return
            time.sleep(0.2)
        why = "exited" if process.poll() is not None else f"did not answer in {timeout:.0f} s"
        raise RuntimeError(f"serve.py {why}: {log.read_text(errors='replace')[-2000:]}")
    finally:
        process.kill()
        process.wait()
