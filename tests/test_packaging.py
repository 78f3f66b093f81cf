"""The built wheel, installed into a fresh venv, gives console entry points that work from any
folder with the configs it ships (executors import occlass from a package, not a checkout)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers.tiny import ROOT

SOURCES = ("occlass", "conf", "pyproject.toml", "setup.py", "README.md", "LICENSE", "NOTICE")


def run(*command, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROJECT_ROOT")}
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_runs_from_any_folder(run_dir, tiny_onet, tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves the checkout as it is
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", tmp_path / "dist", source, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("occlass-*.whl"))
    # A fresh venv holding only the wheel; its dependencies (torch, ...) are this venv's,
    # put on its path rather than downloaded again.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
        cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(python, "-c", "import occlass.cli as c; print(c.__file__, c.CONF)",
                cwd=elsewhere).stdout.split()
    assert all(Path(p).is_relative_to(site / "occlass") for p in where)  # not the checkout
    assert (site / "occlass" / "conf" / "engine" / "spark.yaml").is_file()
    assert (site / "occlass" / "serve" / "static" / "index.html").is_file()
    answer = run(venv / "bin" / "occlass-predict", f"run={run_dir}", f"data_dir={tiny_onet}",
                 "text=registered nurse", cwd=elsewhere).stdout
    assert answer.splitlines()[0].split() == ["rank", "code", "title", "score"]
    assert "confidence" in answer
    for app, config in (("occlass-train", "trainer"), ("occlass-serve", "max_batch")):
        assert config in run(venv / "bin" / app, "--cfg", "job", cwd=elsewhere).stdout
    assert list(elsewhere.iterdir()) == []
