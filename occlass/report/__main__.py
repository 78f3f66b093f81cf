"""`python -m occlass.report RUN_DIR`: rebuild a run's error analysis (see `rebuild`)."""

from occlass.cli import run_cli
from occlass.report.rebuild import main

run_cli(main)
