"""`serve.py` in a subprocess on a free loopback port, for the tests that need a real server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from helpers.tiny import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(folder: Path, *overrides: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """The server process and its URL, once /health answers; stopped (killed) on exit. Its
    output goes to `folder`/server.log."""
    port = free_port()
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), f"port={port}",
                                    "zero_shot_cache=null", *overrides],
                                   cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"serve.py exited: {(folder / 'server.log').read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            time.sleep(0.2)
        yield process, url
    finally:
        process.kill()
        process.wait()
