"""The package's modules and data for setuptools (metadata in pyproject.toml). Hydra's configs
live in conf/ at the top, where train.py, predict.py and serve.py find them, and ship inside the
package as occlass/conf, where the console entry points (occlass-train, ...) find them."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["occlass*"]), "occlass.conf"],
    package_dir={"occlass.conf": "conf"},
    package_data={"occlass.conf": ["**/*.yaml"], "occlass.serve.static": ["*"]},
)
