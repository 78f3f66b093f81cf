"""`python -m occlass.data`: the labelled pairs per source and split of the default config."""

from occlass.cli import run_cli
from occlass.data.datamodule import main

run_cli(main)
